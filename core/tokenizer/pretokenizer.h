#pragma once
// GPT-2's pre-tokenizer: splits text into the "words" that BPE then encodes independently.
//
// It reproduces the regex
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as Hugging Face `tokenizers` (Oniguruma) evaluates it, written out by hand rather than run on a
// regex engine, because engines differ in the details: the reference's \s is exactly the Unicode
// White_Space property (U+0085, NBSP and U+2028 are spaces; U+200B, U+180E, U+FEFF and
// U+001C..U+001F are not), while QRegularExpression's \s also matches U+180E, and its letter and
// number tables are only as new as the PCRE2 build.

#include <cstdint>
#include <string_view>
#include <vector>

namespace cs {

enum class CharClass : std::uint8_t { Letter, Number, Space, Other };

// \p{L}, \p{N}, \s (White_Space) or none of them, at the Unicode version of the reference (16.0).
CharClass classifyCodePoint(char32_t codePoint);

// The pieces of `utf8Text`, in order; they concatenate to the input. Bytes that are not valid
// UTF-8 count as "Other" characters, so they stay in the output unchanged.
std::vector<std::string_view> gpt2PreTokenize(std::string_view utf8Text);

} // namespace cs
