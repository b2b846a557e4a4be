// circuitscope-bench: the figures of product.md §6, as JSON on stdout.
//
//   circuitscope-bench [--model DIR] [--tokens N] [--repeats R] [--long N,N,...] [--saes-everywhere] [--large] [--analysis]
//                      [--sae-load LATENTS] [--sae-dtype f32|f16|bf16]
//
// --sae-dtype: the autoencoders of --saes-everywhere and the file of --sae-load in float16/bfloat16,
// kept so in memory as a file stored so is (WeightStorage::AsStored); default f32.
//
// Without --model it writes (once) a random GPT-2-small-shaped model (12 layers, d 768, 12 heads,
// d_mlp 3072, vocab 50,257, seed 0) to $TMPDIR/circuitscope-bench/gpt2-small-random with the project's
// own generator — in a child process, so that the generator's memory does not count in the peak RSS
// measured for opening it. Every time is the median of R runs after one warm-up run, and the machine's
// own GEMM rate is measured alongside, so each figure can be read as a ratio.

#include "core/analysis/analysis.h"
#include "core/analysis/converters.h"
#include "core/analysis/effects.h"
#include "core/io/safetensors.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/random_model.h"
#include "core/linalg/weight_product.h"
#include "core/sae/sparse_autoencoder.h"
#include "core/util/files.h"
#include "core/util/runtime.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sys/resource.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

double nowMs()
{
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// CPU time of every thread of the process: on a shared machine a stage's CPU time moves with its work
// far less than its wall time moves with the other processes' load.
double cpuMs()
{
    timespec t {};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

template <typename F>
double medianMs(int repeats, F&& f)
{
    f(); // warm-up
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i) {
        const double start = nowMs();
        f();
        t.push_back(nowMs() - start);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

double peakRssMb()
{
    rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0; // KiB on Linux
}

double currentRssMb()
{
    std::ifstream in("/proc/self/statm");
    long pages = 0, resident = 0;
    in >> pages >> resident;
    return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

std::string cpuModel()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0)
            return line.substr(line.find(':') + 2);
    }
    return {};
}

std::string envOr(const char* name)
{
    const char* v = std::getenv(name);
    return v ? v : "";
}

// Peak RSS since the last reset: writing "5" to clear_refs resets VmHWM (Linux >= 4.0), so each
// scenario's peak is its own and not the largest one before it.
void resetPeakRss()
{
    std::ofstream("/proc/self/clear_refs") << "5";
}

double vmHwmMb()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmHWM:", 0) == 0)
            return std::stod(line.substr(6)) / 1024.0; // kB
    }
    return 0;
}

// A prompt of at most `tokens` tokens of ordinary text (the bench model has GPT-2's tokenizer).
std::string promptOfTokens(const cs::Gpt2Model& model, int tokens)
{
    const char* words[] = {" When", " Mary", " and", " John", " went", " to", " the", " store,", " John", " gave", " a", " drink", " to"};
    std::string prompt = "Then";
    for (std::size_t i = 0;; ++i) {
        const std::string next = prompt + words[i % std::size(words)];
        if (static_cast<int>(model.tokenizer->encode(next).size()) > tokens)
            return prompt;
        prompt = next;
    }
}

fs::path sourceTokenizerDir()
{
    return fs::path(CIRCUITSCOPE_SOURCE_DIR) / "tests/data/gpt2-tokenizer";
}

// Runs the generator in a child process; returns false on failure.
bool generateInChild(const fs::path& dir)
{
    const pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        try {
            cs::RandomModelOptions o;
            o.config = cs::Gpt2Config{.nLayer = 12, .nHead = 12, .dModel = 768, .dMlp = 3072, .nCtx = 1024, .vocabSize = 50257};
            o.seed = 0;
            o.tokenizerDir = sourceTokenizerDir();
            const fs::path tmp = dir.string() + ".partial";
            fs::remove_all(tmp);
            cs::writeRandomHfModel(tmp, o);
            fs::rename(tmp, dir);
            _exit(0);
        } catch (const std::exception& e) {
            std::cerr << "generator: " << e.what() << '\n';
            _exit(1);
        }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A random ReLU autoencoder of `latents` latents on `inputWidth` inputs, in memory (loading is not
// what is measured here). Biases are negative so that a few percent of latents fire, as in trained SAEs.
std::shared_ptr<const cs::SparseAutoencoder> randomSae(const at::Tensor& sampleInputs, std::int64_t latents, std::uint64_t seed)
{
    at::manual_seed(seed);
    const std::int64_t inputWidth = sampleInputs.size(1);
    auto sae = std::make_shared<cs::SparseAutoencoder>();
    sae->source = "random";
    sae->format = "random";
    // Scaled so pre-activations on the model's own inputs have unit spread; a bias of −1.75 then lets
    // about 4 % of latents fire, like a trained autoencoder's L0.
    const double rms = sampleInputs.pow(2).mean().sqrt().item<double>();
    sae->encoder = at::randn({inputWidth, latents}) / (std::sqrt(static_cast<double>(inputWidth)) * rms);
    sae->encoderBias = at::full({latents}, -1.75f);
    sae->decoder = at::randn({latents, inputWidth}) / std::sqrt(static_cast<double>(inputWidth));
    sae->preBias = at::zeros({inputWidth});
    return sae;
}

// randomSae with its bias set so that on `sampleInputs` (the model's own activations at its location)
// the mean number of active latents per token is `meanL0`, as in trained autoencoders (≈ 50–150).
// With a half-precision `dtype` the two matrices are then rounded to it and kept so (the float32 ones
// freed), as loading a file stored in that dtype keeps them.
std::shared_ptr<const cs::SparseAutoencoder> calibratedSae(const at::Tensor& sampleInputs, std::int64_t latents, std::uint64_t seed,
                                                           double meanL0, at::ScalarType dtype)
{
    auto sae = std::const_pointer_cast<cs::SparseAutoencoder>(randomSae(sampleInputs, latents, seed));
    const at::Tensor pre = at::mm(sampleInputs - sae->preBias, sae->encoder).flatten();
    const double keep = meanL0 * static_cast<double>(sampleInputs.size(0));
    const double threshold = std::get<0>(pre.topk(static_cast<std::int64_t>(keep))).min().item<double>();
    sae->encoderBias = at::full({latents}, static_cast<float>(-threshold));
    sae->encoder = sae->encoder.to(dtype);
    sae->decoder = sae->decoder.to(dtype);
    return sae;
}

// "f32" | "f16" | "bf16" (--sae-dtype).
std::optional<at::ScalarType> saeDtypeFromName(const std::string& name)
{
    if (name == "f32")
        return at::kFloat;
    if (name == "f16")
        return at::kHalf;
    if (name == "bf16")
        return at::kBFloat16;
    return std::nullopt;
}

const char* saeDtypeName(at::ScalarType dtype)
{
    return dtype == at::kHalf ? "f16" : dtype == at::kBFloat16 ? "bf16" : "f32";
}

// A click, as the engine answers it (ui/engine buildNodeView's core calls): write (in context and per
// unit) and read top-20 from one pass over the tied vocabulary matrix, the pair map where there is one,
// and the activation at every token, from the cached record.
void click(const cs::AnalysisInput& in, const cs::NodeRef& node)
{
    const cs::NodeReads r = cs::residualReads(in, node);
    std::vector<at::Tensor> reads;
    for (const auto* read : {&r.read, &r.readQ, &r.readK}) {
        if (*read)
            reads.push_back(**read);
    }
    const cs::LensTopTokens lenses = cs::lensTopTokens(in.model, cs::residualWritePerUnit(in, node).unsqueeze(0), at::stack(reads), 20);
    (void)cs::scaledTopTokens(lenses.writes[0], cs::nodeActivation(in, node));
    if (node.kind == cs::NodeKind::AttnHead)
        (void)cs::headMaps(in, node.layer, node.index).writeMagnitude.contiguous();
    if (node.kind == cs::NodeKind::AttnSaeLatent)
        (void)cs::pairAttributionMap(in, node);
    (void)cs::activationByToken(in, node).contiguous();
}

// Issue 3's figures: a node click from the cached record, the forward+backward pass for effects with
// 32k-latent autoencoders on one layer, and a layer scan as a fraction of the GEMM rate.
nlohmann::ordered_json analysisFigures(const cs::Gpt2Model& model, const std::vector<int>& ids, int repeats, double gemmGflops)
{
    nlohmann::ordered_json out;
    const cs::Gpt2Config& c = model.config;
    const int layer = c.nLayer / 2;
    const std::int64_t latents = 32768;
    cs::SaeSet saes;
    const cs::ActivationRecord plain = cs::runForward(model, ids);
    saes.add(cs::bindSae(randomSae(plain.layers[layer].mlpPost, latents, 1), c, cs::SaeRole::Mlp, layer));
    saes.add(cs::bindSae(randomSae(plain.layers[layer].attnOut, latents, 2), c, cs::SaeRole::Attn, layer));
    const cs::ResolvedObjective objective = cs::logitDifference(ids[1], ids[2]);
    cs::ForwardOptions fo;
    fo.withGrad = true;
    fo.saes = &saes;

    std::optional<cs::ActivationRecord> record;
    std::optional<cs::Effects> effects;
    const double effectsMs = medianMs(std::max(3, repeats / 2), [&] {
        record.emplace(cs::runForward(model, ids, fo));
        const cs::AnalysisInput in{model, saes, *record};
        effects.emplace(cs::computeEffects(in, objective));
    });
    const cs::AnalysisInput in{model, saes, *record};
    const auto& mlpLatents = record->layers[layer].sae(cs::SaeLocation::MlpPostAct)->latents;
    const auto& attnLatents = record->layers[layer].sae(cs::SaeLocation::ResidDeltaAttn)->latents;
    const int last = static_cast<int>(ids.size()) - 1;
    const int activeMlp = static_cast<int>(mlpLatents[last].argmax().item<std::int64_t>());
    const int activeAttn = static_cast<int>(attnLatents[last].argmax().item<std::int64_t>());
    out["autoencoders"] = {{"layer", layer},
                           {"latents", latents},
                           {"mlp_mean_l0", (mlpLatents > 0).sum(1).to(at::kFloat).mean().item<double>()},
                           {"attn_mean_l0", (attnLatents > 0).sum(1).to(at::kFloat).mean().item<double>()}};
    out["forward_backward_with_saes_ms"] = effectsMs;
    out["forward_backward_target_ms"] = 400;

    const cs::NodeRef nodes[] = {{cs::NodeKind::MlpNeuron, layer, 100, last, 0},
                                 {cs::NodeKind::AttnHead, layer, 3, last, 5},
                                 {cs::NodeKind::MlpSaeLatent, layer, activeMlp, last, 0},
                                 {cs::NodeKind::AttnSaeLatent, layer, activeAttn, last, 0}};
    nlohmann::ordered_json clicks;
    for (const auto& node : nodes)
        clicks[node.name()] = medianMs(repeats, [&] { click(in, node); });
    out["click_ms"] = clicks;
    out["click_target_ms"] = 6;

    // The click's floor: one pass over the vocabulary matrix at the memory bandwidth measured here (a
    // sum over a 512 MB tensor, far beyond the caches). The ranked lens reads its half-precision copy
    // (half the bytes) and rescores a few candidates; the exact lens is the float32 product over all of it.
    {
        const at::Tensor big = at::ones({128 * 1024 * 1024});
        const double sumMs = medianMs(std::max(3, repeats / 2), [&] { (void)big.sum().item<float>(); });
        const double bandwidth = static_cast<double>(big.nbytes()) / 1e9 / (sumMs / 1e3);
        const double matrixMb = static_cast<double>(model.weights.tokenEmbedding.nbytes()) / 1e6;
        const cs::NodeReads reads = cs::residualReads(in, nodes[0]);
        const at::Tensor directions = at::stack({cs::residualWritePerUnit(in, nodes[0]) * model.weights.lnFinalGain, *reads.read});
        const double exactMs = medianMs(repeats, [&] { (void)cs::topTokens(*model.tokenizer, cs::timesWeightT(directions, model.weights.tokenEmbedding)[0], 20); });
        std::int64_t rescored = 0;
        const double rankedMs = medianMs(repeats, [&] { rescored = model.embeddingRanker->rank(directions, 20).candidatesRescored; });
        out["click_floor"] = {{"read_bandwidth_gb_s", bandwidth},
                              {"vocab_matrix_mb", matrixMb},
                              {"float32_pass_floor_ms", matrixMb / 1e3 / bandwidth * 1e3},
                              {"float16_pass_floor_ms", matrixMb / 2e3 / bandwidth * 1e3},
                              {"lens_exact_float32_ms", exactMs},
                              {"lens_ranked_float16_ms", rankedMs},
                              {"lens_ranked_candidates_rescored", rescored},
                              {"lens_ranked_over_float16_floor", rankedMs / (matrixMb / 2e3 / bandwidth * 1e3)},
                              {"neuron_click_over_float16_floor", clicks[nodes[0].name()].get<double>() / (matrixMb / 2e3 / bandwidth * 1e3)}};
    }

    // Layer scan: top-20 write tokens of every neuron of one layer.
    const double scanMs = medianMs(std::max(2, repeats / 4), [&] { (void)cs::scanNeuronWriteTokens(model, layer, 20); });
    const double scanGflop = 2.0 * c.dMlp * c.dModel * static_cast<double>(c.vocabSize) / 1e9;
    // The scan's products alone (its 256-neuron blocks times the unembedding, no top-k): the GEMM rate at
    // exactly its shape, which differs from the unembedding rate above (a transposed [V, d] matrix).
    const at::Tensor scanWeights = cs::asFloat32(model.weights.layers[static_cast<std::size_t>(layer)].mlpOutWeight);
    const double scanProductsMs = medianMs(std::max(2, repeats / 4), [&] {
        for (std::int64_t start = 0; start < c.dMlp; start += 256)
            (void)cs::timesWeightT(scanWeights.narrow(0, start, std::min<std::int64_t>(256, c.dMlp - start)), model.weights.unembedding);
    });
    out["layer_scan"] = {{"neurons", c.dMlp},
                         {"ms", scanMs},
                         {"gflop", scanGflop},
                         {"gflops", scanGflop / (scanMs / 1e3)},
                         {"fraction_of_gemm_rate", scanGflop / (scanMs / 1e3) / gemmGflops},
                         {"products_alone_ms", scanProductsMs},
                         {"fraction_of_its_products", scanProductsMs / scanMs},
                         {"target_fraction", 0.8}};
    return out;
}

// Issue 11's figures: interventions next to the plain Run (logit objective, forward + backward + effects)
// they are built from. A trace needs one forward and one backward pass, like the plain Run; ablations
// with their baseline and a two-prompt Run need two of each; each ratio divides by that many plain Runs.
nlohmann::ordered_json interventionFigures(const cs::Gpt2Model& model, int tokens, int repeats)
{
    const std::string prompt = promptOfTokens(model, tokens);
    const int n = static_cast<int>(model.tokenizer->encode(prompt).size());
    const cs::SaeSet noSaes;
    cs::AnalysisQuery plain;
    plain.prompt = prompt;
    plain.objective.targets = {" Mary"};
    plain.objective.distractors = {" John"};
    auto run = [&](const cs::AnalysisQuery& q) { (void)cs::analyzePrompt(model, noSaes, q); };
    const double plainMs = medianMs(repeats, [&] { run(plain); });

    cs::AnalysisQuery ablated = plain;
    for (const char* a : {"attn:5:1@-1", "mlp:3:100@*", "attn:8:4@-1,2=0.5"})
        ablated.ablations.push_back(cs::AblationSpec::parse(a));
    cs::AnalysisQuery neuronTrace = plain;
    neuronTrace.trace = cs::TraceSpec{cs::NodeRef::parse("mlp:8:100@-1"), std::nullopt, std::nullopt, std::nullopt};
    cs::AnalysisQuery headTrace = plain;
    headTrace.trace = cs::TraceSpec{cs::NodeRef::parse("attn:8:4@-1,2"), cs::TraceThrough::QK, std::nullopt, std::nullopt};
    cs::AnalysisQuery twoPrompts = plain;
    twoPrompts.second = cs::AnalysisQuery::SecondPrompt{prompt + " Then", {}, {}};

    nlohmann::ordered_json out;
    out["tokens"] = n;
    out["plain_run_ms"] = plainMs;
    out["note"] = "each figure next to the plain Runs it needs (forward + backward + effects each); target ratio <= 1.2";
    auto scenario = [&](const char* name, const cs::AnalysisQuery& q, int passes) {
        const double ms = medianMs(repeats, [&] { run(q); });
        out[name] = {{"ms", ms}, {"passes", passes}, {"floor_ms", passes * plainMs}, {"ratio", ms / (passes * plainMs)}};
    };
    scenario("three_ablations_with_baseline", ablated, 2);
    scenario("trace_neuron", neuronTrace, 1);
    scenario("trace_head_qk", headTrace, 1);
    scenario("two_prompts", twoPrompts, 2);
    return out;
}

// Issue 15's autoencoders everywhere: an MLP autoencoder on mlp_post_act and an attention one on
// resid_delta_attn at every layer (2 × n_layer, 32,768 latents each, mean L0 calibrated to ≈ 100 on
// the prompt), a Run with the logit objective as the window makes it (analysis, node table, grid).
// The floor is the encoder products (2·n·d_in·N each: the one part that is dense in the latents) plus
// the model's forward + activation-gradient backward, at the GEMM rate measured in this run; decoding,
// latent gradients and effects are needed only for the active latents. Also: when the model's own
// nodes are ready (staged), and the resident memory the autoencoders take.
nlohmann::ordered_json saesEverywhereFigures(const cs::Gpt2Model& model, int tokens, int repeats, double gemmGflops, at::ScalarType saeDtype)
{
    const cs::Gpt2Config& c = model.config;
    const std::int64_t latents = 32768;
    const double meanL0 = 100;
    cs::AnalysisQuery q;
    q.prompt = promptOfTokens(model, tokens);
    q.objective.targets = {" Mary"};
    q.objective.distractors = {" John"};
    const std::vector<int> ids = model.tokenizer->encode(q.prompt);
    const double n = static_cast<double>(ids.size());
    const double rssBefore = currentRssMb();
    cs::SaeSet saes;
    {
        const cs::ActivationRecord plain = cs::runForward(model, ids);
        for (int layer = 0; layer < c.nLayer; ++layer) {
            saes.add(cs::bindSae(calibratedSae(plain.layers[layer].mlpPost, latents, 100 + layer, meanL0, saeDtype), c, cs::SaeRole::Mlp, layer));
            saes.add(cs::bindSae(calibratedSae(plain.layers[layer].attnOut, latents, 200 + layer, meanL0, saeDtype), c, cs::SaeRole::Attn, layer));
        }
    }
    cs::releaseFreedMemory(); // the float32 matrices a half-precision autoencoder was rounded from
    const double rssWithSaes = currentRssMb();
    double encoderFlops = 0, saeBytes = 0;
    for (const cs::BoundSae& b : saes.all()) {
        encoderFlops += 2 * n * static_cast<double>(b.sae->inputWidth()) * static_cast<double>(latents);
        saeBytes += static_cast<double>(b.sae->encoder.nbytes() + b.sae->decoder.nbytes());
    }
    const double d = c.dModel, F = c.dMlp;
    const double modelFlops = 2 * (c.nLayer * n * (2 * (4 * d * d + 2 * d * F)) + 2 * d * c.vocabSize) + c.nLayer * n * 12 * n * d;
    // The encoder products themselves, timed at their own shapes ([n, d_in] × [d_in, N], one per
    // autoencoder): the GEMM rate of exactly this work on this machine now.
    std::vector<at::Tensor> sampleInputs;
    for (const cs::BoundSae& b : saes.all())
        sampleInputs.push_back(at::randn({static_cast<std::int64_t>(n), b.sae->inputWidth()}));
    // Half-precision autoencoders: the float32 products on a float32 copy of each encoder, made one at a
    // time (all of them would be the memory the storage saves), and the products as the Run computes
    // them, from the stored matrices (encoder_as_stored_ms).
    const bool halfSaes = saeDtype != at::kFloat;
    double encoderFloorMs = 0, encoderAsStoredMs = 0;
    if (!halfSaes) {
        encoderFloorMs = medianMs(std::max(3, repeats / 2), [&] {
            for (std::size_t i = 0; i < saes.all().size(); ++i)
                (void)at::mm(sampleInputs[i], saes.all()[i].sae->encoder);
        });
    } else {
        for (std::size_t i = 0; i < saes.all().size(); ++i) {
            const at::Tensor& stored = saes.all()[i].sae->encoder;
            encoderAsStoredMs += medianMs(std::max(3, repeats / 2), [&] { (void)cs::timesWeight(sampleInputs[i], stored); });
            const at::Tensor f32 = cs::asFloat32(stored);
            encoderFloorMs += medianMs(std::max(3, repeats / 2), [&] { (void)at::mm(sampleInputs[i], f32); });
        }
        cs::releaseFreedMemory();
    }
    const double floorMs = encoderFloorMs + modelFlops / 1e9 / gemmGflops * 1e3;

    double start = 0, modelNodesMs = 0;
    // Time per kind of stage of the last Run ("autoencoders of layer L" summed over the layers).
    std::map<std::string, double> stageMs;
    std::string currentStage;
    double stageStart = 0;
    const auto enterStage = [&](const std::string& what) {
        const double now = nowMs();
        if (!currentStage.empty())
            stageMs[currentStage] += now - stageStart;
        currentStage = what.rfind("autoencoders of layer", 0) == 0 ? "autoencoders (encode + latent effects)" : what;
        stageStart = now;
    };
    cs::AnalysisControl control;
    control.stage = enterStage;
    control.staged = [&](const cs::PromptAnalysis&, int done, int) {
        if (done == 0)
            modelNodesMs = nowMs() - start;
    };
    std::optional<cs::Analysis> analysis;
    std::vector<double> modelNodes;
    resetPeakRss();
    const auto run = [&] {
        start = nowMs();
        stageMs.clear();
        currentStage.clear();
        analysis.reset();
        analysis.emplace(cs::analyzePrompt(model, saes, q, control));
        enterStage("node table");
        (void)cs::nodeTable(model, saes, *analysis, 15);
        enterStage("grid");
        (void)cs::gridValues({model, saes, analysis->left.run.record}, analysis->left.run.effects, 16);
        enterStage("");
        modelNodes.push_back(modelNodesMs);
    };
    // The first Run with these autoencoders also computes the residual norms of the latents it meets
    // (kept per autoencoder), as a window's first Run after loading them does.
    const double firstStart = nowMs();
    run();
    const double firstRunMs = nowMs() - firstStart;
    modelNodes.clear();
    const double ms = medianMs(repeats, run);
    std::sort(modelNodes.begin(), modelNodes.end());
    double l0 = 0;
    int active = 0;
    for (const auto& layer : analysis->left.run.record.layers)
        for (const auto& sae : layer.saes) {
            l0 += (sae.latents > 0).sum().item<double>() / n;
            ++active;
        }
    nlohmann::ordered_json out = {{"tokens", n},
            {"autoencoders", saes.all().size()},
            {"autoencoder_dtype", saeDtypeName(saeDtype)},
            {"latents_each", latents},
            {"mean_l0_measured", l0 / std::max(active, 1)},
            {"run_ms", ms},
            {"first_run_ms", firstRunMs},
            {"model_nodes_ready_ms", modelNodes[modelNodes.size() / 2]},
            {"stages_of_last_run_ms", stageMs},
            {"encoder_gflop", encoderFlops / 1e9},
            {"encoder_floor_ms", encoderFloorMs},
            {"floor_ms", floorMs},
            {"encoder_gemm_gflops", encoderFlops / 1e9 / (encoderFloorMs / 1e3)},
            {"note", "floor = the encoder products timed at their shapes + the model's forward and activation-gradient backward at the square GEMM rate"},
            {"ratio", ms / floorMs},
            {"ratio_to_encoder_floor", ms / encoderFloorMs},
            {"target_ms", 1500},
            {"autoencoder_weights_mb", saeBytes / (1024.0 * 1024.0)},
            {"rss_added_by_autoencoders_mb", rssWithSaes - rssBefore},
            {"peak_rss_mb", vmHwmMb()}};
    if (halfSaes) {
        out["encoder_as_stored_ms"] = encoderAsStoredMs;
        out["encoder_as_stored_ratio"] = encoderAsStoredMs / encoderFloorMs;
    }
    return out;
}

// Issue 15's long prompts: a Run (forward + backward + every effect, node table and grid, logit objective, no autoencoders)
// at several lengths, next to its floor. The floor is the forward pass's FLOPs (the unembedding of the
// last position only: the objective needs no other logits) plus the activation-gradient backward pass,
// which for every forward product computes one product of the same size (weights need no gradient;
// attention: dQ, dK from dS and dP, dV from dZ: twice the forward's two n² products), at the GEMM rate
// measured in this run. Peak RSS is each Run's own (VmHWM reset before it).
// The large-model scenario (issue 15, item 3): each of layer 0's four products at the prompt's length,
// with the weight as stored (float16/bfloat16 or float32) and with a float32 copy, so the cost of
// computing in float32 from half-precision storage is a ratio measured in the same run.
nlohmann::ordered_json weightProductFigures(const cs::Gpt2Model& model, int tokens, int repeats)
{
    const cs::Gpt2LayerWeights& lw = model.weights.layers.at(0);
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& [name, stored] : {std::pair<const char*, at::Tensor>{"attn.c_attn", lw.attnQkvWeight},
                                       {"attn.c_proj", lw.attnOutWeight},
                                       {"mlp.c_fc", lw.mlpInWeight},
                                       {"mlp.c_proj", lw.mlpOutWeight}}) {
        const at::Tensor x = at::randn({tokens, stored.size(0)});
        const at::Tensor g = at::randn({tokens, stored.size(1)});
        const at::Tensor full = cs::asFloat32(stored).contiguous();
        const double gflop = 2.0 * tokens * static_cast<double>(stored.numel()) / 1e9;
        const double storedMs = medianMs(repeats, [&] { (void)cs::timesWeight(x, stored); });
        const double floatMs = medianMs(repeats, [&] { (void)cs::timesWeight(x, full); });
        const double storedBackMs = medianMs(repeats, [&] { (void)cs::timesWeightT(g, stored); });
        const double floatBackMs = medianMs(repeats, [&] { (void)cs::timesWeightT(g, full); });
        out.push_back({{"weight", name},
                       {"shape", {stored.size(0), stored.size(1)}},
                       {"dtype", std::string(c10::toString(stored.scalar_type()))},
                       {"x_times_w_ms", storedMs},
                       {"float32_copy_ms", floatMs},
                       {"ratio", storedMs / floatMs},
                       {"gflops", gflop / (storedMs / 1e3)},
                       {"g_times_wt_ms", storedBackMs},
                       {"float32_copy_backward_ms", floatBackMs},
                       {"backward_ratio", storedBackMs / floatBackMs}});
    }
    return out;
}

nlohmann::ordered_json longPromptFigures(const cs::Gpt2Model& model, const std::vector<int>& lengths, int repeats, double gemmGflops)
{
    const cs::Gpt2Config& c = model.config;
    const cs::SaeSet noSaes;
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const int wanted : lengths) {
        if (wanted > c.nCtx)
            continue;
        cs::AnalysisQuery q;
        q.prompt = promptOfTokens(model, wanted);
        q.objective.targets = {" Mary"};
        q.objective.distractors = {" John"};
        const double n = static_cast<double>(model.tokenizer->encode(q.prompt).size());
        const double d = c.dModel, F = c.dMlp;
        const double forwardFlops = c.nLayer * n * (2 * (4 * d * d + 2 * d * F) + 4 * n * d) + 2 * d * c.vocabSize;
        const double backwardFlops = c.nLayer * n * (2 * (4 * d * d + 2 * d * F) + 8 * n * d) + 2 * d * c.vocabSize;
        const double floorMs = (forwardFlops + backwardFlops) / 1e9 / gemmGflops * 1e3;
        resetPeakRss();
        const double rssBefore = currentRssMb();
        // Where the time goes: the stages analyzePrompt reports, timed from one stage to the next.
        std::vector<std::pair<std::string, double>> stages;
        std::vector<double> stageRss, stagePeak, stageCpu; // resident and peak resident memory, CPU time when each stage starts
        cs::AnalysisControl control;
        control.stage = [&](const std::string& what) {
            stages.emplace_back(what, nowMs());
            stageCpu.push_back(cpuMs());
            stageRss.push_back(currentRssMb());
            stagePeak.push_back(vmHwmMb());
        };
        std::optional<cs::Analysis> analysis;
        const double ms = medianMs(repeats, [&] {
            stages.clear();
            stageRss.clear();
            stagePeak.clear();
            stageCpu.clear();
            analysis.reset();
            analysis.emplace(cs::analyzePrompt(model, noSaes, q, control));
            // What the engine adds before the window shows the Run: the node table and the grid.
            control.stage("node table");
            (void)cs::nodeTable(model, noSaes, *analysis, 15);
            control.stage("grid");
            (void)cs::gridValues({model, noSaes, analysis->left.run.record}, analysis->left.run.effects, 16);
            control.stage("end");
        });
        const double peakRss = vmHwmMb();
        nlohmann::ordered_json breakdown;
        for (std::size_t i = 0; i + 1 < stages.size(); ++i)
            breakdown[stages[i].first] = {{"ms", stages[i + 1].second - stages[i].second},
                                          {"cpu_ms", stageCpu[i + 1] - stageCpu[i]},
                                          {"rss_at_start_mb", stageRss[i]},
                                          {"peak_rss_at_end_mb", stagePeak[i + 1]}};
        // The click on the analysis just made, as the window asks for it (medians over R clicks).
        const cs::AnalysisInput in{model, noSaes, analysis->left.run.record};
        const int last = static_cast<int>(n) - 1;
        nlohmann::ordered_json clicks;
        for (const cs::NodeRef& node : {cs::NodeRef{cs::NodeKind::MlpNeuron, c.nLayer / 2, 100, last, 0},
                                        cs::NodeRef{cs::NodeKind::AttnHead, c.nLayer / 2, 3, last, last / 2}})
            clicks[node.name()] = medianMs(repeats, [&] { click(in, node); });
        out.push_back({{"tokens", n},
                       {"run_ms", ms},
                       {"stages_of_last_run", breakdown},
                       {"cpu_ms_of_last_run", stageCpu.back() - stageCpu.front()},
                       {"floor_gflop", (forwardFlops + backwardFlops) / 1e9},
                       {"floor_ms", floorMs},
                       {"ratio", ms / floorMs},
                       {"target_ratio", 2.0},
                       {"rss_before_mb", rssBefore},
                       {"peak_rss_mb", peakRss},
                       {"target_peak_rss_mb", 2048},
                       {"click_ms", clicks},
                       {"click_target_ms", 50}});
    }
    return out;
}

// Loading a SAELens autoencoder of `latents` latents on GPT-2 small's residual stream (d_in 768) from
// sae_weights.safetensors (written on first use): the load's time and its memory, as the load's own
// peak over the RSS before it (VmHWM reset) and the RSS it keeps. The weights are 2 × 768 × latents
// float32; a load that copies a matrix once more peaks one matrix above what it keeps.
nlohmann::ordered_json saeLoadFigures(std::int64_t latents, int repeats, at::ScalarType dtype)
{
    const std::int64_t dIn = 768;
    const std::string suffix = dtype == at::kFloat ? "" : std::string("-") + saeDtypeName(dtype);
    const fs::path dir = fs::temp_directory_path() / "circuitscope-bench" / ("saelens-" + std::to_string(latents) + suffix);
    if (!fs::exists(dir / "sae_weights.safetensors")) {
        fs::create_directories(dir);
        at::manual_seed(7);
        cs::writeSafetensors(dir / "sae_weights.safetensors", {{"W_enc", (at::randn({dIn, latents}) / 28.0).to(dtype)},
                                                               {"W_dec", (at::randn({latents, dIn}) / 28.0).to(dtype)},
                                                               {"b_enc", at::full({latents}, -0.5f)},
                                                               {"b_dec", at::zeros({dIn})}});
        const nlohmann::json cfg = {{"architecture", "standard"}, {"d_in", dIn}, {"d_sae", latents}, {"activation_fn", "relu"},
                                    {"hook_name", "blocks.6.hook_resid_pre"}, {"apply_b_dec_to_input", true},
                                    {"normalize_activations", "none"}};
        cs::writeFileAtomically(dir / "cfg.json", cfg.dump(2));
    }
    std::vector<double> ms, peak, held;
    double inMemoryMb = 0;
    for (int r = 0; r < repeats; ++r) {
        // The runtime's allocator keeps freed blocks for reuse (core/util/runtime.cpp): hand the last
        // load's back, or this load would reuse them and look smaller.
        cs::releaseFreedMemory();
        const double before = currentRssMb();
        resetPeakRss();
        const double start = nowMs();
        {
            const cs::SparseAutoencoder sae = cs::loadSaeLensSae(dir);
            ms.push_back(nowMs() - start);
            inMemoryMb = static_cast<double>(sae.byteCount()) / (1024.0 * 1024.0);
            held.push_back(currentRssMb() - before);
            peak.push_back(vmHwmMb() - before);
        }
    }
    const auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    const double weightsMb = 2.0 * static_cast<double>(dIn * latents) * at::elementSize(dtype) / (1024.0 * 1024.0);
    return {{"latents", latents},
            {"d_in", dIn},
            {"dtype", saeDtypeName(dtype)},
            {"file_mb", static_cast<double>(fs::file_size(dir / "sae_weights.safetensors")) / (1024.0 * 1024.0)},
            {"weights_mb", weightsMb},
            {"in_memory_mb", inMemoryMb},
            {"load_ms_median", median(ms)},
            {"peak_over_before_mb_median", median(peak)},
            {"peak_over_before_mb_max", *std::max_element(peak.begin(), peak.end())},
            {"held_mb_median", median(held)},
            {"repeats", repeats}};
}

} // namespace

int main(int argc, char** argv)
{
    fs::path modelDir;
    int tokens = 64;
    int repeats = 10;
    std::vector<int> longLengths;
    bool saesEverywhere = false;
    bool large = false;
    bool analysisOnly = false;
    std::int64_t saeLoadLatents = 0;
    at::ScalarType saeDtype = at::kFloat;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--model" && i + 1 < argc)
            modelDir = argv[++i];
        else if (a == "--tokens" && i + 1 < argc)
            tokens = std::atoi(argv[++i]);
        else if (a == "--long" && i + 1 < argc) {
            // --long 64,256,1024: only the long-prompt Runs (issue 15), each with its floor and peak RSS.
            std::string list = argv[++i];
            for (std::size_t pos = 0; pos <= list.size();) {
                const std::size_t comma = std::min(list.find(',', pos), list.size());
                longLengths.push_back(std::atoi(list.substr(pos, comma - pos).c_str()));
                pos = comma + 1;
            }
        } else if (a == "--large")
            large = true; // only open, the products with the stored weights and a Run at --tokens (issue 15)
        else if (a == "--saes-everywhere")
            saesEverywhere = true; // only the Run with autoencoders on every layer (issue 15)
        else if (a == "--analysis")
            analysisOnly = true; // only the 64-token clicks with their floors, autoencoders on one layer, the layer scan
        else if (a == "--repeats" && i + 1 < argc)
            repeats = std::max(1, std::atoi(argv[++i]));
        else if (a == "--sae-load" && i + 1 < argc)
            saeLoadLatents = std::max(1, std::atoi(argv[++i])); // only loading a SAELens autoencoder of N latents
        else if (a == "--sae-dtype" && i + 1 < argc && saeDtypeFromName(argv[i + 1]))
            saeDtype = *saeDtypeFromName(argv[++i]);
        else {
            std::cerr << "usage: circuitscope-bench [--model DIR] [--tokens N] [--repeats R] [--long N,N,...] [--saes-everywhere] "
                         "[--large] [--analysis] [--sae-load LATENTS] [--sae-dtype f32|f16|bf16]\n";
            return 2;
        }
    }
    nlohmann::ordered_json out;
    if (saeLoadLatents > 0) {
        try {
            cs::initializeRuntime();
            out["sae_load"] = saeLoadFigures(saeLoadLatents, repeats, saeDtype);
        } catch (const std::exception& e) {
            std::cerr << "circuitscope-bench: " << e.what() << '\n';
            return 1;
        }
        std::cout << out.dump(2) << '\n';
        return 0;
    }
    try {
        if (modelDir.empty()) {
            modelDir = fs::temp_directory_path() / "circuitscope-bench" / "gpt2-small-random";
            if (!fs::exists(modelDir / "config.json")) {
                fs::create_directories(modelDir.parent_path());
                // Before any libtorch thread pool exists: forking after OpenMP started is unsafe.
                if (!generateInChild(modelDir)) {
                    std::cerr << "circuitscope-bench: could not generate the benchmark model\n";
                    return 1;
                }
            }
        }
        cs::initializeRuntime();
        const cs::RuntimeInfo rt = cs::runtimeInfo();
        out["machine"] = {{"cpu", cpuModel()},
                          {"cores", static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))},
                          {"threads", rt.threads},
                          {"blas", rt.blas},
                          {"blas_library", rt.blasLibrary},
                          {"OPENBLAS_CORETYPE", envOr("OPENBLAS_CORETYPE")},
                          {"OPENBLAS_L2_SIZE", envOr("OPENBLAS_L2_SIZE")}};

        // --- open ---
        const double rssBefore = currentRssMb();
        const double t0 = nowMs();
        const auto model = cs::loadHfGpt2(modelDir);
        const double openMs = nowMs() - t0;
        const double weightsMb = static_cast<double>(fs::file_size(model->weightsFile)) / (1024.0 * 1024.0);
        const double peakAfterOpen = peakRssMb();
        const auto& c = model->config;
        out["model"] = {{"path", modelDir.string()},
                        {"n_layer", c.nLayer},
                        {"d_model", c.dModel},
                        {"n_head", c.nHead},
                        {"d_mlp", c.dMlp},
                        {"vocab_size", c.vocabSize},
                        {"parameters", model->weights.parameterCount()}};
        out["open"] = {{"ms", openMs},
                       {"target_ms", 1500},
                       {"weights_mb", weightsMb},
                       {"rss_before_open_mb", rssBefore},
                       {"peak_rss_mb", peakAfterOpen},
                       {"peak_rss_over_weights", peakAfterOpen / weightsMb},
                       {"target_peak_rss_over_weights", 1.3},
                       {"note", "page cache warm (the file was read before); peak RSS includes the libraries (rss_before_open_mb)"}};

        // --- GEMM rate ---
        {
            // Two GEMMs run here: the system BLAS (ATen's at::mm: attention's products) and oneDNN's sgemm
            // (cs::timesWeight: every product with a weight). The floors use the faster of the two.
            const at::Tensor a = at::randn({tokens, c.dModel});
            const at::Tensor b = at::randn({c.dModel, c.vocabSize});
            const double gflop = 2.0 * tokens * c.dModel * static_cast<double>(c.vocabSize) / 1e9;
            const double sqGflop = 2.0 * 1024 * 1024 * 1024 / 1e9;
            const at::Tensor s1 = at::randn({1024, 1024}), s2 = at::randn({1024, 1024});
            const double blasMs = medianMs(repeats, [&] { (void)at::mm(a, b); });
            const double blasSqMs = medianMs(repeats, [&] { (void)at::mm(s1, s2); });
            const double ownMs = medianMs(repeats, [&] { (void)cs::timesWeight(a, b); });
            const double ownSqMs = medianMs(repeats, [&] { (void)cs::timesWeight(s1, s2); });
            const double ms = std::min(blasMs, ownMs), msSq = std::min(blasSqMs, ownSqMs);
            out["gemm"] = {{"unembed_shape", {tokens, c.dModel, c.vocabSize}},
                           {"unembed_ms", ms},
                           {"unembed_gflops", gflop / (ms / 1e3)},
                           {"square_1024_ms", msSq},
                           {"square_1024_gflops", sqGflop / (msSq / 1e3)},
                           {"system_blas", {{"unembed_gflops", gflop / (blasMs / 1e3)}, {"square_1024_gflops", sqGflop / (blasSqMs / 1e3)}}},
                           {"weight_products_onednn", {{"unembed_gflops", gflop / (ownMs / 1e3)}, {"square_1024_gflops", sqGflop / (ownSqMs / 1e3)}}},
                           {"note", "the rates above (the floors') are the faster of the system BLAS and oneDNN's sgemm"}};
        }

        if (saesEverywhere) {
            out["saes_everywhere"] = saesEverywhereFigures(*model, tokens, repeats, out["gemm"]["square_1024_gflops"].get<double>(), saeDtype);
            std::cout << out.dump(2) << '\n';
            return 0;
        }
        if (large) {
            out["model"]["weights_in_memory_mb"] = static_cast<double>(model->weights.byteCount()) / (1024.0 * 1024.0);
            out["weight_products"] = weightProductFigures(*model, tokens, repeats);
            out["run"] = longPromptFigures(*model, {tokens}, repeats, out["gemm"]["square_1024_gflops"].get<double>());
            // A second floor: the layers' products at this prompt's shapes with float32 weights, timed above
            // (forward x·W and backward g·Wᵀ of each matrix, times the layers). At 64 tokens these skinny
            // products run well below the square GEMM rate the first floor uses.
            double productsMs = 0;
            for (const auto& p : out["weight_products"])
                productsMs += p["float32_copy_ms"].get<double>() + p["float32_copy_backward_ms"].get<double>();
            productsMs *= model->config.nLayer;
            auto& run = out["run"][0];
            run["products_floor_ms"] = productsMs;
            run["ratio_to_products_floor"] = run["run_ms"].get<double>() / productsMs;
            out["peak_rss_mb"] = peakRssMb();
            out["peak_rss_over_weights"] = peakRssMb() / out["open"]["weights_mb"].get<double>();
            std::cout << out.dump(2) << '\n';
            return 0;
        }
        if (!longLengths.empty()) {
            out["long_prompts"] = longPromptFigures(*model, longLengths, repeats, out["gemm"]["square_1024_gflops"].get<double>());
            out["peak_rss_mb"] = peakRssMb();
            std::cout << out.dump(2) << '\n';
            return 0;
        }

        // --- forward with the full activation record ---
        std::vector<int> ids(static_cast<std::size_t>(tokens));
        for (int i = 0; i < tokens; ++i)
            ids[static_cast<std::size_t>(i)] = (i * 7919 + 13) % c.vocabSize;
        if (analysisOnly) {
            out["analysis"] = analysisFigures(*model, ids, repeats, out["gemm"]["unembed_gflops"].get<double>());
            std::cout << out.dump(2) << '\n';
            return 0;
        }
        const double fwdMs = medianMs(repeats, [&] { (void)cs::runForward(*model, ids); });
        cs::ForwardOptions withGrad;
        withGrad.withGrad = true;
        const double fwdBwdMs = medianMs(repeats, [&] {
            const cs::ActivationRecord rec = cs::runForward(*model, ids, withGrad);
            const at::Tensor objective = rec.logits[tokens - 1][0] - rec.logits[tokens - 1][1];
            objective.backward();
        });
        // Forward FLOPs: per token and layer 2·(3d² + d² + 2·d·F) for the products plus the attention
        // products 2·2·n·d (scores and weighted sum, full n as computed), plus the unembedding.
        const double n = tokens, d = c.dModel, F = c.dMlp;
        const double flops = c.nLayer * n * (2 * (4 * d * d + 2 * d * F) + 4 * n * d) + 2 * n * d * c.vocabSize;
        out["forward"] = {{"tokens", tokens},
                          {"record_ms", fwdMs},
                          {"target_ms", 120},
                          {"gflop", flops / 1e9},
                          {"gflops", flops / 1e9 / (fwdMs / 1e3)},
                          {"with_grad_plus_backward_ms", fwdBwdMs},
                          {"repeats", repeats}};
        out["analysis"] = analysisFigures(*model, ids, repeats, out["gemm"]["unembed_gflops"].get<double>());
        out["interventions"] = interventionFigures(*model, tokens, repeats);
        out["peak_rss_mb"] = peakRssMb();
    } catch (const std::exception& e) {
        std::cerr << "circuitscope-bench: " << e.what() << '\n';
        return 1;
    }
    std::cout << out.dump(2) << '\n';
    return 0;
}
