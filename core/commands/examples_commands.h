#pragma once
// `circuitscope-cli index` and `circuitscope-cli examples` (issue 14): the JSON documents, built here so
// that the CLI executable only parses arguments.
//   index:    {"tokens":..,"windows":..,"seconds":..,"cache_path":".."}
//   examples: {"node":"..","top":[{"doc","position","max","tokens","activations","max_index"}...K],
//              "quantiles":[{"band":[lo,hi],"examples":[...]}]}   (bands from the highest down)

#include "core/commands/cli_commands.h"
#include "core/examples/example_index.h"

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <optional>
#include <string>

namespace cs {

// One example as the CLI prints it (tokens as strings).
nlohmann::json exampleJson(const Example& example, const Gpt2Tokenizer& tokenizer);
nlohmann::json nodeExamplesJson(const NodeExamples& examples, const Gpt2Tokenizer& tokenizer);

// Builds (or reuses, or resumes) the index; progress lines and messages go to `log`.
// $CIRCUITSCOPE_CACHE_DIR overrides the cache directory (tests use it).
nlohmann::json indexCommandJson(const Gpt2Model& model, const SaeFlags& saes, const std::string& corpus,
                                std::optional<std::int64_t> tokenLimit, std::ostream& log);

// Answers from the saved index, building it first if it is missing, stale or corrupt.
nlohmann::json examplesCommandJson(const Gpt2Model& model, const SaeFlags& saes, const std::string& corpus,
                                   const std::string& node, int topK, std::ostream& log);

} // namespace cs
