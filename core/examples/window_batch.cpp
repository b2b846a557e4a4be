#include "core/examples/window_batch.h"

#include "core/examples/example_index.h"
#include "core/model/forward.h"

#include <c10/core/GradMode.h>

#include <stdexcept>

namespace cs {

namespace {

// Heads: for every (window, query, head) the largest probability over the window's keys k ≤ q and the
// smallest k that has it. probs: [B, H, n, n] (window, head, q, k), contiguous; the entries k > q are 0.
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
    // The model's own pass over all windows at once (each attends within itself), no autograd, no
    // logits; the autoencoders are encoded below from their recorded inputs.
    ForwardOptions options;
    options.logits = RecordLogits::None;
    options.windowLength = n;
    options.cancelled = cancelled;
    const std::vector<int> flat(idList.begin(), idList.end());
    const ActivationRecord record = runForward(model, flat, options);
    const std::int64_t H = c.nHead;
    std::vector<GroupActivations> out(groups.size());
    for (int layer = 0; layer < c.nLayer; ++layer) {
        const LayerRecord& L = record.layers[static_cast<std::size_t>(layer)];
        // [W, q, k, H] ([q, k, H] for one window) is a view of the pass's (window, head, q, k) tensor:
        // permuting back copies nothing.
        const at::Tensor probs = L.probs.dim() == 3 ? L.probs.unsqueeze(0) : L.probs;
        out[static_cast<std::size_t>(2 * layer)] = headActivations(probs.permute({0, 3, 1, 2}), B, H, n);
        out[static_cast<std::size_t>(2 * layer + 1)].values = L.mlpPost.to(at::kFloat).contiguous();
    }
    const std::vector<LayerRecord>& layers = record.layers;
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
