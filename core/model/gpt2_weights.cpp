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

namespace {

template <typename Compute>
at::Tensor summary(LayerWeightSummaries& cache, LayerWeightSummaries::Entry& entry, const at::Tensor& source, Compute compute)
{
    // Inference-mode tensors have no version counter; nothing changes them in place either.
    const std::int64_t version = source.is_inference() ? 0 : static_cast<std::int64_t>(source._version());
    std::lock_guard lock(cache.mutex);
    if (!entry.value.defined() || !entry.source.is_same(source) || entry.version != version) {
        at::NoGradGuard noGrad;
        entry.value = compute();
        entry.source = source;
        entry.version = version;
    }
    return entry.value;
}

} // namespace

at::Tensor Gpt2LayerWeights::neuronOutNorms() const
{
    return summary(*summaries, summaries->neuronOutNorms, mlpOutWeight, [&] { return weightRowNorms(mlpOutWeight.detach()); });
}

at::Tensor Gpt2LayerWeights::headOutGrams(int dHead) const
{
    return summary(*summaries, summaries->headOutGrams, attnOutWeight, [&] {
        const std::int64_t heads = attnOutWeight.size(0) / dHead;
        const at::Tensor wo = asFloat32(attnOutWeight.detach()).to(at::kDouble).view({heads, dHead, attnOutWeight.size(1)});
        return at::bmm(wo, wo.transpose(1, 2)); // [H, dh, dh]
    });
}

namespace {

template <typename Size>
std::int64_t sumOverTensors(const Gpt2Weights& w, Size size)
{
    std::int64_t n = size(w.tokenEmbedding) + size(w.positionEmbedding) + size(w.lnFinalGain) + size(w.lnFinalBias);
    if (!w.unembedding.is_same(w.tokenEmbedding) && w.unembedding.data_ptr() != w.tokenEmbedding.data_ptr())
        n += size(w.unembedding);
    for (const auto& l : w.layers) {
        for (const at::Tensor* t : {&l.ln1Gain, &l.ln1Bias, &l.attnQkvWeight, &l.attnQkvBias, &l.attnOutWeight,
                                    &l.attnOutBias, &l.ln2Gain, &l.ln2Bias, &l.mlpInWeight, &l.mlpInBias,
                                    &l.mlpOutWeight, &l.mlpOutBias})
            n += size(*t);
    }
    return n;
}

} // namespace

std::int64_t Gpt2Weights::parameterCount() const
{
    return sumOverTensors(*this, [](const at::Tensor& t) { return static_cast<std::int64_t>(t.numel()); });
}

std::int64_t Gpt2Weights::byteCount() const
{
    return sumOverTensors(*this, [](const at::Tensor& t) { return static_cast<std::int64_t>(t.nbytes()); });
}

} // namespace cs
