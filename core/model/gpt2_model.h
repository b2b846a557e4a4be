#pragma once
// A GPT-2 model opened from a Hugging Face directory: config, weights, tokenizer.

#include "core/model/gpt2_config.h"
#include "core/model/gpt2_weights.h"
#include "core/model/vocab_ranker.h"
#include "core/tokenizer/gpt2_tokenizer.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace cs {

struct Gpt2Model {
    std::filesystem::path directory;
    std::filesystem::path weightsFile;   // model.safetensors or pytorch_model.bin
    Gpt2Config config;
    Gpt2Weights weights;
    std::shared_ptr<const Gpt2Tokenizer> tokenizer;
    std::vector<std::string> warnings;   // things the loader tolerated (e.g. unknown extra tensors)
    // Top/bottom-k tokens of the read (embedding) and write (unembedding) lenses; one object when tied.
    // Null for models not made by loadHfGpt2: the lenses then use the exact product over the matrix.
    std::shared_ptr<const VocabRanker> embeddingRanker, unembeddingRanker;
};

// Opens `dir` (config.json + model.safetensors or pytorch_model.bin + vocab.json/merges.txt or
// tokenizer.json). Weights may carry the `transformer.` prefix or not; lm_head may be tied or not;
// F16/BF16 matrices stay as stored with WeightStorage::AsStored (gpt2_weights.h), everything else becomes
// F32. Every tensor's shape is checked against config.json; errors are InputError naming the file and
// the key or field.
std::shared_ptr<const Gpt2Model> loadHfGpt2(const std::filesystem::path& dir, WeightStorage storage = WeightStorage::AsStored);

// Loads just the weights of a state dict that is already in memory (key → tensor), with the same
// checks. `source` names the file in error messages.
Gpt2Weights weightsFromStateDict(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                 const Gpt2Config& config, const std::filesystem::path& source,
                                 std::vector<std::string>* warnings,
                                 WeightStorage storage = WeightStorage::AsStored);

} // namespace cs
