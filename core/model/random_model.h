#pragma once
// A seeded generator of random GPT-2 models written as Hugging Face directories, for tests and
// benchmarks (no download needed): config.json + model.safetensors + the given tokenizer files.

#include "core/model/gpt2_config.h"

#include <cstdint>
#include <filesystem>

namespace cs {

enum class StorageDType { F32, F16, BF16 };

struct RandomModelOptions {
    Gpt2Config config;
    std::uint64_t seed = 0;
    StorageDType dtype = StorageDType::F32;
    bool prefixTransformer = true;   // write keys as `transformer.h.0...` (save_pretrained) or bare
    bool writeLmHead = false;        // also write an lm_head.weight (equal to wte unless untied)
    // Folder with vocab.json + merges.txt (or tokenizer.json) to copy; its vocabulary must not be
    // larger than config.vocabSize.
    std::filesystem::path tokenizerDir;
};

// Writes the model into `dir` (created if missing). Same options and seed → byte-identical files.
void writeRandomHfModel(const std::filesystem::path& dir, const RandomModelOptions& options);

} // namespace cs
