#include "core/train/model_trainer.h"

#include "core/io/safetensors.h"
#include "core/train/rng.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>

namespace cs::train {

namespace {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The parameters under their Hugging Face names (without the "transformer." prefix), GPT-2's
// initialization: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), gains 1, biases 0.
NamedTensors initParameters(const Gpt2Config& c, std::uint64_t seed)
{
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    const std::int64_t d = c.dModel, f = c.dMlp;
    const double projStd = 0.02 / std::sqrt(2.0 * c.nLayer);
    NamedTensors p;
    auto normal = [&](const std::string& name, std::vector<std::int64_t> shape, double std) {
        p.emplace_back(name, at::normal(0.0, std, shape, gen));
    };
    auto fill = [&](const std::string& name, std::int64_t n, double value) { p.emplace_back(name, at::full({n}, value)); };
    normal("wte.weight", {c.vocabSize, d}, 0.02);
    normal("wpe.weight", {c.nCtx, d}, 0.01);
    for (int i = 0; i < c.nLayer; ++i) {
        const std::string h = "h." + std::to_string(i) + ".";
        fill(h + "ln_1.weight", d, 1.0);
        fill(h + "ln_1.bias", d, 0.0);
        normal(h + "attn.c_attn.weight", {d, 3 * d}, 0.02);
        fill(h + "attn.c_attn.bias", 3 * d, 0.0);
        normal(h + "attn.c_proj.weight", {d, d}, projStd);
        fill(h + "attn.c_proj.bias", d, 0.0);
        fill(h + "ln_2.weight", d, 1.0);
        fill(h + "ln_2.bias", d, 0.0);
        normal(h + "mlp.c_fc.weight", {d, f}, 0.02);
        fill(h + "mlp.c_fc.bias", f, 0.0);
        normal(h + "mlp.c_proj.weight", {f, d}, projStd);
        fill(h + "mlp.c_proj.bias", d, 0.0);
    }
    fill("ln_f.weight", d, 1.0);
    fill("ln_f.bias", d, 0.0);
    for (auto& [name, t] : p)
        t.set_requires_grad(true);
    return p;
}

// The batched GPT-2 forward pass (HF Conv1D layout, gelu_new, tied unembedding): ids [B, T] → logits.
torch::Tensor forward(const Gpt2Config& c, const NamedTensors& params, const torch::Tensor& ids)
{
    std::size_t k = 0;
    auto next = [&]() -> const torch::Tensor& { return params[k++].second; };
    const torch::Tensor& wte = next();
    const torch::Tensor& wpe = next();
    const std::int64_t b = ids.size(0), t = ids.size(1), d = c.dModel, heads = c.nHead, dh = c.dHead();
    torch::Tensor x = wte.index_select(0, ids.reshape({-1})).reshape({b, t, d}) + wpe.slice(0, 0, t);
    const torch::Tensor mask = torch::ones({t, t}, torch::kBool).triu(1);
    const double eps = c.layerNormEps;
    for (int layer = 0; layer < c.nLayer; ++layer) {
        const auto& ln1g = next(); const auto& ln1b = next();
        const auto& wqkv = next(); const auto& bqkv = next();
        const auto& wo = next(); const auto& bo = next();
        const auto& ln2g = next(); const auto& ln2b = next();
        const auto& wfc = next(); const auto& bfc = next();
        const auto& wproj = next(); const auto& bproj = next();
        const torch::Tensor a = torch::layer_norm(x, {d}, ln1g, ln1b, eps);
        const torch::Tensor qkv = torch::addmm(bqkv, a.reshape({b * t, d}), wqkv).reshape({b, t, 3, heads, dh});
        const torch::Tensor q = qkv.select(2, 0).transpose(1, 2); // [B, H, T, dh]
        const torch::Tensor kk = qkv.select(2, 1).transpose(1, 2);
        const torch::Tensor v = qkv.select(2, 2).transpose(1, 2);
        torch::Tensor scores = torch::matmul(q, kk.transpose(-1, -2)) / std::sqrt(static_cast<double>(dh));
        scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
        const torch::Tensor z = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({b * t, d});
        x = x + torch::addmm(bo, z, wo).reshape({b, t, d});
        const torch::Tensor m = torch::layer_norm(x, {d}, ln2g, ln2b, eps).reshape({b * t, d});
        const torch::Tensor hidden = torch::gelu(torch::addmm(bfc, m, wfc), "tanh");
        x = x + torch::addmm(bproj, hidden, wproj).reshape({b, t, d});
    }
    const auto& lnfg = next(); const auto& lnfb = next();
    x = torch::layer_norm(x, {d}, lnfg, lnfb, eps);
    return torch::matmul(x, wte.t());
}

double learningRateAt(const ModelTrainOptions& o, int step)
{
    if (step < o.warmupSteps)
        return o.learningRate * (step + 1) / o.warmupSteps;
    const double progress = o.steps > o.warmupSteps ? double(step - o.warmupSteps) / (o.steps - o.warmupSteps) : 1.0;
    const double minLr = o.learningRate * o.minLearningRateFraction;
    return minLr + (o.learningRate - minLr) * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
}

// Window starts: half at document starts (so that position 0 sees a sentence start, as prompts do),
// half anywhere. Depends only on (seed, step).
torch::Tensor batchAt(const std::vector<int>& tokens, const std::vector<std::int64_t>& docStarts, std::uint64_t seed,
                      int step, int batch, int ctx)
{
    Rng rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(step) + 1);
    const std::int64_t span = static_cast<std::int64_t>(tokens.size()) - ctx - 1;
    std::vector<std::int64_t> out;
    out.reserve(static_cast<std::size_t>(batch) * (ctx + 1));
    for (int i = 0; i < batch; ++i) {
        std::int64_t start = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(span + 1)));
        if (i % 2 == 0 && !docStarts.empty())
            start = std::min(span, docStarts[rng.below(docStarts.size())]);
        for (int j = 0; j <= ctx; ++j)
            out.push_back(tokens[static_cast<std::size_t>(start + j)]);
    }
    return torch::tensor(out, torch::kLong).reshape({batch, ctx + 1});
}

nlohmann::json runIdentity(const ModelTrainOptions& o)
{
    return {{"config", o.config.toJson()}, {"seed", o.seed}, {"steps", o.steps}, {"batch_size", o.batchSize},
            {"warmup_steps", o.warmupSteps}, {"learning_rate", o.learningRate},
            {"min_lr_fraction", o.minLearningRateFraction}, {"weight_decay", o.weightDecay}};
}

void saveCheckpoint(const std::filesystem::path& dir, const NamedTensors& params, torch::optim::Optimizer& optimizer,
                    const nlohmann::json& identity, const std::vector<double>& losses)
{
    const auto tmp = dir.string() + ".tmp";
    const auto old = dir.string() + ".old";
    std::filesystem::remove_all(tmp);
    std::filesystem::create_directories(tmp);
    std::vector<torch::Tensor> tensors;
    for (const auto& [name, t] : params)
        tensors.push_back(t.detach());
    torch::save(tensors, tmp + "/parameters.pt");
    torch::save(optimizer, tmp + "/optimizer.pt");
    nlohmann::json state = {{"run", identity}, {"losses", losses}};
    writeFileAtomically(tmp + "/state.json", state.dump() + '\n');
    std::filesystem::remove_all(old);
    if (std::filesystem::exists(dir))
        std::filesystem::rename(dir, old);
    std::filesystem::rename(tmp, dir);
    std::filesystem::remove_all(old);
}

} // namespace

ModelTrainResult trainModel(const std::vector<int>& tokens, int documentSeparator, const ModelTrainOptions& o,
                            const std::filesystem::path& outDir, StorageDType storage)
{
    const Gpt2Config& c = o.config;
    if (c.nLayer < 1 || c.nHead < 1 || c.dModel < 1 || c.dModel % c.nHead != 0 || c.dMlp < 1 || c.nCtx < 2 || c.vocabSize < 2)
        throw InputError("model training: inconsistent shape (d_model must be a positive multiple of the head count)");
    if (o.steps < 1 || o.batchSize < 1 || o.warmupSteps < 0 || !(o.learningRate > 0))
        throw InputError("model training: steps, batch size and learning rate must be positive");
    if (static_cast<std::int64_t>(tokens.size()) < c.nCtx + 2)
        throw InputError("model training: the corpus has " + std::to_string(tokens.size()) +
                         " tokens, fewer than one context window (" + std::to_string(c.nCtx + 1) + ")");
    for (int id : tokens)
        if (id < 0 || id >= c.vocabSize)
            throw InputError("model training: token id " + std::to_string(id) + " is outside the vocabulary (" +
                             std::to_string(c.vocabSize) + ")");

    std::vector<std::int64_t> docStarts;
    for (std::size_t i = 0; i + 1 < tokens.size(); ++i)
        if (tokens[i] == documentSeparator)
            docStarts.push_back(static_cast<std::int64_t>(i + 1));

    NamedTensors params = initParameters(c, o.seed);
    std::vector<torch::Tensor> decayed, plain, allParams;
    for (const auto& [name, t] : params) {
        (t.dim() >= 2 ? decayed : plain).push_back(t);
        allParams.push_back(t);
    }
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decayed, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(o.learningRate).betas({0.9, 0.95}).weight_decay(o.weightDecay)));
    groups.emplace_back(plain, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(o.learningRate).betas({0.9, 0.95}).weight_decay(0.0)));
    torch::optim::AdamW optimizer(std::move(groups));

    ModelTrainResult result;
    const nlohmann::json identity = runIdentity(o);
    if (!o.checkpointDir.empty() && std::filesystem::exists(o.checkpointDir / "state.json")) {
        const auto state = readJsonFile(o.checkpointDir / "state.json", kMaxDocumentBytes);
        if (!state.is_object() || !state.contains("run") || !state.contains("losses") || !state["losses"].is_array())
            throwInputError(o.checkpointDir / "state.json", "not a checkpoint state (fields 'run' and 'losses')");
        if (state.at("run") != identity)
            throwInputError(o.checkpointDir, "holds a checkpoint of a different run (config, seed or schedule differ); "
                                             "remove it or choose another work directory");
        std::vector<torch::Tensor> saved;
        torch::load(saved, (o.checkpointDir / "parameters.pt").string());
        if (saved.size() != params.size())
            throwInputError(o.checkpointDir, "parameters.pt does not match the model");
        {
            torch::NoGradGuard noGrad;
            for (std::size_t i = 0; i < params.size(); ++i)
                params[i].second.copy_(saved[i]);
        }
        torch::load(optimizer, (o.checkpointDir / "optimizer.pt").string());
        result.losses = state.at("losses").get<std::vector<double>>();
        result.resumedFrom = static_cast<int>(result.losses.size());
    }

    for (int step = static_cast<int>(result.losses.size()); step < o.steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        const double lr = learningRateAt(o, step);
        for (auto& group : optimizer.param_groups())
            static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
        const torch::Tensor batch = batchAt(tokens, docStarts, o.seed, step, o.batchSize, c.nCtx);
        const torch::Tensor input = batch.slice(1, 0, c.nCtx);
        const torch::Tensor target = batch.slice(1, 1, c.nCtx + 1);
        optimizer.zero_grad();
        const torch::Tensor logits = forward(c, params, input);
        const torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, c.vocabSize}), target.reshape({-1}));
        loss.backward();
        torch::nn::utils::clip_grad_norm_(allParams, 1.0);
        optimizer.step();
        result.losses.push_back(loss.item<double>());
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int done = step + 1;
        if (o.progress)
            o.progress({done, o.steps, result.losses.back(), lr, double(o.batchSize) * c.nCtx / std::max(seconds, 1e-9)});
        const bool stopping = o.stopAfter >= 0 && done >= o.stopAfter && done < o.steps;
        if (!o.checkpointDir.empty() && (done % std::max(1, o.checkpointEvery) == 0 || done == o.steps || stopping))
            saveCheckpoint(o.checkpointDir, params, optimizer, identity, result.losses);
        if (stopping)
            return result;
    }
    result.finished = true;

    const at::ScalarType dtype = storage == StorageDType::F16 ? at::kHalf : storage == StorageDType::BF16 ? at::kBFloat16 : at::kFloat;
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& [name, t] : params)
        out.emplace_back("transformer." + name, t.detach().to(dtype).contiguous());
    std::filesystem::create_directories(outDir);
    writeSafetensors(outDir / "model.safetensors", out, {{"format", "pt"}});
    writeFileAtomically(outDir / "config.json", c.toJson().dump(2) + '\n');
    return result;
}

} // namespace cs::train
