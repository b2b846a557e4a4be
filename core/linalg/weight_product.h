#pragma once
// Products with matrices that may be stored in half precision (issue 15, "large models" and "memory per
// autoencoder"): a model's weights and an autoencoder's encoder and decoder.
//
// A model whose file stores its matrices in float16 or bfloat16 keeps them that way in memory: GPT-2 XL
// is 3.1 GB in float16 and 6.2 GB converted; 24 autoencoders of 32k latents on GPT-2 small take 11.5 GB
// in float32 and half that as stored. Every product still computes in float32: a block of the
// weight (about 1 MB, so it stays in cache) is converted to float32 and multiplied, then the next
// block. Converting a float16/bfloat16 value to float32 is exact, so the results are the float32
// results of the stored weights — equal to converting the whole model on load, up to the order of the
// float32 sums inside the products. Float32 weights are multiplied by oneDNN's sgemm (2-2.4× the speed
// of the system BLAS at a prompt's shapes on an AVX-512 machine; weight_product.cpp), except where W
// needs a gradient (the trainers) or x is not float32: there ATen's products.
//
// Shapes follow Hugging Face's Conv1D layout: a linear layer is y = x·W + b with W [in, out].

#include <ATen/ATen.h>

namespace cs {

// How a loader keeps the float16/bfloat16 matrices of a file (a model's, an autoencoder's): as stored
// (the default), or converted to float32 (for comparisons).
enum class WeightStorage { AsStored, Float32 };

// True for float16/bfloat16 (the dtypes kept as stored); false for float32.
bool isHalfStorage(const at::Tensor& w);

// The dtype the products with W compute in: float32 for float16/bfloat16 storage, else W's own
// (float32; double where a test converts an autoencoder to double).
at::ScalarType computeDtype(const at::Tensor& w);

// `t` as float32: itself when it already is, else a converted copy (for small slices: a head's W_Q, a
// neuron's row). Large matrices go through the products below instead.
at::Tensor asFloat32(const at::Tensor& t);

// x·W for x [n, k] float32 and W [k, m]. No autograd through the half-precision path (see linear()).
at::Tensor timesWeight(const at::Tensor& x, const at::Tensor& w);
// x·Wᵀ for x [n, k] float32 and W [m, k].
at::Tensor timesWeightT(const at::Tensor& x, const at::Tensor& w);
// W·v for W [m, k] and v [k] (= timesWeightT of one row).
at::Tensor weightTimesVector(const at::Tensor& w, const at::Tensor& v);

// bias + x·W (no bias when it is undefined), differentiable w.r.t. x (and the bias) under autograd. The
// backward pass computes ∂/∂x = g·Wᵀ with the same products as the forward pass (block by block from
// a half-precision W, so no float32 copy of W is kept for it); W gets no gradient, unless it requires
// one (the trainers): then this is at::addmm, differentiable w.r.t. W too.
at::Tensor linear(const at::Tensor& bias, const at::Tensor& x, const at::Tensor& w);

// Rows `ids` of W [V, d] in computeDtype(W) (an embedding lookup, an autoencoder's active decoder rows).
at::Tensor weightRows(const at::Tensor& w, const at::Tensor& ids);

// ‖W_i‖₂ of every row of W [r, c], float32 [r] (blocks converted as in the products).
at::Tensor weightRowNorms(const at::Tensor& w);

// Mean of W's rows as float32 [d], accumulated in float32.
at::Tensor weightMeanRow(const at::Tensor& w);

} // namespace cs
