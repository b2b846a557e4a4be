#pragma once
// GPT-2's byte-level BPE tokenizer, matching Hugging Face `tokenizers` for GPT-2 id for id:
// added tokens such as <|endoftext|> are split out of the text first, the rest is cut into words by
// GPT-2's pre-tokenizer regex (no prefix space) and each word's bytes are merged by BPE rank.
//
// A tokenizer is immutable once loaded; copies share the tables. All const members may be called
// from several threads at once (the word cache behind encode() is locked internally).
// Loading errors are cs::InputError with a one-line message naming the file.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cs {

class Gpt2Tokenizer {
public:
    // vocab.json + merges.txt in `dir`; where either is absent, tokenizer.json.
    static Gpt2Tokenizer fromDirectory(const std::filesystem::path& dir);
    static Gpt2Tokenizer fromFiles(const std::filesystem::path& vocabJson, const std::filesystem::path& mergesTxt);
    // A Hugging Face tokenizer.json with a BPE model: model.vocab, model.merges (as "a b" strings or
    // ["a","b"] pairs) and optional added_tokens.
    static Gpt2Tokenizer fromTokenizerJson(const std::filesystem::path& tokenizerJson);

    // Any bytes are accepted: invalid UTF-8 is encoded byte for byte, so decode() gives it back
    // (as U+FFFD, since decode() returns valid UTF-8).
    std::vector<int> encode(std::string_view utf8Text) const;
    // The tokens' bytes joined, with invalid UTF-8 replaced by U+FFFD. Throws InputError for an id
    // that is not in the vocabulary.
    std::string decode(const std::vector<int>& ids) const;

    // The raw bytes of one token (possibly a fragment of a UTF-8 character). Throws InputError for
    // an unknown id.
    std::string tokenBytes(int id) const;
    // One token for display: its bytes with invalid UTF-8 replaced by U+FFFD, leading spaces kept.
    std::string tokenString(int id) const;

    int vocabSize() const;           // number of ids: the largest id + 1
    bool hasId(int id) const;        // whether `id` names a token (the vocabulary may have gaps)
    std::optional<int> endOfTextId() const;
    std::optional<int> idOfToken(std::string_view bytes) const;

private:
    struct Impl;
    explicit Gpt2Tokenizer(std::shared_ptr<const Impl> impl);

    std::shared_ptr<const Impl> m_impl;
};

// Returns valid UTF-8: each invalid sequence replaced by U+FFFD; *replaced set when anything changed.
std::string sanitizeUtf8(std::string_view text, bool* replaced = nullptr);

} // namespace cs
