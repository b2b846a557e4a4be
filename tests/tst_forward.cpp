// Parity of the forward pass with Hugging Face on the tiny fixture model (math §1.3), for both weight
// files, plus the activation record's internal consistency and the random-model generator.
//
// Reference: tests/data/reference.safetensors, made by HF transformers 5.17 on PyTorch 2.11.
// Tolerance: 1e-4 absolute for logits, residual streams and MLP activations (issue 2).

#include "core/io/safetensors.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/prompt.h"
#include "core/model/random_model.h"
#include "core/util/runtime.h"
#include "test_support.h"

#include <torch/csrc/autograd/autograd.h>

#include <QTemporaryDir>
#include <QTest>

#include <fstream>
#include <nlohmann/json.hpp>

using namespace cs;

namespace {

constexpr double kParityTol = 1e-4;

std::vector<int> referenceIds(const std::string& key)
{
    std::ifstream in(test::dataDir() / "reference.json");
    const auto j = nlohmann::json::parse(in);
    const int index = key[1] - '0';
    return j["prompts"][index]["ids"].get<std::vector<int>>();
}

std::string referenceText(const std::string& key)
{
    std::ifstream in(test::dataDir() / "reference.json");
    const auto j = nlohmann::json::parse(in);
    return j["prompts"][key[1] - '0']["text"].get<std::string>();
}

std::string fileBytes(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

class TestForward : public QObject {
    Q_OBJECT

    std::shared_ptr<const Gpt2Model> m_st, m_bin;
    std::optional<SafetensorsFile> m_ref;

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        m_st = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        m_bin = loadHfGpt2(test::dataDir() / "tiny-gpt2-bin");
        m_ref = SafetensorsFile::open(test::dataDir() / "reference.safetensors");
    }

    void configIsRead()
    {
        const Gpt2Config& c = m_st->config;
        QCOMPARE(c.nLayer, 2);
        QCOMPARE(c.nHead, 4);
        QCOMPARE(c.dModel, 32);
        QCOMPARE(c.dMlp, 128);
        QCOMPARE(c.nCtx, 64);
        QCOMPARE(c.vocabSize, 50257);
        QVERIFY(c.activation == MlpActivation::GeluNew);
        QVERIFY(m_st->warnings.empty());
    }

    void safetensorsAndBinGiveIdenticalWeights()
    {
        const Gpt2Weights& a = m_st->weights;
        const Gpt2Weights& b = m_bin->weights;
        QVERIFY(test::sameWeights(a, b));
        QCOMPARE(a.parameterCount(), b.parameterCount());
    }

    void tokenizerMatchesReferenceIds_data()
    {
        QTest::addColumn<QString>("key");
        for (const char* k : {"p0", "p1", "p2"})
            QTest::addRow("%s", k) << QString::fromLatin1(k);
    }
    void tokenizerMatchesReferenceIds()
    {
        QFETCH(QString, key);
        const auto p = tokenizePrompt(*m_st, referenceText(key.toStdString()));
        QCOMPARE(p.ids, referenceIds(key.toStdString()));
    }

    void parityWithHuggingFace_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<bool>("fromBin");
        for (const char* k : {"p0", "p1", "p2"}) {
            QTest::addRow("%s safetensors", k) << QString::fromLatin1(k) << false;
            QTest::addRow("%s pytorch_model.bin", k) << QString::fromLatin1(k) << true;
        }
    }
    void parityWithHuggingFace()
    {
        QFETCH(QString, key);
        QFETCH(bool, fromBin);
        const std::string k = key.toStdString();
        const Gpt2Model& model = fromBin ? *m_bin : *m_st;
        const ActivationRecord rec = runForward(model, referenceIds(k));
        auto ref = [&](const std::string& name) { return m_ref->toFloat32(*m_ref->find(k + "." + name)); };
        CS_COMPARE_TENSORS(rec.logits, ref("logits"), kParityTol);
        CS_COMPARE_TENSORS(rec.embeddings, ref("hidden_states.0"), kParityTol);
        CS_COMPARE_TENSORS(rec.layers[0].residOut, ref("hidden_states.1"), kParityTol);
        CS_COMPARE_TENSORS(rec.layers[1].residIn, ref("hidden_states.1"), kParityTol);
        // HF applies ln_f to the last hidden state.
        CS_COMPARE_TENSORS(rec.lnFinalOut, ref("hidden_states.2"), kParityTol);
        CS_COMPARE_TENSORS(rec.layers[0].mlpPost, ref("mlp_post_act.0"), kParityTol);
        CS_COMPARE_TENSORS(rec.layers[1].mlpPost, ref("mlp_post_act.1"), kParityTol);
        if (k == "p0")
            CS_COMPARE_TENSORS(rec.layers[1].attnOut, ref("resid_delta_attn.1"), kParityTol);
    }

    void recordIsConsistent()
    {
        const auto ids = referenceIds("p0");
        const ActivationRecord rec = runForward(*m_st, ids);
        const std::int64_t n = static_cast<std::int64_t>(ids.size());
        const Gpt2Config& c = m_st->config;
        QCOMPARE(rec.layers.size(), std::size_t(2));
        for (const LayerRecord& L : rec.layers) {
            QCOMPARE(test::describeShape(L.probs), test::describeShape(at::empty({n, n, c.nHead})));
            QCOMPARE(test::describeShape(L.query), test::describeShape(at::empty({n, c.nHead, c.dHead()})));
            QCOMPARE(test::describeShape(L.mlpPre), test::describeShape(at::empty({n, c.dMlp})));
            QCOMPARE(test::describeShape(L.ln1Sigma), test::describeShape(at::empty({n})));
            // Causal: nothing attends to the future, and each query row is a distribution.
            QCOMPARE(L.probs.masked_select(at::ones({n, n}, at::kBool).triu(1).unsqueeze(-1).expand({n, n, c.nHead}))
                         .abs().max().item<float>(), 0.0f);
            CS_COMPARE_TENSORS(L.probs.sum(1), at::ones({n, c.nHead}), 1e-5);
            QVERIFY(at::isinf(attentionScores(*m_st, rec, static_cast<int>(&L - rec.layers.data()))[0][1]).all().item<bool>());
            // The residual identities of math §1.3.
            CS_COMPARE_TENSORS(L.residMid, L.residIn + L.attnOut, 1e-5);
            CS_COMPARE_TENSORS(L.residOut, L.residMid + L.mlpOut, 1e-5);
        }
        // σ of ln_1 recomputed from the residual (population variance, ε from config).
        const at::Tensor r = rec.layers[1].residIn;
        const at::Tensor sigma = ((r - r.mean(-1, true)).pow(2).mean(-1) + c.layerNormEps).sqrt();
        CS_COMPARE_TENSORS(rec.layers[1].ln1Sigma, sigma, 1e-6);
    }

    void oneAndTwoTokenPrompts()
    {
        for (const std::vector<int> ids : {std::vector<int>{50256}, std::vector<int>{464, 2068}}) {
            const ActivationRecord rec = runForward(*m_st, ids);
            QCOMPARE(rec.logits.size(0), std::int64_t(ids.size()));
            QVERIFY(at::isfinite(rec.logits).all().item<bool>());
            // The first token attends only to itself.
            CS_COMPARE_TENSORS(rec.layers[0].probs[0][0], at::ones({4}), 0);
        }
        // Causality: a prefix gives the same logits as the full prompt's first positions.
        const auto ids = referenceIds("p1");
        const ActivationRecord full = runForward(*m_st, ids);
        const ActivationRecord prefix = runForward(*m_st, std::vector<int>(ids.begin(), ids.begin() + 2));
        CS_COMPARE_TENSORS(prefix.logits, full.logits.narrow(0, 0, 2), 1e-5);
    }

    void gradientsFlowWhenRequested()
    {
        ForwardOptions opts;
        opts.withGrad = true;
        const auto ids = referenceIds("p0");
        const ActivationRecord rec = runForward(*m_st, ids, opts);
        QVERIFY(rec.embeddings.requires_grad());
        const at::Tensor objective = rec.logits[-1][5335] - rec.logits[-1][1757];
        const auto grads = torch::autograd::grad({objective}, {rec.layers[1].mlpPost, rec.embeddings});
        QVERIFY(grads[0].abs().sum().item<float>() > 0);
        // The MLP post-activation of the last layer only affects the last token's objective through its
        // own row: other rows have zero gradient.
        QCOMPARE(grads[0].narrow(0, 0, static_cast<std::int64_t>(ids.size()) - 1).abs().max().item<float>(), 0.0f);

        const ActivationRecord plain = runForward(*m_st, ids);
        QVERIFY(!plain.logits.requires_grad());
        CS_COMPARE_TENSORS(plain.logits, rec.logits, 0);
    }

    void cancelStopsBetweenLayers()
    {
        int layersDone = 0;
        ForwardOptions opts;
        opts.progress = [&](int done) { layersDone = done; };
        opts.cancelled = [&] { return layersDone >= 1; };
        QVERIFY_THROWS_EXCEPTION(Cancelled, runForward(*m_st, {464, 2068}, opts));
        QCOMPARE(layersDone, 1);
    }

    void randomModelIsSeededAndLoads()
    {
        QTemporaryDir tmp;
        RandomModelOptions o;
        o.config.nLayer = 2;
        o.config.nHead = 2;
        o.config.dModel = 16;
        o.config.dMlp = 48;
        o.config.nCtx = 32;
        o.config.vocabSize = 50257;
        o.seed = 7;
        o.tokenizerDir = test::dataDir() / "gpt2-tokenizer";
        const std::filesystem::path a = tmp.filePath(QStringLiteral("a")).toStdString();
        const std::filesystem::path b = tmp.filePath(QStringLiteral("b")).toStdString();
        const std::filesystem::path c = tmp.filePath(QStringLiteral("c")).toStdString();
        writeRandomHfModel(a, o);
        writeRandomHfModel(b, o);
        QVERIFY(fileBytes(a / "model.safetensors") == fileBytes(b / "model.safetensors"));
        o.seed = 8;
        writeRandomHfModel(c, o);
        QVERIFY(fileBytes(a / "model.safetensors") != fileBytes(c / "model.safetensors"));

        const auto model = loadHfGpt2(a);
        QCOMPARE(model->config, o.config);
        QCOMPARE(model->config.dMlp, 48);
        const ActivationRecord rec = runForward(*model, {1, 2, 3});
        QVERIFY(at::isfinite(rec.logits).all().item<bool>());
    }

    void halfPrecisionWeightsBecomeFloat32_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<double>("tolerance");
        QTest::addRow("F16") << int(StorageDType::F16) << 1e-3;
        QTest::addRow("BF16") << int(StorageDType::BF16) << 8e-3;
    }
    void halfPrecisionWeightsBecomeFloat32()
    {
        QFETCH(int, dtype);
        QFETCH(double, tolerance);
        QTemporaryDir tmp;
        RandomModelOptions o;
        o.config = Gpt2Config{.nLayer = 1, .nHead = 2, .dModel = 8, .dMlp = 32, .nCtx = 8, .vocabSize = 50257};
        o.tokenizerDir = test::dataDir() / "gpt2-tokenizer";
        o.prefixTransformer = false; // also covers keys without `transformer.`
        const std::filesystem::path full = tmp.filePath(QStringLiteral("full")).toStdString();
        const std::filesystem::path half = tmp.filePath(QStringLiteral("half")).toStdString();
        writeRandomHfModel(full, o);
        o.dtype = static_cast<StorageDType>(dtype);
        writeRandomHfModel(half, o);
        const auto a = loadHfGpt2(full);
        const auto b = loadHfGpt2(half, WeightStorage::Float32); // kept as stored by default: tst_half_weights
        QCOMPARE(b->weights.tokenEmbedding.scalar_type(), at::kFloat);
        CS_COMPARE_TENSORS(b->weights.layers[0].attnQkvWeight, a->weights.layers[0].attnQkvWeight, tolerance);
        // Same rounding as torch's own conversion.
        CS_COMPARE_TENSORS(b->weights.layers[0].mlpInWeight,
                           a->weights.layers[0].mlpInWeight.to(dtype == int(StorageDType::F16) ? at::kHalf : at::kBFloat16).to(at::kFloat), 0);
    }

    void untiedLmHeadIsUsed()
    {
        QTemporaryDir tmp;
        RandomModelOptions o;
        o.config = Gpt2Config{.nLayer = 1, .nHead = 2, .dModel = 8, .dMlp = 32, .nCtx = 8, .vocabSize = 50257};
        o.config.tieWordEmbeddings = false;
        o.tokenizerDir = test::dataDir() / "gpt2-tokenizer";
        const std::filesystem::path dir = tmp.path().toStdString();
        writeRandomHfModel(dir, o);
        const auto m = loadHfGpt2(dir);
        QVERIFY(!at::equal(m->weights.unembedding, m->weights.tokenEmbedding));
        const auto st = SafetensorsFile::open(dir / "model.safetensors");
        QVERIFY(at::equal(m->weights.unembedding, st.toFloat32(*st.find("lm_head.weight"))));
        QVERIFY(m->weights.parameterCount() > 2 * 50257 * 8);
    }
};

QTEST_GUILESS_MAIN(TestForward)
#include "tst_forward.moc"
