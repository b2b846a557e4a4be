// The bundled demo (resources/demo, issue "demo bundle"): complete and small, its walkthrough session
// opens and every pinned node exists, the circuit the session's notes describe is what the model does,
// and the model card's headline figures hold on fresh data (a smaller run of the same evaluator).

#include "core/analysis/effects.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"
#include "core/session/session.h"
#include "core/train/corpus.h"
#include "core/train/evaluation.h"
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
        set.add(loadAndBindSae(a.spec, model.config, a.role == "mlp" ? SaeRole::Mlp : SaeRole::Attn));
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
        QVERIFY(card.find("L2H1") != std::string::npos);
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

    // What the pinned notes say, measured: the two name movers, the repeated-name suppressor, the
    // induction and previous-token heads, and the prediction itself.
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
        const Effects effects = computeEffects(in, Objective{mary, john});
        const auto metric = [&](const char* node) { return metricsOf(in, effects, NodeRef::parse(node)); };
        const NodeMetrics suppressor = metric("attn:3:1@13,9"), first = metric("attn:3:0@13,1"), second = metric("attn:3:3@13,3");
        QVERIFY(suppressor.activation > 0.9 && suppressor.directEffect > 1.0);
        QVERIFY(first.activation > 0.9 && first.directEffect > 5.0);
        QVERIFY(second.activation > 0.9 && second.directEffect < -5.0);
        QVERIFY(metric("attn:2:1@13,2").activation > 0.8);
        QVERIFY(metric("attn:0:3@2,1").activation > 0.8);
        const NodeMetrics latent = metric("attn_sae:3:39@13");
        QVERIFY(latent.activation > 0 && latent.totalEffect > 1.0);
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
        o.ioiPrompts = 30;
        o.repeatSequences = 8;
        o.heldOutTokens = 1024;
        o.circuitPrompts = 10;
        const train::EvalReport r = train::evaluateModel(*m_model, tokens, kDemo / "saes", o);
        QVERIFY2(r.bestInduction.score >= 0.5, r.bestInduction.name().c_str());
        QVERIFY(r.bestPreviousToken.score >= 0.5);
        QVERIFY(r.repeatSecondLoss < 0.3 * r.repeatFirstLoss);
        QVERIFY(r.ioiTraining.top1 >= 0.9);
        QCOMPARE(r.saes.size(), std::size_t(8));
        for (const auto& s : r.saes) {
            QVERIFY2(s.varianceExplained > 0.7, (s.location + " " + std::to_string(s.layer)).c_str());
            QVERIFY(s.meanL0 < 64);
        }
    }
};

QTEST_GUILESS_MAIN(TestDemo)
#include "tst_demo.moc"
