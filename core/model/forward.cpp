#include "core/model/forward.h"

#include <c10/core/GradMode.h>

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

namespace {

// Runs the autoencoder bound at (location, layer), if any, on x and returns what flows on: TDB's
// decode(α1) + (x − decode(α2)) with α1, α2 two copies of α, so that ∂out/∂x = I and ∂out/∂α1 = D.
at::Tensor applySae(const SaeSet* saes, SaeLocation location, int layer, const at::Tensor& x, LayerRecord& L, bool exactGraph)
{
    const BoundSae* bound = saes ? saes->findAt(location, layer) : nullptr;
    if (!bound)
        return x;
    SaeRecord r;
    r.bound = *bound;
    r.input = x;
    at::Tensor out = x;
    if (at::GradMode::is_enabled() && exactGraph) {
        r.encoding = encodeSae(*bound->sae, x);
        r.latents = r.encoding.latents.clone();
        r.reconstruction = decodeSae(*bound->sae, r.latents, r.encoding);
        r.error = x - decodeSae(*bound->sae, r.encoding.latents, r.encoding);
        out = r.reconstruction + r.error;
    } else {
        at::NoGradGuard noGrad;
        r.encoding = encodeSae(*bound->sae, x.detach());
        r.latents = r.encoding.latents;
        r.reconstruction = decodeSae(*bound->sae, r.latents, r.encoding);
        r.error = x.detach() - r.reconstruction;
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
        LayerRecord L;
        resid = applySae(options.saes, SaeLocation::ResidPre, layer, resid, L, options.exactSaeGraph);
        L.residIn = resid;

        at::Tensor sigma1;
        const at::Tensor x1 = layerNorm(resid, lw.ln1Gain, lw.ln1Bias, c.layerNormEps, &sigma1);
        L.ln1Sigma = sigma1.squeeze(-1);
        const at::Tensor qkv = at::addmm(lw.attnQkvBias, x1, lw.attnQkvWeight); // [n, 3d]
        L.query = qkv.narrow(1, 0, d).view({n, H, dh});
        L.key = qkv.narrow(1, d, d).view({n, H, dh});
        L.value = qkv.narrow(1, 2 * d, d).view({n, H, dh});

        double scale = c.scaleAttnWeights ? 1.0 / std::sqrt(static_cast<double>(dh)) : 1.0;
        if (c.scaleAttnByInverseLayerIdx)
            scale /= static_cast<double>(layer + 1);
        const at::Tensor qh = L.query.permute({1, 0, 2});   // [H, n, dh]
        const at::Tensor kh = L.key.permute({1, 2, 0});     // [H, dh, n]
        const at::Tensor vh = L.value.permute({1, 0, 2});   // [H, n, dh]
        const at::Tensor scoresHqk = at::bmm(qh, kh).mul(scale).masked_fill(futureMask, -INFINITY);
        const at::Tensor probsHqk = at::softmax(scoresHqk, -1);
        L.scores = scoresHqk.permute({1, 2, 0});           // (q, k, head) as in TDB
        L.probs = probsHqk.permute({1, 2, 0});
        // The weighted sum reads L.probs (not probsHqk) so that autograd can differentiate w.r.t. the
        // recorded probabilities (act×grad of heads, math §6.2).
        L.headOut = at::bmm(L.probs.permute({2, 0, 1}), vh).permute({1, 0, 2}); // [n, H, dh]
        const at::Tensor z = applySae(options.saes, SaeLocation::AttnZ, layer, L.headOut.reshape({n, d}), L, options.exactSaeGraph);
        L.headOut = z.view({n, H, dh});
        L.attnOut = applySae(options.saes, SaeLocation::ResidDeltaAttn, layer,
                             at::addmm(lw.attnOutBias, z, lw.attnOutWeight), L, options.exactSaeGraph);
        L.residMid = applySae(options.saes, SaeLocation::ResidMid, layer, resid + L.attnOut, L, options.exactSaeGraph);

        at::Tensor sigma2;
        const at::Tensor x2 = layerNorm(L.residMid, lw.ln2Gain, lw.ln2Bias, c.layerNormEps, &sigma2);
        L.ln2Sigma = sigma2.squeeze(-1);
        L.mlpPre = at::addmm(lw.mlpInBias, x2, lw.mlpInWeight);
        L.mlpPost = applySae(options.saes, SaeLocation::MlpPostAct, layer, mlpActivation(L.mlpPre, c.activation), L, options.exactSaeGraph);
        L.mlpOut = applySae(options.saes, SaeLocation::ResidDeltaMlp, layer,
                            at::addmm(lw.mlpOutBias, L.mlpPost, lw.mlpOutWeight), L, options.exactSaeGraph);
        L.residOut = applySae(options.saes, SaeLocation::ResidPost, layer, L.residMid + L.mlpOut, L, options.exactSaeGraph);
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
