#pragma once
// Autoencoders attached to a model: each bound to a layer and a location, at most one per
// (node kind, layer) so that a latent name like `mlp_sae:3:42@7` is unambiguous.

#include "core/model/gpt2_config.h"
#include "core/model/sae_role.h"
#include "core/sae/sparse_autoencoder.h"

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace cs {

// ‖residual direction‖ of latents (D_l, D_l·W_out or D_l·W_O), each computed the first time it is
// asked for and kept: for a 32k-latent MLP autoencoder all of them are a [32768 × 3072] × [3072 × 768]
// product (155 GFLOP; with one such autoencoder on each of 12 layers, seconds of a first Run), while a
// prompt's active latents are a few thousand. Shared by the copies of a BoundSae; thread-safe.
struct LatentNormCache {
    std::mutex mutex;
    at::Tensor norms; // [N], valid where `known`
    at::Tensor known; // [N] bool
};

struct BoundSae {
    std::shared_ptr<const SparseAutoencoder> sae;
    SaeLocation location = SaeLocation::MlpPostAct;
    int layer = 0;
    std::shared_ptr<LatentNormCache> normCache = std::make_shared<LatentNormCache>();
};

// Decides the location (explicit choice, else what the files declare, else the input width and the
// role) and checks it against the model: the width must fit the location and the layer must exist.
// InputError names the SAE's file and the problem.
BoundSae bindSae(std::shared_ptr<const SparseAutoencoder> sae, const Gpt2Config& config, SaeRole role, int layer,
                 std::optional<SaeLocation> explicitLocation = std::nullopt);

class SaeSet {
public:
    // InputError if an SAE of the same node kind is already bound at that layer.
    void add(BoundSae bound);

    const std::vector<BoundSae>& all() const { return m_saes; }
    bool empty() const { return m_saes.empty(); }
    // The SAE whose latents have node kind `kind` ("mlp_sae", "attn_sae", "resid_sae") at `layer`.
    const BoundSae* find(std::string_view kind, int layer) const;
    const BoundSae* findAt(SaeLocation location, int layer) const;

private:
    std::vector<BoundSae> m_saes;
};

// Parses a CLI/GUI spec "L=PATH" or "L:location=PATH" (location as in saeLocationName or a SAELens
// hook name), loads the SAE and binds it.
BoundSae loadAndBindSae(std::string_view spec, const Gpt2Config& config, SaeRole role);

} // namespace cs
