#include "core/train/bpe_trainer.h"

#include "core/tokenizer/pretokenizer.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <unordered_map>

namespace cs::train {

namespace {

std::string utf8(char32_t cp)
{
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

// GPT-2's byte order for the first 256 ids: the printable bytes first, then the rest.
std::vector<int> byteOrder()
{
    std::vector<int> order;
    for (int b = '!'; b <= '~'; ++b)
        order.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b)
        order.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b)
        order.push_back(b);
    std::vector<bool> seen(256);
    for (int b : order)
        seen[static_cast<std::size_t>(b)] = true;
    for (int b = 0; b < 256; ++b)
        if (!seen[static_cast<std::size_t>(b)])
            order.push_back(b);
    return order;
}

struct Word {
    std::vector<int> symbols;
    std::int64_t count = 0;
};

} // namespace

const std::vector<std::string>& byteLevelAlphabet()
{
    static const std::vector<std::string> alphabet = [] {
        std::vector<std::string> a(256);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            a[static_cast<std::size_t>(b)] = utf8(printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++));
        }
        return a;
    }();
    return alphabet;
}

BpeResult trainBpe(const std::string& text, const BpeOptions& options)
{
    if (options.vocabSize < 257)
        throw InputError("BPE: the vocabulary size must be at least 257 (256 bytes + <|endoftext|>), not " +
                         std::to_string(options.vocabSize));
    BpeResult result;
    const auto& alphabet = byteLevelAlphabet();
    std::vector<int> idOfByte(256);
    for (int b : byteOrder()) {
        idOfByte[static_cast<std::size_t>(b)] = static_cast<int>(result.tokens.size());
        result.tokens.push_back(alphabet[static_cast<std::size_t>(b)]);
    }

    // Unique words with their counts, in a deterministic (sorted) order.
    std::map<std::string_view, std::int64_t> counts;
    for (std::string_view piece : gpt2PreTokenize(text))
        ++counts[piece];
    std::vector<Word> words;
    words.reserve(counts.size());
    for (const auto& [piece, count] : counts) {
        Word w;
        w.count = count;
        for (unsigned char c : piece)
            w.symbols.push_back(idOfByte[c]);
        words.push_back(std::move(w));
    }

    while (static_cast<int>(result.tokens.size()) + 1 < options.vocabSize) {
        std::unordered_map<std::uint64_t, std::int64_t> pairCounts;
        for (const Word& w : words)
            for (std::size_t i = 0; i + 1 < w.symbols.size(); ++i)
                pairCounts[(static_cast<std::uint64_t>(w.symbols[i]) << 32) | static_cast<std::uint32_t>(w.symbols[i + 1])] += w.count;
        std::uint64_t best = 0;
        std::int64_t bestCount = 0;
        for (const auto& [pair, count] : pairCounts) {
            if (count < bestCount || count < options.minPairCount)
                continue;
            if (count == bestCount) {
                const auto key = [&](std::uint64_t p) {
                    return std::pair(result.tokens[p >> 32], result.tokens[p & 0xFFFFFFFFu]);
                };
                if (!(key(pair) < key(best)))
                    continue;
            }
            best = pair;
            bestCount = count;
        }
        if (bestCount == 0)
            break;
        const int left = static_cast<int>(best >> 32), right = static_cast<int>(best & 0xFFFFFFFFu);
        const int merged = static_cast<int>(result.tokens.size());
        result.merges.emplace_back(result.tokens[static_cast<std::size_t>(left)], result.tokens[static_cast<std::size_t>(right)]);
        result.tokens.push_back(result.tokens[static_cast<std::size_t>(left)] + result.tokens[static_cast<std::size_t>(right)]);
        for (Word& w : words) {
            std::vector<int> out;
            out.reserve(w.symbols.size());
            for (std::size_t i = 0; i < w.symbols.size(); ++i) {
                if (i + 1 < w.symbols.size() && w.symbols[i] == left && w.symbols[i + 1] == right) {
                    out.push_back(merged);
                    ++i;
                } else {
                    out.push_back(w.symbols[i]);
                }
            }
            w.symbols = std::move(out);
        }
    }
    result.tokens.emplace_back("<|endoftext|>");
    return result;
}

void writeBpeFiles(const BpeResult& bpe, const std::filesystem::path& dir)
{
    std::filesystem::create_directories(dir);
    nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < bpe.tokens.size(); ++i)
        vocab[bpe.tokens[i]] = static_cast<int>(i);
    writeFileAtomically(dir / "vocab.json", vocab.dump() + '\n');
    std::string merges = "#version: 0.2\n";
    for (const auto& [a, b] : bpe.merges)
        merges += a + ' ' + b + '\n';
    writeFileAtomically(dir / "merges.txt", merges);
}

} // namespace cs::train
