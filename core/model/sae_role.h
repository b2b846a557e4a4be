#pragma once
// The role an autoencoder is given when it is added (--mlp-sae, --attn-sae, --resid-sae; a session's
// "role"): one type across the core, the sessions and the window. Header only, so that the session
// library (no libtorch) can use it.

#include <optional>
#include <string_view>

namespace cs {

enum class SaeRole { Mlp, Attn, Resid };
inline constexpr SaeRole kSaeRoles[] = {SaeRole::Mlp, SaeRole::Attn, SaeRole::Resid};

// Its name in sessions: "mlp", "attn", "resid".
constexpr const char* saeRoleName(SaeRole role)
{
    switch (role) {
    case SaeRole::Mlp: return "mlp";
    case SaeRole::Attn: return "attn";
    case SaeRole::Resid: return "resid";
    }
    return "mlp";
}

constexpr std::optional<SaeRole> saeRoleFromName(std::string_view name)
{
    for (SaeRole role : kSaeRoles) {
        if (name == saeRoleName(role))
            return role;
    }
    return std::nullopt;
}

} // namespace cs
