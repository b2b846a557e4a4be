#pragma once
// What a node reads and writes (math §5 with decisions D1, D2, D4, D5, D6): write vectors in residual
// space and their logit-lens over the vocabulary, read directions (gradients of the node's
// pre-activation w.r.t. the residual stream that feeds it, layer-norm scale held fixed) and their
// embedding-lens, token-pair attribution for attention-autoencoder latents, and the q×k maps of heads.
//
// All functions read a cached forward record; none re-runs the model. Pair-level quantities are built
// for the requested node only. Closed forms are used where they exist (product.md §6: a click must be
// cheap); the tests check them against autograd of the reconstituted activations.

#include "core/analysis/node.h"
#include "core/model/forward.h"

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

namespace cs {

// What the converters read; all three must outlive the call.
struct AnalysisInput {
    const Gpt2Model& model;
    const SaeSet& saes;
    const ActivationRecord& record;
};

// Checks that a (resolved) node exists in this model, with these autoencoders, for this prompt.
// InputError ("node 'mlp:9:1@0': layer 9 does not exist ...") otherwise. Returns the resolved node.
NodeRef checkedNode(const AnalysisInput& in, const NodeRef& node);
// The same against a model, its autoencoders and a prompt length, before any record exists.
NodeRef checkedNode(const Gpt2Model& model, const SaeSet& saes, const NodeRef& node, int tokenCount);
// Checks layer and index of a node kind (no token): InputError naming `name` otherwise.
void checkNodeIndex(const Gpt2Model& model, const SaeSet& saes, NodeKind kind, int layer, int index, const std::string& name);

// The node's activation in this context: neuron a[t,f], head P[q,k,h], latent α[t,l], embedding 1.
double nodeActivation(const AnalysisInput& in, const NodeRef& node);
// The same at every token t of the prompt in one read, [n] (float64): neuron a[t,f], latent α[t,l],
// head P[t,k,h] for its key token k (0 for t < k), embedding 1. The node's own token is ignored.
at::Tensor activationByToken(const AnalysisInput& in, const NodeRef& node);

// Residual write w ∈ R^d (math §5.1): neuron a·W_out[f]; head P·V[k,h]·W_O[h]; embedding r0[t];
// residual-location latent α·s·D_l; mlp_post_act latent (α·s·D_l)·W_out; attn_z latent (α·s·D_l)·W_O,
// with s the normalization scale of D2 (1 without normalization). No biases.
at::Tensor residualWrite(const AnalysisInput& in, const NodeRef& node);

// The write for one unit of positive activation (D6's "per unit activation" switch): W_out[f],
// V[k,h]·W_O[h], s·D_l (·W_out or ·W_O), r0[t]. Defined even where the activation is 0.
at::Tensor residualWritePerUnit(const AnalysisInput& in, const NodeRef& node);

// Logit lens of write vectors (math §5.2): (w ⊙ g_f)·Uᵀ minus its mean over the vocabulary.
// `writes` is [d] or [m, d] (batched: one matmul against U_g); result [V] or [m, V].
at::Tensor tokenWrite(const Gpt2Model& model, const at::Tensor& writes);


// Read directions (math §5.3, D1, D2, D5), [d]. Neurons and latents: one read; attention heads: the
// Q-read (w.r.t. the query token's residual, K fixed) and K-read (w.r.t. the key token's residual,
// Q fixed). Embeddings have none.
struct NodeReads {
    std::optional<at::Tensor> read;   // neurons and latents
    std::optional<at::Tensor> readQ;  // heads
    std::optional<at::Tensor> readK;  // heads
};
NodeReads residualReads(const AnalysisInput& in, const NodeRef& node);

// Embedding lens of read directions (math §5.4): E·read. `reads` is [d] or [m, d]; result [V] or [m, V].
at::Tensor tokenRead(const Gpt2Model& model, const at::Tensor& reads);

// Token-pair attribution of an attention-autoencoder latent at query token q (math §5.5, D2, D4):
// out[k] = Σ_h P[q,k,h]·∂z_l/∂P[q,k,h] for k = 0..q. nullopt when the latent is inactive (α = 0).
// InputError for other node kinds.
std::optional<at::Tensor> pairAttribution(const AnalysisInput& in, const NodeRef& node);
// pairAttribution at every query token at once (the inspector's map): `values` [n, n] with row q equal
// to pairAttribution(node at q) where the latent is active at q, zero elsewhere and above the
// diagonal; `active` [n] (bool). One product per head over the active rows, so a 1,024-token map
// costs a few milliseconds instead of one small product per row.
struct PairAttributionMap {
    at::Tensor values;
    at::Tensor active;
};
PairAttributionMap pairAttributionMap(const AnalysisInput& in, const NodeRef& node);

// The q×k maps an attention head's inspector shows, [n, n] each (zero above the diagonal).
struct HeadMaps {
    at::Tensor probs;          // P[q,k,h]
    at::Tensor writeMagnitude; // ‖P[q,k,h]·V[k,h]·W_O[h]‖
};
HeadMaps headMaps(const AnalysisInput& in, int layer, int head);

// Top and bottom K entries of a score vector over the vocabulary, with decoded token strings.
struct TokenScore {
    int id = 0;
    std::string token;
    float value = 0;
    bool operator==(const TokenScore&) const = default;
};
struct TopTokens {
    std::vector<TokenScore> top;    // most positive first
    std::vector<TokenScore> bottom; // most negative first
    bool operator==(const TopTokens&) const = default;
};
TopTokens topTokens(const Gpt2Tokenizer& tokenizer, const at::Tensor& scores, int k);

// A click's token lists: topTokens(tokenWrite(model, writes[i]), k) for every row of `writes` ([a, d])
// and topTokens(tokenRead(model, reads[i]), k) for every row of `reads` ([b, d]) — ranked by the
// model's VocabRankers (one half-precision pass over the tied vocabulary matrix for all rows, then the
// candidates rescored exactly: the same tokens and float32 values, at half the memory traffic), or by
// the exact products for a model without rankers.
struct LensTopTokens {
    std::vector<TopTokens> writes, reads;
};
LensTopTokens lensTopTokens(const Gpt2Model& model, const at::Tensor& writes, const at::Tensor& reads, int k);

// The lists of scores multiplied by `factor` (the write in context is the write per unit activation
// times the activation); a negative factor swaps the top and bottom lists.
TopTokens scaledTopTokens(const TopTokens& t, double factor);

// Top and bottom K write tokens of every neuron of one layer, per unit of activation (W_out[f] through
// the logit lens of math §5.2). Streams blocks of `blockSize` neurons through one matmul each, so the
// [d_mlp × V] score matrix never exists at once (product.md §6 "scan"). Tensors are [d_mlp, K].
struct NeuronTokenScan {
    at::Tensor topIds, topValues, bottomIds, bottomValues;
};
NeuronTokenScan scanNeuronWriteTokens(const Gpt2Model& model, int layer, int k, int blockSize = 256);

// The gradient of an autoencoder latent's pre-activation z_l w.r.t. the autoencoder's input x, at x
// (through the normalization of D2 when the autoencoder has one): Enc_l without normalization.
// `x` is one input [d] or a batch of inputs [m, d]; the result has its shape.
at::Tensor saeEncoderGradient(const SparseAutoencoder& sae, const at::Tensor& x, int latent);

} // namespace cs
