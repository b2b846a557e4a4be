#pragma once
// Effects on the prediction (math §6.2 with D9). The objective is logit[target] − logit[distractor]
// at the last token (or logit[target] alone), computed with the final layer norm's σ held fixed.
// One forward and one backward pass give, for every node of every kind:
//   activation       neuron a, head P[q,k,h], latent α, embedding 1
//   write magnitude  activation × ‖write per unit‖ (signed like the activation)
//   direct effect    write · G[t], G = ∂objective/∂(final residual) (σ_f detached)
//   total effect     activation × ∂objective/∂activation (estimated total effect, act×grad)

#include "core/analysis/converters.h"

#include <optional>
#include <vector>

namespace cs {

struct Objective {
    int target = 0;
    std::optional<int> distractor;
};

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
    at::Tensor finalResidualGradient;      // G, [n, d] (only the last row is nonzero)
    at::Tensor embeddingWriteMagnitude, embeddingDirect, embeddingTotal;          // [n]
    std::vector<LayerEffects> layers;
};

// The objective's value on an activation record computed with autograd (σ_f detached).
at::Tensor objectiveOf(const Gpt2Model& model, const ActivationRecord& record, const Objective& objective);

// Runs the backward pass on a record made with ForwardOptions::withGrad. The record keeps its graph
// (the backward pass retains it) so it can be used again. Without an objective no backward pass is
// run (the record may be made without grad) and the direct/total tensors stay undefined.
Effects computeEffects(const AnalysisInput& in, const std::optional<Objective>& objective);

struct NodeMetrics {
    NodeRef node;
    double activation = 0, writeMagnitude = 0, directEffect = 0, totalEffect = 0;
};

// The metrics of one node, read from `effects`.
NodeMetrics metricsOf(const AnalysisInput& in, const Effects& effects, const NodeRef& node);

// The node table: the top K nodes by |value| of each metric (write magnitude, direct effect, total
// effect; and activation among neurons and latents), merged without duplicates, each with all metrics.
// Ordered by |total effect| (by |write magnitude| without an objective), largest first.
std::vector<NodeMetrics> topNodes(const AnalysisInput& in, const Effects& effects, int k);

} // namespace cs
