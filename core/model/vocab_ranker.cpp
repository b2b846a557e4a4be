#include "core/model/vocab_ranker.h"

#include "core/linalg/weight_product.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <immintrin.h>
#include <functional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace cs {

namespace {

constexpr double kHalfUnitRoundoff = 1.0 / 2048.0;        // 2^-11: relative error of rounding to float16 (normal range)
constexpr double kHalfSubnormalError = 1.0 / 33554432.0;  // 2^-25: absolute error below float16's normal range (2^-14)
constexpr double kFloatUnitRoundoff = 1.0 / 16777216.0;   // 2^-24
constexpr float kHalfMax = 65504.0f;

bool cpuHasHalfKernels()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
// out[q, j] = Σ_i X[q, i] · half(M[j, i]) for rows j in [begin, end), R directions at a time, so each
// half-precision row is read once for all of them. float32 accumulation in U independent 8-lane sums
// per direction (one FMA chain would wait on its own latency every step), then a horizontal sum.
// The loops over directions and lanes are unrolled by pragma: at -O2 GCC leaves them rolled, the
// accumulators then live on the stack and every FMA waits on a store and a load (2–2.5 × slower).
template <int R, int U>
__attribute__((target("avx2,fma,f16c"))) void halfScoresBlock(const std::uint16_t* M, std::int64_t d, const float* X,
                                                             float* out, std::int64_t V, std::int64_t begin, std::int64_t end)
{
    constexpr std::int64_t step = 8 * U;
    const std::int64_t unrolledEnd = d - d % step, vectorEnd = d - d % 8;
    for (std::int64_t j = begin; j < end; ++j) {
        const std::uint16_t* row = M + j * d;
        __m256 acc[R][U];
#pragma GCC unroll 4
        for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
            for (int u = 0; u < U; ++u)
                acc[q][u] = _mm256_setzero_ps();
        std::int64_t i = 0;
        for (; i < unrolledEnd; i += step) {
#pragma GCC unroll 4
            for (int u = 0; u < U; ++u) {
                const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i + 8 * u)));
#pragma GCC unroll 4
                for (int q = 0; q < R; ++q)
                    acc[q][u] = _mm256_fmadd_ps(m, _mm256_loadu_ps(X + q * d + i + 8 * u), acc[q][u]);
            }
        }
        for (; i < vectorEnd; i += 8) {
            const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i)));
#pragma GCC unroll 4
            for (int q = 0; q < R; ++q)
                acc[q][0] = _mm256_fmadd_ps(m, _mm256_loadu_ps(X + q * d + i), acc[q][0]);
        }
#pragma GCC unroll 4
        for (int q = 0; q < R; ++q) {
            __m256 total = acc[q][0];
#pragma GCC unroll 4
            for (int u = 1; u < U; ++u)
                total = _mm256_add_ps(total, acc[q][u]);
            const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(total), _mm256_extractf128_ps(total, 1));
            const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            float sum = _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
            for (std::int64_t t = vectorEnd; t < d; ++t)
                sum += _cvtsh_ss(row[t]) * X[q * d + t];
            out[q * V + j] = sum;
        }
    }
}
#endif

// The largest float ≤ x and the smallest float ≥ x: thresholds compared against float scores without
// losing a candidate to the rounding of the threshold itself.
float floatAtMost(double x)
{
    const float f = static_cast<float>(x);
    return static_cast<double>(f) > x ? std::nextafter(f, -INFINITY) : f;
}

float floatAtLeast(double x)
{
    const float f = static_cast<float>(x);
    return static_cast<double>(f) < x ? std::nextafter(f, INFINITY) : f;
}

} // namespace

VocabRanker::VocabRanker(at::Tensor matrix) : matrix_(std::move(matrix))
{
    if (matrix_.dim() != 2 || (matrix_.scalar_type() != at::kFloat && !isHalfStorage(matrix_)))
        throw std::invalid_argument("VocabRanker: expected a float32, float16 or bfloat16 [V, d] matrix");
}

void VocabRanker::prepare() const
{
    std::call_once(prepared_, [this] {
        at::NoGradGuard noGrad;
        const at::Tensor m = matrix_.detach();
        meanRow_ = weightMeanRow(m);
        if (!cpuHasHalfKernels() || matrix_.numel() == 0)
            return;
        if (!m.isfinite().all().item<bool>() || m.abs().max().item<float>() >= kHalfMax)
            return;
        // Computed in float32, a block of rows at a time (a float16 matrix is not converted whole); the
        // 1.001 in errorBound covers its rounding (relative error ≤ d·2^-24).
        const std::int64_t V = m.size(0), block = 4096;
        for (std::int64_t i = 0; i < V; i += block)
            maxRowNorm_ = std::max(maxRowNorm_, asFloat32(m.narrow(0, i, std::min(block, V - i))).norm(2, 1).max().item<double>());
        // A float16 matrix is its own half-precision copy (the bound then only overestimates).
        half_ = m.scalar_type() == at::kHalf ? m.contiguous() : m.to(at::kHalf).contiguous();
    });
}

bool VocabRanker::halfPrecisionAvailable() const
{
    prepare();
    return half_.defined();
}

const at::Tensor& VocabRanker::meanRow() const
{
    prepare();
    return meanRow_;
}

at::Tensor VocabRanker::exactScores(const at::Tensor& directions) const
{
    at::NoGradGuard noGrad;
    return timesWeightT(directions.detach().to(at::kFloat), matrix_);
}

at::Tensor VocabRanker::approximateScores(const at::Tensor& directions) const
{
    if (!halfPrecisionAvailable())
        return {};
#if defined(__x86_64__) || defined(__i386__)
    at::NoGradGuard noGrad;
    const at::Tensor X = directions.detach().to(at::kFloat).contiguous();
    const std::int64_t r = X.size(0), V = half_.size(0), d = half_.size(1);
    if (X.dim() != 2 || X.size(1) != d)
        throw std::invalid_argument("VocabRanker: directions must be [r, " + std::to_string(d) + "]");
    at::Tensor out = at::empty({r, V}, at::kFloat);
    const auto* M = reinterpret_cast<const std::uint16_t*>(half_.data_ptr<at::Half>());
    const float* x = X.data_ptr<float>();
    float* o = out.data_ptr<float>();
    // Four directions per pass over M (a click has one write and at most two reads).
    for (std::int64_t first = 0; first < r; first += 4) {
        const int count = static_cast<int>(std::min<std::int64_t>(4, r - first));
        const float* xs = x + first * d;
        float* os = o + first * V;
        at::parallel_for(0, V, 2048, [&](std::int64_t begin, std::int64_t end) {
            switch (count) {
            case 1: halfScoresBlock<1, 4>(M, d, xs, os, V, begin, end); break;
            case 2: halfScoresBlock<2, 4>(M, d, xs, os, V, begin, end); break;
            case 3: halfScoresBlock<3, 2>(M, d, xs, os, V, begin, end); break;
            default: halfScoresBlock<4, 2>(M, d, xs, os, V, begin, end); break;
            }
        });
    }
    return out;
#else
    return {};
#endif
}

// |ŝ_j − s_j| for row e = M_j, direction x, ê = half(e), s_j = x·e and ŝ_j = fl(Σ x_i ê_i):
//   |ŝ_j − s_j| ≤ |fl(Σ x_i ê_i) − Σ x_i ê_i| + |Σ x_i (ê_i − e_i)|.
// Rounding to float16 moves each entry by at most 2^-11·|e_i| in the normal range and by at most 2^-25
// below it, so the second term is ≤ 2^-11·‖x‖₂‖e‖₂ + 2^-25·‖x‖₁ (Cauchy–Schwarz). A float32 sum of d
// products in any order (with or without FMA) errs by at most γ_d·Σ|x_i||ê_i|, γ_d = d·u/(1 − d·u),
// u = 2^-24, and Σ|x_i||ê_i| ≤ ‖x‖₂‖ê‖₂ ≤ ‖x‖₂(‖e‖₂(1 + 2^-11) + 2^-25·√d). With R = max_j ‖M_j‖₂:
//   ε = ‖x‖₂·R·(2^-11 + γ_d(1 + 2^-11)) + 2^-25·(‖x‖₁ + γ_d·√d·‖x‖₂), times 1.001 for the float32
// rounding of R (the norms of x are summed in double here).
double VocabRanker::errorBoundOf(const float* x, std::int64_t d) const
{
    double sumSquares = 0, norm1 = 0;
    for (std::int64_t i = 0; i < d; ++i) {
        sumSquares += static_cast<double>(x[i]) * x[i];
        norm1 += std::abs(static_cast<double>(x[i]));
    }
    const double dd = static_cast<double>(d), norm2 = std::sqrt(sumSquares);
    const double gamma = dd * kFloatUnitRoundoff / (1.0 - dd * kFloatUnitRoundoff);
    const double bound = norm2 * maxRowNorm_ * (kHalfUnitRoundoff + gamma * (1.0 + kHalfUnitRoundoff))
                         + kHalfSubnormalError * (norm1 + gamma * std::sqrt(dd) * norm2);
    return 1.001 * bound;
}

double VocabRanker::errorBound(const at::Tensor& direction) const
{
    prepare();
    const at::Tensor x = direction.detach().to(at::kFloat).contiguous();
    return errorBoundOf(x.data_ptr<float>(), x.numel());
}

namespace {

// The k-th largest (or, with largest = false, k-th smallest) of s[0, n), 1 ≤ k ≤ n, all finite: a heap of
// the k best seen so far whose root is the worst of them; one comparison rejects almost every entry.
float kthBest(const float* s, std::int64_t n, std::int64_t k, bool largest)
{
    std::vector<float> heap(s, s + k);
    // std::greater makes a min-heap (root = smallest kept) for the largest k; std::less the reverse.
    if (largest) {
        std::make_heap(heap.begin(), heap.end(), std::greater<float>());
        for (std::int64_t j = k; j < n; ++j) {
            if (s[j] > heap.front()) {
                std::pop_heap(heap.begin(), heap.end(), std::greater<float>());
                heap.back() = s[j];
                std::push_heap(heap.begin(), heap.end(), std::greater<float>());
            }
        }
    } else {
        std::make_heap(heap.begin(), heap.end(), std::less<float>());
        for (std::int64_t j = k; j < n; ++j) {
            if (s[j] < heap.front()) {
                std::pop_heap(heap.begin(), heap.end(), std::less<float>());
                heap.back() = s[j];
                std::push_heap(heap.begin(), heap.end(), std::less<float>());
            }
        }
    }
    return heap.front();
}

// Row j of M times x, accumulated in double from M's stored values (float32, float16 or bfloat16, all
// exact in float); rounded to float at the end, so it is at least as exact as a float32 product.
template <typename T>
float exactRowScore(const T* M, std::int64_t rowStride, std::int64_t colStride, std::int64_t j, const float* x, std::int64_t d)
{
    const T* row = M + j * rowStride;
    double sum = 0;
    for (std::int64_t i = 0; i < d; ++i)
        sum += static_cast<double>(static_cast<float>(row[i * colStride])) * x[i];
    return static_cast<float>(sum);
}

} // namespace

RankedRows VocabRanker::rank(const at::Tensor& directions, std::int64_t k) const
{
    at::NoGradGuard noGrad;
    const at::Tensor X = directions.detach().to(at::kFloat).contiguous();
    const std::int64_t V = matrix_.size(0), d = matrix_.size(1);
    k = std::clamp<std::int64_t>(k, 0, V);
    RankedRows out;
    out.rows.resize(static_cast<std::size_t>(X.size(0)));
    if (k == 0 || X.size(0) == 0)
        return out;

    const auto exactRow = [&](RankedRows::Row& row, const at::Tensor& scores) {
        const auto fill = [&](bool top) {
            const auto [values, ids] = scores.topk(k, 0, /*largest=*/top, /*sorted=*/true);
            const at::Tensor v = values.contiguous(), i = ids.contiguous();
            (top ? row.topIds : row.bottomIds).assign(i.data_ptr<std::int64_t>(), i.data_ptr<std::int64_t>() + i.numel());
            (top ? row.topValues : row.bottomValues).assign(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
        };
        fill(true);
        fill(false);
    };

    const at::Tensor approx = approximateScores(X);
    if (!approx.defined()) {
        const at::Tensor exact = exactScores(X);
        for (std::int64_t q = 0; q < X.size(0); ++q)
            exactRow(out.rows[static_cast<std::size_t>(q)], exact[q]);
        return out;
    }
    out.usedHalfPrecision = true;
    // Past this many candidates rescoring costs about as much as the exact product (a degenerate matrix
    // or direction); then the row is scored exactly in full.
    const std::int64_t limit = std::max<std::int64_t>(4 * k, V / 16);
    const at::Tensor m = matrix_.detach();
    const std::int64_t rowStride = m.stride(0), colStride = m.stride(1);
    const auto rowScore = [&](std::int64_t j, const float* x) {
        switch (m.scalar_type()) {
        case at::kHalf: return exactRowScore(m.data_ptr<at::Half>(), rowStride, colStride, j, x, d);
        case at::kBFloat16: return exactRowScore(m.data_ptr<at::BFloat16>(), rowStride, colStride, j, x, d);
        default: return exactRowScore(m.data_ptr<float>(), rowStride, colStride, j, x, d);
        }
    };
    // Plain loops over the [V] scores and a few dozen rescored rows: at a click's size the selection and
    // rescoring cost tens of microseconds, next to milliseconds for ATen's topk, nonzero and gathers.
    std::vector<std::pair<float, std::int64_t>> scored;
    for (std::int64_t q = 0; q < X.size(0); ++q) {
        RankedRows::Row& row = out.rows[static_cast<std::size_t>(q)];
        const float* x = X.data_ptr<float>() + q * d;
        const float* a = approx.data_ptr<float>() + q * V;
        const double margin = 2.0 * errorBoundOf(x, d);
        if (!std::isfinite(margin)) { // a direction with NaN or infinity: no bound, the exact product decides
            exactRow(row, exactScores(X[q].unsqueeze(0))[0]);
            out.candidatesRescored += V;
            continue;
        }
        const float topThreshold = floatAtMost(static_cast<double>(kthBest(a, V, k, true)) - margin);
        const float bottomThreshold = floatAtLeast(static_cast<double>(kthBest(a, V, k, false)) + margin);
        std::vector<std::int64_t> top, bottom;
        for (std::int64_t j = 0; j < V; ++j) {
            if (a[j] >= topThreshold)
                top.push_back(j);
            if (a[j] <= bottomThreshold)
                bottom.push_back(j);
        }
        if (static_cast<std::int64_t>(top.size() + bottom.size()) > limit) {
            exactRow(row, exactScores(X[q].unsqueeze(0))[0]);
            out.candidatesRescored += V;
            continue;
        }
        for (const bool isTop : {true, false}) {
            const std::vector<std::int64_t>& candidates = isTop ? top : bottom;
            scored.clear();
            for (const std::int64_t j : candidates)
                scored.emplace_back(rowScore(j, x), j);
            // Best first; equal scores by id so the order does not depend on the candidates' order.
            const auto better = [isTop](const auto& l, const auto& r) {
                return l.first != r.first ? (isTop ? l.first > r.first : l.first < r.first) : l.second < r.second;
            };
            std::partial_sort(scored.begin(), scored.begin() + k, scored.end(), better);
            auto& ids = isTop ? row.topIds : row.bottomIds;
            auto& values = isTop ? row.topValues : row.bottomValues;
            for (std::int64_t i = 0; i < k; ++i) {
                values.push_back(scored[static_cast<std::size_t>(i)].first);
                ids.push_back(scored[static_cast<std::size_t>(i)].second);
            }
            out.candidatesRescored += static_cast<std::int64_t>(candidates.size());
        }
    }
    return out;
}

} // namespace cs
