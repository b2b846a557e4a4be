#pragma once
// Sparse autoencoders (math §3, decisions D2, D3, D5): one value type for every supported file format.
//
//   x̃ = normalizeInput ? (x − μ(x)) / (std_unbiased(x) + 1e-5) : x         (D2; OpenAI TopK v5, SAELens layer_norm)
//   z = (x̃ − (subtractPreBias ? preBias : 0)) · encoder + encoderBias      pre-activation, [n, N]
//   α = φ(z)      ReLU | TopK(k) then ReLU/identity | JumpReLU (z·1[z > threshold])
//   x̂ = (α · decoder + preBias) · std + μ     (std, μ only when normalizeInput)
//
// Latent indices are the checkpoint's own: no pruning of dead latents (D3).

#include "core/linalg/weight_product.h" // WeightStorage

#include <ATen/ATen.h>

#include <filesystem>
#include <optional>
#include <string>

namespace cs {

// Where in the model an autoencoder reads and writes (math §3.3 and D5; SAELens hook names in brackets).
enum class SaeLocation {
    MlpPostAct,    // MLP activation after the nonlinearity, width d_mlp       [blocks.L.mlp.hook_post]
    ResidDeltaMlp, // MLP block output incl. b_out, width d_model              [blocks.L.hook_mlp_out]
    ResidDeltaAttn,// attention block output incl. b_O, width d_model          [blocks.L.hook_attn_out]
    AttnZ,         // concatenated per-head outputs before W_O, width d_model  [blocks.L.attn.hook_z]
    ResidPre,      // residual entering layer L                               [blocks.L.hook_resid_pre]
    ResidMid,      // residual after attention (= resid_post_attn)            [blocks.L.hook_resid_mid]
    ResidPost,     // residual after the MLP (= resid_post_mlp)               [blocks.L.hook_resid_post]
};

// "mlp_post_act", "resid_delta_mlp", "resid_delta_attn", "attn_z", "resid_pre", "resid_post_attn", "resid_post_mlp".
const char* saeLocationName(SaeLocation location);
// Accepts our names, TDB/OpenAI names (resid_post_attn, resid_post_mlp, ...) and SAELens hook names
// with or without the "blocks.L." prefix (hook_resid_pre, hook_mlp_out, mlp.hook_post, attn.hook_z, ...).
std::optional<SaeLocation> saeLocationFromName(std::string_view name);

// The node kind a location's latents belong to: "mlp_sae", "attn_sae" or "resid_sae".
const char* saeKindName(SaeLocation location);

enum class SaeActivation { ReLU, TopK, JumpReLU };

// "relu", "topk", "jumprelu" (for messages and summaries).
const char* saeActivationName(SaeActivation activation);

struct SparseAutoencoder {
    std::filesystem::path source;       // file or directory it came from
    std::string format;                 // "openai" or "saelens"

    // The two matrices are float32, or float16/bfloat16 when the file stores them so and the loader was
    // given WeightStorage::AsStored (the default): half the memory. Every product with them computes in
    // float32 (core/linalg/weight_product.h), so code that reads them goes through timesWeight, linear,
    // weightRows, asFloat32 (a row or a column), never an ATen product with the tensor itself. The
    // vectors are float32.
    at::Tensor encoder;                 // [n_in, N], contiguous
    at::Tensor encoderBias;             // [N]
    at::Tensor decoder;                 // [N, n_in], contiguous: row l = decoder direction D_l
    at::Tensor preBias;                 // [n_in]: OpenAI pre_bias, SAELens b_dec
    bool subtractPreBias = true;        // OpenAI: always; SAELens: apply_b_dec_to_input
    bool normalizeInput = false;        // D2

    SaeActivation activation = SaeActivation::ReLU;
    int topK = 0;                       // TopK only
    bool topKPostReLU = true;           // TopK's postact_fn: ReLU (true) or Identity (false)
    at::Tensor threshold;               // JumpReLU only, [N]

    // What the files say about where the SAE belongs, when they say it (SAELens hook name).
    std::optional<SaeLocation> declaredLocation;
    std::optional<int> declaredLayer;

    std::int64_t inputWidth() const { return encoder.size(0); }
    std::int64_t latentCount() const { return encoder.size(1); }
    // Bytes its tensors take in memory.
    std::int64_t byteCount() const;
};

// The pieces of one encoding, kept so that writes and reads can include the normalization (D2).
struct SaeEncoding {
    at::Tensor mean;       // [n, 1] μ(x), zeros when not normalizing
    at::Tensor scale;      // [n, 1] std_unbiased(x) + 1e-5, ones when not normalizing
    at::Tensor preActivation; // z, [n, N]
    at::Tensor latents;    // α = φ(z), [n, N]
};

// x: [n, n_in], any n ≥ 0 (std::invalid_argument on another shape). Computed in computeDtype(encoder):
// float32, also for float16/bfloat16 matrices (x is converted; double when a test made the SAE double);
// differentiable w.r.t. x, normalization statistics included (D2).
SaeEncoding encodeSae(const SparseAutoencoder& sae, const at::Tensor& x);
// x̂ from latents, using the normalization statistics of `encoding` (ignored when not normalizing).
at::Tensor decodeSae(const SparseAutoencoder& sae, const at::Tensor& latents, const SaeEncoding& encoding);

// OpenAI `sparse_autoencoder` checkpoint (.pt, plain dict or OrderedDict): pre_bias, latent_bias,
// encoder.weight [N, n_in], decoder.weight [n_in, N], optional activation ("ReLU" | "TopK" | ...) and
// activation_state_dict {k, postact_fn}. TopK checkpoints get normalizeInput = true (D2).
// `storage` (all three loaders): float16/bfloat16 encoder and decoder kept as stored or converted.
SparseAutoencoder loadOpenAiSae(const std::filesystem::path& file, WeightStorage storage = WeightStorage::AsStored);

// SAELens directory: cfg.json + sae_weights.safetensors (W_enc [d_in, d_sae], W_dec [d_sae, d_in],
// b_enc, b_dec, optional threshold). All three generations of cfg.json field names: old (hook_point,
// hook_point_layer, activation_fn_str), middle (hook_name, hook_layer, activation_fn[_str],
// activation_fn_kwargs.k, architecture), SAELens ≥ 6 (hook_name in a nested "meta" or "metadata"
// object, architecture standard|topk|jumprelu, top-level k). The layer in "blocks.L." wins over
// hook_layer. Refused: gated and other architectures, normalize_activations other than none/layer_norm,
// per-head SAEs (hook_head_index), fine-tuning scaling factors, hook names that are no SaeLocation.
SparseAutoencoder loadSaeLensSae(const std::filesystem::path& dir, WeightStorage storage = WeightStorage::AsStored);

// A directory → SAELens, a file → OpenAI .pt. Errors are InputError naming the file and field.
SparseAutoencoder loadSae(const std::filesystem::path& path, WeightStorage storage = WeightStorage::AsStored);

} // namespace cs
