#pragma once
// What a run differentiates and what it changes (interventions-math §10, product.md §5.1): the logit
// objective with several targets and distractors, a trace upstream from one node, and ablations — as
// the user writes them (node names, token texts), and resolved against one prompt.

#include "core/analysis/node.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cs {

// The kind of scalar a run differentiates; its name is the JSON "objective_kind".
enum class ObjectiveKind {
    LogitDiff,      // mean(logit[targets]) − mean(logit[distractors]) (no distractor: mean(logit[targets]))
    LogitMinusMean, // mean(logit[targets]) − mean(logit over the vocabulary)
    Prob,           // Σ softmax(logits)[targets]
    Activation,     // a traced neuron's or latent's pre-activation
    AttentionScore, // a traced head's pre-softmax score through Q, K or both
    ValueWrite,     // a traced head's value write projected on a downstream gradient (TDB's V trace)
};
const char* objectiveKindName(ObjectiveKind kind);
// The three logit objectives by name ("logit_diff", "logit_minus_mean", "prob"); nullopt otherwise.
std::optional<ObjectiveKind> logitObjectiveFromName(std::string_view name);
bool isLogitObjective(ObjectiveKind kind);

// A node's activation replaced by a constant (§10.2). Text form NODE[=VALUE] (VALUE defaults to 0):
//   mlp:L:I@T            neuron post-activation a[T,I]
//   attn:L:H@Q           the head's whole causal attention row at query Q: P[Q,k,H] for k ≤ Q (D11)
//   attn:L:H@Q,K         one attention probability P[Q,K,H]
//   mlp_sae:L:I@T, attn_sae:L:I@T, resid_sae:L:I@T   latent α[T,I], the autoencoder's error term kept
// with `@*` for every token (every query row for heads). Token indices may be negative (from the end).
struct AblationSpec {
    NodeKind kind = NodeKind::MlpNeuron;
    int layer = 0;
    int index = 0;
    std::optional<int> token;    // nullopt: every token (@*)
    std::optional<int> keyToken; // heads: one pair; nullopt: the whole causal row
    double value = 0;

    // InputError ("--ablate 'x': ...") for a malformed spec or a node kind that cannot be ablated.
    static AblationSpec parse(std::string_view text);
    std::string name() const;       // the node part: "mlp:1:2@-1", "attn:0:3@*", "attn:0:3@5,2"
    std::string spec() const;       // name=value: "mlp:1:2@-1=0", "attn:0:3@5=0.25"
    bool operator==(const AblationSpec&) const = default;

private:
    static AblationSpec parseUnchecked(std::string_view text);
};

// How a traced head's score is differentiated (§10.3): through the query only, the key only, both,
// or TDB's value trace.
enum class TraceThrough { Q, K, QK, V };
const char* traceThroughName(TraceThrough through); // "q", "k", "qk", "v"
std::optional<TraceThrough> traceThroughFromName(std::string_view name);

// --trace NODE [--through q|k|qk|v [--downstream NODE [--downstream-through q|k|qk]]]
struct TraceSpec {
    NodeRef node;                                 // a neuron, a latent or a head (at a token pair)
    std::optional<TraceThrough> through;          // heads only; default QK
    std::optional<NodeRef> downstream;            // only with --through v
    std::optional<TraceThrough> downstreamThrough;// downstream heads only; default QK; never V

    // Checks the combination (no model needed): InputError naming the flag.
    void validate() const;
    TraceThrough effectiveThrough() const { return through.value_or(TraceThrough::QK); }
    bool operator==(const TraceSpec&) const = default;
};

// The logit objective as written: token texts, each of which must be one token.
struct ObjectiveSpec {
    ObjectiveKind kind = ObjectiveKind::LogitDiff; // LogitDiff, LogitMinusMean or Prob
    std::vector<std::string> targets;
    std::vector<std::string> distractors;
    bool operator==(const ObjectiveSpec&) const = default;
};

// A trace with its nodes resolved against one prompt and checked against the model.
struct ResolvedTrace {
    NodeRef node;
    TraceThrough through = TraceThrough::QK;
    std::optional<NodeRef> downstream;
    TraceThrough downstreamThrough = TraceThrough::QK;
};

// Everything the objective needs for one prompt, as token ids and resolved nodes.
struct ResolvedObjective {
    ObjectiveKind logitKind = ObjectiveKind::LogitDiff;
    std::vector<int> targets, distractors;   // empty targets: no logit objective
    std::optional<ResolvedTrace> trace;

    bool hasLogitObjective() const { return !targets.empty(); }
    // Whether the run differentiates anything (a trace, or a logit objective).
    bool any() const { return trace.has_value() || hasLogitObjective(); }
    ObjectiveKind kind() const;              // what the run differentiates
    // The token whose next-token logits are reported: the traced node's (query) token, else the last.
    int logitsToken(int tokenCount) const;
};

// Token ids of the objective's targets and distractors (InputError naming the field when a text is not
// one token, a distractor comes without a target, or a distractor is given to prob/logit_minus_mean).
ResolvedObjective resolveObjective(const Gpt2Model& model, const ObjectiveSpec& objective,
                                   const std::optional<TraceSpec>& trace, const SaeSet& saes, int tokenCount,
                                   std::string_view promptName);

// The ablations as forward-pass entries for one prompt of `tokenCount` tokens: nodes checked against
// the model and its autoencoders, tokens resolved (`@*` expanded), the same entry ablated twice with
// different values refused. InputError names the spec and, when a token is out of range, the prompt.
ForwardAblations resolveAblations(const Gpt2Model& model, const SaeSet& saes, const std::vector<AblationSpec>& ablations,
                                  int tokenCount, std::string_view promptName);

// Where nodes sit in the forward order of the residual stream (§10.3's "upstream order"): a node u is
// upstream of a traced node ν (and has a direct effect on it) iff writePosition(u) ≤ readPosition(ν).
// Residual autoencoder latents write right after the residual they read, before anything else reads it.
int residualWritePosition(const SaeSet& saes, NodeKind kind, int layer);
int residualReadPosition(const SaeSet& saes, NodeKind kind, int layer);
int finalResidualPosition(int nLayer);

} // namespace cs
