#include "core/examples/example_index.h"

#include "core/examples/content_hash.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <omp.h>

#include <QCryptographicHash>
#include <QStandardPaths>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <limits>
#include <numeric>

namespace cs {

namespace {

// ---- File layout -------------------------------------------------------------------------------
//   "CSEXIDX1" | u32 format version | u32 header length | header JSON | SHA-256 of the header JSON |
//   zero padding to 8 bytes | sections: tokens (i32), document starts (i64), maxima (f32 per node),
//   block hashes (32-byte SHA-256 per node), node blocks (fixed size per node).
// Section offsets in the header are relative to the end of the padding; each small section's
// SHA-256 is in the header, each node block's in the hashes section (checked when the block is read).
// The file is written whole to a temporary file and renamed (QSaveFile), so a reader never sees a half
// written index; a partial index (windows_done < windows) is a checkpoint that a later run resumes.
constexpr char kMagic[8] = {'C', 'S', 'E', 'X', 'I', 'D', 'X', '1'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::uint32_t kMaxHeaderBytes = 16u << 20;

struct NodeHeader {
    std::uint32_t topCount = 0;
    std::uint32_t sampleCount = 0;
    std::int64_t activeWindows = 0;
    float minActive = 0;              // smallest value over active windows (valid when activeWindows > 0)
    std::uint32_t reserved0 = 0;
    std::uint64_t reserved1 = 0;
};
static_assert(sizeof(NodeHeader) == 32);

struct Slot {
    float value = 0;
    std::int32_t shownLength = 0;
    std::int64_t position = 0;
    std::int64_t keyPosition = -1;
    std::int64_t shownStart = 0;
    std::uint64_t sampleKey = 0;
};
static_assert(sizeof(Slot) == 40);

constexpr int kSlots = kExampleTop + kExampleSample;  // top slots first, then sample slots
constexpr std::size_t kSlotsOffset = sizeof(NodeHeader);
constexpr std::size_t kActsOffset = kSlotsOffset + kSlots * sizeof(Slot);
constexpr std::size_t kBlockBytes = kActsOffset + std::size_t(kSlots) * kExampleShown * sizeof(float);

NodeHeader* headerOf(char* block) { return reinterpret_cast<NodeHeader*>(block); }
const NodeHeader* headerOf(const char* block) { return reinterpret_cast<const NodeHeader*>(block); }
Slot* slotOf(char* block, int i) { return reinterpret_cast<Slot*>(block + kSlotsOffset) + i; }
const Slot* slotOf(const char* block, int i) { return reinterpret_cast<const Slot*>(block + kSlotsOffset) + i; }
float* actsOf(char* block, int i) { return reinterpret_cast<float*>(block + kActsOffset) + std::size_t(i) * kExampleShown; }
const float* actsOf(const char* block, int i) { return reinterpret_cast<const float*>(block + kActsOffset) + std::size_t(i) * kExampleShown; }

QByteArray sha256Raw(const void* data, std::size_t bytes)
{
    return QCryptographicHash::hash(QByteArrayView(static_cast<const char*>(data), static_cast<qsizetype>(bytes)),
                                    QCryptographicHash::Sha256);
}

std::string hexOf(const QByteArray& raw) { return raw.toHex().toStdString(); }

} // namespace

// Shared by every node, so that dense nodes sample the same windows, and independent of when the pass
// was interrupted.
std::uint64_t exampleSampleKey(std::int64_t window)
{
    std::uint64_t z = static_cast<std::uint64_t>(window) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

namespace {

const char* groupKindName(NodeKind kind) { return nodeKindName(kind); }

// One intra-op thread for the calling thread only (OpenMP's thread count is per thread; OpenBLAS reads
// it at every call), restored on exit. at::get_num_threads() first, so that libtorch's own lazy
// per-thread initialisation has run and does not undo it later.
class SingleThreaded {
public:
    SingleThreaded() : m_previous((at::get_num_threads(), omp_get_max_threads())) { omp_set_num_threads(1); }
    ~SingleThreaded() { omp_set_num_threads(m_previous); }
    SingleThreaded(const SingleThreaded&) = delete;
    SingleThreaded& operator=(const SingleThreaded&) = delete;

private:
    int m_previous;
};

// Worse = would be dropped first: smaller value, then larger position (the tie rule, reversed).
bool worseTop(const Slot& a, const Slot& b)
{
    return a.value < b.value || (a.value == b.value && a.position > b.position);
}

} // namespace

// ---- Node names and groups -----------------------------------------------------------------------

ExampleNodeId ExampleNodeId::parse(std::string_view name)
{
    const std::string shown(name);
    const auto fail = [&](const std::string& why) -> ExampleNodeId {
        throw InputError("node '" + shown + "': " + why);
    };
    if (name.find('@') != std::string_view::npos)
        return fail("examples take a node without a token (e.g. mlp:1:5, attn:2:0, attn_sae:1:42)");
    const auto c1 = name.find(':');
    const auto c2 = c1 == std::string_view::npos ? c1 : name.find(':', c1 + 1);
    if (c2 == std::string_view::npos || name.find(':', c2 + 1) != std::string_view::npos)
        return fail("expected KIND:LAYER:INDEX (e.g. mlp:1:5, attn:2:0, attn_sae:1:42)");
    const auto kind = nodeKindFromName(name.substr(0, c1));
    if (!kind || *kind == NodeKind::Embedding)
        return fail("unknown kind '" + std::string(name.substr(0, c1)) + "' (mlp, attn, mlp_sae, attn_sae, resid_sae)");
    const auto number = [&](std::string_view s, const char* what) {
        int v = 0;
        if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
            fail(std::string(what) + " '" + std::string(s) + "' is not a non-negative integer");
        for (char ch : s)
            v = v * 10 + (ch - '0');
        return v;
    };
    ExampleNodeId id;
    id.kind = *kind;
    id.layer = number(name.substr(c1 + 1, c2 - c1 - 1), "layer");
    id.index = number(name.substr(c2 + 1), "index");
    return id;
}

std::string ExampleNodeId::name() const
{
    return std::string(nodeKindName(kind)) + ":" + std::to_string(layer) + ":" + std::to_string(index);
}

std::vector<ExampleNodeGroup> exampleNodeGroups(const Gpt2Config& config, const SaeSet& saes)
{
    std::vector<ExampleNodeGroup> groups;
    std::int64_t first = 0;
    const auto add = [&](NodeKind kind, int layer, int count) {
        groups.push_back({kind, layer, count, first});
        first += count;
    };
    for (int layer = 0; layer < config.nLayer; ++layer) {
        add(NodeKind::AttnHead, layer, config.nHead);
        add(NodeKind::MlpNeuron, layer, config.dMlp);
    }
    for (const auto& s : saes.all())
        add(*nodeKindFromName(saeKindName(s.location)), s.layer, static_cast<int>(s.sae->latentCount()));
    return groups;
}

// ---- Keys ---------------------------------------------------------------------------------------

nlohmann::json ExampleIndexKey::toJson() const
{
    nlohmann::json j = {{"model", model}, {"saes", saes}, {"corpus", corpus}, {"token_limit", nullptr}};
    if (tokenLimit)
        j["token_limit"] = *tokenLimit;
    j["sampler"] = {{"top", kExampleTop}, {"bands", kExampleBands}, {"per_band", kExamplesPerBand}, {"shown", kExampleShown},
                    {"shown_before", kExampleShownBefore}};
    return j;
}

ExampleIndexKey ExampleIndexKey::fromJson(const nlohmann::json& j)
{
    ExampleIndexKey k;
    k.model = j.at("model").get<std::string>();
    k.saes = j.at("saes").get<std::vector<std::string>>();
    k.corpus = j.at("corpus").get<std::string>();
    if (!j.at("token_limit").is_null())
        k.tokenLimit = j.at("token_limit").get<std::int64_t>();
    return k;
}

std::string ExampleIndexKey::difference(const ExampleIndexKey& o, bool ignoreTokenLimit) const
{
    if (model != o.model)
        return "the model (weights, config or tokenizer)";
    if (saes != o.saes)
        return "the autoencoders";
    if (corpus != o.corpus)
        return "the corpus";
    if (!ignoreTokenLimit && tokenLimit != o.tokenLimit)
        return "the token limit";
    return {};
}

// ---- Reading ------------------------------------------------------------------------------------

namespace {

class FileReader {
public:
    explicit FileReader(const std::filesystem::path& file) : m_file(file), m_f(std::fopen(file.c_str(), "rb"))
    {
        if (!m_f)
            throwInputError(file, "cannot be opened");
    }
    ~FileReader()
    {
        if (m_f)
            std::fclose(m_f);
    }
    FileReader(const FileReader&) = delete;
    FileReader& operator=(const FileReader&) = delete;

    std::int64_t size()
    {
        std::fseek(m_f, 0, SEEK_END);
        return std::ftell(m_f);
    }
    void read(std::int64_t offset, void* into, std::size_t bytes)
    {
        if (std::fseek(m_f, offset, SEEK_SET) != 0 || std::fread(into, 1, bytes, m_f) != bytes)
            throwInputError(m_file, "is truncated (reading " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) + ")");
    }

private:
    std::filesystem::path m_file;
    std::FILE* m_f;
};

struct SectionInfo {
    std::int64_t offset = 0, bytes = 0;
    std::string sha256;
};

SectionInfo sectionOf(const nlohmann::json& sections, const char* name)
{
    const auto& s = sections.at(name);
    SectionInfo info;
    info.offset = s.at("offset").get<std::int64_t>();
    info.bytes = s.at("bytes").get<std::int64_t>();
    if (s.contains("sha256"))
        info.sha256 = s.at("sha256").get<std::string>();
    return info;
}

} // namespace

std::shared_ptr<ExampleIndex> readExampleIndexFile(const std::filesystem::path& file, bool verifyBlocks, std::vector<char>* blocks)
{
    FileReader in(file);
    const std::int64_t fileSize = in.size();
    char magic[8];
    std::uint32_t version = 0, headerBytes = 0;
    if (fileSize < 16)
        throwInputError(file, "is truncated (" + std::to_string(fileSize) + " bytes)");
    in.read(0, magic, 8);
    if (std::memcmp(magic, kMagic, 8) != 0)
        throwInputError(file, "is not a Circuitscope examples index");
    in.read(8, &version, 4);
    in.read(12, &headerBytes, 4);
    if (version != kFormatVersion)
        throwInputError(file, "has examples-index format " + std::to_string(version) + ", this version reads format " +
                                  std::to_string(kFormatVersion));
    if (headerBytes > kMaxHeaderBytes || 16 + std::int64_t(headerBytes) + 32 > fileSize)
        throwInputError(file, "is truncated or damaged (header length " + std::to_string(headerBytes) + ")");
    std::string headerText(headerBytes, '\0');
    in.read(16, headerText.data(), headerBytes);
    char headerHash[32];
    in.read(16 + headerBytes, headerHash, 32);
    if (sha256Raw(headerText.data(), headerText.size()) != QByteArray(headerHash, 32))
        throwInputError(file, "is damaged (the header fails its checksum)");
    const std::int64_t dataStart = (16 + std::int64_t(headerBytes) + 32 + 7) / 8 * 8;

    auto index = std::shared_ptr<ExampleIndex>(new ExampleIndex());
    index->m_file = file;
    SectionInfo tokens, docs, maxima, hashes, blockSection;
    try {
        const nlohmann::json h = parseJsonText(headerText, file.string() + " (header)");
        index->m_key = ExampleIndexKey::fromJson(h.at("key"));
        const auto& sampler = h.at("key").at("sampler");
        if (sampler.at("top").get<int>() != kExampleTop || sampler.at("bands").get<int>() != kExampleBands ||
            sampler.at("per_band").get<int>() != kExamplesPerBand || sampler.at("shown").get<int>() != kExampleShown ||
            h.at("block_bytes").get<std::int64_t>() != std::int64_t(kBlockBytes))
            throwInputError(file, "was written with other sampler parameters");
        index->m_nCtx = h.at("n_ctx").get<int>();
        index->m_windows = h.at("windows").get<std::int64_t>();
        index->m_windowsDone = h.at("windows_done").get<std::int64_t>();
        for (const auto& g : h.at("groups")) {
            ExampleNodeGroup group;
            const auto kind = nodeKindFromName(g.at("kind").get<std::string>());
            if (!kind)
                throwInputError(file, "names an unknown node kind");
            group.kind = *kind;
            group.layer = g.at("layer").get<int>();
            group.count = g.at("count").get<int>();
            group.first = index->m_nodeCount;
            if (group.count < 0 || group.layer < 0)
                throwInputError(file, "has a bad node group");
            index->m_nodeCount += group.count;
            index->m_groups.push_back(group);
        }
        const auto& s = h.at("sections");
        tokens = sectionOf(s, "tokens");
        docs = sectionOf(s, "docs");
        maxima = sectionOf(s, "maxima");
        hashes = sectionOf(s, "hashes");
        blockSection = sectionOf(s, "blocks");
    } catch (const nlohmann::json::exception& e) {
        throwInputError(file, std::string("has a bad header (") + e.what() + ")");
    }
    const std::int64_t n = index->m_nodeCount;
    if (index->m_nCtx < 1 || index->m_windowsDone < 0 || index->m_windowsDone > index->m_windows || tokens.bytes % 4 || docs.bytes % 8 ||
        maxima.bytes != n * 4 || hashes.bytes != n * 32 || blockSection.bytes != n * std::int64_t(kBlockBytes) ||
        windowCount(tokens.bytes / 4, index->m_nCtx) != index->m_windows)
        throwInputError(file, "is damaged (inconsistent section sizes)");
    // Sections are laid out back to back; the file must end exactly after the last one.
    std::int64_t expectedEnd = dataStart;
    for (const SectionInfo* s : {&tokens, &docs, &maxima, &hashes, &blockSection}) {
        if (s->offset != expectedEnd - dataStart)
            throwInputError(file, "is damaged (section offsets)");
        expectedEnd += s->bytes;
    }
    if (fileSize != expectedEnd)
        throwInputError(file, "is truncated or damaged (" + std::to_string(fileSize) + " bytes, expected " + std::to_string(expectedEnd) + ")");

    const auto readSection = [&](const SectionInfo& s, void* into, const char* what) {
        in.read(dataStart + s.offset, into, static_cast<std::size_t>(s.bytes));
        if (hexOf(sha256Raw(into, static_cast<std::size_t>(s.bytes))) != s.sha256)
            throwInputError(file, std::string("is damaged (the ") + what + " fail their checksum)");
    };
    index->m_tokens.resize(static_cast<std::size_t>(tokens.bytes / 4));
    readSection(tokens, index->m_tokens.data(), "corpus tokens");
    index->m_docStarts.resize(static_cast<std::size_t>(docs.bytes / 8));
    readSection(docs, index->m_docStarts.data(), "document starts");
    index->m_maxima.resize(static_cast<std::size_t>(n));
    readSection(maxima, index->m_maxima.data(), "node maxima");
    std::string rawHashes(static_cast<std::size_t>(n * 32), '\0');
    readSection(hashes, rawHashes.data(), "node checksums");
    index->m_blockHashes.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
        index->m_blockHashes[static_cast<std::size_t>(i)] = rawHashes.substr(static_cast<std::size_t>(i * 32), 32);
    index->m_blocksOffset = dataStart + blockSection.offset;
    if (verifyBlocks || blocks) {
        std::vector<char> all(static_cast<std::size_t>(blockSection.bytes));
        in.read(index->m_blocksOffset, all.data(), all.size());
        for (std::int64_t i = 0; i < n; ++i) {
            const char* b = all.data() + i * std::int64_t(kBlockBytes);
            if (sha256Raw(b, kBlockBytes) != QByteArray::fromStdString(index->m_blockHashes[static_cast<std::size_t>(i)]))
                throwInputError(file, "is damaged (node block " + std::to_string(i) + " fails its checksum)");
        }
        if (blocks)
            *blocks = std::move(all);
    }
    return index;
}

std::shared_ptr<const ExampleIndex> ExampleIndex::open(const std::filesystem::path& file, Verify verify)
{
    return readExampleIndexFile(file, verify == Verify::Full, nullptr);
}

std::int64_t ExampleIndex::flatIndex(const ExampleNodeId& node) const
{
    for (const auto& g : m_groups) {
        if (g.kind == node.kind && g.layer == node.layer)
            return node.index >= 0 && node.index < g.count ? g.first + node.index : -1;
    }
    return -1;
}

bool ExampleIndex::covers(const ExampleNodeId& node) const { return flatIndex(node) >= 0; }

float ExampleIndex::corpusMax(const ExampleNodeId& node) const
{
    const std::int64_t i = flatIndex(node);
    return i < 0 ? 0.f : m_maxima[static_cast<std::size_t>(i)];
}

std::vector<char> ExampleIndex::readBlock(std::int64_t node) const
{
    std::vector<char> block(kBlockBytes);
    FileReader in(m_file);
    in.read(m_blocksOffset + node * std::int64_t(kBlockBytes), block.data(), block.size());
    if (sha256Raw(block.data(), block.size()) != QByteArray::fromStdString(m_blockHashes[static_cast<std::size_t>(node)]))
        throwInputError(m_file, "is damaged (node block " + std::to_string(node) + " fails its checksum)");
    return block;
}

void ExampleIndex::verifyAll() const
{
    readExampleIndexFile(m_file, true, nullptr);
}

NodeExamples ExampleIndex::examples(const ExampleNodeId& node, int topK) const
{
    const std::int64_t flat = flatIndex(node);
    if (flat < 0)
        throw InputError("node '" + node.name() + "': not in the examples index (the model or its autoencoders have no such node)");
    if (!complete())
        throw InputError(m_file.string() + ": the examples index is not complete (" + std::to_string(m_windowsDone) + " of " +
                         std::to_string(m_windows) + " windows)");
    if (topK < 0 || topK > kExampleTop)
        throw InputError("--top: the examples index keeps at most " + std::to_string(kExampleTop) + " top examples");
    const std::vector<char> block = readBlock(flat);
    const NodeHeader* h = headerOf(block.data());
    if (h->topCount > unsigned(kExampleTop) || h->sampleCount > unsigned(kExampleSample))
        throwInputError(m_file, "is damaged (node block counts)");
    const auto makeExample = [&](int slot) {
        const Slot& s = *slotOf(block.data(), slot);
        Example e;
        e.position = s.position;
        e.max = s.value;
        e.keyPosition = s.keyPosition;
        e.shownStart = s.shownStart;
        e.windowStart = s.position / m_nCtx * m_nCtx;
        if (s.shownLength < 1 || s.shownLength > kExampleShown || s.shownStart < 0 ||
            s.shownStart + s.shownLength > tokenCount() || s.position < s.shownStart || s.position >= s.shownStart + s.shownLength)
            throwInputError(m_file, "is damaged (an example of " + node.name() + " is out of range)");
        e.maxIndex = static_cast<int>(s.position - s.shownStart);
        const float* a = actsOf(block.data(), slot);
        e.activations.assign(a, a + s.shownLength);
        e.tokenIds.assign(m_tokens.begin() + s.shownStart, m_tokens.begin() + s.shownStart + s.shownLength);
        const auto it = std::upper_bound(m_docStarts.begin(), m_docStarts.end(), s.position);
        e.doc = static_cast<int>(std::max<std::ptrdiff_t>(0, (it - m_docStarts.begin()) - 1));
        return e;
    };
    NodeExamples out;
    out.node = node;
    out.corpusMax = m_maxima[static_cast<std::size_t>(flat)];
    out.activeWindows = h->activeWindows;
    for (int i = 0; i < std::min<int>(topK, static_cast<int>(h->topCount)); ++i)
        out.top.push_back(makeExample(i));
    // Sample slots are sorted by value (ascending) when the index is complete.
    const int s = static_cast<int>(h->sampleCount);
    std::vector<float> v(static_cast<std::size_t>(s));
    for (int i = 0; i < s; ++i)
        v[static_cast<std::size_t>(i)] = slotOf(block.data(), kExampleTop + i)->value;
    const auto mid = [](float a, float b) { return static_cast<float>((double(a) + double(b)) / 2); };
    for (int b = kExampleBands - 1; b >= 0; --b) {
        const int begin = b * s / kExampleBands, end = (b + 1) * s / kExampleBands;
        if (begin == end)
            continue;
        ExampleBand band;
        band.lo = begin == 0 ? h->minActive : mid(v[static_cast<std::size_t>(begin - 1)], v[static_cast<std::size_t>(begin)]);
        band.hi = end == s ? out.corpusMax : mid(v[static_cast<std::size_t>(end - 1)], v[static_cast<std::size_t>(end)]);
        for (int i = end - 1; i >= begin; --i)
            band.examples.push_back(makeExample(kExampleTop + i));
        out.bands.push_back(std::move(band));
    }
    return out;
}

// ---- Building -----------------------------------------------------------------------------------

class ExampleIndexBuilder {
public:
    ExampleIndexBuilder(std::vector<ExampleNodeGroup> groups, int nCtx, ExampleIndexKey key, std::vector<int> tokens,
                        std::vector<std::int64_t> docStarts)
        : m_groups(std::move(groups)), m_nCtx(nCtx), m_key(std::move(key)), m_tokens(std::move(tokens)), m_docStarts(std::move(docStarts))
    {
        m_nodeCount = m_groups.empty() ? 0 : m_groups.back().first + m_groups.back().count;
        m_windows = windowCount(static_cast<std::int64_t>(m_tokens.size()), m_nCtx);
        m_blocks.assign(static_cast<std::size_t>(m_nodeCount) * kBlockBytes, 0);
        m_topThreshold.assign(static_cast<std::size_t>(m_nodeCount), -std::numeric_limits<float>::infinity());
        m_topWorst.assign(static_cast<std::size_t>(m_nodeCount), -1);
        m_sampleWorst.assign(static_cast<std::size_t>(m_nodeCount), -1);
        m_sampleWorstKey.assign(static_cast<std::size_t>(m_nodeCount), 0);
        m_sampleCount.assign(static_cast<std::size_t>(m_nodeCount), 0);
        m_activeWindows.assign(static_cast<std::size_t>(m_nodeCount), 0);
        m_minActive.assign(static_cast<std::size_t>(m_nodeCount), 0.f);
    }

    // From a partial index (its blocks already checked).
    static std::unique_ptr<ExampleIndexBuilder> resume(const ExampleIndex& index, std::vector<char> blocks)
    {
        auto b = std::make_unique<ExampleIndexBuilder>(index.groups(), index.nCtx(), index.key(), index.tokens(), index.docStarts());
        if (blocks.size() != b->m_blocks.size())
            throwInputError(index.file(), "is damaged (block section size)");
        b->m_blocks = std::move(blocks);
        b->m_windowsDone = index.windowsDone();
        for (std::int64_t i = 0; i < b->m_nodeCount; ++i) {
            const NodeHeader* h = headerOf(b->block(i));
            if (h->topCount > unsigned(kExampleTop) || h->sampleCount > unsigned(kExampleSample))
                throwInputError(index.file(), "is damaged (node block counts)");
            const std::size_t ni = static_cast<std::size_t>(i);
            b->m_sampleCount[ni] = h->sampleCount;
            b->m_activeWindows[ni] = h->activeWindows;
            b->m_minActive[ni] = h->minActive;
            b->refreshTop(i);
            b->refreshSample(i);
        }
        return b;
    }

    std::int64_t windows() const { return m_windows; }
    std::int64_t windowsDone() const { return m_windowsDone; }
    std::int64_t tokenCount() const { return static_cast<std::int64_t>(m_tokens.size()); }

    // The windows [w0, w1) of a pass (window_batch.h), in window order: the full-length ones in one
    // batch, the corpus's last, shorter window (if it is among them) in a batch of its own.
    // Thread-safe (reads only).
    struct Chunk {
        std::int64_t first = 0, count = 0;
        int length = 0;
        std::vector<GroupActivations> acts;
    };
    std::vector<Chunk> computePass(std::int64_t w0, std::int64_t w1, const Gpt2Model& model, const SaeSet& saes,
                                   const std::function<bool()>& cancelled) const
    {
        std::vector<Chunk> chunks;
        std::int64_t w = w0;
        while (w < w1) {
            const int length = windowAt(w, tokenCount(), m_nCtx).length;
            std::vector<std::vector<int>> ids;
            std::int64_t end = w;
            for (; end < w1; ++end) {
                const WindowSpan span = windowAt(end, tokenCount(), m_nCtx);
                if (span.length != length)
                    break;
                ids.emplace_back(m_tokens.begin() + span.start, m_tokens.begin() + span.start + span.length);
            }
            chunks.push_back({w, end - w, length, windowBatchActivations(model, saes, m_groups, ids, cancelled)});
            w = end;
        }
        return chunks;
    }

    // Folds the windows of a pass into the samplers; the chunks must start at windowsDone().
    void applyPass(const std::vector<Chunk>& chunks)
    {
        for (const Chunk& c : chunks) {
            if (c.first != m_windowsDone)
                throw std::logic_error("applyPass: windows out of order");
            for (std::int64_t i = 0; i < c.count; ++i) {
                const WindowSpan span = windowAt(m_windowsDone, tokenCount(), m_nCtx);
                const std::uint64_t key = exampleSampleKey(m_windowsDone);
                for (std::size_t g = 0; g < m_groups.size(); ++g)
                    updateGroup(m_groups[g], c.acts[g], i * c.length, span, key);
                ++m_windowsDone;
            }
        }
    }

    // Sorts the kept examples (top: largest first; sample: by value, for the bands).
    void finish()
    {
        std::vector<char> scratch(kBlockBytes);
        for (std::int64_t i = 0; i < m_nodeCount; ++i) {
            char* b = block(i);
            NodeHeader* h = headerOf(b);
            std::memcpy(scratch.data(), b, kBlockBytes);
            const auto reorder = [&](int base, int count, auto&& less) {
                std::vector<int> order(static_cast<std::size_t>(count));
                std::iota(order.begin(), order.end(), base);
                std::sort(order.begin(), order.end(), [&](int x, int y) { return less(*slotOf(scratch.data(), x), *slotOf(scratch.data(), y)); });
                for (int k = 0; k < count; ++k) {
                    *slotOf(b, base + k) = *slotOf(scratch.data(), order[static_cast<std::size_t>(k)]);
                    std::memcpy(actsOf(b, base + k), actsOf(scratch.data(), order[static_cast<std::size_t>(k)]), kExampleShown * sizeof(float));
                }
            };
            reorder(0, static_cast<int>(h->topCount), [](const Slot& x, const Slot& y) { return worseTop(y, x); });
            reorder(kExampleTop, static_cast<int>(h->sampleCount), [](const Slot& x, const Slot& y) {
                return x.value < y.value || (x.value == y.value && x.position < y.position);
            });
        }
    }

    void save(const std::filesystem::path& file)
    {
        syncHeaders();
        const std::int64_t n = m_nodeCount;
        std::vector<float> maxima(static_cast<std::size_t>(n), 0.f);
        std::string hashes(static_cast<std::size_t>(n * 32), '\0');
        for (std::int64_t i = 0; i < n; ++i) {
            const char* b = block(i);
            const NodeHeader* h = headerOf(b);
            float best = 0;
            bool any = false;
            for (unsigned s = 0; s < h->topCount; ++s) {
                if (!any || slotOf(b, int(s))->value > best)
                    best = slotOf(b, int(s))->value;
                any = true;
            }
            maxima[static_cast<std::size_t>(i)] = best;
            const QByteArray digest = sha256Raw(b, kBlockBytes);
            std::memcpy(hashes.data() + i * 32, digest.constData(), 32);
        }
        nlohmann::json groups = nlohmann::json::array();
        for (const auto& g : m_groups)
            groups.push_back({{"kind", groupKindName(g.kind)}, {"layer", g.layer}, {"count", g.count}});
        struct Part {
            const char* name;
            const void* data;
            std::int64_t bytes;
            bool hashed;
        };
        const Part parts[] = {
            {"tokens", m_tokens.data(), std::int64_t(m_tokens.size() * 4), true},
            {"docs", m_docStarts.data(), std::int64_t(m_docStarts.size() * 8), true},
            {"maxima", maxima.data(), n * 4, true},
            {"hashes", hashes.data(), n * 32, true},
            {"blocks", m_blocks.data(), std::int64_t(m_blocks.size()), false},
        };
        nlohmann::json sections = nlohmann::json::object();
        std::int64_t offset = 0;
        for (const Part& p : parts) {
            nlohmann::json s = {{"offset", offset}, {"bytes", p.bytes}};
            if (p.hashed)
                s["sha256"] = hexOf(sha256Raw(p.data, static_cast<std::size_t>(p.bytes)));
            sections[p.name] = s;
            offset += p.bytes;
        }
        const nlohmann::json header = {{"format", kFormatVersion}, {"key", m_key.toJson()}, {"n_ctx", m_nCtx},
                                       {"windows", m_windows}, {"windows_done", m_windowsDone}, {"groups", groups},
                                       {"block_bytes", kBlockBytes}, {"sections", sections}};
        const std::string headerText = header.dump();
        std::error_code ec;
        std::filesystem::create_directories(file.parent_path(), ec);
        AtomicFileWriter out(file);
        const auto write = [&](const void* data, std::int64_t bytes) { out.write(data, static_cast<std::size_t>(bytes)); };
        const std::uint32_t version = kFormatVersion, headerBytes = static_cast<std::uint32_t>(headerText.size());
        write(kMagic, 8);
        write(&version, 4);
        write(&headerBytes, 4);
        write(headerText.data(), std::int64_t(headerText.size()));
        write(sha256Raw(headerText.data(), headerText.size()).constData(), 32);
        const std::int64_t used = 16 + std::int64_t(headerText.size()) + 32;
        const char zeros[8] = {};
        write(zeros, (8 - used % 8) % 8);
        for (const Part& p : parts)
            write(p.data, p.bytes);
        out.commit();
    }

private:
    char* block(std::int64_t node) { return m_blocks.data() + node * std::int64_t(kBlockBytes); }
    const char* block(std::int64_t node) const { return m_blocks.data() + node * std::int64_t(kBlockBytes); }

    void refreshTop(std::int64_t node)
    {
        const char* b = block(node);
        const NodeHeader* h = headerOf(b);
        if (h->topCount < unsigned(kExampleTop)) {
            m_topThreshold[static_cast<std::size_t>(node)] = -std::numeric_limits<float>::infinity();
            m_topWorst[static_cast<std::size_t>(node)] = -1;
            return;
        }
        int worst = 0;
        for (int s = 1; s < kExampleTop; ++s) {
            if (worseTop(*slotOf(b, s), *slotOf(b, worst)))
                worst = s;
        }
        m_topWorst[static_cast<std::size_t>(node)] = worst;
        m_topThreshold[static_cast<std::size_t>(node)] = slotOf(b, worst)->value;
    }

    void refreshSample(std::int64_t node)
    {
        const char* b = block(node);
        const NodeHeader* h = headerOf(b);
        if (h->sampleCount < unsigned(kExampleSample)) {
            m_sampleWorst[static_cast<std::size_t>(node)] = -1;
            return;
        }
        int worst = kExampleTop;
        for (int s = kExampleTop + 1; s < kSlots; ++s) {
            if (slotOf(b, s)->sampleKey > slotOf(b, worst)->sampleKey)
                worst = s;
        }
        m_sampleWorst[static_cast<std::size_t>(node)] = worst;
        m_sampleWorstKey[static_cast<std::size_t>(node)] = slotOf(b, worst)->sampleKey;
    }

    void fill(char* b, int slot, float value, std::int64_t row, std::int64_t keyPosition, const WindowSpan& span,
              const float* values, int columns, int column, std::uint64_t key)
    {
        Slot& s = *slotOf(b, slot);
        const int shown = std::min(kExampleShown, span.length);
        const std::int64_t startRel = std::clamp<std::int64_t>(row - kExampleShownBefore, 0, span.length - shown);
        s.value = value;
        s.shownLength = shown;
        s.position = span.start + row;
        s.keyPosition = keyPosition;
        s.shownStart = span.start + startRel;
        s.sampleKey = key;
        float* a = actsOf(b, slot);
        for (int t = 0; t < kExampleShown; ++t)
            a[t] = t < shown ? values[(startRel + t) * columns + column] : 0.f;
    }

    // Window rows [rowOffset, rowOffset + span.length) of a pass's group matrix. Only the compact
    // per-node arrays are read for every node; a node's block (6.7 KB, a page apart from the next) is
    // touched only when one of its examples changes.
    void updateGroup(const ExampleNodeGroup& G, const GroupActivations& acts, std::int64_t rowOffset, const WindowSpan& span,
                     std::uint64_t key)
    {
        const int C = G.count;
        const float* V = acts.values.data_ptr<float>() + rowOffset * C;
        const bool head = G.kind == NodeKind::AttnHead;
        // A head's query 0 sees only itself (activation 1 for every head): never a maximum.
        const int firstRow = head ? 1 : 0;
        if (span.length <= firstRow)
            return;
        m_max.assign(static_cast<std::size_t>(C), -std::numeric_limits<float>::infinity());
        m_arg.assign(static_cast<std::size_t>(C), -1);
        float* mx = m_max.data();
        int* arg = m_arg.data();
        // Each column's maximum and its first row, branch-free so that it vectorizes: strictly greater,
        // so the smallest position wins a tie, and NaN never wins.
        for (int t = firstRow; t < span.length; ++t) {
            const float* row = V + std::int64_t(t) * C;
#pragma omp simd
            for (int j = 0; j < C; ++j) {
                const int greater = row[j] > mx[j];
                arg[j] += greater * (t - arg[j]);
                mx[j] = std::max(mx[j], row[j]);
            }
        }
        for (int j = 0; j < C; ++j) {
            const int row = arg[j];
            if (row < 0)
                continue;
            const float value = mx[j];
            const std::int64_t node = G.first + j;
            const std::size_t ni = static_cast<std::size_t>(node);
            const bool top = value > m_topThreshold[ni];
            const bool active = value > 0;
            const bool sample = active && (m_sampleCount[ni] < unsigned(kExampleSample) || key < m_sampleWorstKey[ni]);
            if (active) {
                m_minActive[ni] = m_activeWindows[ni] == 0 ? value : std::min(m_minActive[ni], value);
                ++m_activeWindows[ni];
            }
            if (!top && !sample)
                continue;
            char* b = block(node);
            NodeHeader* h = headerOf(b);
            const std::int64_t keyPosition =
                head ? span.start + acts.keyArgMax[static_cast<std::size_t>((rowOffset + row) * C + j)] : -1;
            // Top: a later window only displaces the worst kept one with a strictly larger value (the
            // kept one has the smaller position, which wins a tie). −∞ threshold: not full yet.
            if (top) {
                if (h->topCount < unsigned(kExampleTop)) {
                    fill(b, static_cast<int>(h->topCount++), value, row, keyPosition, span, V, C, j, key);
                    if (h->topCount == unsigned(kExampleTop))
                        refreshTop(node);
                } else {
                    fill(b, m_topWorst[ni], value, row, keyPosition, span, V, C, j, key);
                    refreshTop(node);
                }
            }
            // Sample: bottom-k by the window's key among the windows where the node is active.
            if (sample) {
                if (m_sampleCount[ni] < unsigned(kExampleSample)) {
                    fill(b, kExampleTop + static_cast<int>(h->sampleCount++), value, row, keyPosition, span, V, C, j, key);
                    m_sampleCount[ni] = h->sampleCount;
                    if (h->sampleCount == unsigned(kExampleSample))
                        refreshSample(node);
                } else {
                    fill(b, m_sampleWorst[ni], value, row, keyPosition, span, V, C, j, key);
                    refreshSample(node);
                }
            }
        }
    }

    // The per-window counters live in compact arrays while building; the blocks get them before they
    // are hashed and saved.
    void syncHeaders()
    {
        for (std::int64_t i = 0; i < m_nodeCount; ++i) {
            NodeHeader* h = headerOf(block(i));
            h->activeWindows = m_activeWindows[static_cast<std::size_t>(i)];
            h->minActive = m_minActive[static_cast<std::size_t>(i)];
        }
    }

    std::vector<ExampleNodeGroup> m_groups;
    int m_nCtx = 0;
    ExampleIndexKey m_key;
    std::vector<int> m_tokens;
    std::vector<std::int64_t> m_docStarts;
    std::int64_t m_nodeCount = 0, m_windows = 0, m_windowsDone = 0;
    std::vector<char> m_blocks;
    std::vector<float> m_topThreshold;  // value of the worst kept top example (−∞ while not full)
    std::vector<int> m_topWorst;        // its slot
    std::vector<int> m_sampleWorst;     // slot with the largest key while the sample is full
    std::vector<std::uint64_t> m_sampleWorstKey; // its key
    std::vector<std::uint32_t> m_sampleCount;    // = the block's sampleCount
    std::vector<std::int64_t> m_activeWindows;   // the block's activeWindows and minActive (syncHeaders)
    std::vector<float> m_minActive;
    std::vector<float> m_max;           // scratch
    std::vector<int> m_arg;
};

// ---- Cache --------------------------------------------------------------------------------------

std::filesystem::path defaultExampleCacheDir()
{
    const QString base = QStandardPaths::writableLocation(QStandardPaths::GenericCacheLocation);
    return std::filesystem::path(base.toStdString()) / "circuitscope" / "examples";
}

std::filesystem::path exampleIndexPath(const std::filesystem::path& cacheDir, const Gpt2Model& model, const SaeSet& saes,
                                       const std::filesystem::path& corpus)
{
    const auto canonical = [](const std::filesystem::path& p) {
        std::error_code ec;
        const auto c = std::filesystem::weakly_canonical(p, ec);
        return (ec ? p : c).string();
    };
    ContentHasher h;
    h.add(canonical(model.directory));
    h.add(canonical(corpus));
    for (const auto& s : saes.all()) {
        h.add(canonical(s.sae->source));
        h.add(std::string(saeLocationName(s.location)) + ":" + std::to_string(s.layer));
    }
    const std::string name = corpus.filename().empty() ? corpus.parent_path().filename().string() : corpus.filename().string();
    std::string safe;
    for (char c : name.substr(0, 40))
        safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
    return cacheDir / (safe + "-" + h.hex().substr(0, 24) + ".csidx");
}

IndexResult ensureExampleIndex(const Gpt2Model& model, const SaeSet& saes, const std::filesystem::path& corpus, const IndexOptions& o)
{
    const auto started = std::chrono::steady_clock::now();
    const auto say = [&](const std::string& m) {
        if (o.message)
            o.message(m);
    };
    const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
    const std::filesystem::path cacheDir = o.cacheDir.empty() ? defaultExampleCacheDir() : o.cacheDir;
    const std::filesystem::path file = exampleIndexPath(cacheDir, model, saes, corpus);

    ExampleIndexKey key;
    key.model = modelContentHash(model);
    for (const auto& s : saes.all())
        key.saes.push_back(saeContentHash(s));
    key.corpus = corpusContentHash(corpus);
    key.tokenLimit = o.tokenLimit;

    IndexResult result;
    std::unique_ptr<ExampleIndexBuilder> builder;
    std::error_code ec;
    if (std::filesystem::exists(file, ec)) {
        try {
            // Fully checked before it is trusted (every node block's checksum): ~0.3 s per 100 MB.
            auto saved = readExampleIndexFile(file, true, nullptr);
            const std::string diff = key.difference(saved->key(), o.anyTokenLimit);
            if (!diff.empty()) {
                say("the saved examples index " + file.string() + " is stale (" + diff + " changed); rebuilding it");
            } else if (saved->complete()) {
                result.index = saved;
                result.reused = true;
            } else {
                std::vector<char> blocks;
                auto full = readExampleIndexFile(file, true, &blocks);
                builder = ExampleIndexBuilder::resume(*full, std::move(blocks));
                result.resumed = true;
                say("resuming the examples index at window " + std::to_string(builder->windowsDone()) + " of " +
                    std::to_string(builder->windows()));
            }
        } catch (const InputError& e) {
            say("the saved examples index is unusable (" + std::string(e.what()) + "); rebuilding it");
        }
        if (!result.index && !builder)
            std::filesystem::remove(file, ec);
    }
    if (result.index) {
        result.tokens = result.index->tokenCount();
        result.windows = result.index->windows();
        result.seconds = elapsed();
        return result;
    }
    if (!builder) {
        Corpus c = readCorpus(corpus, *model.tokenizer, o.tokenLimit);
        key.corpus = c.contentHash; // what was read, should the file have changed since it was hashed
        builder = std::make_unique<ExampleIndexBuilder>(exampleNodeGroups(model.config, saes), model.config.nCtx, key,
                                                        std::move(c.tokens), std::move(c.docStarts));
    }

    const std::int64_t firstWindow = builder->windowsDone();
    const auto runStart = std::chrono::steady_clock::now();
    auto lastSave = runStart;
    const auto report = [&] {
        if (!o.progress)
            return;
        IndexProgress p;
        p.windows = builder->windows();
        p.windowsDone = builder->windowsDone();
        p.tokens = builder->tokenCount();
        p.tokensDone = std::min(p.tokens, p.windowsDone * model.config.nCtx);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - runStart).count();
        const std::int64_t tokensThisRun = p.tokensDone - std::min(p.tokens, firstWindow * model.config.nCtx);
        p.tokensPerSecond = s > 0 ? tokensThisRun / s : 0;
        p.etaSeconds = p.tokensPerSecond > 0 ? (p.tokens - p.tokensDone) / p.tokensPerSecond : 0;
        o.progress(p);
    };
    report();
    const int workers = std::max(1, o.workers);
    const std::int64_t perPass = o.windowsPerPass > 0 ? o.windowsPerPass : std::max(1, kExampleRowsPerPass / model.config.nCtx);
    const std::int64_t windows = builder->windows();
    // A pass ends at the next multiple of perPass (see IndexOptions::windowsPerPass).
    const auto passEnd = [&](std::int64_t w) { return std::min(windows, (w / perPass + 1) * perPass); };
    using Chunks = std::vector<ExampleIndexBuilder::Chunk>;
    SingleThreaded oneThread;
    while (builder->windowsDone() < windows) {
        const bool stop = (o.cancelled && o.cancelled()) ||
                          (o.stopAfterWindows && builder->windowsDone() - firstWindow >= *o.stopAfterWindows);
        if (stop) {
            builder->save(file);
            throw Cancelled();
        }
        try {
            // Passes 2.. on helper threads, the first on this one; folded in in window order.
            std::vector<std::pair<std::int64_t, std::int64_t>> passes;
            for (std::int64_t w = builder->windowsDone(); w < windows && int(passes.size()) < workers; w = passEnd(w))
                passes.emplace_back(w, passEnd(w));
            std::vector<std::future<Chunks>> others;
            for (std::size_t i = 1; i < passes.size(); ++i)
                others.push_back(std::async(std::launch::async, [&, p = passes[i]] {
                    SingleThreaded helperThread;
                    return builder->computePass(p.first, p.second, model, saes, o.cancelled);
                }));
            std::vector<Chunks> results;
            std::exception_ptr failure;
            try {
                results.push_back(builder->computePass(passes[0].first, passes[0].second, model, saes, o.cancelled));
            } catch (...) {
                failure = std::current_exception();
            }
            for (auto& f : others) {
                try {
                    results.push_back(f.get());
                } catch (...) {
                    if (!failure)
                        failure = std::current_exception();
                }
            }
            if (failure)
                std::rethrow_exception(failure);
            for (const auto& r : results)
                builder->applyPass(r);
        } catch (const Cancelled&) {
            builder->save(file); // the passes in progress are redone on resume
            throw;
        }
        report();
        const auto now = std::chrono::steady_clock::now();
        if (std::chrono::duration<double>(now - lastSave).count() >= o.checkpointSeconds && builder->windowsDone() < windows) {
            builder->save(file);
            lastSave = now;
        }
    }
    builder->finish();
    builder->save(file);
    result.index = readExampleIndexFile(file, false, nullptr);
    result.tokens = result.index->tokenCount();
    result.windows = result.index->windows();
    result.seconds = elapsed();
    return result;
}

} // namespace cs
