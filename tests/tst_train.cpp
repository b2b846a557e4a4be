// circuitscope-train's pipeline at toy size: corpus, BPE tokenizer, model training (loss, resume,
// the written Hugging Face directory), autoencoders, evaluation, and argument errors.

#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/sae/sparse_autoencoder.h"
#include "core/tokenizer/gpt2_tokenizer.h"
#include "core/train/pipeline.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"

#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

using namespace cs;
using namespace cs::train;

namespace {

std::string readAll(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<int> corpusTokens(const Gpt2Tokenizer& tok, const std::string& text)
{
    std::vector<int> ids;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        const auto doc = tok.encode(line);
        ids.insert(ids.end(), doc.begin(), doc.end());
        ids.push_back(*tok.endOfTextId());
    }
    return ids;
}

} // namespace

Q_DECLARE_METATYPE(std::function<void()>)

class TestTrain : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    PipelineOptions m_toy;
    std::filesystem::path m_bundle;

    ModelTrainOptions tinyModel(int steps) const
    {
        ModelTrainOptions m = m_toy.model;
        m.config.vocabSize = Gpt2Tokenizer::fromDirectory(m_bundle).vocabSize();
        m.steps = steps;
        m.warmupSteps = 2;
        m.checkpointEvery = 4;
        return m;
    }

    std::vector<int> tokens() const
    {
        return corpusTokens(Gpt2Tokenizer::fromDirectory(m_bundle), readAll(m_toy.work() / "corpus.txt"));
    }

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        QVERIFY(m_tmp.isValid());
        m_toy = toyPreset();
        m_bundle = std::filesystem::path(m_tmp.path().toStdString()) / "bundle";
        m_toy.outDir = m_bundle;
        runStage(Stage::Corpus, m_toy);
        runStage(Stage::Bpe, m_toy);
    }

    void corpusIsDeterministicAndComplete()
    {
        CorpusOptions o;
        o.seed = 7;
        o.documents = 300;
        const auto a = generateCorpus(o), b = generateCorpus(o);
        QCOMPARE(corpusText(a), corpusText(b));
        o.seed = 8;
        QVERIFY(corpusText(generateCorpus(o)) != corpusText(a));
        std::set<SentenceKind> kinds;
        for (const auto& d : a)
            kinds.insert(d.kinds.begin(), d.kinds.end());
        for (SentenceKind k : {SentenceKind::IndirectObject, SentenceKind::Induction, SentenceKind::Fact,
                               SentenceKind::Closing, SentenceKind::Filler})
            QVERIFY2(kinds.count(k), sentenceKindName(k));
        // Even the first five documents hold every kind.
        o.documents = 5;
        kinds.clear();
        for (const auto& d : generateCorpus(o))
            kinds.insert(d.kinds.begin(), d.kinds.end());
        QCOMPARE(kinds.size(), std::size_t(5));
    }

    void heldOutPromptsAreHeldOut()
    {
        const auto prompts = heldOutIoiPrompts(1, 30);
        QCOMPARE(prompts.size(), std::size_t(30));
        QCOMPARE(heldOutIoiPrompts(1, 30), prompts);
        const std::string text = readAll(m_toy.work() / "corpus.txt");
        bool abb = false, bab = false;
        for (const auto& p : prompts) {
            QVERIFY(p.answer != p.distractor);
            const auto first = p.prompt.find(p.answer.substr(1));
            const auto second = p.prompt.find(p.distractor.substr(1));
            (first < second ? abb : bab) = true;
        }
        QVERIFY(abb && bab); // both name orders
        // The held-out sentence shapes never occur in training text.
        for (const char* t : {"arrived at the", "together, and"})
            QVERIFY2(text.find(t) == std::string::npos, t);
        for (auto at = text.find("Later, "); at != std::string::npos; at = text.find("Later, ", at + 1)) {
            const auto nameEnd = text.find(' ', at + 7);
            QVERIFY2(text.compare(nameEnd, 5, " and ") != 0, text.substr(at, 40).c_str());
        }
        for (const auto& name : heldOutNames())
            QVERIFY2(text.find(" to " + name + ".") == std::string::npos, name.c_str());
    }

    // A share of indirect-object sentences put random words where the names go (the answer is then
    // whichever word is not repeated); the rest use training names.
    void someIndirectObjectsUseRandomWordsAsNames()
    {
        CorpusOptions o;
        o.seed = 3;
        o.documents = 400;
        const auto& words = randomWords();
        const auto& names = trainingNames();
        int withWords = 0, withNames = 0;
        for (const auto& doc : generateCorpus(o)) {
            for (const auto& word : words)
                if (doc.text.find(" to " + word + ".") != std::string::npos &&
                    doc.text.find(word + " and ") != std::string::npos)
                    ++withWords;
            for (const auto& name : names)
                if (doc.text.find(" to " + name + ".") != std::string::npos)
                    ++withNames;
        }
        QVERIFY2(withWords > 20, std::to_string(withWords).c_str());
        QVERIFY2(withNames > 2 * withWords / 3, std::to_string(withNames).c_str());
        // Every held-out prompt names its shape, and each shape is used.
        std::set<int> shapes;
        for (const auto& p : heldOutIoiPrompts(1, 30)) {
            QVERIFY(p.shape >= 0 && p.shape < static_cast<int>(heldOutIoiShapes().size()));
            shapes.insert(p.shape);
        }
        QCOMPARE(shapes.size(), heldOutIoiShapes().size());
    }

    // The in-distribution comparison: training templates and names, the prompt stopping before the name.
    void trainingPromptsComeFromTheTrainingDistribution()
    {
        const auto prompts = trainingIoiPrompts(1, 40);
        QCOMPARE(prompts.size(), std::size_t(40));
        QCOMPARE(trainingIoiPrompts(1, 40), prompts);
        const auto& names = trainingNames();
        for (const auto& p : prompts) {
            QVERIFY(p.answer != p.distractor);
            QVERIFY(std::find(names.begin(), names.end(), p.answer.substr(1)) != names.end());
            QVERIFY(std::find(names.begin(), names.end(), p.distractor.substr(1)) != names.end());
            QVERIFY2(p.prompt.size() > 3 && p.prompt.compare(p.prompt.size() - 3, 3, " to") == 0, p.prompt.c_str());
            QVERIFY(p.prompt.find(p.answer.substr(1)) != std::string::npos);
            // "Later," opens a held-out shape; no training shape may tie it to a role (corpus.cpp).
            QVERIFY2(p.prompt.find("Later") == std::string::npos, p.prompt.c_str());
        }
        QVERIFY(readAll(m_toy.work() / "corpus.txt").find("Later, ") != std::string::npos);
    }

    void bpeFilesLoadAndRoundTrip_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addRow("ioi") << QStringLiteral("When Mary and John went to the store, John gave a drink to Mary.");
        QTest::addRow("unseen words") << QStringLiteral("Zyxw qqq 12345 !!");
        QTest::addRow("unicode") << QStringLiteral("Grüße, 東京 — \"quoted\" (brackets)");
        QTest::addRow("end of text") << QStringLiteral("a<|endoftext|>b");
    }
    void bpeFilesLoadAndRoundTrip()
    {
        QFETCH(QString, text);
        const Gpt2Tokenizer tok = Gpt2Tokenizer::fromFiles(m_bundle / "vocab.json", m_bundle / "merges.txt");
        QVERIFY(tok.vocabSize() > 300);
        QVERIFY(tok.vocabSize() <= m_toy.bpe.vocabSize);
        QCOMPARE(tok.endOfTextId().value_or(-1), tok.vocabSize() - 1);
        const std::string s = text.toStdString();
        QCOMPARE(tok.decode(tok.encode(s)), s);
        // Frequent words became single tokens (names are many and each rarer in the toy corpus).
        for (const char* word : {" the", " to", " and", " capital"})
            QVERIFY2(tok.idOfToken(word).has_value(), word);
        QVERIFY(readAll(m_bundle / "merges.txt").rfind("#version: 0.2\n", 0) == 0);
    }

    void bpeIsDeterministic()
    {
        const std::string text = readAll(m_toy.work() / "corpus.txt");
        BpeOptions o;
        o.vocabSize = 400;
        const BpeResult a = trainBpe(text, o), b = trainBpe(text, o);
        QCOMPARE(a.merges, b.merges);
        QCOMPARE(int(a.tokens.size()), 400);
    }

    void trainingLowersLossAndWritesAModel()
    {
        const auto out = m_bundle.parent_path() / "trained";
        std::filesystem::create_directories(out);
        for (const char* f : {"vocab.json", "merges.txt"})
            std::filesystem::copy_file(m_bundle / f, out / f);
        const std::vector<int> ids = tokens();
        const ModelTrainResult r = trainModel(ids, *Gpt2Tokenizer::fromDirectory(m_bundle).endOfTextId(), tinyModel(40), out);
        QVERIFY(r.finished);
        QCOMPARE(r.losses.size(), std::size_t(40));
        // From log(vocabulary) ≈ 6.4 nats, 40 steps get at least halfway to the loss of the corpus'
        // token frequencies alone (its unigram entropy).
        std::map<int, double> counts;
        for (int id : ids)
            counts[id] += 1;
        double unigramEntropy = 0;
        for (const auto& [id, n] : counts)
            unigramEntropy -= n / ids.size() * std::log(n / ids.size());
        double last = 0;
        for (int i = 35; i < 40; ++i)
            last += r.losses[static_cast<std::size_t>(i)] / 5;
        QVERIFY2(last < (r.losses[0] + unigramEntropy) / 2, (std::to_string(r.losses[0]) + " → " + std::to_string(last) +
                                                             ", unigram entropy " + std::to_string(unigramEntropy)).c_str());

        const auto model = loadHfGpt2(out);
        QCOMPARE(model->config.nLayer, m_toy.model.config.nLayer);
        const auto rec = runForward(*model, model->tokenizer->encode("When Mary and John went to the store"));
        QVERIFY(rec.logits.isfinite().all().item<bool>());
    }

    void resumeContinuesIdentically()
    {
        const auto base = m_bundle.parent_path();
        const std::vector<int> ids = tokens();
        const int eot = *Gpt2Tokenizer::fromDirectory(m_bundle).endOfTextId();
        ModelTrainOptions straight = tinyModel(12);
        straight.checkpointDir = base / "ckpt-straight";
        const ModelTrainResult full = trainModel(ids, eot, straight, base / "straight");

        ModelTrainOptions interrupted = tinyModel(12);
        interrupted.checkpointDir = base / "ckpt-resumed";
        interrupted.stopAfter = 6;
        const ModelTrainResult part = trainModel(ids, eot, interrupted, base / "resumed");
        QVERIFY(!part.finished);
        QCOMPARE(part.losses.size(), std::size_t(6));
        QVERIFY(!std::filesystem::exists(base / "resumed" / "model.safetensors"));
        interrupted.stopAfter = -1;
        const ModelTrainResult rest = trainModel(ids, eot, interrupted, base / "resumed");
        QCOMPARE(rest.resumedFrom, 6);
        QVERIFY(rest.finished);
        QCOMPARE(rest.losses, full.losses);
        QCOMPARE(readAll(base / "resumed" / "model.safetensors"), readAll(base / "straight" / "model.safetensors"));

        // A checkpoint of another run is refused, not silently mixed in.
        ModelTrainOptions other = tinyModel(12);
        other.checkpointDir = base / "ckpt-resumed";
        other.seed = 99;
        QVERIFY_THROWS_EXCEPTION(InputError, trainModel(ids, eot, other, base / "other"));
    }

    void wholeToyPipelineWritesABundle()
    {
        PipelineOptions o = m_toy;
        o.outDir = m_bundle.parent_path() / "all";
        o.command = "circuitscope-train all --toy --out all";
        runStage(Stage::All, o);
        const auto model = loadHfGpt2(o.outDir);
        for (int l = 0; l < model->config.nLayer; ++l) {
            const SparseAutoencoder mlp = loadSae(o.outDir / "saes" / ("mlp_" + std::to_string(l)));
            QCOMPARE(mlp.inputWidth(), std::int64_t(model->config.dMlp));
            QCOMPARE(mlp.declaredLocation.value_or(SaeLocation::ResidPre), SaeLocation::MlpPostAct);
            QCOMPARE(mlp.declaredLayer.value_or(-1), l);
            const SparseAutoencoder attn = loadSae(o.outDir / "saes" / ("attn_" + std::to_string(l)));
            QCOMPARE(attn.declaredLocation.value_or(SaeLocation::ResidPre), SaeLocation::ResidDeltaAttn);
            QCOMPARE(attn.inputWidth(), std::int64_t(model->config.dModel));
        }
        const std::string card = readAll(o.outDir / "MODEL_CARD.md");
        QVERIFY(card.find(o.command) != std::string::npos);
        QVERIFY(card.find("variance explained") != std::string::npos);
        QVERIFY(card.find("induction") != std::string::npos);
        // Held-out text for the Examples tab: the generator's documents after the training ones, which
        // are exactly the training corpus (the stream is prefix-stable).
        CorpusOptions longer = o.corpus;
        longer.seed = o.seed;
        longer.documents = o.corpus.documents + o.heldOutDocuments;
        const auto docs = generateCorpus(longer);
        QCOMPARE(corpusText({docs.begin(), docs.begin() + o.corpus.documents}), readAll(o.work() / "corpus.txt"));
        QCOMPARE(readAll(o.outDir / "heldout-corpus.txt"), corpusText({docs.begin() + o.corpus.documents, docs.end()}));
        QVERIFY(o.heldOutDocuments > 0);
        // Tokenizer, model and autoencoders only: the corpus and checkpoints stay in the work directory.
        QVERIFY(!std::filesystem::exists(o.outDir / "corpus.txt"));
        QVERIFY(std::filesystem::exists(o.work() / "checkpoint" / "state.json"));
    }

    void trainedAutoencoderReconstructs()
    {
        // A toy SAE on the toy model's activations explains a good share of their variance.
        PipelineOptions o = m_toy;
        o.outDir = m_bundle.parent_path() / "all";
        const auto model = loadHfGpt2(o.outDir);
        const auto ids = corpusTokens(*model->tokenizer, readAll(o.work() / "corpus.txt"));
        const ActivationSet acts = collectActivations(*model, ids, 0, 256);
        const SaeReport r = measureSae(loadSae(o.outDir / "saes" / "attn_0"), acts.attnOut[0]);
        QVERIFY2(r.varianceExplained > 0.3, std::to_string(r.varianceExplained).c_str());
        QVERIFY(r.meanL0 > 0);
    }

    void badArgumentsAreClearErrors_data()
    {
        QTest::addColumn<std::function<void()>>("call");
        QTest::addColumn<QString>("expected");
        const auto bundle = m_bundle;
        QTest::addRow("unknown stage") << std::function<void()>([] { stageFromName("train"); }) << QStringLiteral("unknown stage 'train'");
        QTest::addRow("no output dir") << std::function<void()>([] { runStage(Stage::Corpus, toyPreset()); })
                                       << QStringLiteral("--out");
        QTest::addRow("tiny vocabulary") << std::function<void()>([] { trainBpe("abc", BpeOptions{100, 2}); })
                                         << QStringLiteral("at least 257");
        QTest::addRow("missing corpus") << std::function<void()>([bundle] {
            PipelineOptions o = toyPreset();
            o.outDir = bundle.parent_path() / "empty";
            runStage(Stage::Bpe, o);
        }) << QStringLiteral("corpus.txt");
        QTest::addRow("zero steps") << std::function<void()>([this] {
            ModelTrainOptions m = tinyModel(1);
            m.steps = 0;
            trainModel(tokens(), 0, m, m_bundle.parent_path() / "x");
        }) << QStringLiteral("steps");
        QTest::addRow("heads do not divide width") << std::function<void()>([this] {
            ModelTrainOptions m = tinyModel(1);
            m.config.nHead = 3;
            trainModel(tokens(), 0, m, m_bundle.parent_path() / "x");
        }) << QStringLiteral("multiple");
        QTest::addRow("vocabulary too small for the tokens") << std::function<void()>([this] {
            ModelTrainOptions m = tinyModel(1);
            m.config.vocabSize = 10;
            trainModel(tokens(), 0, m, m_bundle.parent_path() / "x");
        }) << QStringLiteral("outside the vocabulary");
        QTest::addRow("autoencoders before the model exists") << std::function<void()>([bundle] {
            PipelineOptions o = toyPreset();
            o.outDir = bundle; // tokenizer only, no config.json yet
            runStage(Stage::Sae, o);
        }) << QStringLiteral("config.json");
    }
    void badArgumentsAreClearErrors()
    {
        QFETCH(std::function<void()>, call);
        QFETCH(QString, expected);
        try {
            call();
            QFAIL("no error");
        } catch (const InputError& e) {
            const QString message = QString::fromStdString(e.what());
            QVERIFY2(message.contains(expected), qPrintable(message));
            QVERIFY(!message.contains(QLatin1Char('\n')));
        }
    }
};

QTEST_GUILESS_MAIN(TestTrain)
#include "tst_train.moc"
