// Weights kept in float16/bfloat16 (issue 15, large models and memory per autoencoder): every product
// computes in float32 from the stored values, so a model or an autoencoder opened as stored gives what
// the same one converted to float32 gives.
#include "core/analysis/analysis.h"
#include "core/analysis/converters.h"
#include "core/analysis/effects.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/io/safetensors.h"
#include "core/linalg/weight_product.h"
#include "core/model/random_model.h"
#include "test_support.h"

#include <QTemporaryDir>
#include <QtTest>

#include <fstream>
#include <nlohmann/json.hpp>

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

// `sae` as a SAELens directory at `hook` with every tensor in `dtype`.
std::filesystem::path writeSaeLensDir(const std::filesystem::path& dir, const SparseAutoencoder& sae, const std::string& hook,
                                      at::ScalarType dtype)
{
    std::filesystem::create_directories(dir);
    writeSafetensors(dir / "sae_weights.safetensors", {{"W_enc", sae.encoder.to(dtype)},
                                                       {"W_dec", sae.decoder.to(dtype)},
                                                       {"b_enc", sae.encoderBias.to(dtype)},
                                                       {"b_dec", sae.preBias.to(dtype)}});
    nlohmann::json cfg = {{"architecture", sae.activation == SaeActivation::TopK ? "topk" : "standard"},
                          {"d_in", sae.inputWidth()},
                          {"d_sae", sae.latentCount()},
                          {"hook_name", hook},
                          {"apply_b_dec_to_input", sae.subtractPreBias},
                          {"normalize_activations", sae.normalizeInput ? "layer_norm" : "none"}};
    if (sae.activation == SaeActivation::TopK)
        cfg["k"] = sae.topK;
    std::ofstream(dir / "cfg.json") << cfg.dump(2);
    return dir;
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
        // Float32 weights (oneDNN's sgemm): the same sums in another order.
        CS_COMPARE_TENSORS(timesWeight(x, wf), xw, relativeTolerance(xw));
        QVERIFY(at::equal(asFloat32(w), wf));
        QVERIFY(at::equal(asFloat32(w.narrow(1, 1, m / 2)), wf.narrow(1, 1, m / 2))); // a head's columns
        QVERIFY(at::equal(asFloat32(w[k / 2]), wf[k / 2]));                            // a neuron's row
        QVERIFY(at::equal(asFloat32(w.select(1, m - 1)), wf.select(1, m - 1)));       // strided
        CS_COMPARE_TENSORS(weightRowNorms(w), wf.norm(2, -1), 1e-5 * wf.norm(2, -1).max().item<double>());
    }

    // Float32 weights go to oneDNN's sgemm in every layout sgemm can take (rows contiguous, or a
    // transposed view; a column slice keeps its row stride) and to ATen in the others (expanded, strided
    // both ways), against ATen's product of contiguous copies. Up to 128 rows a product with a
    // transposed weight is computed transposed; above, as given: both are here. Includes GPT-2 XL's 64-token shapes and
    // the degenerate ones (one row, one column, nothing to sum).
    void float32ProductsEqualATenProducts_data()
    {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("k");
        QTest::addColumn<int>("m");
        QTest::addRow("small") << 7 << 37 << 53;
        QTest::addRow("XL attention in") << 64 << 1600 << 4800;
        QTest::addRow("XL MLP out") << 64 << 6400 << 1600;
        QTest::addRow("many rows (transposed products not flipped)") << 300 << 200 << 500;
        QTest::addRow("one row") << 1 << 300 << 700;
        QTest::addRow("one column") << 9 << 300 << 1;
        QTest::addRow("one inner") << 9 << 1 << 40;
        QTest::addRow("nothing to sum") << 5 << 0 << 6;
        QTest::addRow("no rows") << 0 << 30 << 6;
    }
    void float32ProductsEqualATenProducts()
    {
        QFETCH(int, n);
        QFETCH(int, k);
        QFETCH(int, m);
        at::manual_seed(7);
        const at::Tensor x = at::randn({n, k});
        const at::Tensor w = at::randn({k, m}) * 0.05;
        const at::Tensor g = at::randn({n, m});
        const at::Tensor xw = at::mm(x, w), gwT = at::mm(g, w.t().contiguous());
        const auto check = [](const at::Tensor& got, const at::Tensor& want) {
            QCOMPARE(got.sizes(), want.sizes());
            QCOMPARE(got.scalar_type(), at::kFloat);
            if (want.numel() > 0)
                CS_COMPARE_TENSORS(got, want, relativeTolerance(want));
        };
        check(timesWeight(x, w), xw);
        check(timesWeightT(g, w), gwT);
        check(timesWeight(x, w.t().contiguous().t()), xw); // W as a transposed view
        check(timesWeightT(x, w.t().contiguous()), xw);
        check(timesWeight(x.t().contiguous().t(), w), xw); // x as a transposed view
        check(linear({}, x, w), xw);
        if (m >= 2) { // a column slice of W (a head's columns): row stride m, m/2 columns
            const at::Tensor slice = w.narrow(1, 1, m / 2);
            check(timesWeight(x, slice), at::mm(x, slice.contiguous()));
        }
        if (m >= 2 && k >= 2) { // expanded (stride 0) and strided-both-ways weights: ATen's own product
            const at::Tensor expanded = w.narrow(1, 0, 1).expand({k, m});
            QVERIFY(at::equal(timesWeight(x, expanded), at::mm(x, expanded)));
            const at::Tensor both = at::randn({2 * k, 2 * m}).slice(0, 0, 2 * k, 2).slice(1, 0, 2 * m, 2);
            QVERIFY(at::equal(timesWeight(x, both), at::mm(x, both)));
        }
        if (k >= 1 && m >= 1) {
            const at::Tensor v = at::randn({k});
            check(weightTimesVector(w.t().contiguous(), v), at::mv(w.t().contiguous(), v));
        }
        // Other dtypes are ATen's: exact.
        QVERIFY(at::equal(timesWeight(x.to(at::kDouble), w.to(at::kDouble)), at::mm(x.to(at::kDouble), w.to(at::kDouble))));
    }

    // With float32 weights the gradient w.r.t. x comes from the same sgemm (a custom autograd node), equal
    // to ATen's; a weight that requires a gradient (the trainers) still gets it, through ATen's addmm.
    void float32LinearGradients()
    {
        at::manual_seed(3);
        const at::Tensor w = at::randn({96, 700}) * 0.05;
        const at::Tensor b = at::randn({700});
        const at::Tensor r = at::randn({5, 700});
        const at::Tensor x0 = at::randn({5, 96});

        const at::Tensor x = x0.clone().requires_grad_(true);
        const at::Tensor y = linear(b, x, w);
        (y * r).sum().backward();
        const at::Tensor xa = x0.clone().requires_grad_(true);
        const at::Tensor ya = at::addmm(b, xa, w);
        (ya * r).sum().backward();
        CS_COMPARE_TENSORS(y.detach(), ya.detach(), relativeTolerance(ya.detach()));
        CS_COMPARE_TENSORS(x.grad(), xa.grad(), relativeTolerance(xa.grad()));
        // The transposed product's gradient (the logits: x·Uᵀ).
        const at::Tensor x2 = x0.clone().requires_grad_(true);
        (timesWeightT(x2, w.t().contiguous()) * r).sum().backward();
        CS_COMPARE_TENSORS(x2.grad(), xa.grad(), relativeTolerance(xa.grad()));

        const at::Tensor wt = w.clone().requires_grad_(true);
        const at::Tensor bt = b.clone().requires_grad_(true);
        (linear(bt, x0, wt) * r).sum().backward();
        QVERIFY(wt.grad().defined() && bt.grad().defined());
        CS_COMPARE_TENSORS(wt.grad(), at::mm(x0.t(), r), relativeTolerance(at::mm(x0.t(), r)));
        CS_COMPARE_TENSORS(bt.grad(), r.sum(0), 1e-5);
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

    // Issue 15, memory per autoencoder: the fixture autoencoders (float32) written in float16/bfloat16
    // and opened as stored (their matrices stay half) or converted, on the float32 tiny model, with an
    // MLP, an attention (TopK, normalized input) and a residual autoencoder. The whole analysis equals
    // within 1e-5 of the largest value (float32 sums in another order, as for the model above): the
    // objective, every node-table metric (latents included), every latent's effects, a latent's write
    // and reads, the reconstruction, and a run with an ablated latent (its decoder row in the pass).
    void autoencodersAsStoredEqualConverted_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addRow("F16") << 0;
        QTest::addRow("BF16") << 1;
    }
    void autoencodersAsStoredEqualConverted()
    {
        QFETCH(int, dtype);
        const at::ScalarType kind = dtypeOf(dtype);
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        const auto fixture = [](const char* file) { return loadSae(test::dataDir() / "sae" / file); };
        struct Placed {
            const char* file;
            const char* hook;
            SaeRole role;
            int layer;
        };
        const Placed placed[] = {{"mlp_post_act.relu.pt", "blocks.0.mlp.hook_post", SaeRole::Mlp, 0},
                                 {"resid_delta_attn.topk8.pt", "blocks.0.hook_attn_out", SaeRole::Attn, 0},
                                 {"resid_delta_attn.relu.pt", "blocks.1.hook_attn_out", SaeRole::Attn, 1},
                                 {"resid_delta_attn.relu.pt", "blocks.1.hook_resid_pre", SaeRole::Resid, 1}};
        SaeSet stored, converted;
        std::int64_t storedBytes = 0, convertedBytes = 0;
        for (const Placed& p : placed) {
            const std::filesystem::path dir = writeSaeLensDir(root / (std::string(p.hook) + ".sae"), fixture(p.file), p.hook, kind);
            auto s = std::make_shared<const SparseAutoencoder>(loadSae(dir));
            auto c = std::make_shared<const SparseAutoencoder>(loadSae(dir, WeightStorage::Float32));
            QCOMPARE(s->encoder.scalar_type(), kind);
            QCOMPARE(s->decoder.scalar_type(), kind);
            QCOMPARE(c->decoder.scalar_type(), at::kFloat);
            storedBytes += s->byteCount();
            convertedBytes += c->byteCount();
            stored.add(bindSae(s, model->config, p.role, p.layer));
            converted.add(bindSae(c, model->config, p.role, p.layer));
        }
        QVERIFY(storedBytes < convertedBytes * 6 / 10);

        AnalysisQuery q;
        q.prompt = "When Mary and John went to the store, John gave a drink to";
        q.objective.targets = {" Mary"};
        q.objective.distractors = {" John"};
        const auto compareRuns = [&](const Analysis& sa, const Analysis& ea) {
            const Effects& se = sa.left.run.effects;
            const Effects& ee = ea.left.run.effects;
            QVERIFY(std::abs(se.objective - ee.objective) <= 1e-5 * std::abs(ee.objective) + 1e-6);
            const AnalysisInput sin{*model, stored, sa.left.run.record};
            const AnalysisInput ein{*model, converted, ea.left.run.record};
            // Every latent's effects, entry by entry (the same entries are active).
            int latentKinds = 0;
            for (std::size_t l = 0; l < ee.layers.size(); ++l) {
                QCOMPARE(se.layers[l].latents.size(), ee.layers[l].latents.size());
                for (std::size_t i = 0; i < ee.layers[l].latents.size(); ++i) {
                    const auto& a = se.layers[l].latents[i];
                    const auto& e = ee.layers[l].latents[i];
                    QCOMPARE(a.kind, e.kind);
                    QVERIFY(at::equal(a.activeTokens, e.activeTokens));
                    QVERIFY(at::equal(a.activeLatents, e.activeLatents));
                    QVERIFY(e.activeLatents.numel() > 0);
                    CS_COMPARE_TENSORS(a.activation, e.activation, relativeTolerance(e.activation));
                    CS_COMPARE_TENSORS(a.activeWriteMagnitude, e.activeWriteMagnitude, relativeTolerance(e.activeWriteMagnitude));
                    CS_COMPARE_TENSORS(a.activeDirect, e.activeDirect, relativeTolerance(e.activeDirect) + 1e-6 * std::abs(ee.objective));
                    CS_COMPARE_TENSORS(a.activeTotal, e.activeTotal, relativeTolerance(e.activeTotal) + 1e-6 * std::abs(ee.objective));
                    ++latentKinds;
                }
                for (std::size_t i = 0; i < ea.left.run.record.layers[l].saes.size(); ++i) {
                    const SaeRecord& sr = sa.left.run.record.layers[l].saes[i];
                    const SaeRecord& er = ea.left.run.record.layers[l].saes[i];
                    const at::Tensor recon = saeReconstruction(er);
                    CS_COMPARE_TENSORS(saeReconstruction(sr), recon, relativeTolerance(recon));
                    const at::Tensor error = saeError(er);
                    CS_COMPARE_TENSORS(saeError(sr), error, relativeTolerance(recon));
                }
            }
            QCOMPARE(latentKinds, 4);
            // The node table with latents in it, every metric.
            const std::vector<NodeTableRow> rows = nodeTable(*model, converted, ea, 20);
            double scale = 0;
            int latentRows = 0;
            for (const NodeTableRow& row : rows) {
                latentRows += isSaeLatent(row.node.kind) ? 1 : 0;
                for (const Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect})
                    scale = std::max(scale, std::abs(row.left->value(metric)));
            }
            QVERIFY(latentRows >= 3);
            for (const NodeTableRow& row : rows) {
                const NodeMetrics m = metricsOf(sin, se, row.node);
                for (const Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect}) {
                    const double want = row.left->value(metric);
                    if (!(std::abs(m.value(metric) - want) <= 1e-5 * scale + 1e-7))
                        QFAIL(qPrintable(QStringLiteral("%1: %2 as stored, %3 converted").arg(QString::fromStdString(row.node.name())).arg(m.value(metric)).arg(want)));
                }
                // A latent's click: its write (the decoder row) and its reads (the encoder column).
                if (isSaeLatent(row.node.kind)) {
                    const at::Tensor write = residualWrite(ein, row.node);
                    CS_COMPARE_TENSORS(residualWrite(sin, row.node), write, relativeTolerance(write));
                    const NodeReads sr = residualReads(sin, row.node), er = residualReads(ein, row.node);
                    QVERIFY(er.read.has_value() && sr.read.has_value());
                    CS_COMPARE_TENSORS(*sr.read, *er.read, relativeTolerance(*er.read));
                }
            }
        };
        const Analysis sa = analyzePrompt(*model, stored, q);
        const Analysis ea = analyzePrompt(*model, converted, q);
        compareRuns(sa, ea);

        // Ablate the attention latent of layer 1 with the largest total effect (forward.cpp reads its
        // decoder row inside the pass).
        const auto& lat = *std::find_if(ea.left.run.effects.layers[1].latents.begin(), ea.left.run.effects.layers[1].latents.end(),
                                        [](const auto& x) { return x.kind == "attn_sae"; });
        const std::int64_t top = lat.activeTotal.abs().argmax().item<std::int64_t>();
        AblationSpec ablate;
        ablate.kind = NodeKind::AttnSaeLatent;
        ablate.layer = 1;
        ablate.index = static_cast<int>(lat.activeLatents[top].item<std::int64_t>());
        ablate.token = static_cast<int>(lat.activeTokens[top].item<std::int64_t>());
        ablate.value = 0;
        q.ablations = {ablate};
        q.baseline = false;
        const Analysis sb = analyzePrompt(*model, stored, q);
        const Analysis eb = analyzePrompt(*model, converted, q);
        const double change = eb.left.run.effects.objective - ea.left.run.effects.objective;
        if (!(std::abs(change) > 1e-4)) // the ablation changes something
            QFAIL(qPrintable(QStringLiteral("ablating %1 changed the objective by %2 (its total effect %3)")
                                 .arg(QString::fromStdString(ablate.name())).arg(change).arg(lat.activeTotal[top].item<double>())));
        compareRuns(sb, eb);
    }
};

QTEST_GUILESS_MAIN(TestHalfWeights)
#include "tst_half_weights.moc"
