// circuitscope-bench-examples: the dataset-examples figures of issue 14, as JSON on stdout.
//
//   circuitscope-bench-examples [--tokens N] [--ratio-tokens M] [--shape-windows W] [--nodes K]
//
// On the bundled demo model (resources/demo) and held-out demo text (the trainer's generator continued
// past the training documents, written once to $TMPDIR/circuitscope-bench/demo-heldout-*.txt):
//   - the plain forward pass's token throughput at the index's shape (one n_ctx window per pass),
//     without and with the demo's 8 autoencoders, over W windows (median of 3 passes over them), with
//     the same resources as the indexer: one thread (one intra-op thread), and two threads running a
//     window each; and, for reference, one stream with libtorch's default intra-op threads;
//   - indexing throughput over M tokens for neurons and heads, and with the 8 autoencoders, with one
//     and with two workers, as fractions of the plain forward pass with the same threads (floors 0.70
//     and 0.50);
//   - the CLI's job (one worker, the 8 autoencoders) over N tokens: wall time including tokenizing,
//     hashing and saving (floor: 1 M tokens ≤ 180 s);
//   - reopening the saved index (every checksum verified) and opening the Examples tab for K random
//     nodes (read one block, check it, turn ids into strings, decode the prompts; floor 20 ms).

#include "core/examples/corpus.h"
#include "core/examples/example_index.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"
#include "core/train/corpus.h"
#include "core/util/runtime.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <omp.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <future>
#include <random>

namespace fs = std::filesystem;

namespace {

double now()
{
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

fs::path heldOutCorpus(std::int64_t documents)
{
    const char* tmp = std::getenv("TMPDIR");
    const fs::path dir = fs::path(tmp && *tmp ? tmp : "/tmp") / "circuitscope-bench";
    fs::create_directories(dir);
    const fs::path file = dir / ("demo-heldout-" + std::to_string(documents) + ".txt");
    if (!fs::exists(file)) {
        // The demo's corpus stage (seed 1, 80000 training documents) continued: text it was not trained on.
        cs::train::CorpusOptions o;
        o.seed = 1;
        o.documents = 80000 + static_cast<int>(documents);
        auto docs = cs::train::generateCorpus(o);
        docs.erase(docs.begin(), docs.begin() + 80000);
        std::ofstream(file, std::ios::binary) << cs::train::corpusText(docs);
    }
    return file;
}

cs::SaeSet demoSaes(const cs::Gpt2Model& model, const fs::path& demo)
{
    cs::SaeSet s;
    for (int l = 0; l < model.config.nLayer; ++l) {
        s.add(cs::loadAndBindSae(std::to_string(l) + "=" + (demo / "saes" / ("mlp_" + std::to_string(l))).string(), model.config, cs::SaeRole::Mlp));
        s.add(cs::loadAndBindSae(std::to_string(l) + "=" + (demo / "saes" / ("attn_" + std::to_string(l))).string(), model.config, cs::SaeRole::Attn));
    }
    return s;
}

// Tokens per second of runForward over the first `windows` windows (median of 3 passes after a
// warm-up), on `streams` threads taking every streams-th window; intraOp 0 keeps libtorch's default
// intra-op threads, else each thread uses that many.
double forwardTokensPerSecond(const cs::Gpt2Model& model, const cs::SaeSet* saes, const std::vector<int>& tokens, std::int64_t windows,
                              int streams, int intraOp)
{
    const auto run = [&](int first) {
        int previous = (at::get_num_threads(), omp_get_max_threads());
        if (intraOp > 0)
            omp_set_num_threads(intraOp);
        cs::ForwardOptions fo;
        fo.saes = saes;
        c10::NoGradGuard noGrad;
        std::int64_t count = 0;
        for (std::int64_t w = first; w < windows; w += streams) {
            const cs::WindowSpan s = cs::windowAt(w, static_cast<std::int64_t>(tokens.size()), model.config.nCtx);
            const std::vector<int> ids(tokens.begin() + s.start, tokens.begin() + s.start + s.length);
            const cs::ActivationRecord rec = cs::runForward(model, ids, fo);
            count += s.length;
        }
        omp_set_num_threads(previous);
        return count;
    };
    std::vector<double> rates;
    for (int pass = 0; pass < 4; ++pass) {
        const double start = now();
        std::vector<std::future<std::int64_t>> others;
        for (int i = 1; i < streams; ++i)
            others.push_back(std::async(std::launch::async, run, i));
        std::int64_t count = run(0);
        for (auto& f : others)
            count += f.get();
        if (pass > 0) // the first pass warms up
            rates.push_back(count / (now() - start));
    }
    return median(rates);
}

struct IndexRun {
    double passTokensPerSecond = 0; // the streaming pass alone (from its progress)
    double seconds = 0;             // the whole call
    std::int64_t tokens = 0, windows = 0;
    fs::path file;
};

IndexRun index(const cs::Gpt2Model& model, const cs::SaeSet& saes, const fs::path& corpus, std::int64_t tokens, const fs::path& cache,
               int workers)
{
    fs::remove_all(cache);
    cs::IndexOptions o;
    o.workers = workers;
    o.cacheDir = cache;
    o.tokenLimit = tokens;
    o.checkpointSeconds = 1e9; // the figure is the pass; checkpoints are measured by the job's total
    IndexRun r;
    o.progress = [&](const cs::IndexProgress& p) { r.passTokensPerSecond = p.tokensPerSecond; };
    const double start = now();
    const cs::IndexResult res = cs::ensureExampleIndex(model, saes, corpus, o);
    r.seconds = now() - start;
    r.tokens = res.tokens;
    r.windows = res.windows;
    r.file = res.index->file();
    return r;
}

nlohmann::ordered_json figure(double value, double floor, bool atLeast)
{
    return {{"value", value}, {"floor", floor}, {"ratio", value / floor}, {"ok", atLeast ? value >= floor : value <= floor}};
}

} // namespace

int main(int argc, char** argv)
{
    std::int64_t tokens = 1000000, ratioTokens = 200000, shapeWindows = 400;
    int nodes = 200;
    // --index-only: just the CLI's job (for a profiler: perf record -g ... --index-only --tokens N).
    bool indexOnly = false;
    for (int i = 1; i < argc; ++i) {
        const bool hasValue = i + 1 < argc;
        if (!std::strcmp(argv[i], "--index-only"))
            indexOnly = true;
        else if (!std::strcmp(argv[i], "--tokens") && hasValue)
            tokens = std::atoll(argv[++i]);
        else if (!std::strcmp(argv[i], "--ratio-tokens") && hasValue)
            ratioTokens = std::atoll(argv[++i]);
        else if (!std::strcmp(argv[i], "--shape-windows") && hasValue)
            shapeWindows = std::atoll(argv[++i]);
        else if (!std::strcmp(argv[i], "--nodes") && hasValue)
            nodes = std::atoi(argv[++i]);
        else {
            std::cerr << "circuitscope-bench-examples: unknown argument '" << argv[i] << "'\n";
            return 2;
        }
    }
    cs::initializeRuntime();
    const int cores = at::get_num_threads();
    const fs::path demo = fs::path(CIRCUITSCOPE_SOURCE_DIR) / "resources" / "demo";
    const auto model = cs::loadHfGpt2(demo);
    const cs::SaeSet none, saes = demoSaes(*model, demo);
    // ≈ 57 tokens per document.
    const fs::path corpus = heldOutCorpus(std::max(tokens, ratioTokens) / 50 + 100);
    const double tokenizeStart = now();
    const cs::Corpus c = cs::readCorpus(corpus, *model->tokenizer, tokens);
    const double tokenizeSeconds = now() - tokenizeStart;
    if (c.tokenCount() < tokens)
        std::cerr << "warning: the corpus has only " << c.tokenCount() << " tokens\n";

    nlohmann::ordered_json forward, indexRate, ratios;
    const char* tmp = std::getenv("TMPDIR");
    const fs::path cacheBase = fs::path(tmp && *tmp ? tmp : "/tmp") / "circuitscope-bench" / "examples-cache";
    if (indexOnly) {
        const IndexRun job = index(*model, saes, corpus, tokens, cacheBase / "job", 1);
        std::cout << nlohmann::json{{"tokens", job.tokens}, {"seconds", job.seconds}, {"pass_tokens_per_second", job.passTokensPerSecond}}.dump()
                  << '\n';
        return 0;
    }
    for (const bool withSaes : {false, true}) {
        const char* what = withSaes ? "with_8_autoencoders" : "neurons_and_heads";
        const cs::SaeSet* set = withSaes ? &saes : nullptr;
        const double f1 = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, 1, 1);
        const double fN = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, cores, 1);
        const double fDefault = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, 1, 0);
        forward[what] = {{"one_thread", f1}, {std::to_string(cores) + "_threads_a_window_each", fN},
                         {"one_stream_default_intra_op_threads", fDefault}};
        const IndexRun i1 = index(*model, withSaes ? saes : none, corpus, ratioTokens, cacheBase / "ratio1", 1);
        const IndexRun iN = index(*model, withSaes ? saes : none, corpus, ratioTokens, cacheBase / "ratioN", cores);
        indexRate[what] = {{"one_worker", i1.passTokensPerSecond}, {std::to_string(cores) + "_workers", iN.passTokensPerSecond}};
        const double floor = withSaes ? 0.50 : 0.70;
        // The ratio is against the plain forward pass (no autoencoders) for both.
        const double plain1 = withSaes ? forward["neurons_and_heads"]["one_thread"].get<double>() : f1;
        const double plainN = withSaes ? forward["neurons_and_heads"][std::to_string(cores) + "_threads_a_window_each"].get<double>() : fN;
        ratios[what] = {{"one_worker_vs_plain_forward_one_thread", figure(i1.passTokensPerSecond / plain1, floor, true)},
                        {std::to_string(cores) + "_workers_vs_plain_forward_" + std::to_string(cores) + "_threads", figure(iN.passTokensPerSecond / plainN, floor, true)}};
        if (withSaes)
            ratios[what]["one_worker_vs_forward_with_the_autoencoders"] = i1.passTokensPerSecond / f1;
    }

    // The CLI's job: one worker (its default), the 8 autoencoders, N tokens.
    const IndexRun job = index(*model, saes, corpus, tokens, cacheBase / "job", 1);

    // Reopening the saved index, as the window does when it starts again.
    cs::IndexOptions reopen;
    reopen.cacheDir = cacheBase / "job";
    reopen.tokenLimit = tokens;
    const double reopenStart = now();
    const cs::IndexResult reused = cs::ensureExampleIndex(*model, saes, corpus, reopen);
    const double reopenSeconds = now() - reopenStart;

    // Opening the Examples tab: what ExamplesController::examples does for a node.
    std::mt19937 rng(1);
    std::vector<double> openMs;
    const auto& groups = reused.index->groups();
    const double lazyStart = now();
    const auto lazy = cs::ExampleIndex::open(job.file, cs::ExampleIndex::Verify::Lazy);
    const double lazyOpenMs = (now() - lazyStart) * 1000;
    for (int i = 0; i < nodes; ++i) {
        const auto& g = groups[rng() % groups.size()];
        const cs::ExampleNodeId id{g.kind, g.layer, static_cast<int>(rng() % static_cast<unsigned>(g.count))};
        const double start = now();
        const cs::NodeExamples x = lazy->examples(id);
        std::size_t chars = 0;
        const auto convert = [&](const cs::Example& e) {
            for (int t : e.tokenIds)
                chars += model->tokenizer->tokenString(t).size();
            const std::vector<int> ids(lazy->tokens().begin() + e.windowStart, lazy->tokens().begin() + e.shownStart + std::int64_t(e.tokenIds.size()));
            chars += model->tokenizer->decode(ids).size();
        };
        for (const auto& e : x.top)
            convert(e);
        for (const auto& b : x.bands)
            for (const auto& e : b.examples)
                convert(e);
        openMs.push_back((now() - start) * 1000);
        if (chars == 0)
            std::cerr << "no text for " << id.name() << '\n';
    }
    const double openMedian = median(openMs);
    const double openMax = *std::max_element(openMs.begin(), openMs.end());

    const cs::RuntimeInfo rt = cs::runtimeInfo();
    nlohmann::ordered_json out;
    out["model"] = "resources/demo (4 layers, d 128, n_ctx 64), 8 autoencoders (4 × 1024 MLP, 4 × 256 attention latents)";
    out["threads"] = rt.threads;
    out["blas"] = rt.blas;
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    out["openblas_coretype"] = coretype ? coretype : "";
    out["nodes"] = {{"neurons_and_heads", model->config.nLayer * (model->config.nHead + model->config.dMlp)},
                    {"with_8_autoencoders", groups.back().first + groups.back().count}};
    out["ratio_tokens"] = ratioTokens;
    out["forward_tokens_per_second"] = forward;
    out["forward_windows_timed"] = shapeWindows;
    out["index_pass_tokens_per_second"] = indexRate;
    out["index_vs_plain_forward"] = ratios;
    out["job"] = {{"tokens", job.tokens},
                  {"windows", job.windows},
                  {"workers", 1},
                  {"tokenize_seconds_alone", tokenizeSeconds},
                  {"seconds", job.seconds},
                  {"seconds_per_million_tokens", figure(job.seconds * 1e6 / std::max<std::int64_t>(1, job.tokens), 180, false)},
                  {"index_file_bytes", fs::file_size(job.file)}};
    out["reopen_seconds"] = {{"value", reopenSeconds}, {"reused", reused.reused}, {"note", "hashes model, autoencoders and corpus; verifies every checksum"}};
    out["examples_tab_ms"] = {{"lazy_open", lazyOpenMs}, {"median", figure(openMedian, 20, false)}, {"max", figure(openMax, 20, false)}, {"nodes", nodes}};
    std::cout << out.dump(2) << '\n';
    return 0;
}
