#pragma once
// The GPT-2 forward pass (math §1.3) with an activation record.
//
// Names map to TDB's activation locations (math §1.5) as follows:
//   LayerRecord::residIn      resid.post_emb (layer 0) / previous layer's resid.post_mlp   [n, d]
//   LayerRecord::ln1Sigma     attn_ln.scale (σ of ln_1)                                   [n]
//   LayerRecord::query/key/value  attn.q / attn.k / attn.v, but WITHOUT TDB's d_head^(-1/4)
//                             scaling (HF convention; the 1/sqrt(d_head) is in the scores) [n, H, d_head]
//   LayerRecord::probs        attn.qk_probs, layout (q, k, head); only with ForwardOptions::keepProbs,
//                             layerProbs() reads it or recomputes it                        [n, n, H]
//   LayerRecord::headOut      attn.v_out: Z[q,h] = Σ_k P[q,k,h]·V[k,h] (before an attn_z SAE) [n, H, d_head]
//   LayerRecord::attnOut      resid.delta_attn (includes b_O)                             [n, d]
//   LayerRecord::residMid     resid.post_attn                                             [n, d]
//   LayerRecord::ln2Sigma     mlp_ln.scale (σ of ln_2)                                    [n]
//   LayerRecord::mlpPre       mlp.pre_act                                                 [n, F]
//   LayerRecord::mlpPost      mlp.post_act                                                [n, F]
//   LayerRecord::mlpOut       resid.delta_mlp (includes b_out)                            [n, d]
//   LayerRecord::residOut     resid.post_mlp                                              [n, d]
//   ActivationRecord::lnFinalSigma  resid.ln_f.scale                                      [n]
//   ActivationRecord::logits  logits (only with RecordLogits::All; logitsAt computes a row)     [n, V]
//   attentionScores()         attn.qk_logits, layout (q, k, head), −inf where k > q, recomputed [n, n, H]
// With autoencoders, each recorded location holds the autoencoder's output (numerically equal to its
// input unless one of its latents is ablated), and LayerRecord::saes holds the latents. `mlpPost` is
// the autoencoder's input (the neurons' own activations, as TDB records them before its SAE hook).
// With ablations (ForwardOptions::ablations) the record holds the ablated values.
// Pair-level tensors (n×n×H×d_head per layer) are deliberately not kept; the analysis computes them
// for one requested node from `probs`, `value` and the weights.

#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>

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
// The latents α as a dense [n, N] tensor are kept (no gradient), their pre-activations, the
// reconstruction and the error are recomputed on demand (saePreActivation, saeReconstruction,
// saeError): for 24 autoencoders of 32k latents they would be hundreds of megabytes nobody reads.
struct SaeRecord {
    BoundSae bound;
    at::Tensor input;          // x at the location, [n, n_in]
    at::Tensor output;         // what flows on (x itself unless latents are ablated); ∂objective/∂output
                               // gives the latents' gradients
    SaeEncoding encoding;      // μ and scale of x (preActivation and latents only with the exact graph)
    at::Tensor latents;        // α as it enters the decoder, [n, N] (attached only with the exact graph)
    // The active entries of `latents` (α ≠ 0), row-major: token [nnz] and latent [nnz] indices.
    at::Tensor activeTokens, activeLatents;
};

// z of the record's input (through the normalization of D2), [n, N].
at::Tensor saePreActivation(const SaeRecord& record);
// decode(α) with the record's latents (ablated ones included) and normalization, [n, n_in]: a sparse
// decode over the active latents.
at::Tensor saeReconstruction(const SaeRecord& record);
// x − decode(α(x)) with the unablated latents of x: the error term the autoencoder's output keeps.
at::Tensor saeError(const SaeRecord& record);

// What a layer's attention node (ForwardOptions::keepProbs off) shows of its backward pass: for each
// head's block of query rows [first, first + m), P [m, first + m] as Z read it (ablated entries
// included) and ∂O/∂Z[q,h]·V[k,h] [m, first + m] (the gradient reaching P), both row-major and valid
// during the call only, from at::parallel_for's threads (one head per thread). Reductions over keys
// that need P and that product (the effects' key maxima) read them here instead of recomputing P once
// more. Empty: nothing is called. A CustomClassHolder so the autograd node can hold it (in an IValue).
struct AttentionBackwardObserver : torch::CustomClassHolder {
    std::function<void(std::int64_t head, std::int64_t first, const at::Tensor& probs, const at::Tensor& gradientTimesValues)> block;
};

struct LayerRecord {
    std::vector<SaeRecord> saes;
    const SaeRecord* sae(SaeLocation location) const;
    // Set when the layer's attention is the node that recomputes P in its backward pass (null otherwise).
    c10::intrusive_ptr<AttentionBackwardObserver> attentionObserver;

    at::Tensor residIn, ln1Sigma;
    at::Tensor query, key, value;
    at::Tensor probs;
    at::Tensor headOut, attnZ, attnOut, residMid; // attnZ: headOut as [n, d], what W_O (and an attn_z SAE) reads
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

enum class RecordLogits {
    All,  // logits at every position ([n, V]: 206 MB for 1,024 tokens of GPT-2)
    None, // none: logitsAt computes the rows that are needed from lnFinalOut
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
    RecordLogits logits = RecordLogits::All;
    // Autoencoders without ablated latents leave the pass unchanged (their output is their input), so
    // they can be encoded after it: with `deferSaes` the record has their SaeRecords only once
    // encodeSaes is called (the model's own nodes can be shown first); otherwise runForward does it.
    bool deferSaes = false;
    // Several independent windows in one pass (the dataset-examples index): `ids` is W windows of
    // `windowLength` tokens each, one after another; each window attends only within itself and its
    // positions start at 0, so every window's activations equal a pass over it alone, in GEMMs W times
    // as tall. The record's rows are then (window, token); LayerRecord::probs is [W, n, n, H] (the usual
    // [n, n, H] when W = 1). 0: one window of all the ids (the usual pass). More than one window needs
    // withGrad, ablations and logits off.
    std::int64_t windowLength = 0;
    // Keep the attention probabilities in the record (LayerRecord::probs: n²·H floats a layer, 600 MB at
    // 1,024 tokens of GPT-2 small, all alive until the backward pass). Without them each layer's
    // attention is one autograd node that saves only the queries, keys and values (the record holds
    // them anyway) and recomputes P in its backward pass, and layerProbs() recomputes the rows that are
    // read. Needed to differentiate w.r.t. LayerRecord::probs; ignored with more than one window.
    bool keepProbs = true;
};

// Runs the model on token ids (1 ≤ n ≤ n_ctx, each id < vocab_size; std::invalid_argument otherwise —
// callers validate user prompts with tokenizePrompt first; with windowLength, 1 ≤ windowLength ≤ n_ctx
// and n a multiple of it).
ActivationRecord runForward(const Gpt2Model& model, const std::vector<int>& ids, const ForwardOptions& options = {});

// The recorded tensor at an autoencoder location: the autoencoder's input there (for the deferred ones,
// which do not change the pass, also what flows on).
const at::Tensor& saeLocationTensor(const LayerRecord& layer, SaeLocation location);

// Encodes the deferred autoencoders of one layer (all layers with layer = -1) from the recorded inputs
// at their locations; those already in the record (encoded inside the pass) are left as they are.
void encodeSaes(const SaeSet& saes, ActivationRecord& record, int layer = -1);

// The logits at one position: the recorded row, or lnFinalOut[token]·Uᵀ when the record has none.
at::Tensor logitsAt(const Gpt2Model& model, const ActivationRecord& record, int token);

// The pre-softmax attention scores of a layer, (q, k, head), −inf above the diagonal: scale·Q·Kᵀ from
// the recorded queries and keys (not kept in the record: n²·H floats per layer).
at::Tensor attentionScores(const Gpt2Model& model, const ActivationRecord& record, int layer);

// One layer's attention probabilities P, layout (q, k, head): the record's tensor, or rows recomputed on
// demand (no autograd) from the recorded queries and keys with the record's ablated entries, exactly as
// the pass computed them (ForwardOptions::keepProbs false).
struct LayerProbs {
    at::Tensor recorded;                      // [n, n, H], or undefined
    at::Tensor query, key;                    // [n, H, dh], detached
    double scale = 1;                         // attentionScale of the layer
    std::vector<ActivationAblation> ablations; // ForwardAblations' probs of the layer
    std::int64_t tokens() const { return query.size(0); }
    std::int64_t heads() const { return query.size(1); }
    // P[first .. first + count), [count, n, H] (a view of a contiguous [H, count, n] when recomputed).
    at::Tensor rows(std::int64_t first, std::int64_t count) const;
    // The rows of the query tokens `queries` (int64 [m]), [m, n, H].
    at::Tensor rowsAt(const at::Tensor& queries) const;
    // The block of query rows [first, first + count) in the (head, q, k) layout, with only the keys up
    // to its last query (the others are 0), [H, count, first + count]; a strided view when recorded.
    at::Tensor block(std::int64_t first, std::int64_t count) const;
    // One head's block of query rows [first, first + count) against keys [0, first + count), [count,
    // first + count] (q, k), rows of stride ≥ first + count, last dimension contiguous. Safe to call
    // from at::parallel_for's threads.
    at::Tensor headBlock(std::int64_t head, std::int64_t first, std::int64_t count) const;
    // One head's P, [n, n] (q, k).
    at::Tensor head(std::int64_t head) const;
    double at(std::int64_t q, std::int64_t k, std::int64_t head) const;

private:
    // [heads, m, keys] for the query tokens, heads [firstHead, firstHead + heads) and keys [0, keys).
    at::Tensor recompute(const at::Tensor& queries, std::int64_t firstHead, std::int64_t heads, std::int64_t keys) const;
};
LayerProbs layerProbs(const Gpt2Model& model, const ActivationRecord& record, int layer);

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
