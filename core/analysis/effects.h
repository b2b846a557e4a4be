#pragma once
// Effects on an objective (math §6.2 with D9; interventions-math §10). The objective is a logit
// objective at the last token (σ_f of the final layer norm held fixed) or a traced node's own quantity
// (objective.h). One forward and one backward pass give, for every node of every kind:
//   activation       neuron a, head P[q,k,h], latent α, embedding 1
//   write magnitude  activation × ‖write per unit‖ (signed like the activation)
//   direct effect    write · G[t], G = ∂objective/∂R, R the residual the objective reads (the final
//                    residual, or the one feeding the traced node); 0 for nodes not upstream of R
//   total effect     activation × ∂objective/∂activation (estimated total effect, act×grad)
// Under ablations the record holds the ablated activations and the gradients are those of the ablated
// network (an ablated entry is a constant: its own gradient is ∂O/∂(the constant), nothing upstream).

#include "core/analysis/converters.h"
#include "core/analysis/intervention.h"
#include "core/analysis/metric.h"

#include <array>
#include <optional>
#include <vector>

namespace cs {

// One layer's metrics, kept as the factors they are made of; the dense tensors of a metric ([n, F] for
// neurons, [q, k, H] for heads, [n, N] for latents) are built on demand, one layer (or a few query rows)
// at a time, so a long prompt never holds n²·H values per layer and metric (issue 15). No autograd.
//   heads:   P[q,k,h]·‖V[k,h]W_O[h]‖ (write magnitude), P·(V[k,h]·W_O[h]G[q]) (direct),
//            P·(∂O/∂Z[q,h]·V[k,h]) (total: the objective reads P only through Z[q,h] = Σ_k P·V)
//   latents: every metric is α × something, so they live on the active entries (α ≠ 0) only.
struct LayerEffects {
    bool hasObjective = false;
    // Neurons.
    at::Tensor neuronActivation;   // a [n, F] (the record's)
    at::Tensor neuronOutNorm;      // ‖W_out[f]‖ [F]
    at::Tensor neuronGradient;     // ∂O/∂a [n, F]
    at::Tensor neuronDirectRows;   // a ⊙ (G·W_outᵀ) at the rows `directRows`, [r, F] (zeros when not upstream)
    // Heads.
    LayerProbs probs;              // P [q, k, H]: the record's, or rows recomputed on demand
    at::Tensor value;              // V [n, H, dh]
    at::Tensor headOut;            // Z [n, H, dh]
    at::Tensor valueWriteNorm;     // ‖V[k,h]·W_O[h]‖ [k, H]
    at::Tensor headOutGradient;    // ∂O/∂Z [n, H, dh]
    at::Tensor headDirectFactor;   // W_O[h]·G[q] at the rows `directRows`, [r, H, dh] (zeros when not upstream)
    at::Tensor directRows;         // the tokens where G ≠ 0, [r] (int64); direct effects elsewhere are 0

    at::Tensor neurons(Metric metric) const;                               // [n, F]
    at::Tensor heads(Metric metric, std::int64_t firstQuery = 0, std::int64_t queries = -1) const; // [m, k, H]
    // One (query, head) row of per-pair values over the keys up to the query, [query + 1].
    at::Tensor headRow(Metric metric, std::int64_t query, std::int64_t head) const;
    // Σ over key tokens for every (query, head) (activation: the maximum), [q, H], in closed form.
    at::Tensor headsOverKeys(Metric metric) const;
    double neuron(Metric metric, int token, int index) const;
    double head(Metric metric, int query, int key, int head) const;
    // For every (query, head): the key token whose per-pair value has the largest magnitude (the first
    // such key on ties; 0 where every value is 0) and that signed value, [q, H] each. One pass over
    // the per-pair values of a metric, in query blocks, kept after the first call: the grid (its cell's
    // key) and the node table (its candidates) both read it. Undefined tensors for a metric that needs
    // an objective when there is none.
    struct KeyMaxima {
        at::Tensor key;   // int64
        at::Tensor value;
    };
    const KeyMaxima& headKeyMaxima(Metric metric) const;
    mutable std::array<std::optional<KeyMaxima>, kMetricCount> keyMaximaCache; // headKeyMaxima's
    // One pass over P (recomputed in query blocks when the record has none) for every reduction over
    // keys that needs it: the key maxima of the activation, write magnitude and total effect, and the
    // activation's maximum and the write magnitude's sum over keys. computeEffects fills the same
    // caches during the backward pass where the layer's attention node shows it P (records without
    // probabilities, AttentionBackwardObserver), so a Run does not recompute P for them.
    void fillKeyMaxima() const;
    mutable at::Tensor activationOverKeys, writeOverKeys; // [q, H], fillKeyMaxima's
    // Σ over queries and heads of the total effect of each key token's pairs, [k] ("attn_to"); undefined
    // without an objective.
    at::Tensor totalToKeys() const;
    at::Tensor totalToKeys_;       // Σ_h V[k,h]·∂O/∂V[k,h], set by computeEffects

    struct Latents {
        std::string kind;          // "mlp_sae", "attn_sae", "resid_sae"
        NodeKind nodeKind = NodeKind::MlpSaeLatent;
        at::Tensor activation;     // α [n, N] (the record's)
        std::int64_t tokens = 0, count = 0;
        at::Tensor activeTokens, activeLatents;             // the entries with α ≠ 0, [nnz]
        at::Tensor activeWriteMagnitude, activeDirect, activeTotal; // their metrics, [nnz]
        at::Tensor dense(Metric metric) const;              // [n, N]
        // A metric at the active entries, [nnz] (undefined for a metric without values).
        at::Tensor active(Metric metric) const;
        // The k = min(topN, N) cells of each token with the largest |value| (the grid's latent cells),
        // from the active entries alone: first the nonzero values by |value| (ties: smaller latent first),
        // then, where a token has fewer, zeros at the smallest latent indices not listed. [n][k] pairs
        // (latent, value); empty for a metric without values.
        std::vector<std::vector<std::pair<int, double>>> topPerToken(Metric metric, int topN) const;
        double at(Metric metric, int token, int latent) const;
    };
    std::vector<Latents> latents;
    // ∂O/∂(output) at each bound autoencoder's location, kept until its latents' effects are added.
    std::vector<std::pair<SaeLocation, at::Tensor>> locationGradients;
};

struct Effects {
    bool hasObjective = false;             // without one only activation and write magnitude exist
    double objective = 0;
    ObjectiveKind objectiveKind = ObjectiveKind::LogitDiff;
    int objectiveToken = 0;                // the last token, or the traced node's token
    int readPosition = 0;                  // where the objective reads the residual stream (intervention.h)
    at::Tensor residualGradient;           // G = ∂objective/∂R, [n, d] (logit objective: only the last row)
    at::Tensor embeddingWriteMagnitude, embeddingDirect, embeddingTotal;          // [n]
    std::vector<LayerEffects> layers;
};

// Runs the backward pass on a record made with ForwardOptions::withGrad. The record keeps its graph
// (the backward pass retains it) so it can be used again. Without an objective (objective.any() false)
// no backward pass is run (the record may be made without grad) and the direct/total tensors stay
// undefined.
// The effects of the autoencoder latents in the record are included; with ForwardOptions::deferSaes,
// autoencoders encoded later (encodeSaes) get theirs from addLatentEffects.
Effects computeEffects(const AnalysisInput& in, const ResolvedObjective& objective);

// Adds the effects of the latents of `layer`'s autoencoders that the record has and `effects` lacks.
void addLatentEffects(const AnalysisInput& in, Effects& effects, int layer);

// logit[target] − logit[distractor] (or logit[target] alone): the objective of the node table.
ResolvedObjective logitDifference(int target, std::optional<int> distractor = std::nullopt);

// The per-token sums of estimated total effect (product.md §5.1 "token_effects"): the embedding of
// token t; all neurons at t; all heads' pairs with query t ("attn_from") and with key t ("attn_to");
// all latents of a kind at t. Kinds without nodes in the run are absent. Empty without an objective.
struct TokenEffects {
    struct Row {
        std::string kind; // "embedding", "mlp", "attn_from", "attn_to", "mlp_sae", "attn_sae", "resid_sae"
        std::vector<double> values; // [n]
        bool operator==(const Row&) const = default;
    };
    std::vector<Row> rows;
    const Row* find(std::string_view kind) const;
};
TokenEffects tokenEffects(const Effects& effects);

// What the layer grid shows at one token of interest (product.md §3): every head (activation = max over
// key tokens, other metrics = the sum over them; the cell selects the key with the largest |value|) and
// the top N neurons and latents of each kind by |value|. Metrics without a value (no objective) are empty.
struct GridCellValue {
    NodeRef node;
    double value = 0;
};
struct GridLayerValues {
    std::vector<GridCellValue> heads, neurons, mlpLatents, attnLatents, residLatents;
};
struct GridValues {
    // [metric][token][layer]; empty for a metric without values.
    std::vector<std::vector<std::vector<GridLayerValues>>> rows;
    bool has(Metric m) const { return rows.size() > std::size_t(m) && !rows[std::size_t(m)].empty(); }
};
GridValues gridValues(const AnalysisInput& in, const Effects& effects, int topN);

struct NodeMetrics {
    NodeRef node;
    double activation = 0, writeMagnitude = 0, directEffect = 0, totalEffect = 0;
    double value(Metric metric) const;
};

// The metrics of one node, read from `effects`.
NodeMetrics metricsOf(const AnalysisInput& in, const Effects& effects, const NodeRef& node);

// The node table: the top K nodes by |value| of each metric (write magnitude, direct effect, total
// effect; and activation among neurons and latents), merged without duplicates, each with all metrics.
// Ordered by |total effect| (by |write magnitude| without an objective), largest first.
std::vector<NodeMetrics> topNodes(const AnalysisInput& in, const Effects& effects, int k);

} // namespace cs
