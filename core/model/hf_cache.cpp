#include "core/model/hf_cache.h"

#include "core/util/errors.h"
#include "core/util/files.h"

#include <algorithm>
#include <cstdlib>

namespace cs {

std::vector<CachedModel> findCachedGpt2Models(const std::filesystem::path& hub)
{
    namespace fs = std::filesystem;
    std::vector<CachedModel> out;
    std::error_code ec;
    if (!fs::is_directory(hub, ec))
        return out;
    for (const auto& repo : fs::directory_iterator(hub, ec)) {
        const std::string dirName = repo.path().filename().string();
        if (dirName.rfind("models--", 0) != 0)
            continue;
        // models--owner--name -> owner/name
        std::string name = dirName.substr(8);
        for (std::size_t pos; (pos = name.find("--")) != std::string::npos;)
            name.replace(pos, 2, "/");
        std::error_code ec2;
        for (const auto& snap : fs::directory_iterator(repo.path() / "snapshots", ec2)) {
            nlohmann::json config;
            try {
                config = readJsonFile(snap.path() / "config.json", kMaxConfigBytes);
            } catch (const InputError&) {
                continue; // not a model we can open; opening it by path says why
            }
            if (config.is_object() && config.value("model_type", std::string()) == "gpt2")
                out.push_back({name, snap.path()});
        }
    }
    std::sort(out.begin(), out.end(), [](const CachedModel& a, const CachedModel& b) {
        return a.name != b.name ? a.name < b.name : a.snapshot < b.snapshot;
    });
    return out;
}

std::vector<CachedModel> findCachedGpt2Models()
{
    namespace fs = std::filesystem;
    if (const char* hf = std::getenv("HF_HOME"); hf && *hf)
        return findCachedGpt2Models(fs::path(hf) / "hub");
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
        return findCachedGpt2Models(fs::path(xdg) / "huggingface/hub");
    if (const char* home = std::getenv("HOME"); home && *home)
        return findCachedGpt2Models(fs::path(home) / ".cache/huggingface/hub");
    return {};
}

} // namespace cs
