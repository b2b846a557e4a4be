// The converters of math §5 against independent computations: the invariants W1–W5, R1–R2, P1–P2 of
// math §8.2, D1 (head reads), D2 (normalized autoencoders), batched == per-node, short prompts.
// Tolerances: 1e-4 absolute on sums of many float32 terms and on autograd comparisons (math §8.2's
// recommended float32 tolerance); 1e-5 relative for batched vs per-node (product.md §6).

#include "analysis_fixture.h"
#include "core/io/safetensors.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"

#include <limits>
#include <torch/csrc/autograd/autograd.h>

#include <QTest>

#include <set>

using namespace cs;
using test::AnalysisFixture;

namespace {

constexpr double kTol = 1e-4;

at::Tensor gradOf(const at::Tensor& y, const at::Tensor& x)
{
    return torch::autograd::grad({y}, {x}, {}, /*retain_graph=*/true, false, /*allow_unused=*/true)[0];
}

// A leaf copy of one residual row, for reconstitution (math §4.5).
at::Tensor leafRow(const at::Tensor& residual, int t)
{
    return residual[t].detach().clone().requires_grad_(true);
}

} // namespace

class TestConverters : public QObject {
    Q_OBJECT

    std::unique_ptr<AnalysisFixture> m_fx;
    std::vector<int> m_ids;
    std::optional<ActivationRecord> m_rec;

    AnalysisInput input() const { return {*m_fx->model, m_fx->saes, *m_rec}; }
    const Gpt2Config& config() const { return m_fx->model->config; }
    const Gpt2LayerWeights& weights(int layer) const { return m_fx->model->weights.layers[layer]; }

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        m_fx = std::make_unique<AnalysisFixture>();
        m_ids = AnalysisFixture::promptIds(0);
        m_rec = m_fx->run(m_ids);
    }

    // ---- math §3.4: autoencoders inside the pass --------------------------------------------------

    void autoencodersLeaveOutputsUnchanged()
    {
        const ActivationRecord plain = runForward(*m_fx->model, m_ids);
        CS_COMPARE_TENSORS(m_rec->logits, plain.logits, 1e-4);
        QCOMPARE(m_rec->layers[0].saes.size(), std::size_t(3));
        QCOMPARE(m_rec->layers[1].saes.size(), std::size_t(3));
    }

    void latentsInsideThePassMatchTheFixtures()
    {
        const auto ref = SafetensorsFile::open(test::dataDir() / "reference.safetensors");
        auto r = [&](const char* key) { return ref.toFloat32(*ref.find(key)); };
        const LayerRecord& L1 = m_rec->layers[1];
        CS_COMPARE_TENSORS(saePreActivation(*L1.sae(SaeLocation::MlpPostAct)), r("p0.sae.mlp_post_act.relu.1.pre"), kTol);
        CS_COMPARE_TENSORS(L1.sae(SaeLocation::MlpPostAct)->latents, r("p0.sae.mlp_post_act.relu.1.latents"), kTol);
        CS_COMPARE_TENSORS(L1.sae(SaeLocation::ResidDeltaAttn)->latents, r("p0.sae.resid_delta_attn.relu.1.latents"), kTol);
        // D2: the TopK SAE on the same input, with OpenAI's input normalization.
        const auto topk = loadSae(test::dataDir() / "sae/resid_delta_attn.topk8.pt");
        CS_COMPARE_TENSORS(encodeSae(topk, L1.attnOut).latents, r("p0.sae.resid_delta_attn.topk8_normalized.1.latents"), kTol);
    }

    // ---- writes (math §5.1–5.2) ---------------------------------------------------------------------

    void w1_neuronWritesPlusBiasSumToMlpOutput()
    {
        for (int layer = 0; layer < 2; ++layer) {
            for (int t : {0, 5, static_cast<int>(m_ids.size()) - 1}) {
                at::Tensor sum = weights(layer).mlpOutBias.clone();
                for (int f = 0; f < config().dMlp; ++f)
                    sum += residualWrite(input(), {NodeKind::MlpNeuron, layer, f, t, 0});
                CS_COMPARE_TENSORS(sum, m_rec->layers[layer].mlpOut[t], kTol);
            }
        }
    }

    void w2_headWritesPlusBiasSumToAttentionOutput()
    {
        for (int layer = 0; layer < 2; ++layer) {
            for (int q : {0, 3, static_cast<int>(m_ids.size()) - 1}) {
                at::Tensor sum = weights(layer).attnOutBias.clone();
                for (int k = 0; k <= q; ++k)
                    for (int h = 0; h < config().nHead; ++h)
                        sum += residualWrite(input(), {NodeKind::AttnHead, layer, h, q, k});
                CS_COMPARE_TENSORS(sum, m_rec->layers[layer].attnOut[q], kTol);
            }
        }
    }

    void w3_latentWritesPlusPreBiasSumToReconstruction_data()
    {
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("layer");
        QTest::newRow("resid_delta_mlp, ReLU") << int(NodeKind::MlpSaeLatent) << 0;
        QTest::newRow("resid_delta_attn, TopK normalized") << int(NodeKind::AttnSaeLatent) << 0;
        QTest::newRow("resid_post_mlp, ReLU") << int(NodeKind::ResidSaeLatent) << 0;
        QTest::newRow("mlp_post_act, ReLU") << int(NodeKind::MlpSaeLatent) << 1;
        QTest::newRow("resid_delta_attn, ReLU") << int(NodeKind::AttnSaeLatent) << 1;
        QTest::newRow("resid_pre, TopK normalized") << int(NodeKind::ResidSaeLatent) << 1;
    }
    void w3_latentWritesPlusPreBiasSumToReconstruction()
    {
        QFETCH(int, kind);
        QFETCH(int, layer);
        const NodeKind k = static_cast<NodeKind>(kind);
        const BoundSae* b = m_fx->saes.find(nodeKindName(k), layer);
        QVERIFY(b);
        const SaeRecord& rec = *m_rec->layers[layer].sae(b->location);
        const SparseAutoencoder& sae = *b->sae;
        for (int t : {0, 7, static_cast<int>(m_ids.size()) - 1}) {
            at::Tensor sum = at::zeros({config().dModel});
            for (int l = 0; l < sae.latentCount(); ++l)
                sum += residualWrite(input(), {k, layer, l, t, 0});
            // x̂ = (α·D + p)·s + μ  ⇒  Σ_l α·s·D_l = x̂ − p·s − μ; for mlp_post_act, pushed through W_out.
            const at::Tensor s = rec.encoding.scale[t], mu = rec.encoding.mean[t];
            at::Tensor expected = saeReconstruction(rec)[t] - sae.preBias * s - mu;
            if (b->location == SaeLocation::MlpPostAct)
                expected = at::mv(weights(layer).mlpOutWeight.t(), expected);
            CS_COMPARE_TENSORS(sum, expected, kTol);
        }
    }

    void w4_embeddingWriteIsTokenPlusPosition()
    {
        const Gpt2Weights& w = m_fx->model->weights;
        for (int t = 0; t < static_cast<int>(m_ids.size()); ++t) {
            const at::Tensor expected = w.tokenEmbedding[m_ids[t]] + w.positionEmbedding[t];
            CS_COMPARE_TENSORS(residualWrite(input(), {NodeKind::Embedding, 0, 0, t, 0}), expected, 1e-6);
        }
    }

    void w5_tokenWritesSumToZeroAndMatchTheLogitLens()
    {
        const Gpt2Weights& w = m_fx->model->weights;
        const at::Tensor ug = w.unembedding.t() * w.lnFinalGain.unsqueeze(1); // U_g = diag(g_f)·U, [d, V]
        for (const NodeRef& node : {NodeRef{NodeKind::MlpNeuron, 1, 17, 13, 0}, NodeRef{NodeKind::AttnHead, 0, 2, 9, 4},
                                    NodeRef{NodeKind::AttnSaeLatent, 1, 3, 13, 0}, NodeRef{NodeKind::Embedding, 0, 0, 2, 0}}) {
            const at::Tensor wv = residualWrite(input(), node);
            const at::Tensor tw = tokenWrite(*m_fx->model, wv);
            QVERIFY2(std::abs(tw.sum().item<double>()) < 1e-2 * tw.abs().max().item<double>(), node.name().c_str());
            const at::Tensor z = at::mv(ug.t(), wv);
            CS_COMPARE_TENSORS(tw, z - z.mean(), 1e-5);
        }
    }

    void perUnitWriteTimesActivationIsTheWrite()
    {
        for (const NodeRef& node : {NodeRef{NodeKind::MlpNeuron, 0, 3, 2, 0}, NodeRef{NodeKind::AttnHead, 1, 1, 6, 6},
                                    NodeRef{NodeKind::ResidSaeLatent, 1, 5, 4, 0}}) {
            CS_COMPARE_TENSORS(residualWritePerUnit(input(), node) * nodeActivation(input(), node), residualWrite(input(), node), 1e-6);
        }
    }

    // ---- reads (math §5.3–5.4, D1, D2, D5) ------------------------------------------------------------

    void r1_neuronReadIsGradientOfReconstitutedPreActivation()
    {
        const int layer = 1, t = 6;
        const at::Tensor x = leafRow(m_rec->layers[layer].residMid, t);
        const Gpt2LayerWeights& lw = weights(layer);
        const at::Tensor hpre = at::mv(lw.mlpInWeight.t(), test::layerNormDetached(x, lw.ln2Gain, lw.ln2Bias, config().layerNormEps)) + lw.mlpInBias;
        for (int f : {0, 31, 127}) {
            const at::Tensor read = *residualReads(input(), {NodeKind::MlpNeuron, layer, f, t, 0}).read;
            CS_COMPARE_TENSORS(read, gradOf(hpre[f], x), kTol);
            QVERIFY(std::abs(read.sum().item<double>()) < 1e-5); // reads through a layer norm sum to zero
        }
    }

    void r1_neuronReadAgreesWithFiniteDifferences()
    {
        // Central differences in double precision with σ frozen at its value in the record.
        const int layer = 0, t = 3, f = 10;
        const Gpt2LayerWeights& lw = weights(layer);
        const at::Tensor x = m_rec->layers[layer].residMid[t].to(at::kDouble);
        const double sigma = m_rec->layers[layer].ln2Sigma[t].item<double>();
        auto hpre = [&](const at::Tensor& r) {
            const at::Tensor ln = (r - r.mean()) / sigma * lw.ln2Gain.to(at::kDouble) + lw.ln2Bias.to(at::kDouble);
            return at::dot(ln, lw.mlpInWeight.select(1, f).to(at::kDouble)).item<double>();
        };
        const double eps = 1e-4;
        at::Tensor fd = at::zeros({config().dModel}, at::kDouble);
        for (int i = 0; i < config().dModel; ++i) {
            at::Tensor e = at::zeros_like(x);
            e[i] = eps;
            fd[i] = (hpre(x + e) - hpre(x - e)) / (2 * eps);
        }
        CS_COMPARE_TENSORS(*residualReads(input(), {NodeKind::MlpNeuron, layer, f, t, 0}).read, fd, 1e-4);
    }

    void r1_latentReadsAreGradientsOfReconstitutedPreActivations_data()
    {
        w3_latentWritesPlusPreBiasSumToReconstruction_data();
    }
    void r1_latentReadsAreGradientsOfReconstitutedPreActivations()
    {
        QFETCH(int, kind);
        QFETCH(int, layer);
        const NodeKind k = static_cast<NodeKind>(kind);
        const BoundSae* b = m_fx->saes.find(nodeKindName(k), layer);
        const Gpt2LayerWeights& lw = weights(layer);
        const Gpt2Config& c = config();
        const LayerRecord& L = m_rec->layers[layer];
        const int t = 9;
        at::Tensor x; // the residual row the node reads
        at::Tensor y; // the autoencoder's input reconstituted from x alone (math §4.5)
        switch (b->location) {
        case SaeLocation::MlpPostAct:
        case SaeLocation::ResidDeltaMlp: {
            x = leafRow(L.residMid, t);
            const at::Tensor h = at::mv(lw.mlpInWeight.t(), test::layerNormDetached(x, lw.ln2Gain, lw.ln2Bias, c.layerNormEps)) + lw.mlpInBias;
            y = mlpActivation(h, c.activation);
            if (b->location == SaeLocation::ResidDeltaMlp)
                y = at::mv(lw.mlpOutWeight.t(), y) + lw.mlpOutBias;
            break;
        }
        case SaeLocation::ResidDeltaAttn: {
            // A single token attends only to itself: A = V·W_O + b_O.
            x = leafRow(L.residIn, t);
            const at::Tensor ln = test::layerNormDetached(x, lw.ln1Gain, lw.ln1Bias, c.layerNormEps);
            const at::Tensor v = at::mv(lw.attnQkvWeight.narrow(1, 2 * c.dModel, c.dModel).t(), ln) + lw.attnQkvBias.narrow(0, 2 * c.dModel, c.dModel);
            y = at::mv(lw.attnOutWeight.t(), v) + lw.attnOutBias;
            break;
        }
        default:
            x = leafRow(m_rec->layers[layer].sae(b->location)->input, t);
            y = x;
        }
        const at::Tensor z = encodeSae(*b->sae, y.unsqueeze(0)).preActivation[0];
        for (int l : {0, 13, 63}) {
            const at::Tensor read = *residualReads(input(), {k, layer, l, t, 0}).read;
            CS_COMPARE_TENSORS(read, gradOf(z[l], x), kTol);
        }
    }

    void r2_tokenReadIsEmbeddingTimesRead()
    {
        const Gpt2Weights& w = m_fx->model->weights;
        for (const NodeRef& node : {NodeRef{NodeKind::MlpNeuron, 1, 5, 2, 0}, NodeRef{NodeKind::MlpSaeLatent, 1, 7, 2, 0}}) {
            const at::Tensor read = *residualReads(input(), node).read;
            const at::Tensor tr = tokenRead(*m_fx->model, read);
            QCOMPARE(tr.size(0), std::int64_t(config().vocabSize));
            for (int v : {0, 5335, 50256})
                QVERIFY(std::abs(tr[v].item<double>() - at::dot(w.tokenEmbedding[v], read).item<double>()) < 1e-5);
        }
    }

    void d1_headReadsAreGradientsOfTheScore()
    {
        const Gpt2Config& c = config();
        const int layer = 1, h = 2, q = 10, k = 4;
        const Gpt2LayerWeights& lw = weights(layer);
        const LayerRecord& L = m_rec->layers[layer];
        const double scale = 1.0 / std::sqrt(double(c.dHead()));
        auto project = [&](const at::Tensor& r, const at::Tensor& w, const at::Tensor& bias) {
            return at::mv(w.t(), test::layerNormDetached(r, lw.ln1Gain, lw.ln1Bias, c.layerNormEps)) + bias;
        };
        const at::Tensor bq = lw.attnQkvBias.narrow(0, h * c.dHead(), c.dHead());
        const at::Tensor bk = lw.attnQkvBias.narrow(0, c.dModel + h * c.dHead(), c.dHead());
        const at::Tensor xq = leafRow(L.residIn, q), xk = leafRow(L.residIn, k);
        const at::Tensor sQ = at::dot(project(xq, lw.queryWeight(h, c.dHead()), bq), L.key[k][h].detach()) * scale;
        const at::Tensor sK = at::dot(L.query[q][h].detach(), project(xk, lw.keyWeight(h, c.dHead()), bk)) * scale;
        QVERIFY(std::abs(sQ.item<double>() - attentionScores(*m_fx->model, *m_rec, layer)[q][k][h].item<double>()) < 1e-4); // the reconstitution is right
        const NodeReads reads = residualReads(input(), {NodeKind::AttnHead, layer, h, q, k});
        QVERIFY(!reads.read && reads.readQ && reads.readK);
        CS_COMPARE_TENSORS(*reads.readQ, gradOf(sQ, xq), kTol);
        CS_COMPARE_TENSORS(*reads.readK, gradOf(sK, xk), kTol);
    }

    void embeddingsHaveNoRead()
    {
        const NodeReads r = residualReads(input(), {NodeKind::Embedding, 0, 0, 1, 0});
        QVERIFY(!r.read && !r.readQ && !r.readK);
    }

    // ---- token-pair attribution (math §5.5, D2, D4) -----------------------------------------------------

    void p1_pairAttributionIsPTimesGradient_data()
    {
        QTest::addColumn<int>("layer");
        QTest::newRow("ReLU, layer 1") << 1;
        QTest::newRow("TopK normalized, layer 0") << 0;
    }
    void p1_pairAttributionIsPTimesGradient()
    {
        QFETCH(int, layer);
        const Gpt2Config& c = config();
        const LayerRecord& L = m_rec->layers[layer];
        const SaeRecord& rec = *L.sae(SaeLocation::ResidDeltaAttn);
        const int q = static_cast<int>(m_ids.size()) - 1;
        const std::int64_t n = static_cast<std::int64_t>(m_ids.size());
        const at::Tensor active = (rec.latents[q] > 0).nonzero().squeeze(1);
        QVERIFY(active.numel() > 0);
        const int l = static_cast<int>(active[0].item<std::int64_t>());
        // A[q] = Σ_k Σ_h P[q,k,h]·V[k,h]·W_O[h] + b_O with P a leaf; V, W_O and the SAE fixed.
        const at::Tensor P = L.probs[q].detach().clone().requires_grad_(true); // [k, H]
        const at::Tensor vwo = at::bmm(L.value.detach().permute({1, 0, 2}), weights(layer).attnOutWeight.view({c.nHead, c.dHead(), c.dModel}));
        const at::Tensor A = at::einsum("kh,hkd->d", {P, vwo}) + weights(layer).attnOutBias;
        CS_COMPARE_TENSORS(A, L.attnOut[q], 1e-4);
        const at::Tensor z = encodeSae(*rec.bound.sae, A.unsqueeze(0)).preActivation[0][l];
        const at::Tensor expected = (P * gradOf(z, P)).sum(1).detach();
        const auto attribution = pairAttribution(input(), {NodeKind::AttnSaeLatent, layer, l, q, 0});
        QVERIFY(attribution);
        QCOMPARE(attribution->size(0), n); // q is the last token: every k ≤ q
        CS_COMPARE_TENSORS(*attribution, expected, kTol);

        // Entries past the query token are not part of the answer (D4): at query 3 the vector has 4 entries.
        const at::Tensor active3 = (rec.latents[3] > 0).nonzero().squeeze(1);
        if (active3.numel() > 0) {
            const auto a3 = pairAttribution(input(), {NodeKind::AttnSaeLatent, layer, int(active3[0].item<std::int64_t>()), 3, 0});
            QVERIFY(a3);
            QCOMPARE(a3->size(0), std::int64_t(4));
        }
        if (!rec.bound.sae->normalizeInput) {
            // Sum rule: Σ_k out[k] = Enc_l·(A[q] − b_O).
            const double sum = attribution->sum().item<double>();
            const double rule = at::dot(rec.bound.sae->encoder.select(1, l), L.attnOut[q] - weights(layer).attnOutBias).item<double>();
            QVERIFY(std::abs(sum - rule) < kTol);
        }
    }

    void p2_inactiveLatentHasNoAttribution()
    {
        const SaeRecord& rec = *m_rec->layers[1].sae(SaeLocation::ResidDeltaAttn);
        const at::Tensor inactive = (rec.latents[2] == 0).nonzero().squeeze(1);
        QVERIFY(inactive.numel() > 0);
        QVERIFY(!pairAttribution(input(), {NodeKind::AttnSaeLatent, 1, int(inactive[0].item<std::int64_t>()), 2, 0}));
        QVERIFY_THROWS_EXCEPTION(InputError, pairAttribution(input(), {NodeKind::MlpNeuron, 1, 0, 2, 0}));
    }

    // ---- head maps, top tokens, batching -----------------------------------------------------------

    void headMapsAreProbabilitiesAndPairWriteNorms()
    {
        const HeadMaps maps = headMaps(input(), 0, 1);
        const std::int64_t n = static_cast<std::int64_t>(m_ids.size());
        QCOMPARE(maps.probs.size(0), n);
        CS_COMPARE_TENSORS(maps.probs, m_rec->layers[0].probs.select(2, 1), 0);
        for (int q : {4, 13})
            for (int k : {0, q})
                QVERIFY(std::abs(maps.writeMagnitude[q][k].item<double>() -
                                 residualWrite(input(), {NodeKind::AttnHead, 0, 1, q, k}).norm().item<double>()) < 1e-5);
        QCOMPARE(maps.writeMagnitude[2][3].item<float>(), 0.0f);
    }

    void topTokensAreSortedAndDecoded()
    {
        const at::Tensor scores = tokenWrite(*m_fx->model, residualWrite(input(), {NodeKind::MlpNeuron, 1, 3, 13, 0}));
        const TopTokens tt = topTokens(*m_fx->model->tokenizer, scores, 20);
        QCOMPARE(tt.top.size(), std::size_t(20));
        QCOMPARE(tt.bottom.size(), std::size_t(20));
        QCOMPARE(tt.top[0].value, scores.max().item<float>());
        QCOMPARE(tt.bottom[0].value, scores.min().item<float>());
        for (std::size_t i = 1; i < 20; ++i) {
            QVERIFY(tt.top[i].value <= tt.top[i - 1].value);
            QVERIFY(tt.bottom[i].value >= tt.bottom[i - 1].value);
        }
        QCOMPARE(tt.top[0].token, m_fx->model->tokenizer->tokenString(tt.top[0].id));
    }

    void batchedEqualsPerNode()
    {
        std::vector<NodeRef> nodes;
        for (int f = 0; f < 40; ++f)
            nodes.push_back({NodeKind::MlpNeuron, f % 2, f * 3, f % 14, 0});
        nodes.push_back({NodeKind::AttnHead, 1, 3, 12, 5});
        nodes.push_back({NodeKind::MlpSaeLatent, 1, 9, 4, 0});
        nodes.push_back({NodeKind::Embedding, 0, 0, 8, 0});
        std::vector<at::Tensor> writes, reads;
        for (const auto& n : nodes) {
            writes.push_back(residualWrite(input(), n));
            if (auto r = residualReads(input(), n).read)
                reads.push_back(*r);
        }
        const at::Tensor batchedW = tokenWrite(*m_fx->model, at::stack(writes));
        const at::Tensor batchedR = tokenRead(*m_fx->model, at::stack(reads));
        // The click's lists (one ranked pass over the tied matrix for all rows) equal topTokens of the
        // exact lenses: the same tokens, values within 1e-5 of the largest.
        const LensTopTokens ranked = lensTopTokens(*m_fx->model, at::stack(writes), at::stack(reads), 12);
        QCOMPARE(ranked.writes.size(), writes.size());
        QCOMPARE(ranked.reads.size(), reads.size());
        // Equal up to float32 ties: value by value within 1e-5 of the largest, and each listed token's
        // exact score is the value shown for it (two tokens whose scores agree to rounding may swap).
        const auto sameLists = [&](const TopTokens& actual, const at::Tensor& scores) {
            const TopTokens expected = topTokens(*m_fx->model->tokenizer, scores, 12);
            const double tolerance = 1e-5 * scores.abs().max().item<double>();
            for (const auto& [a, e] : {std::pair{&actual.top, &expected.top}, std::pair{&actual.bottom, &expected.bottom}}) {
                if (a->size() != e->size())
                    return false;
                std::set<int> ids;
                for (std::size_t i = 0; i < a->size(); ++i) {
                    const TokenScore& got = (*a)[i];
                    if (std::abs(got.value - (*e)[i].value) > tolerance || std::abs(scores[got.id].item<double>() - got.value) > tolerance
                        || got.token != m_fx->model->tokenizer->tokenString(got.id) || !ids.insert(got.id).second) {
                        qWarning("entry %zu: id %d value %.9g, expected id %d value %.9g", i, got.id, double(got.value), (*e)[i].id,
                                 double((*e)[i].value));
                        return false;
                    }
                }
            }
            return true;
        };
        for (std::size_t i = 0; i < writes.size(); ++i)
            QVERIFY2(sameLists(ranked.writes[i], batchedW[static_cast<std::int64_t>(i)]), qPrintable(QString::number(i)));
        for (std::size_t i = 0; i < reads.size(); ++i)
            QVERIFY2(sameLists(ranked.reads[i], batchedR[static_cast<std::int64_t>(i)]), qPrintable(QString::number(i)));
        // In context: the per-unit lists times the activation (a negative one swaps the lists).
        const TopTokens perUnit = ranked.writes[0];
        const TopTokens negative = scaledTopTokens(perUnit, -2.0);
        QCOMPARE(negative.top.front().id, perUnit.bottom.front().id);
        QCOMPARE(negative.top.front().value, static_cast<float>(perUnit.bottom.front().value * -2.0));
        QCOMPARE(scaledTopTokens(perUnit, 3.0).top.back().id, perUnit.top.back().id);
        for (std::size_t i = 0; i < writes.size(); ++i) {
            const at::Tensor single = tokenWrite(*m_fx->model, writes[i]);
            const double rel = (batchedW[i] - single).abs().max().item<double>() / single.abs().max().item<double>();
            QVERIFY2(rel <= 1e-5, qPrintable(QString::number(rel)));
        }
        for (std::size_t i = 0; i < reads.size(); ++i) {
            const at::Tensor single = tokenRead(*m_fx->model, reads[i]);
            const double rel = (batchedR[i] - single).abs().max().item<double>() / single.abs().max().item<double>();
            QVERIFY2(rel <= 1e-5, qPrintable(QString::number(rel)));
        }
    }

    // ---- issue 15: the click's half-precision ranking never misses the exact top-k -----------------
    // VocabRanker's bound (vocab_ranker.h/.cpp) makes the candidate set provably contain the exact top
    // and bottom k; here the bound is checked to hold on every row and the result to equal the exact
    // product's top-k, on a random matrix and on one built so that half precision cannot tell the best
    // rows apart.

    void vocabRankerBoundHoldsAndMatchesExact()
    {
        at::manual_seed(7);
        const at::Tensor M = at::randn({6000, 100}) * 0.3; // d = 100: 12 vectors of 8 and a tail of 4
        const VocabRanker ranker(M);
        const at::Tensor X = at::randn({5, 100}) * at::tensor({1.0f, 0.01f, 30.0f, 1.0f, 1.0f}).unsqueeze(1);
        const at::Tensor exact = at::mm(X.to(at::kDouble), M.to(at::kDouble).t()); // the real values, in double
        if (!ranker.halfPrecisionAvailable())
            QSKIP("this CPU has no F16C/AVX2/FMA: the ranker uses the exact product");
        const at::Tensor approx = ranker.approximateScores(X).to(at::kDouble);
        for (std::int64_t q = 0; q < X.size(0); ++q) {
            const double error = (approx[q] - exact[q]).abs().max().item<double>();
            const double bound = ranker.errorBound(X[q]);
            QVERIFY2(error <= bound, qPrintable(QStringLiteral("row %1: error %2 > bound %3").arg(q).arg(error).arg(bound)));
            QVERIFY2(bound < 1e-2 * exact[q].abs().max().item<double>(), "the bound is too loose to be useful");
        }
        const RankedRows ranked = ranker.rank(X, 25);
        QVERIFY(ranked.usedHalfPrecision);
        QVERIFY2(ranked.candidatesRescored < 5 * 2 * 25 * 4, qPrintable(QString::number(ranked.candidatesRescored)));
        for (std::int64_t q = 0; q < X.size(0); ++q) {
            const auto [topV, topI] = exact[q].topk(25);
            const auto [botV, botI] = exact[q].topk(25, 0, false);
            const RankedRows::Row& row = ranked.rows[static_cast<std::size_t>(q)];
            for (std::int64_t i = 0; i < 25; ++i) {
                QCOMPARE(row.topIds[i], topI[i].item<std::int64_t>());
                QCOMPARE(row.bottomIds[i], botI[i].item<std::int64_t>());
                QVERIFY(std::abs(row.topValues[i] - topV[i].item<double>()) <= 1e-5 * std::abs(topV[0].item<double>()));
                QVERIFY(std::abs(row.bottomValues[i] - botV[i].item<double>()) <= 1e-5 * std::abs(botV[0].item<double>()));
            }
        }
    }

    void vocabRankerFindsTopRowsHalfPrecisionCannotSeparate()
    {
        at::manual_seed(8);
        const std::int64_t V = 4000, d = 64;
        at::Tensor M = at::randn({V, d}) * 0.1;
        const at::Tensor x = at::randn({d});
        // 150 rows along x, 1e-5 apart (relative) — far below half precision's 2^-11 resolution, so their
        // approximate scores tie or come out in the wrong order, yet far above float32's.
        const at::Tensor base = x / x.norm() * 2.0;
        const at::Tensor rows = at::randperm(V).narrow(0, 0, 150);
        const at::Tensor offsets = at::randperm(150).to(at::kFloat) * 1e-5;
        M.index_copy_(0, rows, base.unsqueeze(0) * (1.0 + offsets.unsqueeze(1)));
        const VocabRanker ranker(M);
        const RankedRows ranked = ranker.rank(x.unsqueeze(0), 20);
        const at::Tensor exact = at::mv(M.to(at::kDouble), x.to(at::kDouble));
        const at::Tensor expected = std::get<1>(exact.topk(20));
        for (std::int64_t i = 0; i < 20; ++i)
            QCOMPARE(ranked.rows[0].topIds[i], expected[i].item<std::int64_t>());
        if (ranked.usedHalfPrecision) {
            // The approximate order alone is wrong here: the rescoring is what makes the lists exact.
            const at::Tensor approximate = std::get<1>(ranker.approximateScores(x.unsqueeze(0))[0].topk(20));
            QVERIFY(!at::equal(approximate, expected));
        }
    }

    void vocabRankerHalfStoredMatricesAndEdgeCases()
    {
        // A float16 or bfloat16 matrix is ranked as stored: the exact scores are those of its stored values.
        at::manual_seed(9);
        const at::Tensor base = at::randn({3000, 72}) * 0.2; // d = 72: 2 unrolled steps of 32 and a tail of 8
        const at::Tensor X = at::randn({3, 72});
        for (const at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
            const at::Tensor M = base.to(dtype);
            const VocabRanker ranker(M);
            const RankedRows ranked = ranker.rank(X, 15);
            const at::Tensor exact = at::mm(X.to(at::kDouble), M.to(at::kDouble).t());
            for (std::int64_t q = 0; q < X.size(0); ++q) {
                const auto [topV, topI] = exact[q].topk(15);
                const auto [botV, botI] = exact[q].topk(15, 0, false);
                const RankedRows::Row& row = ranked.rows[static_cast<std::size_t>(q)];
                QCOMPARE(row.topIds.size(), std::size_t(15));
                for (std::int64_t i = 0; i < 15; ++i) {
                    QCOMPARE(row.topIds[i], topI[i].item<std::int64_t>());
                    QCOMPARE(row.bottomIds[i], botI[i].item<std::int64_t>());
                    QVERIFY(std::abs(row.topValues[i] - topV[i].item<double>()) <= 1e-6 * std::abs(topV[0].item<double>()));
                    QVERIFY(std::abs(row.bottomValues[i] - botV[i].item<double>()) <= 1e-6 * std::abs(botV[0].item<double>()));
                }
            }
        }
        // k = V: every row is a candidate, the lists are the whole order.
        const at::Tensor small = at::randn({40, 16});
        const at::Tensor x = at::randn({1, 16});
        const RankedRows all = VocabRanker(small).rank(x, 100);
        const at::Tensor order = std::get<1>(at::mv(small.to(at::kDouble), x[0].to(at::kDouble)).sort(0, true));
        QCOMPARE(all.rows[0].topIds.size(), std::size_t(40));
        for (std::int64_t i = 0; i < 40; ++i) {
            QCOMPARE(all.rows[0].topIds[i], order[i].item<std::int64_t>());
            QCOMPARE(all.rows[0].bottomIds[i], order[39 - i].item<std::int64_t>());
        }
        // A direction with a NaN has no error bound: it is scored exactly over all rows, not dropped.
        at::Tensor bad = at::randn({1, 72});
        bad[0][5] = std::numeric_limits<float>::quiet_NaN();
        const RankedRows nan = VocabRanker(base).rank(bad, 5);
        QCOMPARE(nan.rows[0].topIds.size(), std::size_t(5));
        QCOMPARE(nan.candidatesRescored, std::int64_t(3000));
    }

    void layerScanEqualsPerNodeTokenWrites()
    {
        // Block size 50 does not divide 128, so the last block is a partial one.
        const NeuronTokenScan scan = scanNeuronWriteTokens(*m_fx->model, 1, 10, 50);
        QCOMPARE(scan.topIds.size(0), std::int64_t(config().dMlp));
        for (int f : {0, 49, 50, 127}) {
            const at::Tensor single = tokenWrite(*m_fx->model, weights(1).mlpOutWeight[f]);
            const TopTokens tt = topTokens(*m_fx->model->tokenizer, single, 10);
            const double scale = single.abs().max().item<double>();
            for (int i = 0; i < 10; ++i) {
                QCOMPARE(scan.topIds[f][i].item<std::int64_t>(), std::int64_t(tt.top[i].id));
                QCOMPARE(scan.bottomIds[f][i].item<std::int64_t>(), std::int64_t(tt.bottom[i].id));
                QVERIFY(std::abs(scan.topValues[f][i].item<double>() - tt.top[i].value) <= 1e-5 * scale);
                QVERIFY(std::abs(scan.bottomValues[f][i].item<double>() - tt.bottom[i].value) <= 1e-5 * scale);
            }
        }
    }

    void attnZAutoencoderWritesReadsAndPairs()
    {
        // An autoencoder on the concatenated head outputs before W_O (SAELens attn.hook_z): its latents
        // write α·s·D_l·W_O, read through V only (single-token reconstitution), and attribute to
        // token pairs through Z[q,h] = Σ_k P[q,k,h]·V[k,h].
        SaeSet saes;
        const auto sae = std::make_shared<const SparseAutoencoder>(loadSae(test::dataDir() / "sae/resid_delta_attn.relu.pt"));
        saes.add(bindSae(sae, config(), SaeRole::Attn, 1, SaeLocation::AttnZ));
        const ActivationRecord rec = runForward(*m_fx->model, m_ids, ForwardOptions{.saes = &saes});
        const AnalysisInput in{*m_fx->model, saes, rec};
        const LayerRecord& L = rec.layers[1];
        const SaeRecord& r = *L.sae(SaeLocation::AttnZ);
        const Gpt2LayerWeights& lw = weights(1);
        const Gpt2Config& c = config();
        const int q = static_cast<int>(m_ids.size()) - 1;

        // Writes: Σ_l write = (x̂ − p)·W_O.
        at::Tensor sum = at::zeros({c.dModel});
        for (int l = 0; l < sae->latentCount(); ++l)
            sum += residualWrite(in, {NodeKind::AttnSaeLatent, 1, l, q, 0});
        CS_COMPARE_TENSORS(sum, at::mv(lw.attnOutWeight.t(), saeReconstruction(r)[q] - sae->preBias), kTol);

        // Read: gradient of z_l w.r.t. the residual, with the token attending only to itself.
        const at::Tensor x = leafRow(L.residIn, q);
        const at::Tensor ln = test::layerNormDetached(x, lw.ln1Gain, lw.ln1Bias, c.layerNormEps);
        const at::Tensor v = at::mv(lw.attnQkvWeight.narrow(1, 2 * c.dModel, c.dModel).t(), ln) + lw.attnQkvBias.narrow(0, 2 * c.dModel, c.dModel);
        const int l = static_cast<int>(r.latents[q].argmax().item<std::int64_t>());
        QVERIFY(r.latents[q][l].item<float>() > 0);
        const at::Tensor z = encodeSae(*sae, v.unsqueeze(0)).preActivation[0][l];
        CS_COMPARE_TENSORS(*residualReads(in, {NodeKind::AttnSaeLatent, 1, l, q, 0}).read, gradOf(z, x), kTol);

        // Pairs: Σ_h P·∂z/∂P by autograd with P a leaf.
        const at::Tensor P = L.probs[q].detach().clone().requires_grad_(true);            // [k, H]
        const at::Tensor values = L.value.detach();                                        // [k, H, dh]
        const at::Tensor Z = (P.unsqueeze(-1) * values).sum(0).reshape({c.dModel});          // concat_h Z[q,h]
        const at::Tensor zl = encodeSae(*sae, Z.unsqueeze(0)).preActivation[0][l];
        const at::Tensor expected = (P * gradOf(zl, P)).sum(1).detach();
        const auto attribution = pairAttribution(in, {NodeKind::AttnSaeLatent, 1, l, q, 0});
        QVERIFY(attribution);
        CS_COMPARE_TENSORS(*attribution, expected, kTol);
    }

    // ---- prompts of 1 and 2 tokens; bad nodes ---------------------------------------------------------

    void shortPrompts_data()
    {
        QTest::addColumn<int>("tokens");
        QTest::newRow("1 token") << 1;
        QTest::newRow("2 tokens") << 2;
    }
    void shortPrompts()
    {
        QFETCH(int, tokens);
        const std::vector<int> ids(m_ids.begin(), m_ids.begin() + tokens);
        const ActivationRecord rec = m_fx->run(ids);
        const AnalysisInput in{*m_fx->model, m_fx->saes, rec};
        for (const char* name : {"mlp:0:1@-1", "attn:1:0@-1,0", "mlp_sae:1:3@0", "attn_sae:1:3@-1", "resid_sae:0:2@-1", "emb@-1"}) {
            const NodeRef node = NodeRef::parse(name);
            QCOMPARE(residualWrite(in, node).size(0), std::int64_t(config().dModel));
            (void)residualReads(in, node);
        }
        const SaeRecord& attnSae = *rec.layers[1].sae(SaeLocation::ResidDeltaAttn);
        for (int l = 0; l < attnSae.bound.sae->latentCount(); ++l) {
            const auto a = pairAttribution(in, {NodeKind::AttnSaeLatent, 1, l, tokens - 1, 0});
            QCOMPARE(bool(a), attnSae.latents[tokens - 1][l].item<float>() > 0);
            if (a)
                QCOMPARE(a->size(0), std::int64_t(tokens));
        }
    }

    void badNodesAreClearErrors_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        QTest::newRow("layer out of range") << QStringLiteral("mlp:2:0@0") << QStringLiteral("layer 2 does not exist");
        QTest::newRow("neuron out of range") << QStringLiteral("mlp:0:128@0") << QStringLiteral("index 128 is out of range (0..127)");
        QTest::newRow("head out of range") << QStringLiteral("attn:0:4@1,0") << QStringLiteral("index 4 is out of range (0..3)");
        QTest::newRow("latent out of range") << QStringLiteral("attn_sae:1:64@0") << QStringLiteral("index 64 is out of range");
        QTest::newRow("token out of range") << QStringLiteral("mlp:0:0@14") << QStringLiteral("outside the prompt's 14 tokens");
    }
    void badNodesAreClearErrors()
    {
        QFETCH(QString, name);
        QFETCH(QString, expected);
        try {
            residualWrite(input(), NodeRef::parse(name.toStdString()));
            QFAIL("accepted a bad node");
        } catch (const InputError& e) {
            QVERIFY2(QString::fromUtf8(e.what()).contains(expected), e.what());
        }
    }

    void latentWithoutAutoencoderIsAClearError()
    {
        const ActivationRecord plain = runForward(*m_fx->model, m_ids);
        const SaeSet none;
        const AnalysisInput in{*m_fx->model, none, plain};
        try {
            residualWrite(in, NodeRef::parse("mlp_sae:1:3@0"));
            QFAIL("accepted a latent without an autoencoder");
        } catch (const InputError& e) {
            QVERIFY2(QString::fromUtf8(e.what()).contains(QStringLiteral("no mlp_sae autoencoder is loaded for layer 1")), e.what());
        }
    }
};

QTEST_GUILESS_MAIN(TestConverters)
#include "tst_converters.moc"
