#include "core/analysis/intervention.h"

#include "core/analysis/converters.h"
#include "core/model/prompt.h"
#include "core/util/errors.h"

#include <charconv>
#include <cmath>
#include <map>
#include <tuple>

namespace cs {

namespace {

struct KindName {
    ObjectiveKind kind;
    const char* name;
};
constexpr KindName kObjectiveKinds[] = {
    {ObjectiveKind::LogitDiff, "logit_diff"},       {ObjectiveKind::LogitMinusMean, "logit_minus_mean"},
    {ObjectiveKind::Prob, "prob"},                  {ObjectiveKind::Activation, "activation"},
    {ObjectiveKind::AttentionScore, "attention_score"}, {ObjectiveKind::ValueWrite, "value_write"},
};

std::string formatValue(double v)
{
    char buffer[32];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
    return ec == std::errc() ? std::string(buffer, end) : std::to_string(v);
}

[[noreturn]] void badAblation(std::string_view text, const std::string& why)
{
    throw InputError("--ablate '" + std::string(text) + "': " + why);
}

// Resolves a token index against a prompt, naming the prompt when it is out of range.
int resolveToken(int token, int tokenCount, const std::string& flag, const std::string& what, std::string_view promptName)
{
    const int abs = token < 0 ? token + tokenCount : token;
    if (abs < 0 || abs >= tokenCount)
        throw InputError(flag + ": " + what + " " + std::to_string(token) + " is outside the " + std::string(promptName) + "'s " +
                         std::to_string(tokenCount) + " tokens");
    return abs;
}

NodeRef resolveNode(const Gpt2Model& model, const SaeSet& saes, const NodeRef& node, int tokenCount, const std::string& flag,
                    std::string_view promptName)
{
    checkNodeIndex(model, saes, node.kind, node.layer, node.index, node.name());
    NodeRef r = node;
    r.token = resolveToken(node.token, tokenCount, flag + " '" + node.name() + "'", "token", promptName);
    if (node.kind == NodeKind::AttnHead) {
        r.keyToken = resolveToken(node.keyToken, tokenCount, flag + " '" + node.name() + "'", "key token", promptName);
        if (r.keyToken > r.token)
            throw InputError(flag + " '" + node.name() + "': key token " + std::to_string(r.keyToken) + " comes after query token " +
                             std::to_string(r.token) + " (attention is causal)");
    }
    return r;
}

const BoundSae& residSae(const SaeSet& saes, int layer)
{
    const BoundSae* b = saes.find("resid_sae", layer);
    if (!b)
        throw InputError("no resid_sae autoencoder is loaded for layer " + std::to_string(layer));
    return *b;
}

// Offsets inside a layer's stretch of the forward order (see residualWritePosition).
int residualOffset(SaeLocation location)
{
    switch (location) {
    case SaeLocation::ResidPre: return 0;
    case SaeLocation::ResidMid: return 3;
    case SaeLocation::ResidPost: return 6;
    default: return 0;
    }
}

constexpr int kLayerStride = 10;

} // namespace

const char* objectiveKindName(ObjectiveKind kind)
{
    for (const auto& k : kObjectiveKinds) {
        if (k.kind == kind)
            return k.name;
    }
    return "?";
}

std::optional<ObjectiveKind> logitObjectiveFromName(std::string_view name)
{
    for (const auto& k : kObjectiveKinds) {
        if (name == k.name && isLogitObjective(k.kind))
            return k.kind;
    }
    return std::nullopt;
}

bool isLogitObjective(ObjectiveKind kind)
{
    return kind == ObjectiveKind::LogitDiff || kind == ObjectiveKind::LogitMinusMean || kind == ObjectiveKind::Prob;
}

AblationSpec AblationSpec::parse(std::string_view text)
{
    try {
        return parseUnchecked(text);
    } catch (const InputError& e) {
        const std::string what = e.what();
        if (what.rfind("--ablate", 0) == 0)
            throw;
        throw InputError("--ablate: " + what); // a node-name error ("node '...': ...")
    }
}

AblationSpec AblationSpec::parseUnchecked(std::string_view text)
{
    AblationSpec a;
    std::string_view node = text;
    if (const auto eq = text.find('='); eq != std::string_view::npos) {
        node = text.substr(0, eq);
        const std::string_view v = text.substr(eq + 1);
        const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), a.value);
        if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || !std::isfinite(a.value))
            badAblation(text, "value '" + std::string(v) + "' is not a finite number");
    }
    const auto at = node.find('@');
    if (at == std::string_view::npos)
        badAblation(text, "missing '@token' (e.g. mlp:1:5@3, attn:0:2@7, attn:0:2@7,3, mlp:1:5@*)");
    const NodeHead head = parseNodeHead(node.substr(0, at), text);
    if (head.kind == NodeKind::Embedding)
        badAblation(text, "an embedding cannot be ablated (ablate a neuron, a head or an autoencoder latent)");
    a.kind = head.kind;
    a.layer = head.layer;
    a.index = head.index;
    const std::string_view tokens = node.substr(at + 1);
    const auto comma = tokens.find(',');
    const std::string_view first = tokens.substr(0, comma);
    if (first == "*") {
        if (comma != std::string_view::npos)
            badAblation(text, "'@*' takes no key token (it ablates every query row)");
    } else {
        a.token = parseTokenIndex(first, text, a.kind == NodeKind::AttnHead ? "query token" : "token");
    }
    if (comma != std::string_view::npos) {
        if (a.kind != NodeKind::AttnHead)
            badAblation(text, "only attention heads take two tokens");
        a.keyToken = parseTokenIndex(tokens.substr(comma + 1), text, "key token");
    }
    return a;
}

std::string AblationSpec::name() const
{
    std::string s = std::string(nodeKindName(kind)) + ":" + std::to_string(layer) + ":" + std::to_string(index) + "@" +
                    (token ? std::to_string(*token) : std::string("*"));
    if (keyToken)
        s += "," + std::to_string(*keyToken);
    return s;
}

std::string AblationSpec::spec() const
{
    return name() + "=" + formatValue(value);
}

const char* traceThroughName(TraceThrough through)
{
    switch (through) {
    case TraceThrough::Q: return "q";
    case TraceThrough::K: return "k";
    case TraceThrough::QK: return "qk";
    case TraceThrough::V: return "v";
    }
    return "?";
}

std::optional<TraceThrough> traceThroughFromName(std::string_view name)
{
    for (TraceThrough t : {TraceThrough::Q, TraceThrough::K, TraceThrough::QK, TraceThrough::V}) {
        if (name == traceThroughName(t))
            return t;
    }
    return std::nullopt;
}

void TraceSpec::validate() const
{
    if (node.kind == NodeKind::Embedding)
        throw InputError("--trace '" + node.name() + "': an embedding has no pre-activation to trace (trace a neuron, a head or a latent)");
    if (through && node.kind != NodeKind::AttnHead)
        throw InputError(std::string("--through ") + traceThroughName(*through) + ": only for a traced attention head, not '" +
                         node.name() + "'");
    if (downstream && effectiveThrough() != TraceThrough::V)
        throw InputError("--downstream '" + downstream->name() + "': only with --through v");
    if (downstreamThrough && !downstream)
        throw InputError("--downstream-through: needs --downstream");
    if (downstream && downstream->kind == NodeKind::Embedding)
        throw InputError("--downstream '" + downstream->name() + "': an embedding reads nothing");
    if (downstreamThrough == TraceThrough::V)
        throw InputError("--downstream-through v: a downstream node is traced through q, k or qk, never v");
    if (downstreamThrough && downstream->kind != NodeKind::AttnHead)
        throw InputError("--downstream-through: only for a downstream attention head, not '" + downstream->name() + "'");
}

ObjectiveKind ResolvedObjective::kind() const
{
    if (!trace)
        return logitKind;
    if (trace->node.kind != NodeKind::AttnHead)
        return ObjectiveKind::Activation;
    return trace->through == TraceThrough::V ? ObjectiveKind::ValueWrite : ObjectiveKind::AttentionScore;
}

int ResolvedObjective::logitsToken(int tokenCount) const
{
    return trace ? trace->node.token : tokenCount - 1;
}

ResolvedObjective resolveObjective(const Gpt2Model& model, const ObjectiveSpec& objective, const std::optional<TraceSpec>& trace,
                                   const SaeSet& saes, int tokenCount, std::string_view promptName)
{
    // The second prompt's own targets are --target2/--distractor2.
    const std::string suffix = promptName == "prompt" ? "" : "2";
    ResolvedObjective r;
    r.logitKind = objective.kind;
    if (!isLogitObjective(objective.kind))
        throw InputError(std::string("--objective ") + objectiveKindName(objective.kind) + ": not a logit objective (logit_diff, logit_minus_mean, prob)");
    if (objective.targets.empty() && !objective.distractors.empty())
        throw InputError("--distractor" + suffix + ": needs a --target" + suffix);
    if (objective.kind != ObjectiveKind::LogitDiff && !objective.distractors.empty())
        throw InputError(std::string("--objective ") + objectiveKindName(objective.kind) + ": takes no --distractor" + suffix +
                         " (only logit_diff subtracts distractors)");
    if (objective.kind != ObjectiveKind::LogitDiff && objective.targets.empty() && !trace)
        throw InputError(std::string("--objective ") + objectiveKindName(objective.kind) + ": needs a --target" + suffix);
    for (const auto& t : objective.targets)
        r.targets.push_back(singleTokenId(model, t, "target" + suffix));
    for (const auto& d : objective.distractors)
        r.distractors.push_back(singleTokenId(model, d, "distractor" + suffix));

    if (trace) {
        trace->validate();
        ResolvedTrace rt;
        rt.node = resolveNode(model, saes, trace->node, tokenCount, "--trace", promptName);
        rt.through = trace->effectiveThrough();
        if (trace->downstream) {
            rt.downstream = resolveNode(model, saes, *trace->downstream, tokenCount, "--downstream", promptName);
            rt.downstreamThrough = trace->downstreamThrough.value_or(TraceThrough::QK);
            if (residualReadPosition(saes, rt.downstream->kind, rt.downstream->layer) <
                residualWritePosition(saes, rt.node.kind, rt.node.layer))
                throw InputError("--downstream '" + trace->downstream->name() + "': it reads the residual stream before " +
                                 trace->node.name() + " writes to it (choose a node of a later layer, or a neuron or MLP latent of layer " +
                                 std::to_string(rt.node.layer) + ")");
        } else if (rt.through == TraceThrough::V && r.targets.empty()) {
            throw InputError("--through v: without --downstream the value write is projected on the objective's gradient, which needs a --target" +
                             suffix);
        }
        r.trace = rt;
    }
    return r;
}

ForwardAblations resolveAblations(const Gpt2Model& model, const SaeSet& saes, const std::vector<AblationSpec>& ablations,
                                  int tokenCount, std::string_view promptName)
{
    ForwardAblations out;
    out.layers.resize(static_cast<std::size_t>(model.config.nLayer));
    // Every entry once: (kind, layer, index, token, key) → the spec that set it.
    using Key = std::tuple<int, int, int, int, int>;
    std::map<Key, const AblationSpec*> seen;
    for (const AblationSpec& a : ablations) {
        const std::string flag = "--ablate '" + a.spec() + "'";
        checkNodeIndex(model, saes, a.kind, a.layer, a.index, a.name());
        std::vector<int> tokens;
        if (a.token) {
            tokens.push_back(resolveToken(*a.token, tokenCount, flag, a.kind == NodeKind::AttnHead ? "query token" : "token", promptName));
        } else {
            for (int t = 0; t < tokenCount; ++t)
                tokens.push_back(t);
        }
        std::optional<int> key;
        if (a.keyToken) {
            key = resolveToken(*a.keyToken, tokenCount, flag, "key token", promptName);
            if (*key > tokens.front())
                throw InputError(flag + ": key token " + std::to_string(*key) + " comes after query token " + std::to_string(tokens.front()) +
                                 " (attention is causal)");
        }
        LayerAblations& layer = out.layers[static_cast<std::size_t>(a.layer)];
        const auto value = static_cast<float>(a.value);
        auto add = [&](std::vector<ActivationAblation>& list, int token, int k) {
            const Key id{static_cast<int>(a.kind), a.layer, a.index, token, k};
            if (const auto it = seen.find(id); it != seen.end()) {
                if (static_cast<float>(it->second->value) != value)
                    throw InputError(flag + ": the same activation is already ablated to another value by '" + it->second->spec() + "'");
                return;
            }
            seen.emplace(id, &a);
            list.push_back({token, a.index, k, value});
        };
        for (int t : tokens) {
            switch (a.kind) {
            case NodeKind::MlpNeuron: add(layer.neurons, t, 0); break;
            case NodeKind::AttnHead:
                if (key) {
                    add(layer.probs, t, *key);
                } else {
                    for (int k = 0; k <= t; ++k) // D11: the causal keys only
                        add(layer.probs, t, k);
                }
                break;
            case NodeKind::MlpSaeLatent: add(layer.mlpLatents, t, 0); break;
            case NodeKind::AttnSaeLatent: add(layer.attnLatents, t, 0); break;
            case NodeKind::ResidSaeLatent: add(layer.residLatents, t, 0); break;
            case NodeKind::Embedding: throw InputError(flag + ": an embedding cannot be ablated");
            }
        }
    }
    return out;
}

// The forward order, per layer ℓ (stride 10): 0 resid_pre SAE reads · 1 it writes, heads read ·
// 2 heads and attention latents write · 3 resid_mid SAE reads · 4 it writes, neurons read ·
// 5 neurons and MLP latents write · 6 resid_post SAE reads · 7 it writes. The embedding writes at −1,
// the final residual is read at 10·n_layer.
int residualWritePosition(const SaeSet& saes, NodeKind kind, int layer)
{
    const int base = kLayerStride * layer;
    switch (kind) {
    case NodeKind::Embedding: return -1;
    case NodeKind::AttnHead:
    case NodeKind::AttnSaeLatent: return base + 2;
    case NodeKind::MlpNeuron:
    case NodeKind::MlpSaeLatent: return base + 5;
    case NodeKind::ResidSaeLatent: return base + residualOffset(residSae(saes, layer).location) + 1;
    }
    return base;
}

int residualReadPosition(const SaeSet& saes, NodeKind kind, int layer)
{
    const int base = kLayerStride * layer;
    switch (kind) {
    case NodeKind::Embedding: return -1;
    case NodeKind::AttnHead:
    case NodeKind::AttnSaeLatent: return base + 1;
    case NodeKind::MlpNeuron:
    case NodeKind::MlpSaeLatent: return base + 4;
    case NodeKind::ResidSaeLatent: return base + residualOffset(residSae(saes, layer).location);
    }
    return base;
}

int finalResidualPosition(int nLayer)
{
    return kLayerStride * nLayer;
}

} // namespace cs
