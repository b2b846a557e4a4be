// Dataset examples (issue 14) on the tiny fixture model and a small generated corpus: corpus reading
// and windowing, the index's top examples and quantile samples against a brute-force pass over every
// window, resume after an interruption, cache invalidation, damaged cache files and bad corpora.

#include "core/commands/cli_commands.h"
#include "core/commands/examples_commands.h"
#include "core/examples/content_hash.h"
#include "core/examples/corpus.h"
#include "core/examples/example_index.h"
#include "core/model/forward.h"
#include "core/util/errors.h"
#include "test_support.h"

#include <QProcess>
#include <QProcessEnvironment>
#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

using namespace cs;

namespace {

std::filesystem::path tinyDir() { return test::dataDir() / "tiny-gpt2"; }

void writeFile(const std::filesystem::path& p, const std::string& bytes)
{
    std::ofstream(p, std::ios::binary) << bytes;
}

std::string readBytes(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Lines of words drawn from a small vocabulary, with repeated phrases so that heads and neurons have
// something to find; deterministic.
std::string generatedCorpus(int documents, unsigned seed)
{
    static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "then", "Mary", "John", "went", "to",
                                  "store", "gave", "drink", "book", "red", "blue", "green", "house", "river", "quickly",
                                  "said", "that", "it", "was", "(", ")", "\"", "over", "under", "city", "Paris", "France",
                                  "is", "capital", "of", "one", "two", "three", "dog", "ran", "far", "away", "home"};
    std::mt19937 rng(seed);
    std::string text;
    for (int d = 0; d < documents; ++d) {
        const int n = 8 + static_cast<int>(rng() % 60);
        std::vector<std::string> doc;
        for (int i = 0; i < n; ++i)
            doc.push_back(words[rng() % (sizeof words / sizeof *words)]);
        if (rng() % 3 == 0) { // a repeated phrase (induction)
            const int len = 3 + static_cast<int>(rng() % 6);
            const int at = static_cast<int>(rng() % doc.size());
            std::vector<std::string> phrase(doc.begin() + std::min<int>(at, int(doc.size())),
                                            doc.begin() + std::min<int>(at + len, int(doc.size())));
            doc.insert(doc.end(), phrase.begin(), phrase.end());
        }
        for (std::size_t i = 0; i < doc.size(); ++i)
            text += (i ? " " : "") + doc[i];
        text += d % 7 == 3 ? "\r\n\n" : "\n"; // CRLF and empty lines are part of the format
    }
    return text;
}

SaeSet tinySaes(const Gpt2Model& model, const std::filesystem::path& mlpSae, const std::filesystem::path& attnSae)
{
    SaeSet s;
    s.add(loadAndBindSae("0=" + mlpSae.string(), model.config, SaeRole::Mlp));
    s.add(loadAndBindSae("1=" + attnSae.string(), model.config, SaeRole::Attn));
    return s;
}

// One node's activation at every position of one window, computed from the record with tensor ops
// (independently of the index's own loops).
std::vector<float> bruteColumn(const ActivationRecord& rec, const ExampleNodeGroup& g, int j, std::vector<int>* keyArg)
{
    const LayerRecord& L = rec.layers[static_cast<std::size_t>(g.layer)];
    at::Tensor col;
    if (g.kind == NodeKind::MlpNeuron) {
        col = L.mlpPost.select(1, j);
    } else if (g.kind == NodeKind::AttnHead) {
        const auto [v, i] = L.probs.select(2, j).max(1); // probs are 0 for k > q
        col = v;
        // max() may return any index of a tie; the smallest k is wanted.
        const at::Tensor p = L.probs.select(2, j).contiguous();
        keyArg->assign(static_cast<std::size_t>(rec.tokenCount()), 0);
        for (int q = 0; q < rec.tokenCount(); ++q) {
            const auto row = p[q];
            const float m = v[q].item<float>();
            for (int k = 0; k <= q; ++k) {
                if (row[k].item<float>() == m) {
                    (*keyArg)[static_cast<std::size_t>(q)] = k;
                    break;
                }
            }
        }
    } else {
        for (const auto& r : L.saes) {
            if (nodeKindFromName(saeKindName(r.bound.location)) == g.kind)
                col = r.latents.select(1, j);
        }
    }
    col = col.contiguous().to(at::kFloat);
    return std::vector<float>(col.data_ptr<float>(), col.data_ptr<float>() + col.numel());
}

struct BruteWindow {
    float value = 0;
    std::int64_t position = -1;
    std::int64_t window = 0;
    std::int64_t key = -1;
};

} // namespace

class TestExamples : public QObject {
    Q_OBJECT

    std::shared_ptr<const Gpt2Model> m_model;
    QTemporaryDir m_tmp;
    std::filesystem::path m_corpus;

    std::filesystem::path tmp(const std::string& name) const { return std::filesystem::path(m_tmp.path().toStdString()) / name; }

    IndexOptions options(const std::string& cacheName) const
    {
        IndexOptions o;
        o.cacheDir = tmp(cacheName);
        return o;
    }

private Q_SLOTS:
    void initTestCase()
    {
        QVERIFY(m_tmp.isValid());
        m_model = loadHfGpt2(tinyDir());
        m_corpus = tmp("corpus.txt");
        writeFile(m_corpus, generatedCorpus(260, 7));
    }

    // ---- Corpus reading and windowing ----

    void windowingIsExact()
    {
        const auto& tok = *m_model->tokenizer;
        const int eot = *tok.endOfTextId();
        writeFile(tmp("w.txt"), "Hello world\n\nSecond line\r\nthird");
        const Corpus c = readCorpus(tmp("w.txt"), tok);
        std::vector<int> expected;
        std::vector<std::int64_t> starts;
        for (const char* doc : {"Hello world", "Second line", "third"}) {
            starts.push_back(static_cast<std::int64_t>(expected.size()));
            expected.push_back(eot);
            const auto ids = tok.encode(doc);
            expected.insert(expected.end(), ids.begin(), ids.end());
        }
        QCOMPARE(c.tokens, expected);
        QCOMPARE(c.docStarts, starts);
        QCOMPARE(c.documentAt(0), 0);
        QCOMPARE(c.documentAt(starts[2]), 2);
        QCOMPARE(c.documentAt(starts[2] - 1), 1);
        // A token limit cuts the stream.
        QCOMPARE(readCorpus(tmp("w.txt"), tok, 4).tokens, std::vector<int>(expected.begin(), expected.begin() + 4));
        // Windows: consecutive, non-overlapping, the last one shorter.
        QCOMPARE(windowCount(130, 64), std::int64_t(3));
        QCOMPARE(windowAt(2, 130, 64).start, std::int64_t(128));
        QCOMPARE(windowAt(2, 130, 64).length, 2);
        QCOMPARE(windowCount(128, 64), std::int64_t(2));
    }

    void folderAndJsonl()
    {
        const auto& tok = *m_model->tokenizer;
        const auto dir = tmp("folder");
        std::filesystem::create_directories(dir);
        writeFile(dir / "b.txt", "second doc\nwith two lines");
        writeFile(dir / "a.txt", "first doc");
        writeFile(dir / "ignored.md", "not a txt");
        const Corpus f = readCorpus(dir, tok);
        const int eot = *tok.endOfTextId();
        std::vector<int> expected{eot};
        for (int id : tok.encode("first doc"))
            expected.push_back(id);
        expected.push_back(eot);
        for (int id : tok.encode("second doc\nwith two lines"))
            expected.push_back(id);
        QCOMPARE(f.tokens, expected);
        QCOMPARE(f.docStarts.size(), std::size_t(2));

        writeFile(tmp("c.jsonl"), "{\"text\": \"first doc\", \"id\": 1}\n\n{\"text\": \"second doc\\nwith two lines\"}\n");
        QCOMPARE(readCorpus(tmp("c.jsonl"), tok).tokens, expected);
        // The folder's hash changes with a file's content.
        const std::string h = corpusContentHash(dir);
        writeFile(dir / "a.txt", "first dog");
        QVERIFY(corpusContentHash(dir) != h);
    }

    void badCorpora_data()
    {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        QTest::addRow("empty file") << QByteArray() << QStringLiteral("empty.txt") << QStringLiteral("the corpus is empty");
        QTest::addRow("only empty lines") << QByteArray("\n\r\n\n") << QStringLiteral("blank.txt") << QStringLiteral("the corpus is empty");
        QTest::addRow("binary") << QByteArray("PK\x03\x04\x00\x00junk", 10) << QStringLiteral("data.txt")
                                << QStringLiteral("not a text file (a NUL byte at byte offset 4)");
        QTest::addRow("invalid utf-8") << QByteArray("good line\nbad \xC3\x28 byte\n") << QStringLiteral("latin.txt")
                                       << QStringLiteral("invalid UTF-8 at byte offset 14 (line 2)");
        QTest::addRow("jsonl without text") << QByteArray("{\"text\":\"a\"}\n{\"body\":\"b\"}\n") << QStringLiteral("c.jsonl")
                                            << QStringLiteral("line 2 has no \"text\" string field");
        QTest::addRow("jsonl not json") << QByteArray("{\"text\":\"a\"}\nnot json\n") << QStringLiteral("d.jsonl")
                                        << QStringLiteral("d.jsonl:2:2: not valid JSON"); // FILE:LINE:COLUMN
        QTest::addRow("jsonl empty texts") << QByteArray("{\"text\":\"\"}\n") << QStringLiteral("e.jsonl")
                                           << QStringLiteral("the corpus is empty");
    }

    void badCorpora()
    {
        QFETCH(QByteArray, bytes);
        QFETCH(QString, name);
        QFETCH(QString, expected);
        const auto path = tmp("bad-" + name.toStdString());
        writeFile(path, bytes.toStdString());
        try {
            readCorpus(path, *m_model->tokenizer);
            QFAIL("accepted");
        } catch (const InputError& e) {
            const QString msg = QString::fromStdString(e.what());
            QVERIFY2(msg.contains(expected), qPrintable(msg));
            QVERIFY2(msg.contains(QString::fromStdString(path.string())), qPrintable(msg)); // names the file
            QVERIFY(!msg.contains(QLatin1Char('\n')));
        }
        // And the indexer builds nothing from it.
        const auto cache = tmp("bad-cache-" + name.toStdString());
        QVERIFY_THROWS_EXCEPTION(InputError, ensureExampleIndex(*m_model, SaeSet{}, path, options("bad-cache-" + name.toStdString())));
        QVERIFY(!std::filesystem::exists(cache) || std::filesystem::is_empty(cache));
    }

    void missingCorpusAndEmptyFolder()
    {
        QVERIFY_THROWS_EXCEPTION(InputError, readCorpus(tmp("nope.txt"), *m_model->tokenizer));
        std::filesystem::create_directories(tmp("emptyfolder"));
        try {
            readCorpus(tmp("emptyfolder"), *m_model->tokenizer);
            QFAIL("accepted");
        } catch (const InputError& e) {
            QVERIFY2(QString::fromStdString(e.what()).contains(QStringLiteral("holds no .txt file")), e.what());
        }
    }

    void nodeNames_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<bool>("valid");
        QTest::addRow("neuron") << QStringLiteral("mlp:1:5") << true;
        QTest::addRow("head") << QStringLiteral("attn:2:0") << true;
        QTest::addRow("latent") << QStringLiteral("attn_sae:1:42") << true;
        QTest::addRow("with token") << QStringLiteral("mlp:1:5@3") << false;
        QTest::addRow("embedding") << QStringLiteral("emb:0:0") << false;
        QTest::addRow("two parts") << QStringLiteral("mlp:1") << false;
        QTest::addRow("negative") << QStringLiteral("mlp:-1:5") << false;
        QTest::addRow("unknown kind") << QStringLiteral("neuron:1:5") << false;
    }

    void nodeNames()
    {
        QFETCH(QString, name);
        QFETCH(bool, valid);
        if (valid) {
            QCOMPARE(QString::fromStdString(ExampleNodeId::parse(name.toStdString()).name()), name);
        } else {
            QVERIFY_THROWS_EXCEPTION(InputError, ExampleNodeId::parse(name.toStdString()));
        }
    }

    // ---- The index against a brute-force pass ----

    void topAndQuantilesMatchBruteForce()
    {
        const SaeSet saes = tinySaes(*m_model, test::dataDir() / "sae/mlp_post_act.relu.pt", test::dataDir() / "sae/resid_delta_attn.relu.pt");
        const IndexResult r = ensureExampleIndex(*m_model, saes, m_corpus, options("brute"));
        QVERIFY(r.index && r.index->complete());
        QVERIFY(!r.reused);
        const Corpus corpus = readCorpus(m_corpus, *m_model->tokenizer);
        QCOMPARE(r.index->tokens(), corpus.tokens);
        QCOMPARE(r.tokens, corpus.tokenCount());
        const int nCtx = m_model->config.nCtx;
        const std::int64_t windows = windowCount(corpus.tokenCount(), nCtx);
        QCOMPARE(r.windows, windows);
        QVERIFY2(windows >= 100, qPrintable(QString::number(windows))); // enough for the 40-window samples

        // The sampled nodes: every head, every 9th neuron, every 11th latent.
        const auto groups = exampleNodeGroups(m_model->config, saes);
        QCOMPARE(r.index->groups().size(), groups.size());
        struct Sampled {
            std::size_t group;
            int column;
        };
        std::vector<Sampled> nodes;
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const int step = groups[g].kind == NodeKind::AttnHead ? 1 : groups[g].kind == NodeKind::MlpNeuron ? 9 : 11;
            for (int j = 0; j < groups[g].count; j += step)
                nodes.push_back({g, j});
        }
        // Every window once: each sampled node's column and head key arg-maxes.
        std::vector<std::vector<std::vector<float>>> cols(nodes.size());
        std::vector<std::vector<std::vector<int>>> keys(nodes.size());
        ForwardOptions fo;
        fo.saes = &saes;
        for (std::int64_t w = 0; w < windows; ++w) {
            const WindowSpan span = windowAt(w, corpus.tokenCount(), nCtx);
            const std::vector<int> ids(corpus.tokens.begin() + span.start, corpus.tokens.begin() + span.start + span.length);
            const ActivationRecord rec = runForward(*m_model, ids, fo);
            for (std::size_t n = 0; n < nodes.size(); ++n) {
                std::vector<int> k;
                cols[n].push_back(bruteColumn(rec, groups[nodes[n].group], nodes[n].column, &k));
                keys[n].push_back(k);
            }
        }
        int checkedTop = 0, checkedBands = 0, activeNodes = 0;
        for (std::size_t n = 0; n < nodes.size(); ++n) {
            const ExampleNodeGroup& g = groups[nodes[n].group];
            const ExampleNodeId id{g.kind, g.layer, nodes[n].column};
            const bool head = g.kind == NodeKind::AttnHead;
            std::vector<BruteWindow> all;
            for (std::int64_t w = 0; w < windows; ++w) {
                const auto& c = cols[n][static_cast<std::size_t>(w)];
                BruteWindow b;
                b.window = w;
                for (std::size_t t = head ? 1 : 0; t < c.size(); ++t) {
                    if (b.position < 0 || c[t] > b.value) {
                        b.value = c[t];
                        b.position = w * nCtx + static_cast<std::int64_t>(t);
                        if (head)
                            b.key = w * nCtx + keys[n][static_cast<std::size_t>(w)][t];
                    }
                }
                if (b.position >= 0)
                    all.push_back(b);
            }
            std::vector<BruteWindow> byValue = all;
            std::sort(byValue.begin(), byValue.end(), [](const auto& a, const auto& b) {
                return a.value > b.value || (a.value == b.value && a.position < b.position);
            });
            const NodeExamples x = r.index->examples(id);
            const QByteArray what = QByteArray::fromStdString(id.name());
            QCOMPARE(int(x.top.size()), std::min<int>(kExampleTop, int(byValue.size())));
            QVERIFY2(std::abs(x.corpusMax - byValue[0].value) <= 1e-5, what);
            QCOMPARE(r.index->corpusMax(id), x.corpusMax);
            const auto checkExample = [&](const Example& e, const BruteWindow& expected) {
                // Windows tied in value (the same tokens at the start of two windows give the same
                // activation to the last bit or two) may come in either order: which one the products'
                // rounding puts first depends on the BLAS kernels of the machine. A tie is checked as
                // the brute-force window the index chose, with the value it ties.
                const BruteWindow* chosen = &expected;
                if (e.position != expected.position) {
                    for (const auto& other : all) {
                        if (other.position == e.position && std::abs(other.value - expected.value) <= 1e-6f * std::max(1.0f, std::abs(expected.value)))
                            chosen = &other;
                    }
                }
                const BruteWindow& b = *chosen;
                QVERIFY2(e.position == b.position, QByteArray(what + " position " + QByteArray::number(qlonglong(e.position)) + " vs " +
                                                                  QByteArray::number(qlonglong(b.position))).constData());
                QVERIFY2(std::abs(e.max - b.value) <= 1e-5, what);
                QCOMPARE(e.doc, corpus.documentAt(b.position));
                QCOMPARE(e.windowStart, b.window * nCtx);
                const WindowSpan span = windowAt(b.window, corpus.tokenCount(), nCtx);
                const int shown = std::min(kExampleShown, span.length);
                const std::int64_t start = std::clamp<std::int64_t>(b.position - kExampleShownBefore, span.start, span.start + span.length - shown);
                QCOMPARE(e.shownStart, start);
                QCOMPARE(int(e.tokenIds.size()), shown);
                QCOMPARE(e.maxIndex, int(b.position - start));
                QCOMPARE(e.tokenIds, std::vector<int>(corpus.tokens.begin() + start, corpus.tokens.begin() + start + shown));
                const auto& c = cols[n][static_cast<std::size_t>(b.window)];
                for (int t = 0; t < shown; ++t)
                    QVERIFY2(std::abs(e.activations[static_cast<std::size_t>(t)] - c[static_cast<std::size_t>(start - span.start + t)]) <= 1e-5, what);
                QCOMPARE(e.activations[static_cast<std::size_t>(e.maxIndex)], e.max);
                QCOMPARE(e.keyPosition, head ? b.key : std::int64_t(-1));
            };
            for (std::size_t i = 0; i < x.top.size(); ++i) {
                checkExample(x.top[i], byValue[i]);
                if (QTest::currentTestFailed())
                    return;
            }
            ++checkedTop;

            // Quantile samples: the 40 active windows with the smallest keys, cut into 4 bands by value.
            std::vector<BruteWindow> active;
            for (const auto& b : all) {
                if (b.value > 0)
                    active.push_back(b);
            }
            QCOMPARE(x.activeWindows, std::int64_t(active.size()));
            std::sort(active.begin(), active.end(), [](const auto& a, const auto& b) { return exampleSampleKey(a.window) < exampleSampleKey(b.window); });
            std::vector<BruteWindow> sample(active.begin(), active.begin() + std::min<std::size_t>(active.size(), kExampleSample));
            std::map<std::int64_t, BruteWindow> samplePositions;
            for (const auto& b : sample)
                samplePositions[b.position] = b;
            std::set<std::int64_t> indexPositions;
            float previousLo = std::numeric_limits<float>::infinity();
            for (std::size_t bi = 0; bi < x.bands.size(); ++bi) {
                const ExampleBand& band = x.bands[bi];
                QVERIFY2(band.lo <= band.hi, what);
                if (bi == 0)
                    QCOMPARE(band.hi, x.corpusMax);
                else
                    QCOMPARE(band.hi, previousLo); // bands meet: together they cover [min active, max]
                previousLo = band.lo;
                if (sample.size() == std::size_t(kExampleSample))
                    QCOMPARE(int(band.examples.size()), kExamplesPerBand);
                for (std::size_t i = 0; i < band.examples.size(); ++i) {
                    const Example& e = band.examples[i];
                    QVERIFY2(band.lo <= e.max && e.max <= band.hi, QByteArray(what + " sample outside its band").constData());
                    if (i)
                        QVERIFY(band.examples[i - 1].max >= e.max);
                    QVERIFY2(samplePositions.count(e.position), QByteArray(what + " sample not from the brute-force sample").constData());
                    checkExample(e, samplePositions[e.position]);
                    if (QTest::currentTestFailed())
                        return;
                    indexPositions.insert(e.position);
                }
                ++checkedBands;
            }
            QCOMPARE(indexPositions.size(), samplePositions.size());
            if (!active.empty()) {
                ++activeNodes;
                const float minActive = std::min_element(active.begin(), active.end(), [](auto& a, auto& b) { return a.value < b.value; })->value;
                // Within 1e-5 like every value here (the index's batched products round differently).
                QVERIFY2(std::abs(x.bands.back().lo - minActive) <= 1e-5, what);
            }
        }
        qInfo("checked %d nodes' top examples, %d bands, %d active nodes over %lld windows", checkedTop, checkedBands, activeNodes,
              static_cast<long long>(windows));
        QVERIFY(checkedBands >= 4 * 8); // at least every head has four bands
    }

    void quantileBandsEstimateQuartiles()
    {
        // The bands estimate the quartiles of a node's active windows: over many neurons, each band
        // holds about a quarter of the brute-force active windows (a 40-window sample: ±7 % each).
        const IndexResult r = ensureExampleIndex(*m_model, SaeSet{}, m_corpus, options("quartiles"));
        const Corpus corpus = readCorpus(m_corpus, *m_model->tokenizer);
        const int nCtx = m_model->config.nCtx;
        const std::int64_t windows = windowCount(corpus.tokenCount(), nCtx);
        std::vector<std::vector<float>> maxima(static_cast<std::size_t>(m_model->config.dMlp));
        for (std::int64_t w = 0; w < windows; ++w) {
            const WindowSpan span = windowAt(w, corpus.tokenCount(), nCtx);
            const std::vector<int> ids(corpus.tokens.begin() + span.start, corpus.tokens.begin() + span.start + span.length);
            const at::Tensor m = std::get<0>(runForward(*m_model, ids).layers[1].mlpPost.max(0));
            for (int j = 0; j < m_model->config.dMlp; ++j)
                maxima[static_cast<std::size_t>(j)].push_back(m[j].item<float>());
        }
        std::vector<double> share(kExampleBands, 0);
        int nodes = 0;
        for (int j = 0; j < m_model->config.dMlp; ++j) {
            const NodeExamples x = r.index->examples({NodeKind::MlpNeuron, 1, j});
            if (x.bands.size() != std::size_t(kExampleBands))
                continue;
            ++nodes;
            std::vector<float> active;
            for (float v : maxima[static_cast<std::size_t>(j)])
                if (v > 0)
                    active.push_back(v);
            for (int b = 0; b < kExampleBands; ++b) {
                const auto& band = x.bands[static_cast<std::size_t>(b)];
                const auto inside = std::count_if(active.begin(), active.end(), [&](float v) { return v >= band.lo && v <= band.hi; });
                share[static_cast<std::size_t>(b)] += double(inside) / double(active.size());
            }
        }
        QVERIFY(nodes > 50);
        for (int b = 0; b < kExampleBands; ++b) {
            const double mean = share[static_cast<std::size_t>(b)] / nodes;
            qInfo("band %d (from the top): mean share of active windows %.3f", b, mean);
            QVERIFY2(mean > 0.18 && mean < 0.32, qPrintable(QString::number(mean)));
        }
    }

    // ---- Resume, invalidation, damage ----

    void resumeEqualsUninterrupted()
    {
        const SaeSet saes = tinySaes(*m_model, test::dataDir() / "sae/mlp_post_act.relu.pt", test::dataDir() / "sae/resid_delta_attn.relu.pt");
        // In one go, on two threads (a pass each): the same index as one thread, interrupted twice.
        IndexOptions two = options("whole");
        two.workers = 2;
        const IndexResult whole = ensureExampleIndex(*m_model, saes, m_corpus, two);
        const std::int64_t perPass = kExampleRowsPerPass / m_model->config.nCtx; // the default
        QVERIFY2(whole.windows > 4 * perPass, qPrintable(QString::number(whole.windows))); // several passes

        IndexOptions o = options("resumed");
        std::vector<std::string> messages;
        o.message = [&](const std::string& m) { messages.push_back(m); };
        // Stopped after 17 windows: the pass in progress is finished (passes are whole).
        o.stopAfterWindows = 17;
        QVERIFY_THROWS_EXCEPTION(Cancelled, ensureExampleIndex(*m_model, saes, m_corpus, o));
        const auto partial = exampleIndexPath(o.cacheDir, *m_model, saes, m_corpus);
        QVERIFY(std::filesystem::exists(partial));
        QCOMPARE(ExampleIndex::open(partial)->windowsDone(), (17 + perPass - 1) / perPass * perPass);
        // A second interruption, by the cancel predicate in the middle of a pass (between its layers):
        // that pass is dropped and redone on resume.
        o.stopAfterWindows.reset();
        std::int64_t reported = 0;
        int checksAfter = 0;
        o.progress = [&](const IndexProgress& p) { reported = p.windowsDone; };
        o.cancelled = [&] { return reported >= 3 * perPass && ++checksAfter > 2; };
        QVERIFY_THROWS_EXCEPTION(Cancelled, ensureExampleIndex(*m_model, saes, m_corpus, o));
        const std::int64_t done = ExampleIndex::open(partial)->windowsDone();
        QCOMPARE(done, 3 * perPass);
        o.cancelled = nullptr;
        o.progress = nullptr;
        const IndexResult resumed = ensureExampleIndex(*m_model, saes, m_corpus, o);
        QVERIFY(resumed.resumed);
        QVERIFY(std::any_of(messages.begin(), messages.end(), [](const auto& m) { return m.find("resuming") != std::string::npos; }));
        QCOMPARE(resumed.index->file().filename(), whole.index->file().filename());
        QVERIFY(readBytes(resumed.index->file()) == readBytes(whole.index->file())); // byte for byte
        // Reopening is reuse.
        const IndexResult again = ensureExampleIndex(*m_model, saes, m_corpus, o);
        QVERIFY(again.reused);
    }

    void batchedPassesEqualOneWindowPasses()
    {
        // Each window is its own forward pass whether it runs alone or stacked with others: an index
        // built a window at a time equals the batched one (every node: the same windows and positions,
        // values within 1e-5; the products' rounding may differ in the last bits with their shapes).
        const SaeSet saes = tinySaes(*m_model, test::dataDir() / "sae/mlp_post_act.relu.pt", test::dataDir() / "sae/resid_delta_attn.relu.pt");
        IndexOptions batched = options("batched");
        batched.windowsPerPass = 16;
        IndexOptions single = options("single");
        single.windowsPerPass = 1;
        const IndexResult a = ensureExampleIndex(*m_model, saes, m_corpus, batched);
        const IndexResult b = ensureExampleIndex(*m_model, saes, m_corpus, single);
        QCOMPARE(a.windows, b.windows);
        QVERIFY(a.windows % 16 != 0 && windowAt(a.windows - 1, a.tokens, m_model->config.nCtx).length < m_model->config.nCtx);
        int compared = 0;
        const auto same = [&](const Example& x, const Example& y, const QByteArray& what) {
            if (x.position != y.position) {
                // Two windows tied in value (see topAndQuantilesMatchBruteForce): either order is right.
                QVERIFY2(std::abs(x.max - y.max) <= 1e-6f * std::max(1.0f, std::abs(x.max)), what);
                return;
            }
            QVERIFY2(x.position == y.position && x.keyPosition == y.keyPosition && x.shownStart == y.shownStart, what);
            QVERIFY2(std::abs(x.max - y.max) <= 1e-5, what);
            QCOMPARE(x.activations.size(), y.activations.size());
            for (std::size_t t = 0; t < x.activations.size(); ++t)
                QVERIFY2(std::abs(x.activations[t] - y.activations[t]) <= 1e-5, what);
        };
        for (const auto& g : a.index->groups()) {
            for (int j = 0; j < g.count; ++j) {
                const ExampleNodeId id{g.kind, g.layer, j};
                const QByteArray what = QByteArray::fromStdString(id.name());
                const NodeExamples x = a.index->examples(id), y = b.index->examples(id);
                QCOMPARE(x.activeWindows, y.activeWindows);
                QVERIFY2(std::abs(x.corpusMax - y.corpusMax) <= 1e-5, what);
                QCOMPARE(x.top.size(), y.top.size());
                for (std::size_t i = 0; i < x.top.size(); ++i)
                    same(x.top[i], y.top[i], what);
                QCOMPARE(x.bands.size(), y.bands.size());
                for (std::size_t bi = 0; bi < x.bands.size(); ++bi) {
                    QCOMPARE(x.bands[bi].examples.size(), y.bands[bi].examples.size());
                    for (std::size_t i = 0; i < x.bands[bi].examples.size(); ++i)
                        same(x.bands[bi].examples[i], y.bands[bi].examples[i], what);
                }
                if (QTest::currentTestFailed())
                    return;
                ++compared;
            }
        }
        qInfo("compared %d nodes over %lld windows", compared, static_cast<long long>(a.windows));
    }

    void changedFilesInvalidate()
    {
        // Copies of the model and the autoencoders that the test may alter.
        const auto model = tmp("model-copy");
        std::filesystem::create_directories(model);
        for (const auto& e : std::filesystem::directory_iterator(tinyDir()))
            std::filesystem::copy_file(e.path(), model / e.path().filename());
        const auto mlpSae = tmp("mlp.pt"), attnSae = tmp("attn.pt");
        std::filesystem::copy_file(test::dataDir() / "sae/mlp_post_act.relu.pt", mlpSae);
        std::filesystem::copy_file(test::dataDir() / "sae/resid_delta_attn.relu.pt", attnSae);
        const auto corpus = tmp("small.txt");
        writeFile(corpus, generatedCorpus(20, 3));

        std::vector<std::string> messages;
        IndexOptions o = options("invalidate");
        o.message = [&](const std::string& m) { messages.push_back(m); };
        IndexResult last;
        const auto build = [&](bool expectReuse, const char* expectedReason) {
            messages.clear();
            const auto m = loadHfGpt2(model);
            const SaeSet saes = tinySaes(*m, mlpSae, attnSae);
            const IndexResult r = ensureExampleIndex(*m, saes, corpus, o);
            last = r;
            QCOMPARE(r.reused, expectReuse);
            if (expectedReason) {
                QVERIFY(!messages.empty());
                QVERIFY2(messages[0].find("stale") != std::string::npos && messages[0].find(expectedReason) != std::string::npos,
                         messages[0].c_str());
            }
        };
        build(false, nullptr);
        build(true, nullptr);
        // One byte of one weight (past the safetensors header, inside the tensor data).
        {
            std::string bytes = readBytes(model / "model.safetensors");
            bytes[bytes.size() - 100] ^= 0x01;
            writeFile(model / "model.safetensors", bytes);
        }
        build(false, "the model");
        build(true, nullptr);
        // Another autoencoder in the same file.
        std::filesystem::copy_file(test::dataDir() / "sae/mlp_post_act.ordereddict.pt", mlpSae, std::filesystem::copy_options::overwrite_existing);
        build(false, "the autoencoders");
        // The corpus.
        writeFile(corpus, generatedCorpus(21, 3));
        build(false, "the corpus");
        // Only one index file per (model, autoencoders, corpus) paths: the stale one was replaced.
        int files = 0;
        for (const auto& e : std::filesystem::directory_iterator(o.cacheDir))
            files += e.path().extension() == ".csidx";
        QCOMPARE(files, 1);
        QVERIFY(last.index->complete());
    }

    void damagedCacheIsRebuilt_data()
    {
        QTest::addColumn<QString>("damage");
        QTest::addRow("truncated") << QStringLiteral("truncate");
        QTest::addRow("header byte") << QStringLiteral("header");
        QTest::addRow("token byte") << QStringLiteral("tokens");
        QTest::addRow("node block byte") << QStringLiteral("block");
        QTest::addRow("last byte") << QStringLiteral("last");
        QTest::addRow("not an index") << QStringLiteral("garbage");
    }

    void damagedCacheIsRebuilt()
    {
        QFETCH(QString, damage);
        IndexOptions o = options("damage-" + damage.toStdString());
        std::vector<std::string> messages;
        o.message = [&](const std::string& m) { messages.push_back(m); };
        const auto corpus = tmp("damage.txt");
        writeFile(corpus, generatedCorpus(40, 11));
        const IndexResult first = ensureExampleIndex(*m_model, SaeSet{}, corpus, o);
        const auto file = first.index->file();
        const std::string good = readBytes(file);
        std::string bad = good;
        if (damage == u"truncate")
            bad.resize(bad.size() * 2 / 3);
        else if (damage == u"header")
            bad[40] ^= 0x20;
        else if (damage == u"tokens")
            bad[good.find("\"blocks\"") + 3000] ^= 0x01; // past the header: the token section
        else if (damage == u"block")
            bad[bad.size() / 2] ^= 0x01;
        else if (damage == u"last")
            bad.back() ^= 0x01;
        else
            bad = "hello, not an index at all";
        writeFile(file, bad);
        try {
            ExampleIndex::open(file, ExampleIndex::Verify::Full);
            QFAIL("a damaged index was opened");
        } catch (const InputError& e) {
            QVERIFY2(QString::fromStdString(e.what()).contains(QString::fromStdString(file.string())), e.what());
        }
        const IndexResult second = ensureExampleIndex(*m_model, SaeSet{}, corpus, o);
        QVERIFY(!second.reused);
        QVERIFY(!messages.empty() && messages[0].find("unusable") != std::string::npos);
        QVERIFY(readBytes(file) == good); // rebuilt to the same index
    }

    void lazyOpenChecksEachBlock()
    {
        // Opened lazily, a node whose block was altered afterwards is refused, never shown.
        IndexOptions o = options("lazy");
        const auto corpus = tmp("lazy.txt");
        writeFile(corpus, generatedCorpus(30, 5));
        const IndexResult r = ensureExampleIndex(*m_model, SaeSet{}, corpus, o);
        const auto file = r.index->file();
        std::string bytes = readBytes(file);
        bytes[bytes.size() - 10] ^= 0x01; // inside the last node's block
        writeFile(file, bytes);
        const auto lazy = ExampleIndex::open(file, ExampleIndex::Verify::Lazy);
        const auto& last = lazy->groups().back();
        QVERIFY_THROWS_EXCEPTION(InputError, lazy->examples({last.kind, last.layer, last.count - 1}));
        QCOMPARE(lazy->examples({last.kind, last.layer, 0}).top.size(), std::size_t(kExampleTop));
    }

    void tokenLimit()
    {
        IndexOptions o = options("limit");
        o.tokenLimit = 200;
        const IndexResult r = ensureExampleIndex(*m_model, SaeSet{}, m_corpus, o);
        QCOMPARE(r.tokens, std::int64_t(200));
        QCOMPARE(r.windows, std::int64_t(4));
        // `examples` takes the saved index whatever its limit; `index` with another limit rebuilds.
        o.anyTokenLimit = true;
        o.tokenLimit.reset();
        QVERIFY(ensureExampleIndex(*m_model, SaeSet{}, m_corpus, o).reused);
        o.anyTokenLimit = false;
        const IndexResult full = ensureExampleIndex(*m_model, SaeSet{}, m_corpus, o);
        QVERIFY(!full.reused);
        QVERIFY(full.tokens > 200);
    }

    void examplesJsonHasTheIssueKeys()
    {
        qputenv("CIRCUITSCOPE_CACHE_DIR", QByteArray::fromStdString(tmp("json-cache").string()));
        std::ostringstream log;
        SaeFlags flags;
        flags.attn.push_back("1=" + (test::dataDir() / "sae/resid_delta_attn.relu.pt").string());
        const nlohmann::json idx = indexCommandJson(*m_model, flags, m_corpus.string(), std::nullopt, log);
        QCOMPARE(idx.size(), std::size_t(4));
        for (const char* k : {"tokens", "windows", "seconds", "cache_path"})
            QVERIFY2(idx.contains(k), k);
        QVERIFY(std::filesystem::exists(idx["cache_path"].get<std::string>()));
        for (const char* node : {"mlp:1:5", "attn:1:0", "attn_sae:1:3"}) {
            const nlohmann::json j = examplesCommandJson(*m_model, flags, m_corpus.string(), node, 5, log);
            QCOMPARE(j.size(), std::size_t(3));
            QCOMPARE(j["node"].get<std::string>(), std::string(node));
            QCOMPARE(j["top"].size(), std::size_t(5));
            for (const auto& e : j["top"]) {
                QCOMPARE(e.size(), std::size_t(6));
                for (const char* k : {"doc", "position", "max", "tokens", "activations", "max_index"})
                    QVERIFY2(e.contains(k), k);
                QCOMPARE(e["tokens"].size(), e["activations"].size());
                QCOMPARE(e["activations"][e["max_index"].get<int>()].get<float>(), e["max"].get<float>());
            }
            for (const auto& b : j["quantiles"]) {
                QCOMPARE(b.size(), std::size_t(2));
                QVERIFY(b["band"].is_array() && b["band"].size() == 2);
                for (const auto& e : b["examples"])
                    QVERIFY(e["max"].get<float>() >= b["band"][0].get<float>() && e["max"].get<float>() <= b["band"][1].get<float>());
            }
        }
        QVERIFY_THROWS_EXCEPTION(InputError, examplesCommandJson(*m_model, flags, m_corpus.string(), "mlp:1:5@2", 5, log));
        QVERIFY_THROWS_EXCEPTION(InputError, examplesCommandJson(*m_model, flags, m_corpus.string(), "mlp:7:5", 5, log));
        QVERIFY_THROWS_EXCEPTION(InputError, examplesCommandJson(*m_model, flags, m_corpus.string(), "mlp_sae:0:1", 5, log));
        QVERIFY_THROWS_EXCEPTION(InputError, examplesCommandJson(*m_model, flags, m_corpus.string(), "mlp:1:5", 21, log));
        qunsetenv("CIRCUITSCOPE_CACHE_DIR");
    }

    void cliIndexAndExamples()
    {
        const auto cli = [&](const QStringList& args) {
            QProcess p;
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.insert(QStringLiteral("CIRCUITSCOPE_CACHE_DIR"), QString::fromStdString(tmp("cli-cache").string()));
            p.setProcessEnvironment(env);
            p.start(QStringLiteral(CLI_PATH), args);
            if (!p.waitForFinished(120000))
                qFatal("circuitscope-cli did not finish");
            return std::tuple(p.exitCode(), p.readAllStandardOutput().toStdString(), QString::fromUtf8(p.readAllStandardError()));
        };
        const QString model = QString::fromStdString(tinyDir().string()), corpus = QString::fromStdString(m_corpus.string());
        const auto [rc, out, err] = cli({QStringLiteral("index"), QStringLiteral("--model"), model, QStringLiteral("--corpus"), corpus,
                                         QStringLiteral("--tokens"), QStringLiteral("3000")});
        QVERIFY2(rc == 0, qPrintable(err));
        const auto j = nlohmann::json::parse(out);
        QCOMPARE(j["tokens"].get<int>(), 3000);
        QCOMPARE(j["windows"].get<int>(), 47);
        QVERIFY(err.contains(QStringLiteral("indexing: 3000/3000 tokens"))); // progress on stderr
        const auto [rc2, out2, err2] = cli({QStringLiteral("examples"), QStringLiteral("--model"), model, QStringLiteral("--corpus"), corpus,
                                            QStringLiteral("--node"), QStringLiteral("attn:0:1"), QStringLiteral("--top"), QStringLiteral("3")});
        QVERIFY2(rc2 == 0, qPrintable(err2));
        const auto x = nlohmann::json::parse(out2);
        QCOMPARE(x["top"].size(), std::size_t(3));
        QVERIFY(x["top"][0]["position"].get<int>() < 3000); // the saved (limited) index answered
        // Bad input: one line, exit code 2.
        std::filesystem::create_directories(tmp("cli-empty"));
        writeFile(tmp("cli-empty/empty.txt"), "\n\n");
        for (const QStringList& args : {QStringList{QStringLiteral("index"), QStringLiteral("--model"), model, QStringLiteral("--corpus"),
                                                    QString::fromStdString(tmp("cli-empty/empty.txt").string())},
                                        QStringList{QStringLiteral("examples"), QStringLiteral("--model"), model, QStringLiteral("--corpus"), corpus,
                                                    QStringLiteral("--node"), QStringLiteral("mlp:1:500")},
                                        QStringList{QStringLiteral("examples"), QStringLiteral("--model"), model, QStringLiteral("--corpus"), corpus,
                                                    QStringLiteral("--node"), QStringLiteral("mlp:1:5@3")}}) {
            const auto [code, o, e] = cli(args);
            QCOMPARE(code, 2);
            QVERIFY(o.empty());
            QVERIFY2(e.trimmed().count(QLatin1Char('\n')) == 0 && e.startsWith(QStringLiteral("circuitscope-cli: ")), qPrintable(e));
        }
    }
};

QTEST_GUILESS_MAIN(TestExamples)
#include "tst_examples.moc"
