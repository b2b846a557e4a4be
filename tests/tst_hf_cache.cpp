// Hugging Face cache discovery (product.md §2): GPT-2 snapshots are listed, other models are not, and
// nothing is downloaded.

#include "core/model/hf_cache.h"

#include <QTemporaryDir>
#include <QTest>

#include <fstream>

using namespace cs;
namespace fs = std::filesystem;

class TestHfCache : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void listsGpt2SnapshotsOnly()
    {
        QTemporaryDir tmp;
        const fs::path hub = fs::path(tmp.path().toStdString()) / "hub";
        auto snapshot = [&](const std::string& repo, const std::string& rev, const std::string& config) {
            const fs::path dir = hub / ("models--" + repo) / "snapshots" / rev;
            fs::create_directories(dir);
            if (!config.empty())
                std::ofstream(dir / "config.json") << config;
            return dir;
        };
        const fs::path gpt2 = snapshot("openai-community--gpt2", "abc123", R"({"model_type": "gpt2", "n_layer": 12})");
        snapshot("bert-base-uncased", "def", R"({"model_type": "bert"})");
        snapshot("broken--json", "x", "{not json");
        snapshot("no--config", "y", "");
        fs::create_directories(hub / "datasets--foo");

        const auto found = findCachedGpt2Models(hub);
        QCOMPARE(found.size(), std::size_t(1));
        QCOMPARE(found[0].name, std::string("openai-community/gpt2"));
        QCOMPARE(found[0].snapshot, gpt2);
    }

    void followsHfHome()
    {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "hub/models--distilgpt2/snapshots/r1";
        fs::create_directories(dir);
        std::ofstream(dir / "config.json") << R"({"model_type": "gpt2"})";
        qputenv("HF_HOME", tmp.path().toUtf8());
        const auto found = findCachedGpt2Models();
        QCOMPARE(found.size(), std::size_t(1));
        QCOMPARE(found[0].name, std::string("distilgpt2"));
        qunsetenv("HF_HOME");
    }

    void missingCacheIsEmpty()
    {
        QVERIFY(findCachedGpt2Models("/nonexistent/hub").empty());
    }
};

QTEST_GUILESS_MAIN(TestHfCache)
#include "tst_hf_cache.moc"
