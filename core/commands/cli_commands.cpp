#include "core/commands/cli_commands.h"

#include "core/analysis/converters.h"
#include "core/model/forward.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"

#include <c10/core/GradMode.h>

namespace cs {

nlohmann::json infoJson(const Gpt2Model& model)
{
    const Gpt2Config& c = model.config;
    const RuntimeInfo rt = runtimeInfo();
    return {
        {"model", model.directory.string()},
        {"weights", model.weightsFile.filename().string()},
        {"n_layer", c.nLayer},
        {"n_head", c.nHead},
        {"d_model", c.dModel},
        {"d_mlp", c.dMlp},
        {"d_head", c.dHead()},
        {"n_ctx", c.nCtx},
        {"vocab_size", c.vocabSize},
        {"parameters", model.weights.parameterCount()},
        {"threads", rt.threads},
        {"blas", rt.blas},
        {"blas_library", rt.blasLibrary},
    };
}

nlohmann::json tokenizeJson(const Gpt2Model& model, std::string_view text)
{
    const std::string clean = sanitizeUtf8(text);
    const std::vector<int> ids = model.tokenizer->encode(clean);
    nlohmann::json tokens = nlohmann::json::array();
    for (int id : ids)
        tokens.push_back(model.tokenizer->tokenString(id));
    return {{"ids", ids}, {"tokens", tokens}};
}

SaeSet loadSaeFlags(const Gpt2Model& model, const SaeFlags& flags)
{
    SaeSet set;
    for (const auto& spec : flags.mlp)
        set.add(loadAndBindSae(spec, model.config, SaeRole::Mlp));
    for (const auto& spec : flags.attn)
        set.add(loadAndBindSae(spec, model.config, SaeRole::Attn));
    for (const auto& spec : flags.resid)
        set.add(loadAndBindSae(spec, model.config, SaeRole::Resid));
    return set;
}

void checkInterventionNodes(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& query)
{
    const auto check = [&](const std::string& flag, NodeKind kind, int layer, int index, const std::string& name) {
        try {
            checkNodeIndex(model, saes, kind, layer, index, name);
        } catch (const InputError& e) {
            throw InputError(flag + ": " + e.what());
        }
    };
    for (const AblationSpec& a : query.ablations)
        check("--ablate", a.kind, a.layer, a.index, a.name());
    if (query.trace) {
        check("--trace", query.trace->node.kind, query.trace->node.layer, query.trace->node.index, query.trace->node.name());
        if (const auto& d = query.trace->downstream)
            check("--downstream", d->kind, d->layer, d->index, d->name());
    }
}

namespace {

nlohmann::json topTokensJson(const TopTokens& t)
{
    auto list = [](const std::vector<TokenScore>& scores) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& s : scores)
            out.push_back({{"id", s.id}, {"token", s.token}, {"value", s.value}});
        return out;
    };
    return {{"top", list(t.top)}, {"bottom", list(t.bottom)}};
}

std::vector<float> vectorOf(const at::Tensor& t)
{
    const at::Tensor c = t.detach().to(at::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

nlohmann::json nextTokenJson(const NextToken& t)
{
    return {{"id", t.id}, {"token", t.token}, {"logit", t.logit}, {"prob", t.prob}};
}

nlohmann::json nextTokenList(const std::vector<NextToken>& list)
{
    nlohmann::json out = nlohmann::json::array();
    for (const auto& t : list)
        out.push_back(nextTokenJson(t));
    return out;
}

nlohmann::json metricsJson(const NodeMetrics& m, bool effects)
{
    nlohmann::json j = {{"activation", m.activation}, {"write_magnitude", m.writeMagnitude}};
    j["direct_effect"] = effects ? nlohmann::json(m.directEffect) : nlohmann::json(nullptr);
    j["total_effect"] = effects ? nlohmann::json(m.totalEffect) : nlohmann::json(nullptr);
    return j;
}

nlohmann::json optionalMetrics(const std::optional<NodeMetrics>& m, bool effects)
{
    return m ? metricsJson(*m, effects) : nlohmann::json(nullptr);
}

void collectWarnings(const Analysis& a, std::vector<std::string>* warnings)
{
    if (!warnings)
        return;
    warnings->insert(warnings->end(), a.left.tokens.warnings.begin(), a.left.tokens.warnings.end());
    if (a.right) {
        for (const auto& w : a.right->tokens.warnings)
            warnings->push_back("second " + w);
    }
}

// A V trace onto a downstream neuron or latent at another token than the head's query is exactly zero
// (only the query's row of the downstream gradient enters): say so rather than print zeros silently.
void warnAboutEmptyTrace(const PromptAnalysis& p, std::vector<std::string>* warnings)
{
    const auto& t = p.objective.trace;
    if (!warnings || !t || !t->downstream || t->downstream->kind == NodeKind::AttnHead)
        return;
    if (t->downstream->token != t->node.token)
        warnings->push_back("--downstream '" + t->downstream->name() + "' reads token " + std::to_string(t->downstream->token) +
                            " while the head writes at token " + std::to_string(t->node.token) + ": the value trace is 0");
}

// The single-prompt `nodes` document of one side.
nlohmann::json promptNodesJson(const Gpt2Model& model, const SaeSet& saes, const PromptAnalysis& p, int topK)
{
    const PromptRun& run = p.run;
    const bool effects = run.effects.hasObjective;
    nlohmann::json j;
    j["objective"] = effects ? nlohmann::json(run.effects.objective) : nlohmann::json(nullptr);
    j["objective_kind"] = objectiveKindName(run.effects.objectiveKind);
    j["ids"] = p.tokens.ids;
    j["tokens"] = p.tokens.tokens;
    const AnalysisInput in{model, saes, run.record};
    nlohmann::json nodes = nlohmann::json::array();
    for (const NodeMetrics& m : topNodes(in, run.effects, topK)) {
        nlohmann::json row = {{"node", m.node.name()}};
        row.update(metricsJson(m, effects));
        if (p.baseline)
            row["baseline"] = metricsJson(metricsOf({model, saes, p.baseline->record}, p.baseline->effects, m.node), effects);
        nodes.push_back(row);
    }
    j["nodes"] = nodes;
    j["logits"] = {{"token", run.next.token},
                   {"top", nextTokenList(run.next.top)},
                   {"bottom", nextTokenList(run.next.bottom)},
                   {"target", nextTokenList(run.next.targets)},
                   {"distractor", nextTokenList(run.next.distractors)}};
    nlohmann::json tokenEffectsJson = nlohmann::json::object();
    for (const auto& row : run.tokenEffects.rows)
        tokenEffectsJson[row.kind] = row.values;
    j["token_effects"] = tokenEffectsJson;
    if (p.baseline)
        j["baseline"] = {{"objective", p.baseline->effects.hasObjective ? nlohmann::json(p.baseline->effects.objective) : nlohmann::json(nullptr)}};
    return j;
}

} // namespace

nlohmann::json forwardJson(const Gpt2Model& model, const AnalysisQuery& query, const SaeFlags& saeFlags, int topK,
                           std::vector<std::string>* warnings)
{
    if (topK < 1)
        throw InputError("--top: must be at least 1");
    AnalysisQuery q;
    q.prompt = query.prompt;
    q.ablations = query.ablations;
    q.overlong = query.overlong;
    q.logitsTopK = topK;
    const SaeSet saes = loadSaeFlags(model, saeFlags);
    checkInterventionNodes(model, saes, q);
    const Analysis a = analyzePrompt(model, saes, q);
    collectWarnings(a, warnings);
    nlohmann::json out = {{"ids", a.left.tokens.ids}, {"tokens", a.left.tokens.tokens}, {"next_tokens", nextTokenList(a.left.run.next.top)}};
    out["ablations"] = a.ablations;
    if (a.left.baseline)
        out["baseline_next_tokens"] = nextTokenList(a.left.baseline->next.top);
    return out;
}

nlohmann::json nodeJson(const Gpt2Model& model, const NodeQuery& q, std::vector<std::string>* warnings)
{
    if (q.topK < 1)
        throw InputError("--top: must be at least 1");
    const NodeRef parsed = NodeRef::parse(q.node);
    if (q.analysis.second)
        throw InputError("--prompt2: only the nodes command compares two prompts");
    const SaeSet saes = loadSaeFlags(model, q.saes);
    checkInterventionNodes(model, saes, q.analysis);
    const Analysis a = analyzePrompt(model, saes, q.analysis);
    collectWarnings(a, warnings);
    warnAboutEmptyTrace(a.left, warnings);
    const PromptAnalysis& p = a.left;
    const AnalysisInput in{model, saes, p.run.record};
    const NodeRef node = checkedNode(in, parsed);

    nlohmann::json out;
    out["node"] = node.name();
    out["activation"] = nodeActivation(in, node);
    const at::Tensor write = q.perUnit ? residualWritePerUnit(in, node) : residualWrite(in, node);
    out["write"] = topTokensJson(topTokens(*model.tokenizer, tokenWrite(model, write), q.topK));
    const NodeReads reads = residualReads(in, node);
    if (node.kind == NodeKind::AttnHead) {
        out["read_q"] = topTokensJson(topTokens(*model.tokenizer, tokenRead(model, *reads.readQ), q.topK));
        out["read_k"] = topTokensJson(topTokens(*model.tokenizer, tokenRead(model, *reads.readK), q.topK));
    } else if (reads.read) {
        out["read"] = topTokensJson(topTokens(*model.tokenizer, tokenRead(model, *reads.read), q.topK));
    } else {
        out["read"] = nullptr;
    }
    out["pair_attribution"] = nullptr;
    if (node.kind == NodeKind::AttnSaeLatent) {
        if (const auto attribution = pairAttribution(in, node)) {
            nlohmann::json list = nlohmann::json::array();
            const std::vector<float> values = vectorOf(*attribution);
            for (std::size_t k = 0; k < values.size(); ++k)
                list.push_back({{"k", k}, {"token", p.tokens.tokens[k]}, {"value", values[k]}});
            out["pair_attribution"] = list;
        }
    }
    if (q.vectors) {
        out["residual_write"] = vectorOf(write);
        // §5's key for every node. A head reads at two tokens (tdb-math D1: Q-read at its query, K-read at
        // its key), so it has no single read direction: null, and its two reads under the names of its
        // token reads ("read_q"/"read_k", which §5 puts in place of "read" for heads).
        out["residual_read"] = reads.read ? nlohmann::json(vectorOf(*reads.read)) : nlohmann::json(nullptr);
        if (node.kind == NodeKind::AttnHead) {
            out["residual_read_q"] = vectorOf(*reads.readQ);
            out["residual_read_k"] = vectorOf(*reads.readK);
        }
    }
    out["ablations"] = a.ablations;
    if (p.run.effects.hasObjective) {
        const NodeMetrics m = metricsOf(in, p.run.effects, node);
        out["direct_effect"] = m.directEffect;
        out["total_effect"] = m.totalEffect;
        out["write_magnitude"] = m.writeMagnitude;
        out["objective"] = p.run.effects.objective;
        out["objective_kind"] = objectiveKindName(p.run.effects.objectiveKind);
    }
    if (p.baseline) {
        const NodeMetrics m = metricsOf({model, saes, p.baseline->record}, p.baseline->effects, node);
        nlohmann::json b = metricsJson(m, p.baseline->effects.hasObjective);
        b["objective"] = p.baseline->effects.hasObjective ? nlohmann::json(p.baseline->effects.objective) : nlohmann::json(nullptr);
        out["baseline"] = b;
    }
    return out;
}

nlohmann::json nodesJson(const Gpt2Model& model, const NodesQuery& q, std::vector<std::string>* warnings)
{
    if (q.topK < 1)
        throw InputError("--top: must be at least 1");
    if (q.analysis.objective.targets.empty() && !q.analysis.trace)
        throw InputError("missing --target (or --trace NODE): the node table ranks nodes by their effect on an objective");
    const SaeSet saes = loadSaeFlags(model, q.saes);
    checkInterventionNodes(model, saes, q.analysis);
    AnalysisQuery query = q.analysis;
    query.logitsTopK = q.topK;
    query.baselineOfBothPrompts = true; // "left" and "right" are each the single-prompt document (§5.1)
    const Analysis a = analyzePrompt(model, saes, query);
    collectWarnings(a, warnings);
    warnAboutEmptyTrace(a.left, warnings);
    if (!a.right) {
        nlohmann::json out = promptNodesJson(model, saes, a.left, q.topK);
        out["ablations"] = a.ablations;
        return out;
    }
    nlohmann::json out;
    out["left"] = promptNodesJson(model, saes, a.left, q.topK);
    out["right"] = promptNodesJson(model, saes, *a.right, q.topK);
    out["left"]["ablations"] = a.ablations;
    out["right"]["ablations"] = a.ablations;
    const bool leftEffects = a.left.run.effects.hasObjective, rightEffects = a.right->run.effects.hasObjective;
    nlohmann::json nodes = nlohmann::json::array();
    for (const NodeTableRow& row : nodeTable(model, saes, a, q.topK)) {
        nlohmann::json diff = nullptr;
        if (row.left && row.right) {
            const auto d = [](double r, double l) { return r - l; };
            diff = {{"activation", d(row.right->activation, row.left->activation)},
                    {"write_magnitude", d(row.right->writeMagnitude, row.left->writeMagnitude)},
                    {"direct_effect", d(row.right->directEffect, row.left->directEffect)},
                    {"total_effect", d(row.right->totalEffect, row.left->totalEffect)}};
        }
        nodes.push_back({{"node", row.node.name()},
                         {"left", optionalMetrics(row.left, leftEffects)},
                         {"right", optionalMetrics(row.right, rightEffects)},
                         {"diff", diff}});
    }
    out["nodes"] = nodes;
    out["ablations"] = a.ablations;
    return out;
}

} // namespace cs
