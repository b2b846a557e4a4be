#include "core/train/sae_trainer.h"

#include "core/io/safetensors.h"
#include "core/model/forward.h"
#include "core/train/rng.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace cs::train {

ActivationSet collectActivations(const Gpt2Model& model, const std::vector<int>& tokens, std::int64_t offset, int tokenCount)
{
    const int ctx = model.config.nCtx;
    const int layers = model.config.nLayer;
    std::vector<std::vector<at::Tensor>> mlp(static_cast<std::size_t>(layers)), attn(static_cast<std::size_t>(layers));
    torch::NoGradGuard noGrad;
    for (int done = 0; done < tokenCount;) {
        const int n = std::min(ctx, tokenCount - done);
        const std::int64_t start = offset + done;
        if (start + n > static_cast<std::int64_t>(tokens.size()))
            throw InputError("autoencoder training: the corpus has too few tokens for " + std::to_string(tokenCount) +
                             " activations at offset " + std::to_string(offset));
        const std::vector<int> ids(tokens.begin() + start, tokens.begin() + start + n);
        const ActivationRecord record = runForward(model, ids);
        for (int l = 0; l < layers; ++l) {
            mlp[static_cast<std::size_t>(l)].push_back(record.layers[static_cast<std::size_t>(l)].mlpPost);
            attn[static_cast<std::size_t>(l)].push_back(record.layers[static_cast<std::size_t>(l)].attnOut);
        }
        done += n;
    }
    ActivationSet set;
    for (int l = 0; l < layers; ++l) {
        set.mlpPost.push_back(at::cat(mlp[static_cast<std::size_t>(l)]));
        set.attnOut.push_back(at::cat(attn[static_cast<std::size_t>(l)]));
    }
    return set;
}

SaeReport measureSae(const SparseAutoencoder& sae, const at::Tensor& x)
{
    torch::NoGradGuard noGrad;
    const SaeEncoding enc = encodeSae(sae, x);
    const at::Tensor recon = decodeSae(sae, enc.latents, enc);
    SaeReport r;
    r.latents = static_cast<int>(sae.latentCount());
    const double residual = (x - recon).pow(2).sum().item<double>();
    const double total = (x - x.mean(0, true)).pow(2).sum().item<double>();
    r.varianceExplained = total > 0 ? 1.0 - residual / total : 0.0;
    const at::Tensor active = enc.latents > 0;
    r.meanL0 = active.sum(1).to(at::kDouble).mean().item<double>();
    r.deadFraction = 1.0 - active.any(0).to(at::kDouble).mean().item<double>();
    return r;
}

void writeSaeLens(const SparseAutoencoder& sae, SaeLocation location, int layer, const std::filesystem::path& dir,
                  StorageDType storage)
{
    std::filesystem::create_directories(dir);
    const at::ScalarType dtype = storage == StorageDType::F16 ? at::kHalf : storage == StorageDType::BF16 ? at::kBFloat16 : at::kFloat;
    writeSafetensors(dir / "sae_weights.safetensors",
                     {{"W_enc", sae.encoder.to(dtype).contiguous()}, {"W_dec", sae.decoder.to(dtype).contiguous()},
                      {"b_enc", sae.encoderBias.to(dtype).contiguous()}, {"b_dec", sae.preBias.to(dtype).contiguous()}});
    const std::string hook = location == SaeLocation::MlpPostAct ? "mlp.hook_post" : "hook_attn_out";
    const nlohmann::ordered_json cfg = {
        {"architecture", "standard"},
        {"d_in", sae.inputWidth()},
        {"d_sae", sae.latentCount()},
        {"dtype", storage == StorageDType::F16 ? "float16" : "float32"},
        {"model_name", "circuitscope-demo"},
        {"hook_name", "blocks." + std::to_string(layer) + "." + hook},
        {"hook_layer", layer},
        {"hook_head_index", nullptr},
        {"activation_fn_str", "relu"},
        {"apply_b_dec_to_input", true},
        {"finetuning_scaling_factor", false},
        {"normalize_activations", "none"},
        {"context_size", 64},
    };
    // SAELens writes hook_head_index only when set; a null would be refused by our loader.
    nlohmann::ordered_json out;
    for (auto it = cfg.begin(); it != cfg.end(); ++it)
        if (!it.value().is_null())
            out[it.key()] = it.value();
    writeFileAtomically(dir / "cfg.json", out.dump(2) + '\n');
}

namespace {

SparseAutoencoder trainOne(const at::Tensor& data, const SaeTrainOptions& o, std::uint64_t seed)
{
    const std::int64_t n = data.size(0), width = data.size(1), latents = width * o.latentMultiplier;
    const at::Tensor mean = data.mean(0);
    const double scale = std::sqrt((data - mean).pow(2).sum(1).mean().item<double>()) + 1e-8;
    const at::Tensor x = data / scale; // centred inputs have unit mean squared norm

    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::Tensor dec = at::normal(0.0, 1.0, {latents, width}, gen);
    dec = dec / dec.norm(2, 1, true) * 0.1;
    torch::Tensor wDec = dec.clone().set_requires_grad(true);
    torch::Tensor wEnc = dec.t().clone().contiguous().set_requires_grad(true);
    torch::Tensor bEnc = torch::zeros({latents}).set_requires_grad(true);
    torch::Tensor bDec = (mean / scale).clone().set_requires_grad(true);
    torch::optim::Adam optimizer({wEnc, bEnc, wDec, bDec}, torch::optim::AdamOptions(o.learningRate));

    Rng rng(seed);
    at::Tensor fired = torch::zeros({latents}, torch::kBool);
    for (int step = 0; step < o.steps; ++step) {
        std::vector<std::int64_t> rows(static_cast<std::size_t>(o.batchSize));
        for (auto& r : rows)
            r = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n)));
        const torch::Tensor batch = x.index_select(0, torch::tensor(rows, torch::kLong));
        optimizer.zero_grad();
        const torch::Tensor alpha = torch::relu(torch::addmm(bEnc, batch - bDec, wEnc));
        const torch::Tensor recon = torch::addmm(bDec, alpha, wDec);
        const torch::Tensor mse = (recon - batch).pow(2).sum(1).mean();
        const torch::Tensor sparsity = (alpha * wDec.norm(2, 1)).sum(1).mean();
        const torch::Tensor loss = mse + o.l1Coefficient * sparsity;
        loss.backward();
        optimizer.step();
        fired |= (alpha.detach() > 0).any(0);
        const bool late = step >= o.steps * 3 / 4;
        if (o.resampleEvery > 0 && (step + 1) % o.resampleEvery == 0 && !late) {
            // Dead latents restart along the direction of a random input (minus the decoder bias).
            const at::Tensor dead = (~fired).nonzero().reshape({-1});
            torch::NoGradGuard noGrad;
            for (std::int64_t i = 0; i < dead.size(0); ++i) {
                const std::int64_t l = dead[i].item<std::int64_t>();
                at::Tensor dir = x[static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n)))] - bDec;
                dir = dir / (dir.norm() + 1e-8);
                wDec[l].copy_(dir * 0.1);
                wEnc.select(1, l).copy_(dir * 0.2);
                bEnc[l].fill_(0.0);
            }
            fired.zero_();
        }
        if (o.log && (step + 1) % std::max(1, o.steps / 5) == 0)
            o.log("  step " + std::to_string(step + 1) + "/" + std::to_string(o.steps) + " mse " +
                  std::to_string(mse.item<double>()) + " l1 " + std::to_string(sparsity.item<double>()));
    }

    // Back to the activations' units: α is unchanged when W_enc ÷ scale and W_dec, b_dec × scale.
    SparseAutoencoder sae;
    sae.format = "saelens";
    sae.encoder = (wEnc.detach() / scale).contiguous();
    sae.encoderBias = bEnc.detach().clone();
    sae.decoder = (wDec.detach() * scale).contiguous();
    sae.preBias = (bDec.detach() * scale).contiguous();
    return sae;
}

} // namespace

std::vector<SaeReport> trainSaes(const Gpt2Model& model, const std::vector<int>& tokens, const SaeTrainOptions& o,
                                 const std::filesystem::path& dir, StorageDType storage)
{
    if (o.latentMultiplier < 1 || o.steps < 1 || o.batchSize < 1 || o.trainingTokens < 1 || o.evalTokens < 1)
        throw InputError("autoencoder training: latent multiplier, steps, batch size and token counts must be positive");
    const std::int64_t evalOffset = static_cast<std::int64_t>(tokens.size()) - o.evalTokens;
    if (evalOffset < o.trainingTokens)
        throw InputError("autoencoder training: the corpus has " + std::to_string(tokens.size()) +
                         " tokens, fewer than the " + std::to_string(o.trainingTokens + o.evalTokens) + " requested");
    const ActivationSet train = collectActivations(model, tokens, 0, o.trainingTokens);
    const ActivationSet held = collectActivations(model, tokens, evalOffset, o.evalTokens);
    std::vector<SaeReport> reports;
    for (int l = 0; l < model.config.nLayer; ++l) {
        for (SaeLocation loc : {SaeLocation::MlpPostAct, SaeLocation::ResidDeltaAttn}) {
            const bool mlp = loc == SaeLocation::MlpPostAct;
            if (o.log)
                o.log(std::string("autoencoder ") + saeLocationName(loc) + " layer " + std::to_string(l));
            const auto& data = mlp ? train.mlpPost[static_cast<std::size_t>(l)] : train.attnOut[static_cast<std::size_t>(l)];
            SparseAutoencoder sae = trainOne(data, o, o.seed * 1000 + static_cast<std::uint64_t>(l) * 2 + (mlp ? 0 : 1));
            const auto out = dir / ((mlp ? "mlp_" : "attn_") + std::to_string(l));
            writeSaeLens(sae, loc, l, out, storage);
            // Measure what was written (after F16 rounding, when stored so).
            SaeReport r = measureSae(loadSae(out), mlp ? held.mlpPost[static_cast<std::size_t>(l)] : held.attnOut[static_cast<std::size_t>(l)]);
            r.location = saeLocationName(loc);
            r.layer = l;
            if (o.log)
                o.log("  variance explained " + std::to_string(r.varianceExplained) + ", mean L0 " +
                      std::to_string(r.meanL0) + ", dead " + std::to_string(r.deadFraction));
            reports.push_back(r);
        }
    }
    return reports;
}

} // namespace cs::train
