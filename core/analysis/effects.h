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

#include <optional>
#include <vector>

namespace cs {

// All four metrics for every node, as dense tensors (no autograd attached).
struct LayerEffects {
    at::Tensor neuronActivation, neuronWriteMagnitude, neuronDirect, neuronTotal;   // [n, F]
    at::Tensor headActivation, headWriteMagnitude, headDirect, headTotal;           // [q, k, H]
    struct Latents {
        std::string kind;  // "mlp_sae", "attn_sae", "resid_sae"
        at::Tensor activation, writeMagnitude, direct, total;                       // [n, N]
    };
    std::vector<Latents> latents;
};

struct Effects {
    bool hasObjective = false;             // without one only activation and write magnitude exist
    double objective = 0;
    ObjectiveKind objectiveKind = ObjectiveKind::LogitDiff;
    int objectiveToken = 0;                // the last token, or the traced node's token
    at::Tensor residualGradient;           // G = ∂objective/∂R, [n, d] (logit objective: only the last row)
    at::Tensor embeddingWriteMagnitude, embeddingDirect, embeddingTotal;          // [n]
    std::vector<LayerEffects> layers;
};

// Runs the backward pass on a record made with ForwardOptions::withGrad. The record keeps its graph
// (the backward pass retains it) so it can be used again. Without an objective (objective.any() false)
// no backward pass is run (the record may be made without grad) and the direct/total tensors stay
// undefined.
Effects computeEffects(const AnalysisInput& in, const ResolvedObjective& objective);

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
