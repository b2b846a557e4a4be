#include "core/analysis/effects.h"

#include "core/analysis/objective.h"

#include "core/util/errors.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

namespace cs {

namespace {

at::Tensor orZeros(const at::Tensor& grad, const at::Tensor& like)
{
    return grad.defined() ? grad : at::zeros_like(like);
}

// Rows of `directions` ([N, in]) pushed into residual space for one autoencoder location.
at::Tensor toResidual(const Gpt2LayerWeights& lw, SaeLocation location, const at::Tensor& directions)
{
    switch (location) {
    case SaeLocation::MlpPostAct: return at::mm(directions, lw.mlpOutWeight);
    case SaeLocation::AttnZ: return at::mm(directions, lw.attnOutWeight);
    default: return directions;
    }
}

// The transpose: a residual-space row vector pulled back to the autoencoder's input space.
at::Tensor fromResidual(const Gpt2LayerWeights& lw, SaeLocation location, const at::Tensor& rows)
{
    switch (location) {
    case SaeLocation::MlpPostAct: return at::mm(rows, lw.mlpOutWeight.t());
    case SaeLocation::AttnZ: return at::mm(rows, lw.attnOutWeight.t());
    default: return rows;
    }
}

// ‖D_l in residual space‖ for every latent, cached per bound autoencoder (see LatentNormCache).
at::Tensor latentDirectionNorms(const Gpt2LayerWeights& lw, const BoundSae& bound)
{
    std::call_once(bound.normCache->once, [&] {
        at::NoGradGuard noGrad;
        const at::Tensor& dec = bound.sae->decoder;
        at::Tensor norms = at::empty({dec.size(0)});
        constexpr std::int64_t kBlock = 4096; // bounds the temporary to 4096 × d floats
        for (std::int64_t start = 0; start < dec.size(0); start += kBlock) {
            const std::int64_t m = std::min(kBlock, dec.size(0) - start);
            norms.narrow(0, start, m).copy_(toResidual(lw, bound.location, dec.narrow(0, start, m)).norm(2, -1));
        }
        bound.normCache->norms = norms;
    });
    return bound.normCache->norms;
}

} // namespace

ResolvedObjective logitDifference(int target, std::optional<int> distractor)
{
    ResolvedObjective o;
    o.targets = {target};
    if (distractor)
        o.distractors = {*distractor};
    return o;
}

Effects computeEffects(const AnalysisInput& in, const ResolvedObjective& objective)
{
    const ActivationRecord& rec = in.record;
    if (objective.any() && !rec.withGrad)
        throw std::logic_error("computeEffects with an objective needs a record made with ForwardOptions::withGrad");
    const Gpt2Model& model = in.model;
    // One backward pass for every recorded activation at once. An autoencoder's output may be a tensor
    // that is already an input (mlp_post_act's output is mlpPost): each distinct tensor is listed once.
    std::vector<at::Tensor> inputs;
    auto indexOf = [&inputs](const at::Tensor& t) {
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            if (inputs[i].unsafeGetTensorImpl() == t.unsafeGetTensorImpl())
                return i;
        }
        inputs.push_back(t);
        return inputs.size() - 1;
    };
    std::optional<ObjectiveScalar> scalar;
    if (objective.any())
        scalar = buildObjective(in, objective);
    const std::size_t residualIndex = indexOf(scalar ? scalar->residual : rec.layers.back().residOut);
    const std::size_t embeddingIndex = indexOf(rec.embeddings);
    std::vector<std::size_t> mlpIndex, probsIndex;
    std::vector<std::vector<std::size_t>> saeIndex;
    for (const LayerRecord& L : rec.layers) {
        mlpIndex.push_back(indexOf(L.mlpPost));
        probsIndex.push_back(indexOf(L.probs));
        saeIndex.emplace_back();
        for (const SaeRecord& s : L.saes)
            saeIndex.back().push_back(indexOf(s.output));
    }
    std::vector<at::Tensor> grads(inputs.size());
    Effects e;
    if (scalar) {
        grads = torch::autograd::grad({scalar->value}, inputs, {}, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
        e.hasObjective = true;
        e.objective = scalar->value.item<double>();
        e.objectiveKind = scalar->kind;
        e.objectiveToken = scalar->token;
    } else {
        e.objectiveKind = objective.kind();
        e.objectiveToken = rec.tokenCount() - 1;
    }
    // Direct and total effects are computed only when there is an objective; `undefinedUnless` keeps
    // them undefined otherwise so nothing shows zeros where there is no value (product.md §3).
    const bool effects = e.hasObjective;
    auto undefinedUnless = [effects](const std::function<at::Tensor()>& f) { return effects ? f() : at::Tensor(); };
    // A node has a direct effect only if it writes into the residual stream before the objective reads it.
    auto upstream = [&](NodeKind kind, int layer) {
        return scalar && residualWritePosition(in.saes, kind, layer) <= scalar->readPosition;
    };

    at::NoGradGuard noGrad;
    const at::Tensor G = effects ? orZeros(grads[residualIndex], inputs[residualIndex]).detach() : at::Tensor();
    e.residualGradient = G;
    const at::Tensor r0 = rec.embeddings.detach();
    e.embeddingWriteMagnitude = r0.norm(2, -1);
    e.embeddingDirect = undefinedUnless([&] { return (r0 * G).sum(-1); });
    e.embeddingTotal = undefinedUnless([&] { return (r0 * orZeros(grads[embeddingIndex], r0)).sum(-1); });
    // Rows of G that are not zero (a logit objective reads the last token only): direct effects elsewhere are 0.
    const at::Tensor gRows = effects ? G.abs().sum(1).nonzero().squeeze(1) : at::Tensor();

    const Gpt2Config& c = model.config;
    const int H = c.nHead, dh = c.dHead();
    for (std::size_t layer = 0; layer < rec.layers.size(); ++layer) {
        const LayerRecord& L = rec.layers[layer];
        const Gpt2LayerWeights& lw = model.weights.layers[layer];
        const int l = static_cast<int>(layer);
        LayerEffects le;

        const at::Tensor a = L.mlpPost.detach();
        le.neuronActivation = a;
        le.neuronWriteMagnitude = a * lw.mlpOutWeight.norm(2, -1).unsqueeze(0);
        le.neuronDirect = undefinedUnless([&] {
            return upstream(NodeKind::MlpNeuron, l) ? a * at::mm(G, lw.mlpOutWeight.t()) : at::zeros_like(a);
        });
        le.neuronTotal = undefinedUnless([&] { return a * orZeros(grads[mlpIndex[layer]], a); });

        const at::Tensor P = L.probs.detach(); // [q, k, H]
        // V[k,h]·W_O[h] for every key token and head: [H, k, d].
        const at::Tensor vwo = at::bmm(L.value.detach().permute({1, 0, 2}), lw.attnOutWeight.view({H, dh, c.dModel}));
        le.headActivation = P;
        le.headWriteMagnitude = P * vwo.norm(2, -1).t().unsqueeze(0);
        le.headDirect = undefinedUnless([&] {
            return upstream(NodeKind::AttnHead, l) ? P * at::matmul(G.unsqueeze(0), vwo.transpose(1, 2)).permute({1, 2, 0})
                                                   : at::zeros_like(P);
        });
        le.headTotal = undefinedUnless([&] { return P * orZeros(grads[probsIndex[layer]], P); });

        for (std::size_t j = 0; j < L.saes.size(); ++j) {
            const SaeRecord& s = L.saes[j];
            const SparseAutoencoder& sae = *s.bound.sae;
            LayerEffects::Latents lat;
            lat.kind = saeKindName(s.bound.location);
            const NodeKind kind = *nodeKindFromName(lat.kind);
            const at::Tensor alpha = s.latents.detach();
            const at::Tensor scaled = alpha * s.encoding.scale.detach(); // α·s: the latent's weight on D_l
            lat.activation = alpha;
            lat.writeMagnitude = scaled * latentDirectionNorms(lw, s.bound).unsqueeze(0);
            // ∂objective/∂α_l = s·D_l·∂objective/∂(autoencoder output) (math §3.4, with D2's scale). A
            // latent written after the residual the objective reads has none; the test matters because an
            // autoencoder's output is its input tensor itself when nothing of it is ablated, so a trace of a
            // residual latent would otherwise credit its own autoencoder's latents.
            lat.total = undefinedUnless([&] {
                if (!upstream(kind, l))
                    return at::zeros_like(alpha);
                const at::Tensor gOut = orZeros(grads[saeIndex[layer][j]], s.output);
                return scaled * at::mm(gOut, sae.decoder.t());
            });
            // Direct effect: α·s·(D_l pushed to the residual)·G, only where G is not zero.
            lat.direct = undefinedUnless([&] {
                at::Tensor direct = at::zeros_like(alpha);
                if (upstream(kind, l) && gRows.numel() > 0) {
                    const at::Tensor back = fromResidual(lw, s.bound.location, G.index_select(0, gRows)); // [r, n_in]
                    direct.index_copy_(0, gRows, scaled.index_select(0, gRows) * at::mm(back, sae.decoder.t()));
                }
                return direct;
            });
            le.latents.push_back(std::move(lat));
        }
        e.layers.push_back(std::move(le));
    }
    return e;
}

const char* metricKey(Metric metric)
{
    switch (metric) {
    case Metric::Activation: return "activation";
    case Metric::WriteMagnitude: return "write_magnitude";
    case Metric::DirectEffect: return "direct_effect";
    case Metric::TotalEffect: return "total_effect";
    }
    return "?";
}

bool metricNeedsObjective(Metric metric)
{
    return metric == Metric::DirectEffect || metric == Metric::TotalEffect;
}

double NodeMetrics::value(Metric metric) const
{
    switch (metric) {
    case Metric::Activation: return activation;
    case Metric::WriteMagnitude: return writeMagnitude;
    case Metric::DirectEffect: return directEffect;
    case Metric::TotalEffect: return totalEffect;
    }
    return 0;
}

GridValues gridValues(const AnalysisInput& in, const Effects& e, int topN)
{
    at::NoGradGuard noGrad;
    GridValues g;
    const int n = in.record.tokenCount();
    const int nLayers = in.model.config.nLayer, nHeads = in.model.config.nHead;
    g.rows.resize(kMetricCount);
    for (int m = 0; m < kMetricCount; ++m) {
        const auto metric = static_cast<Metric>(m);
        if (!e.hasObjective && metricNeedsObjective(metric))
            continue;
        auto& perToken = g.rows[static_cast<std::size_t>(m)];
        perToken.assign(static_cast<std::size_t>(n), std::vector<GridLayerValues>(static_cast<std::size_t>(nLayers)));
        for (int layer = 0; layer < nLayers; ++layer) {
            const LayerEffects& le = e.layers[static_cast<std::size_t>(layer)];
            const at::Tensor* heads[] = {&le.headActivation, &le.headWriteMagnitude, &le.headDirect, &le.headTotal};
            const at::Tensor* neurons[] = {&le.neuronActivation, &le.neuronWriteMagnitude, &le.neuronDirect, &le.neuronTotal};
            const at::Tensor h = *heads[m];                                    // [q, k, H]
            const at::Tensor best = h.abs().argmax(1).contiguous();            // [q, H]
            const at::Tensor value = (metric == Metric::Activation ? h.amax(1) : h.sum(1)).to(at::kDouble).contiguous();
            const std::int64_t* bp = best.data_ptr<std::int64_t>();
            const double* vp = value.data_ptr<double>();
            for (int t = 0; t < n; ++t) {
                auto& row = perToken[static_cast<std::size_t>(t)][static_cast<std::size_t>(layer)];
                for (int head = 0; head < nHeads; ++head)
                    row.heads.push_back({NodeRef{NodeKind::AttnHead, layer, head, t, static_cast<int>(bp[t * nHeads + head])},
                                         vp[t * nHeads + head]});
            }
            auto topCells = [&](const at::Tensor& values, NodeKind kind, std::vector<GridCellValue> GridLayerValues::*member) {
                const std::int64_t k = std::min<std::int64_t>(topN, values.size(1));
                if (k <= 0)
                    return;
                const at::Tensor idx = std::get<1>(values.abs().topk(k, 1)).contiguous();
                const at::Tensor picked = values.gather(1, idx).to(at::kDouble).contiguous();
                const std::int64_t* ip = idx.data_ptr<std::int64_t>();
                const double* pp = picked.data_ptr<double>();
                for (int t = 0; t < n; ++t) {
                    auto& cells = perToken[static_cast<std::size_t>(t)][static_cast<std::size_t>(layer)].*member;
                    for (std::int64_t j = 0; j < k; ++j)
                        cells.push_back({NodeRef{kind, layer, static_cast<int>(ip[t * k + j]), t, 0}, pp[t * k + j]});
                }
            };
            topCells(*neurons[m], NodeKind::MlpNeuron, &GridLayerValues::neurons);
            for (const auto& lat : le.latents) {
                const at::Tensor* t[] = {&lat.activation, &lat.writeMagnitude, &lat.direct, &lat.total};
                const NodeKind kind = *nodeKindFromName(lat.kind);
                topCells(*t[m], kind,
                         kind == NodeKind::MlpSaeLatent    ? &GridLayerValues::mlpLatents
                         : kind == NodeKind::AttnSaeLatent ? &GridLayerValues::attnLatents
                                                           : &GridLayerValues::residLatents);
            }
        }
    }
    return g;
}

const TokenEffects::Row* TokenEffects::find(std::string_view kind) const
{
    for (const auto& r : rows) {
        if (r.kind == kind)
            return &r;
    }
    return nullptr;
}

TokenEffects tokenEffects(const Effects& e)
{
    TokenEffects out;
    if (!e.hasObjective)
        return out;
    at::NoGradGuard noGrad;
    auto toVector = [](const at::Tensor& t) {
        const at::Tensor c = t.to(at::kDouble).contiguous();
        return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
    };
    at::Tensor mlp = at::zeros_like(e.embeddingTotal, at::kDouble);
    at::Tensor from = mlp.clone(), to = mlp.clone();
    std::vector<std::pair<std::string, at::Tensor>> latents;
    for (const LayerEffects& le : e.layers) {
        mlp += le.neuronTotal.to(at::kDouble).sum(1);
        const at::Tensor heads = le.headTotal.to(at::kDouble).sum(2); // [q, k]
        from += heads.sum(1);
        to += heads.sum(0);
        for (const auto& lat : le.latents) {
            auto it = std::find_if(latents.begin(), latents.end(), [&](const auto& p) { return p.first == lat.kind; });
            if (it == latents.end())
                it = latents.insert(latents.end(), {lat.kind, at::zeros_like(mlp)});
            it->second += lat.total.to(at::kDouble).sum(1);
        }
    }
    out.rows.push_back({"embedding", toVector(e.embeddingTotal)});
    out.rows.push_back({"mlp", toVector(mlp)});
    out.rows.push_back({"attn_from", toVector(from)});
    out.rows.push_back({"attn_to", toVector(to)});
    for (const char* kind : {"mlp_sae", "attn_sae", "resid_sae"}) {
        for (const auto& [k, values] : latents) {
            if (k == kind)
                out.rows.push_back({k, toVector(values)});
        }
    }
    return out;
}

namespace {

double at3(const at::Tensor& t, std::int64_t a, std::int64_t b, std::int64_t c)
{
    return t.defined() ? t[a][b][c].item<double>() : 0.0;
}

double at2(const at::Tensor& t, std::int64_t a, std::int64_t b)
{
    return t.defined() ? t[a][b].item<double>() : 0.0;
}

double at1(const at::Tensor& t, std::int64_t a)
{
    return t.defined() ? t[a].item<double>() : 0.0;
}

const LayerEffects::Latents& latentsOf(const Effects& e, const NodeRef& node)
{
    for (const auto& l : e.layers.at(static_cast<std::size_t>(node.layer)).latents) {
        if (l.kind == nodeKindName(node.kind))
            return l;
    }
    throw InputError("node '" + node.name() + "': no autoencoder for it in this run");
}

} // namespace

NodeMetrics metricsOf(const AnalysisInput& in, const Effects& e, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    NodeMetrics m;
    m.node = n;
    switch (n.kind) {
    case NodeKind::Embedding:
        m.activation = 1.0;
        m.writeMagnitude = at1(e.embeddingWriteMagnitude, n.token);
        m.directEffect = at1(e.embeddingDirect, n.token);
        m.totalEffect = at1(e.embeddingTotal, n.token);
        break;
    case NodeKind::MlpNeuron: {
        const LayerEffects& le = e.layers[n.layer];
        m.activation = at2(le.neuronActivation, n.token, n.index);
        m.writeMagnitude = at2(le.neuronWriteMagnitude, n.token, n.index);
        m.directEffect = at2(le.neuronDirect, n.token, n.index);
        m.totalEffect = at2(le.neuronTotal, n.token, n.index);
        break;
    }
    case NodeKind::AttnHead: {
        const LayerEffects& le = e.layers[n.layer];
        m.activation = at3(le.headActivation, n.token, n.keyToken, n.index);
        m.writeMagnitude = at3(le.headWriteMagnitude, n.token, n.keyToken, n.index);
        m.directEffect = at3(le.headDirect, n.token, n.keyToken, n.index);
        m.totalEffect = at3(le.headTotal, n.token, n.keyToken, n.index);
        break;
    }
    default: {
        const auto& l = latentsOf(e, n);
        m.activation = at2(l.activation, n.token, n.index);
        m.writeMagnitude = at2(l.writeMagnitude, n.token, n.index);
        m.directEffect = at2(l.direct, n.token, n.index);
        m.totalEffect = at2(l.total, n.token, n.index);
    }
    }
    return m;
}

std::vector<NodeMetrics> topNodes(const AnalysisInput& in, const Effects& e, int k)
{
    if (k < 1)
        return {};
    // Candidates per metric: the k largest |value| of each tensor, then the k largest overall.
    struct Candidate {
        double magnitude;
        NodeRef node;
    };
    enum Metric { Activation, WriteMagnitude, Direct, Total };
    std::map<NodeRef, bool> chosen;
    for (int metric = Activation; metric <= Total; ++metric) {
        std::vector<Candidate> candidates;
        auto collect = [&](const at::Tensor& values, const std::function<NodeRef(std::int64_t)>& nodeAt) {
            if (!values.defined())
                return;
            const at::Tensor flat = values.reshape({-1}).abs();
            const std::int64_t kk = std::min<std::int64_t>(k, flat.numel());
            if (kk == 0)
                return;
            const auto [v, idx] = flat.topk(kk);
            for (std::int64_t i = 0; i < kk; ++i) {
                const double mag = v[i].item<double>();
                if (mag > 0)
                    candidates.push_back({mag, nodeAt(idx[i].item<std::int64_t>())});
            }
        };
        if (metric != Activation) {
            const at::Tensor& emb = metric == WriteMagnitude ? e.embeddingWriteMagnitude
                                    : metric == Direct       ? e.embeddingDirect
                                                             : e.embeddingTotal;
            collect(emb, [](std::int64_t i) { return NodeRef{NodeKind::Embedding, 0, 0, static_cast<int>(i), 0}; });
        }
        for (std::size_t layer = 0; layer < e.layers.size(); ++layer) {
            const LayerEffects& le = e.layers[layer];
            const int l = static_cast<int>(layer);
            const std::int64_t F = le.neuronActivation.size(1);
            const at::Tensor* neuron[] = {&le.neuronActivation, &le.neuronWriteMagnitude, &le.neuronDirect, &le.neuronTotal};
            collect(*neuron[metric], [&](std::int64_t i) {
                return NodeRef{NodeKind::MlpNeuron, l, static_cast<int>(i % F), static_cast<int>(i / F), 0};
            });
            if (metric != Activation) {
                const at::Tensor* head[] = {&le.headActivation, &le.headWriteMagnitude, &le.headDirect, &le.headTotal};
                const std::int64_t n = le.headActivation.size(0), H = le.headActivation.size(2);
                collect(*head[metric], [&](std::int64_t i) {
                    return NodeRef{NodeKind::AttnHead, l, static_cast<int>(i % H), static_cast<int>(i / (n * H)),
                                   static_cast<int>((i / H) % n)};
                });
            }
            for (const auto& lat : le.latents) {
                const at::Tensor* t[] = {&lat.activation, &lat.writeMagnitude, &lat.direct, &lat.total};
                const std::int64_t N = lat.activation.size(1);
                const NodeKind kind = *nodeKindFromName(lat.kind);
                collect(*t[metric], [&](std::int64_t i) {
                    return NodeRef{kind, l, static_cast<int>(i % N), static_cast<int>(i / N), 0};
                });
            }
        }
        std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
            return a.magnitude != b.magnitude ? a.magnitude > b.magnitude : a.node < b.node;
        });
        for (std::size_t i = 0; i < candidates.size() && i < static_cast<std::size_t>(k); ++i)
            chosen[candidates[i].node] = true;
    }
    std::vector<NodeMetrics> out;
    for (const auto& [node, unused] : chosen)
        out.push_back(metricsOf(in, e, node));
    std::stable_sort(out.begin(), out.end(), [&](const NodeMetrics& a, const NodeMetrics& b) {
        return e.hasObjective ? std::abs(a.totalEffect) > std::abs(b.totalEffect)
                              : std::abs(a.writeMagnitude) > std::abs(b.writeMagnitude);
    });
    return out;
}

} // namespace cs
