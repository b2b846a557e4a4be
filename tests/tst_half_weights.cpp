// Weights kept in float16/bfloat16 (issue 15, large models): every product computes in float32 from
// the stored values, so a model opened as stored gives what the same model converted to float32 gives.
#include "core/analysis/analysis.h"
#include "core/analysis/converters.h"
#include "core/analysis/effects.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/random_model.h"
#include "core/linalg/weight_product.h"
#include "test_support.h"

#include <QTemporaryDir>
#include <QtTest>

using namespace cs;

namespace {

// |a − e| ≤ 1e-5·max|e| + 1e-6: float32 products summed in another order (blocks) than ATen's.
double relativeTolerance(const at::Tensor& expected)
{
    return 1e-5 * expected.abs().max().item<double>() + 1e-6;
}

at::ScalarType dtypeOf(int index)
{
    return index == 0 ? at::kHalf : at::kBFloat16;
}

} // namespace

class TestHalfWeights : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void productsEqualFloat32Products_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("k");
        QTest::addColumn<int>("m");
        for (int dtype : {0, 1}) {
            const char* name = dtype == 0 ? "F16" : "BF16";
            QTest::addRow("%s small", name) << dtype << 37 << 53;
            QTest::addRow("%s blocks with a remainder", name) << dtype << 300 << 4000; // 131-row blocks
            QTest::addRow("%s tall", name) << dtype << 5000 << 30;
            QTest::addRow("%s vocabulary-like", name) << dtype << 40 << 20000; // x·Wᵀ cut by rows of W
            QTest::addRow("%s wide output", name) << dtype << 64 << 200000; // x·W cut by columns of W
        }
    }
    void productsEqualFloat32Products()
    {
        QFETCH(int, dtype);
        QFETCH(int, k);
        QFETCH(int, m);
        at::manual_seed(1);
        const at::Tensor w = at::randn({k, m}).to(dtypeOf(dtype));
        const at::Tensor wf = w.to(at::kFloat);
        QVERIFY(isHalfStorage(w));
        const at::Tensor x = at::randn({7, k});
        const at::Tensor g = at::randn({7, m});
        const at::Tensor v = at::randn({m});

        const at::Tensor xw = at::mm(x, wf);
        CS_COMPARE_TENSORS(timesWeight(x, w), xw, relativeTolerance(xw));
        const at::Tensor gwT = at::mm(g, wf.t());
        CS_COMPARE_TENSORS(timesWeightT(g, w), gwT, relativeTolerance(gwT));
        const at::Tensor wv = at::mv(wf, v);
        CS_COMPARE_TENSORS(weightTimesVector(w, v), wv, relativeTolerance(wv));
        // A transposed view (the logits' U.t()) is the other product of the contiguous matrix.
        const at::Tensor gwT2 = at::mm(g, wf.t());
        CS_COMPARE_TENSORS(timesWeight(g, w.t()), gwT2, relativeTolerance(gwT2));
        CS_COMPARE_TENSORS(timesWeightT(x, w.t()), xw, relativeTolerance(xw));
        // Float32 weights take ATen's own product: identical.
        QVERIFY(at::equal(timesWeight(x, wf), at::mm(x, wf)));
        QVERIFY(at::equal(asFloat32(w), wf));
        QVERIFY(at::equal(asFloat32(w.narrow(1, 1, m / 2)), wf.narrow(1, 1, m / 2))); // a head's columns
        QVERIFY(at::equal(asFloat32(w[k / 2]), wf[k / 2]));                            // a neuron's row
        QVERIFY(at::equal(asFloat32(w.select(1, m - 1)), wf.select(1, m - 1)));       // strided
        CS_COMPARE_TENSORS(weightRowNorms(w), wf.norm(2, -1), 1e-5 * wf.norm(2, -1).max().item<double>());
    }

    void linearGradientEqualsFloat32Gradient_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addRow("F16") << 0;
        QTest::addRow("BF16") << 1;
    }
    void linearGradientEqualsFloat32Gradient()
    {
        QFETCH(int, dtype);
        at::manual_seed(2);
        const at::Tensor w = at::randn({96, 700}).to(dtypeOf(dtype));
        const at::Tensor b = at::randn({700});
        const at::Tensor r = at::randn({5, 700});
        const at::Tensor x0 = at::randn({5, 96});

        const at::Tensor x = x0.clone().requires_grad_(true);
        const at::Tensor y = linear(b, x, w);
        (y * r).sum().backward();
        const at::Tensor xf = x0.clone().requires_grad_(true);
        const at::Tensor yf = at::addmm(b, xf, w.to(at::kFloat));
        (yf * r).sum().backward();
        CS_COMPARE_TENSORS(y.detach(), yf.detach(), relativeTolerance(yf.detach()));
        CS_COMPARE_TENSORS(x.grad(), xf.grad(), relativeTolerance(xf.grad()));
        // Under no-grad and without a bias.
        at::NoGradGuard noGrad;
        const at::Tensor plain = at::mm(x0, w.to(at::kFloat));
        CS_COMPARE_TENSORS(linear({}, x0, w), plain, relativeTolerance(plain));
    }

    void modelAsStoredEqualsConverted_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addRow("F16") << 0;
        QTest::addRow("BF16") << 1;
    }
    void modelAsStoredEqualsConverted()
    {
        QFETCH(int, dtype);
        QTemporaryDir tmp;
        RandomModelOptions o;
        o.config = Gpt2Config{.nLayer = 2, .nHead = 2, .dModel = 16, .dMlp = 64, .nCtx = 32, .vocabSize = 50257};
        o.tokenizerDir = test::dataDir() / "gpt2-tokenizer";
        o.dtype = dtype == 0 ? StorageDType::F16 : StorageDType::BF16;
        const std::filesystem::path dir = tmp.path().toStdString();
        writeRandomHfModel(dir, o);
        const auto stored = loadHfGpt2(dir);
        const auto converted = loadHfGpt2(dir, WeightStorage::Float32);
        const at::ScalarType kind = dtypeOf(dtype);
        QCOMPARE(stored->weights.tokenEmbedding.scalar_type(), kind);
        QCOMPARE(stored->weights.layers[1].mlpOutWeight.scalar_type(), kind);
        QCOMPARE(stored->weights.layers[1].ln2Gain.scalar_type(), at::kFloat); // vectors are float32
        QCOMPARE(converted->weights.tokenEmbedding.scalar_type(), at::kFloat);
        QVERIFY(at::equal(stored->weights.layers[0].attnQkvWeight.to(at::kFloat), converted->weights.layers[0].attnQkvWeight));
        QCOMPARE(stored->weights.parameterCount(), converted->weights.parameterCount());
        QVERIFY(stored->weights.byteCount() < converted->weights.byteCount() * 6 / 10);

        // The forward pass: logits at every position.
        const std::vector<int> ids = stored->tokenizer->encode("When Mary and John went to the store, John gave a drink to");
        const ActivationRecord a = runForward(*stored, ids);
        const ActivationRecord e = runForward(*converted, ids);
        CS_COMPARE_TENSORS(a.logits, e.logits, relativeTolerance(e.logits));
        CS_COMPARE_TENSORS(logitsAt(*stored, a, 3), e.logits[3], relativeTolerance(e.logits));

        // The whole analysis: every metric of the converted model's node table, for each objective kind.
        for (const ObjectiveKind objective : {ObjectiveKind::LogitDiff, ObjectiveKind::Prob}) {
            AnalysisQuery q;
            q.prompt = "When Mary and John went to the store, John gave a drink to";
            q.objective.kind = objective;
            q.objective.targets = {" Mary"};
            if (objective == ObjectiveKind::LogitDiff)
                q.objective.distractors = {" John"};
            const SaeSet noSaes;
            const Analysis sa = analyzePrompt(*stored, noSaes, q);
            const Analysis ea = analyzePrompt(*converted, noSaes, q);
            const AnalysisInput sin{*stored, noSaes, sa.left.run.record};
            const AnalysisInput ein{*converted, noSaes, ea.left.run.record};
            const std::vector<NodeTableRow> rows = nodeTable(*converted, noSaes, ea, 10);
            QVERIFY(rows.size() >= 10);
            double scale = 0;
            for (const NodeTableRow& row : rows)
                for (const Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect})
                    scale = std::max(scale, std::abs(row.left->value(metric)));
            for (const NodeTableRow& row : rows) {
                const NodeMetrics s = metricsOf(sin, sa.left.run.effects, row.node);
                for (const Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect}) {
                    const double want = row.left->value(metric);
                    if (!(std::abs(s.value(metric) - want) <= 1e-5 * scale + 1e-7))
                        QFAIL(qPrintable(QStringLiteral("%1: %2 as stored, %3 converted").arg(QString::fromStdString(row.node.name())).arg(s.value(metric)).arg(want)));
                }
            }
            // The click: read and write lenses, top tokens by the ranker over the stored matrix.
            const NodeRef neuron = rows.front().node;
            const at::Tensor writeA = residualWrite(sin, neuron), writeE = residualWrite(ein, neuron);
            CS_COMPARE_TENSORS(writeA, writeE, relativeTolerance(writeE));
            const LensTopTokens la = lensTopTokens(*stored, writeA.unsqueeze(0), at::zeros({0, 16}), 10);
            const LensTopTokens le = lensTopTokens(*converted, writeE.unsqueeze(0), at::zeros({0, 16}), 10);
            QCOMPARE(la.writes.size(), std::size_t(1));
            for (std::size_t i = 0; i < 10; ++i) {
                QCOMPARE(la.writes[0].top[i].id, le.writes[0].top[i].id);
                QVERIFY(std::abs(la.writes[0].top[i].value - le.writes[0].top[i].value) <= 1e-5 * std::abs(le.writes[0].top[0].value) + 1e-6);
            }
        }
    }
};

QTEST_GUILESS_MAIN(TestHalfWeights)
#include "tst_half_weights.moc"
