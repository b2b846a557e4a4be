#include "core/tokenizer/gpt2_tokenizer.h"

#include "core/tokenizer/pretokenizer.h"
#include "core/tokenizer/utf8.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <unordered_map>

namespace cs {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kEndOfText = "<|endoftext|>";

// Real vocabularies stay far below this; the bound keeps a corrupt id from allocating gigabytes.
constexpr std::int64_t kMaxTokenId = (std::int64_t{1} << 22) - 1;

// Bounds for the word cache: enough for the distinct words of a long document, and words longer
// than a few dozen bytes are rare enough that caching them only costs memory.
constexpr std::size_t kCacheCapacity = 1 << 16;
constexpr std::size_t kMaxCachedWordBytes = 64;

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

// GPT-2 stores tokens as strings in which every byte is one printable character: bytes that are
// printable Latin-1 already (other than space) stand for themselves, the remaining 68 are moved to
// U+0100.. in byte order. So a leading space shows as "Ġ" and a newline as "Ċ".
struct ByteLevelAlphabet {
    std::array<char32_t, 256> codePointOfByte{};
    std::array<int, 256 + 68> byteOfCodePoint{};

    ByteLevelAlphabet()
    {
        byteOfCodePoint.fill(-1);
        char32_t nextShifted = 256;
        for (int b = 0; b < 256; ++b) {
            const bool keepsItsCodePoint = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            const char32_t cp = keepsItsCodePoint ? static_cast<char32_t>(b) : nextShifted++;
            codePointOfByte[b] = cp;
            byteOfCodePoint[cp] = b;
        }
    }
};

const ByteLevelAlphabet& byteLevel()
{
    static const ByteLevelAlphabet alphabet;
    return alphabet;
}

std::optional<std::string> byteLevelToBytes(std::string_view symbol)
{
    const ByteLevelAlphabet& alphabet = byteLevel();
    std::string bytes;
    bytes.reserve(symbol.size());
    for (std::size_t pos = 0; pos < symbol.size();) {
        const utf8::Decoded d = utf8::decodeAt(symbol, pos);
        if (!d.valid || d.codePoint >= alphabet.byteOfCodePoint.size())
            return std::nullopt;
        const int byte = alphabet.byteOfCodePoint[d.codePoint];
        if (byte < 0)
            return std::nullopt;
        bytes += static_cast<char>(byte);
        pos += d.length;
    }
    return bytes;
}

std::string bytesToByteLevel(std::string_view bytes)
{
    std::string out;
    for (char c : bytes)
        utf8::append(out, byteLevel().codePointOfByte[static_cast<unsigned char>(c)]);
    return out;
}

// A token or line quoted for an error message: short, valid UTF-8.
std::string quote(std::string_view text)
{
    constexpr std::size_t kMaxShown = 60;
    std::string shown = sanitizeUtf8(text.substr(0, kMaxShown));
    if (text.size() > kMaxShown)
        shown += "...";
    return '"' + shown + '"';
}

// Tokenizer files of real models are a few MB; the cap only stops hostile input.
std::string readTextFile(const fs::path& path) { return readRegularFile(path, kMaxDocumentBytes); }

json parseJsonFile(const fs::path& path) { return readJsonFile(path, kMaxDocumentBytes); }

// Without merge rules byte-level BPE only ever produces the 256 single-byte tokens (and the added ones,
// matched literally): a vocabulary with more is a tokenizer whose merges were lost (an empty or cut
// merges.txt, a `/dev/null` copy), which would silently tokenize every text byte by byte.
void requireMergesFor(std::size_t vocabularySize, int mergeCount, const fs::path& file, const std::string& what)
{
    if (mergeCount == 0 && vocabularySize > 257)
        throwInputError(file, what + " holds no merge rules, but the vocabulary has " + std::to_string(vocabularySize) +
                                  " tokens: without merges only the 256 single bytes are ever produced");
}

std::uint64_t pairKey(int left, int right)
{
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

} // namespace

struct Gpt2Tokenizer::Impl {
    struct Merge {
        int rank;
        int id;
    };

    std::vector<std::string> bytesOfId; // empty for ids the vocabulary skips
    std::vector<bool> assigned;
    StringMap<int> idOfBytes;
    std::array<int, 256> idOfByte{};
    std::unordered_map<std::uint64_t, Merge> merges;
    // Added tokens (<|endoftext|> and any from tokenizer.json), matched literally in the text
    // before pre-tokenizing, as the reference does.
    std::vector<std::pair<std::string, int>> addedTokens;

    mutable std::shared_mutex cacheMutex;
    mutable StringMap<std::vector<int>> cache;

    const Merge* findMerge(int left, int right) const
    {
        const auto it = merges.find(pairKey(left, right));
        return it == merges.end() ? nullptr : &it->second;
    }

    void appendWordIds(std::string_view word, std::vector<int>& out) const;
    std::vector<int> bpe(std::string_view word) const;
    const std::string& bytesOf(int id) const;

    // Loading steps; `file` is named in errors.
    void addVocab(const json& vocab, const fs::path& file, std::string_view field);
    void addMerge(std::string_view left, std::string_view right, int rank, const fs::path& file,
                  const std::string& where);
    void addAddedToken(const json& entry, const fs::path& file, const std::string& where);
    void finish();
};

void Gpt2Tokenizer::Impl::addVocab(const json& vocab, const fs::path& file, std::string_view field)
{
    const std::string prefix = field.empty() ? std::string() : std::string(field) + ": ";
    if (!vocab.is_object())
        throwInputError(file, prefix + "expected a JSON object mapping token strings to integer ids");
    if (vocab.empty())
        throwInputError(file, prefix + "the vocabulary is empty");

    std::int64_t maxId = -1;
    for (const auto& [key, value] : vocab.items()) {
        if (!value.is_number_integer())
            throwInputError(file, prefix + "token " + quote(key) + ": id must be an integer, got " + describeForMessage(value));
        const auto id = value.get<std::int64_t>();
        if (id < 0 || id > kMaxTokenId)
            throwInputError(file, prefix + "token " + quote(key) + ": id " + std::to_string(id) + " is out of range");
        maxId = std::max(maxId, id);
    }

    bytesOfId.assign(static_cast<std::size_t>(maxId + 1), std::string());
    assigned.assign(bytesOfId.size(), false);
    idOfBytes.reserve(vocab.size());
    for (const auto& [key, value] : vocab.items()) {
        const int id = value.get<int>();
        std::optional<std::string> bytes = byteLevelToBytes(key);
        if (!bytes)
            throwInputError(file, prefix + "token " + quote(key) + " is not in GPT-2's byte-level alphabet");
        if (assigned[id])
            throwInputError(file, prefix + "id " + std::to_string(id) + " is used by two tokens");
        assigned[id] = true;
        bytesOfId[id] = *bytes;
        idOfBytes.emplace(std::move(*bytes), id);
    }

    for (int b = 0; b < 256; ++b) {
        const char byte = static_cast<char>(b);
        const auto it = idOfBytes.find(std::string_view(&byte, 1));
        if (it == idOfBytes.end()) {
            const std::string symbol = bytesToByteLevel(std::string_view(&byte, 1));
            throwInputError(file, prefix + "no token for byte " + std::to_string(b) + " (" + quote(symbol) +
                                      "); a byte-level vocabulary needs all 256");
        }
        idOfByte[b] = it->second;
    }
}

void Gpt2Tokenizer::Impl::addMerge(std::string_view left, std::string_view right, int rank, const fs::path& file,
                                   const std::string& where)
{
    const auto idOfSymbol = [&](std::string_view symbol) -> std::pair<int, std::string> {
        std::optional<std::string> bytes = byteLevelToBytes(symbol);
        if (!bytes)
            throwInputError(file, where + ": symbol " + quote(symbol) + " is not in GPT-2's byte-level alphabet");
        const auto it = idOfBytes.find(*bytes);
        if (it == idOfBytes.end())
            throwInputError(file, where + ": symbol " + quote(symbol) + " is not in the vocabulary");
        return {it->second, std::move(*bytes)};
    };
    const auto [leftId, leftBytes] = idOfSymbol(left);
    const auto [rightId, rightBytes] = idOfSymbol(right);
    const auto merged = idOfBytes.find(leftBytes + rightBytes);
    if (merged == idOfBytes.end())
        throwInputError(file, where + ": the merged token " + quote(std::string(left) + std::string(right)) +
                                  " is not in the vocabulary");
    // A repeated pair takes its later rank, as in the reference (its merge table is a hash map
    // filled in file order).
    merges.insert_or_assign(pairKey(leftId, rightId), Merge{rank, merged->second});
}

void Gpt2Tokenizer::Impl::addAddedToken(const json& entry, const fs::path& file, const std::string& where)
{
    if (!entry.is_object() || !entry.contains("id") || !entry.contains("content") ||
        !entry["id"].is_number_integer() || !entry["content"].is_string())
        throwInputError(file, where + ": expected an object with integer \"id\" and string \"content\"");
    const auto id64 = entry["id"].get<std::int64_t>();
    const std::string content = entry["content"].get<std::string>();
    if (id64 < 0 || id64 > kMaxTokenId)
        throwInputError(file, where + ": id " + std::to_string(id64) + " is out of range");
    if (content.empty())
        throwInputError(file, where + ": empty \"content\"");
    const int id = static_cast<int>(id64);

    if (static_cast<std::size_t>(id) < assigned.size() && assigned[id]) {
        if (bytesOfId[id] != content)
            throwInputError(file, where + ": id " + std::to_string(id) + " is " + quote(content) +
                                      " here but " + quote(bytesOfId[id]) + " in the vocabulary");
    } else {
        if (const auto it = idOfBytes.find(content); it != idOfBytes.end())
            throwInputError(file, where + ": " + quote(content) + " already has id " + std::to_string(it->second));
        if (static_cast<std::size_t>(id) >= bytesOfId.size()) {
            bytesOfId.resize(static_cast<std::size_t>(id) + 1);
            assigned.resize(bytesOfId.size(), false);
        }
        assigned[id] = true;
        bytesOfId[id] = content;
        idOfBytes.emplace(content, id);
    }
    addedTokens.emplace_back(content, id);
}

void Gpt2Tokenizer::Impl::finish()
{
    // GPT-2 files never list <|endoftext|> as special outside tokenizer.json, yet the reference
    // treats it as one; doing the same keeps vocab.json + merges.txt and tokenizer.json in step.
    if (const auto it = idOfBytes.find(kEndOfText); it != idOfBytes.end()) {
        const bool listed = std::any_of(addedTokens.begin(), addedTokens.end(),
                                        [&](const auto& token) { return token.first == kEndOfText; });
        if (!listed)
            addedTokens.emplace_back(std::string(kEndOfText), it->second);
    }
}

std::vector<int> Gpt2Tokenizer::Impl::bpe(std::string_view word) const
{
    // Symbols form a linked list over the word's bytes; a merge folds the right symbol into the
    // left one. Pending merges are taken lowest rank first, leftmost first among equal ranks, which
    // is the reference's order; entries made stale by an earlier merge are skipped when popped.
    struct Symbol {
        int id;
        int prev;
        int next;
    };
    const int n = static_cast<int>(word.size());
    std::vector<Symbol> symbols(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        symbols[i] = {idOfByte[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

    struct Candidate {
        int rank;
        int pos;
        int mergedId;
    };
    const auto comesLater = [](const Candidate& a, const Candidate& b) {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(comesLater)> queue(comesLater);
    const auto consider = [&](int left) {
        const int right = symbols[left].next;
        if (right < 0)
            return;
        if (const Merge* m = findMerge(symbols[left].id, symbols[right].id))
            queue.push({m->rank, left, m->id});
    };
    for (int i = 0; i + 1 < n; ++i)
        consider(i);

    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        Symbol& left = symbols[c.pos];
        if (left.id < 0 || left.next < 0)
            continue;
        const Merge* current = findMerge(left.id, symbols[left.next].id);
        if (!current || current->id != c.mergedId)
            continue;
        const int right = left.next;
        left.id = c.mergedId;
        left.next = symbols[right].next;
        if (left.next >= 0)
            symbols[left.next].prev = c.pos;
        symbols[right].id = -1;
        if (left.prev >= 0)
            consider(left.prev);
        consider(c.pos);
    }

    std::vector<int> ids;
    for (int i = 0; i >= 0; i = symbols[i].next)
        ids.push_back(symbols[i].id);
    return ids;
}

void Gpt2Tokenizer::Impl::appendWordIds(std::string_view word, std::vector<int>& out) const
{
    if (word.size() == 1) {
        out.push_back(idOfByte[static_cast<unsigned char>(word[0])]);
        return;
    }
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
        std::shared_lock lock(cacheMutex);
        if (const auto it = cache.find(word); it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int> ids = bpe(word);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
        std::unique_lock lock(cacheMutex);
        // Starting over when full keeps the bound without bookkeeping per lookup; the words of the
        // text at hand come back within a few hundred lookups.
        if (cache.size() >= kCacheCapacity)
            cache.clear();
        cache.emplace(std::string(word), std::move(ids));
    }
}

const std::string& Gpt2Tokenizer::Impl::bytesOf(int id) const
{
    if (id < 0 || static_cast<std::size_t>(id) >= bytesOfId.size() || !assigned[id])
        throw InputError("token id " + std::to_string(id) + ": not in the vocabulary (" +
                         std::to_string(bytesOfId.size()) + " ids)");
    return bytesOfId[id];
}

Gpt2Tokenizer::Gpt2Tokenizer(std::shared_ptr<const Impl> impl)
    : m_impl(std::move(impl))
{
}

Gpt2Tokenizer Gpt2Tokenizer::fromDirectory(const fs::path& dir)
{
    std::error_code ec;
    if (!fs::exists(dir, ec))
        throwInputError(dir, "tokenizer directory not found");
    if (!fs::is_directory(dir, ec))
        throwInputError(dir, "expected a directory with vocab.json and merges.txt, or tokenizer.json");

    const fs::path vocab = dir / "vocab.json";
    const fs::path merges = dir / "merges.txt";
    const fs::path tokenizerJson = dir / "tokenizer.json";
    const bool hasVocab = fs::exists(vocab, ec);
    const bool hasMerges = fs::exists(merges, ec);
    if (hasVocab && hasMerges)
        return fromFiles(vocab, merges);
    if (fs::exists(tokenizerJson, ec))
        return fromTokenizerJson(tokenizerJson);
    if (hasVocab)
        throwInputError(merges, "file not found (needed with vocab.json; there is no tokenizer.json either)");
    if (hasMerges)
        throwInputError(vocab, "file not found (needed with merges.txt; there is no tokenizer.json either)");
    throwInputError(dir, "no tokenizer files: expected vocab.json and merges.txt, or tokenizer.json");
}

Gpt2Tokenizer Gpt2Tokenizer::fromFiles(const fs::path& vocabJson, const fs::path& mergesTxt)
{
    auto impl = std::make_shared<Impl>();
    impl->addVocab(parseJsonFile(vocabJson), vocabJson, {});

    const std::string merges = readTextFile(mergesTxt);
    int rank = 0;
    int lineNumber = 0;
    for (std::size_t start = 0; start < merges.size();) {
        std::size_t end = merges.find('\n', start);
        if (end == std::string::npos)
            end = merges.size();
        std::string_view line(merges.data() + start, end - start);
        start = end + 1;
        ++lineNumber;
        if (line.ends_with('\r'))
            line.remove_suffix(1);
        if (line.empty() || line.starts_with("#version"))
            continue;
        const std::size_t space = line.find(' ');
        if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
            line.find(' ', space + 1) != std::string_view::npos)
            throwInputError(mergesTxt, "line " + std::to_string(lineNumber) +
                                           ": expected two symbols separated by one space, got " + quote(line));
        impl->addMerge(line.substr(0, space), line.substr(space + 1), rank++, mergesTxt,
                       "line " + std::to_string(lineNumber));
    }
    requireMergesFor(impl->idOfBytes.size(), rank, mergesTxt, merges.empty() ? "the file is empty: it" : "the file");

    impl->finish();
    return Gpt2Tokenizer(std::move(impl));
}

Gpt2Tokenizer Gpt2Tokenizer::fromTokenizerJson(const fs::path& path)
{
    const json doc = parseJsonFile(path);
    if (!doc.is_object())
        throwInputError(path, "expected a JSON object");
    const auto model = doc.find("model");
    if (model == doc.end() || !model->is_object())
        throwInputError(path, "missing the \"model\" object");
    if (const auto type = model->find("type"); type != model->end() && *type != "BPE")
        throwInputError(path, "model.type is " + describeForMessage(*type) + "; only BPE tokenizers are supported");
    const auto vocab = model->find("vocab");
    if (vocab == model->end())
        throwInputError(path, "missing model.vocab");
    const auto merges = model->find("merges");
    if (merges == model->end() || !merges->is_array())
        throwInputError(path, "model.merges: expected an array");

    auto impl = std::make_shared<Impl>();
    impl->addVocab(*vocab, path, "model.vocab");

    int rank = 0;
    for (const json& entry : *merges) {
        const std::string where = "model.merges[" + std::to_string(rank) + "]";
        if (entry.is_string()) {
            // Older files write a merge as one "left right" string.
            const auto& text = entry.get_ref<const std::string&>();
            const std::size_t space = text.find(' ');
            if (space == std::string::npos || space == 0 || space + 1 == text.size() ||
                text.find(' ', space + 1) != std::string::npos)
                throwInputError(path, where + ": expected \"left right\", got " + quote(text));
            impl->addMerge(std::string_view(text).substr(0, space), std::string_view(text).substr(space + 1), rank,
                           path, where);
        } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
            impl->addMerge(entry[0].get_ref<const std::string&>(), entry[1].get_ref<const std::string&>(), rank,
                           path, where);
        } else {
            throwInputError(path, where + ": expected \"left right\" or [\"left\", \"right\"], got " +
                                      describeForMessage(entry));
        }
        ++rank;
    }
    requireMergesFor(impl->idOfBytes.size(), rank, path, "model.merges");

    if (const auto added = doc.find("added_tokens"); added != doc.end() && !added->is_null()) {
        if (!added->is_array())
            throwInputError(path, "added_tokens: expected an array");
        for (std::size_t i = 0; i < added->size(); ++i)
            impl->addAddedToken((*added)[i], path, "added_tokens[" + std::to_string(i) + "]");
    }

    impl->finish();
    return Gpt2Tokenizer(std::move(impl));
}

std::vector<int> Gpt2Tokenizer::encode(std::string_view text) const
{
    std::vector<int> ids;
    ids.reserve(text.size() / 3 + 1);
    const auto encodeOrdinary = [&](std::string_view part) {
        for (std::string_view word : gpt2PreTokenize(part))
            m_impl->appendWordIds(word, ids);
    };

    std::size_t pos = 0;
    while (pos < text.size()) {
        // The leftmost added token, the longest if several start there.
        std::size_t found = std::string_view::npos;
        const std::pair<std::string, int>* match = nullptr;
        for (const auto& token : m_impl->addedTokens) {
            const std::size_t at = text.find(token.first, pos);
            if (at != std::string_view::npos &&
                (at < found || (at == found && token.first.size() > match->first.size()))) {
                found = at;
                match = &token;
            }
        }
        if (!match) {
            encodeOrdinary(text.substr(pos));
            break;
        }
        encodeOrdinary(text.substr(pos, found - pos));
        ids.push_back(match->second);
        pos = found + match->first.size();
    }
    return ids;
}

std::string Gpt2Tokenizer::decode(const std::vector<int>& ids) const
{
    std::string bytes;
    for (int id : ids)
        bytes += m_impl->bytesOf(id);
    return sanitizeUtf8(bytes);
}

std::string Gpt2Tokenizer::tokenBytes(int id) const
{
    return m_impl->bytesOf(id);
}

std::string Gpt2Tokenizer::tokenString(int id) const
{
    return sanitizeUtf8(m_impl->bytesOf(id));
}

int Gpt2Tokenizer::vocabSize() const
{
    return static_cast<int>(m_impl->bytesOfId.size());
}

bool Gpt2Tokenizer::hasId(int id) const
{
    return id >= 0 && static_cast<std::size_t>(id) < m_impl->assigned.size() && m_impl->assigned[id];
}

std::optional<int> Gpt2Tokenizer::endOfTextId() const
{
    return idOfToken(kEndOfText);
}

std::optional<int> Gpt2Tokenizer::idOfToken(std::string_view bytes) const
{
    const auto it = m_impl->idOfBytes.find(bytes);
    if (it == m_impl->idOfBytes.end())
        return std::nullopt;
    return it->second;
}

} // namespace cs
