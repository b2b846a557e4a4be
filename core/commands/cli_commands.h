#pragma once
// The JSON documents of `circuitscope-cli` (product.md §5), built here so that the CLI executable is
// only argument parsing and so tests can check the same documents without spawning a process.

#include "core/analysis/analysis.h"
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

// Autoencoder flags: each entry "L=PATH" or "L:location=PATH" (product.md §5).
struct SaeFlags {
    std::vector<std::string> mlp, attn, resid;
};
SaeSet loadSaeFlags(const Gpt2Model& model, const SaeFlags& flags);

// The nodes the query's interventions name (--ablate, --trace, --downstream) checked against the model's
// shape and the loaded autoencoders: InputError "--ablate: node 'mlp:9:1@0': layer 9 does not exist ...".
// The analysis checks them too, but without saying which option carried the node.
void checkInterventionNodes(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& query);

// `circuitscope-cli forward`: {"ids","tokens","next_tokens":[{"id","token","logit","prob"}...K],"ablations"}
// at the last position under the query's ablations, and "baseline_next_tokens" (the same without them)
// when there are ablations. Only the query's prompt, ablations and overlong policy are used.
nlohmann::json forwardJson(const Gpt2Model& model, const AnalysisQuery& query, const SaeFlags& saes, int topK,
                           std::vector<std::string>* warnings);

struct NodeQuery {
    AnalysisQuery analysis;            // prompt, objective (or trace), ablations
    std::string node;                  // a node name (product.md §5)
    SaeFlags saes;
    int topK = 10;
    bool vectors = false;              // include residual_write / residual_read
    bool perUnit = false;              // D6: write per unit of positive activation instead of in context
};

// `circuitscope-cli node`: {"node","activation","write":{"top","bottom"},"read"|"read_q"+"read_k",
// "pair_attribution", ["residual_write","residual_read"], "ablations", and with an objective (a target or
// a trace) "direct_effect","total_effect","write_magnitude","objective","objective_kind"; with
// ablations also "baseline":{the same metrics and objective without them}}
nlohmann::json nodeJson(const Gpt2Model& model, const NodeQuery& query, std::vector<std::string>* warnings);

struct NodesQuery {
    AnalysisQuery analysis;
    SaeFlags saes;
    int topK = 10;                     // nodes per metric, and next tokens listed
};

// `circuitscope-cli nodes` (product.md §5.1): {"objective","objective_kind","ids","tokens","nodes":[...],
// "logits","token_effects","ablations", ["baseline"]}; with a second prompt {"left","right","nodes"
// (the union, with left/right/diff),"ablations"}.
nlohmann::json nodesJson(const Gpt2Model& model, const NodesQuery& query, std::vector<std::string>* warnings);

} // namespace cs
