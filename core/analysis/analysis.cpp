#include "core/analysis/analysis.h"

#include "core/util/errors.h"
#include "core/util/runtime.h"

#include <algorithm>
#include <set>

namespace cs {

namespace {

NextToken nextToken(const Gpt2Model& model, const at::Tensor& logits, const at::Tensor& probs, int id)
{
    return {id, model.tokenizer->hasId(id) ? model.tokenizer->tokenString(id) : std::string(), logits[id].item<double>(),
            probs[id].item<double>()};
}

struct PromptPlan {
    std::string text;
    PromptTokens tokens;
    ResolvedObjective objective;
    ForwardAblations ablations;
};

PromptPlan plan(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& q, const std::string& text,
                const ObjectiveSpec& objective, std::string_view promptName)
{
    PromptPlan p;
    p.text = text;
    try {
        p.tokens = tokenizePrompt(model, text, q.overlong);
    } catch (const InputError& e) {
        // "prompt: ..." — the second prompt says so.
        if (promptName == "prompt")
            throw;
        throw InputError(std::string(promptName) + " (--prompt2): " + std::string(e.what()).substr(std::string("prompt: ").size()));
    }
    const int n = static_cast<int>(p.tokens.ids.size());
    p.objective = resolveObjective(model, objective, q.trace, saes, n, promptName);
    p.ablations = resolveAblations(model, saes, q.ablations, n, promptName);
    return p;
}

// One prompt through one network: the model's forward and backward passes, then the autoencoders'
// latents layer by layer (they do not change the pass unless ablated, so they can come after it).
PromptRun runOne(const Gpt2Model& model, const SaeSet& saes, const PromptPlan& p, const ForwardAblations* ablations, int topK,
                 const AnalysisControl& control, int pass, int passes, const std::string& label, PromptAnalysis* staged)
{
    std::vector<int> saeLayers;
    for (const BoundSae& b : saes.all())
        if (std::find(saeLayers.begin(), saeLayers.end(), b.layer) == saeLayers.end())
            saeLayers.push_back(b.layer);
    std::sort(saeLayers.begin(), saeLayers.end());
    const int steps = model.config.nLayer + 1 + static_cast<int>(saeLayers.size());
    const auto report = [&](int done) {
        if (control.progress)
            control.progress(pass * steps + done, passes * steps);
    };
    const auto stage = [&](const std::string& what) {
        if (control.stage)
            control.stage(label + what);
    };
    ForwardOptions fo;
    fo.withGrad = p.objective.any();
    fo.saes = &saes;
    fo.ablations = ablations;
    fo.cancelled = control.cancelled;
    fo.logits = RecordLogits::None; // the objective reads the residual; next tokens need one row
    fo.deferSaes = true;
    // P is recomputed where it is read (effects, clicks) instead of kept: n²·H floats a layer (issue 15).
    fo.keepProbs = false;
    fo.progress = [&](int layers) { report(layers); };
    stage("forward");
    PromptRun r;
    r.record = runForward(model, p.tokens.ids, fo);
    if (control.cancelled && control.cancelled())
        throw Cancelled();
    stage("backward");
    r.effects = computeEffects({model, saes, r.record}, p.objective);
    stage("next tokens and token effects");
    r.next = nextTokens(model, r.record, p.objective.logitsToken(r.record.tokenCount()), topK, p.objective);
    r.tokenEffects = tokenEffects(r.effects);
    report(model.config.nLayer + 1);
    const auto emit = [&](int done) {
        if (staged && control.staged) {
            staged->run = r;
            control.staged(*staged, done, static_cast<int>(saeLayers.size()));
        }
    };
    emit(0);
    for (std::size_t i = 0; i < saeLayers.size(); ++i) {
        if (control.cancelled && control.cancelled())
            throw Cancelled();
        stage("autoencoders of layer " + std::to_string(saeLayers[i]));
        encodeSaes(saes, r.record, saeLayers[i]);
        addLatentEffects({model, saes, r.record}, r.effects, saeLayers[i]);
        report(model.config.nLayer + 2 + static_cast<int>(i));
        if (i + 1 == saeLayers.size())
            r.tokenEffects = tokenEffects(r.effects);
        emit(static_cast<int>(i) + 1);
    }
    return r;
}

std::optional<NodeMetrics> metricsIfPresent(const Gpt2Model& model, const SaeSet& saes, const PromptRun& run, const NodeRef& node)
{
    const int n = run.record.tokenCount();
    if (node.token >= n || (node.kind == NodeKind::AttnHead && node.keyToken >= n))
        return std::nullopt;
    return metricsOf({model, saes, run.record}, run.effects, node);
}

} // namespace

NextTokens nextTokens(const Gpt2Model& model, const ActivationRecord& record, int token, int k, const ResolvedObjective& objective)
{
    at::NoGradGuard noGrad;
    NextTokens out;
    out.token = token;
    const at::Tensor logits = logitsAt(model, record, token).to(at::kDouble).contiguous();
    const at::Tensor probs = at::softmax(logits, 0);
    const std::int64_t kk = std::min<std::int64_t>(std::max(k, 0), logits.size(0));
    if (kk > 0) {
        const at::Tensor top = std::get<1>(logits.topk(kk, 0, /*largest=*/true));
        const at::Tensor bottom = std::get<1>(logits.topk(kk, 0, /*largest=*/false));
        for (std::int64_t i = 0; i < kk; ++i) {
            out.top.push_back(nextToken(model, logits, probs, static_cast<int>(top[i].item<std::int64_t>())));
            out.bottom.push_back(nextToken(model, logits, probs, static_cast<int>(bottom[i].item<std::int64_t>())));
        }
    }
    for (int id : objective.targets)
        out.targets.push_back(nextToken(model, logits, probs, id));
    for (int id : objective.distractors)
        out.distractors.push_back(nextToken(model, logits, probs, id));
    return out;
}

Analysis analyzePrompt(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& q, const AnalysisControl& control)
{
    if (q.logitsTopK < 0)
        throw InputError("--top: must not be negative");
    // Validate everything before the first pass.
    const PromptPlan left = plan(model, saes, q, q.prompt, q.objective, "prompt");
    std::optional<PromptPlan> right;
    if (q.second) {
        ObjectiveSpec objective = q.objective;
        if (!q.second->targets.empty()) {
            objective.targets = q.second->targets;
            objective.distractors = q.second->distractors;
        } else if (!q.second->distractors.empty()) {
            throw InputError("--distractor2: needs a --target2 (without one the second prompt uses the first's targets and distractors)");
        }
        right = plan(model, saes, q, q.second->prompt, objective, "second prompt");
    }
    const bool ablated = !left.ablations.empty();
    const bool baseline = ablated && q.baseline && (!right || q.baselineOfBothPrompts);
    const int passes = (right ? 2 : 1) * (baseline ? 2 : 1);

    Analysis a;
    for (const auto& spec : q.ablations)
        a.ablations.push_back(spec.spec());
    auto analysisOf = [&](const PromptPlan& p) {
        PromptAnalysis out;
        out.text = p.text;
        out.tokens = p.tokens;
        out.objective = p.objective;
        return out;
    };
    a.left = analysisOf(left);
    a.left.run = runOne(model, saes, left, ablated ? &left.ablations : nullptr, q.logitsTopK, control, 0, passes, "", &a.left);
    int pass = 1;
    if (baseline)
        a.left.baseline = runOne(model, saes, left, nullptr, q.logitsTopK, control, pass++, passes, "baseline: ", nullptr);
    if (right) {
        a.right = analysisOf(*right);
        a.right->run = runOne(model, saes, *right, right->ablations.empty() ? nullptr : &right->ablations, q.logitsTopK, control,
                              pass++, passes, "second prompt: ", nullptr);
        if (baseline)
            a.right->baseline = runOne(model, saes, *right, nullptr, q.logitsTopK, control, pass++, passes, "second prompt baseline: ", nullptr);
    }
    return a;
}

std::vector<NodeTableRow> nodeTable(const Gpt2Model& model, const SaeSet& saes, const Analysis& a, int k)
{
    std::vector<NodeRef> order;
    std::set<NodeRef> seen;
    auto addTop = [&](const PromptRun& run) {
        for (const NodeMetrics& m : topNodes({model, saes, run.record}, run.effects, k)) {
            if (seen.insert(m.node).second)
                order.push_back(m.node);
        }
    };
    addTop(a.left.run);
    if (a.right)
        addTop(a.right->run);
    std::vector<NodeTableRow> rows;
    rows.reserve(order.size());
    for (const NodeRef& node : order) {
        NodeTableRow row;
        row.node = node;
        row.left = metricsIfPresent(model, saes, a.left.run, node);
        if (a.left.baseline)
            row.baseline = metricsIfPresent(model, saes, *a.left.baseline, node);
        if (a.right)
            row.right = metricsIfPresent(model, saes, a.right->run, node);
        rows.push_back(row);
    }
    return rows;
}

} // namespace cs
