// circuitscope-bench-examples: the dataset-examples figures of issue 14, as JSON on stdout.
//
//   circuitscope-bench-examples [--tokens N] [--ratio-tokens M] [--shape-windows W] [--nodes K] [--index-only]
//
// On the bundled demo model (resources/demo) and held-out demo text (the trainer's generator continued
// past the training documents, written once to $TMPDIR/circuitscope-bench/demo-heldout-*.txt), on one
// thread (one intra-op thread) unless said otherwise:
//   - the forward pass's token throughput over W windows (median of 3 passes after a warm-up): one
//     window per pass (runForward, with and without logits, with the demo's 8 autoencoders), and at the
//     index's batch shape (16 windows per pass, window_batch.h: every neuron's and head's activation,
//     no logits), without and with the 8 autoencoders;
//   - the matrix products' rate at each of the pass's shapes (at::mm, 1 thread) and the pass's floor:
//     its FLOPs per token at those rates; each measured rate as a fraction of its floor;
//   - indexing throughput over M tokens for neurons and heads and with the 8 autoencoders (1 and 2
//     workers, and 1, 4, 16, 32 windows per pass), as fractions of the plain forward pass at the same
//     batch shape (floors 0.70 and 0.50) and of runForward's one-window pass;
//   - the CLI's job (one worker, the 8 autoencoders) over N tokens: wall time including tokenizing,
//     hashing and saving (floor: 1 M tokens ≤ 180 s);
//   - reopening the saved index (every checksum verified) and opening the Examples tab for K random
//     nodes (read one block, check it, turn ids into strings, decode the prompts; floor 20 ms).
// --index-only runs just the job (for a profiler: perf record -g ... --index-only --tokens N).
// The load average before and after is printed: other processes on the machine slow every figure.

#include "core/examples/corpus.h"
#include "core/examples/example_index.h"
#include "core/examples/window_batch.h"
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
                              int streams, int intraOp, bool logits = true)
{
    const auto run = [&](int first) {
        int previous = (at::get_num_threads(), omp_get_max_threads());
        if (intraOp > 0)
            omp_set_num_threads(intraOp);
        cs::ForwardOptions fo;
        fo.saes = saes;
        fo.logits = logits ? cs::RecordLogits::All : cs::RecordLogits::None;
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

// Tokens per second of the index's batched pass (window_batch.h) over the first `windows` windows in
// passes of `perPass` windows, on this thread with one intra-op thread (median of 3 after a warm-up).
double batchedTokensPerSecond(const cs::Gpt2Model& model, const cs::SaeSet& saes, const std::vector<int>& tokens, std::int64_t windows,
                              int perPass)
{
    const auto groups = cs::exampleNodeGroups(model.config, saes);
    const int nCtx = model.config.nCtx;
    windows = std::min<std::int64_t>(windows, static_cast<std::int64_t>(tokens.size()) / nCtx); // full windows only
    const int previous = (at::get_num_threads(), omp_get_max_threads());
    omp_set_num_threads(1);
    std::vector<double> rates;
    for (int pass = 0; pass < 4; ++pass) {
        const double start = now();
        std::int64_t count = 0;
        for (std::int64_t w = 0; w + perPass <= windows; w += perPass) {
            std::vector<std::vector<int>> ids;
            for (std::int64_t i = w; i < w + perPass; ++i)
                ids.emplace_back(tokens.begin() + i * nCtx, tokens.begin() + (i + 1) * nCtx);
            const auto acts = cs::windowBatchActivations(model, saes, groups, ids);
            count += perPass * nCtx;
        }
        if (pass > 0)
            rates.push_back(count / (now() - start));
    }
    omp_set_num_threads(previous);
    return median(rates);
}

// Seconds of one [m, k] × [k, n] float product on one thread (median of 5 timings of ≥ 50 ms each).
double gemmSeconds(std::int64_t m, std::int64_t k, std::int64_t n)
{
    const int previous = (at::get_num_threads(), omp_get_max_threads());
    omp_set_num_threads(1);
    const at::Tensor a = at::randn({m, k}), b = at::randn({k, n});
    at::Tensor c = at::mm(a, b);
    std::vector<double> per;
    for (int rep = 0; rep < 6; ++rep) {
        int calls = 0;
        const double start = now();
        double t = 0;
        do {
            at::mm_out(c, a, b);
            ++calls;
            t = now() - start;
        } while (t < 0.05);
        if (rep > 0)
            per.push_back(t / calls);
    }
    omp_set_num_threads(previous);
    return median(per);
}

// The matrix products of one index pass of `perPass` windows of n tokens, with their GFLOP/s on one
// thread, and the floor: the pass's product FLOPs per token at those rates (everything else free).
struct ProductFloor {
    nlohmann::ordered_json shapes = nlohmann::ordered_json::array();
    double flopsPerToken = 0;
    double secondsPerToken = 0;
    void add(const std::string& what, std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t batch, std::int64_t tokens)
    {
        const double s = gemmSeconds(m, k, n) * batch;
        const double flops = 2.0 * m * k * n * batch;
        flopsPerToken += flops / tokens;
        secondsPerToken += s / tokens;
        shapes.push_back({{"product", what}, {"shape", std::to_string(batch) + " × [" + std::to_string(m) + "×" + std::to_string(k) + "]·[" +
                                                             std::to_string(k) + "×" + std::to_string(n) + "]"},
                          {"gflops", flops / s / 1e9}});
    }
    double tokensPerSecond() const { return 1 / secondsPerToken; }
};

ProductFloor productFloor(const cs::Gpt2Config& c, const cs::SaeSet& saes, int perPass)
{
    ProductFloor f;
    const std::int64_t n = c.nCtx, R = perPass * n, d = c.dModel, F = c.dMlp, H = c.nHead, dh = c.dHead();
    for (int l = 0; l < c.nLayer; ++l) {
        const std::string L = "layer " + std::to_string(l) + " ";
        f.add(L + "qkv", R, d, 3 * d, 1, R);
        f.add(L + "scores", n, dh, n, perPass * H, R);
        f.add(L + "probs·v", n, n, dh, perPass * H, R);
        f.add(L + "attn out", R, d, d, 1, R);
        f.add(L + "mlp in", R, d, F, 1, R);
        f.add(L + "mlp out", R, F, d, 1, R);
    }
    for (const auto& s : saes.all())
        f.add(std::string(cs::saeKindName(s.location)) + ":" + std::to_string(s.layer) + " encoder", R, s.sae->inputWidth(), s.sae->latentCount(), 1, R);
    return f;
}

std::string loadAverage()
{
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    return a + " " + b + " " + c;
}

struct IndexRun {
    double passTokensPerSecond = 0; // the streaming pass alone (from its progress)
    double seconds = 0;             // the whole call
    std::int64_t tokens = 0, windows = 0;
    fs::path file;
};

IndexRun index(const cs::Gpt2Model& model, const cs::SaeSet& saes, const fs::path& corpus, std::int64_t tokens, const fs::path& cache,
               int workers, int perPass = 0)
{
    fs::remove_all(cache);
    cs::IndexOptions o;
    o.workers = workers;
    o.windowsPerPass = perPass;
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
    const std::string loadBefore = loadAverage();
    const int perPass = std::max(1, cs::kExampleRowsPerPass / model->config.nCtx); // the indexer's default
    const std::string shape = std::to_string(perPass) + "_windows_per_pass";
    nlohmann::ordered_json floors, sweep;
    // The matrix products' floor of the batched pass, without and with the autoencoders.
    const ProductFloor plainFloor = productFloor(model->config, none, perPass), saeFloor = productFloor(model->config, saes, perPass);
    floors["products_gflops_one_thread"] = saeFloor.shapes;
    for (const bool withSaes : {false, true}) {
        const char* what = withSaes ? "with_8_autoencoders" : "neurons_and_heads";
        const cs::SaeSet* set = withSaes ? &saes : nullptr;
        const cs::SaeSet& group = withSaes ? saes : none;
        const double f1 = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, 1, 1);
        const double f1NoLogits = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, 1, 1, false);
        const double fN = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, cores, 1);
        const double fDefault = forwardTokensPerSecond(*model, set, c.tokens, shapeWindows, 1, 0);
        const double batched = batchedTokensPerSecond(*model, group, c.tokens, shapeWindows, perPass);
        forward[what] = {{"one_window_per_pass", {{"one_thread", f1},
                                                  {"one_thread_no_logits", f1NoLogits},
                                                  {std::to_string(cores) + "_threads_a_window_each", fN},
                                                  {"one_stream_default_intra_op_threads", fDefault}}},
                         {shape + "_one_thread_no_logits", batched}};
        const ProductFloor& pf = withSaes ? saeFloor : plainFloor;
        floors[what] = {{"product_flops_per_token", pf.flopsPerToken},
                        {"floor_tokens_per_second", pf.tokensPerSecond()},
                        {"batched_forward_vs_floor", batched / pf.tokensPerSecond()}};
        const IndexRun i1 = index(*model, group, corpus, ratioTokens, cacheBase / "ratio1", 1);
        const IndexRun iN = index(*model, group, corpus, ratioTokens, cacheBase / "ratioN", cores);
        indexRate[what] = {{"one_worker", i1.passTokensPerSecond}, {std::to_string(cores) + "_workers", iN.passTokensPerSecond}};
        floors[what]["index_one_worker_vs_floor"] = i1.passTokensPerSecond / pf.tokensPerSecond();
        const double floor = withSaes ? 0.50 : 0.70;
        // The ratio is against the plain forward pass (no autoencoders) for both, at the same
        // batch shape; for reference also against runForward's one-window pass (with logits).
        const double plainBatched = withSaes ? forward["neurons_and_heads"][shape + "_one_thread_no_logits"].get<double>() : batched;
        const double plainOne = withSaes ? forward["neurons_and_heads"]["one_window_per_pass"]["one_thread"].get<double>() : f1;
        ratios[what] = {{"one_worker_vs_plain_forward_same_shape", figure(i1.passTokensPerSecond / plainBatched, floor, true)},
                        {std::to_string(cores) + "_workers_vs_plain_forward_same_shape_one_thread", iN.passTokensPerSecond / plainBatched},
                        {"one_worker_vs_plain_forward_one_window_with_logits", i1.passTokensPerSecond / plainOne}};
        if (withSaes) {
            ratios[what]["one_worker_vs_forward_with_the_autoencoders_same_shape"] = i1.passTokensPerSecond / batched;
            // The best ratio the products allow: plain products' time over the index's (equal rates).
            ratios[what]["ceiling_from_the_products"] = saeFloor.tokensPerSecond() / plainFloor.tokensPerSecond();
            for (const int w : {1, 4, 16, 32}) {
                const IndexRun r = index(*model, saes, corpus, ratioTokens / 2, cacheBase / "sweep", 1, w);
                sweep[std::to_string(w)] = r.passTokensPerSecond;
            }
        }
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
    const auto env = [](const char* name) { const char* v = std::getenv(name); return std::string(v ? v : ""); };
    out["openblas_coretype"] = env("OPENBLAS_CORETYPE");
    out["openblas_l2_size"] = env("OPENBLAS_L2_SIZE");
    out["load_average_before_after"] = {loadBefore, loadAverage()};
    out["nodes"] = {{"neurons_and_heads", model->config.nLayer * (model->config.nHead + model->config.dMlp)},
                    {"with_8_autoencoders", groups.back().first + groups.back().count}};
    out["ratio_tokens"] = ratioTokens;
    out["forward_tokens_per_second"] = forward;
    out["forward_windows_timed"] = shapeWindows;
    out["windows_per_pass"] = perPass;
    out["floors"] = floors;
    out["index_pass_tokens_per_second"] = indexRate;
    out["index_8_autoencoders_tokens_per_second_by_windows_per_pass"] = sweep;
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
