#pragma once
// Where the bundled demo model lives (resources/demo in the source tree, share/circuitscope/demo
// when installed). Used when the user names no model.

#include <filesystem>
#include <optional>

namespace cs {

// $CIRCUITSCOPE_DEMO_MODEL if set, else the first of the known places that holds a config.json.
std::optional<std::filesystem::path> findBundledDemoModel(const std::filesystem::path& executableDir);

} // namespace cs
