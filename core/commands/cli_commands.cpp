#include "core/commands/cli_commands.h"

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

} // namespace cs
