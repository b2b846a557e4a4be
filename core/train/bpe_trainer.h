#pragma once
// A byte-level BPE trainer that writes GPT-2's tokenizer files: vocab.json (byte-level unicode
// strings → ids; the 256 byte tokens, then one token per merge, then <|endoftext|> last) and
// merges.txt ("#version: 0.2" header, one "a b" pair per line in merge order). Gpt2Tokenizer loads
// the result. Text is cut into words by GPT-2's pre-tokenizer pattern; merges never cross words.

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace cs::train {

struct BpeOptions {
    int vocabSize = 4096;     // upper bound, <|endoftext|> included; training stops earlier when
    int minPairCount = 2;     // no pair occurs at least this often
};

struct BpeResult {
    std::vector<std::string> tokens;                           // id → byte-level unicode string
    std::vector<std::pair<std::string, std::string>> merges;   // in rank order
};

// Deterministic: ties between equally frequent pairs go to the lexicographically smallest pair.
BpeResult trainBpe(const std::string& text, const BpeOptions& options);

// Writes vocab.json and merges.txt into `dir` (created if missing).
void writeBpeFiles(const BpeResult& bpe, const std::filesystem::path& dir);

// GPT-2's reversible byte → printable unicode mapping, as UTF-8 strings, indexed by byte.
const std::vector<std::string>& byteLevelAlphabet();

} // namespace cs::train
