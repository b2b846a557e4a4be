#pragma once
// Dataset examples (issue 14): for every MLP neuron, attention head and loaded autoencoder latent, the
// corpus windows where it fires most and random windows from four quantile bands, kept by a streaming
// pass over the corpus (no per-node list of all activations) and saved in a checksummed index file.
//
// Definitions (the tests' brute force uses the same):
//   - A node's activation at a stream position: a neuron's post-GELU activation, a latent's α, and a
//     head's largest attention probability from that query, max_k P[q,k,h]. A window's first position
//     is skipped for heads: its query can attend only to itself, so every head has activation 1 there.
//   - An example is one window (one forward pass): its value is the node's largest activation in the
//     window, at the smallest such position. The shown context is ≤ 32 tokens of that window around
//     the maximum (23 before it when the window allows), with the node's activation at each.
//   - Top: the 20 windows with the largest values; ties: larger value first, then smaller position.
//   - Quantile bands: a uniform random sample (bottom-40 by a hash of the window index, the same hash
//     for every node) of the windows where the node is active (value > 0) is sorted and cut into four
//     bands of 10; band bounds are the smallest active value, the midpoints between neighbouring bands'
//     samples, and the node's corpus maximum. So the bands estimate the node's quartiles over its
//     active windows and every sample lies inside its band.
// The sampler is deterministic: an index resumed after an interruption equals one built in one go.

#include "core/analysis/node.h"
#include "core/examples/corpus.h"
#include "core/examples/window_batch.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cs {

inline constexpr int kExampleTop = 20;       // top windows kept per node
inline constexpr int kExampleBands = 4;
inline constexpr int kExamplesPerBand = 10;
inline constexpr int kExampleSample = kExampleBands * kExamplesPerBand;
inline constexpr int kExampleShown = 32;     // tokens shown around a maximum
inline constexpr int kExampleShownBefore = 23;
// Tokens per forward pass of the indexer: 16 of the demo's 64-token windows make 1,024-row products,
// where OpenBLAS's packing of each weight is a few percent of the arithmetic (at 64 rows it took as
// long as the arithmetic); a model with n_ctx 1,024 keeps one window per pass, so the activations a
// pass holds (rows × every node) stay what one window of it needs.
inline constexpr int kExampleRowsPerPass = 1024;

// A node of the index: `mlp:1:5`, `attn:2:0`, `attn_sae:1:42` (no token: examples span the corpus).
struct ExampleNodeId {
    NodeKind kind = NodeKind::MlpNeuron;
    int layer = 0;
    int index = 0;
    // InputError ("node 'x': ...") for a malformed name, a token suffix or the embedding.
    static ExampleNodeId parse(std::string_view name);
    std::string name() const;
    bool operator==(const ExampleNodeId&) const = default;
};

struct Example {
    int doc = 0;                     // document of the maximum
    std::int64_t position = 0;       // stream index of the maximum
    float max = 0;                   // the node's activation there
    std::int64_t keyPosition = -1;   // heads: stream index of the most-attended key from the maximum's query
    std::int64_t shownStart = 0;     // stream index of the first shown token
    std::vector<int> tokenIds;       // the shown tokens
    std::vector<float> activations;  // the node's activation at each shown token
    int maxIndex = 0;                // the maximum's index in the shown tokens
    std::int64_t windowStart = 0;    // stream index of the window (forward pass) the example comes from
};

struct ExampleBand {
    float lo = 0, hi = 0;            // activation bounds; every example has lo ≤ max ≤ hi
    std::vector<Example> examples;   // largest first
};

struct NodeExamples {
    ExampleNodeId node;
    float corpusMax = 0;             // the largest activation over the corpus
    std::int64_t activeWindows = 0;  // windows where the node's activation exceeds 0
    std::vector<Example> top;        // largest first
    std::vector<ExampleBand> bands;  // the highest band first; bands without samples are left out
};

// The sample's random key of a window (splitmix64 of its index), the same for every node.
std::uint64_t exampleSampleKey(std::int64_t window);

// The nodes an index covers, in storage order: per layer the heads then the neurons, then the latents
// of each autoencoder in the set's order.
struct ExampleNodeGroup {
    NodeKind kind = NodeKind::MlpNeuron;
    int layer = 0;
    int count = 0;
    std::int64_t first = 0;          // flat index of the group's first node
};
std::vector<ExampleNodeGroup> exampleNodeGroups(const Gpt2Config& config, const SaeSet& saes);

// What an index was built from: content hashes and the sampler's parameters. Two indexes with equal
// keys hold the same data.
struct ExampleIndexKey {
    std::string model;               // modelContentHash
    std::vector<std::string> saes;   // saeContentHash of each, in set order
    std::string corpus;              // corpus content hash
    std::optional<std::int64_t> tokenLimit;
    nlohmann::json toJson() const;
    static ExampleIndexKey fromJson(const nlohmann::json& j); // throws nlohmann::json::exception
    // Empty when equal, else what differs ("the model weights", "the autoencoders", ...).
    std::string difference(const ExampleIndexKey& other, bool ignoreTokenLimit) const;
};

struct IndexProgress {
    std::int64_t windowsDone = 0, windows = 0;
    std::int64_t tokensDone = 0, tokens = 0;
    double tokensPerSecond = 0;      // since this run (not a resumed part) started
    double etaSeconds = 0;
};

// A saved index, opened read-only. Thread-safe: every const member may be called from any thread.
class ExampleIndex;
std::shared_ptr<ExampleIndex> readExampleIndexFile(const std::filesystem::path& file, bool verifyBlocks, std::vector<char>* blocks);

class ExampleIndex {
public:
    enum class Verify { Lazy, Full }; // Lazy: header and small tables now, each node's block when read

    // InputError naming the file for a missing, truncated or altered file, or a different format version.
    static std::shared_ptr<const ExampleIndex> open(const std::filesystem::path& file, Verify verify = Verify::Lazy);

    const std::filesystem::path& file() const { return m_file; }
    const ExampleIndexKey& key() const { return m_key; }
    bool complete() const { return m_windowsDone == m_windows; }
    std::int64_t windowsDone() const { return m_windowsDone; }
    std::int64_t windows() const { return m_windows; }
    std::int64_t tokenCount() const { return static_cast<std::int64_t>(m_tokens.size()); }
    int nCtx() const { return m_nCtx; }
    const std::vector<int>& tokens() const { return m_tokens; }
    const std::vector<std::int64_t>& docStarts() const { return m_docStarts; }
    const std::vector<ExampleNodeGroup>& groups() const { return m_groups; }
    bool covers(const ExampleNodeId& node) const;
    // Only for a complete index; InputError when the node is not in it, or its block fails its checksum.
    NodeExamples examples(const ExampleNodeId& node, int topK = kExampleTop) const;
    // The node's corpus maximum (0 for a node not in the index).
    float corpusMax(const ExampleNodeId& node) const;
    // Verifies every node block's checksum; InputError naming the first bad one.
    void verifyAll() const;

private:
    // Reads everything but the node blocks; with verifyBlocks or `blocks`, also those (each checked).
    friend std::shared_ptr<ExampleIndex> readExampleIndexFile(const std::filesystem::path& file, bool verifyBlocks,
                                                              std::vector<char>* blocks);
    ExampleIndex() = default;
    std::int64_t flatIndex(const ExampleNodeId& node) const; // -1 when absent
    std::vector<char> readBlock(std::int64_t node) const;

    std::filesystem::path m_file;
    ExampleIndexKey m_key;
    std::int64_t m_windows = 0, m_windowsDone = 0;
    int m_nCtx = 0;
    std::vector<int> m_tokens;
    std::vector<std::int64_t> m_docStarts;
    std::vector<ExampleNodeGroup> m_groups;
    std::int64_t m_nodeCount = 0;
    std::vector<float> m_maxima;
    std::vector<std::string> m_blockHashes; // raw SHA-256 per node
    std::int64_t m_blocksOffset = 0;
};

struct IndexOptions {
    std::filesystem::path cacheDir;                     // empty: defaultExampleCacheDir()
    std::optional<std::int64_t> tokenLimit;             // --tokens N
    // For `examples`: an index built with any token limit serves (only the content must match).
    bool anyTokenLimit = false;
    std::function<bool()> cancelled;                    // checked between windows
    std::function<void(const IndexProgress&)> progress;
    std::function<void(const std::string&)> message;    // "rebuilding: ...", "resuming ..."
    double checkpointSeconds = 20;                      // how often the partial index is saved
    // Test hook: cancel once this many windows are done in this run (rounded up to a whole pass).
    std::optional<std::int64_t> stopAfterWindows;
    // Windows per forward pass (window_batch.h); 0: as many as make kExampleRowsPerPass tokens (at
    // least one). The passes cover windows [k·W, (k+1)·W) (the last, shorter window in a pass of its
    // own), so every window is computed in the same company whether the index is built in one go or
    // resumed: the two give the same bytes.
    int windowsPerPass = 0;
    // Threads that run passes, one pass each with one intra-op thread. Split work stalls whenever
    // another process takes a core (measured: 10× slower on a busy 2-core machine); whole passes per
    // thread avoid that. The updates stay in window order, so the index does not depend on it.
    int workers = 1;
};

struct IndexResult {
    std::shared_ptr<const ExampleIndex> index;
    std::int64_t tokens = 0, windows = 0;
    double seconds = 0;              // of this call
    bool reused = false;             // a complete saved index was valid and used as is
    bool resumed = false;            // a partial saved index was continued
};

// $XDG_CACHE_HOME/circuitscope/examples (else ~/.cache/circuitscope/examples).
std::filesystem::path defaultExampleCacheDir();
// Where the index of (model, autoencoders, corpus) lives: named after their paths, so that a changed
// file finds its old index, recognises it as stale and replaces it.
std::filesystem::path exampleIndexPath(const std::filesystem::path& cacheDir, const Gpt2Model& model, const SaeSet& saes,
                                       const std::filesystem::path& corpus);

// Opens the saved index if it is complete and matches; resumes a matching partial one; else (missing,
// stale, corrupt) builds it, saying why through options.message. Throws Cancelled (after saving what
// was done) when options.cancelled returns true or stopAfterWindows is reached; InputError for bad input.
IndexResult ensureExampleIndex(const Gpt2Model& model, const SaeSet& saes, const std::filesystem::path& corpus,
                               const IndexOptions& options);

} // namespace cs
