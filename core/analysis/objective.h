#pragma once
// The scalar a run differentiates (interventions-math §10.1, §10.3), built on a record made with
// gradients: a logit objective at the last token (σ_f of the final layer norm held fixed, D9), or a
// traced node's own quantity recomputed from the residual stream that feeds it, with that node's layer
// norm σ held fixed. Ablations between that residual and the node are applied (D14: the objective and
// its gradient are those of the ablated network).

#include "core/analysis/converters.h"
#include "core/analysis/intervention.h"

namespace cs {

struct ObjectiveScalar {
    ObjectiveKind kind = ObjectiveKind::LogitDiff;
    at::Tensor value;     // 0-dim, attached to the record's graph
    at::Tensor residual;  // R_ν, a tensor of the record: G = ∂value/∂residual gives direct effects
    int readPosition = 0; // where R_ν sits in the forward order (residualReadPosition)
    int token = 0;        // the token whose next-token logits go with this objective
};

ObjectiveScalar buildObjective(const AnalysisInput& in, const ResolvedObjective& objective);

// A logit objective (targets required) on the final residual stream `finalResidual` ([n, d]) at `token`.
at::Tensor logitObjective(const Gpt2Model& model, const at::Tensor& finalResidual, int token, const ResolvedObjective& objective);

// The residual tensor of the record that feeds a traced node: resid_pre of its layer (heads, attention
// latents), resid_post_attn (neurons, MLP latents), or a residual autoencoder's input.
at::Tensor tracedResidual(const AnalysisInput& in, const NodeRef& node);

// The traced quantity s_ν(R) recomputed from `residual` (the record's own tensor, or a detached copy):
// a neuron's pre-activation, a latent's encoder pre-activation, or a head's score through Q, K or both.
// For TDB's value trace `valueGradient` ([n, d], detached) is the gradient the pair's write is projected on.
at::Tensor tracedQuantity(const AnalysisInput& in, const ResolvedTrace& trace, const at::Tensor& residual,
                          const at::Tensor& valueGradient = {});

// ∇_R s_D(R) at the residual that feeds a (downstream) node D, R a detached copy of the record's: D's
// read direction for its own traced quantity, [n, d].
at::Tensor tracedGradient(const AnalysisInput& in, const ResolvedTrace& trace);

} // namespace cs
