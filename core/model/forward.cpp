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
        L.headOut = at::bmm(probsHqk, vh).permute({1, 0, 2}); // [n, H, dh]
        L.attnOut = at::addmm(lw.attnOutBias, L.headOut.reshape({n, d}), lw.attnOutWeight);
        L.residMid = resid + L.attnOut;

        at::Tensor sigma2;
        const at::Tensor x2 = layerNorm(L.residMid, lw.ln2Gain, lw.ln2Bias, c.layerNormEps, &sigma2);
        L.ln2Sigma = sigma2.squeeze(-1);
        L.mlpPre = at::addmm(lw.mlpInBias, x2, lw.mlpInWeight);
        L.mlpPost = mlpActivation(L.mlpPre, c.activation);
        L.mlpOut = at::addmm(lw.mlpOutBias, L.mlpPost, lw.mlpOutWeight);
        L.residOut = L.residMid + L.mlpOut;
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
