#include "core/examples/corpus.h"

#include "core/examples/content_hash.h"
#include "core/tokenizer/utf8.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <nlohmann/json.hpp>

#include <QFile>

#include <algorithm>
#include <cstring>

namespace cs {

namespace {

// Corpora are read whole; past this a user most likely picked the wrong file.
constexpr std::int64_t kMaxCorpusBytes = std::int64_t(4) << 30;

enum class Layout { Lines, JsonLines, Folder };

Layout layoutOf(const std::filesystem::path& path)
{
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        return Layout::Folder;
    if (!std::filesystem::exists(path, ec))
        throwInputError(path, "no such file or folder");
    return path.extension() == ".jsonl" ? Layout::JsonLines : Layout::Lines;
}

std::string readWhole(const std::filesystem::path& file)
{
    return readRegularFile(file, kMaxCorpusBytes);
}

// Text only: a NUL byte means a binary file; invalid UTF-8 is refused with where it is (replacing it
// silently would index text the user never wrote).
void checkText(const std::filesystem::path& file, const std::string& bytes)
{
    if (const void* nul = std::memchr(bytes.data(), 0, bytes.size())) {
        const auto offset = static_cast<const char*>(nul) - bytes.data();
        throwInputError(file, "is not a text file (a NUL byte at byte offset " + std::to_string(offset) + ")");
    }
    std::size_t line = 1;
    for (std::size_t pos = 0; pos < bytes.size();) {
        const unsigned char c = static_cast<unsigned char>(bytes[pos]);
        if (c < 0x80) {
            line += c == '\n';
            ++pos;
            continue;
        }
        const utf8::Decoded d = utf8::decodeAt(bytes, pos);
        if (!d.valid)
            throwInputError(file, "invalid UTF-8 at byte offset " + std::to_string(pos) + " (line " + std::to_string(line) +
                                      "); save the corpus as UTF-8");
        pos += d.length;
    }
}

struct Document {
    std::string_view text;
};

std::vector<std::filesystem::path> folderFiles(const std::filesystem::path& dir)
{
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file() && it->path().extension() == ".txt")
            files.push_back(it->path());
    }
    if (ec)
        throwInputError(dir, "cannot be listed (" + ec.message() + ")");
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.filename().string() < b.filename().string(); });
    if (files.empty())
        throwInputError(dir, "holds no .txt file (a corpus folder has one document per .txt file)");
    return files;
}

// Calls `each(documentText)` for every document, in order; returns the corpus hash. Each file is
// checked whole before any of its documents is handed on.
template <typename Each>
std::string forEachDocument(const std::filesystem::path& path, Each&& each)
{
    ContentHasher hash;
    const Layout layout = layoutOf(path);
    const auto splitLines = [](const std::string& bytes, auto&& onLine) {
        std::size_t begin = 0, lineNo = 1;
        while (begin < bytes.size()) {
            std::size_t end = bytes.find('\n', begin);
            if (end == std::string::npos)
                end = bytes.size();
            std::size_t stop = end;
            if (stop > begin && bytes[stop - 1] == '\r')
                --stop;
            if (stop > begin)
                onLine(std::string_view(bytes).substr(begin, stop - begin), lineNo);
            begin = end + 1;
            ++lineNo;
        }
    };
    if (layout == Layout::Folder) {
        hash.add(std::string("folder"));
        for (const auto& file : folderFiles(path)) {
            const std::string bytes = readWhole(file);
            hash.add(file.filename().string());
            hash.add(bytes);
            checkText(file, bytes);
            if (!bytes.empty())
                each(std::string_view(bytes));
        }
        return hash.hex();
    }
    const std::string bytes = readWhole(path);
    hash.add(std::string(layout == Layout::JsonLines ? "jsonl" : "lines"));
    hash.add(bytes);
    checkText(path, bytes);
    if (layout == Layout::Lines) {
        splitLines(bytes, [&](std::string_view line, std::size_t) { each(line); });
        return hash.hex();
    }
    splitLines(bytes, [&](std::string_view line, std::size_t lineNo) {
        const nlohmann::json doc = parseJsonText(line, path, kMaxJsonDepth, lineNo);
        if (!doc.is_object() || !doc.contains("text") || !doc["text"].is_string())
            throwInputError(path, "line " + std::to_string(lineNo) + " has no \"text\" string field");
        const std::string text = doc["text"].get<std::string>();
        if (!text.empty())
            each(std::string_view(text));
    });
    return hash.hex();
}

} // namespace

int Corpus::documentAt(std::int64_t position) const
{
    const auto it = std::upper_bound(docStarts.begin(), docStarts.end(), position);
    return static_cast<int>(std::max<std::ptrdiff_t>(0, (it - docStarts.begin()) - 1));
}

Corpus readCorpus(const std::filesystem::path& path, const Gpt2Tokenizer& tokenizer, std::optional<std::int64_t> maxTokens)
{
    const auto eot = tokenizer.endOfTextId();
    if (!eot)
        throw InputError("the model's tokenizer has no <|endoftext|> token, which separates corpus documents");
    if (maxTokens && *maxTokens < 1)
        throw InputError("--tokens: must be at least 1");
    Corpus c;
    c.path = path;
    bool full = false;
    c.contentHash = forEachDocument(path, [&](std::string_view text) {
        if (full)
            return; // the rest is still read, so that it is checked and hashed like the part indexed
        const std::vector<int> ids = tokenizer.encode(text);
        c.docStarts.push_back(c.tokenCount());
        c.tokens.push_back(*eot);
        c.tokens.insert(c.tokens.end(), ids.begin(), ids.end());
        if (maxTokens && c.tokenCount() >= *maxTokens) {
            c.tokens.resize(static_cast<std::size_t>(*maxTokens));
            full = true;
        }
    });
    if (c.tokens.empty())
        throwInputError(path, "the corpus is empty (no document with text)");
    return c;
}

std::string corpusContentHash(const std::filesystem::path& path)
{
    return forEachDocument(path, [](std::string_view) {});
}

std::int64_t windowCount(std::int64_t tokenCount, int nCtx)
{
    return tokenCount <= 0 ? 0 : (tokenCount + nCtx - 1) / nCtx;
}

WindowSpan windowAt(std::int64_t window, std::int64_t tokenCount, int nCtx)
{
    WindowSpan w;
    w.start = window * nCtx;
    w.length = static_cast<int>(std::min<std::int64_t>(nCtx, tokenCount - w.start));
    return w;
}

} // namespace cs
