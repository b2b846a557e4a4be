#include "core/sae/sparse_autoencoder.h"

#include <array>
#include <utility>

namespace cs {

namespace {

struct LocationNames {
    SaeLocation location;
    const char* name;      // ours (TDB/OpenAI spelling where one exists)
    const char* kind;      // node kind of its latents
    std::array<const char*, 4> aliases; // other spellings, SAELens hook names without "blocks.L."
};

constexpr LocationNames kLocations[] = {
    {SaeLocation::MlpPostAct, "mlp_post_act", "mlp_sae", {"mlp.hook_post", "mlp.post_act", "hook_mlp_post", nullptr}},
    {SaeLocation::ResidDeltaMlp, "resid_delta_mlp", "mlp_sae", {"hook_mlp_out", "resid.delta_mlp", nullptr, nullptr}},
    {SaeLocation::ResidDeltaAttn, "resid_delta_attn", "attn_sae", {"hook_attn_out", "resid.delta_attn", nullptr, nullptr}},
    {SaeLocation::AttnZ, "attn_z", "attn_sae", {"attn.hook_z", "hook_z", nullptr, nullptr}},
    {SaeLocation::ResidPre, "resid_pre", "resid_sae", {"hook_resid_pre", "resid_post_emb", nullptr, nullptr}},
    {SaeLocation::ResidMid, "resid_post_attn", "resid_sae", {"hook_resid_mid", "resid_mid", "resid.post_attn", nullptr}},
    {SaeLocation::ResidPost, "resid_post_mlp", "resid_sae", {"hook_resid_post", "resid_post", "resid.post_mlp", nullptr}},
};

const LocationNames& entry(SaeLocation location)
{
    for (const auto& e : kLocations) {
        if (e.location == location)
            return e;
    }
    return kLocations[0];
}

} // namespace

const char* saeLocationName(SaeLocation location)
{
    return entry(location).name;
}

const char* saeKindName(SaeLocation location)
{
    return entry(location).kind;
}

std::optional<SaeLocation> saeLocationFromName(std::string_view name)
{
    // SAELens hook names carry the layer: "blocks.5.hook_resid_pre" -> "hook_resid_pre".
    if (name.rfind("blocks.", 0) == 0) {
        const auto dot = name.find('.', 7);
        if (dot == std::string_view::npos)
            return std::nullopt;
        name.remove_prefix(dot + 1);
    }
    for (const auto& e : kLocations) {
        if (name == e.name)
            return e.location;
        for (const char* alias : e.aliases) {
            if (alias && name == alias)
                return e.location;
        }
    }
    return std::nullopt;
}

} // namespace cs
