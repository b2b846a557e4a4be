// The bundled demo (resources/demo, issue "demo bundle"): complete and small, its walkthrough session
// opens and every pinned node exists, the circuit the session's notes describe is what the model does,
// and the model card's headline figures hold on fresh data (a smaller run of the same evaluator).

#include "core/analysis/effects.h"
#include "core/examples/corpus.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"
#include "core/session/session.h"
#include "core/train/corpus.h"
#include "core/train/evaluation.h"
#include "core/train/pipeline.h"
#include "core/util/runtime.h"

#include <QTest>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace cs;
namespace fs = std::filesystem;

namespace {

const fs::path kDemo = DEMO_DIR;

std::string readAll(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

SaeSet demoSaes(const Gpt2Model& model, const Session& session)
{
    SaeSet set;
    for (const auto& a : session.autoencoders)
        set.add(loadAndBindSae(a.spec, model.config, a.role));
    return set;
}

} // namespace

class TestDemo : public QObject {
    Q_OBJECT

    std::shared_ptr<const Gpt2Model> m_model;
    Session m_session;

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        QVERIFY2(fs::exists(kDemo / "config.json"), "resources/demo is missing");
        m_model = loadHfGpt2(kDemo);
        m_session = loadSession(kDemo / "ioi-walkthrough.circuitscope.json");
    }

    void bundleIsCompleteAndSmall()
    {
        std::uintmax_t bytes = 0;
        for (const auto& e : fs::recursive_directory_iterator(kDemo))
            if (e.is_regular_file())
                bytes += e.file_size();
        QVERIFY2(bytes <= 16u * 1024 * 1024, std::to_string(bytes).c_str());
        QCOMPARE(m_model->config.nLayer, 4);
        QVERIFY(m_model->config.vocabSize >= 2000); // a few thousand tokens
        QCOMPARE(m_model->tokenizer->endOfTextId().value_or(-1), m_model->config.vocabSize - 1);
        for (int l = 0; l < 4; ++l)
            for (const char* kind : {"mlp_", "attn_"})
                QVERIFY(fs::exists(kDemo / "saes" / (kind + std::to_string(l)) / "cfg.json"));
        const std::string card = readAll(kDemo / "MODEL_CARD.md");
        QVERIFY(card.find("circuitscope-train all --out resources/demo") != std::string::npos);
        QVERIFY(card.find("L2H0") != std::string::npos);
    }

    void heldOutCorpusShipsWithTheBundle()
    {
        // The Examples tab's corpus (issue 14): the trainer's generator continued past the training
        // documents (never trained on), small enough for the bundle.
        const fs::path file = kDemo / "heldout-corpus.txt";
        QVERIFY(fs::exists(file));
        QVERIFY2(fs::file_size(file) <= 2u * 1024 * 1024, std::to_string(fs::file_size(file)).c_str());
        const train::PipelineOptions full = train::fullPreset();
        train::CorpusOptions c = full.corpus;
        c.seed = 1;
        c.documents = full.corpus.documents + full.heldOutDocuments;
        const auto docs = train::generateCorpus(c);
        QVERIFY(readAll(file) == train::corpusText({docs.begin() + full.corpus.documents, docs.end()}));
        const Corpus corpus = readCorpus(file, *m_model->tokenizer);
        QVERIFY2(corpus.tokenCount() > 300000, std::to_string(corpus.tokenCount()).c_str());
        QCOMPARE(corpus.docStarts.size(), std::size_t(full.heldOutDocuments));
    }

    void walkthroughSessionOpensWithEveryPin()
    {
        QCOMPARE(fs::path(m_session.modelPath), kDemo.lexically_normal());
        QCOMPARE(m_session.autoencoders.size(), std::size_t(8));
        QCOMPARE(m_session.pins.size(), std::size_t(6));
        const SaeSet saes = demoSaes(*m_model, m_session);
        const auto ids = m_model->tokenizer->encode(m_session.prompt);
        ForwardOptions fo;
        fo.saes = &saes;
        const ActivationRecord rec = runForward(*m_model, ids, fo);
        const AnalysisInput in{*m_model, saes, rec};
        for (const auto& pin : m_session.pins) {
            QVERIFY2(!pin.note.empty(), pin.node.c_str());
            checkedNode(in, NodeRef::parse(pin.node).resolved(static_cast<int>(ids.size())));
        }
    }

    // What the pinned notes say, measured: the name mover, the head that reads the repeated name, the
    // duplicate-token and induction attention at the repeated name, the head that pulls toward the
    // repeated name, the name latent, and the prediction itself.
    void theNotesDescribeTheModel()
    {
        const SaeSet saes = demoSaes(*m_model, m_session);
        const auto ids = m_model->tokenizer->encode(m_session.prompt);
        ForwardOptions fo;
        fo.withGrad = true;
        fo.saes = &saes;
        const ActivationRecord rec = runForward(*m_model, ids, fo);
        const AnalysisInput in{*m_model, saes, rec};
        const int mary = m_model->tokenizer->encode(" Mary").at(0), john = m_model->tokenizer->encode(" John").at(0);
        QCOMPARE(rec.logits[static_cast<std::int64_t>(ids.size()) - 1].argmax().item<std::int64_t>(), std::int64_t(mary));
        const Effects effects = computeEffects(in, logitDifference(mary, john));
        const auto metric = [&](const char* node) { return metricsOf(in, effects, NodeRef::parse(node)); };
        const NodeMetrics mover = metric("attn:2:0@13,1"), reader = metric("attn:1:0@13,9");
        QVERIFY(mover.activation > 0.95 && mover.directEffect > 8.0 && mover.totalEffect > 7.0);
        QVERIFY(reader.activation > 0.95 && reader.directEffect > 2.0 && reader.totalEffect < -2.0);
        QVERIFY(metric("attn:2:1@9,3").activation > 0.9);  // duplicate token
        QVERIFY(metric("attn:2:2@9,4").activation > 0.75); // induction at the repeated name
        const NodeMetrics pull = metric("attn:2:2@13,3");
        QVERIFY(pull.activation > 0.15 && pull.totalEffect < -1.5);
        // No other head has a more negative total effect at the last token.
        for (int layer = 0; layer < m_model->config.nLayer; ++layer)
            for (int head = 0; head < m_model->config.nHead; ++head)
                for (int key = 0; key < static_cast<int>(ids.size()); ++key) {
                    const std::string node = "attn:" + std::to_string(layer) + ":" + std::to_string(head) + "@13," + std::to_string(key);
                    if (node != "attn:2:2@13,3" && node != "attn:1:0@13,9")
                        QVERIFY2(metric(node.c_str()).totalEffect > pull.totalEffect, node.c_str());
                }
        const NodeMetrics latent = metric("attn_sae:2:115@13");
        QVERIFY(latent.activation > 0 && latent.totalEffect > 1.5);
    }

    // The card's figures, from the same evaluator on a small fresh sample (not the card's numbers:
    // those come from a larger held-out set). Bounds are the bar where the card meets it.
    void cardFiguresHoldOnFreshData()
    {
        train::CorpusOptions co;
        co.seed = 7; // not the training seed
        co.documents = 200;
        const std::string text = train::corpusText(train::generateCorpus(co));
        std::vector<int> tokens;
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            const auto doc = m_model->tokenizer->encode(line);
            tokens.insert(tokens.end(), doc.begin(), doc.end());
            tokens.push_back(*m_model->tokenizer->endOfTextId());
        }
        train::EvalOptions o;
        o.seed = 7;
        o.ioiPrompts = 60;
        o.repeatSequences = 8;
        o.heldOutTokens = 1024;
        o.circuitPrompts = 10;
        const train::EvalReport r = train::evaluateModel(*m_model, tokens, kDemo / "saes", o);
        QVERIFY2(r.bestInduction.score >= 0.5, r.bestInduction.name().c_str());
        QVERIFY(r.bestPreviousToken.score >= 0.4); // the card: L1H0 0.47 (the issue sets no number)
        QVERIFY(r.repeatSecondLoss < 0.3 * r.repeatFirstLoss);
        QVERIFY(r.ioiTraining.top1 >= 0.9);
        // Held-out shapes with held-out names (the card: 95.7 % / 96.7 % on 300 prompts); 60 fresh ones.
        QVERIFY2(r.ioi.top1 >= 0.85, std::to_string(r.ioi.top1).c_str());
        QVERIFY2(r.ioi.beatsOther >= 0.9, std::to_string(r.ioi.beatsOther).c_str());
        QCOMPARE(r.saes.size(), std::size_t(8));
        for (const auto& s : r.saes) {
            QVERIFY2(s.varianceExplained > 0.7, (s.location + " " + std::to_string(s.layer)).c_str());
            QVERIFY(s.meanL0 < 64);
        }
    }
};

QTEST_GUILESS_MAIN(TestDemo)
#include "tst_demo.moc"
