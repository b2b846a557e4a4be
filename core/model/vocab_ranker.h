#pragma once
// The k largest and k smallest entries of M·x for a vocabulary matrix M [V, d] (the token embedding or
// the unembedding) and a few directions x — what every node click asks for (issue 15, "the click").
//
// The full-precision product reads all of M (154 MB for GPT-2 small), so its floor is that many bytes at
// the memory bandwidth. VocabRanker keeps a half-precision copy of M (half the bytes) and ranks with it,
// then rescores the few candidates that could be in the top or bottom k exactly in float32 from M
// itself. Which rows are candidates follows from a bound on the half-precision error (errorBound), so
// the exact top-k can never be missed:
//
//   Let ŝ_j be the approximate score of row j and |ŝ_j − s_j| ≤ ε for every j. Let T be the k-th largest
//   ŝ. At least k rows i have ŝ_i ≥ T, hence s_i ≥ T − ε. A row with ŝ_j < T − 2ε has s_j < T − ε, so k
//   rows are strictly larger than it and it is not among the exact k largest. Every row with
//   ŝ_j ≥ T − 2ε is rescored exactly; the top k of those exact values are the exact top k.
//   (The bottom k: the same with the order reversed.)
//
// The half-precision copy is made on first use (≈ 40 ms and V·d·2 bytes), never when the CPU lacks
// F16C/AVX2/FMA or M has values beyond half precision's range: then ranking falls back to the exact
// product over all of M. Thread-safe.

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace cs {

struct RankedRows {
    // For each direction: ids and exact float32 scores, most positive (top) / most negative (bottom) first.
    struct Row {
        std::vector<std::int64_t> topIds, bottomIds;
        std::vector<float> topValues, bottomValues;
    };
    std::vector<Row> rows;
    std::int64_t candidatesRescored = 0; // over all rows (for tests and the benchmark)
    bool usedHalfPrecision = false;
};

class VocabRanker {
public:
    explicit VocabRanker(at::Tensor matrix); // [V, d] float32, float16 or bfloat16; kept as given (the model's own)

    // `directions` [r, d] (float32). k is clamped to [0, V].
    RankedRows rank(const at::Tensor& directions, std::int64_t k) const;

    // The exact float32 scores M·x for every row (the fallback; also what the tests compare against;
    // for a half-precision M, the float32 products of its stored values).
    at::Tensor exactScores(const at::Tensor& directions) const;

    // The half-precision scores, or an undefined tensor when the half-precision path is unavailable.
    at::Tensor approximateScores(const at::Tensor& directions) const;

    // ε for one direction x: |ŝ_j − s_j| ≤ ε for every row j (see the .cpp for the derivation).
    double errorBound(const at::Tensor& direction) const;

    bool halfPrecisionAvailable() const;
    const at::Tensor& matrix() const { return matrix_; }
    // The mean of M's rows, [d] (the write lens subtracts each row's mean over the vocabulary, x·ū).
    const at::Tensor& meanRow() const;

private:
    void prepare() const;
    double errorBoundOf(const float* x, std::int64_t d) const; // errorBound of d contiguous floats

    at::Tensor matrix_;
    mutable std::once_flag prepared_;
    mutable at::Tensor half_;        // [V, d] float16, contiguous; undefined when unavailable
    mutable double maxRowNorm_ = 0;  // max_j ‖M_j‖₂ of the float32 rows
    mutable at::Tensor meanRow_;     // [d]
};

} // namespace cs
