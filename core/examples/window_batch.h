#pragma once
// The examples index's forward pass over several windows at once (issue 14's speed).
//
// Each window is still its own forward pass: the windows are stacked as a batch [B, n] and attention is
// per window (a batched product with the causal mask inside each window), so no token sees another
// window. What changes is the shape of the products: one [B·n, d_in] × [d_in, d_out] product per weight
// instead of B products of n rows. At the demo's n_ctx of 64, each product re-packs the whole weight
// for 64 rows (OpenBLAS's copy took as long as the arithmetic: perf, bench/bench_examples.cpp), and
// every small operator pays libtorch's dispatch once per window; a batch pays both once per B windows.
//
// Inference only: no autograd, no ablations, no logits (the index needs none of them). The pass is
// runForward's own (ForwardOptions::windowLength); autoencoders are encoded after it from their
// recorded inputs, as runForward's deferred ones are (they leave the pass unchanged). tst_examples checks the index built from these passes against
// runForward window by window, and a batched index against one built a window at a time.

#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace cs {

struct ExampleNodeGroup;

// The activations of every node of `groups` for a batch of B windows of equal length n: for each
// group a row-major [B·n, count] matrix, window b's rows at [b·n, (b+1)·n) (heads: max_k P[q,k,h] over
// the window's own keys, query 0 included) and, for heads, the arg-max key within the window per
// (row, head), [B·n·count].
struct GroupActivations {
    at::Tensor values;               // [B·n, count], float32, contiguous
    std::vector<int> keyArgMax;      // heads only: the smallest k with the largest P[q,k,h]
};

// `windows`: B ≥ 1 token lists of one length 1..n_ctx. Groups are exampleNodeGroups(model.config, saes):
// per layer heads then neurons, then one group per autoencoder of `saes` in set order.
// Throws Cancelled when `cancelled` returns true (checked between layers).
std::vector<GroupActivations> windowBatchActivations(const Gpt2Model& model, const SaeSet& saes,
                                                     const std::vector<ExampleNodeGroup>& groups,
                                                     const std::vector<std::vector<int>>& windows,
                                                     const std::function<bool()>& cancelled = {});

} // namespace cs
