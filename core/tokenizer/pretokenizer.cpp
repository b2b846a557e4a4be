#include "core/tokenizer/pretokenizer.h"

#include "core/tokenizer/utf8.h"

#include <QChar>

#include <algorithm>
#include <array>
#include <string_view>

namespace cs {

namespace {

bool isWhiteSpace(char32_t c)
{
    // The Unicode White_Space property, which is what Oniguruma's \s means for UTF-8 text.
    switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

struct Range {
    char32_t first;
    char32_t last;
    CharClass cls;
};

// Letters and numbers assigned in Unicode 15.0-16.0, which the reference knows but Qt 6.4
// (Unicode 14) reports as unassigned. Only consulted for code points Qt calls unassigned, so a
// newer Qt's own tables take over where they exist.
constexpr std::array<Range, 45> kNewerLettersAndNumbers{{
    {0x1C89, 0x1C8A, CharClass::Letter},   {0xA7CB, 0xA7CD, CharClass::Letter},
    {0xA7DA, 0xA7DC, CharClass::Letter},   {0x105C0, 0x105F3, CharClass::Letter},
    {0x10D40, 0x10D49, CharClass::Number}, {0x10D4A, 0x10D65, CharClass::Letter},
    {0x10D6F, 0x10D85, CharClass::Letter}, {0x10EC2, 0x10EC4, CharClass::Letter},
    {0x1123F, 0x11240, CharClass::Letter}, {0x11380, 0x11389, CharClass::Letter},
    {0x1138B, 0x1138B, CharClass::Letter}, {0x1138E, 0x1138E, CharClass::Letter},
    {0x11390, 0x113B5, CharClass::Letter}, {0x113B7, 0x113B7, CharClass::Letter},
    {0x113D1, 0x113D1, CharClass::Letter}, {0x113D3, 0x113D3, CharClass::Letter},
    {0x116D0, 0x116E3, CharClass::Number}, {0x11BC0, 0x11BE0, CharClass::Letter},
    {0x11BF0, 0x11BF9, CharClass::Number}, {0x11F02, 0x11F02, CharClass::Letter},
    {0x11F04, 0x11F10, CharClass::Letter}, {0x11F12, 0x11F33, CharClass::Letter},
    {0x11F50, 0x11F59, CharClass::Number}, {0x1342F, 0x1342F, CharClass::Letter},
    {0x13441, 0x13446, CharClass::Letter}, {0x13460, 0x143FA, CharClass::Letter},
    {0x16100, 0x1611D, CharClass::Letter}, {0x16130, 0x16139, CharClass::Number},
    {0x16D40, 0x16D6C, CharClass::Letter}, {0x16D70, 0x16D79, CharClass::Number},
    {0x18CFF, 0x18CFF, CharClass::Letter}, {0x1B132, 0x1B132, CharClass::Letter},
    {0x1B155, 0x1B155, CharClass::Letter}, {0x1CCF0, 0x1CCF9, CharClass::Number},
    {0x1D2C0, 0x1D2D3, CharClass::Number}, {0x1DF25, 0x1DF2A, CharClass::Letter},
    {0x1E030, 0x1E06D, CharClass::Letter}, {0x1E4D0, 0x1E4EB, CharClass::Letter},
    {0x1E4F0, 0x1E4F9, CharClass::Number}, {0x1E5D0, 0x1E5ED, CharClass::Letter},
    {0x1E5F0, 0x1E5F0, CharClass::Letter}, {0x1E5F1, 0x1E5FA, CharClass::Number},
    {0x2B739, 0x2B739, CharClass::Letter}, {0x2EBF0, 0x2EE5D, CharClass::Letter},
    {0x31350, 0x323AF, CharClass::Letter},
}};

CharClass classifyUnassignedInQt(char32_t c)
{
    const auto it = std::upper_bound(kNewerLettersAndNumbers.begin(), kNewerLettersAndNumbers.end(), c,
                                     [](char32_t value, const Range& r) { return value < r.first; });
    if (it != kNewerLettersAndNumbers.begin() && c <= std::prev(it)->last)
        return std::prev(it)->cls;
    return CharClass::Other;
}

// Classes of the 128 ASCII characters, computed once: ASCII dominates real text.
const std::array<CharClass, 128>& asciiClasses()
{
    static const std::array<CharClass, 128> table = [] {
        std::array<CharClass, 128> t{};
        for (char32_t c = 0; c < 128; ++c) {
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                t[c] = CharClass::Letter;
            else if (c >= '0' && c <= '9')
                t[c] = CharClass::Number;
            else if (isWhiteSpace(c))
                t[c] = CharClass::Space;
            else
                t[c] = CharClass::Other;
        }
        return t;
    }();
    return table;
}

struct Char {
    std::size_t offset; // byte offset in the text
    CharClass cls;
};

// Index (into `chars`) one past the piece that the regex matches at chars[i].
std::size_t matchAt(std::string_view text, const std::vector<Char>& chars, std::size_t i)
{
    const std::size_t n = chars.size() - 1; // the last entry is the end sentinel
    const std::size_t offset = chars[i].offset;

    // The contractions are tried first and are ASCII, so one character per byte.
    if (text[offset] == '\'') {
        const std::string_view rest = text.substr(offset + 1);
        for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
            if (rest.starts_with(suffix))
                return i + 1 + suffix.size();
        }
    }

    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a single U+0020 may lead a run of one class.
    std::size_t start = i;
    if (text[offset] == ' ' && i + 1 < n && chars[i + 1].cls != CharClass::Space)
        start = i + 1;
    const CharClass runClass = chars[start].cls;
    std::size_t end = start;
    while (end < n && chars[end].cls == runClass)
        ++end;
    if (runClass != CharClass::Space)
        return end;

    // `\s+(?!\S)` backtracks so that the last space before a non-space is left over (to lead the
    // next word), unless that would leave the match empty; then `\s+` takes the single space.
    if (end == n || end - i == 1)
        return end;
    return end - 1;
}

} // namespace

CharClass classifyCodePoint(char32_t c)
{
    if (c < 128)
        return asciiClasses()[c];
    if (isWhiteSpace(c))
        return CharClass::Space;
    if (QChar::isLetter(c))
        return CharClass::Letter;
    if (QChar::isNumber(c))
        return CharClass::Number;
    if (QChar::category(c) == QChar::Other_NotAssigned)
        return classifyUnassignedInQt(c);
    return CharClass::Other;
}

std::vector<std::string_view> gpt2PreTokenize(std::string_view text)
{
    std::vector<Char> chars;
    chars.reserve(text.size() + 1);
    for (std::size_t pos = 0; pos < text.size();) {
        const auto byte = static_cast<unsigned char>(text[pos]);
        if (byte < 0x80) {
            chars.push_back({pos, asciiClasses()[byte]});
            ++pos;
            continue;
        }
        const utf8::Decoded d = utf8::decodeAt(text, pos);
        if (d.valid) {
            chars.push_back({pos, classifyCodePoint(d.codePoint)});
            pos += d.length;
        } else {
            // One entry per stray byte; they are all "Other", so they group like punctuation.
            for (std::size_t k = 0; k < d.length; ++k)
                chars.push_back({pos + k, CharClass::Other});
            pos += d.length;
        }
    }
    chars.push_back({text.size(), CharClass::Other});

    std::vector<std::string_view> pieces;
    const std::size_t n = chars.size() - 1;
    for (std::size_t i = 0; i < n;) {
        const std::size_t end = matchAt(text, chars, i);
        pieces.push_back(text.substr(chars[i].offset, chars[end].offset - chars[i].offset));
        i = end;
    }
    return pieces;
}

} // namespace cs
