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
// input), and LayerRecord::saes holds the latents.
// Pair-level tensors (n×n×H×d_head per layer) are deliberately not kept; the analysis computes them
// for one requested node from `probs`, `value` and the weights.

#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <ATen/ATen.h>

#include <functional>
#include <stdexcept>
#include <vector>

namespace cs {

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
};

// Runs the model on token ids (1 ≤ n ≤ n_ctx, each id < vocab_size; std::invalid_argument otherwise —
// callers validate user prompts with tokenizePrompt first).
ActivationRecord runForward(const Gpt2Model& model, const std::vector<int>& ids, const ForwardOptions& options = {});

// Layer norm pieces shared with the analysis code: returns σ = sqrt(mean((x−μ)²) + ε) over the last
// dim ([..., 1] kept) and writes the normalized, gained and biased output to *out.
at::Tensor layerNorm(const at::Tensor& x, const at::Tensor& gain, const at::Tensor& bias, double eps, at::Tensor* sigma);

at::Tensor mlpActivation(const at::Tensor& preActivation, MlpActivation kind);
// Its derivative, elementwise (math §1.3 gives the tanh form).
at::Tensor mlpActivationDerivative(const at::Tensor& preActivation, MlpActivation kind);

} // namespace cs
