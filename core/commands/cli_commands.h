#pragma once
// The JSON documents of `circuitscope-cli` (product.md §5), built here so that the CLI executable is
// only argument parsing and so tests can check the same documents without spawning a process.

#include "core/model/gpt2_model.h"
#include "core/model/prompt.h"
#include "core/model/sae_set.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cs {

// {"n_layer","n_head","d_model","d_mlp","n_ctx","vocab_size","parameters","threads","blas",...}
nlohmann::json infoJson(const Gpt2Model& model);

// {"ids":[..],"tokens":[..]}
nlohmann::json tokenizeJson(const Gpt2Model& model, std::string_view text);

// {"ids","tokens","next_tokens":[{"id","token","logit","prob"}...K]} for the last position.
nlohmann::json forwardJson(const Gpt2Model& model, std::string_view prompt, int topK,
                           OverlongPrompt policy, std::vector<std::string>* warnings);

// Autoencoder flags: each entry "L=PATH" or "L:location=PATH" (product.md §5).
struct SaeFlags {
    std::vector<std::string> mlp, attn, resid;
};
SaeSet loadSaeFlags(const Gpt2Model& model, const SaeFlags& flags);

struct NodeQuery {
    std::string prompt;
    std::string node;                  // a node name (product.md §5)
    SaeFlags saes;
    int topK = 10;
    bool vectors = false;              // include residual_write / residual_read
    bool perUnit = false;              // D6: write per unit of positive activation instead of in context
    std::optional<std::string> target, distractor;
    OverlongPrompt overlong = OverlongPrompt::Refuse;
};

// `circuitscope-cli node`: {"node","activation","write":{"top","bottom"},"read"|"read_q"+"read_k",
// "pair_attribution", ["residual_write","residual_read"], ["direct_effect","total_effect","write_magnitude"]}
nlohmann::json nodeJson(const Gpt2Model& model, const NodeQuery& query, std::vector<std::string>* warnings);

// `circuitscope-cli nodes`: {"objective","nodes":[{"node","activation","write_magnitude","direct_effect","total_effect"}]}
nlohmann::json nodesJson(const Gpt2Model& model, const std::string& prompt, const std::string& target,
                         const std::optional<std::string>& distractor, const SaeFlags& saes, int topK,
                         OverlongPrompt overlong, std::vector<std::string>* warnings);

} // namespace cs
