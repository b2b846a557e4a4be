#pragma once
// A corpus for dataset examples (issue 14), read and tokenized exactly as the Examples tab promises:
//   - a .txt file: one document per non-empty line (a trailing "\r" is dropped);
//   - a folder: every *.txt file directly inside it is one document, in byte order of the file names;
//   - a .jsonl file: one JSON object per non-empty line, its "text" string is the document.
// Each document is tokenized on its own and prefixed with <|endoftext|>; the documents are joined in
// order into one token stream; the stream is cut into consecutive, non-overlapping windows of n_ctx
// tokens (the last, shorter window is kept); each window is one forward pass. A "position" is an index
// into that stream.
//
// Bad input is refused before anything is indexed, with one line naming the file: an empty corpus, a
// binary file (a NUL byte), invalid UTF-8 (the byte offset and line), a .jsonl line without "text".

#include "core/tokenizer/gpt2_tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cs {

struct Corpus {
    std::filesystem::path path;
    std::vector<int> tokens;               // the token stream
    std::vector<std::int64_t> docStarts;   // stream index of each document's <|endoftext|>
    std::string contentHash;               // SHA-256 (hex) of the corpus bytes (and file names, for a folder)

    std::int64_t tokenCount() const { return static_cast<std::int64_t>(tokens.size()); }
    // The document that holds stream position `position` (0-based).
    int documentAt(std::int64_t position) const;
};

// Reads and tokenizes `path`. `maxTokens` keeps only the first N tokens of the stream (documents
// that start past it are dropped). InputError for bad input (see above) or a tokenizer without
// <|endoftext|>.
Corpus readCorpus(const std::filesystem::path& path, const Gpt2Tokenizer& tokenizer,
                  std::optional<std::int64_t> maxTokens = std::nullopt);

// Just the SHA-256 of what readCorpus would read (the same bytes, the same order), without tokenizing:
// enough to tell whether a saved index still matches its corpus.
std::string corpusContentHash(const std::filesystem::path& path);

// The window cut of a stream of `tokenCount` tokens into windows of `nCtx`.
struct WindowSpan {
    std::int64_t start = 0;
    int length = 0;
};
std::int64_t windowCount(std::int64_t tokenCount, int nCtx);
WindowSpan windowAt(std::int64_t window, std::int64_t tokenCount, int nCtx);

} // namespace cs
