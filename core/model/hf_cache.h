#pragma once
// Finds GPT-2 models already in the Hugging Face cache (product.md §2): $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; models--*/snapshots/* folders whose
// config.json says model_type "gpt2". Nothing is downloaded.

#include <filesystem>
#include <string>
#include <vector>

namespace cs {

struct CachedModel {
    std::string name;               // "gpt2", "openai-community/gpt2-medium" (from models--owner--name)
    std::filesystem::path snapshot; // the snapshot folder to open
};

std::vector<CachedModel> findCachedGpt2Models();
std::vector<CachedModel> findCachedGpt2Models(const std::filesystem::path& hubDir);

} // namespace cs
