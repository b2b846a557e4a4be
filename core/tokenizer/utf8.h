#pragma once
// UTF-8 decoding shared by the tokenizer's pre-tokenizer, vocabulary loader and sanitizeUtf8.
// Ill-formed input is reported per "maximal subpart" (Unicode ch. 3, also what Python's and Rust's
// lossy decoders do), so one U+FFFD replaces each broken sequence exactly as the reference does.

#include <cstddef>
#include <string>
#include <string_view>

namespace cs::utf8 {

struct Decoded {
    char32_t codePoint; // U+FFFD when !valid
    std::size_t length; // bytes consumed, >= 1
    bool valid;
};

// Decodes the sequence starting at text[pos] (pos < text.size()).
Decoded decodeAt(std::string_view text, std::size_t pos);

void append(std::string& out, char32_t codePoint);

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

} // namespace cs::utf8
