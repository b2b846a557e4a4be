#include "core/analysis/effects.h"

#include "core/linalg/weight_product.h"

#include "core/analysis/objective.h"

#include "core/util/errors.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>

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
    case SaeLocation::MlpPostAct: return timesWeight(directions, lw.mlpOutWeight);
    case SaeLocation::AttnZ: return timesWeight(directions, lw.attnOutWeight);
    default: return directions;
    }
}

// The transpose: a residual-space row vector pulled back to the autoencoder's input space.
at::Tensor fromResidual(const Gpt2LayerWeights& lw, SaeLocation location, const at::Tensor& rows)
{
    switch (location) {
    case SaeLocation::MlpPostAct: return timesWeightT(rows, lw.mlpOutWeight);
    case SaeLocation::AttnZ: return timesWeightT(rows, lw.attnOutWeight);
    default: return rows;
    }
}

// ‖D_l in residual space‖ of the latents `latents` (int64 [m], repeats allowed), cached per bound
// autoencoder (see LatentNormCache): only latents never asked for before are computed.
at::Tensor latentDirectionNorms(const Gpt2LayerWeights& lw, const BoundSae& bound, const at::Tensor& latents)
{
    at::NoGradGuard noGrad;
    LatentNormCache& cache = *bound.normCache;
    const at::Tensor& dec = bound.sae->decoder;
    const std::lock_guard<std::mutex> lock(cache.mutex);
    if (!cache.norms.defined()) {
        cache.norms = at::zeros({dec.size(0)});
        cache.known = at::zeros({dec.size(0)}, at::kBool);
    }
    const at::Tensor missing = (at::zeros_like(cache.known).index_fill_(0, latents, true) & ~cache.known).nonzero().squeeze(1);
    constexpr std::int64_t kBlock = 4096; // bounds the temporary to 4096 × d floats
    for (std::int64_t start = 0; start < missing.numel(); start += kBlock) {
        const at::Tensor rows = missing.narrow(0, start, std::min(kBlock, missing.numel() - start));
        cache.norms.index_copy_(0, rows, toResidual(lw, bound.location, weightRows(dec, rows)).norm(2, -1).to(cache.norms.scalar_type()));
    }
    cache.known.index_fill_(0, missing, true);
    return cache.norms.index_select(0, latents);
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

namespace {

// Σ_c A[rowsA[i], c]·B[rowsB[i], c] for every i (A: an autoencoder's decoder [N, d], B: [n, d] rows
// per token). In float32, one dot product per entry reading both rows where they are: gathering the
// rows first (or a product with the span of tokens a block touches) copied or multiplied about 20 ×
// the entries' own work, which for 24 autoencoders of 32k latents cost more than their latent effects.
at::Tensor rowDots(const at::Tensor& A, const at::Tensor& rowsA, const at::Tensor& B, const at::Tensor& rowsB)
{
    const std::int64_t count = rowsA.numel();
    if (A.scalar_type() != at::kFloat || B.scalar_type() != at::kFloat) {
        // A half-precision decoder (rows converted a block at a time) or double tests: tensor products.
        at::Tensor out = at::empty({count}, A.options().dtype(computeDtype(A)));
        const at::Tensor Bc = B.to(computeDtype(A));
        constexpr std::int64_t kBlock = 2048;
        for (std::int64_t start = 0; start < count; start += kBlock) {
            const std::int64_t m = std::min(kBlock, count - start);
            out.narrow(0, start, m).copy_((weightRows(A, rowsA.narrow(0, start, m)) * Bc.index_select(0, rowsB.narrow(0, start, m))).sum(1));
        }
        return out;
    }
    const at::Tensor a = A.contiguous(), b = B.contiguous();
    const at::Tensor ra = rowsA.to(at::kLong).contiguous(), rb = rowsB.to(at::kLong).contiguous();
    const std::int64_t d = a.size(1);
    at::Tensor out = at::empty({count}, a.options());
    const float* ap = a.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    const std::int64_t* iap = ra.data_ptr<std::int64_t>();
    const std::int64_t* ibp = rb.data_ptr<std::int64_t>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, count, 64, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            const float* x = ap + iap[i] * d;
            const float* y = bp + ibp[i] * d;
            float sum = 0;
#pragma omp simd reduction(+ : sum)
            for (std::int64_t c = 0; c < d; ++c)
                sum += x[c] * y[c];
            op[i] = sum;
        }
    });
    return out;
}

// Query rows per block of per-pair head values: m·n·H floats stay below 4 Mi (16 MB), and blocks of at
// most 128 rows let a recomputed block skip the keys after its last query (56 % of the products'
// work at 1,024 tokens instead of 67 % with 341-row blocks).
std::int64_t queryBlock(std::int64_t n, std::int64_t heads)
{
    return std::clamp<std::int64_t>((std::int64_t(1) << 22) / std::max<std::int64_t>(1, n * heads), 1, 128);
}

// x_h · y_hᵀ for every head: a [m, H, c], b [k, H, c] → [m, k, H].
at::Tensor perHeadProducts(const at::Tensor& a, const at::Tensor& b)
{
    return at::bmm(a.permute({1, 0, 2}), b.permute({1, 2, 0})).permute({1, 2, 0});
}

} // namespace

at::Tensor LayerEffects::neurons(Metric metric) const
{
    switch (metric) {
    case Metric::Activation: return neuronActivation;
    case Metric::WriteMagnitude: return neuronActivation * neuronOutNorm.unsqueeze(0);
    case Metric::DirectEffect:
        return hasObjective ? at::zeros_like(neuronActivation).index_copy_(0, directRows, neuronDirectRows) : at::Tensor();
    case Metric::TotalEffect: return hasObjective ? neuronActivation * neuronGradient : at::Tensor();
    }
    return {};
}

at::Tensor LayerEffects::heads(Metric metric, std::int64_t first, std::int64_t count) const
{
    const std::int64_t n = probs.tokens();
    if (count < 0)
        count = n - first;
    if (metricNeedsObjective(metric) && !hasObjective)
        return {};
    const at::Tensor P = probs.rows(first, count); // [m, k, H]
    switch (metric) {
    case Metric::Activation: return P;
    case Metric::WriteMagnitude: return P * valueWriteNorm.unsqueeze(0);
    case Metric::TotalEffect: return P * perHeadProducts(headOutGradient.narrow(0, first, count), value);
    case Metric::DirectEffect: {
        at::Tensor out = at::zeros_like(P);
        // The rows of G inside [first, first + count).
        const at::Tensor inBlock = ((directRows >= first) & (directRows < first + count)).nonzero().squeeze(1);
        if (inBlock.numel() == 0)
            return out;
        const at::Tensor rows = directRows.index_select(0, inBlock) - first;
        const at::Tensor factor = headDirectFactor.index_select(0, inBlock); // [r, H, dh]
        out.index_copy_(0, rows, P.index_select(0, rows) * perHeadProducts(factor, value));
        return out;
    }
    }
    return {};
}

at::Tensor LayerEffects::headRow(Metric metric, std::int64_t q, std::int64_t h) const
{
    if (metricNeedsObjective(metric) && !hasObjective)
        return {};
    const at::Tensor P = probs.headBlock(h, q, 1)[0]; // [q + 1]
    const at::Tensor V = value.narrow(0, 0, q + 1).select(1, h); // [q + 1, dh]
    switch (metric) {
    case Metric::Activation: return P;
    case Metric::WriteMagnitude: return P * valueWriteNorm.narrow(0, 0, q + 1).select(1, h);
    case Metric::TotalEffect: return P * at::mv(V, headOutGradient[q][h]);
    case Metric::DirectEffect: {
        const at::Tensor where = (directRows == q).nonzero();
        if (where.numel() == 0)
            return at::zeros_like(P);
        return P * at::mv(V, headDirectFactor[where[0][0].item<std::int64_t>()][h]);
    }
    }
    return {};
}

at::Tensor LayerEffects::headsOverKeys(Metric metric) const
{
    if (metricNeedsObjective(metric) && !hasObjective)
        return {};
    switch (metric) {
    case Metric::Activation:
        if (!activationOverKeys.defined())
            fillKeyMaxima();
        return activationOverKeys;
    case Metric::WriteMagnitude:
        if (!writeOverKeys.defined())
            fillKeyMaxima();
        return writeOverKeys;
    // Σ_k P[q,k,h]·(x[q,h]·V[k,h]) = x[q,h]·Z[q,h]: the head's whole output at q.
    case Metric::TotalEffect: return (headOutGradient * headOut).sum(-1);
    case Metric::DirectEffect: {
        at::Tensor out = at::zeros({probs.tokens(), probs.heads()}, headOut.options());
        if (directRows.numel() > 0)
            out.index_copy_(0, directRows, (headDirectFactor * headOut.index_select(0, directRows)).sum(-1));
        return out;
    }
    }
    return {};
}

const LayerEffects::KeyMaxima& LayerEffects::headKeyMaxima(Metric metric) const
{
    std::optional<KeyMaxima>& slot = keyMaximaCache[static_cast<std::size_t>(metric)];
    if (slot)
        return *slot;
    if (metricNeedsObjective(metric) && !hasObjective) {
        slot.emplace();
        return *slot;
    }
    if (metric != Metric::DirectEffect) {
        fillKeyMaxima();
        return *slot;
    }
    slot.emplace();
    at::NoGradGuard noGrad;
    const std::int64_t n = probs.tokens(), H = probs.heads();
    at::Tensor key = at::zeros({n, H}, at::kLong);
    at::Tensor best = at::zeros({n, H}, headOut.options());
    // Zero outside the rows of G; there, one batched product [H, r, dh]·[H, dh, k] and a reduction over keys.
    if (directRows.numel() > 0) {
        const at::Tensor P = probs.rowsAt(directRows).permute({2, 0, 1}); // [H, r, k]
        const at::Tensor v = P * at::bmm(headDirectFactor.permute({1, 0, 2}), value.permute({1, 2, 0}));
        const at::Tensor index = std::get<1>(v.abs().max(-1)); // [H, r]
        key.index_copy_(0, directRows, index.t());
        best.index_copy_(0, directRows, v.gather(-1, index.unsqueeze(-1)).squeeze(-1).t());
    }
    slot->key = key;
    slot->value = best;
    return *slot;
}

// The key maxima of the activation, the write magnitude and (with an objective) the total effect, and
// the activation's maximum and the write magnitude's sum over keys, for every (query, head): the key k
// with the largest |P[q,k,h]·f| for f = 1, ‖V[k,h]·W_O[h]‖ and x[q,h]·V[k,h] (x = ∂O/∂Z), and that
// signed value; max_k P and Σ_k P·‖V·W_O‖. One fused loop reads each block of P once for all of them
// (P is 50 MB a layer at 1,024 tokens: a reduction per metric made a pass and a temporary of that size
// each). Blocks come either from the attention node's backward pass, which has P and the x·V products
// at hand (AttentionBackwardObserver), or from fillKeyMaxima, which recomputes them.
namespace {

struct KeyReductions {
    static constexpr int kinds = 3; // activation, write, total
    std::int64_t n = 0, H = 0;
    bool total = false;
    at::Tensor norms;                  // ‖V[k,h]·W_O[h]‖ as [H, k], float32
    at::Tensor keys[kinds], values[kinds], maxima, sums; // [q, H]
    std::atomic<std::int64_t> rowsDone{0}; // (query, head) rows reduced: n·H when complete

    KeyReductions(const at::Tensor& valueWriteNorm, bool withTotal)
        : n(valueWriteNorm.size(0)), H(valueWriteNorm.size(1)), total(withTotal),
          norms(valueWriteNorm.t().to(at::kFloat).contiguous())
    {
        for (int i = 0; i < kinds; ++i) {
            keys[i] = at::zeros({n, H}, at::kLong);
            values[i] = at::zeros({n, H}, at::kFloat);
        }
        maxima = at::zeros({n, H}, at::kFloat);
        sums = at::zeros({n, H}, at::kFloat);
    }

    // One head's block of query rows [first, first + m): P rows of stride pStride (keys up to each
    // query; those after it are 0), and x·V rows of stride xStride (null without an objective).
    // Vectorized reductions first (max is exact in any order), then the first key that reaches each
    // maximum: the same key and value as a sequential scan keeping the first of a tie. Safe to call for
    // different heads from different threads.
    void reduce(std::int64_t h, std::int64_t first, std::int64_t m, const float* p, std::int64_t pStride, const float* x, std::int64_t xStride)
    {
        const float* wr = norms.data_ptr<float>() + h * n;
        std::int64_t* keyOut[kinds];
        float* valueOut[kinds];
        for (int i = 0; i < kinds; ++i) {
            keyOut[i] = keys[i].data_ptr<std::int64_t>();
            valueOut[i] = values[i].data_ptr<float>();
        }
        float* maxOut = maxima.data_ptr<float>();
        float* sumOut = sums.data_ptr<float>();
        for (std::int64_t r = 0; r < m; ++r) {
            const std::int64_t q = first + r;
            const float* pr = p + r * pStride;
            const float* xr = x ? x + r * xStride : nullptr;
            // Keys after the query have P = 0 (the causal mask; ablations cannot name them), so they can
            // neither be a row's maximum by magnitude nor change its value or sum.
            const std::int64_t count = q + 1;
            float largest = q + 1 < n ? 0.0f : pr[0]; // max over every key, the zeros after the query included
            float sum = 0;
#pragma omp simd reduction(max : largest) reduction(+ : sum)
            for (std::int64_t k = 0; k < count; ++k) {
                largest = std::max(largest, pr[k]);
                sum += pr[k] * wr[k];
            }
            float m0 = 0, m1 = 0, m2 = 0;
#pragma omp simd reduction(max : m0, m1)
            for (std::int64_t k = 0; k < count; ++k) {
                m0 = std::max(m0, std::abs(pr[k]));
                m1 = std::max(m1, std::abs(pr[k] * wr[k]));
            }
            if (xr) {
#pragma omp simd reduction(max : m2)
                for (std::int64_t k = 0; k < count; ++k)
                    m2 = std::max(m2, std::abs(pr[k] * xr[k]));
            }
            const float maxAbs[kinds] = {m0, m1, m2};
            for (int i = 0; i < kinds; ++i) {
                if (i == 2 && !xr)
                    break;
                std::int64_t bestKey = 0;
                float bestValue = 0;
                for (std::int64_t k = 0; k < count; ++k) {
                    const float v = i == 0 ? pr[k] : i == 1 ? pr[k] * wr[k] : pr[k] * xr[k];
                    if (std::abs(v) == maxAbs[i]) {
                        bestKey = k;
                        bestValue = v;
                        break;
                    }
                }
                keyOut[i][q * H + h] = bestKey;
                valueOut[i][q * H + h] = bestValue;
            }
            maxOut[q * H + h] = largest;
            sumOut[q * H + h] = sum;
        }
        rowsDone += m;
    }

    // Into the layer's caches, in the layer's type.
    void store(const LayerEffects& le) const
    {
        const at::ScalarType type = le.headOut.scalar_type();
        const Metric metrics[kinds] = {Metric::Activation, Metric::WriteMagnitude, Metric::TotalEffect};
        for (int i = 0; i < kinds; ++i) {
            if (i == 2 && !total)
                continue;
            le.keyMaximaCache[static_cast<std::size_t>(metrics[i])] = LayerEffects::KeyMaxima{keys[i], values[i].to(type)};
        }
        le.activationOverKeys = maxima.to(type);
        le.writeOverKeys = sums.to(type);
    }
};

} // namespace

// Without recorded probabilities the blocks are recomputed here, once, and only up to the keys their
// queries see; the total effect's x·V products come from one product per block of query rows.
void LayerEffects::fillKeyMaxima() const
{
    at::NoGradGuard noGrad;
    const std::int64_t n = probs.tokens(), H = probs.heads();
    const bool total = hasObjective;
    KeyReductions out(valueWriteNorm, total);
    // Heads in parallel, each by blocks of query rows: one head's block of P (and of the x·V products)
    // is at most 128 × n floats and stays in the core's cache through every reduction.
    const std::int64_t block = queryBlock(n, H);
    const at::Tensor gradient = total ? headOutGradient.to(at::kFloat) : at::Tensor(); // [n, H, dh]
    const at::Tensor valueF = value.to(at::kFloat);
    at::parallel_for(0, H, 1, [&](std::int64_t beginHead, std::int64_t endHead) {
        at::NoGradGuard noGradHere; // grad mode is per thread
        for (std::int64_t h = beginHead; h < endHead; ++h) {
            for (std::int64_t first = 0; first < n; first += block) {
                const std::int64_t m = std::min(block, n - first), seen = first + m; // keys [0, seen)
                at::Tensor P = probs.headBlock(h, first, m).to(at::kFloat);        // [m, seen]
                if (P.stride(1) != 1)
                    P = P.contiguous(); // a recorded P in another layout
                const at::Tensor products = total ? at::mm(gradient.narrow(0, first, m).select(1, h), valueF.narrow(0, 0, seen).select(1, h).t())
                                                  : at::Tensor(); // [m, seen]
                out.reduce(h, first, m, P.data_ptr<float>(), P.stride(0), total ? products.data_ptr<float>() : nullptr, seen);
            }
        }
    });
    out.store(*this);
}

at::Tensor LayerEffects::totalToKeys() const
{
    return hasObjective ? totalToKeys_ : at::Tensor();
}

double LayerEffects::neuron(Metric metric, int t, int f) const
{
    switch (metric) {
    case Metric::Activation: return neuronActivation[t][f].item<double>();
    case Metric::WriteMagnitude: return (neuronActivation[t][f] * neuronOutNorm[f]).item<double>();
    case Metric::TotalEffect: return hasObjective ? (neuronActivation[t][f] * neuronGradient[t][f]).item<double>() : 0.0;
    case Metric::DirectEffect: {
        if (!hasObjective)
            return 0.0;
        const at::Tensor where = (directRows == t).nonzero();
        return where.numel() ? neuronDirectRows[where[0][0].item<std::int64_t>()][f].item<double>() : 0.0;
    }
    }
    return 0.0;
}

double LayerEffects::head(Metric metric, int q, int k, int h) const
{
    const at::Tensor p = at::scalar_tensor(probs.at(q, k, h), headOut.options());
    switch (metric) {
    case Metric::Activation: return p.item<double>();
    case Metric::WriteMagnitude: return (p * valueWriteNorm[k][h]).item<double>();
    case Metric::TotalEffect: return hasObjective ? (p * at::dot(headOutGradient[q][h], value[k][h])).item<double>() : 0.0;
    case Metric::DirectEffect: {
        if (!hasObjective)
            return 0.0;
        const at::Tensor where = (directRows == q).nonzero();
        return where.numel() ? (p * at::dot(headDirectFactor[where[0][0].item<std::int64_t>()][h], value[k][h])).item<double>() : 0.0;
    }
    }
    return 0.0;
}

at::Tensor LayerEffects::Latents::dense(Metric metric) const
{
    if (metric == Metric::Activation)
        return activation;
    const at::Tensor& values = metric == Metric::WriteMagnitude ? activeWriteMagnitude : metric == Metric::DirectEffect ? activeDirect : activeTotal;
    if (!values.defined())
        return {};
    return at::zeros({tokens, count}, values.options()).index_put_({activeTokens, activeLatents}, values);
}

at::Tensor LayerEffects::Latents::active(Metric metric) const
{
    switch (metric) {
    case Metric::Activation: return activation.index({activeTokens, activeLatents});
    case Metric::WriteMagnitude: return activeWriteMagnitude;
    case Metric::DirectEffect: return activeDirect;
    case Metric::TotalEffect: return activeTotal;
    }
    return {};
}

std::vector<std::vector<std::pair<int, double>>> LayerEffects::Latents::topPerToken(Metric metric, int topN) const
{
    const at::Tensor values = active(metric);
    if (!values.defined())
        return {};
    const std::int64_t k = std::clamp<std::int64_t>(topN, 0, count);
    const at::Tensor v = values.to(at::kDouble).contiguous();
    const double* vp = v.data_ptr<double>();
    const std::int64_t* tp = activeTokens.data_ptr<std::int64_t>();
    const std::int64_t* lp = activeLatents.data_ptr<std::int64_t>();
    const std::int64_t nnz = activeTokens.numel();
    std::vector<std::vector<std::pair<int, double>>> out(static_cast<std::size_t>(tokens));
    std::vector<std::pair<int, double>> nonzero;
    // The active entries are row-major: each token's are one run of consecutive entries.
    for (std::int64_t i = 0, t = 0; t < tokens; ++t) {
        nonzero.clear();
        for (; i < nnz && tp[i] == t; ++i) {
            if (vp[i] != 0)
                nonzero.push_back({static_cast<int>(lp[i]), vp[i]});
        }
        const auto larger = [](const auto& a, const auto& b) {
            return std::abs(a.second) != std::abs(b.second) ? std::abs(a.second) > std::abs(b.second) : a.first < b.first;
        };
        const std::size_t keep = std::min<std::size_t>(nonzero.size(), static_cast<std::size_t>(k));
        std::partial_sort(nonzero.begin(), nonzero.begin() + static_cast<std::ptrdiff_t>(keep), nonzero.end(), larger);
        auto& cells = out[static_cast<std::size_t>(t)];
        cells.assign(nonzero.begin(), nonzero.begin() + static_cast<std::ptrdiff_t>(keep));
        // Every other latent of the token is 0: fill with the smallest indices not listed yet.
        for (int latent = 0; static_cast<std::int64_t>(cells.size()) < k; ++latent) {
            if (std::none_of(cells.begin(), cells.begin() + static_cast<std::ptrdiff_t>(keep), [&](const auto& c) { return c.first == latent; }))
                cells.push_back({latent, 0.0});
        }
    }
    return out;
}

double LayerEffects::Latents::at(Metric metric, int token, int latent) const
{
    if (metric == Metric::Activation)
        return activation[token][latent].item<double>();
    const at::Tensor& values = metric == Metric::WriteMagnitude ? activeWriteMagnitude : metric == Metric::DirectEffect ? activeDirect : activeTotal;
    if (!values.defined())
        return 0.0;
    // The active entries are row-major: find (token, latent) by binary search.
    const std::int64_t* t = activeTokens.data_ptr<std::int64_t>();
    const std::int64_t* l = activeLatents.data_ptr<std::int64_t>();
    std::int64_t lo = 0, hi = activeTokens.numel();
    while (lo < hi) {
        const std::int64_t mid = (lo + hi) / 2;
        if (t[mid] < token || (t[mid] == token && l[mid] < latent))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < activeTokens.numel() && t[lo] == token && l[lo] == latent ? values[lo].item<double>() : 0.0;
}

namespace {

// Whether a node kind at a layer writes into the residual stream before the objective reads it.
bool upstreamOf(const AnalysisInput& in, const Effects& e, NodeKind kind, int layer)
{
    return e.hasObjective && residualWritePosition(in.saes, kind, layer) <= e.readPosition;
}

} // namespace

Effects computeEffects(const AnalysisInput& in, const ResolvedObjective& objective)
{
    const ActivationRecord& rec = in.record;
    if (objective.any() && !rec.withGrad)
        throw std::logic_error("computeEffects with an objective needs a record made with ForwardOptions::withGrad");
    const Gpt2Model& model = in.model;
    // One backward pass for every recorded activation at once. Distinct tensors are listed once (an
    // autoencoder's output may be the very tensor of its location).
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
    std::vector<std::size_t> mlpIndex, headIndex, valueIndex;
    std::vector<std::vector<std::pair<SaeLocation, std::size_t>>> saeIndex(rec.layers.size());
    for (std::size_t layer = 0; layer < rec.layers.size(); ++layer) {
        const LayerRecord& L = rec.layers[layer];
        mlpIndex.push_back(indexOf(L.mlpPost));
        headIndex.push_back(indexOf(L.headOut));
        valueIndex.push_back(indexOf(L.value));
        // ∂O/∂(what flows on) at every bound autoencoder's location, encoded yet or not.
        for (const BoundSae& b : in.saes.all()) {
            if (b.layer != static_cast<int>(layer))
                continue;
            const SaeRecord* s = L.sae(b.location);
            saeIndex[layer].push_back({b.location, indexOf(s ? s->output : saeLocationTensor(L, b.location))});
        }
    }
    const Gpt2Config& c = model.config;
    const int H = c.nHead, dh = c.dHead();
    // ‖V[k,h]·W_O[h]‖ for every key token and head, before the backward pass, whose attention nodes
    // reduce over keys with them: √(V[k,h]·G_h·V[k,h]ᵀ) with the layer's cached Gram matrices, in double
    // (Gpt2LayerWeights::headOutGrams). The products V[:,h]·W_O[h] were 2·n·d_head·d FLOPs a head in
    // [n, 64]·[64, d] products that run far below the GEMM rate: 7 % of a GPT-2 XL Run at 64 tokens.
    std::vector<at::Tensor> valueWriteNorms;
    for (std::size_t layer = 0; layer < rec.layers.size(); ++layer) {
        at::NoGradGuard noGrad;
        const at::Tensor value = rec.layers[layer].value.detach();
        const at::Tensor v = value.permute({1, 0, 2}).to(at::kDouble); // [H, n, dh]
        const at::Tensor squares = (at::bmm(v, model.weights.layers[layer].headOutGrams(dh)) * v).sum(-1); // [H, n]
        valueWriteNorms.push_back(squares.clamp_min(0).sqrt().t().to(value.scalar_type()).contiguous()); // [n, H]
    }
    // The key maxima, filled by the layers' attention nodes during the backward pass where they can
    // (records without probabilities): P is then not recomputed for them (LayerEffects::fillKeyMaxima).
    std::vector<std::unique_ptr<KeyReductions>> reductions(rec.layers.size());
    struct ObserverReset { // the observers capture this function's locals: detach them however it ends
        const ActivationRecord& rec;
        ~ObserverReset()
        {
            for (const LayerRecord& L : rec.layers)
                if (L.attentionObserver)
                    L.attentionObserver->block = nullptr;
        }
    } observerReset{rec};
    if (scalar) {
        for (std::size_t layer = 0; layer < rec.layers.size(); ++layer) {
            const LayerRecord& L = rec.layers[layer];
            if (!L.attentionObserver)
                continue;
            reductions[layer] = std::make_unique<KeyReductions>(valueWriteNorms[layer], /*withTotal=*/true);
            KeyReductions* out = reductions[layer].get();
            L.attentionObserver->block = [out](std::int64_t h, std::int64_t first, const at::Tensor& P, const at::Tensor& xV) {
                out->reduce(h, first, P.size(0), P.data_ptr<float>(), P.stride(0), xV.data_ptr<float>(), xV.stride(0));
            };
        }
    }
    std::vector<at::Tensor> grads(inputs.size());
    Effects e;
    e.readPosition = finalResidualPosition(model.config.nLayer);
    e.objectiveKind = objective.kind();
    e.objectiveToken = rec.tokenCount() - 1;
    if (scalar) {
        grads = torch::autograd::grad({scalar->value}, inputs, {}, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
        e.hasObjective = true;
        e.objective = scalar->value.item<double>();
        e.objectiveKind = scalar->kind;
        e.objectiveToken = scalar->token;
        e.readPosition = scalar->readPosition;
    }
    const bool effects = e.hasObjective;
    at::NoGradGuard noGrad;
    const auto gradOf = [&](std::size_t i) { return orZeros(grads[i], inputs[i]).detach(); };
    const at::Tensor G = effects ? gradOf(residualIndex) : at::Tensor();
    e.residualGradient = G;
    const at::Tensor r0 = rec.embeddings.detach();
    e.embeddingWriteMagnitude = r0.norm(2, -1);
    if (effects) {
        e.embeddingDirect = (r0 * G).sum(-1);
        e.embeddingTotal = (r0 * gradOf(embeddingIndex)).sum(-1);
    }
    // Rows of G that are not zero (a logit objective reads the last token only): direct effects elsewhere are 0.
    const at::Tensor rows = effects ? G.abs().sum(1).nonzero().squeeze(1) : at::empty({0}, at::kLong);
    const at::Tensor Grows = effects ? G.index_select(0, rows) : at::Tensor();

    for (std::size_t layer = 0; layer < rec.layers.size(); ++layer) {
        const LayerRecord& L = rec.layers[layer];
        const Gpt2LayerWeights& lw = model.weights.layers[layer];
        const int l = static_cast<int>(layer);
        LayerEffects le;
        le.hasObjective = effects;
        le.directRows = rows;
        le.neuronActivation = L.mlpPost.detach();
        le.neuronOutNorm = lw.neuronOutNorms();
        le.probs = layerProbs(model, rec, l);
        le.value = L.value.detach();
        le.headOut = L.headOut.detach();
        le.valueWriteNorm = valueWriteNorms[layer];
        if (effects) {
            le.neuronGradient = gradOf(mlpIndex[layer]);
            le.headOutGradient = gradOf(headIndex[layer]);
            // Σ_{q,h} P[q,k,h]·(∂O/∂Z[q,h]·V[k,h]) = Σ_h V[k,h]·∂O/∂V[k,h]: V is read only by the weighted
            // sum Z = P·V, so ∂O/∂V[k,h] = Σ_q P[q,k,h]·∂O/∂Z[q,h], which the backward pass made anyway.
            le.totalToKeys_ = (le.value * gradOf(valueIndex[layer])).sum(at::IntArrayRef{1, 2});
            const bool neuronsUp = upstreamOf(in, e, NodeKind::MlpNeuron, l), headsUp = upstreamOf(in, e, NodeKind::AttnHead, l);
            le.neuronDirectRows = neuronsUp ? le.neuronActivation.index_select(0, rows) * timesWeightT(Grows, lw.mlpOutWeight)
                                            : at::zeros({rows.numel(), c.dMlp}, le.neuronActivation.options());
            le.headDirectFactor = headsUp ? timesWeightT(Grows, lw.attnOutWeight).view({rows.numel(), H, dh})
                                          : at::zeros({rows.numel(), H, dh}, le.value.options());
            for (const auto& [location, index] : saeIndex[layer])
                le.locationGradients.push_back({location, gradOf(index)});
        }
        // A layer whose attention node the backward pass did not reach (after the residual a traced
        // node reads) or did not reach completely leaves its key maxima to fillKeyMaxima.
        if (reductions[layer] && reductions[layer]->rowsDone == reductions[layer]->n * reductions[layer]->H)
            reductions[layer]->store(le);
        e.layers.push_back(std::move(le));
    }
    for (std::size_t layer = 0; layer < rec.layers.size(); ++layer)
        addLatentEffects(in, e, static_cast<int>(layer));
    return e;
}

void addLatentEffects(const AnalysisInput& in, Effects& e, int layer)
{
    at::NoGradGuard noGrad;
    const LayerRecord& L = in.record.layers.at(static_cast<std::size_t>(layer));
    LayerEffects& le = e.layers.at(static_cast<std::size_t>(layer));
    const Gpt2LayerWeights& lw = in.model.weights.layers[static_cast<std::size_t>(layer)];
    for (const SaeRecord& s : L.saes) {
        const std::string kind = saeKindName(s.bound.location);
        if (std::any_of(le.latents.begin(), le.latents.end(), [&](const auto& x) { return x.kind == kind; }))
            continue;
        const SparseAutoencoder& sae = *s.bound.sae;
        LayerEffects::Latents lat;
        lat.kind = kind;
        lat.nodeKind = *nodeKindFromName(kind);
        lat.activation = s.latents.detach();
        lat.tokens = lat.activation.size(0);
        lat.count = lat.activation.size(1);
        lat.activeTokens = s.activeTokens;
        lat.activeLatents = s.activeLatents;
        // α·s: the latent's weight on its decoder direction D_l (D2's scale), at the active entries only.
        const at::Tensor scaled = lat.activation.index({lat.activeTokens, lat.activeLatents}) *
                                  s.encoding.scale.detach().squeeze(1).index_select(0, lat.activeTokens).to(lat.activation.scalar_type());
        lat.activeWriteMagnitude = scaled * latentDirectionNorms(lw, s.bound, lat.activeLatents);
        if (e.hasObjective) {
            const bool up = upstreamOf(in, e, lat.nodeKind, layer);
            // ∂O/∂α_l = s·D_l·∂O/∂(autoencoder output) (math §3.4); a latent written after the residual the
            // objective reads has none (its output tensor can be its input, which the objective reads).
            auto g = std::find_if(le.locationGradients.begin(), le.locationGradients.end(),
                                  [&](const auto& p) { return p.first == s.bound.location; });
            const at::Tensor gOut = g != le.locationGradients.end() ? g->second : at::zeros_like(s.input);
            lat.activeTotal = up ? scaled * rowDots(sae.decoder, lat.activeLatents, gOut, lat.activeTokens) : at::zeros_like(scaled);
            // Direct effect: α·s·(D_l pushed to the residual)·G at the rows where G is not zero.
            lat.activeDirect = at::zeros_like(scaled);
            if (up && le.directRows.numel() > 0) {
                const at::Tensor rowOf = at::full({lat.tokens}, -1, at::kLong).index_copy_(0, le.directRows, at::arange(le.directRows.numel()));
                const at::Tensor entryRows = rowOf.index_select(0, lat.activeTokens);
                const at::Tensor hit = (entryRows >= 0).nonzero().squeeze(1);
                if (hit.numel() > 0) {
                    const at::Tensor back = fromResidual(lw, s.bound.location, e.residualGradient.index_select(0, le.directRows)); // [r, n_in]
                    lat.activeDirect.index_copy_(0, hit, scaled.index_select(0, hit) *
                                                              rowDots(sae.decoder, lat.activeLatents.index_select(0, hit), back, entryRows.index_select(0, hit)));
                }
            }
            if (g != le.locationGradients.end())
                le.locationGradients.erase(g);
        }
        le.latents.push_back(std::move(lat));
    }
}

const TokenEffects::Row* TokenEffects::find(std::string_view kind) const
{
    for (const auto& r : rows) {
        if (r.kind == kind)
            return &r;
    }
    return nullptr;
}

namespace {

// Σ_f a[t, f]·g[t, f] for every row t, in double: what neurons(TotalEffect).to(kDouble).sum(1) gives
// (the float32 products, summed in double) without its two [n, F] temporaries (float and double:
// 38 MB a layer at 1,024 tokens of GPT-2 small).
at::Tensor neuronTotalsPerToken(const LayerEffects& le)
{
    const at::Tensor& act = le.neuronActivation;
    if (act.scalar_type() != at::kFloat || le.neuronGradient.scalar_type() != at::kFloat)
        return le.neurons(Metric::TotalEffect).to(at::kDouble).sum(1);
    const at::Tensor A = act.contiguous(), G = le.neuronGradient.contiguous();
    const std::int64_t n = A.size(0), F = A.size(1);
    at::Tensor out = at::empty({n}, at::kDouble);
    const float* ap = A.data_ptr<float>();
    const float* gp = G.data_ptr<float>();
    double* op = out.data_ptr<double>();
    at::parallel_for(0, n, 16, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
            const float* ar = ap + t * F;
            const float* gr = gp + t * F;
            double sum = 0;
#pragma omp simd reduction(+ : sum)
            for (std::int64_t f = 0; f < F; ++f)
                sum += static_cast<double>(ar[f] * gr[f]);
            op[t] = sum;
        }
    });
    return out;
}

} // namespace

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
    at::Tensor mlp = at::zeros({e.embeddingTotal.size(0)}, at::kDouble);
    at::Tensor from = mlp.clone(), to = mlp.clone();
    std::vector<std::pair<std::string, at::Tensor>> latents;
    for (const LayerEffects& le : e.layers) {
        mlp += neuronTotalsPerToken(le);
        from += le.headsOverKeys(Metric::TotalEffect).to(at::kDouble).sum(1);
        to += le.totalToKeys().to(at::kDouble);
        for (const auto& lat : le.latents) {
            auto it = std::find_if(latents.begin(), latents.end(), [&](const auto& p) { return p.first == lat.kind; });
            if (it == latents.end())
                it = latents.insert(latents.end(), {lat.kind, at::zeros_like(mlp)});
            it->second.index_add_(0, lat.activeTokens, lat.activeTotal.to(at::kDouble));
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

namespace {

// The k largest |values| of a tensor and their row-major flat indices, as topk over every entry gives
// them (up to the order of ties). For a matrix, only the rows whose largest |value| reaches the k-th
// largest row maximum can hold them (k rows each hold an entry at least that large), so one reduction
// over the matrix and a topk over those few rows replace a topk over all n·F entries.
std::pair<at::Tensor, at::Tensor> largestMagnitudes(const at::Tensor& values, std::int64_t k)
{
    const at::Tensor a = values.abs();
    k = std::min<std::int64_t>(k, a.numel());
    if (a.dim() != 2 || a.size(0) <= k) {
        auto [v, idx] = a.reshape({-1}).topk(k);
        return {v, idx};
    }
    const at::Tensor rowMax = a.amax(1);
    const at::Tensor kth = std::get<0>(rowMax.topk(k)).min();
    const at::Tensor rows = (rowMax >= kth).nonzero().squeeze(1);
    const std::int64_t columns = a.size(1);
    auto [v, idx] = a.index_select(0, rows).reshape({-1}).topk(k);
    return {v, rows.index_select(0, at::floor_divide(idx, columns)) * columns + idx.remainder(columns)};
}

// max_f |a[t, f]·c| for every row t, with c = 1, c = column[f] or c = elementwise[t, f] (float32): one
// read of the operands and no [n, F] temporaries (at 1,024 tokens each is 12.6 MB a layer, and making
// one costs more in page faults than the arithmetic).
at::Tensor rowMaxAbsProduct(const at::Tensor& a, const at::Tensor& elementwise, const at::Tensor& column)
{
    const at::Tensor A = a.to(at::kFloat).contiguous();
    const at::Tensor B = elementwise.defined() ? elementwise.to(at::kFloat).contiguous() : at::Tensor();
    const at::Tensor C = column.defined() ? column.to(at::kFloat).contiguous() : at::Tensor();
    const std::int64_t rows = A.size(0), cols = A.size(1);
    at::Tensor out = at::empty({rows}, at::kFloat);
    const float* ap = A.data_ptr<float>();
    const float* bp = B.defined() ? B.data_ptr<float>() : nullptr;
    const float* cp = C.defined() ? C.data_ptr<float>() : nullptr;
    float* op = out.data_ptr<float>();
    at::parallel_for(0, rows, 8, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
            const float* ar = ap + t * cols;
            float m = 0;
            if (bp) {
                const float* br = bp + t * cols;
#pragma omp simd reduction(max : m)
                for (std::int64_t f = 0; f < cols; ++f)
                    m = std::max(m, std::abs(ar[f] * br[f]));
            } else if (cp) {
#pragma omp simd reduction(max : m)
                for (std::int64_t f = 0; f < cols; ++f)
                    m = std::max(m, std::abs(ar[f] * cp[f]));
            } else {
#pragma omp simd reduction(max : m)
                for (std::int64_t f = 0; f < cols; ++f)
                    m = std::max(m, std::abs(ar[f]));
            }
            op[t] = m;
        }
    });
    return out;
}

// largestMagnitudes(le.neurons(metric), k) without making the layer's [n, F] values: the rows whose
// largest |value| reaches the k-th largest row maximum hold the k largest entries (largestMagnitudes'
// argument), and only those rows' values are made — by the same float32 products as neurons(), so the
// row maxima and the rows agree exactly. A direct effect is zero outside the rows of G: those rows only.
std::pair<at::Tensor, at::Tensor> largestNeuronMagnitudes(const LayerEffects& le, Metric metric, std::int64_t k)
{
    const at::Tensor& act = le.neuronActivation;
    const std::int64_t n = act.size(0), F = act.size(1);
    if (metricNeedsObjective(metric) && !le.hasObjective)
        return {};
    if (metric == Metric::DirectEffect) {
        const at::Tensor a = le.neuronDirectRows.abs().reshape({-1});
        const auto [v, idx] = a.topk(std::min<std::int64_t>(k, a.numel()));
        return {v, le.directRows.index_select(0, at::floor_divide(idx, F)) * F + idx.remainder(F)};
    }
    if (n <= k)
        return largestMagnitudes(le.neurons(metric), k);
    const bool write = metric == Metric::WriteMagnitude, total = metric == Metric::TotalEffect;
    const at::Tensor rowMax = rowMaxAbsProduct(act, total ? le.neuronGradient : at::Tensor(), write ? le.neuronOutNorm : at::Tensor());
    const at::Tensor kth = std::get<0>(rowMax.topk(k)).min();
    const at::Tensor rows = (rowMax >= kth).nonzero().squeeze(1);
    at::Tensor values = act.index_select(0, rows);
    if (write)
        values = values * le.neuronOutNorm.unsqueeze(0);
    else if (total)
        values = values * le.neuronGradient.index_select(0, rows);
    const auto [v, idx] = values.abs().reshape({-1}).topk(std::min<std::int64_t>(k, values.numel()));
    return {v, rows.index_select(0, at::floor_divide(idx, F)) * F + idx.remainder(F)};
}

// For every row t of the layer's neuron values v[t, f] of a metric (as neurons(metric) makes them), the
// k largest |v| and their neurons, largest first (the lower neuron first on ties), as indices [n, k]
// (int64) and signed values [n, k] (float32). What topk over |neurons(metric)| gives, without making
// the [n, F] values, their magnitudes and topk's per-row copies (at 1,024 tokens each is 12.6 MB a layer
// and metric). The products are the same float32 products as neurons(), one at a time; a block of 16
// neurons is skipped after one vectorized maximum when none of it beats the row's k-th largest.
// Undefined tensors unless the neurons are float32 (gridValues then takes topk's way).
std::pair<at::Tensor, at::Tensor> rowTopNeurons(const LayerEffects& le, Metric metric, std::int64_t k)
{
    const at::Tensor& act = le.neuronActivation;
    if (act.scalar_type() != at::kFloat || (metricNeedsObjective(metric) && !le.hasObjective))
        return {};
    const std::int64_t n = act.size(0), F = act.size(1);
    k = std::min(k, F);
    if (k < 1)
        return {};
    const at::Tensor A = act.contiguous();
    const bool write = metric == Metric::WriteMagnitude, total = metric == Metric::TotalEffect, direct = metric == Metric::DirectEffect;
    const at::Tensor C = write ? le.neuronOutNorm.to(at::kFloat).contiguous() : at::Tensor();
    const at::Tensor B = total ? le.neuronGradient.to(at::kFloat).contiguous() : at::Tensor();
    // A direct effect is zero outside the rows of G: row r of neuronDirectRows is token directRows[r].
    const at::Tensor D = direct ? le.neuronDirectRows.to(at::kFloat).contiguous() : at::Tensor();
    std::vector<std::int64_t> directRowOf(direct ? static_cast<std::size_t>(n) : 0, -1);
    if (direct) {
        const at::Tensor rows = le.directRows.contiguous();
        for (std::int64_t r = 0; r < rows.numel(); ++r)
            directRowOf[static_cast<std::size_t>(rows.data_ptr<std::int64_t>()[r])] = r;
    }
    at::Tensor index = at::empty({n, k}, at::kLong), value = at::empty({n, k}, at::kFloat);
    const float* ap = A.data_ptr<float>();
    const float* bp = total ? B.data_ptr<float>() : nullptr;
    const float* cp = write ? C.data_ptr<float>() : nullptr;
    std::int64_t* ip = index.data_ptr<std::int64_t>();
    float* vp = value.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](std::int64_t begin, std::int64_t end) {
        std::vector<float> v(static_cast<std::size_t>(F));
        std::vector<float> bestAbs(static_cast<std::size_t>(k));
        std::vector<std::int64_t> bestIndex(static_cast<std::size_t>(k));
        for (std::int64_t t = begin; t < end; ++t) {
            const float* ar = ap + t * F;
            if (direct) {
                const std::int64_t r = directRowOf[static_cast<std::size_t>(t)];
                if (r < 0)
                    std::fill(v.begin(), v.end(), 0.0f);
                else
                    std::copy_n(D.data_ptr<float>() + r * F, F, v.begin());
            } else if (bp) {
                const float* br = bp + t * F;
#pragma omp simd
                for (std::int64_t f = 0; f < F; ++f)
                    v[f] = ar[f] * br[f];
            } else if (cp) {
#pragma omp simd
                for (std::int64_t f = 0; f < F; ++f)
                    v[f] = ar[f] * cp[f];
            } else {
                std::copy_n(ar, F, v.begin());
            }
            std::int64_t filled = 0;
            const auto offer = [&](std::int64_t f) {
                const float a = std::abs(v[f]);
                if (filled == k && !(a > bestAbs[k - 1]))
                    return;
                std::int64_t j = filled < k ? filled++ : k - 1;
                for (; j > 0 && bestAbs[j - 1] < a; --j) { // equal magnitudes keep the lower neuron first
                    bestAbs[j] = bestAbs[j - 1];
                    bestIndex[j] = bestIndex[j - 1];
                }
                bestAbs[j] = a;
                bestIndex[j] = f;
            };
            constexpr std::int64_t kChunk = 16;
            std::int64_t f = 0;
            for (; f < std::min(k, F); ++f)
                offer(f);
            for (; f + kChunk <= F; f += kChunk) {
                float chunkMax = 0;
#pragma omp simd reduction(max : chunkMax)
                for (std::int64_t i = 0; i < kChunk; ++i)
                    chunkMax = std::max(chunkMax, std::abs(v[f + i]));
                if (chunkMax > bestAbs[k - 1]) {
                    for (std::int64_t i = 0; i < kChunk; ++i)
                        offer(f + i);
                }
            }
            for (; f < F; ++f)
                offer(f);
            for (std::int64_t j = 0; j < k; ++j) {
                ip[t * k + j] = bestIndex[j];
                vp[t * k + j] = v[bestIndex[j]];
            }
        }
    });
    return {index, value};
}

} // namespace

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
            // Heads: the value over keys in closed form; the key with the largest |per-pair value|.
            const at::Tensor value = le.headsOverKeys(metric).to(at::kDouble).contiguous(); // [q, H]
            const at::Tensor best = le.headKeyMaxima(metric).key.contiguous();
            const std::int64_t* bp = best.data_ptr<std::int64_t>();
            const double* vp = value.data_ptr<double>();
            for (int t = 0; t < n; ++t) {
                auto& row = perToken[static_cast<std::size_t>(t)][static_cast<std::size_t>(layer)];
                row.heads.reserve(static_cast<std::size_t>(nHeads));
                for (int head = 0; head < nHeads; ++head)
                    row.heads.push_back({NodeRef{NodeKind::AttnHead, layer, head, t, static_cast<int>(bp[t * nHeads + head])},
                                         vp[t * nHeads + head]});
            }
            // The cells of each token from its top k indices [n, k] and values [n, k] (double).
            auto cellsOf = [&](const at::Tensor& idx, const at::Tensor& picked, NodeKind kind, std::vector<GridCellValue> GridLayerValues::*member) {
                const std::int64_t k = idx.size(1);
                const std::int64_t* ip = idx.data_ptr<std::int64_t>();
                const double* pp = picked.data_ptr<double>();
                for (int t = 0; t < n; ++t) {
                    auto& cells = perToken[static_cast<std::size_t>(t)][static_cast<std::size_t>(layer)].*member;
                    cells.reserve(static_cast<std::size_t>(k));
                    for (std::int64_t j = 0; j < k; ++j)
                        cells.push_back({NodeRef{kind, layer, static_cast<int>(ip[t * k + j]), t, 0}, pp[t * k + j]});
                }
            };
            auto topCells = [&](const at::Tensor& values, NodeKind kind, std::vector<GridCellValue> GridLayerValues::*member) {
                const std::int64_t k = std::min<std::int64_t>(topN, values.size(1));
                if (k <= 0)
                    return;
                const at::Tensor idx = std::get<1>(values.abs().topk(k, 1)).contiguous();
                cellsOf(idx, values.gather(1, idx).to(at::kDouble).contiguous(), kind, member);
            };
            if (const auto [index, picked] = rowTopNeurons(le, metric, topN); index.defined())
                cellsOf(index, picked.to(at::kDouble).contiguous(), NodeKind::MlpNeuron, &GridLayerValues::neurons);
            else
                topCells(le.neurons(metric), NodeKind::MlpNeuron, &GridLayerValues::neurons);
            // Latents from their active entries: a dense [n, N] per metric and a top-k over it cost more
            // than the rest of the grid (24 autoencoders of 32k latents: 4 × 24 × 2M values).
            for (const auto& lat : le.latents) {
                std::vector<GridCellValue> GridLayerValues::*member = lat.nodeKind == NodeKind::MlpSaeLatent    ? &GridLayerValues::mlpLatents
                                                                      : lat.nodeKind == NodeKind::AttnSaeLatent ? &GridLayerValues::attnLatents
                                                                                                                : &GridLayerValues::residLatents;
                const auto top = lat.topPerToken(metric, topN);
                for (std::size_t t = 0; t < top.size(); ++t) {
                    auto& cells = perToken[t][static_cast<std::size_t>(layer)].*member;
                    for (const auto& [latent, value] : top[t])
                        cells.push_back({NodeRef{lat.nodeKind, layer, latent, static_cast<int>(t), 0}, value});
                }
            }
        }
    }
    return g;
}

namespace {

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
    auto fill = [&](const std::function<double(Metric)>& value) {
        m.activation = value(Metric::Activation);
        m.writeMagnitude = value(Metric::WriteMagnitude);
        m.directEffect = value(Metric::DirectEffect);
        m.totalEffect = value(Metric::TotalEffect);
    };
    switch (n.kind) {
    case NodeKind::Embedding:
        m.activation = 1.0;
        m.writeMagnitude = at1(e.embeddingWriteMagnitude, n.token);
        m.directEffect = at1(e.embeddingDirect, n.token);
        m.totalEffect = at1(e.embeddingTotal, n.token);
        break;
    case NodeKind::MlpNeuron: {
        const LayerEffects& le = e.layers[n.layer];
        fill([&](Metric metric) { return le.neuron(metric, n.token, n.index); });
        break;
    }
    case NodeKind::AttnHead: {
        const LayerEffects& le = e.layers[n.layer];
        fill([&](Metric metric) { return le.head(metric, n.token, n.keyToken, n.index); });
        break;
    }
    default: {
        const auto& l = latentsOf(e, n);
        fill([&](Metric metric) { return l.at(metric, n.token, n.index); });
    }
    }
    return m;
}

std::vector<NodeMetrics> topNodes(const AnalysisInput& in, const Effects& e, int k)
{
    if (k < 1)
        return {};
    at::NoGradGuard noGrad;
    // Candidates per metric: the k largest |value| of each kind and layer, then the k largest overall.
    struct Candidate {
        double magnitude;
        NodeRef node;
    };
    std::map<NodeRef, bool> chosen;
    for (int m = 0; m < kMetricCount; ++m) {
        const auto metric = static_cast<Metric>(m);
        if (metricNeedsObjective(metric) && !e.hasObjective)
            continue;
        std::vector<Candidate> candidates;
        auto collectLargest = [&](const std::pair<at::Tensor, at::Tensor>& largest, const std::function<NodeRef(std::int64_t)>& nodeAt) {
            const auto& [v, idx] = largest;
            if (!v.defined())
                return;
            const std::int64_t kk = v.numel();
            const at::Tensor vd = v.to(at::kDouble).contiguous(), id = idx.contiguous();
            for (std::int64_t i = 0; i < kk; ++i) {
                const double mag = vd.data_ptr<double>()[i];
                if (mag > 0)
                    candidates.push_back({mag, nodeAt(id.data_ptr<std::int64_t>()[i])});
            }
        };
        auto collect = [&](const at::Tensor& values, const std::function<NodeRef(std::int64_t)>& nodeAt) {
            if (values.defined() && values.numel() > 0)
                collectLargest(largestMagnitudes(values, k), nodeAt);
        };
        if (metric != Metric::Activation) {
            const at::Tensor& emb = metric == Metric::WriteMagnitude ? e.embeddingWriteMagnitude
                                    : metric == Metric::DirectEffect ? e.embeddingDirect
                                                                     : e.embeddingTotal;
            collect(emb, [](std::int64_t i) { return NodeRef{NodeKind::Embedding, 0, 0, static_cast<int>(i), 0}; });
        }
        for (std::size_t layer = 0; layer < e.layers.size(); ++layer) {
            const LayerEffects& le = e.layers[layer];
            const int l = static_cast<int>(layer);
            const std::int64_t F = le.neuronActivation.size(1);
            collectLargest(largestNeuronMagnitudes(le, metric, k), [&](std::int64_t i) {
                return NodeRef{NodeKind::MlpNeuron, l, static_cast<int>(i % F), static_cast<int>(i / F), 0};
            });
            if (metric != Metric::Activation) {
                // The k largest |per-pair values| lie in the (query, head) rows whose largest |value| over
                // keys is at least the k-th largest such row maximum M (k rows each hold an entry ≥ M, so
                // the k-th largest entry is ≥ M, and an entry ≥ M sits in a row whose maximum is ≥ M).
                // So only those rows' values over keys are made, not the n²·H of the layer.
                const at::Tensor rowMax = le.headKeyMaxima(metric).value.abs(); // [q, H]
                const std::int64_t kk = std::min<std::int64_t>(k, rowMax.numel());
                // The row maxima come from block products and the rows below from one-row products: the
                // two may differ in the last bits, so both bounds are lowered by far more than that.
                // With fewer than k rows that are not all zero (a direct effect has one query row), all
                // of them are candidates.
                const double kth = std::get<0>(rowMax.reshape({-1}).topk(kk)).min().item<double>();
                const double threshold = kth > 0 ? kth * (1 - 1e-4) : std::numeric_limits<double>::min();
                {
                    const at::Tensor rows = (kth > 0 ? rowMax >= kth * (1 - 2e-4) : rowMax > 0).nonzero(); // [r, 2]: (query, head)
                    std::vector<Candidate> inLayer;
                    for (std::int64_t r = 0; r < rows.size(0); ++r) {
                        const std::int64_t q = rows[r][0].item<std::int64_t>(), h = rows[r][1].item<std::int64_t>();
                        const at::Tensor values = le.headRow(metric, q, h).abs().to(at::kDouble).contiguous(); // [q + 1]
                        const double* v = values.data_ptr<double>();
                        for (std::int64_t key = 0; key < values.numel(); ++key) {
                            if (v[key] >= threshold)
                                inLayer.push_back({v[key], NodeRef{NodeKind::AttnHead, l, static_cast<int>(h), static_cast<int>(q),
                                                                   static_cast<int>(key)}});
                        }
                    }
                    std::sort(inLayer.begin(), inLayer.end(), [](const Candidate& a, const Candidate& b) {
                        return a.magnitude != b.magnitude ? a.magnitude > b.magnitude : a.node < b.node;
                    });
                    if (inLayer.size() > static_cast<std::size_t>(k))
                        inLayer.resize(static_cast<std::size_t>(k));
                    candidates.insert(candidates.end(), inLayer.begin(), inLayer.end());
                }
            }
            for (const auto& lat : le.latents) {
                // Every metric of a latent is zero where it is inactive: rank the active entries only.
                collect(lat.active(metric), [&](std::int64_t i) {
                    return NodeRef{lat.nodeKind, l, static_cast<int>(lat.activeLatents[i].item<std::int64_t>()),
                                   static_cast<int>(lat.activeTokens[i].item<std::int64_t>()), 0};
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
