#include "core/commands/cli_commands.h"

#include "core/analysis/converters.h"
#include "core/analysis/effects.h"
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

nlohmann::json forwardJson(const Gpt2Model& model, std::string_view prompt, int topK, OverlongPrompt policy,
                           std::vector<std::string>* warnings)
{
    if (topK < 1)
        throw InputError("--top: must be at least 1");
    const PromptTokens p = tokenizePrompt(model, prompt, policy);
    if (warnings)
        warnings->insert(warnings->end(), p.warnings.begin(), p.warnings.end());
    const ActivationRecord rec = runForward(model, p.ids);
    const at::Tensor last = rec.logits[rec.tokenCount() - 1];
    const at::Tensor probs = at::softmax(last.to(at::kDouble), 0);
    const auto k = std::min<std::int64_t>(topK, last.size(0));
    const auto [values, indices] = last.topk(k);
    nlohmann::json next = nlohmann::json::array();
    for (std::int64_t i = 0; i < k; ++i) {
        const int id = static_cast<int>(indices[i].item<std::int64_t>());
        next.push_back({{"id", id},
                        {"token", model.tokenizer->tokenString(id)},
                        {"logit", values[i].item<float>()},
                        {"prob", probs[id].item<double>()}});
    }
    return {{"ids", p.ids}, {"tokens", p.tokens}, {"next_tokens", next}};
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

std::optional<Objective> objectiveFor(const Gpt2Model& model, const std::optional<std::string>& target,
                                      const std::optional<std::string>& distractor)
{
    if (!target) {
        if (distractor)
            throw InputError("--distractor: needs a --target");
        return std::nullopt;
    }
    Objective o;
    o.target = singleTokenId(model, *target, "target");
    if (distractor)
        o.distractor = singleTokenId(model, *distractor, "distractor");
    return o;
}

} // namespace

nlohmann::json nodeJson(const Gpt2Model& model, const NodeQuery& q, std::vector<std::string>* warnings)
{
    if (q.topK < 1)
        throw InputError("--top: must be at least 1");
    const NodeRef parsed = NodeRef::parse(q.node);
    const SaeSet saes = loadSaeFlags(model, q.saes);
    const std::optional<Objective> objective = objectiveFor(model, q.target, q.distractor);
    const PromptTokens p = tokenizePrompt(model, q.prompt, q.overlong);
    if (warnings)
        warnings->insert(warnings->end(), p.warnings.begin(), p.warnings.end());
    ForwardOptions fo;
    fo.saes = &saes;
    fo.withGrad = objective.has_value();
    const ActivationRecord rec = runForward(model, p.ids, fo);
    const AnalysisInput in{model, saes, rec};
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
                list.push_back({{"k", k}, {"token", p.tokens[k]}, {"value", values[k]}});
            out["pair_attribution"] = list;
        }
    }
    if (q.vectors) {
        out["residual_write"] = vectorOf(write);
        if (node.kind == NodeKind::AttnHead) {
            out["residual_read_q"] = vectorOf(*reads.readQ);
            out["residual_read_k"] = vectorOf(*reads.readK);
        } else {
            out["residual_read"] = reads.read ? nlohmann::json(vectorOf(*reads.read)) : nlohmann::json(nullptr);
        }
    }
    if (objective) {
        const Effects effects = computeEffects(in, *objective);
        const NodeMetrics m = metricsOf(in, effects, node);
        out["direct_effect"] = m.directEffect;
        out["total_effect"] = m.totalEffect;
        out["write_magnitude"] = m.writeMagnitude;
        out["objective"] = effects.objective;
    }
    return out;
}

nlohmann::json nodesJson(const Gpt2Model& model, const std::string& prompt, const std::string& target,
                         const std::optional<std::string>& distractor, const SaeFlags& saeFlags, int topK,
                         OverlongPrompt overlong, std::vector<std::string>* warnings)
{
    if (topK < 1)
        throw InputError("--top: must be at least 1");
    const SaeSet saes = loadSaeFlags(model, saeFlags);
    const Objective objective = *objectiveFor(model, target, distractor);
    const PromptTokens p = tokenizePrompt(model, prompt, overlong);
    if (warnings)
        warnings->insert(warnings->end(), p.warnings.begin(), p.warnings.end());
    ForwardOptions fo;
    fo.saes = &saes;
    fo.withGrad = true;
    const ActivationRecord rec = runForward(model, p.ids, fo);
    const AnalysisInput in{model, saes, rec};
    const Effects effects = computeEffects(in, objective);
    nlohmann::json nodes = nlohmann::json::array();
    for (const NodeMetrics& m : topNodes(in, effects, topK)) {
        nodes.push_back({{"node", m.node.name()},
                         {"activation", m.activation},
                         {"write_magnitude", m.writeMagnitude},
                         {"direct_effect", m.directEffect},
                         {"total_effect", m.totalEffect}});
    }
    return {{"objective", effects.objective}, {"ids", p.ids}, {"tokens", p.tokens}, {"nodes", nodes}};
}

} // namespace cs
