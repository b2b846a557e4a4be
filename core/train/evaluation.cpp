#include "core/train/evaluation.h"

#include "core/model/forward.h"
#include "core/train/corpus.h"
#include "core/train/rng.h"
#include "core/util/errors.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cstdio>
#include <sstream>

namespace cs::train {

namespace {

std::string percent(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %%", 100.0 * v);
    return buf;
}

std::string fixed(double v, int digits = 3)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

HeadScore best(const std::vector<HeadScore>& scores)
{
    HeadScore b;
    for (const auto& s : scores)
        if (b.layer < 0 || s.score > b.score)
            b = s;
    return b;
}

} // namespace

EvalReport evaluateModel(const Gpt2Model& model, const std::vector<int>& tokens, const std::filesystem::path& saeDir,
                         const EvalOptions& o)
{
    at::NoGradGuard noGrad;
    const Gpt2Tokenizer& tok = *model.tokenizer;
    const int ctx = model.config.nCtx, layers = model.config.nLayer, heads = model.config.nHead;
    EvalReport r;

    // Indirect objects.
    int top1 = 0, beats = 0;
    for (const IoiPrompt& p : heldOutIoiPrompts(o.seed, o.ioiPrompts)) {
        const std::vector<int> ids = tok.encode(p.prompt);
        if (static_cast<int>(ids.size()) > ctx)
            continue;
        const int answer = tok.encode(p.answer).at(0), other = tok.encode(p.distractor).at(0);
        const at::Tensor logits = runForward(model, ids).logits[static_cast<std::int64_t>(ids.size()) - 1];
        top1 += logits.argmax().item<std::int64_t>() == answer;
        beats += logits[answer].item<double>() > logits[other].item<double>();
        ++r.ioiPrompts;
    }
    if (r.ioiPrompts > 0) {
        r.ioiTop1 = double(top1) / r.ioiPrompts;
        r.ioiBeatsOther = double(beats) / r.ioiPrompts;
    }

    // Repeated random word sequences, with induction scores.
    std::vector<std::vector<double>> induction(static_cast<std::size_t>(layers), std::vector<double>(static_cast<std::size_t>(heads)));
    std::int64_t inductionCount = 0;
    double first = 0, second = 0;
    std::int64_t lossCount = 0;
    Rng rng(o.seed ^ 0x1d0c7'10aULL);
    for (int s = 0; s < o.repeatSequences; ++s) {
        std::vector<int> seq;
        for (int w = 0; w < o.repeatLength; ++w) {
            const std::vector<int> word = tok.encode(" " + rng.pick(randomWords()));
            if (static_cast<int>(seq.size() + word.size()) * 2 > ctx)
                break;
            seq.insert(seq.end(), word.begin(), word.end());
        }
        if (seq.size() < 2)
            throw InputError("evaluation: the context (" + std::to_string(ctx) + ") is too short for repeated sequences");
        std::vector<int> ids = seq;
        ids.insert(ids.end(), seq.begin(), seq.end());
        const ActivationRecord rec = runForward(model, ids);
        const at::Tensor logp = at::log_softmax(rec.logits, -1);
        const std::int64_t m = static_cast<std::int64_t>(seq.size());
        for (std::int64_t i = 1; i < m; ++i) {
            first -= logp[i - 1][ids[static_cast<std::size_t>(i)]].item<double>();
            second -= logp[m + i - 1][ids[static_cast<std::size_t>(m + i)]].item<double>();
            ++lossCount;
        }
        for (std::int64_t q = m; q < 2 * m; ++q) {
            std::int64_t prev = -1;
            for (std::int64_t j = q - 1; j >= 0 && prev < 0; --j)
                if (ids[static_cast<std::size_t>(j)] == ids[static_cast<std::size_t>(q)])
                    prev = j;
            if (prev < 0 || prev + 1 >= q)
                continue;
            for (int l = 0; l < layers; ++l) {
                const at::Tensor row = rec.layers[static_cast<std::size_t>(l)].probs[q][prev + 1];
                for (int h = 0; h < heads; ++h)
                    induction[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)] += row[h].item<double>();
            }
            ++inductionCount;
        }
        ++r.repeatSequences;
    }
    r.repeatFirstLoss = lossCount ? first / lossCount : 0;
    r.repeatSecondLoss = lossCount ? second / lossCount : 0;

    // Previous-token scores and loss on held-out corpus text.
    std::vector<std::vector<double>> previous(static_cast<std::size_t>(layers), std::vector<double>(static_cast<std::size_t>(heads)));
    std::int64_t previousCount = 0;
    double heldLoss = 0;
    std::int64_t heldCount = 0;
    const std::int64_t heldStart = std::max<std::int64_t>(0, static_cast<std::int64_t>(tokens.size()) - o.heldOutTokens);
    for (std::int64_t start = heldStart; start + ctx <= static_cast<std::int64_t>(tokens.size()); start += ctx) {
        const std::vector<int> ids(tokens.begin() + start, tokens.begin() + start + ctx);
        const ActivationRecord rec = runForward(model, ids);
        const at::Tensor target = at::tensor(std::vector<std::int64_t>(ids.begin() + 1, ids.end()), at::kLong);
        const at::Tensor logp = at::log_softmax(rec.logits.slice(0, 0, ctx - 1), -1);
        heldLoss -= logp.gather(1, target.unsqueeze(1)).sum().item<double>();
        heldCount += ctx - 1;
        for (int l = 0; l < layers; ++l) {
            const at::Tensor probs = rec.layers[static_cast<std::size_t>(l)].probs; // [q, k, H]
            const at::Tensor diag = probs.slice(0, 1, ctx).diagonal(0, 0, 1);       // [H, ctx-1]: (q, q-1)
            const at::Tensor sums = diag.sum(1);
            for (int h = 0; h < heads; ++h)
                previous[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)] += sums[h].item<double>();
        }
        previousCount += ctx - 1;
    }
    r.heldOutLoss = heldCount ? heldLoss / heldCount : 0;

    for (int l = 0; l < layers; ++l)
        for (int h = 0; h < heads; ++h) {
            r.inductionScores.push_back({l, h, inductionCount ? induction[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)] / inductionCount : 0});
            r.previousTokenScores.push_back({l, h, previousCount ? previous[static_cast<std::size_t>(l)][static_cast<std::size_t>(h)] / previousCount : 0});
        }
    r.bestInduction = best(r.inductionScores);
    r.bestPreviousToken = best(r.previousTokenScores);

    // Autoencoders, on the held-out activations.
    if (std::filesystem::exists(saeDir / "mlp_0")) {
        const int count = static_cast<int>(static_cast<std::int64_t>(tokens.size()) - heldStart);
        const ActivationSet held = collectActivations(model, tokens, heldStart, count);
        for (int l = 0; l < layers; ++l) {
            for (const bool mlp : {true, false}) {
                const auto dir = saeDir / ((mlp ? "mlp_" : "attn_") + std::to_string(l));
                if (!std::filesystem::exists(dir))
                    continue;
                SaeReport s = measureSae(loadSae(dir), mlp ? held.mlpPost[static_cast<std::size_t>(l)] : held.attnOut[static_cast<std::size_t>(l)]);
                s.location = mlp ? "mlp_post_act" : "resid_delta_attn";
                s.layer = l;
                r.saes.push_back(s);
            }
        }
    }
    return r;
}

std::string modelCard(const Gpt2Model& model, const EvalReport& r, const std::string& command, const std::string& notes)
{
    const Gpt2Config& c = model.config;
    std::ostringstream md;
    md << "# Circuitscope demo model\n\n"
       << "A small GPT-2-architecture model trained from scratch by `circuitscope-train` on a generated corpus "
          "(indirect-object sentences, repeated random word sequences, facts, quote and bracket closing, filler), "
          "with its own byte-level BPE tokenizer and sparse autoencoders. Every figure below was measured by the "
          "tool on held-out prompts and text.\n\n"
       << "Produced by:\n\n```\n" << command << "\n```\n\n"
       << "## Model\n\n"
       << "| layers | heads | d_model | d_mlp | context | vocabulary | parameters |\n|---|---|---|---|---|---|---|\n"
       << "| " << c.nLayer << " | " << c.nHead << " | " << c.dModel << " | " << c.dMlp << " | " << c.nCtx << " | "
       << c.vocabSize << " | " << model.weights.parameterCount() << " |\n\n"
       << notes << "\n\n"
       << "## Behaviour (held out)\n\n"
       << "| measure | value | bar |\n|---|---|---|\n"
       << "| indirect object: correct name is the top token (" << r.ioiPrompts << " prompts, held-out templates and names) | "
       << percent(r.ioiTop1) << " | ≥ 90 % |\n"
       << "| indirect object: correct name beats the repeated name | " << percent(r.ioiBeatsOther) << " | ≥ 95 % |\n"
       << "| repeated random words (" << r.repeatSequences << " sequences): loss on 1st / 2nd repetition | "
       << fixed(r.repeatFirstLoss) << " / " << fixed(r.repeatSecondLoss) << " (ratio "
       << percent(r.repeatFirstLoss > 0 ? r.repeatSecondLoss / r.repeatFirstLoss : 0) << ") | < 30 % |\n"
       << "| best induction head (attention to the token after the previous occurrence) | " << r.bestInduction.name()
       << " " << fixed(r.bestInduction.score) << " | ≥ 0.5 |\n"
       << "| best previous-token head (attention to the preceding token) | " << r.bestPreviousToken.name() << " "
       << fixed(r.bestPreviousToken.score) << " | |\n"
       << "| next-token loss on held-out corpus text | " << fixed(r.heldOutLoss) << " | |\n\n"
       << "### Attention head scores\n\n| head | induction | previous token |\n|---|---|---|\n";
    for (std::size_t i = 0; i < r.inductionScores.size(); ++i)
        md << "| " << r.inductionScores[i].name() << " | " << fixed(r.inductionScores[i].score) << " | "
           << fixed(r.previousTokenScores[i].score) << " |\n";
    if (!r.saes.empty()) {
        md << "\n## Sparse autoencoders (`saes/`, SAELens layout, held-out activations)\n\n"
           << "| layer | location | latents | variance explained | mean L0 | dead latents |\n|---|---|---|---|---|---|\n";
        for (const auto& s : r.saes)
            md << "| " << s.layer << " | " << s.location << " | " << s.latents << " | " << percent(s.varianceExplained)
               << " | " << fixed(s.meanL0, 1) << " | " << percent(s.deadFraction) << " |\n";
        md << "\nBar: variance explained ≥ 80 %, dead latents ≤ 10 %.\n";
    }
    return md.str();
}

} // namespace cs::train
