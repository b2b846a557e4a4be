// Long prompts (issue 15): the per-pair values the window asks for lazily — a head's metrics built from
// their factors, an attention latent's pair map over every query row at once, a node's activation at
// every token — equal the eager computations (a plain autograd pass, per-pair formulas, one row at a
// time) at 1,024 tokens, and the staged results of a Run equal its final result. A record without
// probabilities (ForwardOptions::keepProbs off, as analyzePrompt makes it: attention as one autograd node
// that recomputes P by query blocks, effects reading P recomputed) gives the gradients, per-pair values,
// reductions over keys, latents' effects and node table of the record that keeps them.
// The model is the tiny fixture's shape (2 layers, d 32, 4 heads) with random weights and a
// 1,024-token context, made by the project's generator; the fixture autoencoders fit its widths.
// Tolerances: 1e-6 absolute (the bound) and 1e-5 relative to the largest value compared — the
// random model's per-pair values are small (≈ 1e-5), so the relative bound is the one that bites.

#include "analysis_fixture.h"
#include "core/analysis/analysis.h"
#include "core/analysis/effects.h"
#include "core/model/random_model.h"
#include "core/util/runtime.h"

#include <torch/csrc/autograd/autograd.h>

#include <QTemporaryDir>

#include <functional>
#include <set>
#include <QTest>

using namespace cs;

namespace {

constexpr int kTokens = 1024;

// |a − b| ≤ 1e-6 and ≤ 1e-5 · max|b| everywhere; b must not be all zeros.
bool close(const at::Tensor& a, const at::Tensor& b)
{
    const double scale = b.detach().abs().max().item<double>();
    const double diff = test::maxAbsDiff(a, b);
    if (scale == 0 || diff > 1e-6 || diff > 1e-5 * scale) {
        qWarning("max |b| %g, max |a - b| %g", scale, diff);
        return false;
    }
    return true;
}

// |a − b| ≤ 1e-5 · max|b|: gradients of a scalar over every token are of order 10, where float32
// rounding alone is of order 1e-6.
bool closeRelative(const at::Tensor& a, const at::Tensor& b)
{
    const double scale = b.detach().abs().max().item<double>();
    const double diff = test::maxAbsDiff(a, b);
    if (scale == 0 || diff > 1e-5 * scale) {
        qWarning("max |b| %g, max |a - b| %g", scale, diff);
        return false;
    }
    return true;
}

// close(), or both exactly zero (a latent kind with no active entry where the objective reads).
bool closeOrZero(const at::Tensor& a, const at::Tensor& b)
{
    if (b.detach().abs().max().item<double>() == 0)
        return a.detach().abs().max().item<double>() == 0;
    return close(a, b);
}

} // namespace

class TestLongPrompt : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    std::shared_ptr<const Gpt2Model> m_model;
    SaeSet m_saes;
    std::vector<int> m_ids;
    std::optional<ActivationRecord> m_rec, m_lazy; // m_lazy: without recorded probabilities
    std::optional<Effects> m_effects, m_lazyEffects;
    ResolvedObjective m_objective;

    AnalysisInput input() const { return {*m_model, m_saes, *m_rec}; }
    AnalysisInput lazyInput() const { return {*m_model, m_saes, *m_lazy}; }

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        const auto tiny = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        RandomModelOptions o;
        o.config = tiny->config;
        o.config.nCtx = kTokens;
        o.seed = 15;
        o.tokenizerDir = test::dataDir() / "tiny-gpt2";
        const std::filesystem::path dir = m_dir.path().toStdString();
        writeRandomHfModel(dir, o);
        m_model = loadHfGpt2(dir);
        QCOMPARE(m_model->config.nCtx, kTokens);
        const auto sae = [](const char* file) {
            return std::make_shared<const SparseAutoencoder>(loadSae(test::dataDir() / "sae" / file));
        };
        // A plain ReLU attention autoencoder and the normalized TopK one (D2), and an MLP one.
        m_saes.add(bindSae(sae("resid_delta_attn.topk8.pt"), m_model->config, SaeRole::Attn, 0));
        m_saes.add(bindSae(sae("resid_delta_attn.relu.pt"), m_model->config, SaeRole::Attn, 1));
        m_saes.add(bindSae(sae("mlp_post_act.relu.pt"), m_model->config, SaeRole::Mlp, 1));
        for (int i = 0; i < kTokens; ++i)
            m_ids.push_back((i * 7919 + 13) % m_model->config.vocabSize);
        m_objective = logitDifference(m_ids[1], m_ids[2]);
        ForwardOptions fo;
        fo.withGrad = true;
        fo.saes = &m_saes;
        m_rec = runForward(*m_model, m_ids, fo);
        QCOMPARE(m_rec->tokenCount(), kTokens);
        m_effects = computeEffects(input(), m_objective);
        fo.keepProbs = false;
        m_lazy = runForward(*m_model, m_ids, fo);
        QVERIFY(!m_lazy->layers[0].probs.defined());
        m_lazyEffects = computeEffects(lazyInput(), m_objective);
    }

    void lazyAttentionGradientsEqualTheCompositeGraphs()
    {
        // The attention node's backward pass (P recomputed by blocks of 128 query rows) against
        // autograd through the composite graph, with ablated probabilities spread over several blocks
        // (a whole row, single pairs, the first and last tokens) and without.
        ForwardAblations ablations;
        ablations.layers.resize(2);
        for (int k = 0; k <= 700; ++k)
            ablations.layers[0].probs.push_back({700, 2, k, 0.001f});
        ablations.layers[0].probs.push_back({kTokens - 1, 0, 5, 0.3f});
        ablations.layers[1].probs.push_back({0, 1, 0, 0.5f});
        ablations.layers[1].probs.push_back({kTokens - 1, 3, kTokens - 1, -0.2f});
        ablations.layers[1].probs.push_back({129, 1, 128, 0.7f});
        for (const bool ablated : {false, true}) {
            std::vector<at::Tensor> grads[2];
            at::Tensor outputs[2];
            for (const bool keep : {true, false}) {
                ForwardOptions fo;
                fo.withGrad = true;
                fo.keepProbs = keep;
                fo.ablations = ablated ? &ablations : nullptr;
                fo.logits = RecordLogits::None;
                const ActivationRecord rec = runForward(*m_model, m_ids, fo);
                // A scalar that reads every token: gradients reach every query block.
                const at::Tensor weights = at::linspace(-1, 1, rec.lnFinalOut.numel()).view_as(rec.lnFinalOut);
                const at::Tensor obj = (rec.lnFinalOut * weights).sum();
                std::vector<at::Tensor> inputs{rec.embeddings};
                for (const LayerRecord& L : rec.layers)
                    for (const at::Tensor& t : {L.query, L.key, L.value, L.headOut})
                        inputs.push_back(t);
                grads[keep] = torch::autograd::grad({obj}, inputs);
                outputs[keep] = rec.lnFinalOut.detach();
                if (ablated && !keep) // the record's ablated values, recomputed
                    QCOMPARE(layerProbs(*m_model, rec, 0).at(700, 300, 2), double(0.001f));
            }
            QVERIFY(closeRelative(outputs[0], outputs[1]));
            for (std::size_t i = 0; i < grads[0].size(); ++i)
                QVERIFY2(closeRelative(grads[0][i], grads[1][i]), qPrintable(QStringLiteral("input %1, ablated %2").arg(i).arg(ablated)));
        }
    }

    void lazyPerPairValuesEqualTheEagerOnes()
    {
        const int n = kTokens;
        for (int layer = 0; layer < m_model->config.nLayer; ++layer) {
            const LayerEffects& eager = m_effects->layers[layer];
            const LayerEffects& lazy = m_lazyEffects->layers[layer];
            QVERIFY(close(lazy.probs.rows(0, n), eager.probs.recorded));
            QVERIFY(close(lazy.probs.rowsAt(at::tensor({5, 1000, 129}, at::kLong)), eager.probs.recorded.index_select(0, at::tensor({5, 1000, 129}, at::kLong))));
            QVERIFY(close(lazy.probs.head(3), eager.probs.recorded.select(2, 3)));
            QVERIFY(close(lazy.probs.block(256, 128), eager.probs.recorded.narrow(0, 256, 128).narrow(1, 0, 384).permute({2, 0, 1})));
            for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect}) {
                QVERIFY2(closeOrZero(lazy.heads(metric), eager.heads(metric)), metricKey(metric));
                QVERIFY2(closeOrZero(lazy.headsOverKeys(metric), eager.headsOverKeys(metric)), metricKey(metric));
                const LayerEffects::KeyMaxima& a = lazy.headKeyMaxima(metric);
                const LayerEffects::KeyMaxima& b = eager.headKeyMaxima(metric);
                QVERIFY2(closeOrZero(a.value, b.value), metricKey(metric));
                // The key chosen holds the eager maximum (a near-tie may pick another key).
                const at::Tensor dense = eager.heads(metric);
                QVERIFY(closeOrZero(dense.gather(1, a.key.unsqueeze(1)).squeeze(1), b.value));
            }
            QVERIFY(close(lazy.totalToKeys(), eager.totalToKeys()));
            for (const auto& [q, k, h] : {std::tuple{n - 1, 3, 1}, std::tuple{600, 17, 3}, std::tuple{130, 130, 0}})
                for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect})
                    QVERIFY(std::abs(lazy.head(metric, q, k, h) - eager.head(metric, q, k, h)) <= 1e-6);
            // Attention (and MLP) latents: every metric, dense.
            QCOMPARE(lazy.latents.size(), eager.latents.size());
            for (std::size_t i = 0; i < eager.latents.size(); ++i)
                for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect})
                    QVERIFY2(closeOrZero(lazy.latents[i].dense(metric), eager.latents[i].dense(metric)), eager.latents[i].kind.c_str());
            // A click on a head and on an attention latent.
            const AnalysisInput lazyIn = lazyInput(), eagerIn = input();
            const HeadMaps a = headMaps(lazyIn, layer, 2), b = headMaps(eagerIn, layer, 2);
            QVERIFY(close(a.probs, b.probs));
            QVERIFY(close(a.writeMagnitude, b.writeMagnitude));
            const NodeRef head{NodeKind::AttnHead, layer, 2, n - 1, 300};
            QVERIFY(close(activationByToken(lazyIn, head), activationByToken(eagerIn, head)));
            QVERIFY(std::abs(nodeActivation(lazyIn, head) - nodeActivation(eagerIn, head)) <= 1e-6);
            const SaeRecord& rec = *m_rec->layers[layer].sae(SaeLocation::ResidDeltaAttn);
            const int latent = static_cast<int>((rec.latents.detach() > 0).sum(0).argmax().item<std::int64_t>());
            const NodeRef node{NodeKind::AttnSaeLatent, layer, latent, n - 1, 0};
            QVERIFY(close(pairAttributionMap(lazyIn, node).values, pairAttributionMap(eagerIn, node).values));
        }
        // Token effects and the node table.
        const TokenEffects a = tokenEffects(*m_lazyEffects), b = tokenEffects(*m_effects);
        QCOMPARE(a.rows.size(), b.rows.size());
        for (std::size_t i = 0; i < a.rows.size(); ++i)
            QVERIFY2(close(at::tensor(a.rows[i].values), at::tensor(b.rows[i].values)), b.rows[i].kind.c_str());
        std::set<NodeRef> lazyTable, eagerTable;
        for (const NodeMetrics& m : topNodes(lazyInput(), *m_lazyEffects, 15))
            lazyTable.insert(m.node);
        for (const NodeMetrics& m : topNodes(input(), *m_effects, 15))
            eagerTable.insert(m.node);
        QVERIFY(lazyTable == eagerTable);
    }

    void headMetricsFromFactorsEqualTheEagerPerPairValues()
    {
        // Eager: total = P ⊙ ∂O/∂P by autograd through the whole network (σ_f detached), write
        // magnitude = P·‖V[k,h]W_O[h]‖, direct = P·(V[k,h]W_O[h])·G[q] at the last token.
        const Gpt2Weights& w = m_model->weights;
        const at::Tensor r = m_rec->layers.back().residOut[-1];
        const at::Tensor c = r - r.mean();
        const at::Tensor ln = c / (c.pow(2).mean() + m_model->config.layerNormEps).sqrt().detach() * w.lnFinalGain + w.lnFinalBias;
        const at::Tensor obj = at::dot(ln, w.unembedding[m_ids[1]] - w.unembedding[m_ids[2]]);
        const int H = m_model->config.nHead, dh = m_model->config.dHead();
        for (int layer = 0; layer < m_model->config.nLayer; ++layer) {
            const LayerRecord& L = m_rec->layers[layer];
            const at::Tensor gProbs = torch::autograd::grad({obj}, {L.probs}, {}, true)[0];
            const at::Tensor P = L.probs.detach();
            const LayerEffects& le = m_effects->layers[layer];
            const at::Tensor total = le.heads(Metric::TotalEffect);
            QCOMPARE(total.sizes(), P.sizes());
            QVERIFY(close(total, P * gProbs));
            // Write magnitude and direct effect, head by head from the per-pair formulas.
            at::NoGradGuard noGrad;
            const at::Tensor magnitude = le.heads(Metric::WriteMagnitude);
            const at::Tensor direct = le.heads(Metric::DirectEffect);
            const at::Tensor G = m_effects->residualGradient.detach();
            for (int h = 0; h < H; ++h) {
                const at::Tensor writes = at::mm(L.value.detach().select(1, h), w.layers[layer].attnOutWeight.narrow(0, h * dh, dh)); // [k, d]
                const at::Tensor Ph = P.select(2, h);
                QVERIFY(close(magnitude.select(2, h), Ph * writes.norm(2, -1).unsqueeze(0)));
                QVERIFY(close(direct.select(2, h), Ph * at::mm(G, writes.t())));
            }
            // Query blocks of the lazy tensor are the rows of the whole one (to the last bits: some BLAS
            // kernels round a product of 50 rows differently from the same rows in a product of 1,024).
            CS_COMPARE_TENSORS(le.heads(Metric::TotalEffect, 700, 50), total.narrow(0, 700, 50), 1e-9 * total.abs().max().item<double>());
            // The sums over keys in closed form equal the sums of the per-pair values.
            QVERIFY(close(le.headsOverKeys(Metric::TotalEffect), total.sum(1)));
            QVERIFY(close(le.headsOverKeys(Metric::DirectEffect), direct.sum(1)));
            // Single values, as the table and the click read them.
            for (const auto& [q, k, h] : {std::tuple{kTokens - 1, 3, 1}, std::tuple{kTokens - 1, kTokens - 1, 0}, std::tuple{600, 17, 3}}) {
                QVERIFY(std::abs(le.head(Metric::TotalEffect, q, k, h) - (P[q][k][h] * gProbs[q][k][h]).item<double>()) <= 1e-5 * total.abs().max().item<double>());
                QVERIFY(std::abs(le.head(Metric::WriteMagnitude, q, k, h) - magnitude[q][k][h].item<double>()) < 1e-6);
            }
        }
    }

    void keyMaximaAndTopNodesEqualTheBruteForceOnes()
    {
        // headKeyMaxima against an argmax over the dense per-pair values.
        for (const LayerEffects& le : m_effects->layers) {
            for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect}) {
                const at::Tensor dense = le.heads(metric); // [q, k, H]
                const auto [magnitude, key] = dense.abs().max(1);
                const LayerEffects::KeyMaxima& km = le.headKeyMaxima(metric);
                QVERIFY(close(km.value.abs(), magnitude));
                QVERIFY(close(km.value, dense.gather(1, km.key.unsqueeze(1)).squeeze(1)));
                // The chosen key holds the maximum (another key may tie with it).
                QVERIFY(close(dense.gather(1, km.key.unsqueeze(1)).squeeze(1).abs(), magnitude));
            }
        }
        // The node table's rows are the union over metrics of the k largest |values| over every node
        // (embeddings, neurons, every (query, key, head) pair, latents): rank them all by brute force.
        const int n = m_rec->tokenCount();
        // The random model's per-pair head values are small: a larger k brings heads into the table.
        for (const int k : {15, 400}) {
        std::set<NodeRef> expected;
        for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect}) {
            std::vector<std::pair<double, NodeRef>> all;
            const auto add = [&](const at::Tensor& values, const std::function<NodeRef(std::int64_t)>& nodeAt) {
                const at::Tensor flat = values.reshape({-1}).abs().to(at::kDouble);
                const auto [v, idx] = flat.topk(std::min<std::int64_t>(4 * k, flat.numel()));
                for (std::int64_t i = 0; i < v.numel(); ++i)
                    if (v[i].item<double>() > 0)
                        all.push_back({v[i].item<double>(), nodeAt(idx[i].item<std::int64_t>())});
            };
            if (metric != Metric::Activation) {
                const at::Tensor& emb = metric == Metric::WriteMagnitude ? m_effects->embeddingWriteMagnitude
                                        : metric == Metric::DirectEffect ? m_effects->embeddingDirect
                                                                         : m_effects->embeddingTotal;
                add(emb, [](std::int64_t i) { return NodeRef{NodeKind::Embedding, 0, 0, int(i), 0}; });
            }
            for (int l = 0; l < int(m_effects->layers.size()); ++l) {
                const LayerEffects& le = m_effects->layers[l];
                const std::int64_t F = le.neuronActivation.size(1), H = le.probs.heads();
                add(le.neurons(metric), [&](std::int64_t i) { return NodeRef{NodeKind::MlpNeuron, l, int(i % F), int(i / F), 0}; });
                if (metric != Metric::Activation) // the table ranks heads by their effects and write magnitude
                    add(le.heads(metric), [&](std::int64_t i) {
                        return NodeRef{NodeKind::AttnHead, l, int(i % H), int(i / (n * H)), int((i / H) % n)};
                    });
                for (const auto& lat : le.latents) {
                    const std::int64_t N = lat.count;
                    add(lat.dense(metric), [&](std::int64_t i) { return NodeRef{lat.nodeKind, l, int(i % N), int(i / N), 0}; });
                }
            }
            std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
            for (std::size_t i = 0; i < all.size() && i < std::size_t(k); ++i)
                expected.insert(all[i].second);
        }
        std::set<NodeRef> actual;
        for (const NodeMetrics& m : topNodes(input(), *m_effects, k))
            actual.insert(m.node);
        for (const NodeRef& node : expected)
            if (!actual.count(node))
                qWarning("k %d: missing %s", k, node.name().c_str());
        for (const NodeRef& node : actual)
            if (!expected.count(node))
                qWarning("k %d: extra %s", k, node.name().c_str());
        QCOMPARE(actual.size(), expected.size());
        QVERIFY(actual == expected);
        int heads = 0;
        for (const NodeRef& node : actual)
            heads += node.kind == NodeKind::AttnHead;
        if (k == 400)
            QVERIFY(heads > 0); // the per-pair path is exercised
        }
    }

    void keyMaximaOfTheBackwardPassEqualTheRecomputedOnes()
    {
        // A Run's attention nodes reduce over keys inside the backward pass (P and ∂O/∂Z·Vᵀ at hand);
        // the same layer with its caches cleared recomputes them (LayerEffects::fillKeyMaxima). With
        // ablated probabilities in several query blocks (P as Z read it) and without.
        ForwardAblations ablations;
        ablations.layers.resize(2);
        for (int k = 0; k <= 300; ++k)
            ablations.layers[0].probs.push_back({300, 1, k, 0.002f});
        ablations.layers[0].probs.push_back({kTokens - 1, 3, 7, 0.9f});
        ablations.layers[1].probs.push_back({129, 0, 128, 0.7f});
        for (const bool ablated : {false, true}) {
            ForwardOptions fo;
            fo.withGrad = true;
            fo.keepProbs = false;
            fo.logits = RecordLogits::None;
            fo.ablations = ablated ? &ablations : nullptr;
            const ActivationRecord rec = runForward(*m_model, m_ids, fo);
            const Effects effects = computeEffects({*m_model, m_saes, rec}, m_objective);
            for (const LayerEffects& le : effects.layers) {
                QVERIFY(le.activationOverKeys.defined()); // filled by the backward pass
                LayerEffects recomputed = le;
                recomputed.keyMaximaCache = {};
                recomputed.activationOverKeys = at::Tensor();
                recomputed.writeOverKeys = at::Tensor();
                for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::TotalEffect}) {
                    const LayerEffects::KeyMaxima& a = le.headKeyMaxima(metric);
                    const LayerEffects::KeyMaxima& b = recomputed.headKeyMaxima(metric);
                    QVERIFY2(close(a.value, b.value), metricKey(metric));
                    // The key chosen holds the maximum (a near-tie may pick another key).
                    QVERIFY2(close(le.heads(metric).gather(1, a.key.unsqueeze(1)).squeeze(1), b.value), metricKey(metric));
                    QVERIFY2(close(le.headsOverKeys(metric), recomputed.headsOverKeys(metric)), metricKey(metric));
                }
            }
            if (ablated) // the ablated row's maximum is the constant put in
                QCOMPARE(effects.layers[0].headsOverKeys(Metric::Activation)[300][1].item<double>(), double(0.002f));
        }
    }

    void gridNeuronsAreTheTopOfTheNeuronValues()
    {
        // The grid's neurons at every token: the topN largest |value| of neurons(metric) at that token,
        // largest first, with their signed values, exactly (the same float32 products).
        const int topN = 16;
        for (const auto* run : {&*m_effects, &*m_lazyEffects}) {
            const ActivationRecord& rec = run == &*m_effects ? *m_rec : *m_lazy;
            const GridValues grid = gridValues({*m_model, m_saes, rec}, *run, topN);
            for (Metric metric : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect}) {
                QVERIFY(grid.has(metric));
                for (int layer = 0; layer < m_model->config.nLayer; ++layer) {
                    const at::Tensor values = run->layers[layer].neurons(metric);
                    const at::Tensor expected = std::get<0>(values.abs().topk(topN, 1)).contiguous(); // [n, topN]
                    for (int t = 0; t < kTokens; t += 7) {
                        const auto& cells = grid.rows[std::size_t(metric)][t][layer].neurons;
                        QCOMPARE(int(cells.size()), topN);
                        std::set<int> seen;
                        for (int j = 0; j < topN; ++j) {
                            const GridCellValue& cell = cells[std::size_t(j)];
                            QCOMPARE(cell.node.token, t);
                            QVERIFY(seen.insert(cell.node.index).second);
                            QCOMPARE(cell.value, values[t][cell.node.index].item<double>());
                            QCOMPARE(std::abs(cell.value), expected[t][j].item<double>());
                        }
                    }
                }
            }
        }
    }

    void attentionLatentPairMapEqualsTheRowByRowAttribution()
    {
        for (int layer : {0, 1}) {
            const SaeRecord& rec = *m_rec->layers[layer].sae(SaeLocation::ResidDeltaAttn);
            // The most active latent over the prompt, so that many rows are live.
            const int latent = static_cast<int>((rec.latents.detach() > 0).sum(0).argmax().item<std::int64_t>());
            NodeRef node{NodeKind::AttnSaeLatent, layer, latent, kTokens - 1, 0};
            const PairAttributionMap map = pairAttributionMap(input(), node);
            QCOMPARE(map.values.sizes(), (at::IntArrayRef{kTokens, kTokens}));
            int live = 0;
            std::vector<at::Tensor> lazyRows, eagerRows;
            for (int q = 0; q < kTokens; ++q) {
                node.token = q;
                const std::optional<at::Tensor> row = pairAttribution(input(), node);
                QCOMPARE(map.active[q].item<bool>(), row.has_value());
                if (!row) {
                    QCOMPARE(map.values[q].abs().max().item<float>(), 0.0f);
                    continue;
                }
                ++live;
                lazyRows.push_back(map.values[q].narrow(0, 0, q + 1));
                eagerRows.push_back(*row);
                if (q + 1 < kTokens)
                    QCOMPARE(map.values[q].narrow(0, q + 1, kTokens - q - 1).abs().max().item<float>(), 0.0f);
            }
            QVERIFY2(live > 100, qPrintable(QString::number(live)));
            QVERIFY(close(at::cat(lazyRows), at::cat(eagerRows)));
        }
    }

    void activationAtEveryTokenEqualsTheSingleValues()
    {
        const int last = kTokens - 1;
        const SaeRecord& mlpLatents = *m_rec->layers[1].sae(SaeLocation::MlpPostAct);
        const int latent = static_cast<int>(mlpLatents.latents[last].argmax().item<std::int64_t>());
        for (const NodeRef& node : {NodeRef{NodeKind::MlpNeuron, 1, 7, last, 0}, NodeRef{NodeKind::AttnHead, 0, 2, last, 300},
                                    NodeRef{NodeKind::MlpSaeLatent, 1, latent, last, 0}, NodeRef{NodeKind::Embedding, 0, 0, last, 0}}) {
            const at::Tensor all = activationByToken(input(), node);
            QCOMPARE(all.size(0), std::int64_t{kTokens});
            for (int t = 0; t < kTokens; t += 37) {
                NodeRef atT = node;
                atT.token = t;
                const double expected = node.kind == NodeKind::AttnHead && t < node.keyToken ? 0.0 : nodeActivation(input(), atT);
                QVERIFY2(all[t].item<double>() == expected, node.name().c_str());
            }
        }
    }

    void stagedResultsEqualTheFinalOnes()
    {
        AnalysisQuery q;
        std::string prompt;
        for (int i = 0; i < 60; ++i)
            prompt += " Mary and John went to the store";
        q.prompt = prompt;
        q.objective.targets = {" Mary"};
        q.objective.distractors = {" John"};
        std::vector<PromptAnalysis> stages;
        AnalysisControl control;
        control.staged = [&](const PromptAnalysis& partial, int, int) { stages.push_back(partial); };
        const Analysis final = analyzePrompt(*m_model, m_saes, q, control);
        const int n = final.left.run.record.tokenCount();
        QVERIFY2(n > 300, qPrintable(QString::number(n)));
        QCOMPARE(int(stages.size()), 1 + 2); // the model's nodes, then each of the 2 autoencoder layers
        QVERIFY(stages.front().run.effects.layers[1].latents.empty()); // latents come after the model's nodes
        const auto tableOf = [&](const PromptAnalysis& p) {
            Analysis a;
            a.left = p;
            return nodeTable(*m_model, m_saes, a, 15);
        };
        const std::vector<NodeTableRow> finalRows = tableOf(final.left);
        const std::vector<NodeTableRow> stagedRows = tableOf(stages.back());
        QCOMPARE(stagedRows.size(), finalRows.size());
        for (std::size_t i = 0; i < finalRows.size(); ++i) {
            QVERIFY(stagedRows[i].node == finalRows[i].node);
            for (Metric m : {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect, Metric::TotalEffect})
                QCOMPARE(stagedRows[i].left->value(m), finalRows[i].left->value(m));
        }
        // The model's own nodes do not change when the latents are added.
        const AnalysisInput firstIn{*m_model, m_saes, stages.front().run.record};
        const AnalysisInput finalIn{*m_model, m_saes, final.left.run.record};
        for (const char* name : {"mlp:1:7@-1", "attn:0:2@-1,5", "emb@3"}) {
            const NodeRef node = NodeRef::parse(name).resolved(n);
            QCOMPARE(metricsOf(firstIn, stages.front().run.effects, node).totalEffect,
                     metricsOf(finalIn, final.left.run.effects, node).totalEffect);
        }
        QVERIFY(stages.back().run.tokenEffects.rows == final.left.run.tokenEffects.rows);
    }
};

QTEST_GUILESS_MAIN(TestLongPrompt)
#include "tst_long_prompt.moc"
