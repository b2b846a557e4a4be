#include "core/model/demo_model.h"

#include <cstdlib>

#ifndef CIRCUITSCOPE_SOURCE_DIR
#define CIRCUITSCOPE_SOURCE_DIR ""
#endif

namespace cs {

std::optional<std::filesystem::path> findBundledDemoModel(const std::filesystem::path& executableDir)
{
    std::error_code ec;
    if (const char* env = std::getenv("CIRCUITSCOPE_DEMO_MODEL"); env && *env)
        return std::filesystem::path(env);
    const std::filesystem::path candidates[] = {
        executableDir / "../share/circuitscope/demo",
        executableDir / "../resources/demo",
        executableDir / "../../resources/demo",
        std::filesystem::path(CIRCUITSCOPE_SOURCE_DIR) / "resources/demo",
    };
    for (const auto& c : candidates) {
        if (!c.empty() && std::filesystem::exists(c / "config.json", ec))
            return std::filesystem::weakly_canonical(c, ec);
    }
    return std::nullopt;
}

} // namespace cs
