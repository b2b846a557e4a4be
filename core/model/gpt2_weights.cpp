#include "core/model/gpt2_weights.h"

namespace cs {

namespace {

at::Tensor columns(const at::Tensor& w, std::int64_t begin, std::int64_t width)
{
    return w.narrow(1, begin, width);
}

} // namespace

at::Tensor Gpt2LayerWeights::queryWeight(int head, int dHead) const
{
    return columns(attnQkvWeight, static_cast<std::int64_t>(head) * dHead, dHead);
}

at::Tensor Gpt2LayerWeights::keyWeight(int head, int dHead) const
{
    const auto d = attnQkvWeight.size(0);
    return columns(attnQkvWeight, d + static_cast<std::int64_t>(head) * dHead, dHead);
}

at::Tensor Gpt2LayerWeights::valueWeight(int head, int dHead) const
{
    const auto d = attnQkvWeight.size(0);
    return columns(attnQkvWeight, 2 * d + static_cast<std::int64_t>(head) * dHead, dHead);
}

at::Tensor Gpt2LayerWeights::outWeight(int head, int dHead) const
{
    return attnOutWeight.narrow(0, static_cast<std::int64_t>(head) * dHead, dHead);
}

std::int64_t Gpt2Weights::parameterCount() const
{
    std::int64_t n = tokenEmbedding.numel() + positionEmbedding.numel() + lnFinalGain.numel() + lnFinalBias.numel();
    if (!unembedding.is_same(tokenEmbedding) && unembedding.data_ptr() != tokenEmbedding.data_ptr())
        n += unembedding.numel();
    for (const auto& l : layers) {
        for (const at::Tensor* t : {&l.ln1Gain, &l.ln1Bias, &l.attnQkvWeight, &l.attnQkvBias, &l.attnOutWeight,
                                    &l.attnOutBias, &l.ln2Gain, &l.ln2Bias, &l.mlpInWeight, &l.mlpInBias,
                                    &l.mlpOutWeight, &l.mlpOutBias})
            n += t->numel();
    }
    return n;
}

} // namespace cs
