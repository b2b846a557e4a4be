#include "core/model/prompt.h"

#include "core/util/errors.h"

namespace cs {

namespace {

std::string quoted(const std::string& s)
{
    return "'" + s + "'";
}

} // namespace

PromptTokens tokenizePrompt(const Gpt2Model& model, std::string_view text, OverlongPrompt policy)
{
    PromptTokens out;
    bool replaced = false;
    const std::string clean = sanitizeUtf8(text, &replaced);
    if (replaced)
        out.warnings.push_back("prompt: invalid UTF-8 replaced by U+FFFD");
    if (clean.empty())
        throw InputError("prompt: empty; type some text to run the model on");
    out.ids = model.tokenizer->encode(clean);
    if (out.ids.empty())
        throw InputError("prompt: no tokens");
    const int nCtx = model.config.nCtx;
    if (static_cast<int>(out.ids.size()) > nCtx) {
        const std::string count = std::to_string(out.ids.size());
        if (policy == OverlongPrompt::Refuse)
            throw InputError("prompt: " + count + " tokens, longer than the model's context of " + std::to_string(nCtx) +
                             " (n_positions)");
        out.ids.erase(out.ids.begin(), out.ids.end() - nCtx);
        out.warnings.push_back("prompt: " + count + " tokens truncated to the last " + std::to_string(nCtx) +
                               " (n_positions)");
    }
    for (int id : out.ids) {
        if (id >= model.config.vocabSize)
            throw InputError("prompt: token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                             std::to_string(model.config.vocabSize));
        out.tokens.push_back(model.tokenizer->tokenString(id));
    }
    return out;
}

int singleTokenId(const Gpt2Model& model, std::string_view text, std::string_view field)
{
    const std::string f(field);
    if (text.empty())
        throw InputError(f + ": empty; a single token is needed");
    const std::string clean = sanitizeUtf8(text);
    const std::vector<int> ids = model.tokenizer->encode(clean);
    if (ids.size() != 1) {
        std::string parts;
        for (std::size_t i = 0; i < ids.size(); ++i)
            parts += (i ? ", " : "") + quoted(model.tokenizer->tokenString(ids[i]));
        throw InputError(f + ": " + quoted(clean) + " is " + std::to_string(ids.size()) + " tokens [" + parts +
                         "]; a single token is needed");
    }
    if (ids[0] >= model.config.vocabSize)
        throw InputError(f + ": token id " + std::to_string(ids[0]) + " is outside the model's vocabulary");
    return ids[0];
}

} // namespace cs
