#pragma once
// The one analysis chain of the project: objective → tokenize → forward (+ autoencoders, ablations) →
// backward → effects, logits and token effects, for one prompt or two (interventions-math §10,
// product.md §5.1). The CLI, the window's engine and the headless figures all call analyzePrompt; the
// inspector's node views are computed from its result.

#include "core/analysis/effects.h"
#include "core/analysis/intervention.h"
#include "core/model/prompt.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cs {

struct AnalysisQuery {
    std::string prompt;
    ObjectiveSpec objective;               // no targets: no logit objective
    std::optional<TraceSpec> trace;        // replaces the logit objective
    std::vector<AblationSpec> ablations;
    struct SecondPrompt {
        std::string prompt;
        std::vector<std::string> targets;     // empty: the first prompt's
        std::vector<std::string> distractors; // empty (with empty targets): the first prompt's
        bool operator==(const SecondPrompt&) const = default;
    };
    std::optional<SecondPrompt> second;    // run alone, with the same ablations and trace (D15)
    OverlongPrompt overlong = OverlongPrompt::Refuse;
    int logitsTopK = 10;                   // top and bottom next tokens reported
    // With ablations and one prompt, also run the network without them (the UI's ablated / baseline / Δ).
    bool baseline = true;
    // With ablations and two prompts, also run each prompt without them: the CLI's "left" and "right"
    // are each the single-prompt document, baseline included (product.md §5.1). The window compares
    // the two prompts instead and skips these two passes.
    bool baselineOfBothPrompts = false;
};

// One next-token candidate at the objective's token.
struct NextToken {
    int id = 0;
    std::string token;
    double logit = 0;
    double prob = 0;
    bool operator==(const NextToken&) const = default;
};
struct NextTokens {
    int token = 0;                     // the position whose logits these are
    std::vector<NextToken> top;        // by logit, largest first
    std::vector<NextToken> bottom;     // smallest first
    std::vector<NextToken> targets;    // the objective's targets and distractors, always listed
    std::vector<NextToken> distractors;
};
NextTokens nextTokens(const Gpt2Model& model, const ActivationRecord& record, int token, int k, const ResolvedObjective& objective);

// One prompt through one network.
struct PromptRun {
    ActivationRecord record;
    Effects effects;
    NextTokens next;
    TokenEffects tokenEffects;
};

struct PromptAnalysis {
    std::string text;
    PromptTokens tokens;
    ResolvedObjective objective;
    PromptRun run;                     // under the ablations
    std::optional<PromptRun> baseline; // the same prompt and objective without ablations (see query.baseline*)
};

struct Analysis {
    std::vector<std::string> ablations; // the query's ablations as "name=value", for echoing
    PromptAnalysis left;
    std::optional<PromptAnalysis> right;
};

struct AnalysisControl {
    std::function<bool()> cancelled;                 // checked between layers; throws Cancelled
    std::function<void(int done, int total)> progress;
    // What is being computed ("forward", "backward", "autoencoders of layer 5", "baseline: forward", …).
    std::function<void(const std::string& stage)> stage;
    // Staged results of the first prompt's run: called once the model's own nodes have their effects
    // (latentLayers = 0), then after each layer whose autoencoders' latents are added (latentLayers =
    // the number of such layers done). The final result equals the last stage.
    std::function<void(const PromptAnalysis& partial, int latentLayers, int latentLayersTotal)> staged;
};

// Everything is validated (both prompts tokenized, objectives and ablations resolved against each)
// before the first forward pass, so bad input changes nothing: InputError names the flag or field.
Analysis analyzePrompt(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& query, const AnalysisControl& control = {});

// The node table (product.md §3, §5.1): the top K nodes of each metric, with the same nodes' metrics in
// the baseline run (ablations) or the other prompt (two prompts, rows matched by resolved name; a node
// that does not exist in one prompt has no metrics there). Ordered by the left side's rows, then the
// right side's new ones.
struct NodeTableRow {
    NodeRef node;
    std::optional<NodeMetrics> left;     // the (ablated) run of the first prompt
    std::optional<NodeMetrics> baseline; // the first prompt without ablations
    std::optional<NodeMetrics> right;    // the second prompt
};
std::vector<NodeTableRow> nodeTable(const Gpt2Model& model, const SaeSet& saes, const Analysis& analysis, int k);

} // namespace cs
