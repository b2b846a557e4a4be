#include "core/linalg/weight_product.h"

#include <ATen/Parallel.h>
#include <oneapi/dnnl/dnnl.h>
#include <torch/csrc/autograd/custom_function.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

namespace cs {

namespace {

// Entries of float32 per converted block: 2 MB, about a core's L2, so the product reads the block from
// cache right after the conversion wrote it and the half-precision weight crosses the memory bus once.
constexpr std::int64_t kBlockEntries = 524288;

void checkMatrix(const at::Tensor& x, const at::Tensor& w, std::int64_t wInner, const char* what)
{
    if (x.dim() != 2 || w.dim() != 2 || x.size(1) != w.size(wInner))
        throw std::invalid_argument(std::string(what) + ": shapes do not match");
}

#if defined(__x86_64__) || defined(__i386__)
bool cpuHasF16c()
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

__attribute__((target("avx2,f16c"))) void halfToFloatF16c(const std::uint16_t* src, float* dst, std::int64_t count)
{
    std::int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < count; ++i)
        dst[i] = _cvtsh_ss(src[i]);
}
#endif

// ATen's own Half→Float copy converts one value at a time in software (about 2 ns each: 20 ms for one
// of GPT-2 XL's MLP matrices); with F16C it runs at memory speed.
void halfToFloat(const at::Half* src, float* dst, std::int64_t count)
{
#if defined(__x86_64__) || defined(__i386__)
    static const bool f16c = cpuHasF16c();
    if (f16c) {
        halfToFloatF16c(reinterpret_cast<const std::uint16_t*>(src), dst, count);
        return;
    }
#endif
    for (std::int64_t i = 0; i < count; ++i)
        dst[i] = static_cast<float>(src[i]);
}

// bfloat16 is the top half of a float32: a shift (the compiler vectorizes the loop).
void bfloat16ToFloat(const at::BFloat16* src, float* dst, std::int64_t count)
{
    const auto* bits = reinterpret_cast<const std::uint16_t*>(src);
    for (std::int64_t i = 0; i < count; ++i) {
        const std::uint32_t word = static_cast<std::uint32_t>(bits[i]) << 16;
        std::memcpy(dst + i, &word, sizeof word);
    }
}

// dst [rows, cols] float32 contiguous = src [rows, cols] half/bfloat16 with unit inner stride (a block of
// rows, or of columns, of a contiguous matrix).
void convertBlock(const at::Tensor& src, at::Tensor& dst)
{
    if (src.stride(1) != 1) {
        dst.copy_(src); // not a layout the products below make; ATen's conversion
        return;
    }
    const std::int64_t rows = src.size(0), cols = src.size(1), stride = src.stride(0);
    float* out = dst.data_ptr<float>();
    const bool half = src.scalar_type() == at::kHalf;
    const auto* base = static_cast<const std::uint16_t*>(src.data_ptr());
    at::parallel_for(0, rows, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(cols, 1)), [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r = begin; r < end; ++r) {
            const std::uint16_t* in = base + r * stride;
            if (half)
                halfToFloat(reinterpret_cast<const at::Half*>(in), out + r * cols, cols);
            else
                bfloat16ToFloat(reinterpret_cast<const at::BFloat16*>(in), out + r * cols, cols);
        }
    });
}

// A reusable float32 buffer of `rows`×`cols` (the last block of a product may be smaller).
at::Tensor blockBuffer(at::Tensor& buffer, std::int64_t rows, std::int64_t cols)
{
    if (!buffer.defined() || buffer.numel() < rows * cols)
        buffer = at::empty({rows * cols}, at::kFloat);
    return buffer.narrow(0, 0, rows * cols).view({rows, cols});
}

// Calls use(start, length, block) for consecutive blocks of W along `dim` (0: rows, 1: columns), each
// converted to float32, about kBlockEntries entries each. The blocks are shared out in ONE parallel
// region: each thread converts its own blocks into its own buffer and uses them on its own (BLAS and
// ATen called inside a parallel region run on the calling thread). A parallel conversion and a parallel
// GEMM per block made two regions per block (≈ 200 for one 32k-latent encoder); on a machine with more
// runnable threads than cores every region's barrier waits for a descheduled thread: 18× the float32
// product at load 12 on 2 cores, against 1.3× here. The block count is a multiple of the thread count so
// that no thread gets one more block than another. `use` may be called concurrently, with the thread's
// index in [0, at::get_num_threads()) as its last argument.
template <typename Use>
void forEachFloat32Block(const at::Tensor& w, int dim, Use use)
{
    const std::int64_t total = w.size(dim), across = w.size(1 - dim);
    if (total == 0)
        return;
    const std::int64_t threads = std::max(1, at::get_num_threads());
    const std::int64_t wanted = std::clamp<std::int64_t>(kBlockEntries / std::max<std::int64_t>(across, 1), 1, total);
    const std::int64_t blocks = std::min(total, (total + wanted - 1) / wanted + threads - 1) / threads * threads;
    const std::int64_t length = (total + std::max<std::int64_t>(blocks, 1) - 1) / std::max<std::int64_t>(blocks, 1);
    const std::int64_t count = (total + length - 1) / length;
    at::parallel_for(0, count, 1, [&](std::int64_t first, std::int64_t last) {
        const int thread = at::get_thread_num();
        at::Tensor buffer;
        for (std::int64_t b = first; b < last; ++b) {
            const std::int64_t start = b * length, len = std::min(length, total - start);
            at::Tensor block = dim == 0 ? blockBuffer(buffer, len, across) : blockBuffer(buffer, across, len);
            convertBlock(w.narrow(dim, start, len), block);
            use(start, len, block, thread);
        }
    });
}

// ---- float32 products: oneDNN's sgemm --------------------------------------------------------------
// libtorch sends float32 products to the system BLAS, OpenBLAS, which on this project's machines runs
// its AVX2 (Haswell) kernels; oneDNN's sgemm picks its kernels from the CPU it runs on (AVX-512 where
// there is one) and, unlike OpenBLAS, does not re-pack the whole weight before each skinny product:
// [64, 1600]·[1600, 4800] took 2.0 ms against OpenBLAS's 4.9 ms on the 2-core AMD EPYC of 2026-12-04,
// the transposed product 4.0 against 5.0 ms (DEVELOPERS.md). It sums in float32 like any sgemm (the
// order of the sums differs: results agree to about 1e-6 relative). It is called inside parallel
// regions too (the half-precision blocks below): there it runs on the calling thread, as BLAS does.

// A matrix as sgemm's row-major operand: not transposed (rows contiguous, leading dimension = row
// stride) or transposed (a transposed view of a row-major matrix). Nothing for other layouts (expanded
// or strided in both dimensions): the caller falls back to ATen.
struct SgemmOperand {
    char trans;
    std::int64_t ld;
};

std::optional<SgemmOperand> sgemmOperand(const at::Tensor& t)
{
    const std::int64_t rows = t.size(0), cols = t.size(1);
    // A stride along a dimension of size one is never used: any value will do.
    const std::int64_t rowStride = rows == 1 ? std::max<std::int64_t>(cols, 1) : t.stride(0);
    const std::int64_t colStride = cols == 1 ? std::max<std::int64_t>(rows, 1) : t.stride(1);
    if ((cols == 1 || t.stride(1) == 1) && rowStride >= std::max<std::int64_t>(cols, 1))
        return SgemmOperand{'N', rowStride};
    if ((rows == 1 || t.stride(0) == 1) && colStride >= std::max<std::int64_t>(rows, 1))
        return SgemmOperand{'T', colStride};
    return std::nullopt;
}

bool isPlainFloat32(const at::Tensor& t)
{
    return t.dim() == 2 && t.scalar_type() == at::kFloat && t.device().is_cpu() && t.layout() == at::kStrided;
}

// Up to this many rows of A, a product with a transposed B is computed transposed (below): measured
// faster at 1 to 256 rows, slower at 1,024.
constexpr std::int64_t kFewRows = 128;

// C = beta·C + A·B for float32 A [n, k], B [k, m], C [n, m] (C's rows contiguous). False, with C
// untouched, where oneDNN cannot take the layouts; the callers then use ATen.
bool sgemmInto(at::Tensor& C, const at::Tensor& A, const at::Tensor& B, float beta)
{
    if (!isPlainFloat32(A) || !isPlainFloat32(B) || !isPlainFloat32(C))
        return false;
    const std::int64_t n = A.size(0), k = A.size(1), m = B.size(1);
    if (B.size(0) != k || C.size(0) != n || C.size(1) != m)
        return false;
    const std::optional<SgemmOperand> a = sgemmOperand(A), b = sgemmOperand(B), c = sgemmOperand(C);
    if (!a || !b || !c || c->trans != 'N')
        return false;
    if (n == 0 || m == 0)
        return true;
    if (k == 0) {
        if (beta == 0)
            C.zero_();
        else
            C.mul_(beta);
        return true;
    }
    if (b->trans == 'T' && n <= kFewRows) {
        // B is a transposed matrix (g·Wᵀ, the backward pass; x·Uᵀ, the logits) and A has few rows:
        // sgemm is faster with the large matrix as its untransposed operand, so compute Cᵀ = Bᵀ·Aᵀ and
        // transpose the small result (64 rows: 2.5 against 4.1 ms for [64, 4800]·[4800, 1600]).
        at::Tensor transposed = at::empty({m, n}, C.options());
        const char flippedA = a->trans == 'N' ? 'T' : 'N';
        if (dnnl_sgemm('N', flippedA, m, n, k, 1.0f, B.data_ptr<float>(), b->ld, A.data_ptr<float>(), a->ld, 0.0f,
                       transposed.data_ptr<float>(), n) != dnnl_success)
            return false;
        if (beta == 0)
            C.copy_(transposed.t());
        else
            C.mul_(beta).add_(transposed.t());
        return true;
    }
    return dnnl_sgemm(a->trans, b->trans, n, m, k, 1.0f, A.data_ptr<float>(), a->ld, B.data_ptr<float>(), b->ld, beta,
                      C.data_ptr<float>(), c->ld) == dnnl_success;
}

// x [n, k]·B [k, m] in float32 (B any layout, a transposed view included).
at::Tensor float32Product(const at::Tensor& x, const at::Tensor& b)
{
    at::Tensor y = at::empty({x.size(0), b.size(1)}, x.options().requires_grad(false));
    if (sgemmInto(y, x, b, 0.0f))
        return y;
    return at::mm(x.detach(), b);
}

// y += x·B, or y = x·B when `accumulate` is false (the half-precision blocks' float32 products).
void productInto(at::Tensor& y, const at::Tensor& x, const at::Tensor& b, bool accumulate)
{
    if (sgemmInto(y, x, b, accumulate ? 1.0f : 0.0f))
        return;
    if (accumulate)
        y.addmm_(x, b);
    else
        at::mm_out(y, x, b);
}

// One float32 [n, m] partial sum per thread, added up at the end (the products that sum over blocks).
struct PartialSums {
    explicit PartialSums(std::int64_t n, std::int64_t m) : parts(static_cast<std::size_t>(std::max(1, at::get_num_threads())))
    {
        for (at::Tensor& p : parts)
            p = at::zeros({n, m}, at::kFloat);
    }
    at::Tensor& of(int thread) { return parts[static_cast<std::size_t>(thread)]; }
    at::Tensor total()
    {
        for (std::size_t t = 1; t < parts.size(); ++t)
            parts[0].add_(parts[t]);
        return parts[0];
    }
    std::vector<at::Tensor> parts;
};

// x [n, k]·W [k, m] with W in half precision. While y is small enough to stay in cache (a short prompt),
// blocks of W's rows (contiguous) are summed into it: y += x_block·W_block, one partial y per thread. A
// larger y (a long prompt, an autoencoder's 32k latents) would be re-read for every block; then blocks
// of W's columns each give a column slice of y, written in place (BLAS takes the leading dimension).
// x carries no autograd graph here (WeightProduct provides the backward pass).
at::Tensor halfTimesWeight(const at::Tensor& x, const at::Tensor& w)
{
    const at::Tensor xf = x.detach().to(at::kFloat);
    const std::int64_t n = x.size(0), m = w.size(1);
    if (n * m <= kBlockEntries * 2) {
        PartialSums y(n, m);
        forEachFloat32Block(w, 0, [&](std::int64_t i, std::int64_t rows, const at::Tensor& block, int thread) {
            productInto(y.of(thread), xf.narrow(1, i, rows), block, true);
        });
        return y.total();
    }
    at::Tensor y = at::empty({n, m}, xf.options());
    forEachFloat32Block(w, 1, [&](std::int64_t j, std::int64_t cols, const at::Tensor& block, int) {
        at::Tensor target = y.narrow(1, j, cols);
        productInto(target, xf, block, false);
    });
    return y;
}

// x [n, k]·Wᵀ for W [m, k] in half precision. Two ways to cut W: blocks of its columns (the
// contraction: y += x_block·W_blockᵀ, one partial y per thread), or blocks of its rows, each giving a
// column slice of y (written in place). A vocabulary matrix [50,257, d] has blocks of a few columns
// only, so it is cut by rows.
at::Tensor halfTimesWeightT(const at::Tensor& x, const at::Tensor& w)
{
    const at::Tensor xf = x.detach().to(at::kFloat);
    const std::int64_t n = x.size(0), k = x.size(1), m = w.size(0);
    const std::int64_t columnsPerBlock = kBlockEntries / std::max<std::int64_t>(m, 1);
    if ((columnsPerBlock >= 64 || columnsPerBlock >= k) && n * m <= kBlockEntries * 2) {
        PartialSums y(n, m);
        forEachFloat32Block(w, 1, [&](std::int64_t i, std::int64_t cols, const at::Tensor& block, int thread) {
            productInto(y.of(thread), xf.narrow(1, i, cols), block.t(), true);
        });
        return y.total();
    }
    at::Tensor y = at::empty({n, m}, xf.options());
    forEachFloat32Block(w, 0, [&](std::int64_t j, std::int64_t rows, const at::Tensor& block, int) {
        at::Tensor target = y.narrow(1, j, rows);
        productInto(target, xf, block.t(), false);
    });
    return y;
}

// The two products for any layout of W: a transposed view (W = Mᵀ with M contiguous, as U.t() for the
// logits) is the other product of M.
at::Tensor halfProduct(const at::Tensor& x, const at::Tensor& w)
{
    return w.stride(0) == 1 && w.stride(1) != 1 ? halfTimesWeightT(x, w.t()) : halfTimesWeight(x, w);
}

at::Tensor halfProductT(const at::Tensor& x, const at::Tensor& w)
{
    return w.stride(0) == 1 && w.stride(1) != 1 ? halfTimesWeight(x, w.t()) : halfTimesWeightT(x, w);
}

// The products this file computes itself: half-precision weights (float32 blocks), and float32
// weights with a float32 x (oneDNN). A weight that needs a gradient (the trainers) and other dtypes
// (double in tests) go to ATen, whose autograd covers W too.
bool ownProduct(const at::Tensor& x, const at::Tensor& w)
{
    if (isHalfStorage(w))
        return true;
    return !w.requires_grad() && isPlainFloat32(w) && isPlainFloat32(x);
}

// x·W (transposed: x·Wᵀ) without autograd.
at::Tensor storedProduct(const at::Tensor& x, const at::Tensor& w, bool transposed)
{
    if (isHalfStorage(w))
        return transposed ? halfProductT(x, w) : halfProduct(x, w);
    return float32Product(x.detach(), transposed ? w.t() : w);
}

// x·W (or x·Wᵀ) with autograd w.r.t. x only: the backward pass reads the stored weight again (autograd
// would keep a float32 copy of a half-precision W for it: the whole model in float32 over a Run), and
// computes g·Wᵀ (or g·W) with the same products as the forward pass.
struct WeightProduct : public torch::autograd::Function<WeightProduct> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, bool transposed)
    {
        ctx->saved_data["weight"] = w;
        ctx->saved_data["transposed"] = transposed;
        return storedProduct(x, w, transposed);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads)
    {
        // g [n, m]·Wᵀ (or g·W); no gradient for the stored weight.
        const at::Tensor w = ctx->saved_data["weight"].toTensor();
        const at::Tensor g = storedProduct(grads[0].contiguous(), w, !ctx->saved_data["transposed"].toBool());
        return {g, at::Tensor(), at::Tensor()};
    }
};

// The product with autograd when x needs a gradient: the blocks run on threads whose autograd state is
// their own, so the graph is one node around the whole product, never recorded block by block.
at::Tensor productWithGrad(const at::Tensor& x, const at::Tensor& w, bool transposed)
{
    if (at::GradMode::is_enabled() && x.requires_grad())
        return WeightProduct::apply(x, w, transposed);
    return storedProduct(x, w, transposed);
}

} // namespace

bool isHalfStorage(const at::Tensor& w)
{
    return w.scalar_type() == at::kHalf || w.scalar_type() == at::kBFloat16;
}

at::ScalarType computeDtype(const at::Tensor& w)
{
    return isHalfStorage(w) ? at::kFloat : w.scalar_type();
}

at::Tensor asFloat32(const at::Tensor& t)
{
    if (t.scalar_type() == at::kFloat)
        return t;
    if (!isHalfStorage(t) || t.dim() > 2 || t.dim() == 0 || t.stride(-1) != 1)
        return t.to(at::kFloat);
    // A head's W_Q, a neuron's row: the vectorized conversion (ATen's is one value at a time).
    const at::Tensor rows = t.dim() == 2 ? t : t.unsqueeze(0);
    at::Tensor out = at::empty(rows.sizes(), at::kFloat);
    convertBlock(rows, out);
    return t.dim() == 2 ? out : out.squeeze(0);
}

at::Tensor timesWeight(const at::Tensor& x, const at::Tensor& w)
{
    checkMatrix(x, w, 0, "timesWeight");
    return ownProduct(x, w) ? productWithGrad(x, w, false) : at::mm(x, w);
}

at::Tensor timesWeightT(const at::Tensor& x, const at::Tensor& w)
{
    checkMatrix(x, w, 1, "timesWeightT");
    return ownProduct(x, w) ? productWithGrad(x, w, true) : at::mm(x, w.t());
}

at::Tensor weightTimesVector(const at::Tensor& w, const at::Tensor& v)
{
    if (!ownProduct(v.unsqueeze(0), w))
        return at::mv(w, v);
    return timesWeightT(v.unsqueeze(0), w).squeeze(0);
}

at::Tensor linear(const at::Tensor& bias, const at::Tensor& x, const at::Tensor& w)
{
    if (!ownProduct(x, w))
        return bias.defined() ? at::addmm(bias, x, w) : at::mm(x, w);
    checkMatrix(x, w, 0, "linear");
    if (at::GradMode::is_enabled() && x.requires_grad()) {
        const at::Tensor y = WeightProduct::apply(x, w, false);
        return bias.defined() ? y + bias : y;
    }
    at::Tensor y = storedProduct(x, w, false);
    return bias.defined() ? y.add_(bias) : y; // a bias that requires grad makes add_ record it
}

at::Tensor weightRows(const at::Tensor& w, const at::Tensor& ids)
{
    const at::Tensor rows = w.index_select(0, ids);
    return isHalfStorage(w) ? asFloat32(rows) : rows;
}

at::Tensor weightRowNorms(const at::Tensor& w)
{
    if (!isHalfStorage(w) || w.stride(1) != 1)
        return asFloat32(w).norm(2, -1);
    at::Tensor out = at::empty({w.size(0)}, at::kFloat);
    forEachFloat32Block(w, 0, [&](std::int64_t i, std::int64_t rows, const at::Tensor& block, int) {
        out.narrow(0, i, rows).copy_(block.norm(2, -1));
    });
    return out;
}

at::Tensor weightMeanRow(const at::Tensor& w)
{
    return w.scalar_type() == at::kFloat ? w.mean(0) : w.mean(0, /*keepdim=*/false, at::kFloat);
}

} // namespace cs
