#include "core/tokenizer/utf8.h"

#include "core/tokenizer/gpt2_tokenizer.h"

#include <cstdint>

namespace cs::utf8 {

Decoded decodeAt(std::string_view text, std::size_t pos)
{
    const auto byteAt = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
    const std::uint8_t lead = byteAt(pos);
    if (lead < 0x80)
        return {lead, 1, true};

    // The tight bounds on the first continuation byte reject overlong forms, surrogates and
    // code points above U+10FFFF as soon as they can be recognised.
    std::size_t continuations = 0;
    char32_t codePoint = 0;
    std::uint8_t low = 0x80;
    std::uint8_t high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        continuations = 1;
        codePoint = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        continuations = 2;
        codePoint = lead & 0x0F;
        if (lead == 0xE0)
            low = 0xA0;
        else if (lead == 0xED)
            high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        continuations = 3;
        codePoint = lead & 0x07;
        if (lead == 0xF0)
            low = 0x90;
        else if (lead == 0xF4)
            high = 0x8F;
    } else {
        return {0xFFFD, 1, false};
    }

    std::size_t length = 1;
    for (std::size_t k = 0; k < continuations; ++k) {
        if (pos + length >= text.size())
            return {0xFFFD, length, false};
        const std::uint8_t next = byteAt(pos + length);
        if (next < low || next > high)
            return {0xFFFD, length, false};
        codePoint = (codePoint << 6) | (next & 0x3F);
        ++length;
        low = 0x80;
        high = 0xBF;
    }
    return {codePoint, length, true};
}

void append(std::string& out, char32_t codePoint)
{
    if (codePoint < 0x80) {
        out += static_cast<char>(codePoint);
    } else if (codePoint < 0x800) {
        out += static_cast<char>(0xC0 | (codePoint >> 6));
        out += static_cast<char>(0x80 | (codePoint & 0x3F));
    } else if (codePoint < 0x10000) {
        out += static_cast<char>(0xE0 | (codePoint >> 12));
        out += static_cast<char>(0x80 | ((codePoint >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (codePoint & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (codePoint >> 18));
        out += static_cast<char>(0x80 | ((codePoint >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((codePoint >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (codePoint & 0x3F));
    }
}

} // namespace cs::utf8

namespace cs {

std::string sanitizeUtf8(std::string_view text, bool* replaced)
{
    std::string out;
    out.reserve(text.size());
    bool changed = false;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const utf8::Decoded d = utf8::decodeAt(text, pos);
        if (d.valid) {
            out.append(text.substr(pos, d.length));
        } else {
            out.append(utf8::kReplacementCharacter);
            changed = true;
        }
        pos += d.length;
    }
    if (replaced)
        *replaced = changed;
    return out;
}

} // namespace cs
