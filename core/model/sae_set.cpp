#include "core/model/sae_set.h"

#include "core/util/errors.h"

#include <charconv>

namespace cs {

namespace {

const char* roleFlag(SaeRole role)
{
    switch (role) {
    case SaeRole::Mlp: return "--mlp-sae";
    case SaeRole::Attn: return "--attn-sae";
    case SaeRole::Resid: return "--resid-sae";
    }
    return "?";
}

bool locationFitsRole(SaeLocation location, SaeRole role)
{
    switch (location) {
    case SaeLocation::MlpPostAct:
    case SaeLocation::ResidDeltaMlp: return role == SaeRole::Mlp;
    case SaeLocation::ResidDeltaAttn:
    case SaeLocation::AttnZ: return role == SaeRole::Attn;
    case SaeLocation::ResidPre:
    case SaeLocation::ResidMid:
    case SaeLocation::ResidPost: return role == SaeRole::Resid;
    }
    return false;
}

} // namespace

BoundSae bindSae(std::shared_ptr<const SparseAutoencoder> sae, const Gpt2Config& c, SaeRole role, int layer,
                 std::optional<SaeLocation> explicitLocation)
{
    const auto& file = sae->source;
    const std::int64_t width = sae->inputWidth();
    if (layer < 0 || layer >= c.nLayer)
        throwInputError(file, "layer " + std::to_string(layer) + " does not exist (the model has " + std::to_string(c.nLayer) +
                                  " layers)");
    if (sae->declaredLayer && *sae->declaredLayer != layer)
        throwInputError(file, "its files say layer " + std::to_string(*sae->declaredLayer) + " but it was given for layer " +
                                  std::to_string(layer));

    std::optional<SaeLocation> location = explicitLocation ? explicitLocation : sae->declaredLocation;
    if (!location) {
        switch (role) {
        case SaeRole::Mlp:
            if (width == c.dMlp && width != c.dModel)
                location = SaeLocation::MlpPostAct;
            else if (width == c.dModel && width != c.dMlp)
                location = SaeLocation::ResidDeltaMlp;
            else if (width == c.dMlp)
                throwInputError(file, "input width " + std::to_string(width) +
                                          " fits both mlp_post_act and resid_delta_mlp; name the location (L:mlp_post_act=PATH)");
            break;
        case SaeRole::Attn:
            if (width == c.dModel)
                location = SaeLocation::ResidDeltaAttn;
            break;
        case SaeRole::Resid:
            throwInputError(file, "the file does not say which residual stream it reads; name it: " + std::string(roleFlag(role)) +
                                      " L:resid_pre=PATH (or resid_post_attn, resid_post_mlp)");
        }
    }
    if (!location)
        throwInputError(file, "input width " + std::to_string(width) + " fits no " + roleFlag(role) +
                                  " location of this model (d_model " + std::to_string(c.dModel) + ", d_mlp " +
                                  std::to_string(c.dMlp) + ")");
    if (!locationFitsRole(*location, role))
        throwInputError(file, std::string("location ") + saeLocationName(*location) + " is not an " + roleFlag(role) +
                                  " location");
    const std::int64_t expected = *location == SaeLocation::MlpPostAct ? c.dMlp : c.dModel;
    if (width != expected)
        throwInputError(file, "input width " + std::to_string(width) + " does not fit " + saeLocationName(*location) +
                                  " of this model (width " + std::to_string(expected) + ")");
    return BoundSae{std::move(sae), *location, layer};
}

void SaeSet::add(BoundSae bound)
{
    const char* kind = saeKindName(bound.location);
    if (const BoundSae* existing = find(kind, bound.layer))
        throwInputError(bound.sae->source, std::string("layer ") + std::to_string(bound.layer) + " already has a " + kind +
                                               " autoencoder (" + existing->sae->source.string() + ")");
    m_saes.push_back(std::move(bound));
}

const BoundSae* SaeSet::find(std::string_view kind, int layer) const
{
    for (const auto& b : m_saes) {
        if (b.layer == layer && kind == saeKindName(b.location))
            return &b;
    }
    return nullptr;
}

const BoundSae* SaeSet::findAt(SaeLocation location, int layer) const
{
    for (const auto& b : m_saes) {
        if (b.layer == layer && b.location == location)
            return &b;
    }
    return nullptr;
}

BoundSae loadAndBindSae(std::string_view spec, const Gpt2Config& config, SaeRole role)
{
    const auto eq = spec.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
        throw InputError(std::string(roleFlag(role)) + ": '" + std::string(spec) + "' is not LAYER=PATH");
    std::string_view head = spec.substr(0, eq);
    const std::string path(spec.substr(eq + 1));
    std::optional<SaeLocation> location;
    if (const auto colon = head.find(':'); colon != std::string_view::npos) {
        location = saeLocationFromName(head.substr(colon + 1));
        if (!location)
            throw InputError(std::string(roleFlag(role)) + ": unknown location '" + std::string(head.substr(colon + 1)) + "'");
        head = head.substr(0, colon);
    }
    int layer = -1;
    const auto [ptr, ec] = std::from_chars(head.data(), head.data() + head.size(), layer);
    if (ec != std::errc() || ptr != head.data() + head.size())
        throw InputError(std::string(roleFlag(role)) + ": layer '" + std::string(head) + "' is not an integer");
    auto sae = std::make_shared<const SparseAutoencoder>(loadSae(path));
    return bindSae(std::move(sae), config, role, layer, location);
}

} // namespace cs
