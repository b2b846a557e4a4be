#pragma once
// Trains standard ReLU sparse autoencoders on a trained model's activations (MLP post-activation
// and attention block output of every layer) and writes them in SAELens layout
// (<dir>/<kind>_<layer>/cfg.json + sae_weights.safetensors), which cs::loadSae reads.

#include "core/model/gpt2_model.h"
#include "core/model/random_model.h"
#include "core/sae/sparse_autoencoder.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace cs::train {

struct SaeTrainOptions {
    std::uint64_t seed = 1;
    int latentMultiplier = 4;     // latents = multiplier × input width
    int steps = 2000;
    int batchSize = 512;          // activations per step
    double learningRate = 1e-3;
    double l1Coefficient = 0.01;  // on Σ α_l‖D_l‖, inputs scaled to unit mean squared norm
    int trainingTokens = 16384;   // activations collected for training (windows of n_ctx)
    int evalTokens = 4096;        // held-out activations for the report
    int resampleEvery = 500;      // latents that never fired since the last check are re-initialized
    std::function<void(const std::string&)> log;
};

// What an autoencoder achieves on held-out activations.
struct SaeReport {
    std::string location;          // saeLocationName
    int layer = 0;
    int latents = 0;
    double varianceExplained = 0;  // 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²
    double meanL0 = 0;             // active latents per token
    double deadFraction = 0;       // latents that never fire on the held-out activations
};

// Activations of `location` at `layer` for windows of the token stream; [n, width].
struct ActivationSet {
    std::vector<at::Tensor> mlpPost;   // per layer
    std::vector<at::Tensor> attnOut;   // per layer
};
ActivationSet collectActivations(const Gpt2Model& model, const std::vector<int>& tokens, std::int64_t offset,
                                 int tokenCount);

SaeReport measureSae(const SparseAutoencoder& sae, const at::Tensor& activations);

// Trains one MLP and one attention autoencoder per layer; writes them under `dir` as mlp_L and attn_L.
std::vector<SaeReport> trainSaes(const Gpt2Model& model, const std::vector<int>& tokens, const SaeTrainOptions& options,
                                 const std::filesystem::path& dir, StorageDType storage = StorageDType::F32);

// Writes one autoencoder in SAELens layout.
void writeSaeLens(const SparseAutoencoder& sae, SaeLocation location, int layer, const std::filesystem::path& dir,
                  StorageDType storage);

} // namespace cs::train
