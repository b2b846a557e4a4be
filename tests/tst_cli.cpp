// The circuitscope-cli contract (product.md §5): the JSON keys of info/tokenize/forward, and for bad
// input exactly one line on stderr with exit code 2 — never a crash or a stack trace.

#include "test_support.h"

#include <QFile>
#include <QImage>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

namespace {

struct CliResult {
    int exitCode = -1;
    QProcess::ExitStatus status = QProcess::CrashExit;
    std::string out;
    QString err;
};

CliResult runCli(const QStringList& args)
{
    QProcess p;
    p.start(QStringLiteral(CLI_PATH), args);
    if (!p.waitForFinished(120000))
        qFatal("circuitscope-cli did not finish");
    return {p.exitCode(), p.exitStatus(), p.readAllStandardOutput().toStdString(), QString::fromUtf8(p.readAllStandardError())};
}

using cs::test::tinyModel;

// The same figure from two runs of the same computation (threads may order a sum differently).
bool close(const nlohmann::json& a, const nlohmann::json& b)
{
    const double x = a.get<double>(), y = b.get<double>();
    return std::abs(x - y) <= 1e-5 * std::max({1.0, std::abs(x), std::abs(y)});
}

} // namespace

class TestCli : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void infoHasTheContractKeys()
    {
        const auto r = runCli({QStringLiteral("info"), QStringLiteral("--model"), tinyModel()});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["n_layer"].get<int>(), 2);
        QCOMPARE(j["n_head"].get<int>(), 4);
        QCOMPARE(j["d_model"].get<int>(), 32);
        QCOMPARE(j["d_mlp"].get<int>(), 128);
        QCOMPARE(j["n_ctx"].get<int>(), 64);
        QCOMPARE(j["vocab_size"].get<int>(), 50257);
        // wte + wpe + 2 layers + ln_f; lm_head is tied and counted once.
        const long long d = 32, f = 128, v = 50257, ctx = 64;
        const long long layer = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
        QCOMPARE(j["parameters"].get<long long>(), v * d + ctx * d + 2 * layer + 2 * d);
        QVERIFY(j["threads"].get<int>() >= 1);
        QVERIFY(j["blas"].is_string());
    }

    void tokenizeListsIdsAndTokens()
    {
        const auto r = runCli({QStringLiteral("tokenize"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--text"),
                               QStringLiteral("When Mary and John")});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["ids"].get<std::vector<int>>(), (std::vector<int>{2215, 5335, 290, 1757}));
        QCOMPARE(j["tokens"].get<std::vector<std::string>>(), (std::vector<std::string>{"When", " Mary", " and", " John"}));
    }

    void forwardListsNextTokens()
    {
        const auto r = runCli({QStringLiteral("forward"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"),
                               QStringLiteral("The quick brown fox"), QStringLiteral("--top"), QStringLiteral("5")});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["ids"].size(), std::size_t(4));
        QCOMPARE(j["tokens"].size(), std::size_t(4));
        const auto& next = j["next_tokens"];
        QCOMPARE(next.size(), std::size_t(5));
        for (std::size_t i = 0; i < next.size(); ++i) {
            for (const char* key : {"id", "token", "logit", "prob"})
                QVERIFY(next[i].contains(key));
            QVERIFY(next[i]["prob"].get<double>() > 0 && next[i]["prob"].get<double>() < 1);
            if (i > 0)
                QVERIFY(next[i]["logit"].get<double>() <= next[i - 1]["logit"].get<double>());
        }
    }

    void nodeHasTheContractKeys_data()
    {
        QTest::addColumn<QString>("node");
        QTest::addColumn<bool>("isHead");
        QTest::addColumn<bool>("hasPairs");
        QTest::newRow("neuron") << QStringLiteral("mlp:1:7@-1") << false << false;
        QTest::newRow("head") << QStringLiteral("attn:1:2@-1,3") << true << false;
        QTest::newRow("attention latent") << QStringLiteral("attn_sae:1:10@-1") << false << true;
        QTest::newRow("embedding") << QStringLiteral("emb@2") << false << false;
    }
    void nodeHasTheContractKeys()
    {
        QFETCH(QString, node);
        QFETCH(bool, isHead);
        QFETCH(bool, hasPairs);
        const QString sae = QString::fromStdString((cs::test::dataDir() / "sae/resid_delta_attn.relu.pt").string());
        const auto r = runCli({QStringLiteral("node"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"),
                               QStringLiteral("When Mary and John went to the store, John gave a drink to"), QStringLiteral("--node"), node,
                               QStringLiteral("--attn-sae"), QStringLiteral("1=") + sae, QStringLiteral("--top"), QStringLiteral("4"),
                               QStringLiteral("--vectors"), QStringLiteral("--target"), QStringLiteral(" Mary"),
                               QStringLiteral("--distractor"), QStringLiteral(" John")});
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const auto j = nlohmann::json::parse(r.out);
        for (const char* key : {"node", "activation", "write", "pair_attribution", "residual_write", "direct_effect", "total_effect", "write_magnitude"})
            QVERIFY2(j.contains(key), key);
        QCOMPARE(j["write"]["top"].size(), std::size_t(4));
        QCOMPARE(j["write"]["bottom"].size(), std::size_t(4));
        for (const char* key : {"id", "token", "value"})
            QVERIFY(j["write"]["top"][0].contains(key));
        QCOMPARE(j["residual_write"].size(), std::size_t(32));
        // §5's "residual_read" for every node: [d floats], or null where the node has no single read
        // direction (a head reads at its query and at its key; the embedding reads nothing).
        QVERIFY(j.contains("residual_read"));
        if (isHead) {
            QVERIFY(j.contains("read_q") && j.contains("read_k") && !j.contains("read"));
            QVERIFY(j["residual_read"].is_null());
            QCOMPARE(j["residual_read_q"].size(), std::size_t(32));
            QCOMPARE(j["residual_read_k"].size(), std::size_t(32));
        } else {
            QVERIFY(j.contains("read"));
            QVERIFY(!j.contains("residual_read_q") && !j.contains("residual_read_k"));
            if (node.startsWith(QStringLiteral("emb"))) {
                QVERIFY(j["read"].is_null() && j["residual_read"].is_null());
            } else {
                QCOMPARE(j["residual_read"].size(), std::size_t(32));
            }
        }
        QCOMPARE(!j["pair_attribution"].is_null(), hasPairs);
        if (hasPairs)
            QCOMPARE(j["pair_attribution"].size(), std::size_t(14));
    }

    void nodesListsTheNodeTable()
    {
        const auto r = runCli({QStringLiteral("nodes"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"),
                               QStringLiteral("When Mary and John went to the store, John gave a drink to"), QStringLiteral("--target"),
                               QStringLiteral(" Mary"), QStringLiteral("--distractor"), QStringLiteral(" John"), QStringLiteral("--top"),
                               QStringLiteral("3")});
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const auto j = nlohmann::json::parse(r.out);
        QVERIFY(j["objective"].is_number());
        QVERIFY(!j["nodes"].empty() && j["nodes"].size() <= 12);
        for (const auto& n : j["nodes"])
            for (const char* key : {"node", "activation", "write_magnitude", "direct_effect", "total_effect"})
                QVERIFY(n.contains(key));
    }

    void figureWritesTheInspectorsCharts_data()
    {
        QTest::addColumn<QString>("node");
        QTest::addColumn<QString>("view");
        QTest::addColumn<QString>("ext");
        QTest::newRow("neuron write png") << QStringLiteral("mlp:1:7@-1") << QStringLiteral("write") << QStringLiteral("png");
        QTest::newRow("neuron read svg") << QStringLiteral("mlp:1:7@-1") << QStringLiteral("read") << QStringLiteral("svg");
        QTest::newRow("head K-read pdf") << QStringLiteral("attn:1:2@-1,1") << QStringLiteral("read_k") << QStringLiteral("pdf");
        QTest::newRow("head pairs png") << QStringLiteral("attn:1:2@-1,1") << QStringLiteral("pairs") << QStringLiteral("png");
        QTest::newRow("latent pairs csv") << QStringLiteral("attn_sae:1:10@-1") << QStringLiteral("pairs") << QStringLiteral("csv");
        QTest::newRow("activation csv") << QStringLiteral("mlp:0:3@2") << QStringLiteral("activation") << QStringLiteral("csv");
    }
    void figureWritesTheInspectorsCharts()
    {
        QFETCH(QString, node);
        QFETCH(QString, view);
        QFETCH(QString, ext);
        QTemporaryDir tmp;
        const QString out = tmp.filePath(QStringLiteral("fig.") + ext);
        const QString sae = QString::fromStdString((cs::test::dataDir() / "sae/resid_delta_attn.relu.pt").string());
        const auto r = runCli({QStringLiteral("figure"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"),
                               QStringLiteral("When Mary and John went to the store, John gave a drink to"), QStringLiteral("--node"), node,
                               QStringLiteral("--attn-sae"), QStringLiteral("1=") + sae, QStringLiteral("--view"), view,
                               QStringLiteral("--out"), out, QStringLiteral("--scale"), QStringLiteral("1")});
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        QFile f(out);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QByteArray bytes = f.readAll();
        if (ext == u"png")
            QVERIFY(!QImage::fromData(bytes).isNull());
        else if (ext == u"pdf")
            QVERIFY(bytes.startsWith("%PDF"));
        else if (ext == u"svg")
            QVERIFY(bytes.contains("<svg"));
        else
            QVERIFY(bytes.startsWith("# model: tiny-gpt2"));
    }

    void figureOfAMissingViewIsExitTwo()
    {
        QTemporaryDir tmp;
        const auto r = runCli({QStringLiteral("figure"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"), QStringLiteral("When Mary"),
                               QStringLiteral("--node"), QStringLiteral("mlp:1:3@-1"), QStringLiteral("--view"), QStringLiteral("pairs"),
                               QStringLiteral("--out"), tmp.filePath(QStringLiteral("x.png"))});
        QCOMPARE(r.exitCode, 2);
        QCOMPARE(r.err.count(u'\n'), 1);
        QVERIFY(!QFile::exists(tmp.filePath(QStringLiteral("x.png"))));
    }

    // `--session FILE` supplies the model, autoencoders, prompt, node, view and top K of a saved
    // session; the figure equals the one drawn from the same values given as flags.
    void figureFromASessionEqualsTheFlags()
    {
        QTemporaryDir tmp;
        const std::string sae = (cs::test::dataDir() / "sae/resid_delta_attn.relu.pt").string();
        const nlohmann::json session = {
            {"schema", "circuitscope-session"}, {"version", 1}, {"model", tinyModel().toStdString()},
            {"autoencoders", {{{"role", "attn"}, {"spec", "1=" + sae}}}},
            {"prompt", "When Mary and John went to the store, John gave a drink to"}, {"target", " Mary"},
            {"distractor", " John"}, {"token_of_interest", -1}, {"selected_node", "attn_sae:1:10@-1"},
            {"pins", nlohmann::json::array()},
            {"view", {{"metric", "activation"}, {"top_n", 16}, {"top_k", 5}, {"per_unit_write", false}, {"inspector_tab", "pairs"}}}};
        const QString file = tmp.filePath(QStringLiteral("s.circuitscope.json"));
        {
            QFile f(file);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QByteArray::fromStdString(session.dump(2)));
        }
        const QString fromSession = tmp.filePath(QStringLiteral("session.csv"));
        const auto r = runCli({QStringLiteral("figure"), QStringLiteral("--session"), file, QStringLiteral("--out"), fromSession});
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const QString fromFlags = tmp.filePath(QStringLiteral("flags.csv"));
        const auto r2 = runCli({QStringLiteral("figure"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"),
                                QStringLiteral("When Mary and John went to the store, John gave a drink to"),
                                QStringLiteral("--node"), QStringLiteral("attn_sae:1:10@-1"), QStringLiteral("--attn-sae"),
                                QStringLiteral("1=") + QString::fromStdString(sae), QStringLiteral("--view"), QStringLiteral("pairs"),
                                QStringLiteral("--top"), QStringLiteral("5"), QStringLiteral("--target"), QStringLiteral(" Mary"),
                                QStringLiteral("--distractor"), QStringLiteral(" John"), QStringLiteral("--out"), fromFlags});
        QVERIFY2(r2.exitCode == 0, qPrintable(r2.err));
        QFile a(fromSession), b(fromFlags);
        QVERIFY(a.open(QIODevice::ReadOnly) && b.open(QIODevice::ReadOnly));
        const QByteArray bytesA = a.readAll();
        QVERIFY(bytesA.startsWith("# model: tiny-gpt2"));
        QVERIFY(bytesA.contains("attn_sae:1:10"));
        QCOMPARE(bytesA, b.readAll());

        // Flags override the session: another node and view, and the session's top K (5) for `node`.
        const auto n = runCli({QStringLiteral("node"), QStringLiteral("--session"), file, QStringLiteral("--node"), QStringLiteral("mlp:1:7@-1")});
        QVERIFY2(n.exitCode == 0, qPrintable(n.err));
        const auto doc = nlohmann::json::parse(n.out);
        QCOMPARE(doc.at("node").get<std::string>().rfind("mlp:1:7@", 0), std::size_t(0));
        QCOMPARE(doc.at("write").at("top").size(), std::size_t(5));
        QVERIFY(doc.contains("direct_effect")); // the session's target applies

        // A corrupt session is one line and exit 2.
        QFile bad(tmp.filePath(QStringLiteral("bad.circuitscope.json")));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("{\"schema\": ");
        bad.close();
        const auto e = runCli({QStringLiteral("figure"), QStringLiteral("--session"), bad.fileName(), QStringLiteral("--out"), fromSession});
        QCOMPARE(e.exitCode, 2);
        QCOMPARE(e.err.count(u'\n'), 1);
        QVERIFY(e.err.contains(QStringLiteral("bad.circuitscope.json")));
    }

    void makeRandomModelWritesALoadableModel()
    {
        QTemporaryDir tmp;
        const QString out = tmp.filePath(QStringLiteral("rand"));
        const auto r = runCli({QStringLiteral("make-random-model"), QStringLiteral("--out"), out, QStringLiteral("--layers"),
                               QStringLiteral("1"), QStringLiteral("--heads"), QStringLiteral("2"), QStringLiteral("--d-model"),
                               QStringLiteral("8"), QStringLiteral("--n-ctx"), QStringLiteral("16"), QStringLiteral("--tokenizer"),
                               QString::fromStdString((cs::test::dataDir() / "gpt2-tokenizer").string())});
        QCOMPARE(r.exitCode, 0);
        const auto info = runCli({QStringLiteral("info"), QStringLiteral("--model"), out});
        QCOMPARE(info.exitCode, 0);
        QCOMPARE(nlohmann::json::parse(info.out)["d_mlp"].get<int>(), 32);
    }

    // product.md §5.1: the keys of forward/node/nodes under ablations, traces and two prompts.
    void interventionsHaveTheContractKeys()
    {
        const QString prompt = cs::test::kPrompt;
        const QStringList base{QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"), prompt, QStringLiteral("--top"), QStringLiteral("4")};
        // forward: ablated next tokens and the baseline's.
        auto r = runCli(QStringList{QStringLiteral("forward")} + base + QStringList{QStringLiteral("--ablate"), QStringLiteral("attn:1:0@-1"),
                                                                                  QStringLiteral("--ablate"), QStringLiteral("mlp:0:91@*=0.5")});
        QCOMPARE(r.exitCode, 0);
        auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["ablations"].get<std::vector<std::string>>(), (std::vector<std::string>{"attn:1:0@-1=0", "mlp:0:91@*=0.5"}));
        QCOMPARE(j["next_tokens"].size(), std::size_t(4));
        QCOMPARE(j["baseline_next_tokens"].size(), std::size_t(4));
        QVERIFY(j["next_tokens"][0]["logit"] != j["baseline_next_tokens"][0]["logit"]);

        // nodes with ablations and two targets: logits, token effects, baseline objective and rows.
        const QStringList objective{QStringLiteral("--target"), QStringLiteral(" Mary"), QStringLiteral("--target"), QStringLiteral(" drink"),
                                    QStringLiteral("--distractor"), QStringLiteral(" John")};
        r = runCli(QStringList{QStringLiteral("nodes")} + base + objective + QStringList{QStringLiteral("--ablate"), QStringLiteral("attn:1:0@-1")});
        QCOMPARE(r.exitCode, 0);
        j = nlohmann::json::parse(r.out);
        QCOMPARE(j["objective_kind"].get<std::string>(), std::string("logit_diff"));
        QVERIFY(j["objective"].is_number() && j["baseline"]["objective"].is_number());
        QVERIFY(j["objective"] != j["baseline"]["objective"]);
        QCOMPARE(j["logits"]["token"].get<int>(), 13);
        for (const char* key : {"top", "bottom"})
            QCOMPARE(j["logits"][key].size(), std::size_t(4));
        QCOMPARE(j["logits"]["target"].size(), std::size_t(2));
        QCOMPARE(j["logits"]["distractor"][0]["token"].get<std::string>(), std::string(" John"));
        for (const char* key : {"embedding", "mlp", "attn_from", "attn_to"})
            QCOMPARE(j["token_effects"][key].size(), std::size_t(14));
        QVERIFY(!j["token_effects"].contains("mlp_sae")); // no autoencoders: the key is absent
        QVERIFY(!j["nodes"].empty());
        for (const auto& row : j["nodes"])
            for (const char* key : {"node", "activation", "write_magnitude", "direct_effect", "total_effect", "baseline"})
                QVERIFY2(row.contains(key), key);

        // A trace: its kind, no target needed, logits at the traced token.
        r = runCli(QStringList{QStringLiteral("nodes")} + base + QStringList{QStringLiteral("--trace"), QStringLiteral("attn:1:2@9,3"),
                                                                            QStringLiteral("--through"), QStringLiteral("k")});
        QCOMPARE(r.exitCode, 0);
        j = nlohmann::json::parse(r.out);
        QCOMPARE(j["objective_kind"].get<std::string>(), std::string("attention_score"));
        QCOMPARE(j["logits"]["token"].get<int>(), 9);
        r = runCli(QStringList{QStringLiteral("node"), QStringLiteral("--node"), QStringLiteral("mlp:0:91@-1")} + base +
                   QStringList{QStringLiteral("--trace"), QStringLiteral("mlp:1:7@-1")});
        QCOMPARE(r.exitCode, 0);
        j = nlohmann::json::parse(r.out);
        QCOMPARE(j["objective_kind"].get<std::string>(), std::string("activation"));
        for (const char* key : {"direct_effect", "total_effect", "write_magnitude", "objective", "ablations"})
            QVERIFY2(j.contains(key), key);

        // Two prompts of different lengths: left, right and the matched rows.
        r = runCli(QStringList{QStringLiteral("nodes")} + base + objective +
                   QStringList{QStringLiteral("--prompt2"), QStringLiteral("When Mary and John went out, John gave it to")});
        QCOMPARE(r.exitCode, 0);
        j = nlohmann::json::parse(r.out);
        QVERIFY(j["left"]["nodes"].is_array() && j["right"]["nodes"].is_array());
        QVERIFY(j["left"]["tokens"].size() != j["right"]["tokens"].size());
        bool missing = false;
        for (const auto& row : j["nodes"]) {
            for (const char* key : {"node", "left", "right", "diff"})
                QVERIFY2(row.contains(key), key);
            if (row["left"].is_null() || row["right"].is_null())
                missing |= row["diff"].is_null();
            else
                QCOMPARE(row["diff"]["total_effect"].get<double>(),
                         row["right"]["total_effect"].get<double>() - row["left"]["total_effect"].get<double>());
        }
        QVERIFY(missing); // the last token of the longer prompt has no match

        // A figure made under ablations says so in its CSV header.
        QTemporaryDir tmp;
        const QString csv = tmp.filePath(QStringLiteral("ablated.csv"));
        r = runCli(QStringList{QStringLiteral("figure"), QStringLiteral("--node"), QStringLiteral("mlp:0:91@-1"), QStringLiteral("--view"),
                               QStringLiteral("activation"), QStringLiteral("--out"), csv} + base + objective +
                   QStringList{QStringLiteral("--ablate"), QStringLiteral("attn:1:0@-1")});
        QCOMPARE(r.exitCode, 0);
        QFile f(csv);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QVERIFY(QString::fromUtf8(f.readAll()).contains(QStringLiteral("ablated: attn:1:0@-1=0")));
    }

    // §5.1: with --prompt2, "left" and "right" are each the single-prompt document, so with ablations
    // each carries its baseline (objective and rows) and the echoed ablations; the same figures as the
    // single-prompt command on that prompt.
    void twoPromptsWithAblationsAreTwoSinglePromptDocuments()
    {
        const QString second = QStringLiteral("When Mary and John went out, John gave it to");
        const QStringList common{QStringLiteral("nodes"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--top"), QStringLiteral("3"),
                                 QStringLiteral("--target"), QStringLiteral(" Mary"), QStringLiteral("--distractor"), QStringLiteral(" John")};
        const QStringList ablate{QStringLiteral("--ablate"), QStringLiteral("attn:1:0@-1"), QStringLiteral("--ablate"), QStringLiteral("mlp:0:91@*=0.5")};
        const QStringList prompt{QStringLiteral("--prompt"), cs::test::kPrompt};
        auto r = runCli(common + prompt + ablate + QStringList{QStringLiteral("--prompt2"), second});
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const auto both = nlohmann::json::parse(r.out);
        r = runCli(common + prompt + ablate);
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const auto left = nlohmann::json::parse(r.out);
        r = runCli(common + QStringList{QStringLiteral("--prompt"), second} + ablate);
        QVERIFY2(r.exitCode == 0, qPrintable(r.err));
        const auto right = nlohmann::json::parse(r.out);
        const std::vector<std::string> echoed{"attn:1:0@-1=0", "mlp:0:91@*=0.5"};
        QCOMPARE(both["ablations"].get<std::vector<std::string>>(), echoed);
        for (const auto& [side, single] : {std::pair{"left", &left}, std::pair{"right", &right}}) {
            const auto& doc = both[side];
            for (const char* key : {"objective", "objective_kind", "ids", "tokens", "nodes", "logits", "token_effects", "baseline", "ablations"})
                QVERIFY2(doc.contains(key), (std::string(side) + ": " + key).c_str());
            // Every key of the single-prompt document, no other.
            for (const auto& [key, value] : single->items())
                QVERIFY2(doc.contains(key), (std::string(side) + ": " + key).c_str());
            QCOMPARE(doc.size(), single->size());
            QCOMPARE(doc["ablations"].get<std::vector<std::string>>(), echoed);
            QVERIFY(doc["baseline"]["objective"].is_number());
            QVERIFY(doc["objective"] != doc["baseline"]["objective"]);
            QVERIFY(doc["ids"] == (*single)["ids"]);
            // Each prompt runs alone (D15): the same numbers as the single-prompt command, float rounding aside.
            QVERIFY(close(doc["objective"], (*single)["objective"]));
            QVERIFY(close(doc["baseline"]["objective"], (*single)["baseline"]["objective"]));
            QCOMPARE(doc["nodes"].size(), (*single)["nodes"].size());
            for (std::size_t i = 0; i < doc["nodes"].size(); ++i) {
                const auto& row = doc["nodes"][i];
                const auto& singleRow = (*single)["nodes"][i];
                QVERIFY(row["node"] == singleRow["node"]);
                QVERIFY2(row.contains("baseline"), (std::string(side) + ": " + row["node"].get<std::string>()).c_str());
                for (const char* key : {"activation", "write_magnitude", "direct_effect", "total_effect"})
                    QVERIFY(close(row["baseline"][key], singleRow["baseline"][key]));
            }
        }
    }

    void badInputIsOneLineAndExitTwo_data()
    {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("expected");
        const QString model = tinyModel();
        QTest::newRow("missing model dir") << QStringList{QStringLiteral("info"), QStringLiteral("--model"), QStringLiteral("/nonexistent/x")}
                                           << QStringLiteral("not a directory");
        QTest::newRow("empty prompt") << QStringList{QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--prompt"), QString()}
                                      << QStringLiteral("prompt: empty");
        QTest::newRow("overlong prompt") << QStringList{QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--prompt"),
                                                        QStringLiteral(" a").repeated(80)}
                                         << QStringLiteral("80 tokens");
        QTest::newRow("unknown command") << QStringList{QStringLiteral("frobnicate")} << QStringLiteral("unknown command");
        QTest::newRow("unknown option") << QStringList{QStringLiteral("info"), QStringLiteral("--bogus")} << QStringLiteral("bogus");
        QTest::newRow("bad --top") << QStringList{QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--prompt"),
                                                  QStringLiteral("hi"), QStringLiteral("--top"), QStringLiteral("many")}
                                   << QStringLiteral("--top");
        QTest::newRow("bad node name") << QStringList{QStringLiteral("node"), QStringLiteral("--model"), model, QStringLiteral("--prompt"),
                                                      QStringLiteral("hi there"), QStringLiteral("--node"), QStringLiteral("mlp:9:1@0")}
                                       << QStringLiteral("layer 9 does not exist");
        QTest::newRow("multi-token target") << QStringList{QStringLiteral("nodes"), QStringLiteral("--model"), model, QStringLiteral("--prompt"),
                                                           QStringLiteral("hi there"), QStringLiteral("--target"), QStringLiteral(" Mary and")}
                                            << QStringLiteral("target: ' Mary and' is 2 tokens");
        QTest::newRow("sae width fits nothing") << QStringList{QStringLiteral("node"), QStringLiteral("--model"), model, QStringLiteral("--prompt"),
                                                               QStringLiteral("hi there"), QStringLiteral("--node"), QStringLiteral("mlp:0:1@0"),
                                                               QStringLiteral("--attn-sae"),
                                                               QStringLiteral("0=") + QString::fromStdString((cs::test::dataDir() / "sae/mlp_post_act.relu.pt").string())}
                                                << QStringLiteral("fits no --attn-sae location");
        QTest::newRow("missing --prompt") << QStringList{QStringLiteral("forward"), QStringLiteral("--model"), model}
                                          << QStringLiteral("missing --prompt");
        // Every kind of mistake in the intervention options (the core's rules have their own suite).
        const QStringList nodes{QStringLiteral("nodes"), QStringLiteral("--model"), model, QStringLiteral("--prompt"), cs::test::kPrompt};
        const auto with = [&](std::initializer_list<const char*> extra) {
            QStringList a = nodes;
            for (const char* e : extra)
                a << QString::fromUtf8(e);
            return a;
        };
        QTest::newRow("nodes without an objective") << with({}) << QStringLiteral("missing --target (or --trace NODE)");
        QTest::newRow("bad --ablate") << with({"--target", " Mary", "--ablate", "mlp:0:1@x"}) << QStringLiteral("--ablate: node 'mlp:0:1@x': token 'x' is not an integer");
        QTest::newRow("--ablate out of range") << with({"--target", " Mary", "--ablate", "mlp:0:1@99"}) << QStringLiteral("outside the prompt's 14 tokens");
        QTest::newRow("--ablate twice, two values") << with({"--target", " Mary", "--ablate", "mlp:0:1@3=1", "--ablate", "mlp:0:1@*=2"})
                                                    << QStringLiteral("already ablated to another value");
        QTest::newRow("--objective unknown") << with({"--target", " Mary", "--objective", "loss"}) << QStringLiteral("--objective: 'loss'");
        QTest::newRow("prob with a distractor") << with({"--target", " Mary", "--distractor", " John", "--objective", "prob"})
                                                << QStringLiteral("takes no --distractor");
        QTest::newRow("--through without --trace") << with({"--target", " Mary", "--through", "q"}) << QStringLiteral("--through: needs --trace");
        QTest::newRow("--through on a neuron") << with({"--trace", "mlp:0:1@-1", "--through", "q"}) << QStringLiteral("only for a traced attention head");
        QTest::newRow("--through bogus") << with({"--trace", "attn:0:1@-1,2", "--through", "x"}) << QStringLiteral("is not q, k, qk or v");
        QTest::newRow("--downstream without --through v") << with({"--trace", "attn:0:1@-1,2", "--downstream", "mlp:1:1@-1"})
                                                          << QStringLiteral("only with --through v");
        QTest::newRow("--downstream before the head") << with({"--trace", "attn:1:1@-1,2", "--through", "v", "--downstream", "mlp:0:1@-1"})
                                                      << QStringLiteral("reads the residual stream before");
        QTest::newRow("--downstream-through without --downstream") << with({"--trace", "attn:0:1@-1,2", "--through", "v", "--target", " Mary",
                                                                            "--downstream-through", "q"})
                                                                   << QStringLiteral("needs --downstream");
        QTest::newRow("--through v without a target") << with({"--trace", "attn:0:1@-1,2", "--through", "v"}) << QStringLiteral("needs a --target");
        QTest::newRow("--trace of a head without a key") << with({"--trace", "attn:0:1@-1"}) << QStringLiteral("--trace: node 'attn:0:1@-1': an attention head needs a query and a key token");
        QTest::newRow("--target2 without --prompt2") << with({"--target", " Mary", "--target2", " John"}) << QStringLiteral("--target2: needs --prompt2");
        QTest::newRow("empty --prompt2") << with({"--target", " Mary", "--prompt2", ""}) << QStringLiteral("second prompt");
        QTest::newRow("--ablate beyond --prompt2") << with({"--target", " Mary", "--ablate", "mlp:0:1@12", "--prompt2", "Mary went"})
                                                   << QStringLiteral("outside the second prompt's 2 tokens");
        QTest::newRow("--prompt2 on node") << QStringList{QStringLiteral("node"), QStringLiteral("--model"), model, QStringLiteral("--prompt"),
                                                          QStringLiteral("hi there"), QStringLiteral("--node"), QStringLiteral("mlp:0:1@0"),
                                                          QStringLiteral("--prompt2"), QStringLiteral("hello")}
                                           << QStringLiteral("only the nodes command compares two prompts");
    }
    void badInputIsOneLineAndExitTwo()
    {
        QFETCH(QStringList, args);
        QFETCH(QString, expected);
        const auto r = runCli(args);
        QCOMPARE(r.status, QProcess::NormalExit);
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.contains(expected), qPrintable(r.err));
        QCOMPARE(r.err.count(u'\n'), 1);
        QVERIFY(r.out.empty());
    }

    void overlongPromptCanBeTruncated()
    {
        const auto r = runCli({QStringLiteral("forward"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"),
                               QStringLiteral(" a").repeated(80), QStringLiteral("--truncate")});
        QCOMPARE(r.exitCode, 0);
        QCOMPARE(nlohmann::json::parse(r.out)["ids"].size(), std::size_t(64));
        QVERIFY(r.err.contains(QStringLiteral("truncated")));
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "tst_cli.moc"
