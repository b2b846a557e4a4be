// circuitscope-train: trains the bundled demo model (corpus → tokenizer → model → autoencoders →
// evaluation). Argument parsing only; the pipeline lives in core/train.

#include "core/train/pipeline.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"

#include <c10/util/Exception.h>

#include <QCommandLineParser>
#include <QCoreApplication>

#include <iostream>

namespace {

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string str(const QString& s)
{
    return s.toStdString();
}

long long integerOption(const QCommandLineParser& p, const QCommandLineOption& o, long long min)
{
    bool ok = false;
    const long long v = p.value(o).toLongLong(&ok);
    if (!ok || v < min)
        throw UsageError("--" + str(o.names().constFirst()) + " must be an integer ≥ " + std::to_string(min) + ", not '" +
                         str(p.value(o)) + "'");
    return v;
}

double numberOption(const QCommandLineParser& p, const QCommandLineOption& o)
{
    bool ok = false;
    const double v = p.value(o).toDouble(&ok);
    if (!ok || !(v > 0))
        throw UsageError("--" + str(o.names().constFirst()) + " must be a positive number, not '" + str(p.value(o)) + "'");
    return v;
}

} // namespace

int main(int argc, char** argv)
{
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("circuitscope-train"));
    std::string command = "circuitscope-train";
    for (int i = 1; i < argc; ++i)
        command += std::string(" ") + argv[i];

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral(
        "Trains a small GPT-2 model with its tokenizer and sparse autoencoders (the bundled demo).\n"
        "Stages: corpus, bpe, model, sae, eval, heldout, or all (in that order)."));
    parser.addHelpOption();
    parser.addPositionalArgument(QStringLiteral("stage"), QStringLiteral("corpus | bpe | model | sae | eval | heldout | all"));
    const QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Output bundle directory."), QStringLiteral("DIR"));
    const QCommandLineOption work(QStringLiteral("work"), QStringLiteral("Work directory for the corpus and checkpoints (default: <out>-work)."), QStringLiteral("DIR"));
    const QCommandLineOption seed(QStringLiteral("seed"), QStringLiteral("Random seed (default 1)."), QStringLiteral("N"), QStringLiteral("1"));
    const QCommandLineOption toy(QStringLiteral("toy"), QStringLiteral("Tiny preset: every stage in seconds (for CI)."));
    const QCommandLineOption documents(QStringLiteral("documents"), QStringLiteral("Corpus documents."), QStringLiteral("N"));
    const QCommandLineOption vocab(QStringLiteral("vocab"), QStringLiteral("Largest vocabulary size."), QStringLiteral("N"));
    const QCommandLineOption layers(QStringLiteral("layers"), QStringLiteral("Transformer layers."), QStringLiteral("N"));
    const QCommandLineOption heads(QStringLiteral("heads"), QStringLiteral("Attention heads."), QStringLiteral("N"));
    const QCommandLineOption dModel(QStringLiteral("d-model"), QStringLiteral("Residual width (d_mlp = 4×)."), QStringLiteral("N"));
    const QCommandLineOption context(QStringLiteral("context"), QStringLiteral("Context length."), QStringLiteral("N"));
    const QCommandLineOption steps(QStringLiteral("steps"), QStringLiteral("Model training steps."), QStringLiteral("N"));
    const QCommandLineOption batch(QStringLiteral("batch"), QStringLiteral("Sequences per step."), QStringLiteral("N"));
    const QCommandLineOption warmup(QStringLiteral("warmup"), QStringLiteral("Warm-up steps."), QStringLiteral("N"));
    const QCommandLineOption lr(QStringLiteral("lr"), QStringLiteral("Peak learning rate."), QStringLiteral("X"));
    const QCommandLineOption saeSteps(QStringLiteral("sae-steps"), QStringLiteral("Autoencoder training steps."), QStringLiteral("N"));
    const QCommandLineOption saeL1(QStringLiteral("sae-l1"), QStringLiteral("Autoencoder sparsity coefficient."), QStringLiteral("X"));
    const QCommandLineOption stopAfter(QStringLiteral("stop-after"), QStringLiteral("Stop model training after N steps (checkpointed; rerun to resume)."), QStringLiteral("N"));
    const QCommandLineOption dtype(QStringLiteral("dtype"), QStringLiteral("Storage: f16 or f32."), QStringLiteral("TYPE"));
    parser.addOptions({out, work, seed, toy, documents, vocab, layers, heads, dModel, context, steps, batch, warmup, lr,
                       saeSteps, saeL1, stopAfter, dtype});

    try {
        if (!parser.parse(QCoreApplication::arguments()))
            throw UsageError(str(parser.errorText()));
        if (parser.isSet(QStringLiteral("help")))
            parser.showHelp(0);
        const QStringList positional = parser.positionalArguments();
        if (positional.size() != 1)
            throw UsageError("expected exactly one stage (corpus, bpe, model, sae, eval, heldout or all)");
        const cs::train::Stage stage = cs::train::stageFromName(str(positional.constFirst()));
        if (!parser.isSet(out))
            throw UsageError("--out DIR is required");

        cs::train::PipelineOptions o = parser.isSet(toy) ? cs::train::toyPreset() : cs::train::fullPreset();
        o.outDir = str(parser.value(out));
        if (parser.isSet(work))
            o.workDir = str(parser.value(work));
        o.seed = static_cast<std::uint64_t>(integerOption(parser, seed, 0));
        if (parser.isSet(documents)) o.corpus.documents = static_cast<int>(integerOption(parser, documents, 1));
        if (parser.isSet(vocab)) o.bpe.vocabSize = static_cast<int>(integerOption(parser, vocab, 257));
        if (parser.isSet(layers)) o.model.config.nLayer = static_cast<int>(integerOption(parser, layers, 1));
        if (parser.isSet(heads)) o.model.config.nHead = static_cast<int>(integerOption(parser, heads, 1));
        if (parser.isSet(dModel)) {
            o.model.config.dModel = static_cast<int>(integerOption(parser, dModel, 1));
            o.model.config.dMlp = 4 * o.model.config.dModel;
        }
        if (parser.isSet(context)) o.model.config.nCtx = static_cast<int>(integerOption(parser, context, 2));
        if (parser.isSet(steps)) o.model.steps = static_cast<int>(integerOption(parser, steps, 1));
        if (parser.isSet(batch)) o.model.batchSize = static_cast<int>(integerOption(parser, batch, 1));
        if (parser.isSet(warmup)) o.model.warmupSteps = static_cast<int>(integerOption(parser, warmup, 0));
        if (parser.isSet(lr)) o.model.learningRate = numberOption(parser, lr);
        if (parser.isSet(saeSteps)) o.sae.steps = static_cast<int>(integerOption(parser, saeSteps, 1));
        if (parser.isSet(saeL1)) o.sae.l1Coefficient = numberOption(parser, saeL1);
        if (parser.isSet(stopAfter)) o.model.stopAfter = static_cast<int>(integerOption(parser, stopAfter, 1));
        if (parser.isSet(dtype)) {
            const QString t = parser.value(dtype).toLower();
            if (t == QLatin1String("f16")) o.storage = cs::StorageDType::F16;
            else if (t == QLatin1String("f32")) o.storage = cs::StorageDType::F32;
            else throw UsageError("--dtype must be f16 or f32, not '" + str(parser.value(dtype)) + "'");
        }
        o.command = command;
        o.log = [](const std::string& line) { std::cout << line << std::endl; };

        cs::initializeRuntime();
        cs::train::runStage(stage, o);
        return 0;
    } catch (const UsageError& e) {
        std::cerr << "circuitscope-train: " << e.what() << "\n(see --help)\n";
        return 2;
    } catch (const cs::InputError& e) {
        std::cerr << "circuitscope-train: " << e.what() << '\n';
        return 2;
    } catch (const c10::Error& e) {
        // libtorch's messages carry a C++ backtrace; the first line is the message.
        std::cerr << "circuitscope-train: internal error: " << cs::oneLine(e.what_without_backtrace()) << '\n';
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "circuitscope-train: internal error: " << cs::oneLine(e.what()) << '\n';
        return 1;
    }
}
