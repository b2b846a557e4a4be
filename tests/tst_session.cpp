// Session files (.circuitscope.json): round trip, byte-identical resave, clear errors for corrupt and
// future-version files, and atomic saves that leave the old file intact when a save fails.

#include "core/session/session.h"
#include "core/util/errors.h"
#include "test_support.h"

#include <QTemporaryDir>
#include <QTest>

#include <fstream>

using namespace cs;
namespace fs = std::filesystem;

namespace {

Session sample()
{
    Session s;
    s.modelPath = "/models/gpt2";
    s.autoencoders = {{SaeRole::Mlp, "5=/ae/mlp/5.pt"}, {SaeRole::Attn, "5:resid_delta_attn=/ae/attn/5.pt"}};
    s.prompt = "When Mary and John went to the store, John gave a drink to";
    s.objective = {"logit_diff", {" Mary", " drink"}, {" John"}};
    s.ablations = {"attn:2:0@-1=0", "mlp_sae:1:42@*=0.5"};
    s.trace = Session::Trace{"attn:1:0@-1,3", "v", "mlp:2:7@-1", ""};
    s.secondPrompt = Session::SecondPrompt{"When Anna and Tom went out, Tom gave it to", {" Anna"}, {}};
    s.tokenOfInterest = 13;
    s.selectedNode = "attn:9:9@-1,1";
    s.pins = {{"attn:9:9@-1,1", "name mover: copies \"Mary\"\nsecond line"}, {"mlp:5:123@7", "日本語 note, with comma"}};
    s.view.metric = Metric::DirectEffect;
    s.view.topN = 24;
    s.view.perUnitWrite = true;
    s.view.inspectorTab = "pairs";
    return s;
}

std::string bytes(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

class TestSession : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void roundTripAndByteIdenticalResave()
    {
        QTemporaryDir tmp;
        const fs::path a = fs::path(tmp.path().toStdString()) / "a.circuitscope.json";
        const fs::path b = fs::path(tmp.path().toStdString()) / "b.circuitscope.json";
        saveSession(a, sample());
        const Session loaded = loadSession(a);
        QVERIFY(loaded == sample());
        saveSession(b, loaded);
        QVERIFY(bytes(a) == bytes(b));
        QVERIFY(!fs::exists(a.string() + ".saving"));
    }

    // A session shipped next to its model (the demo's) names it relatively; it opens from anywhere.
    void relativePathsResolveAgainstTheSessionFolder()
    {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString());
        Session s = sample();
        s.modelPath = ".";
        s.autoencoders = {{SaeRole::Mlp, "1=saes/mlp_1"}, {SaeRole::Attn, "2:resid_delta_attn=/abs/attn_2"}};
        saveSession(dir / "demo.circuitscope.json", s);
        const Session loaded = loadSession(dir / "demo.circuitscope.json");
        QCOMPARE(fs::path(loaded.modelPath), dir.lexically_normal());
        QCOMPARE(loaded.autoencoders.at(0).spec, "1=" + (dir / "saes" / "mlp_1").string());
        QCOMPARE(loaded.autoencoders.at(1).spec, std::string("2:resid_delta_attn=/abs/attn_2"));
        QCOMPARE(loaded.prompt, s.prompt);
    }

    // Version 1 files (one target and one distractor as strings, no interventions) still open.
    void version1FilesStillOpen()
    {
        const Session s = sessionFromJson(nlohmann::json::parse(R"({"schema":"circuitscope-session","version":1,"prompt":"hi",
            "target":" Mary","distractor":" John","pins":[{"node":"mlp:0:1@0","note":"n"}]})"), "old.circuitscope.json");
        QCOMPARE(s.objective.kind, std::string("logit_diff"));
        QCOMPARE(s.objective.targets, std::vector<std::string>{" Mary"});
        QCOMPARE(s.objective.distractors, std::vector<std::string>{" John"});
        QVERIFY(s.ablations.empty() && !s.trace && !s.secondPrompt);
        QCOMPARE(s.pins.size(), std::size_t(1));
        // Saved again, it is a version-2 file that reads back the same.
        const nlohmann::ordered_json j = sessionToJson(s);
        QCOMPARE(j["version"].get<int>(), 2);
        QVERIFY(sessionFromJson(nlohmann::json::parse(j.dump()), "new") == s);
        // Without a target, a version-1 file has no objective.
        const Session none = sessionFromJson(nlohmann::json::parse(R"({"schema":"circuitscope-session","version":1,"target":""})"), "x");
        QVERIFY(none.objective.targets.empty());
    }

    void missingFieldsTakeDefaults()
    {
        const Session s = sessionFromJson(nlohmann::json::parse(R"({"schema":"circuitscope-session","version":1,"prompt":"hi"})"), "x");
        QCOMPARE(s.prompt, std::string("hi"));
        QCOMPARE(s.tokenOfInterest, -1);
        QVERIFY(!s.selectedNode);
        QCOMPARE(s.view.topN, 16);
    }

    void badFilesAreClearErrors_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("expected");
        QTest::newRow("not JSON") << QStringLiteral("{\"schema\": ") << QStringLiteral("not valid JSON");
        QTest::newRow("not an object") << QStringLiteral("[1]") << QStringLiteral("not a Circuitscope session");
        QTest::newRow("another JSON file") << QStringLiteral("{\"n_layer\": 2}") << QStringLiteral("field 'schema'");
        QTest::newRow("future version") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":99}")
                                        << QStringLiteral("session version 99 is newer than this Circuitscope understands");
        QTest::newRow("wrong type") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":1,\"prompt\":5}")
                                    << QStringLiteral("field 'prompt' must be a string");
        QTest::newRow("bad pin") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":1,\"pins\":[3]}")
                                 << QStringLiteral("field 'pins'");
        QTest::newRow("bad role") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":1,\"autoencoders\":[{\"role\":\"x\",\"spec\":\"0=a\"}]}")
                                  << QStringLiteral("autoencoders.role");
        QTest::newRow("bad view") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":1,\"view\":{\"top_n\":\"many\"}}")
                                  << QStringLiteral("field 'view.top_n' must be an integer");
        QTest::newRow("bad view metric") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":1,\"view\":{\"metric\":\"loudness\"}}")
                                         << QStringLiteral("field 'view.metric' must be activation, write_magnitude, direct_effect or total_effect");
        QTest::newRow("bad objective kind") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":2,\"objective\":{\"kind\":\"loss\"}}")
                                            << QStringLiteral("field 'objective.kind' must be logit_diff");
        QTest::newRow("targets not strings") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":2,\"objective\":{\"targets\":[1]}}")
                                             << QStringLiteral("field 'objective.targets' must be a list of strings");
        QTest::newRow("ablations not a list") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":2,\"ablations\":\"mlp:0:1@0\"}")
                                              << QStringLiteral("field 'ablations' must be a list");
        QTest::newRow("trace without node") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":2,\"trace\":{\"through\":\"q\"}}")
                                            << QStringLiteral("field 'trace.node' must name the traced node");
        QTest::newRow("second prompt not an object") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":2,\"second_prompt\":\"x\"}")
                                                     << QStringLiteral("field 'second_prompt' must be an object");
    }
    void badFilesAreClearErrors()
    {
        QFETCH(QString, text);
        QFETCH(QString, expected);
        QTemporaryDir tmp;
        const fs::path p = fs::path(tmp.path().toStdString()) / "bad.circuitscope.json";
        std::ofstream(p) << text.toStdString();
        try {
            loadSession(p);
            QFAIL("accepted a bad session");
        } catch (const InputError& e) {
            const QString msg = QString::fromUtf8(e.what());
            QVERIFY2(msg.contains(expected), e.what());
            QVERIFY2(msg.contains(QStringLiteral("bad.circuitscope.json")), e.what());
        }
    }

    void failedSaveLeavesTheOldFileIntact()
    {
        QTemporaryDir tmp;
        const fs::path p = fs::path(tmp.path().toStdString()) / "s.circuitscope.json";
        saveSession(p, sample());
        const std::string before = bytes(p);
        Session broken = sample();
        broken.pins.push_back({"mlp:0:1@0", std::string("invalid \xff utf-8")}); // cannot be serialized
        QVERIFY_THROWS_EXCEPTION(InputError, saveSession(p, broken));
        QVERIFY(bytes(p) == before);
        // An unwritable destination (a directory in the way) is an error too, and nothing is left behind.
        const fs::path dir = fs::path(tmp.path().toStdString()) / "dir.circuitscope.json";
        fs::create_directories(dir);
        QVERIFY_THROWS_EXCEPTION(InputError, saveSession(dir, sample()));
        QVERIFY(!fs::exists(dir.string() + ".saving"));
        QVERIFY(fs::is_directory(dir));
    }
};

QTEST_GUILESS_MAIN(TestSession)
#include "tst_session.moc"
