#pragma once
// Turning user text into model input, with the checks the product promises (product.md §7):
// an empty prompt is refused, a prompt longer than the context is refused or truncated (the user
// chooses), invalid UTF-8 is replaced with a warning, and <|endoftext|> is the special token.

#include "core/model/gpt2_model.h"

#include <string>
#include <string_view>
#include <vector>

namespace cs {

enum class OverlongPrompt {
    Refuse,   // InputError with the token count
    KeepLast, // keep the last n_ctx tokens (what the next-token prediction depends on) and warn
};

struct PromptTokens {
    std::vector<int> ids;
    std::vector<std::string> tokens;    // display strings, leading spaces kept
    std::vector<std::string> warnings;  // one line each
};

PromptTokens tokenizePrompt(const Gpt2Model& model, std::string_view text, OverlongPrompt policy = OverlongPrompt::Refuse);

// The id of a text that must be exactly one token (a target or distractor). `field` names the
// input in the error, which shows the tokenization when the text is several tokens.
int singleTokenId(const Gpt2Model& model, std::string_view text, std::string_view field);

} // namespace cs
