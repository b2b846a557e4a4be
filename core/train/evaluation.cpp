#include "core/train/evaluation.h"

#include "core/analysis/effects.h"
#include "core/model/forward.h"
#include "core/model/sae_set.h"
#include "core/train/corpus.h"
#include "core/train/rng.h"
#include "core/util/errors.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
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

// One card row per held-out shape: which sentence shape the bar's misses come from.
std::string byShapeRows(const std::vector<IoiScore>& byShape)
{
    std::string rows;
    const auto& shapes = heldOutIoiShapes();
    for (std::size_t i = 0; i < byShape.size() && i < shapes.size(); ++i)
        rows += "| … of which \"" + shapes[i] + "\" (" + std::to_string(byShape[i].prompts) +
                " prompts): top token / beats the repeated name | " + percent(byShape[i].top1) + " / " +
                percent(byShape[i].beatsOther) + " | |\n";
    return rows;
}

HeadScore best(const std::vector<HeadScore>& scores)
{
    HeadScore b;
    for (const auto& s : scores)
        if (b.layer < 0 || s.score > b.score)
            b = s;
    return b;
}

// Positions of a name in the prompt, as a word with or without a leading space (at the start).
std::vector<std::int64_t> positionsOf(const Gpt2Tokenizer& tok, const std::vector<int>& ids, const std::string& name)
{
    const int spaced = tok.encode(" " + name).at(0), bare = tok.encode(name).at(0);
    std::vector<std::int64_t> at;
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] == spaced || ids[i] == bare)
            at.push_back(static_cast<std::int64_t>(i));
    return at;
}

} // namespace

std::vector<IoiHeadStats> ioiHeadStats(const Gpt2Model& model, const std::vector<IoiPrompt>& prompts)
{
    const Gpt2Tokenizer& tok = *model.tokenizer;
    const int layers = model.config.nLayer, heads = model.config.nHead;
    std::vector<IoiHeadStats> stats;
    for (int l = 0; l < layers; ++l)
        for (int h = 0; h < heads; ++h)
            stats.push_back({l, h});
    const SaeSet noSaes;
    int used = 0;
    for (const IoiPrompt& p : prompts) {
        const std::vector<int> ids = tok.encode(p.prompt);
        if (static_cast<int>(ids.size()) > model.config.nCtx)
            continue;
        const auto io = positionsOf(tok, ids, p.answer.substr(1));
        const auto s = positionsOf(tok, ids, p.distractor.substr(1));
        if (io.size() != 1 || s.size() != 2)
            continue; // a name split oddly by the tokenizer: not a clean IOI prompt
        // The effects need a backward pass; evaluateModel runs under NoGradGuard.
        at::AutoGradMode enableGrad(true);
        ForwardOptions fo;
        fo.withGrad = true;
        const ActivationRecord rec = runForward(model, ids, fo);
        const AnalysisInput in{model, noSaes, rec};
        const Effects effects = computeEffects(in, logitDifference(tok.encode(p.answer).at(0), tok.encode(p.distractor).at(0)));
        at::NoGradGuard noGrad;
        const std::int64_t last = static_cast<std::int64_t>(ids.size()) - 1;
        for (auto& st : stats) {
            const LayerEffects& le = effects.layers[static_cast<std::size_t>(st.layer)];
            const at::Tensor probs = rec.layers[static_cast<std::size_t>(st.layer)].probs.detach(); // [q, k, H]
            st.directEffect += le.headDirect[last].select(1, st.head).sum().item<double>();
            st.attentionToAnswer += probs[last][io[0]][st.head].item<double>();
            st.attentionToRepeated += probs[last][s[0]][st.head].item<double>() + probs[last][s[1]][st.head].item<double>();
            st.duplicateAttention += probs[s[1]][s[0]][st.head].item<double>();
        }
        ++used;
    }
    for (auto& st : stats)
        if (used > 0) {
            st.directEffect /= used;
            st.attentionToAnswer /= used;
            st.attentionToRepeated /= used;
            st.duplicateAttention /= used;
        }
    return stats;
}

EvalReport evaluateModel(const Gpt2Model& model, const std::vector<int>& tokens, const std::filesystem::path& saeDir,
                         const EvalOptions& o)
{
    at::NoGradGuard noGrad;
    const Gpt2Tokenizer& tok = *model.tokenizer;
    const int ctx = model.config.nCtx, layers = model.config.nLayer, heads = model.config.nHead;
    EvalReport r;

    // Indirect objects: held-out templates and names (the bar), and the training distribution.
    // Sums first, fractions at the end; `byShape` (when given) also scores each prompt under its shape.
    const auto scoreIoi = [&](const std::vector<IoiPrompt>& prompts, IoiScore* score, std::vector<IoiScore>* byShape) {
        const auto add = [](IoiScore* s, bool top, double d) {
            s->top1 += top;
            s->beatsOther += d > 0;
            s->meanLogitDiff += d;
            ++s->prompts;
        };
        for (const IoiPrompt& p : prompts) {
            const std::vector<int> ids = tok.encode(p.prompt);
            if (static_cast<int>(ids.size()) > ctx)
                continue;
            const int answer = tok.encode(p.answer).at(0), other = tok.encode(p.distractor).at(0);
            const at::Tensor logits = runForward(model, ids).logits[static_cast<std::int64_t>(ids.size()) - 1];
            const bool top = logits.argmax().item<std::int64_t>() == answer;
            const double d = logits[answer].item<double>() - logits[other].item<double>();
            add(score, top, d);
            if (byShape && p.shape >= 0) {
                if (byShape->size() <= static_cast<std::size_t>(p.shape))
                    byShape->resize(static_cast<std::size_t>(p.shape) + 1);
                add(&(*byShape)[static_cast<std::size_t>(p.shape)], top, d);
            }
        }
        const auto finish = [](IoiScore* s) {
            if (s->prompts > 0) {
                s->top1 /= s->prompts;
                s->beatsOther /= s->prompts;
                s->meanLogitDiff /= s->prompts;
            }
        };
        finish(score);
        if (byShape)
            for (IoiScore& s : *byShape)
                finish(&s);
    };
    scoreIoi(heldOutIoiPrompts(o.seed, o.ioiPrompts), &r.ioi, &r.ioiByShape);
    scoreIoi(trainingIoiPrompts(o.seed, o.ioiPrompts), &r.ioiTraining, nullptr);
    scoreIoi(heldOutTemplatePrompts(o.seed, o.ioiPrompts), &r.ioiHeldOutTemplates, nullptr);
    // The circuit is read where the model solves the task: held-out templates, training names.
    r.ioiHeads = ioiHeadStats(model, heldOutTemplatePrompts(o.seed, std::min(o.ioiPrompts, o.circuitPrompts)));

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
       << "| indirect object: correct name is the top token (" << r.ioi.prompts << " prompts, held-out templates and names) | "
       << percent(r.ioi.top1) << " | ≥ 90 % |\n"
       << "| indirect object: correct name beats the repeated name (mean logit difference " << fixed(r.ioi.meanLogitDiff, 2)
       << ") | " << percent(r.ioi.beatsOther) << " | ≥ 95 % |\n"
       << byShapeRows(r.ioiByShape)
       << "| indirect object, held-out templates with training names: top token / beats the repeated name | "
       << percent(r.ioiHeldOutTemplates.top1) << " / " << percent(r.ioiHeldOutTemplates.beatsOther) << " | |\n"
       << "| indirect object, training templates and names: top token / beats the repeated name | " << percent(r.ioiTraining.top1)
       << " / " << percent(r.ioiTraining.beatsOther) << " | |\n"
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
    if (!r.ioiHeads.empty()) {
        std::vector<IoiHeadStats> byEffect = r.ioiHeads, byDuplicate = r.ioiHeads;
        std::sort(byEffect.begin(), byEffect.end(), [](const auto& a, const auto& b) { return std::abs(a.directEffect) > std::abs(b.directEffect); });
        std::sort(byDuplicate.begin(), byDuplicate.end(), [](const auto& a, const auto& b) { return a.duplicateAttention > b.duplicateAttention; });
        md << "\n## The indirect-object circuit (held-out templates, training names)\n\n"
           << "Heads by |direct effect| on logit(answer) − logit(repeated name) at the last token (the app's "
              "\"direct effect\" with that target and distractor), with where the last token looks. Name movers: "
              "large positive effect, attention on the answer's name. A negative effect with attention on the "
              "answer marks a negative name mover.\n\n"
           << "| head | direct effect | attention to answer | attention to repeated name |\n|---|---|---|---|\n";
        for (std::size_t i = 0; i < std::min<std::size_t>(6, byEffect.size()); ++i)
            md << "| " << byEffect[i].name() << " | " << fixed(byEffect[i].directEffect, 2) << " | "
               << fixed(byEffect[i].attentionToAnswer) << " | " << fixed(byEffect[i].attentionToRepeated) << " |\n";
        md << "\nDuplicate-token heads: attention from the repeated name's second occurrence to its first.\n\n"
           << "| head | attention S2 → S1 |\n|---|---|\n";
        for (std::size_t i = 0; i < std::min<std::size_t>(3, byDuplicate.size()); ++i)
            md << "| " << byDuplicate[i].name() << " | " << fixed(byDuplicate[i].duplicateAttention) << " |\n";
    }
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
