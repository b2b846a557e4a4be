// circuitscope-cli: the headless, scriptable face of the core (product.md §5).
// Only argument parsing lives here; the JSON documents are built in core/commands.
// Exit codes: 0 success, 2 bad input (one line on stderr), 1 internal failure.

#include "app/cli_app.h"

#include "core/commands/cli_commands.h"
#include "core/commands/examples_commands.h"
#include "core/model/demo_model.h"
#include "core/model/random_model.h"
#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"
#include "core/util/errors.h"
#include "core/util/files.h"
#include "core/util/runtime.h"

#include <c10/util/Exception.h>

#include "ui/charts/figure.h"
#include "ui/engine/node_view.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QCoreApplication>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <iostream>
#include <optional>

namespace {

constexpr int kExitBadInput = 2;
constexpr int kExitInternal = 1;

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string str(const QString& s)
{
    return s.toStdString();
}

class Cli {
public:
    explicit Cli(const QStringList& args) : m_args(args) {}

    int run()
    {
        setUpOptions();
        if (!m_parser.parse(m_args))
            throw UsageError(str(m_parser.errorText()));
        if (m_parser.isSet(QStringLiteral("help")) || m_parser.positionalArguments().isEmpty()) {
            std::cout << str(m_parser.helpText());
            return m_parser.positionalArguments().isEmpty() && !m_parser.isSet(QStringLiteral("help")) ? kExitBadInput : 0;
        }
        const QStringList positional = m_parser.positionalArguments();
        if (positional.size() > 1)
            throw UsageError("unexpected argument '" + str(positional.at(1)) + "'");
        const QString command = positional.first();
        checkOptionsOf(command);
        if (m_parser.isSet(QStringLiteral("session")))
            m_session = cs::loadSession(str(m_parser.value(QStringLiteral("session"))));
        if (command == u"info")
            return print(cs::infoJson(*model()));
        if (command == u"tokenize")
            return tokenize();
        if (command == u"forward")
            return forward();
        if (command == u"node")
            return node();
        if (command == u"nodes")
            return nodes();
        if (command == u"figure")
            return figure();
        if (command == u"make-random-model")
            return makeRandomModel();
        if (command == u"index") // dataset examples (issue 14): core/commands/examples_commands.h
            return print(cs::indexCommandJson(*model(), saeFlags(), str(required(QStringLiteral("corpus"))),
                                              m_parser.isSet(QStringLiteral("tokens")) ? std::optional<std::int64_t>(intOption(QStringLiteral("tokens"))) : std::nullopt, std::cerr));
        if (command == u"examples")
            return print(cs::examplesCommandJson(*model(), saeFlags(), str(required(QStringLiteral("corpus"))),
                                                 str(required(QStringLiteral("node"))), intOption(QStringLiteral("top")), std::cerr));
        throw UsageError("unknown command '" + str(command) + "' (info, tokenize, forward, node, nodes, figure, make-random-model, index, examples)");
    }

private:
    void setUpOptions()
    {
        m_parser.setApplicationDescription(QStringLiteral(
            "Circuitscope command line.\n"
            "Commands: info, tokenize, forward, node, nodes, figure, make-random-model, index, examples."));
        m_parser.addPositionalArgument(QStringLiteral("command"), QStringLiteral("What to do."));
        m_parser.addHelpOption();
        const QList<QCommandLineOption> options = {
            {QStringLiteral("model"), QStringLiteral("Hugging Face GPT-2 directory (default: the session's, else the bundled demo)."), QStringLiteral("DIR")},
            {QStringLiteral("session"), QStringLiteral("A saved session (.circuitscope.json): its model, autoencoders, prompt, target, distractor, "
                                                       "selected node, view and top K are the defaults of every other option."), QStringLiteral("FILE")},
            {QStringLiteral("text"), QStringLiteral("Text to tokenize."), QStringLiteral("TEXT")},
            {QStringLiteral("text-file"), QStringLiteral("Text to tokenize, read from FILE byte for byte (- for standard input)."), QStringLiteral("FILE")},
            {QStringLiteral("prompt"), QStringLiteral("Prompt to run."), QStringLiteral("TEXT")},
            {QStringLiteral("prompt-file"), QStringLiteral("Prompt to run, read from FILE byte for byte (- for standard input)."), QStringLiteral("FILE")},
            {QStringLiteral("top"), QStringLiteral("How many entries to list (default 10)."), QStringLiteral("K"), QStringLiteral("10")},
            {QStringLiteral("truncate"), QStringLiteral("Keep the last n_ctx tokens of an overlong prompt instead of refusing it.")},
            {QStringLiteral("node"), QStringLiteral("Node name: mlp:L:N@T, attn:L:H@Q,K, mlp_sae:L:I@T, attn_sae:L:I@T, resid_sae:L:I@T, emb@T."), QStringLiteral("NAME")},
            {QStringLiteral("mlp-sae"), QStringLiteral("MLP autoencoder for layer L (repeatable): L=PATH or L:location=PATH."), QStringLiteral("L=PATH")},
            {QStringLiteral("attn-sae"), QStringLiteral("Attention autoencoder for layer L (repeatable)."), QStringLiteral("L=PATH")},
            {QStringLiteral("resid-sae"), QStringLiteral("Residual-stream autoencoder for layer L (repeatable): L:resid_pre=PATH etc."), QStringLiteral("L=PATH")},
            {QStringLiteral("target"), QStringLiteral("Target token (a single token, e.g. ' Mary'); repeatable (the objective uses their mean)."), QStringLiteral("TOK")},
            {QStringLiteral("distractor"), QStringLiteral("Distractor token (a single token); repeatable."), QStringLiteral("TOK")},
            {QStringLiteral("objective"), QStringLiteral("logit_diff (default), logit_minus_mean or prob."), QStringLiteral("KIND")},
            {QStringLiteral("ablate"), QStringLiteral("Ablate a node: NODE[=VALUE] (default 0), e.g. mlp:1:5@3, attn:0:2@-1, attn:0:2@7,3, "
                                                      "attn_sae:1:9@*; repeatable."), QStringLiteral("NODE=V")},
            {QStringLiteral("trace"), QStringLiteral("Trace upstream from a node: its pre-activation (neurons, latents) or its attention "
                                                     "score (heads, attn:L:H@Q,K) becomes the objective."), QStringLiteral("NODE")},
            {QStringLiteral("through"), QStringLiteral("--trace of a head: q, k, qk (default) or v."), QStringLiteral("q|k|qk|v")},
            {QStringLiteral("downstream"), QStringLiteral("--through v: the downstream node whose gradient the value write is projected on."), QStringLiteral("NODE")},
            {QStringLiteral("downstream-through"), QStringLiteral("A downstream head's trace: q, k or qk (default)."), QStringLiteral("q|k|qk")},
            {QStringLiteral("prompt2"), QStringLiteral("nodes: a second prompt, run with the same ablations and trace."), QStringLiteral("TEXT")},
            {QStringLiteral("prompt2-file"), QStringLiteral("nodes: the second prompt, read from FILE (- for standard input)."), QStringLiteral("FILE")},
            {QStringLiteral("target2"), QStringLiteral("The second prompt's target (repeatable; default: the first prompt's)."), QStringLiteral("TOK")},
            {QStringLiteral("distractor2"), QStringLiteral("The second prompt's distractor (repeatable)."), QStringLiteral("TOK")},
            {QStringLiteral("vectors"), QStringLiteral("node: also print the residual write and read vectors.")},
            {QStringLiteral("per-unit"), QStringLiteral("node: write tokens per unit of positive activation instead of in this context.")},
            {QStringLiteral("view"), QStringLiteral("figure: write, write_per_unit, read, read_k, pairs, pairs2 or activation."), QStringLiteral("VIEW")},
            {QStringLiteral("scale"), QStringLiteral("figure: PNG scale factor (default 2)."), QStringLiteral("S"), QStringLiteral("2")},
            {QStringLiteral("out"), QStringLiteral("Output: a directory (make-random-model) or a .png/.svg/.pdf/.csv file (figure)."), QStringLiteral("PATH")},
            {QStringLiteral("layers"), QStringLiteral("n_layer (default 12)."), QStringLiteral("N"), QStringLiteral("12")},
            {QStringLiteral("heads"), QStringLiteral("n_head (default 12)."), QStringLiteral("N"), QStringLiteral("12")},
            {QStringLiteral("d-model"), QStringLiteral("n_embd (default 768)."), QStringLiteral("N"), QStringLiteral("768")},
            {QStringLiteral("d-mlp"), QStringLiteral("MLP width (default 4·n_embd)."), QStringLiteral("N")},
            {QStringLiteral("n-ctx"), QStringLiteral("n_positions (default 1024)."), QStringLiteral("N"), QStringLiteral("1024")},
            {QStringLiteral("vocab"), QStringLiteral("vocab_size (default 50257)."), QStringLiteral("N"), QStringLiteral("50257")},
            {QStringLiteral("seed"), QStringLiteral("Random seed (default 0)."), QStringLiteral("N"), QStringLiteral("0")},
            {QStringLiteral("dtype"), QStringLiteral("Storage dtype: f32, f16 or bf16 (default f32)."), QStringLiteral("T"), QStringLiteral("f32")},
            {QStringLiteral("tokenizer"), QStringLiteral("Folder with vocab.json + merges.txt to copy into the model."), QStringLiteral("DIR")},
            {QStringLiteral("corpus"), QStringLiteral("index/examples: a .txt file (a document per line), a folder of .txt files or a .jsonl file."), QStringLiteral("PATH")},
            {QStringLiteral("tokens"), QStringLiteral("index: index only the first N tokens of the corpus."), QStringLiteral("N")},
        };
        m_parser.addOptions(options);
    }

    // Options that take one value and may be given several times (their values add up).
    static bool repeatable(const QString& name)
    {
        static const QStringList names{QStringLiteral("mlp-sae"), QStringLiteral("attn-sae"),    QStringLiteral("resid-sae"),
                                       QStringLiteral("target"),  QStringLiteral("distractor"),  QStringLiteral("ablate"),
                                       QStringLiteral("target2"), QStringLiteral("distractor2")};
        return names.contains(name);
    }

    // Refuses what the command would otherwise silently ignore: an option given twice where only one value
    // counts (QCommandLineParser keeps the last), and an intervention option (product.md §5.1) on a command
    // that does not take it. Options a --session supplies are not checked: a session holds them all.
    void checkOptionsOf(const QString& command) const
    {
        for (const QString& name : m_parser.optionNames()) {
            if (!repeatable(name) && m_parser.values(name).size() > 1)
                throw UsageError("--" + str(name) + ": given " + std::to_string(m_parser.values(name).size()) +
                                 " times; it takes one value");
        }
        const bool analysis = command == u"node" || command == u"nodes" || command == u"figure";
        const struct {
            const char* option;
            bool taken;
            const char* takenBy;
        } rules[] = {
            {"ablate", analysis || command == u"forward", "forward, node, nodes and figure"},
            {"objective", analysis, "node, nodes and figure"},
            {"target", analysis, "node, nodes and figure"},
            {"distractor", analysis, "node, nodes and figure"},
            {"trace", analysis, "node, nodes and figure"},
            {"through", analysis, "node, nodes and figure (with --trace)"},
            {"downstream", analysis, "node, nodes and figure (with --trace and --through v)"},
            {"downstream-through", analysis, "node, nodes and figure (with --downstream)"},
            // node and figure explain themselves why they take no second prompt.
            {"prompt2", analysis, "nodes"},
            {"prompt2-file", analysis, "nodes"},
            {"target2", command == u"nodes", "nodes (with --prompt2)"},
            {"distractor2", command == u"nodes", "nodes (with --prompt2)"},
        };
        for (const auto& rule : rules) {
            if (!rule.taken && m_parser.isSet(QString::fromLatin1(rule.option)))
                throw UsageError(std::string("--") + rule.option + ": the " + str(command) + " command does not take it (" +
                                 rule.takenBy + " do)");
        }
    }

    // What a saved session says for an option the command line left out (nothing without --session).
    std::optional<QString> fromSession(const QString& name) const
    {
        if (!m_session)
            return std::nullopt;
        const cs::Session& s = *m_session;
        const auto nonEmpty = [](const std::string& v) { return v.empty() ? std::nullopt : std::optional(QString::fromStdString(v)); };
        if (name == u"prompt")
            return nonEmpty(s.prompt);
        if (name == u"objective")
            return nonEmpty(s.objective.kind);
        if (name == u"prompt2")
            return s.secondPrompt ? std::optional(QString::fromStdString(s.secondPrompt->prompt)) : std::nullopt;
        if (name == u"node")
            return s.selectedNode ? nonEmpty(*s.selectedNode) : std::nullopt;
        if (name == u"top")
            return QString::number(s.view.topK);
        if (name == u"view") {
            if (s.view.inspectorTab == "write" && s.view.perUnitWrite)
                return QStringLiteral("write_per_unit");
            return nonEmpty(s.view.inspectorTab);
        }
        return std::nullopt;
    }

    QString required(const QString& name) const
    {
        if (m_parser.isSet(name))
            return m_parser.value(name);
        if (const auto v = fromSession(name))
            return *v;
        throw UsageError("missing --" + str(name) + (m_session ? " (the session has none either)" : ""));
    }

    // --NAME-FILE: the text's bytes exactly as stored (NUL bytes, several lines, invalid UTF-8 included: the
    // core replaces invalid UTF-8 and warns). A command-line argument cannot carry such bytes.
    std::optional<std::string> textFromFile(const QString& name) const
    {
        const QString fileOption = name + QStringLiteral("-file");
        if (!m_parser.isSet(fileOption))
            return std::nullopt;
        if (m_parser.isSet(name))
            throw UsageError("--" + str(name) + " and --" + str(fileOption) + ": give one of them");
        const std::string file = str(m_parser.value(fileOption));
        if (file != "-")
            return cs::readRegularFile(file, cs::kMaxDocumentBytes);
        if (m_stdinTaken)
            throw UsageError("--" + str(fileOption) + " -: standard input is already read by another option");
        m_stdinTaken = true;
        std::string text;
        char buffer[1 << 16];
        for (;;) {
            const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw cs::InputError("--" + str(fileOption) + " -: cannot read standard input: " + std::strerror(errno));
            if (n == 0)
                break;
            if (text.size() + static_cast<std::size_t>(n) > cs::kMaxDocumentBytes)
                throw cs::InputError("--" + str(fileOption) + " -: standard input holds more than " +
                                     std::to_string(cs::kMaxDocumentBytes) + " bytes");
            text.append(buffer, static_cast<std::size_t>(n));
        }
        return text;
    }

    // A text option (text, prompt, prompt2) from --NAME, --NAME-file or the session.
    std::string textOption(const QString& name) const
    {
        if (auto t = textFromFile(name))
            return *t;
        return str(required(name));
    }

    std::optional<std::string> optionalTextOption(const QString& name) const
    {
        if (auto t = textFromFile(name))
            return t;
        return optional(name);
    }

    int tokenize()
    {
        const std::string text = textOption(QStringLiteral("text"));
        bool replaced = false;
        cs::sanitizeUtf8(text, &replaced);
        if (replaced)
            printWarnings({"text: invalid UTF-8 replaced by U+FFFD"});
        return print(cs::tokenizeJson(*model(), text));
    }

    int intOption(const QString& name) const
    {
        bool ok = false;
        const QString text = m_parser.isSet(name) ? m_parser.value(name) : fromSession(name).value_or(m_parser.value(name));
        const int v = text.toInt(&ok);
        if (!ok)
            throw UsageError("--" + str(name) + ": '" + str(text) + "' is not an integer");
        return v;
    }

    std::shared_ptr<const cs::Gpt2Model> model() const
    {
        std::filesystem::path dir;
        if (m_parser.isSet(QStringLiteral("model"))) {
            dir = str(m_parser.value(QStringLiteral("model")));
        } else if (m_session && !m_session->modelPath.empty()) {
            dir = m_session->modelPath;
        } else {
            const auto demo = cs::findBundledDemoModel(str(QCoreApplication::applicationDirPath()));
            if (!demo)
                throw UsageError("no --model given and the bundled demo model was not found");
            dir = *demo;
        }
        auto m = cs::loadHfGpt2(dir);
        for (const auto& w : m->warnings)
            std::cerr << "warning: " << w << '\n';
        return m;
    }

    int forward()
    {
        std::vector<std::string> warnings;
        const auto doc = cs::forwardJson(*model(), analysisQuery(), saeFlags(), intOption(QStringLiteral("top")), &warnings);
        printWarnings(warnings);
        return print(doc);
    }

    static void printWarnings(const std::vector<std::string>& warnings)
    {
        for (const auto& w : warnings)
            std::cerr << "warning: " << w << '\n';
    }

    std::vector<std::string> values(const QString& name) const
    {
        std::vector<std::string> out;
        for (const QString& v : m_parser.values(name))
            out.push_back(str(v));
        return out;
    }

    // The objective, trace, ablations and second prompt of every analysis command (product.md §5.1).
    // Options given on the command line win; a session supplies the rest. Targets and distractors go
    // together, as do the trace's options, so a session's half never mixes with the command line's.
    cs::AnalysisQuery analysisQuery() const
    {
        cs::AnalysisQuery q;
        q.prompt = textOption(QStringLiteral("prompt"));
        q.overlong = overlong();
        const bool objectiveOnCommandLine = m_parser.isSet(QStringLiteral("target")) || m_parser.isSet(QStringLiteral("distractor"));
        if (objectiveOnCommandLine || !m_session) {
            q.objective.targets = values(QStringLiteral("target"));
            q.objective.distractors = values(QStringLiteral("distractor"));
        } else {
            q.objective.targets = m_session->objective.targets;
            q.objective.distractors = m_session->objective.distractors;
        }
        if (const auto kind = optional(QStringLiteral("objective"))) {
            const auto k = cs::logitObjectiveFromName(*kind);
            if (!k)
                throw UsageError("--objective: '" + *kind + "' is not logit_diff, logit_minus_mean or prob");
            q.objective.kind = *k;
        }
        q.ablations.clear();
        const std::vector<std::string> ablations =
            m_parser.isSet(QStringLiteral("ablate")) || !m_session ? values(QStringLiteral("ablate")) : m_session->ablations;
        for (const auto& a : ablations)
            q.ablations.push_back(cs::AblationSpec::parse(a));
        q.trace = traceSpec();
        if (const auto second = optionalTextOption(QStringLiteral("prompt2"))) {
            cs::AnalysisQuery::SecondPrompt p;
            p.prompt = *second;
            if (m_parser.isSet(QStringLiteral("target2")) || m_parser.isSet(QStringLiteral("distractor2")) || !m_session ||
                !m_session->secondPrompt) {
                p.targets = values(QStringLiteral("target2"));
                p.distractors = values(QStringLiteral("distractor2"));
            } else {
                p.targets = m_session->secondPrompt->targets;
                p.distractors = m_session->secondPrompt->distractors;
            }
            q.second = p;
        } else if (m_parser.isSet(QStringLiteral("target2")) || m_parser.isSet(QStringLiteral("distractor2"))) {
            throw UsageError(std::string(m_parser.isSet(QStringLiteral("target2")) ? "--target2" : "--distractor2") + ": needs --prompt2");
        }
        return q;
    }

    // A node name given to `flag`; its error says which flag it came from.
    static cs::NodeRef nodeOption(const std::string& flag, const std::string& text)
    {
        try {
            return cs::NodeRef::parse(text);
        } catch (const cs::InputError& e) {
            throw cs::InputError(flag + ": " + e.what());
        }
    }

    std::optional<cs::TraceSpec> traceSpec() const
    {
        const auto through = [](const std::string& flag, const std::string& text) {
            const auto t = cs::traceThroughFromName(text);
            if (!t)
                throw UsageError(flag + ": '" + text + "' is not q, k, qk or v");
            return *t;
        };
        const bool onCommandLine = m_parser.isSet(QStringLiteral("trace"));
        cs::TraceSpec t;
        if (onCommandLine || !m_session || !m_session->trace) {
            for (const char* flag : {"through", "downstream", "downstream-through"}) {
                if (!onCommandLine && m_parser.isSet(QString::fromLatin1(flag)))
                    throw UsageError(std::string("--") + flag + ": needs --trace");
            }
            if (!onCommandLine)
                return std::nullopt;
            t.node = nodeOption("--trace", str(m_parser.value(QStringLiteral("trace"))));
            if (m_parser.isSet(QStringLiteral("through")))
                t.through = through("--through", str(m_parser.value(QStringLiteral("through"))));
            if (m_parser.isSet(QStringLiteral("downstream")))
                t.downstream = nodeOption("--downstream", str(m_parser.value(QStringLiteral("downstream"))));
            if (m_parser.isSet(QStringLiteral("downstream-through")))
                t.downstreamThrough = through("--downstream-through", str(m_parser.value(QStringLiteral("downstream-through"))));
        } else {
            const cs::Session::Trace& s = m_session->trace.value();
            t.node = nodeOption("the session's trace", s.node);
            if (!s.through.empty())
                t.through = through("the session's trace.through", s.through);
            if (!s.downstream.empty())
                t.downstream = nodeOption("the session's trace.downstream", s.downstream);
            if (!s.downstreamThrough.empty())
                t.downstreamThrough = through("the session's trace.downstream_through", s.downstreamThrough);
        }
        t.validate();
        return t;
    }

    std::optional<std::string> optional(const QString& name) const
    {
        if (m_parser.isSet(name))
            return str(m_parser.value(name));
        if (const auto v = fromSession(name))
            return str(*v);
        return std::nullopt;
    }

    cs::SaeFlags saeFlags() const
    {
        cs::SaeFlags f;
        for (const QString& v : m_parser.values(QStringLiteral("mlp-sae")))
            f.mlp.push_back(str(v));
        for (const QString& v : m_parser.values(QStringLiteral("attn-sae")))
            f.attn.push_back(str(v));
        for (const QString& v : m_parser.values(QStringLiteral("resid-sae")))
            f.resid.push_back(str(v));
        // The session's autoencoders, unless the command line names its own.
        if (m_session && f.mlp.empty() && f.attn.empty() && f.resid.empty())
            for (const auto& a : m_session->autoencoders)
                (a.role == cs::SaeRole::Mlp ? f.mlp : a.role == cs::SaeRole::Attn ? f.attn : f.resid).push_back(a.spec);
        return f;
    }

    cs::OverlongPrompt overlong() const
    {
        return m_parser.isSet(QStringLiteral("truncate")) ? cs::OverlongPrompt::KeepLast : cs::OverlongPrompt::Refuse;
    }

    int node()
    {
        cs::NodeQuery q;
        q.analysis = analysisQuery();
        q.node = str(required(QStringLiteral("node")));
        q.saes = saeFlags();
        q.topK = intOption(QStringLiteral("top"));
        q.vectors = m_parser.isSet(QStringLiteral("vectors"));
        q.perUnit = m_parser.isSet(QStringLiteral("per-unit"));
        std::vector<std::string> warnings;
        const auto doc = cs::nodeJson(*model(), q, &warnings);
        printWarnings(warnings);
        return print(doc);
    }

    int nodes()
    {
        cs::NodesQuery q;
        q.analysis = analysisQuery();
        q.saes = saeFlags();
        q.topK = intOption(QStringLiteral("top"));
        std::vector<std::string> warnings;
        const auto doc = cs::nodesJson(*model(), q, &warnings);
        printWarnings(warnings);
        return print(doc);
    }

    // The inspector's charts, drawn headless by the same code as the window (product.md §5).
    int figure()
    {
        const cs::NodeRef parsed = cs::NodeRef::parse(str(required(QStringLiteral("node"))));
        const QString view = required(QStringLiteral("view"));
        const QString out = required(QStringLiteral("out"));
        bool okScale = false;
        const double scale = m_parser.value(QStringLiteral("scale")).toDouble(&okScale);
        if (!okScale || scale <= 0 || scale > 16)
            throw UsageError("--scale: must be a number in (0, 16]");
        const int topK = intOption(QStringLiteral("top"));
        if (topK < 1)
            throw UsageError("--top: must be at least 1"); // as node and nodes say
        const auto m = model();
        const cs::SaeSet saes = cs::loadSaeFlags(*m, saeFlags());
        std::vector<std::string> warnings;
        const cs::AnalysisQuery query = analysisQuery();
        if (query.second)
            throw UsageError("--prompt2: a figure shows one prompt (use the nodes command to compare two)");
        cs::checkInterventionNodes(*m, saes, query);
        const cs::ui::NodeView v = cs::ui::computeNodeView(*m, saes, query, parsed, topK, &warnings);
        printWarnings(warnings);
        cs::ui::FigureData fig;
        fig.scale = scale;
        fig.provenance = v.provenance;
        if (view == u"write" || view == u"write_per_unit") {
            fig.data = view == u"write" ? v.writeInContext : v.writePerUnit;
            fig.provenance.metric = view == u"write" ? QStringLiteral("write tokens in context") : QStringLiteral("write tokens per unit activation");
        } else if (view == u"read" || view == u"read_k") {
            const int i = view == u"read" ? 0 : 1;
            if (i >= v.reads.size())
                throw UsageError("--view " + str(view) + ": node " + v.name.toStdString() + " has no such read direction");
            fig.data = v.reads[i];
            fig.provenance.metric = v.reads[i].title;
        } else if (view == u"pairs" || view == u"pairs2") {
            const int i = view == u"pairs" ? 0 : 1;
            if (i >= v.pairMaps.size())
                throw UsageError("--view " + str(view) + ": " + (v.pairMapsNote.isEmpty() ? std::string("no such map") : str(v.pairMapsNote)));
            fig.data = v.pairMaps[i];
            fig.provenance.metric = v.pairMaps[i].metric;
        } else if (view == u"activation") {
            fig.data = cs::ui::ActivationSeries{QStringLiteral("Activation of %1 by token").arg(v.name), v.tokens, v.activationByToken};
            fig.provenance.metric = QStringLiteral("activation");
        } else {
            throw UsageError("--view: '" + str(view) + "' is not write, write_per_unit, read, read_k, pairs, pairs2 or activation");
        }
        QString error;
        if (!cs::ui::renderFigure(fig, out, &error))
            throw UsageError(str(error));
        // product.md §5.1: every command that takes --ablate echoes the ablations it ran under.
        nlohmann::json ablations = nlohmann::json::array();
        for (const auto& a : query.ablations)
            ablations.push_back(a.spec());
        return print({{"node", v.name.toStdString()}, {"view", str(view)}, {"out", str(out)}, {"ablations", ablations}});
    }

    int makeRandomModel()
    {
        cs::RandomModelOptions o;
        o.config.nLayer = intOption(QStringLiteral("layers"));
        o.config.nHead = intOption(QStringLiteral("heads"));
        o.config.dModel = intOption(QStringLiteral("d-model"));
        o.config.dMlp = m_parser.isSet(QStringLiteral("d-mlp")) ? intOption(QStringLiteral("d-mlp")) : 4 * o.config.dModel;
        o.config.nCtx = intOption(QStringLiteral("n-ctx"));
        o.config.vocabSize = intOption(QStringLiteral("vocab"));
        o.seed = static_cast<std::uint64_t>(intOption(QStringLiteral("seed")));
        const QString dtype = m_parser.value(QStringLiteral("dtype"));
        if (dtype == u"f32")
            o.dtype = cs::StorageDType::F32;
        else if (dtype == u"f16")
            o.dtype = cs::StorageDType::F16;
        else if (dtype == u"bf16")
            o.dtype = cs::StorageDType::BF16;
        else
            throw UsageError("--dtype: '" + str(dtype) + "' is not f32, f16 or bf16");
        if (m_parser.isSet(QStringLiteral("tokenizer")))
            o.tokenizerDir = str(m_parser.value(QStringLiteral("tokenizer")));
        const std::filesystem::path out = str(required(QStringLiteral("out")));
        cs::writeRandomHfModel(out, o);
        return print({{"model", out.string()}, {"config", o.config.toJson()}, {"seed", o.seed}});
    }

    static int print(const nlohmann::json& doc)
    {
        // Token strings may hold bytes that are not valid UTF-8 only if a bug let them through; replace
        // rather than throw so the output stays parseable.
        std::cout << doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
        return 0;
    }

    QStringList m_args;
    QCommandLineParser m_parser;
    std::optional<cs::Session> m_session; // from --session FILE
    mutable bool m_stdinTaken = false;    // standard input can be read once (--*-file -)
};

} // namespace

int cs::runCli(const QStringList& arguments)
{
    try {
        cs::initializeRuntime();
        return Cli(arguments).run();
    } catch (const UsageError& e) {
        std::cerr << "circuitscope-cli: " << cs::oneLine(e.what()) << '\n';
        return kExitBadInput;
    } catch (const cs::InputError& e) {
        std::cerr << "circuitscope-cli: " << cs::oneLine(e.what()) << '\n';
        return kExitBadInput;
    } catch (const c10::Error& e) {
        // libtorch's own messages carry a C++ backtrace; the user gets the first line only.
        std::cerr << "circuitscope-cli: internal error: " << cs::oneLine(e.what_without_backtrace()) << '\n';
        return kExitInternal;
    } catch (const std::exception& e) {
        std::cerr << "circuitscope-cli: internal error: " << cs::oneLine(e.what()) << '\n';
        return kExitInternal;
    }
}

void cs::silenceQtMessages()
{
    // Qt's own chatter (platform and path warnings) would break the "one line on stderr" contract;
    // the CLI reports its errors itself. CIRCUITSCOPE_DEBUG=1 lets Qt's messages through.
    if (qEnvironmentVariableIsEmpty("CIRCUITSCOPE_DEBUG"))
        qInstallMessageHandler([](QtMsgType, const QMessageLogContext&, const QString&) {});
}
