#include "core/analysis/objective.h"

#include "core/linalg/weight_product.h"

#include "core/util/errors.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

namespace cs {

namespace {

// Layer norm with σ held fixed (math §4.3): the value of LN, the gradient of x ↦ (x − μ)/σ·g + b.
at::Tensor layerNormFixedScale(const at::Tensor& x, const at::Tensor& gain, const at::Tensor& bias, double eps)
{
    const at::Tensor c = x - x.mean(-1, /*keepdim=*/true);
    const at::Tensor sigma = (c.pow(2).mean(-1, /*keepdim=*/true) + eps).sqrt().detach();
    return c / sigma * gain + bias;
}

const BoundSae& boundSae(const AnalysisInput& in, const NodeRef& node)
{
    const BoundSae* b = in.saes.find(nodeKindName(node.kind), node.layer);
    if (!b)
        throw InputError("node '" + node.name() + "': no " + nodeKindName(node.kind) + " autoencoder is loaded for layer " +
                         std::to_string(node.layer));
    return *b;
}

// The ablations of `list` at query/token rows < `rows` (the recomputed rows keep their indices).
std::vector<ActivationAblation> rowsBelow(const std::vector<ActivationAblation>& list, std::int64_t rows)
{
    std::vector<ActivationAblation> out;
    for (const auto& a : list) {
        if (a.token < rows)
            out.push_back(a);
    }
    return out;
}

// The ablations of `list` at one token, moved to row 0.
std::vector<ActivationAblation> atToken(const std::vector<ActivationAblation>& list, std::int64_t token)
{
    std::vector<ActivationAblation> out;
    for (auto a : list) {
        if (a.token == token) {
            a.token = 0;
            out.push_back(a);
        }
    }
    return out;
}

at::Tensor qkvBias(const Gpt2LayerWeights& lw, int part, int head, int dh, std::int64_t d)
{
    return lw.attnQkvBias.narrow(0, part * d + static_cast<std::int64_t>(head) * dh, dh);
}

// z_l of an autoencoder for the one-row input y ([1, n_in]), through its normalization (D2).
at::Tensor latentPreActivation(const SparseAutoencoder& sae, const at::Tensor& y, int latent)
{
    return encodeSae(sae, y).preActivation[0][latent];
}

} // namespace

at::Tensor logitObjective(const Gpt2Model& model, const at::Tensor& finalResidual, int token, const ResolvedObjective& o)
{
    const Gpt2Config& c = model.config;
    const Gpt2Weights& w = model.weights;
    if (o.targets.empty())
        throw std::logic_error("logitObjective without a target");
    for (int id : o.targets)
        if (id < 0 || id >= c.vocabSize)
            throw InputError("target: token id outside the model's vocabulary");
    for (int id : o.distractors)
        if (id < 0 || id >= c.vocabSize)
            throw InputError("distractor: token id outside the model's vocabulary");
    // D9: σ_f is held fixed, so the logits are affine in the final residual.
    const at::Tensor ln = layerNormFixedScale(finalResidual[token], w.lnFinalGain, w.lnFinalBias, c.layerNormEps);
    const auto rows = [&](const std::vector<int>& ids) {
        return weightRows(w.unembedding, at::tensor(std::vector<std::int64_t>(ids.begin(), ids.end()), at::kLong));
    };
    switch (o.logitKind) {
    case ObjectiveKind::LogitDiff: {
        at::Tensor direction = rows(o.targets).mean(0);
        if (!o.distractors.empty())
            direction = direction - rows(o.distractors).mean(0);
        return at::dot(ln, direction);
    }
    case ObjectiveKind::LogitMinusMean: {
        // The vocabulary mean of the logits is ln·mean(U): one mat-vec instead of all V logits.
        at::Tensor meanRow;
        {
            at::NoGradGuard noGrad;
            meanRow = weightMeanRow(w.unembedding);
        }
        return at::dot(ln, rows(o.targets).mean(0) - meanRow);
    }
    case ObjectiveKind::Prob: {
        const at::Tensor logits = linear({}, ln.unsqueeze(0), w.unembedding.t()).squeeze(0); // U·ln, differentiable
        return at::softmax(logits, 0).index_select(0, at::tensor(std::vector<std::int64_t>(o.targets.begin(), o.targets.end()), at::kLong)).sum();
    }
    default: throw std::logic_error("logitObjective: not a logit objective");
    }
}

at::Tensor tracedResidual(const AnalysisInput& in, const NodeRef& node)
{
    const LayerRecord& L = in.record.layers.at(static_cast<std::size_t>(node.layer));
    switch (node.kind) {
    case NodeKind::AttnHead:
    case NodeKind::AttnSaeLatent: return L.residIn;
    case NodeKind::MlpNeuron:
    case NodeKind::MlpSaeLatent: return L.residMid;
    case NodeKind::ResidSaeLatent: {
        // The autoencoder's input: its record's when it ran inside the pass (ablated latents), else the
        // residual at its location (a deferred autoencoder does not change the pass).
        const SaeLocation location = boundSae(in, node).location;
        const SaeRecord* r = L.sae(location);
        return r ? r->input : saeLocationTensor(L, location);
    }
    case NodeKind::Embedding: break;
    }
    throw InputError("node '" + node.name() + "': an embedding has nothing to trace");
}

at::Tensor tracedQuantity(const AnalysisInput& in, const ResolvedTrace& trace, const at::Tensor& R, const at::Tensor& valueGradient)
{
    const Gpt2Config& c = in.model.config;
    const NodeRef& node = trace.node;
    const Gpt2LayerWeights& lw = in.model.weights.layers.at(static_cast<std::size_t>(node.layer));
    const LayerAblations* ablations = in.record.ablations.at(node.layer);
    const std::int64_t t = node.token, d = c.dModel;
    const int dh = c.dHead();
    switch (node.kind) {
    case NodeKind::MlpNeuron: {
        const at::Tensor x = layerNormFixedScale(R[t], lw.ln2Gain, lw.ln2Bias, c.layerNormEps);
        return at::dot(x, asFloat32(lw.mlpInWeight.select(1, node.index))) + lw.mlpInBias[node.index];
    }
    case NodeKind::MlpSaeLatent: {
        const BoundSae& bound = boundSae(in, node);
        const at::Tensor x = layerNormFixedScale(R.narrow(0, t, 1), lw.ln2Gain, lw.ln2Bias, c.layerNormEps);
        at::Tensor y = mlpActivation(linear(lw.mlpInBias, x, lw.mlpInWeight), c.activation);
        if (ablations)
            y = withAblatedEntries(y, atToken(ablations->neurons, t));
        if (bound.location == SaeLocation::ResidDeltaMlp)
            y = linear(lw.mlpOutBias, y, lw.mlpOutWeight);
        return latentPreActivation(*bound.sae, y, node.index);
    }
    case NodeKind::AttnSaeLatent: {
        // Full-context attention of the query row t from R (Q, K and V attached, D12), with the
        // layer's attention ablations applied (D14).
        const BoundSae& bound = boundSae(in, node);
        const std::int64_t m = t + 1, H = c.nHead;
        const at::Tensor x = layerNormFixedScale(R.narrow(0, 0, m), lw.ln1Gain, lw.ln1Bias, c.layerNormEps);
        const at::Tensor qkv = linear(lw.attnQkvBias, x, lw.attnQkvWeight);
        const at::Tensor q = qkv.narrow(1, 0, d).view({m, H, dh}).permute({1, 0, 2});
        const at::Tensor k = qkv.narrow(1, d, d).view({m, H, dh}).permute({1, 2, 0});
        const at::Tensor v = qkv.narrow(1, 2 * d, d).view({m, H, dh}).permute({1, 0, 2});
        const at::Tensor future = at::ones({m, m}, at::kBool).triu(1);
        const at::Tensor scores = at::bmm(q, k).mul(attentionScale(c, node.layer)).masked_fill(future, -INFINITY);
        at::Tensor probs = at::softmax(scores, -1).permute({1, 2, 0}); // (q, k, head)
        if (ablations)
            probs = withAblatedProbs(probs, rowsBelow(ablations->probs, m));
        const at::Tensor z = at::bmm(probs.permute({2, 0, 1}), v).permute({1, 0, 2}).reshape({m, d}).narrow(0, t, 1);
        const at::Tensor y = bound.location == SaeLocation::AttnZ ? z : linear(lw.attnOutBias, z, lw.attnOutWeight);
        return latentPreActivation(*bound.sae, y, node.index);
    }
    case NodeKind::ResidSaeLatent: return latentPreActivation(*boundSae(in, node).sae, R.narrow(0, t, 1), node.index);
    case NodeKind::AttnHead: {
        const int h = node.index;
        const std::int64_t k = node.keyToken;
        if (trace.through == TraceThrough::V) {
            if (!valueGradient.defined())
                throw std::logic_error("tracedQuantity: a value trace needs the gradient it is projected on");
            const at::Tensor xk = layerNormFixedScale(R[k], lw.ln1Gain, lw.ln1Bias, c.layerNormEps);
            const at::Tensor value = at::matmul(xk, asFloat32(lw.valueWeight(h, dh))) + qkvBias(lw, 2, h, dh, d);
            const at::Tensor projected = at::mv(asFloat32(lw.outWeight(h, dh)), valueGradient[t].detach()); // W_O[h]·g[q]
            const at::Tensor p = layerProbs(in.model, in.record, node.layer).rows(t, 1)[0][k][h];
            return p * at::dot(value, projected);
        }
        const at::Tensor xq = layerNormFixedScale(R[t], lw.ln1Gain, lw.ln1Bias, c.layerNormEps);
        const at::Tensor xk = layerNormFixedScale(R[k], lw.ln1Gain, lw.ln1Bias, c.layerNormEps);
        at::Tensor query = at::matmul(xq, asFloat32(lw.queryWeight(h, dh))) + qkvBias(lw, 0, h, dh, d);
        at::Tensor key = at::matmul(xk, asFloat32(lw.keyWeight(h, dh))) + qkvBias(lw, 1, h, dh, d);
        if (trace.through == TraceThrough::Q)
            key = key.detach();
        else if (trace.through == TraceThrough::K)
            query = query.detach();
        return at::dot(query, key) * attentionScale(c, node.layer);
    }
    case NodeKind::Embedding: break;
    }
    throw InputError("node '" + node.name() + "': an embedding has nothing to trace");
}

at::Tensor tracedGradient(const AnalysisInput& in, const ResolvedTrace& trace)
{
    c10::AutoGradMode enable(true);
    const at::Tensor R = tracedResidual(in, trace.node).detach().clone().requires_grad_(true);
    const at::Tensor s = tracedQuantity(in, trace, R);
    return torch::autograd::grad({s}, {R}, {}, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true)[0];
}

ObjectiveScalar buildObjective(const AnalysisInput& in, const ResolvedObjective& objective)
{
    const ActivationRecord& rec = in.record;
    if (!rec.withGrad)
        throw std::logic_error("buildObjective needs a record made with ForwardOptions::withGrad");
    ObjectiveScalar o;
    o.kind = objective.kind();
    const int n = rec.tokenCount();
    if (!objective.trace) {
        o.residual = rec.layers.back().residOut;
        o.value = logitObjective(in.model, o.residual, n - 1, objective);
        o.readPosition = finalResidualPosition(in.model.config.nLayer);
        o.token = n - 1;
        return o;
    }
    const ResolvedTrace& trace = *objective.trace;
    o.residual = tracedResidual(in, trace.node);
    o.readPosition = residualReadPosition(in.saes, trace.node.kind, trace.node.layer);
    o.token = trace.node.token;
    at::Tensor g;
    if (trace.node.kind == NodeKind::AttnHead && trace.through == TraceThrough::V) {
        if (trace.downstream) {
            g = tracedGradient(in, {*trace.downstream, trace.downstreamThrough, std::nullopt, TraceThrough::QK});
        } else {
            // The logit objective's gradient at the final residual: O is then the pair's direct effect.
            c10::AutoGradMode enable(true);
            const at::Tensor R = rec.layers.back().residOut.detach().clone().requires_grad_(true);
            const at::Tensor loss = logitObjective(in.model, R, n - 1, objective);
            g = torch::autograd::grad({loss}, {R})[0];
        }
        if (!g.defined())
            g = at::zeros_like(o.residual);
    }
    o.value = tracedQuantity(in, trace, o.residual, g);
    return o;
}

} // namespace cs
