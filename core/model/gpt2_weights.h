#pragma once
// The weights of a GPT-2 model in Hugging Face's layout (Conv1D: a linear layer is y = x·W + b with
// W stored [in, out]). Vectors and the position embedding are float32. The large matrices (the four
// per layer, the token embedding, an untied unembedding) are float32, or float16/bfloat16 when the file
// stores them so and the model was opened with WeightStorage::AsStored: half the memory, and every
// product with them still computes in float32 (core/linalg/weight_product.h), so results equal those
// of the converted weights. Code that multiplies by a matrix goes through weight_product.h. The math section of the spec names these differently
// (TDB's "standardized weights", math §1.6); the accessors below give those views without copying.

#include "core/linalg/weight_product.h" // WeightStorage
#include "core/model/gpt2_config.h"

#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <vector>

namespace cs {

// What the effects of every Run derive from a layer's matrices and no Run changes (see
// Gpt2LayerWeights::neuronOutNorms): computed on first use and kept with the source tensor and its
// version, so a weight replaced by another tensor or changed in place (the trainer's steps) is derived
// again. Copies of the layer share it.
struct LayerWeightSummaries {
    struct Entry {
        at::Tensor source;          // the weight it was derived from (kept: the same tensor stays the same)
        std::int64_t version = -1;  // the source's version counter then
        at::Tensor value;
    };
    std::mutex mutex;
    Entry neuronOutNorms, headOutGrams;
};

struct Gpt2LayerWeights {
    at::Tensor ln1Gain, ln1Bias;         // [d]
    at::Tensor attnQkvWeight;            // [d, 3d]: q | k | v along the last dim (HF c_attn)
    at::Tensor attnQkvBias;              // [3d]
    at::Tensor attnOutWeight;            // [d, d] (HF attn.c_proj): concat_h Z · W + b_O
    at::Tensor attnOutBias;              // [d] = b_O
    at::Tensor ln2Gain, ln2Bias;         // [d]
    at::Tensor mlpInWeight;              // [d, F] (HF mlp.c_fc) = W_in
    at::Tensor mlpInBias;                // [F] = b_in
    at::Tensor mlpOutWeight;             // [F, d] (HF mlp.c_proj) = W_out
    at::Tensor mlpOutBias;               // [d] = b_out

    // TDB's W_Q/W_K/W_V[h] ∈ R^{d×d_head} and W_O[h] ∈ R^{d_head×d} (views, no copy).
    at::Tensor queryWeight(int head, int dHead) const;
    at::Tensor keyWeight(int head, int dHead) const;
    at::Tensor valueWeight(int head, int dHead) const;
    at::Tensor outWeight(int head, int dHead) const;

    // ‖W_out[f]‖ for every neuron, float32 [F] (weightRowNorms of mlpOutWeight).
    at::Tensor neuronOutNorms() const;
    // W_O[h]·W_O[h]ᵀ for every head, double [H, d_head, d_head]: ‖v·W_O[h]‖² = v·G_h·vᵀ takes a d_head-wide
    // product per token instead of a d-wide one (25× fewer operations at GPT-2 XL's width). Double,
    // because the quadratic form loses what the norm of the product would not when W_O[h] is badly
    // conditioned: its error grows with cond(W_O[h])².
    at::Tensor headOutGrams(int dHead) const;

    std::shared_ptr<LayerWeightSummaries> summaries = std::make_shared<LayerWeightSummaries>();
};

struct Gpt2Weights {
    at::Tensor tokenEmbedding;     // [V, d] = E (wte)
    at::Tensor positionEmbedding;  // [n_ctx, d] = Π (wpe)
    at::Tensor lnFinalGain, lnFinalBias; // [d]
    at::Tensor unembedding;        // [V, d] (lm_head.weight; the same tensor as wte when tied)
    std::vector<Gpt2LayerWeights> layers;

    // Number of distinct parameters (a tied unembedding counts once).
    std::int64_t parameterCount() const;
    // Bytes they take in memory (a tied unembedding counts once).
    std::int64_t byteCount() const;
};

} // namespace cs
