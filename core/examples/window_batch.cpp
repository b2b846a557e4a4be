#include "core/examples/window_batch.h"

#include "core/examples/example_index.h"
#include "core/model/forward.h"

#include <c10/core/GradMode.h>

#include <stdexcept>

namespace cs {

namespace {

// Heads: for every (window, query, head) the largest probability over the window's keys k ≤ q and the
// smallest k that has it. probs: [B·H, n, n] contiguous, (window, head, q, k); the entries k > q are 0.
GroupActivations headActivations(const at::Tensor& probsBhqk, std::int64_t B, std::int64_t H, std::int64_t n)
{
    const at::Tensor p = probsBhqk.to(at::kFloat).contiguous();
    const float* P = p.data_ptr<float>();
    GroupActivations out;
    out.values = at::empty({B * n, H}, at::kFloat);
    float* V = out.values.data_ptr<float>();
    out.keyArgMax.assign(static_cast<std::size_t>(B * n * H), 0);
    for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t h = 0; h < H; ++h) {
            for (std::int64_t q = 0; q < n; ++q) {
                const float* row = P + ((b * H + h) * n + q) * n;
                float best = row[0];
                int arg = 0;
                for (std::int64_t k = 1; k <= q; ++k) {
                    if (row[k] > best) { // strictly: the smallest k wins a tie
                        best = row[k];
                        arg = static_cast<int>(k);
                    }
                }
                const std::int64_t at = (b * n + q) * H + h;
                V[at] = best;
                out.keyArgMax[static_cast<std::size_t>(at)] = arg;
            }
        }
    }
    return out;
}

} // namespace

std::vector<GroupActivations> windowBatchActivations(const Gpt2Model& model, const SaeSet& saes, const std::vector<ExampleNodeGroup>& groups,
                                                     const std::vector<std::vector<int>>& windows, const std::function<bool()>& cancelled)
{
    const Gpt2Config& c = model.config;
    const Gpt2Weights& w = model.weights;
    const std::int64_t B = static_cast<std::int64_t>(windows.size());
    if (B < 1)
        throw std::invalid_argument("windowBatchActivations: no windows");
    const std::int64_t n = static_cast<std::int64_t>(windows.front().size());
    if (n < 1 || n > c.nCtx)
        throw std::invalid_argument("windowBatchActivations: windows of " + std::to_string(n) + " tokens, expected 1.." + std::to_string(c.nCtx));
    const std::size_t expectedGroups = static_cast<std::size_t>(2 * c.nLayer) + saes.all().size();
    if (groups.size() != expectedGroups)
        throw std::invalid_argument("windowBatchActivations: the groups do not match the model and autoencoders");
    std::vector<std::int64_t> idList;
    idList.reserve(static_cast<std::size_t>(B * n));
    for (const auto& ids : windows) {
        if (static_cast<std::int64_t>(ids.size()) != n)
            throw std::invalid_argument("windowBatchActivations: windows of different lengths");
        for (int id : ids) {
            if (id < 0 || id >= c.vocabSize)
                throw std::invalid_argument("windowBatchActivations: token id " + std::to_string(id) + " out of range");
            idList.push_back(id);
        }
    }

    c10::NoGradGuard noGrad;
    const std::int64_t R = B * n, d = c.dModel, H = c.nHead, dh = c.dHead();
    const at::Tensor ids = at::tensor(idList, at::kLong);
    // r0 = E[tok] + Π[pos], the position embedding broadcast over the windows.
    at::Tensor resid = (w.tokenEmbedding.index_select(0, ids).view({B, n, d}) + w.positionEmbedding.narrow(0, 0, n)).view({R, d});
    // The causal mask inside each window (−∞ for k > q), broadcast over (window, head) in the scores.
    const at::Tensor futureBias = at::zeros({n, n}, resid.options()).masked_fill_(at::ones({n, n}, at::kBool).triu(1), -INFINITY);

    std::vector<GroupActivations> out(groups.size());
    std::vector<LayerRecord> layers(static_cast<std::size_t>(c.nLayer));
    for (int layer = 0; layer < c.nLayer; ++layer) {
        if (cancelled && cancelled())
            throw Cancelled();
        const Gpt2LayerWeights& lw = w.layers[static_cast<std::size_t>(layer)];
        LayerRecord& L = layers[static_cast<std::size_t>(layer)];
        L.residIn = resid;
        const at::Tensor x1 = layerNorm(resid, lw.ln1Gain, lw.ln1Bias, c.layerNormEps, nullptr);
        const at::Tensor qkv = at::addmm(lw.attnQkvBias, x1, lw.attnQkvWeight).view({B, n, 3, H, dh}); // [R, 3d]
        const at::Tensor qh = qkv.select(2, 0).permute({0, 2, 1, 3}).reshape({B * H, n, dh});
        const at::Tensor kh = qkv.select(2, 1).permute({0, 2, 3, 1}).reshape({B * H, dh, n});
        const at::Tensor vh = qkv.select(2, 2).permute({0, 2, 1, 3}).reshape({B * H, n, dh});
        const at::Tensor scores = at::baddbmm(futureBias, qh, kh, /*beta=*/1, /*alpha=*/attentionScale(c, layer)); // [B·H, n, n]
        const at::Tensor probs = at::softmax(scores, -1);
        out[static_cast<std::size_t>(2 * layer)] = headActivations(probs, B, H, n);
        L.attnZ = at::bmm(probs, vh).view({B, H, n, dh}).permute({0, 2, 1, 3}).reshape({R, d});
        L.attnOut = at::addmm(lw.attnOutBias, L.attnZ, lw.attnOutWeight);
        L.residMid = resid + L.attnOut;
        const at::Tensor x2 = layerNorm(L.residMid, lw.ln2Gain, lw.ln2Bias, c.layerNormEps, nullptr);
        L.mlpPost = mlpActivation(at::addmm(lw.mlpInBias, x2, lw.mlpInWeight), c.activation);
        out[static_cast<std::size_t>(2 * layer + 1)].values = L.mlpPost.to(at::kFloat).contiguous();
        L.mlpOut = at::addmm(lw.mlpOutBias, L.mlpPost, lw.mlpOutWeight);
        L.residOut = L.residMid + L.mlpOut;
        resid = L.residOut;
    }
    // The autoencoders, from their inputs (they do not change the pass).
    for (std::size_t i = 0; i < saes.all().size(); ++i) {
        if (cancelled && cancelled())
            throw Cancelled();
        const BoundSae& s = saes.all()[i];
        const at::Tensor& x = saeLocationTensor(layers.at(static_cast<std::size_t>(s.layer)), s.location);
        out[static_cast<std::size_t>(2 * c.nLayer) + i].values = encodeSae(*s.sae, x).latents.to(at::kFloat).contiguous();
    }
    return out;
}

} // namespace cs
