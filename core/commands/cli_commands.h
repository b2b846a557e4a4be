#pragma once
// The JSON documents of `circuitscope-cli` (product.md §5), built here so that the CLI executable is
// only argument parsing and so tests can check the same documents without spawning a process.

#include "core/model/gpt2_model.h"
#include "core/model/prompt.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace cs {

// {"n_layer","n_head","d_model","d_mlp","n_ctx","vocab_size","parameters","threads","blas",...}
nlohmann::json infoJson(const Gpt2Model& model);

// {"ids":[..],"tokens":[..]}
nlohmann::json tokenizeJson(const Gpt2Model& model, std::string_view text);

// {"ids","tokens","next_tokens":[{"id","token","logit","prob"}...K]} for the last position.
nlohmann::json forwardJson(const Gpt2Model& model, std::string_view prompt, int topK,
                           OverlongPrompt policy, std::vector<std::string>* warnings);

} // namespace cs
