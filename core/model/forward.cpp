#include "core/model/forward.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

namespace cs {

at::Tensor layerNorm(const at::Tensor& x, const at::Tensor& gain, const at::Tensor& bias, double eps, at::Tensor* sigma)
{
    const at::Tensor centered = x - x.mean(-1, /*keepdim=*/true);
    const at::Tensor s = (centered.pow(2).mean(-1, /*keepdim=*/true) + eps).sqrt();
    if (sigma)
        *sigma = s;
    return centered / s * gain + bias;
}

at::Tensor mlpActivation(const at::Tensor& pre, MlpActivation kind)
{
    return kind == MlpActivation::GeluNew ? at::gelu(pre, "tanh") : at::gelu(pre);
}

double attentionScale(const Gpt2Config& c, int layer)
{
    double scale = c.scaleAttnWeights ? 1.0 / std::sqrt(static_cast<double>(c.dHead())) : 1.0;
    if (c.scaleAttnByInverseLayerIdx)
        scale /= static_cast<double>(layer + 1);
    return scale;
}

at::Tensor mlpActivationDerivative(const at::Tensor& z, MlpActivation kind)
{
    if (kind == MlpActivation::GeluNew) {
        const double c = std::sqrt(2.0 / M_PI);
        const at::Tensor t = at::tanh(c * (z + 0.044715 * z.pow(3)));
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * 0.044715 * z * z);
    }
    // Exact GELU: Φ(z) + z·φ(z).
    const at::Tensor cdf = 0.5 * (1 + at::erf(z / std::sqrt(2.0)));
    const at::Tensor pdf = at::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI);
    return cdf + z * pdf;
}

const SaeRecord* LayerRecord::sae(SaeLocation location) const
{
    for (const auto& r : saes) {
        if (r.bound.location == location)
            return &r;
    }
    return nullptr;
}

bool ForwardAblations::empty() const
{
    for (const auto& l : layers) {
        if (!l.empty())
            return false;
    }
    return true;
}

const LayerAblations* ForwardAblations::at(int layer) const
{
    return layer >= 0 && layer < static_cast<int>(layers.size()) && !layers[layer].empty() ? &layers[layer] : nullptr;
}

namespace {

void checkRange(std::int64_t value, std::int64_t size, const char* what)
{
    if (value < 0 || value >= size)
        throw std::invalid_argument(std::string("runForward: ablation ") + what + " " + std::to_string(value) + " out of range");
}

// `t` with some entries replaced by constants: where(mask, values, t), so nothing flows back through
// the replaced entries. `flatIndex` maps an ablation to its offset in t (row-major).
template <typename FlatIndex>
at::Tensor withConstants(const at::Tensor& t, const std::vector<ActivationAblation>& ablations, FlatIndex flatIndex)
{
    if (ablations.empty())
        return t;
    at::Tensor mask, values;
    {
        at::NoGradGuard noGrad;
        std::vector<std::int64_t> offsets;
        std::vector<double> constants;
        for (const auto& a : ablations) {
            offsets.push_back(flatIndex(a));
            constants.push_back(a.value);
        }
        const at::Tensor where = at::tensor(offsets, at::kLong);
        mask = at::zeros({t.numel()}, at::kBool).index_fill_(0, where, true).view(t.sizes());
        values = at::zeros({t.numel()}, t.options().requires_grad(false))
                     .index_put_({where}, at::tensor(constants, at::kDouble).to(t.scalar_type()))
                     .view(t.sizes());
    }
    return at::where(mask, values, t);
}

} // namespace

at::Tensor withAblatedEntries(const at::Tensor& t, const std::vector<ActivationAblation>& ablations)
{
    return withConstants(t, ablations, [&](const ActivationAblation& a) {
        checkRange(a.token, t.size(0), "token");
        checkRange(a.index, t.size(1), "index");
        return a.token * t.size(1) + a.index;
    });
}

at::Tensor withAblatedProbs(const at::Tensor& probs, const std::vector<ActivationAblation>& ablations)
{
    const std::int64_t n = probs.size(0), H = probs.size(2);
    return withConstants(probs, ablations, [&](const ActivationAblation& a) {
        checkRange(a.token, n, "query token");
        checkRange(a.key, a.token + 1, "key token");
        checkRange(a.index, H, "head");
        return (a.token * n + a.key) * H + a.index;
    });
}

namespace {

const std::vector<ActivationAblation>* latentAblationsFor(const LayerAblations* layer, SaeLocation location)
{
    if (!layer)
        return nullptr;
    const std::string_view kind = saeKindName(location);
    const auto& list = kind == "mlp_sae" ? layer->mlpLatents : kind == "attn_sae" ? layer->attnLatents : layer->residLatents;
    return list.empty() ? nullptr : &list;
}

// Runs the autoencoder bound at (location, layer), if any, on x and returns what flows on.
// Without ablated latents that is x itself: TDB's decode(α1) + (x − decode(α2)) with α1, α2 two copies of
// α equals x, with ∂out/∂x = I and ∂out/∂α1 = D. With ablated latents α1 = α′ (the values put in), so
// out = x + Σ_l (v_l − α_l(x))·s(x)·D_l over the ablated entries: the error term keeps its dependence
// on x through α_l(x) and the normalization scale s(x) (interventions-math §10.2).
at::Tensor applySae(const SaeSet* saes, SaeLocation location, int layer, const at::Tensor& x, LayerRecord& L, bool exactGraph,
                    const LayerAblations* layerAblations)
{
    const BoundSae* bound = saes ? saes->findAt(location, layer) : nullptr;
    if (!bound)
        return x;
    const SparseAutoencoder& sae = *bound->sae;
    const std::vector<ActivationAblation>* ablations = latentAblationsFor(layerAblations, location);
    SaeRecord r;
    r.bound = *bound;
    r.input = x;
    at::Tensor out = x;
    if (at::GradMode::is_enabled() && exactGraph) {
        r.encoding = encodeSae(sae, x);
        r.latents = ablations ? withAblatedEntries(r.encoding.latents, *ablations) : r.encoding.latents.clone();
        r.reconstruction = decodeSae(sae, r.latents, r.encoding);
        r.error = x - decodeSae(sae, r.encoding.latents, r.encoding);
        out = r.reconstruction + r.error;
    } else {
        {
            at::NoGradGuard noGrad;
            r.encoding = encodeSae(sae, x.detach());
            r.latents = ablations ? withAblatedEntries(r.encoding.latents, *ablations) : r.encoding.latents;
            r.reconstruction = decodeSae(sae, r.latents, r.encoding);
            r.error = x.detach() - decodeSae(sae, r.encoding.latents, r.encoding);
        }
        if (ablations) {
            // Only the ablated tokens change; α(x) and s(x) are recomputed there with x attached.
            std::vector<std::int64_t> tokens;
            for (const auto& a : *ablations) {
                checkRange(a.token, x.size(0), "token");
                checkRange(a.index, sae.latentCount(), "latent");
                if (std::find(tokens.begin(), tokens.end(), a.token) == tokens.end())
                    tokens.push_back(a.token);
            }
            std::sort(tokens.begin(), tokens.end());
            const at::Tensor rows = at::tensor(tokens, at::kLong);
            const SaeEncoding attached = encodeSae(sae, x.index_select(0, rows));
            at::Tensor change = at::zeros({static_cast<std::int64_t>(tokens.size()), sae.latentCount()}, attached.latents.options());
            at::Tensor mask = at::zeros_like(change, at::kBool);
            {
                at::NoGradGuard noGrad;
                for (const auto& a : *ablations) {
                    const auto row = std::lower_bound(tokens.begin(), tokens.end(), a.token) - tokens.begin();
                    change[row][a.index] = a.value;
                    mask[row][a.index] = true;
                }
            }
            const at::Tensor delta = at::where(mask, change - attached.latents, at::zeros_like(change));
            const at::Tensor write = at::mm(delta, sae.decoder.to(delta.scalar_type())) * attached.scale;
            out = x.index_add(0, rows, write.to(x.scalar_type()));
        }
    }
    r.output = out;
    L.saes.push_back(std::move(r));
    return out;
}

} // namespace

ActivationRecord runForward(const Gpt2Model& model, const std::vector<int>& ids, const ForwardOptions& options)
{
    const Gpt2Config& c = model.config;
    const Gpt2Weights& w = model.weights;
    const std::int64_t n = static_cast<std::int64_t>(ids.size());
    if (n < 1 || n > c.nCtx)
        throw std::invalid_argument("runForward: " + std::to_string(n) + " tokens, expected 1.." + std::to_string(c.nCtx));
    for (int id : ids) {
        if (id < 0 || id >= c.vocabSize)
            throw std::invalid_argument("runForward: token id " + std::to_string(id) + " out of range");
    }

    c10::AutoGradMode gradMode(options.withGrad);
    const std::int64_t d = c.dModel, H = c.nHead, dh = c.dHead();

    ActivationRecord rec;
    rec.ids = ids;
    rec.withGrad = options.withGrad;
    if (options.ablations)
        rec.ablations = *options.ablations;
    const at::Tensor idTensor = at::tensor(std::vector<std::int64_t>(ids.begin(), ids.end()), at::kLong);
    at::Tensor resid = w.tokenEmbedding.index_select(0, idTensor) + w.positionEmbedding.narrow(0, 0, n);
    if (options.withGrad)
        resid = resid.detach().requires_grad_(true);
    rec.embeddings = resid;

    // Causal mask in the (head, q, k) compute layout: true above the diagonal (k > q).
    const at::Tensor futureMask = at::ones({n, n}, at::kBool).triu(1);

    rec.layers.reserve(c.nLayer);
    for (int layer = 0; layer < c.nLayer; ++layer) {
        if (options.cancelled && options.cancelled())
            throw Cancelled();
        const Gpt2LayerWeights& lw = w.layers[layer];
        const LayerAblations* ablations = options.ablations ? options.ablations->at(layer) : nullptr;
        LayerRecord L;
        const auto sae = [&](SaeLocation location, const at::Tensor& x) {
            return applySae(options.saes, location, layer, x, L, options.exactSaeGraph, ablations);
        };
        resid = sae(SaeLocation::ResidPre, resid);
        L.residIn = resid;

        at::Tensor sigma1;
        const at::Tensor x1 = layerNorm(resid, lw.ln1Gain, lw.ln1Bias, c.layerNormEps, &sigma1);
        L.ln1Sigma = sigma1.squeeze(-1);
        const at::Tensor qkv = at::addmm(lw.attnQkvBias, x1, lw.attnQkvWeight); // [n, 3d]
        L.query = qkv.narrow(1, 0, d).view({n, H, dh});
        L.key = qkv.narrow(1, d, d).view({n, H, dh});
        L.value = qkv.narrow(1, 2 * d, d).view({n, H, dh});

        const double scale = attentionScale(c, layer);
        const at::Tensor qh = L.query.permute({1, 0, 2});   // [H, n, dh]
        const at::Tensor kh = L.key.permute({1, 2, 0});     // [H, dh, n]
        const at::Tensor vh = L.value.permute({1, 0, 2});   // [H, n, dh]
        const at::Tensor scoresHqk = at::bmm(qh, kh).mul(scale).masked_fill(futureMask, -INFINITY);
        const at::Tensor probsHqk = at::softmax(scoresHqk, -1);
        L.scores = scoresHqk.permute({1, 2, 0});           // (q, k, head) as in TDB
        L.probs = probsHqk.permute({1, 2, 0});
        if (ablations)
            L.probs = withAblatedProbs(L.probs, ablations->probs);
        // The weighted sum reads L.probs (not probsHqk) so that autograd can differentiate w.r.t. the
        // recorded probabilities (act×grad of heads, math §6.2).
        L.headOut = at::bmm(L.probs.permute({2, 0, 1}), vh).permute({1, 0, 2}); // [n, H, dh]
        const at::Tensor z = sae(SaeLocation::AttnZ, L.headOut.reshape({n, d}));
        L.headOut = z.view({n, H, dh});
        L.attnOut = sae(SaeLocation::ResidDeltaAttn, at::addmm(lw.attnOutBias, z, lw.attnOutWeight));
        L.residMid = sae(SaeLocation::ResidMid, resid + L.attnOut);

        at::Tensor sigma2;
        const at::Tensor x2 = layerNorm(L.residMid, lw.ln2Gain, lw.ln2Bias, c.layerNormEps, &sigma2);
        L.ln2Sigma = sigma2.squeeze(-1);
        L.mlpPre = at::addmm(lw.mlpInBias, x2, lw.mlpInWeight);
        L.mlpPost = mlpActivation(L.mlpPre, c.activation);
        if (ablations)
            L.mlpPost = withAblatedEntries(L.mlpPost, ablations->neurons);
        const at::Tensor mlpHidden = sae(SaeLocation::MlpPostAct, L.mlpPost);
        L.mlpOut = sae(SaeLocation::ResidDeltaMlp, at::addmm(lw.mlpOutBias, mlpHidden, lw.mlpOutWeight));
        L.residOut = sae(SaeLocation::ResidPost, L.residMid + L.mlpOut);
        resid = L.residOut;
        rec.layers.push_back(std::move(L));
        if (options.progress)
            options.progress(layer + 1);
    }

    at::Tensor sigmaF;
    rec.lnFinalOut = layerNorm(resid, w.lnFinalGain, w.lnFinalBias, c.layerNormEps, &sigmaF);
    rec.lnFinalSigma = sigmaF.squeeze(-1);
    rec.logits = at::mm(rec.lnFinalOut, w.unembedding.t());
    return rec;
}

} // namespace cs
