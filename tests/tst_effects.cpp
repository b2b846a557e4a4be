// Effects on the prediction (math §6.2, D9) against a plain autograd computation, and the identity
//   objective = Σ_t direct(emb t) + Σ_layers [Σ_{q,k,h} direct(head) + b_O·G] + Σ_layers [Σ_{t,f} direct(neuron) + b_out·G]
//               + b_f·(U[target] − U[distractor])
// which holds because with σ_f fixed the objective is affine in the final residual of the last token,
// and that residual is the embedding plus every head's, neuron's and bias's write.
// Tolerances: 1e-4 absolute (float32 sums over thousands of terms), 1e-5 for single products.

#include "analysis_fixture.h"
#include "core/analysis/effects.h"
#include "core/util/runtime.h"

#include <torch/csrc/autograd/autograd.h>

#include <QTest>

using namespace cs;
using test::AnalysisFixture;

namespace {

constexpr int kMary = 5335, kJohn = 1757;

} // namespace

class TestEffects : public QObject {
    Q_OBJECT

    std::unique_ptr<AnalysisFixture> m_fx;
    std::vector<int> m_ids;
    std::optional<ActivationRecord> m_rec;
    std::optional<Effects> m_effects;
    const ResolvedObjective m_objective = logitDifference(kMary, kJohn);

    AnalysisInput input() const { return {*m_fx->model, m_fx->saes, *m_rec}; }

    // The logit difference of a record made with the exact autoencoder graph, σ_f detached by hand.
    at::Tensor exactObjective(const ActivationRecord& rec) const
    {
        const Gpt2Weights& w = m_fx->model->weights;
        const at::Tensor r = rec.layers.back().residOut[-1];
        const at::Tensor c = r - r.mean();
        const at::Tensor ln = c / (c.pow(2).mean() + m_fx->model->config.layerNormEps).sqrt().detach() * w.lnFinalGain + w.lnFinalBias;
        return at::dot(ln, w.unembedding[kMary] - w.unembedding[kJohn]);
    }

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        m_fx = std::make_unique<AnalysisFixture>();
        m_ids = AnalysisFixture::promptIds(0);
        m_rec = m_fx->run(m_ids, /*withGrad=*/true);
        m_effects = computeEffects(input(), m_objective);
    }

    void objectiveIsTheLogitDifference()
    {
        const at::Tensor last = m_rec->logits[-1];
        const double expected = last[kMary].item<double>() - last[kJohn].item<double>();
        QVERIFY(std::abs(m_effects->objective - expected) < 1e-4);
        // Target alone.
        const Effects e = computeEffects(input(), logitDifference(kMary));
        QVERIFY(std::abs(e.objective - last[kMary].item<double>()) < 1e-4);
    }

    void finalGradientIsTheClosedForm()
    {
        // With σ_f fixed: G = (1/σ_f)·C·(g_f ⊙ (U[t] − U[d])) at the last token, zero elsewhere.
        const Gpt2Weights& w = m_fx->model->weights;
        const at::Tensor u = w.lnFinalGain * (w.unembedding[kMary] - w.unembedding[kJohn]);
        const at::Tensor expected = (u - u.mean()) / m_rec->lnFinalSigma[-1].item<double>();
        CS_COMPARE_TENSORS(m_effects->residualGradient[-1], expected, 1e-5);
        QCOMPARE(m_effects->residualGradient.narrow(0, 0, m_rec->tokenCount() - 1).abs().max().item<float>(), 0.0f);
    }

    void directEffectIsWriteDotGradient()
    {
        const at::Tensor G = m_effects->residualGradient;
        const int last = m_rec->tokenCount() - 1;
        for (const char* name : {"mlp:1:7@-1", "mlp:0:100@-1", "attn:1:2@-1,3", "attn:0:0@-1,-1", "emb@-1", "emb@2",
                                 "mlp_sae:1:5@-1", "attn_sae:1:10@-1", "resid_sae:0:3@-1", "attn_sae:0:1@-1"}) {
            const NodeRef node = NodeRef::parse(name).resolved(m_rec->tokenCount());
            const NodeMetrics m = metricsOf(input(), *m_effects, node);
            const double expected = at::dot(residualWrite(input(), node), G[node.token]).item<double>();
            QVERIFY2(std::abs(m.directEffect - expected) < 1e-5, name);
            QVERIFY2(std::abs(m.activation - nodeActivation(input(), node)) < 1e-6, name);
            const double perUnitNorm = residualWritePerUnit(input(), node).norm().item<double>();
            QVERIFY2(std::abs(m.writeMagnitude - m.activation * perUnitNorm) < 1e-5, name);
            if (node.token != last)
                QCOMPARE(m.directEffect, 0.0);
        }
    }

    void writeNormsAreTheNormsOfTheProducts()
    {
        // ‖V[k,h]·W_O[h]‖ comes from the cached Gram matrices (Gpt2LayerWeights::headOutGrams) and ‖W_out[f]‖
        // from the cached row norms: both against the literal products in double, at every key and head,
        // within 1e-6 of the largest value (float32 values, double sums).
        const Gpt2Config& c = m_fx->model->config;
        for (int layer = 0; layer < c.nLayer; ++layer) {
            const Gpt2LayerWeights& lw = m_fx->model->weights.layers[static_cast<std::size_t>(layer)];
            const LayerEffects& le = m_effects->layers[static_cast<std::size_t>(layer)];
            const at::Tensor value = m_rec->layers[static_cast<std::size_t>(layer)].value.detach().to(at::kDouble);
            at::Tensor expected = at::empty({value.size(0), c.nHead}, at::kDouble);
            for (int h = 0; h < c.nHead; ++h)
                expected.select(1, h).copy_(at::mm(value.select(1, h), lw.outWeight(h, c.dHead()).to(at::kDouble)).norm(2, -1));
            const double scale = expected.abs().max().item<double>();
            CS_COMPARE_TENSORS(le.valueWriteNorm.to(at::kDouble), expected, 1e-6 * scale);
            const at::Tensor rows = lw.mlpOutWeight.to(at::kDouble).norm(2, -1);
            CS_COMPARE_TENSORS(le.neuronOutNorm.to(at::kDouble), rows, 1e-6 * rows.max().item<double>());
        }
    }

    void cachedWeightSummariesFollowTheWeights()
    {
        // The summaries are kept between Runs; a weight changed in place (a trainer's step) or replaced
        // by another tensor is summarized again.
        Gpt2LayerWeights lw = m_fx->model->weights.layers[0];
        lw.mlpOutWeight = lw.mlpOutWeight.clone();
        lw.attnOutWeight = lw.attnOutWeight.clone();
        const int dh = m_fx->model->config.dHead();
        const at::Tensor norms = lw.neuronOutNorms(), grams = lw.headOutGrams(dh);
        QVERIFY(lw.neuronOutNorms().is_same(norms)); // kept
        QVERIFY(lw.headOutGrams(dh).is_same(grams));
        {
            at::NoGradGuard noGrad;
            lw.mlpOutWeight.mul_(2);
            lw.attnOutWeight.mul_(3);
        }
        CS_COMPARE_TENSORS(lw.neuronOutNorms(), norms * 2, 1e-5 * norms.max().item<double>());
        CS_COMPARE_TENSORS(lw.headOutGrams(dh), grams * 9, 1e-6 * grams.abs().max().item<double>()); // 3·W rounds in float32
        lw.mlpOutWeight = lw.mlpOutWeight / 4;
        CS_COMPARE_TENSORS(lw.neuronOutNorms(), norms / 2, 1e-5 * norms.max().item<double>());
    }

    void totalEffectIsActTimesGradByPlainAutograd()
    {
        // An independent pass: fresh forward with grad and TDB's literal autoencoder graph
        // (decode(α1) + (x − decode(α2))), σ_f detached by hand, one autograd grad per node. The
        // effects under test come from the default graph, where latent gradients are D·∂L/∂x.
        const ActivationRecord rec = m_fx->run(m_ids, true, /*exactSaeGraph=*/true);
        const at::Tensor obj = exactObjective(rec);
        auto grad = [&](const at::Tensor& x) { return torch::autograd::grad({obj}, {x}, {}, true)[0]; };

        const at::Tensor gMlp1 = grad(rec.layers[1].mlpPost);
        const at::Tensor gProbs0 = grad(rec.layers[0].probs);
        const at::Tensor gLatent = grad(rec.layers[1].sae(SaeLocation::ResidDeltaAttn)->latents);
        const at::Tensor gMlpLatent = grad(rec.layers[1].sae(SaeLocation::MlpPostAct)->latents);
        const at::Tensor gTopK = grad(rec.layers[0].sae(SaeLocation::ResidDeltaAttn)->latents); // normalized (D2)
        const at::Tensor gResid = grad(rec.layers[1].sae(SaeLocation::ResidPre)->latents);      // normalized, residual
        const at::Tensor gEmb = grad(rec.embeddings);
        struct Case {
            std::string name;
            double expected;
        };
        // The most active latent of an autoencoder at token t, and its act×grad by autograd.
        auto latentCase = [&](const char* kind, int layer, SaeLocation loc, const at::Tensor& g, int t) {
            const at::Tensor& a = rec.layers[layer].sae(loc)->latents;
            const int l = static_cast<int>(a[t].argmax().item<std::int64_t>());
            return Case{std::string(kind) + ":" + std::to_string(layer) + ":" + std::to_string(l) + "@" + std::to_string(t),
                        (a[t][l] * g[t][l]).item<double>()};
        };
        const int n = rec.tokenCount();
        const Case cases[] = {
            {"mlp:1:7@-1", (rec.layers[1].mlpPost[n - 1][7] * gMlp1[n - 1][7]).item<double>()},
            {"mlp:0:40@5", (rec.layers[0].mlpPost[5][40] * grad(rec.layers[0].mlpPost)[5][40]).item<double>()},
            {"attn:0:3@-1,2", (rec.layers[0].probs[n - 1][2][3] * gProbs0[n - 1][2][3]).item<double>()},
            {"attn:0:1@6,6", (rec.layers[0].probs[6][6][1] * gProbs0[6][6][1]).item<double>()},
            latentCase("attn_sae", 1, SaeLocation::ResidDeltaAttn, gLatent, n - 1),
            latentCase("mlp_sae", 1, SaeLocation::MlpPostAct, gMlpLatent, n - 1),
            latentCase("attn_sae", 0, SaeLocation::ResidDeltaAttn, gTopK, n - 1),
            latentCase("attn_sae", 0, SaeLocation::ResidDeltaAttn, gTopK, 7),
            latentCase("resid_sae", 1, SaeLocation::ResidPre, gResid, 7),
            {"emb@4", (rec.embeddings[4] * gEmb[4]).sum().item<double>()},
        };
        // Every case must be a live one: a latent that is inactive would compare 0 with 0.
        for (const Case& cs : cases)
            QVERIFY2(std::abs(cs.expected) > 1e-9, qPrintable(QStringLiteral("%1 %2").arg(QString::fromStdString(cs.name)).arg(cs.expected)));
        for (const Case& cs : cases) {
            const NodeMetrics m = metricsOf(input(), *m_effects, NodeRef::parse(cs.name));
            QVERIFY2(std::abs(m.totalEffect - cs.expected) < 1e-5, qPrintable(QStringLiteral("%1: %2 vs %3")
                                                                                  .arg(QString::fromStdString(cs.name)).arg(m.totalEffect).arg(cs.expected)));
        }
        // Some early node has a nonzero total effect through later layers (the gradient really flows).
        QVERIFY(m_effects->layers[0].neurons(Metric::TotalEffect).abs().max().item<double>() > 0);
    }

    void activeEntriesAreTheNonzeroLatents()
    {
        // The records list their active entries (one parallel pass over α); the reference is
        // at::nonzero of the dense latents, row-major, for records encoded after the pass and inside it.
        const ActivationRecord exact = m_fx->run(m_ids, true, /*exactSaeGraph=*/true);
        int compared = 0;
        for (const ActivationRecord* rec : {static_cast<const ActivationRecord*>(&*m_rec), &exact}) {
            for (const LayerRecord& L : rec->layers) {
                for (const SaeRecord& s : L.saes) {
                    const at::Tensor nz = s.latents.detach().nonzero();
                    QVERIFY(nz.size(0) > 0);
                    QVERIFY(at::equal(s.activeTokens, nz.select(1, 0).contiguous()));
                    QVERIFY(at::equal(s.activeLatents, nz.select(1, 1).contiguous()));
                    ++compared;
                }
            }
        }
        QCOMPARE(compared, 12);
    }

    void latentTotalEffectsEqualAutogradAtEveryEntry()
    {
        // The effects keep the latents' total effects at the active entries only (one dot product of
        // a decoder row with ∂O/∂output per entry); densely, by autograd through TDB's literal graph,
        // α ⊙ ∂O/∂α is the same everywhere (and 0 where α = 0).
        const ActivationRecord rec = m_fx->run(m_ids, true, /*exactSaeGraph=*/true);
        const at::Tensor obj = exactObjective(rec);
        int compared = 0;
        for (std::size_t layer = 0; layer < rec.layers.size(); ++layer) {
            for (const SaeRecord& s : rec.layers[layer].saes) {
                const at::Tensor g = torch::autograd::grad({obj}, {s.latents}, {}, true, false, /*allow_unused=*/true)[0];
                const at::Tensor expected = g.defined() ? (s.latents * g).detach() : at::zeros_like(s.latents);
                const auto& list = m_effects->layers[layer].latents;
                const auto lat = std::find_if(list.begin(), list.end(), [&](const auto& l) { return l.kind == saeKindName(s.bound.location); });
                QVERIFY(lat != list.end());
                QVERIFY(lat->activeTotal.numel() > 0);
                CS_COMPARE_TENSORS(lat->dense(Metric::TotalEffect), expected, 1e-5);
                ++compared;
            }
        }
        QCOMPARE(compared, 6);
    }

    void latentGridCellsAreTheTopOfTheirDenseValues()
    {
        // The grid ranks each token's latents from the active entries alone; the reference ranks the
        // whole dense row: the k = min(16, N) cells must be k distinct latents whose values are those
        // of the row, in order of |value|, with the k largest magnitudes of the row.
        const int topN = 16;
        const GridValues grid = gridValues(input(), *m_effects, topN);
        int rows = 0, zeroFilled = 0;
        for (int m = 0; m < kMetricCount; ++m) {
            const auto metric = static_cast<Metric>(m);
            QVERIFY(grid.has(metric));
            for (std::size_t layer = 0; layer < m_effects->layers.size(); ++layer) {
                for (const auto& lat : m_effects->layers[layer].latents) {
                    const at::Tensor dense = lat.dense(metric).to(at::kDouble);
                    const std::int64_t k = std::min<std::int64_t>(topN, dense.size(1));
                    for (std::int64_t t = 0; t < dense.size(0); ++t) {
                        const GridLayerValues& cellsOfLayer = grid.rows[m][t][layer];
                        const auto& cells = lat.nodeKind == NodeKind::MlpSaeLatent    ? cellsOfLayer.mlpLatents
                                            : lat.nodeKind == NodeKind::AttnSaeLatent ? cellsOfLayer.attnLatents
                                                                                      : cellsOfLayer.residLatents;
                        QCOMPARE(std::int64_t(cells.size()), k);
                        const at::Tensor largest = std::get<0>(dense[t].abs().topk(k)).contiguous();
                        std::set<int> latents;
                        for (std::int64_t i = 0; i < k; ++i) {
                            const GridCellValue& c = cells[static_cast<std::size_t>(i)];
                            QVERIFY(c.node.kind == lat.nodeKind && c.node.layer == int(layer) && c.node.token == int(t));
                            QVERIFY(latents.insert(c.node.index).second);
                            QCOMPARE(c.value, dense[t][c.node.index].item<double>());
                            QCOMPARE(std::abs(c.value), largest[i].item<double>());
                        }
                        zeroFilled += cells.back().value == 0.0;
                        ++rows;
                    }
                }
            }
        }
        QVERIFY(rows > 0);
        QVERIFY(zeroFilled > 0); // the TopK(8) autoencoders have fewer than 16 active latents per token
    }

    void directEffectsPlusBiasesSumToTheObjective()
    {
        const Gpt2Weights& w = m_fx->model->weights;
        const at::Tensor G = m_effects->residualGradient[-1];
        double sum = m_effects->embeddingDirect.sum().item<double>();
        for (std::size_t l = 0; l < m_effects->layers.size(); ++l) {
            const LayerEffects& le = m_effects->layers[l];
            sum += le.heads(Metric::DirectEffect).sum().item<double>() + at::dot(w.layers[l].attnOutBias, G).item<double>();
            sum += le.neurons(Metric::DirectEffect).sum().item<double>() + at::dot(w.layers[l].mlpOutBias, G).item<double>();
        }
        sum += at::dot(w.lnFinalBias, w.unembedding[kMary] - w.unembedding[kJohn]).item<double>();
        QVERIFY2(std::abs(sum - m_effects->objective) < 1e-4, qPrintable(QStringLiteral("%1 vs %2").arg(sum).arg(m_effects->objective)));
    }

    void latentDirectEffectsPlusErrorEqualTheHeadsTheyReplace()
    {
        // At layer 1 the ReLU attention SAE reads attnOut: Σ_l direct(latent) + (p + error)·G equals
        // Σ_{k,h} direct(head) + b_O·G at the last token.
        const at::Tensor G = m_effects->residualGradient[-1];
        const SaeRecord& s = *m_rec->layers[1].sae(SaeLocation::ResidDeltaAttn);
        const LayerEffects& le = m_effects->layers[1];
        const double latents = le.latents[1].dense(Metric::DirectEffect)[-1].sum().item<double>() +
                               at::dot(s.bound.sae->preBias + saeError(s)[-1], G).item<double>();
        const double heads = le.heads(Metric::DirectEffect)[-1].sum().item<double>() +
                             at::dot(m_fx->model->weights.layers[1].attnOutBias, G).item<double>();
        QCOMPARE(le.latents[1].kind, std::string("attn_sae"));
        QVERIFY2(std::abs(latents - heads) < 1e-4, qPrintable(QStringLiteral("%1 vs %2").arg(latents).arg(heads)));
    }

    void nodeTableMergesTheTopOfEachMetric()
    {
        const int k = 5;
        const std::vector<NodeMetrics> table = topNodes(input(), *m_effects, k);
        QVERIFY(!table.empty());
        QVERIFY(table.size() <= std::size_t(4 * k));
        std::set<NodeRef> seen;
        for (const auto& m : table)
            QVERIFY(seen.insert(m.node).second);
        for (std::size_t i = 1; i < table.size(); ++i)
            QVERIFY(std::abs(table[i].totalEffect) <= std::abs(table[i - 1].totalEffect));
        // The node with the largest |direct effect| and the one with the largest |total effect| over
        // every kind and layer must be in the table.
        double bestDirect = m_effects->embeddingDirect.abs().max().item<double>();
        double bestTotal = m_effects->embeddingTotal.abs().max().item<double>();
        for (const auto& le : m_effects->layers) {
            bestDirect = std::max({bestDirect, le.neurons(Metric::DirectEffect).abs().max().item<double>(), le.heads(Metric::DirectEffect).abs().max().item<double>()});
            bestTotal = std::max({bestTotal, le.neurons(Metric::TotalEffect).abs().max().item<double>(), le.heads(Metric::TotalEffect).abs().max().item<double>()});
            for (const auto& lat : le.latents) {
                bestDirect = std::max(bestDirect, lat.dense(Metric::DirectEffect).abs().max().item<double>());
                bestTotal = std::max(bestTotal, lat.dense(Metric::TotalEffect).abs().max().item<double>());
            }
        }
        QVERIFY(std::any_of(table.begin(), table.end(), [&](const NodeMetrics& m) { return std::abs(std::abs(m.directEffect) - bestDirect) < 1e-9; }));
        QCOMPARE(std::abs(table.front().totalEffect), bestTotal);
        // Every metric of a table row equals metricsOf.
        const NodeMetrics again = metricsOf(input(), *m_effects, table.front().node);
        QCOMPARE(again.totalEffect, table.front().totalEffect);
    }

    void withoutObjectiveOnlyActivationAndWriteMagnitudeExist()
    {
        const ActivationRecord rec = m_fx->run(m_ids, /*withGrad=*/false);
        const AnalysisInput in{*m_fx->model, m_fx->saes, rec};
        const Effects e = computeEffects(in, ResolvedObjective{});
        QVERIFY(!e.hasObjective);
        QVERIFY(!e.layers[0].neurons(Metric::DirectEffect).defined() && !e.layers[1].heads(Metric::TotalEffect).defined() && !e.embeddingDirect.defined());
        CS_COMPARE_TENSORS(e.layers[1].neurons(Metric::WriteMagnitude), m_effects->layers[1].neurons(Metric::WriteMagnitude), 1e-6);
        const auto table = topNodes(in, e, 4);
        QVERIFY(!table.empty());
        for (std::size_t i = 1; i < table.size(); ++i)
            QVERIFY(std::abs(table[i].writeMagnitude) <= std::abs(table[i - 1].writeMagnitude));
    }

    void shortPrompts_data()
    {
        QTest::addColumn<int>("tokens");
        QTest::newRow("1 token") << 1;
        QTest::newRow("2 tokens") << 2;
    }
    void shortPrompts()
    {
        QFETCH(int, tokens);
        const ActivationRecord rec = m_fx->run(std::vector<int>(m_ids.begin(), m_ids.begin() + tokens), true);
        const AnalysisInput in{*m_fx->model, m_fx->saes, rec};
        const Effects e = computeEffects(in, m_objective);
        QVERIFY(std::isfinite(e.objective));
        QVERIFY(!topNodes(in, e, 3).empty());
    }
};

QTEST_GUILESS_MAIN(TestEffects)
#include "tst_effects.moc"
