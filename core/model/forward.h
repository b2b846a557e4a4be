#pragma once
// The GPT-2 forward pass (math §1.3) with an activation record.
//
// Names map to TDB's activation locations (math §1.5) as follows:
//   LayerRecord::residIn      resid.post_emb (layer 0) / previous layer's resid.post_mlp   [n, d]
//   LayerRecord::ln1Sigma     attn_ln.scale (σ of ln_1)                                   [n]
//   LayerRecord::query/key/value  attn.q / attn.k / attn.v, but WITHOUT TDB's d_head^(-1/4)
//                             scaling (HF convention; the 1/sqrt(d_head) is in the scores) [n, H, d_head]
//   LayerRecord::scores       attn.qk_logits, layout (q, k, head), −inf where k > q         [n, n, H]
//   LayerRecord::probs        attn.qk_probs, layout (q, k, head)                           [n, n, H]
//   LayerRecord::headOut      attn.v_out: Z[q,h] = Σ_k P[q,k,h]·V[k,h]                       [n, H, d_head]
//   LayerRecord::attnOut      resid.delta_attn (includes b_O)                             [n, d]
//   LayerRecord::residMid     resid.post_attn                                             [n, d]
//   LayerRecord::ln2Sigma     mlp_ln.scale (σ of ln_2)                                    [n]
//   LayerRecord::mlpPre       mlp.pre_act                                                 [n, F]
//   LayerRecord::mlpPost      mlp.post_act                                                [n, F]
//   LayerRecord::mlpOut       resid.delta_mlp (includes b_out)                            [n, d]
//   LayerRecord::residOut     resid.post_mlp                                              [n, d]
//   ActivationRecord::lnFinalSigma  resid.ln_f.scale                                      [n]
//   ActivationRecord::logits  logits                                                      [n, V]
// With autoencoders, each recorded location holds the autoencoder's output (numerically equal to its
// input unless one of its latents is ablated), and LayerRecord::saes holds the latents. `mlpPost` is
// the autoencoder's input (the neurons' own activations, as TDB records them before its SAE hook).
// With ablations (ForwardOptions::ablations) the record holds the ablated values.
// Pair-level tensors (n×n×H×d_head per layer) are deliberately not kept; the analysis computes them
// for one requested node from `probs`, `value` and the weights.

#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <ATen/ATen.h>

#include <functional>
#include <stdexcept>
#include <vector>

namespace cs {

// Activations overwritten by constants during the pass (interventions-math §10.2): each entry's value
// replaces the activation, and nothing flows back through it. Indices are resolved and checked by the
// caller (core/analysis/intervention.h builds these from node names); runForward re-checks the ranges.
struct ActivationAblation {
    std::int64_t token = 0;  // the token (query token for attention probabilities)
    std::int64_t index = 0;  // neuron, head or latent
    std::int64_t key = 0;    // attention probabilities only: the key token (≤ token)
    float value = 0;
    bool operator==(const ActivationAblation&) const = default;
};

struct LayerAblations {
    std::vector<ActivationAblation> neurons;     // MLP post-activation a[token, index]
    std::vector<ActivationAblation> probs;       // P[token, key, index]
    // Latents α[token, index] of the layer's autoencoder of each node kind. The autoencoder's error
    // term is kept: what flows on is x + Σ (v − α(x))·s·D, differentiable through α(x) and s(x).
    std::vector<ActivationAblation> mlpLatents, attnLatents, residLatents;
    bool empty() const
    {
        return neurons.empty() && probs.empty() && mlpLatents.empty() && attnLatents.empty() && residLatents.empty();
    }
};

struct ForwardAblations {
    std::vector<LayerAblations> layers; // indexed by layer; shorter than n_layer means none further on
    bool empty() const;
    const LayerAblations* at(int layer) const;
};

// An autoencoder run inside the forward pass (math §3.4): its output decode(α) + (x − decode(α′)) equals
// x, so the model's outputs are unchanged, and ∂L/∂α_l = s·D_l·∂L/∂x.
struct SaeRecord {
    BoundSae bound;
    at::Tensor input;          // x at the location, [n, n_in]
    at::Tensor output;         // what flows on (equal to x); ∂objective/∂output gives the latents' gradients
    SaeEncoding encoding;      // μ, scale, z and α of x
    at::Tensor latents;        // α as it enters the decoder (take gradients w.r.t. this), [n, N]
    at::Tensor reconstruction; // x̂, [n, n_in]
    at::Tensor error;          // x − x̂, [n, n_in]
};

struct LayerRecord {
    std::vector<SaeRecord> saes;
    const SaeRecord* sae(SaeLocation location) const;

    at::Tensor residIn, ln1Sigma;
    at::Tensor query, key, value;
    at::Tensor scores, probs;
    at::Tensor headOut, attnOut, residMid;
    at::Tensor ln2Sigma, mlpPre, mlpPost, mlpOut, residOut;
};

struct ActivationRecord {
    std::vector<int> ids;
    ForwardAblations ablations;     // what was overwritten during the pass (empty: nothing)
    at::Tensor embeddings;          // r0 = E[tok] + Π[pos], [n, d]
    std::vector<LayerRecord> layers;
    at::Tensor lnFinalSigma;        // [n]
    at::Tensor lnFinalOut;          // ln_f(r_L), [n, d] (HF's last hidden state)
    at::Tensor logits;              // [n, V]
    bool withGrad = false;          // tensors are attached to an autograd graph rooted at `embeddings`

    int tokenCount() const { return static_cast<int>(ids.size()); }
};

// Thrown when ForwardOptions::cancelled returns true between layers.
class Cancelled : public std::runtime_error {
public:
    Cancelled() : std::runtime_error("cancelled") {}
};

struct ForwardOptions {
    // Record an autograd graph: `embeddings` becomes a leaf that requires grad, so gradients of any
    // scalar of the record w.r.t. any recorded activation can be taken (math §6.2 needs this).
    bool withGrad = false;
    std::function<bool()> cancelled;          // checked between layers
    std::function<void(int layersDone)> progress;
    // Autoencoders to run inside the pass (math §3.4); the set must outlive the call only.
    const SaeSet* saes = nullptr;
    // With autograd, build TDB's graph literally (decode(α1) + (x − decode(α2)), so that autograd can
    // differentiate w.r.t. SaeRecord::latents). By default the autoencoder stays out of the graph: its
    // output is x itself and latent gradients are D·∂L/∂x, computed only when asked (math §3.4 shows
    // the two are equal; tests check it), which saves two decodes and the encoder's backward pass.
    bool exactSaeGraph = false;
    // Activations to overwrite (none when null or empty); the record then holds the ablated values.
    const ForwardAblations* ablations = nullptr;
};

// Runs the model on token ids (1 ≤ n ≤ n_ctx, each id < vocab_size; std::invalid_argument otherwise —
// callers validate user prompts with tokenizePrompt first).
ActivationRecord runForward(const Gpt2Model& model, const std::vector<int>& ids, const ForwardOptions& options = {});

// Layer norm pieces shared with the analysis code: returns σ = sqrt(mean((x−μ)²) + ε) over the last
// dim ([..., 1] kept) and writes the normalized, gained and biased output to *out.
at::Tensor layerNorm(const at::Tensor& x, const at::Tensor& gain, const at::Tensor& bias, double eps, at::Tensor* sigma);

at::Tensor mlpActivation(const at::Tensor& preActivation, MlpActivation kind);

// The factor on Q·K in the attention scores of `layer` (1/sqrt(d_head), and 1/(layer+1) when configured).
double attentionScale(const Gpt2Config& config, int layer);

// `t` ([n, width]) with the ablated entries (token, index) replaced by their values, as the forward pass
// does: where(mask, values, t), so nothing flows back through them. Probabilities: [q, k, head] with
// entries (token = q, key, index = head).
at::Tensor withAblatedEntries(const at::Tensor& t, const std::vector<ActivationAblation>& ablations);
at::Tensor withAblatedProbs(const at::Tensor& probs, const std::vector<ActivationAblation>& ablations);
// Its derivative, elementwise (math §1.3 gives the tanh form).
at::Tensor mlpActivationDerivative(const at::Tensor& preActivation, MlpActivation kind);

} // namespace cs
