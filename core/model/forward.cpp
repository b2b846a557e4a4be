#include "core/model/forward.h"

#include "core/linalg/weight_product.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>

namespace cs {

at::Tensor layerNorm(const at::Tensor& x, const at::Tensor& gain, const at::Tensor& bias, double eps, at::Tensor* sigma)
{
    // ATen's fused layer norm: for the backward pass it keeps x (alive anyway: the residual stream),
    // the mean and 1/σ, where the composite form kept two [n, d] intermediates per call (about 150 MB
    // over GPT-2 small's 25 layer norms at 1,024 tokens). σ = sqrt(var + eps), var the biased variance.
    auto [out, mean, rstd] = at::native_layer_norm(x, {x.size(-1)}, gain, bias, eps);
    (void)mean;
    if (sigma)
        *sigma = rstd.detach().reciprocal();
    return out;
}

at::Tensor mlpActivation(const at::Tensor& pre, MlpActivation kind)
{
    return kind == MlpActivation::GeluNew ? at::gelu(pre, "tanh") : at::gelu(pre);
}

double attentionScale(const Gpt2Config& c, int layer)
{
    double scale = c.scaleAttnWeights ? 1.0 / std::sqrt(static_cast<double>(c.dHead())) : 1.0;
    if (c.scaleAttnByInverseLayerIdx)
        scale /= static_cast<double>(layer + 1);
    return scale;
}

at::Tensor mlpActivationDerivative(const at::Tensor& z, MlpActivation kind)
{
    if (kind == MlpActivation::GeluNew) {
        const double c = std::sqrt(2.0 / M_PI);
        const at::Tensor t = at::tanh(c * (z + 0.044715 * z.pow(3)));
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * 0.044715 * z * z);
    }
    // Exact GELU: Φ(z) + z·φ(z).
    const at::Tensor cdf = 0.5 * (1 + at::erf(z / std::sqrt(2.0)));
    const at::Tensor pdf = at::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI);
    return cdf + z * pdf;
}

const SaeRecord* LayerRecord::sae(SaeLocation location) const
{
    for (const auto& r : saes) {
        if (r.bound.location == location)
            return &r;
    }
    return nullptr;
}

bool ForwardAblations::empty() const
{
    for (const auto& l : layers) {
        if (!l.empty())
            return false;
    }
    return true;
}

const LayerAblations* ForwardAblations::at(int layer) const
{
    return layer >= 0 && layer < static_cast<int>(layers.size()) && !layers[layer].empty() ? &layers[layer] : nullptr;
}

namespace {

void checkRange(std::int64_t value, std::int64_t size, const char* what)
{
    if (value < 0 || value >= size)
        throw std::invalid_argument(std::string("runForward: ablation ") + what + " " + std::to_string(value) + " out of range");
}

// `t` with some entries replaced by constants (an out-of-place index_put: nothing flows back through
// the replaced entries). `coordinates` gives, per ablation, its index along each dimension of t.
template <typename Coordinates>
at::Tensor withConstants(const at::Tensor& t, const std::vector<ActivationAblation>& ablations, int dims, Coordinates coordinates)
{
    if (ablations.empty())
        return t;
    std::vector<std::vector<std::int64_t>> index(static_cast<std::size_t>(dims));
    std::vector<double> values;
    for (const auto& a : ablations) {
        const std::vector<std::int64_t> c = coordinates(a);
        for (int i = 0; i < dims; ++i)
            index[static_cast<std::size_t>(i)].push_back(c[static_cast<std::size_t>(i)]);
        values.push_back(a.value);
    }
    c10::List<c10::optional<at::Tensor>> indices;
    for (const auto& i : index)
        indices.push_back(at::tensor(i, at::kLong));
    return t.index_put(indices, at::tensor(values, at::kDouble).to(t.scalar_type()));
}

} // namespace

at::Tensor withAblatedEntries(const at::Tensor& t, const std::vector<ActivationAblation>& ablations)
{
    return withConstants(t, ablations, 2, [&](const ActivationAblation& a) {
        checkRange(a.token, t.size(0), "token");
        checkRange(a.index, t.size(1), "index");
        return std::vector<std::int64_t>{a.token, a.index};
    });
}

at::Tensor withAblatedProbs(const at::Tensor& probs, const std::vector<ActivationAblation>& ablations)
{
    const std::int64_t n = probs.size(0), H = probs.size(2);
    return withConstants(probs, ablations, 3, [&](const ActivationAblation& a) {
        checkRange(a.token, n, "query token");
        checkRange(a.key, a.token + 1, "key token");
        checkRange(a.index, H, "head");
        return std::vector<std::int64_t>{a.token, a.key, a.index};
    });
}

namespace {

// The ablated probabilities of one layer as (head, query, key) rows [A, 3] and their values [A],
// range-checked as withAblatedProbs does.
std::pair<at::Tensor, at::Tensor> probAblationCoordinates(const std::vector<ActivationAblation>& ablations, std::int64_t n, std::int64_t H)
{
    std::vector<std::int64_t> coordinates;
    std::vector<double> values;
    for (const auto& a : ablations) {
        checkRange(a.token, n, "query token");
        checkRange(a.key, a.token + 1, "key token");
        checkRange(a.index, H, "head");
        coordinates.insert(coordinates.end(), {a.index, a.token, a.key});
        values.push_back(a.value);
    }
    const auto count = static_cast<std::int64_t>(values.size());
    return {at::tensor(coordinates, at::kLong).view({count, 3}), at::tensor(values, at::kDouble).to(at::kFloat)};
}

// The ablated probabilities as plain entries, for the attention node's per-head loops.
struct ProbEntry {
    std::int64_t head, query, key;
    float value;
};

std::vector<ProbEntry> probEntries(const at::Tensor& coordinates, const at::Tensor& values)
{
    std::vector<ProbEntry> out;
    const at::Tensor c = coordinates.contiguous(), v = values.contiguous();
    for (std::int64_t i = 0; i < c.size(0); ++i) {
        const std::int64_t* row = c.data_ptr<std::int64_t>() + 3 * i;
        out.push_back({row[0], row[1], row[2], v.data_ptr<float>()[i]});
    }
    return out;
}

// Calls f(offset, value) for the entries of head h inside the block of query rows [first, first + m)
// of a row-major [m, keys] tensor.
template <typename F>
void forEachInBlock(const std::vector<ProbEntry>& entries, std::int64_t h, std::int64_t first, std::int64_t m, std::int64_t keys, F&& f)
{
    for (const ProbEntry& e : entries) {
        if (e.head == h && e.query >= first && e.query < first + m && e.key < keys)
            f((e.query - first) * keys + e.key, e.value);
    }
}

// softmax(scale·Q·Kᵀ + bias) per head, [H, m, n] (qh [H, m, dh], kt [H, dh, n], bias [m, n]: −∞ above
// the diagonal). The scores are written once and normalized in place: one [H, m, n] tensor, not two.
at::Tensor causalProbs(const at::Tensor& qh, const at::Tensor& kt, const at::Tensor& bias, double scale)
{
    at::Tensor p = at::baddbmm(bias, qh, kt, /*beta=*/1, /*alpha=*/scale);
    at::_softmax_out(p, p, -1, false);
    return p;
}

// One head's block of P: query rows [first, first + m) of qh ([n, dh]) against keys [0, first + m) of kh,
// softmax(scale·q·kᵀ + bias), [m, first + m] (row-major), normalized in place.
at::Tensor probsBlock(const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& bias, std::int64_t first, std::int64_t m, double scale)
{
    const std::int64_t keys = first + m;
    at::Tensor p = at::addmm(bias.narrow(0, first, m).narrow(1, 0, keys), qh.narrow(0, first, m), kh.narrow(0, 0, keys).t(), /*beta=*/1,
                             /*alpha=*/scale);
    at::_softmax_out(p, p, -1, false);
    return p;
}

// dS = P ⊙ (dP − Σ_k dP·P) in place in dP for one head's block of query rows [first, first + m) ([m, keys],
// contiguous), and 0 after each query (P is 0 there): softmax's backward without the temporaries of
// the composite form.
void softmaxBackwardInPlace(at::Tensor& dP, const at::Tensor& P, std::int64_t first)
{
    const std::int64_t m = dP.size(0), keys = dP.size(1);
    float* g = dP.data_ptr<float>();
    const float* p = P.data_ptr<float>();
    for (std::int64_t row = 0; row < m; ++row) {
        const std::int64_t last = std::min(keys - 1, first + row); // keys ≤ query only
        float* gr = g + row * keys;
        const float* pr = p + row * keys;
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (std::int64_t k = 0; k <= last; ++k)
            dot += gr[k] * pr[k];
#pragma omp simd
        for (std::int64_t k = 0; k <= last; ++k)
            gr[k] = pr[k] * (gr[k] - dot);
        std::fill(gr + last + 1, gr + keys, 0.0f);
    }
}

// Query rows per block of the attention node: the block [first, first + m) attends to keys [0, first + m)
// only, so the products skip most of the masked half (at 1,024 tokens, 8 blocks do 56 % of the full
// products' work), and one head's block of P (128 × at most n floats: 512 KB at 1,024 tokens) stays in
// the core's cache from the scores through the softmax to the weighted sum.
constexpr std::int64_t kAttentionBlockRows = 128;

// One layer's causal attention Z = softmax(scale·Q·Kᵀ + mask)·V as one autograd node that saves only
// Q, K and V (views of the record's projection) and recomputes P in its backward pass: 1.6 GFLOP a
// layer of GPT-2 small at 1,024 tokens, against 50 MB of P per layer kept alive until then (what the
// composite graph of ForwardOptions::keepProbs saves, as softmax's output and the product's input).
// Both passes run the heads in parallel (one thread each, single-threaded products), each head by
// blocks of query rows. Ablated entries are constants: nothing flows back through them to the scores.
struct CausalAttention : public torch::autograd::Function<CausalAttention> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                              const at::Tensor& bias, const at::Tensor& ablCoordinates, const at::Tensor& ablValues, double scale,
                              const c10::intrusive_ptr<AttentionBackwardObserver>& observer)
    {
        const std::int64_t n = query.size(0), H = query.size(1), dh = query.size(2);
        const std::vector<ProbEntry> entries = probEntries(ablCoordinates, ablValues);
        at::Tensor Z = at::empty({n, H, dh}, query.options());
        at::parallel_for(0, H, 1, [&](std::int64_t begin, std::int64_t end) {
            at::NoGradGuard noGrad; // grad mode is per thread: the worker threads' own is on
            for (std::int64_t h = begin; h < end; ++h) {
                const at::Tensor qh = query.select(1, h), kh = key.select(1, h), vh = value.select(1, h); // [n, dh]
                for (std::int64_t first = 0; first < n; first += kAttentionBlockRows) {
                    const std::int64_t m = std::min(kAttentionBlockRows, n - first), keys = first + m;
                    at::Tensor P = probsBlock(qh, kh, bias, first, m, scale);
                    float* p = P.data_ptr<float>();
                    forEachInBlock(entries, h, first, m, keys, [&](std::int64_t offset, float v) { p[offset] = v; });
                    at::Tensor zb = Z.narrow(0, first, m).select(1, h); // [m, dh]
                    at::mm_out(zb, P, vh.narrow(0, 0, keys));
                }
            }
        });
        ctx->saved_data["scale"] = scale;
        // A capsule: the one IValue that holds a C++ object of ours (no TorchScript class registration).
        ctx->saved_data["observer"] = c10::IValue::make_capsule(observer);
        ctx->save_for_backward({query, key, value, bias, ablCoordinates, ablValues});
        return Z;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads)
    {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &query = saved[0], &key = saved[1], &value = saved[2], &bias = saved[3];
        const std::vector<ProbEntry> entries = probEntries(saved[4], saved[5]);
        const double scale = ctx->saved_data["scale"].toDouble();
        const c10::intrusive_ptr<torch::CustomClassHolder> held = ctx->saved_data["observer"].toCapsule();
        const auto* observer = static_cast<const AttentionBackwardObserver*>(held.get());
        const bool observed = observer && observer->block;
        const std::int64_t n = query.size(0), H = query.size(1);
        const at::Tensor gz = grads[0].contiguous(); // ∂O/∂Z [n, H, dh]
        at::Tensor dQ = at::empty(query.sizes(), query.options()), dK = at::zeros(query.sizes(), query.options()),
                   dV = at::zeros(query.sizes(), query.options());
        at::parallel_for(0, H, 1, [&](std::int64_t begin, std::int64_t end) {
            at::NoGradGuard noGrad; // grad mode is per thread: the worker threads' own is on
            for (std::int64_t h = begin; h < end; ++h) {
                const at::Tensor qh = query.select(1, h), kh = key.select(1, h), vh = value.select(1, h), gh = gz.select(1, h); // [n, dh]
                for (std::int64_t first = 0; first < n; first += kAttentionBlockRows) {
                    const std::int64_t m = std::min(kAttentionBlockRows, n - first), keys = first + m;
                    const at::Tensor qb = qh.narrow(0, first, m), gb = gh.narrow(0, first, m); // [m, dh]
                    const at::Tensor kb = kh.narrow(0, 0, keys), vb = vh.narrow(0, 0, keys);   // [keys, dh]
                    at::Tensor P = probsBlock(qh, kh, bias, first, m, scale); // softmax's own (unablated) output
                    at::Tensor dP = at::mm(gb, vb.t());                       // [m, keys]
                    float* p = P.data_ptr<float>();
                    float* g = dP.data_ptr<float>();
                    if (observed) {
                        // Before softmax's backward overwrites dP; P as Z read it (a copy only in a block
                        // with ablated entries: softmax's backward needs its own output).
                        bool ablated = false;
                        forEachInBlock(entries, h, first, m, keys, [&](std::int64_t, float) { ablated = true; });
                        at::Tensor read = ablated ? P.clone() : P;
                        float* r = read.data_ptr<float>();
                        forEachInBlock(entries, h, first, m, keys, [&](std::int64_t offset, float v) { r[offset] = v; });
                        observer->block(h, first, read, dP);
                    }
                    forEachInBlock(entries, h, first, m, keys, [&](std::int64_t offset, float) { g[offset] = 0; });
                    softmaxBackwardInPlace(dP, P, first); // now dS
                    forEachInBlock(entries, h, first, m, keys, [&](std::int64_t offset, float v) { p[offset] = v; }); // what Z read
                    at::Tensor dq = dQ.narrow(0, first, m).select(1, h);
                    at::mm_out(dq, dP, kb);
                    dq.mul_(scale);
                    dK.narrow(0, 0, keys).select(1, h).addmm_(dP.t(), qb, /*beta=*/1, /*alpha=*/scale);
                    dV.narrow(0, 0, keys).select(1, h).addmm_(P.t(), gb);
                }
            }
        });
        return {dQ, dK, dV, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

const std::vector<ActivationAblation>* latentAblationsFor(const LayerAblations* layer, SaeLocation location)
{
    if (!layer)
        return nullptr;
    const std::string_view kind = saeKindName(location);
    const auto& list = kind == "mlp_sae" ? layer->mlpLatents : kind == "attn_sae" ? layer->attnLatents : layer->residLatents;
    return list.empty() ? nullptr : &list;
}

// The active entries, row-major. For float32 latents one pass over [n, N] with the rows in parallel:
// at::nonzero makes two passes on one thread, which for 24 autoencoders of 32k latents is more than
// the rest of their encoding besides the encoder product.
void setActive(SaeRecord& r)
{
    const at::Tensor a = r.latents.detach();
    if (a.scalar_type() != at::kFloat || a.dim() != 2) {
        const at::Tensor nz = a.nonzero(); // [nnz, 2], row-major
        r.activeTokens = nz.select(1, 0).contiguous();
        r.activeLatents = nz.select(1, 1).contiguous();
        return;
    }
    const at::Tensor c = a.contiguous();
    const std::int64_t n = c.size(0), N = c.size(1);
    const float* p = c.data_ptr<float>();
    std::vector<std::vector<std::int64_t>> perRow(static_cast<std::size_t>(n));
    at::parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
            const float* row = p + t * N;
            auto& list = perRow[static_cast<std::size_t>(t)];
            for (std::int64_t l = 0; l < N; ++l) {
                if (row[l] != 0.0f)
                    list.push_back(l);
            }
        }
    });
    std::int64_t nnz = 0;
    for (const auto& list : perRow)
        nnz += static_cast<std::int64_t>(list.size());
    r.activeTokens = at::empty({nnz}, at::kLong);
    r.activeLatents = at::empty({nnz}, at::kLong);
    std::int64_t* tokens = r.activeTokens.data_ptr<std::int64_t>();
    std::int64_t* latents = r.activeLatents.data_ptr<std::int64_t>();
    for (std::int64_t t = 0, i = 0; t < n; ++t) {
        for (const std::int64_t l : perRow[static_cast<std::size_t>(t)]) {
            tokens[i] = t;
            latents[i++] = l;
        }
    }
}

// Encodes x for the record without gradients: μ, scale and α (z is not kept).
SaeRecord encodedRecord(const BoundSae& bound, const at::Tensor& x)
{
    at::NoGradGuard noGrad;
    SaeRecord r;
    r.bound = bound;
    r.input = x;
    r.output = x;
    SaeEncoding e = encodeSae(*bound.sae, x.detach());
    r.latents = e.latents;
    e.preActivation = at::Tensor();
    e.latents = at::Tensor();
    r.encoding = e;
    setActive(r);
    return r;
}

// Runs the autoencoder bound at (location, layer) inside the pass when it changes the pass (ablated
// latents) or when the exact graph is asked for, and returns what flows on; otherwise returns x and
// leaves the autoencoder to encodeSaes, after the pass.
// The exact graph is TDB's decode(α1) + (x − decode(α2)) with α1, α2 two copies of α: it equals x, with
// ∂out/∂x = I and ∂out/∂α1 = D. With ablated latents α1 = α′ (the values put in), so
// out = x + Σ_l (v_l − α_l(x))·s(x)·D_l over the ablated entries: the error term keeps its dependence
// on x through α_l(x) and the normalization scale s(x) (interventions-math §10.2).
at::Tensor applySae(const SaeSet* saes, SaeLocation location, int layer, const at::Tensor& x, LayerRecord& L, bool exactGraph,
                    const LayerAblations* layerAblations)
{
    const BoundSae* bound = saes ? saes->findAt(location, layer) : nullptr;
    if (!bound)
        return x;
    const SparseAutoencoder& sae = *bound->sae;
    const std::vector<ActivationAblation>* ablations = latentAblationsFor(layerAblations, location);
    const bool exact = at::GradMode::is_enabled() && exactGraph;
    if (!exact && !ablations)
        return x; // deferred: encodeSaes
    SaeRecord r;
    r.bound = *bound;
    r.input = x;
    at::Tensor out = x;
    if (exact) {
        r.encoding = encodeSae(sae, x);
        r.latents = ablations ? withAblatedEntries(r.encoding.latents, *ablations) : r.encoding.latents.clone();
        const at::Tensor reconstruction = decodeSae(sae, r.latents, r.encoding);
        out = reconstruction + (x - decodeSae(sae, r.encoding.latents, r.encoding));
    } else {
        {
            at::NoGradGuard noGrad;
            r.encoding = encodeSae(sae, x.detach());
            r.latents = withAblatedEntries(r.encoding.latents, *ablations);
            r.encoding.preActivation = at::Tensor();
            r.encoding.latents = at::Tensor();
        }
        // Only the ablated tokens change; α(x) and s(x) are recomputed there with x attached, and only
        // the ablated latents' decoder rows are read.
        std::vector<std::int64_t> tokens, latents;
        for (const auto& a : *ablations) {
            checkRange(a.token, x.size(0), "token");
            checkRange(a.index, sae.latentCount(), "latent");
            if (std::find(tokens.begin(), tokens.end(), a.token) == tokens.end())
                tokens.push_back(a.token);
            if (std::find(latents.begin(), latents.end(), a.index) == latents.end())
                latents.push_back(a.index);
        }
        std::sort(tokens.begin(), tokens.end());
        std::sort(latents.begin(), latents.end());
        const at::Tensor rows = at::tensor(tokens, at::kLong), cols = at::tensor(latents, at::kLong);
        const SaeEncoding attached = encodeSae(sae, x.index_select(0, rows));
        const at::Tensor alpha = attached.latents.index_select(1, cols); // [r, c]
        at::Tensor change = at::zeros_like(alpha);
        at::Tensor mask = at::zeros_like(alpha, at::kBool);
        {
            at::NoGradGuard noGrad;
            for (const auto& a : *ablations) {
                const auto row = std::lower_bound(tokens.begin(), tokens.end(), a.token) - tokens.begin();
                const auto col = std::lower_bound(latents.begin(), latents.end(), a.index) - latents.begin();
                change[row][col] = a.value;
                mask[row][col] = true;
            }
        }
        const at::Tensor delta = at::where(mask, change - alpha, at::zeros_like(alpha));
        const at::Tensor write = at::mm(delta, weightRows(sae.decoder, cols).to(delta.scalar_type())) * attached.scale;
        out = x.index_add(0, rows, write.to(x.scalar_type()));
    }
    r.output = out;
    setActive(r);
    L.saes.push_back(std::move(r));
    return out;
}

} // namespace

const at::Tensor& saeLocationTensor(const LayerRecord& L, SaeLocation location)
{
    switch (location) {
    case SaeLocation::MlpPostAct: return L.mlpPost;
    case SaeLocation::ResidDeltaMlp: return L.mlpOut;
    case SaeLocation::ResidDeltaAttn: return L.attnOut;
    case SaeLocation::AttnZ: return L.attnZ;
    case SaeLocation::ResidPre: return L.residIn;
    case SaeLocation::ResidMid: return L.residMid;
    case SaeLocation::ResidPost: return L.residOut;
    }
    return L.residIn;
}

ActivationRecord runForward(const Gpt2Model& model, const std::vector<int>& ids, const ForwardOptions& options)
{
    const Gpt2Config& c = model.config;
    const Gpt2Weights& w = model.weights;
    const std::int64_t n = static_cast<std::int64_t>(ids.size());
    const std::int64_t windowLength = options.windowLength > 0 ? options.windowLength : n; // tokens per window
    const std::int64_t windows = windowLength > 0 ? n / windowLength : 0;
    if (windowLength < 1 || windowLength > c.nCtx || n % windowLength != 0)
        throw std::invalid_argument("runForward: " + std::to_string(n) + " tokens in windows of " + std::to_string(windowLength)
                                    + ", expected windows of 1.." + std::to_string(c.nCtx));
    if (windows > 1 && (options.withGrad || options.ablations || options.logits != RecordLogits::None))
        throw std::invalid_argument("runForward: several windows in one pass need withGrad, ablations and logits off");
    for (int id : ids) {
        if (id < 0 || id >= c.vocabSize)
            throw std::invalid_argument("runForward: token id " + std::to_string(id) + " out of range");
    }

    c10::AutoGradMode gradMode(options.withGrad);
    const std::int64_t d = c.dModel, H = c.nHead, dh = c.dHead();

    ActivationRecord rec;
    rec.ids = ids;
    rec.withGrad = options.withGrad;
    if (options.ablations)
        rec.ablations = *options.ablations;
    const at::Tensor idTensor = at::tensor(std::vector<std::int64_t>(ids.begin(), ids.end()), at::kLong);
    // r0 = E[tok] + Π[pos], the positions counted within each window.
    at::Tensor resid = (weightRows(w.tokenEmbedding, idTensor).view({windows, windowLength, d})
                        + w.positionEmbedding.narrow(0, 0, windowLength)).view({n, d});
    if (options.withGrad)
        resid = resid.detach().requires_grad_(true);
    rec.embeddings = resid;

    // Causal mask in the (head, q, k) compute layout, as an additive bias: −∞ above the diagonal
    // (k > q), 0 elsewhere. Added inside the score product (baddbmm) with the scale as its alpha, so a
    // long prompt makes one [H, n, n] tensor per layer before the softmax instead of three (each a
    // 50 MB write and, in the backward pass, a 50 MB gradient at 1,024 tokens).
    const at::Tensor futureBias = at::zeros({windowLength, windowLength})
                                      .masked_fill_(at::ones({windowLength, windowLength}, at::kBool).triu(1), -INFINITY);

    rec.layers.reserve(c.nLayer);
    for (int layer = 0; layer < c.nLayer; ++layer) {
        if (options.cancelled && options.cancelled())
            throw Cancelled();
        const Gpt2LayerWeights& lw = w.layers[layer];
        const LayerAblations* ablations = options.ablations ? options.ablations->at(layer) : nullptr;
        LayerRecord L;
        const auto sae = [&](SaeLocation location, const at::Tensor& x) {
            return applySae(options.saes, location, layer, x, L, options.exactSaeGraph, ablations);
        };
        resid = sae(SaeLocation::ResidPre, resid);
        L.residIn = resid;

        at::Tensor sigma1;
        const at::Tensor x1 = layerNorm(resid, lw.ln1Gain, lw.ln1Bias, c.layerNormEps, &sigma1);
        L.ln1Sigma = sigma1.squeeze(-1);
        const at::Tensor qkv = linear(lw.attnQkvBias, x1, lw.attnQkvWeight); // [n, 3d]
        L.query = qkv.narrow(1, 0, d).view({n, H, dh});
        L.key = qkv.narrow(1, d, d).view({n, H, dh});
        L.value = qkv.narrow(1, 2 * d, d).view({n, H, dh});

        const double scale = attentionScale(c, layer);
        if (windows == 1 && !options.keepProbs) {
            const auto [ablCoordinates, ablValues] =
                probAblationCoordinates(ablations ? ablations->probs : std::vector<ActivationAblation>{}, n, H);
            L.attentionObserver = c10::make_intrusive<AttentionBackwardObserver>();
            L.headOut = CausalAttention::apply(L.query, L.key, L.value, futureBias, ablCoordinates, ablValues, scale,
                                               L.attentionObserver); // [n, H, dh]
        } else if (windows == 1) {
            const at::Tensor qh = L.query.permute({1, 0, 2});   // [H, n, dh]
            const at::Tensor kh = L.key.permute({1, 2, 0});     // [H, dh, n]
            const at::Tensor vh = L.value.permute({1, 0, 2});   // [H, n, dh]
            const at::Tensor scoresHqk = at::baddbmm(futureBias, qh, kh, /*beta=*/1, /*alpha=*/scale);
            const at::Tensor probsHqk = at::softmax(scoresHqk, -1);
            L.probs = probsHqk.permute({1, 2, 0});
            if (ablations)
                L.probs = withAblatedProbs(L.probs, ablations->probs);
            // The weighted sum reads L.probs (not probsHqk) so that autograd can differentiate w.r.t. the
            // recorded probabilities (act×grad of heads, math §6.2).
            L.headOut = at::bmm(L.probs.permute({2, 0, 1}), vh).permute({1, 0, 2}); // [n, H, dh]
        } else {
            // (window, head) pairs as the batch of the products: [W·H, n, dh] etc.
            const auto perWindow = [&](const at::Tensor& t, std::initializer_list<std::int64_t> order, std::int64_t rows, std::int64_t cols) {
                return t.view({windows, windowLength, H, dh}).permute(order).reshape({windows * H, rows, cols});
            };
            const at::Tensor qh = perWindow(L.query, {0, 2, 1, 3}, windowLength, dh);
            const at::Tensor kh = perWindow(L.key, {0, 2, 3, 1}, dh, windowLength);
            const at::Tensor vh = perWindow(L.value, {0, 2, 1, 3}, windowLength, dh);
            const at::Tensor probsWhqk = at::softmax(at::baddbmm(futureBias, qh, kh, /*beta=*/1, /*alpha=*/scale), -1);
            L.probs = probsWhqk.view({windows, H, windowLength, windowLength}).permute({0, 2, 3, 1}); // [W, q, k, H]
            L.headOut = at::bmm(probsWhqk, vh).view({windows, H, windowLength, dh}).permute({0, 2, 1, 3}).reshape({n, H, dh});
        }
        L.attnZ = L.headOut.reshape({n, d});
        const at::Tensor z = sae(SaeLocation::AttnZ, L.attnZ);
        L.attnOut = sae(SaeLocation::ResidDeltaAttn, linear(lw.attnOutBias, z, lw.attnOutWeight));
        L.residMid = sae(SaeLocation::ResidMid, resid + L.attnOut);

        at::Tensor sigma2;
        const at::Tensor x2 = layerNorm(L.residMid, lw.ln2Gain, lw.ln2Bias, c.layerNormEps, &sigma2);
        L.ln2Sigma = sigma2.squeeze(-1);
        L.mlpPre = linear(lw.mlpInBias, x2, lw.mlpInWeight);
        L.mlpPost = mlpActivation(L.mlpPre, c.activation);
        if (ablations)
            L.mlpPost = withAblatedEntries(L.mlpPost, ablations->neurons);
        const at::Tensor mlpHidden = sae(SaeLocation::MlpPostAct, L.mlpPost);
        L.mlpOut = sae(SaeLocation::ResidDeltaMlp, linear(lw.mlpOutBias, mlpHidden, lw.mlpOutWeight));
        L.residOut = sae(SaeLocation::ResidPost, L.residMid + L.mlpOut);
        resid = L.residOut;
        rec.layers.push_back(std::move(L));
        if (options.progress)
            options.progress(layer + 1);
    }

    at::Tensor sigmaF;
    rec.lnFinalOut = layerNorm(resid, w.lnFinalGain, w.lnFinalBias, c.layerNormEps, &sigmaF);
    rec.lnFinalSigma = sigmaF.squeeze(-1);
    if (options.logits == RecordLogits::All)
        rec.logits = timesWeightT(rec.lnFinalOut, w.unembedding);
    if (options.saes && !options.deferSaes)
        encodeSaes(*options.saes, rec);
    return rec;
}

void encodeSaes(const SaeSet& saes, ActivationRecord& record, int layer)
{
    for (const BoundSae& bound : saes.all()) {
        if (layer >= 0 && bound.layer != layer)
            continue;
        if (bound.layer >= static_cast<int>(record.layers.size()))
            throw std::invalid_argument("encodeSaes: the record has no layer " + std::to_string(bound.layer));
        LayerRecord& L = record.layers[static_cast<std::size_t>(bound.layer)];
        if (L.sae(bound.location))
            continue;
        L.saes.push_back(encodedRecord(bound, saeLocationTensor(L, bound.location)));
    }
}

at::Tensor logitsAt(const Gpt2Model& model, const ActivationRecord& record, int token)
{
    at::NoGradGuard noGrad;
    if (record.logits.defined())
        return record.logits[token].detach();
    return weightTimesVector(model.weights.unembedding, record.lnFinalOut[token].detach());
}

at::Tensor attentionScores(const Gpt2Model& model, const ActivationRecord& record, int layer)
{
    at::NoGradGuard noGrad;
    const LayerRecord& L = record.layers.at(static_cast<std::size_t>(layer));
    const std::int64_t n = L.query.size(0);
    const at::Tensor scores = at::einsum("qhc,khc->qkh", {L.query.detach(), L.key.detach()}) * attentionScale(model.config, layer);
    return scores.masked_fill(at::ones({n, n}, at::kBool).triu(1).unsqueeze(-1), -INFINITY);
}

at::Tensor LayerProbs::recompute(const at::Tensor& queries, std::int64_t firstHead, std::int64_t count, std::int64_t keys) const
{
    at::NoGradGuard noGrad;
    const std::int64_t m = queries.numel();
    const at::Tensor qh = query.index_select(0, queries).narrow(1, firstHead, count).permute({1, 0, 2}); // [h, m, dh]
    const at::Tensor kt = key.narrow(0, 0, keys).narrow(1, firstHead, count).permute({1, 2, 0});        // [h, dh, keys]
    // The pass's causal bias at these rows: −∞ where k > q.
    const at::Tensor future = at::arange(keys, at::kLong).unsqueeze(0) > queries.unsqueeze(1);
    const at::Tensor bias = at::zeros({m, keys}, query.options()).masked_fill_(future, -INFINITY);
    at::Tensor p = causalProbs(qh, kt, bias, scale);
    if (!ablations.empty()) {
        // Row of each query token within `queries` (-1: not asked for).
        std::vector<std::int64_t> rowOf(static_cast<std::size_t>(tokens()), -1);
        const at::Tensor qs = queries.contiguous();
        for (std::int64_t i = 0; i < m; ++i)
            rowOf[static_cast<std::size_t>(qs.data_ptr<std::int64_t>()[i])] = i;
        std::vector<std::int64_t> index;
        std::vector<double> values;
        for (const auto& a : ablations) {
            if (a.token < 0 || a.token >= tokens() || a.key < 0 || a.key > a.token || a.key >= keys || a.index < firstHead
                || a.index >= firstHead + count)
                continue; // out of range ones were refused by the pass
            const std::int64_t row = rowOf[static_cast<std::size_t>(a.token)];
            if (row < 0)
                continue;
            index.push_back(((a.index - firstHead) * m + row) * keys + a.key);
            values.push_back(a.value);
        }
        if (!index.empty())
            p.view({-1}).index_put_({at::tensor(index, at::kLong)}, at::tensor(values, at::kDouble).to(p.scalar_type()));
    }
    return p;
}

at::Tensor LayerProbs::headBlock(std::int64_t h, std::int64_t first, std::int64_t count) const
{
    const std::int64_t keys = first + count;
    if (recorded.defined())
        return recorded.narrow(0, first, count).narrow(1, 0, keys).select(2, h);
    at::NoGradGuard noGrad;
    const at::Tensor future = at::arange(keys, at::kLong).unsqueeze(0) > at::arange(first, keys, at::kLong).unsqueeze(1);
    const at::Tensor bias = at::zeros({count, keys}, query.options()).masked_fill_(future, -INFINITY);
    // The same product and softmax as the pass's probsBlock, on the same shapes.
    const at::Tensor qh = query.select(1, h).narrow(0, first, count), kh = key.select(1, h).narrow(0, 0, keys);
    at::Tensor p = at::addmm(bias, qh, kh.t(), /*beta=*/1, /*alpha=*/scale);
    at::_softmax_out(p, p, -1, false);
    float* out = p.data_ptr<float>();
    for (const auto& a : ablations) {
        if (a.index == h && a.token >= first && a.token < keys && a.key >= 0 && a.key <= a.token)
            out[(a.token - first) * keys + a.key] = a.value;
    }
    return p;
}

at::Tensor LayerProbs::block(std::int64_t first, std::int64_t count) const
{
    if (recorded.defined())
        return recorded.narrow(0, first, count).narrow(1, 0, first + count).permute({2, 0, 1});
    return recompute(at::arange(first, first + count, at::kLong), 0, heads(), first + count);
}

at::Tensor LayerProbs::rows(std::int64_t first, std::int64_t count) const
{
    if (recorded.defined())
        return recorded.narrow(0, first, count);
    return recompute(at::arange(first, first + count, at::kLong), 0, heads(), tokens()).permute({1, 2, 0});
}

at::Tensor LayerProbs::rowsAt(const at::Tensor& queries) const
{
    if (recorded.defined())
        return recorded.index_select(0, queries);
    return recompute(queries, 0, heads(), tokens()).permute({1, 2, 0});
}

at::Tensor LayerProbs::head(std::int64_t h) const
{
    if (recorded.defined())
        return recorded.select(2, h);
    return recompute(at::arange(tokens(), at::kLong), h, 1, tokens())[0];
}

double LayerProbs::at(std::int64_t q, std::int64_t k, std::int64_t h) const
{
    if (recorded.defined())
        return recorded[q][k][h].item<double>();
    if (k > q)
        return 0.0; // causal
    return headBlock(h, q, 1)[0][k].item<double>();
}

LayerProbs layerProbs(const Gpt2Model& model, const ActivationRecord& record, int layer)
{
    const LayerRecord& L = record.layers.at(static_cast<std::size_t>(layer));
    LayerProbs p;
    if (L.probs.defined())
        p.recorded = L.probs.detach();
    p.query = L.query.detach();
    p.key = L.key.detach();
    p.scale = attentionScale(model.config, layer);
    if (const LayerAblations* a = record.ablations.at(layer))
        p.ablations = a->probs;
    return p;
}

at::Tensor saePreActivation(const SaeRecord& record)
{
    at::NoGradGuard noGrad;
    return encodeSae(*record.bound.sae, record.input.detach()).preActivation;
}

at::Tensor saeReconstruction(const SaeRecord& record)
{
    at::NoGradGuard noGrad;
    const SparseAutoencoder& sae = *record.bound.sae;
    const at::Tensor alpha = record.latents.detach();
    at::Tensor out = sae.preBias.unsqueeze(0).expand({alpha.size(0), sae.inputWidth()}).clone();
    // Row by row over the active latents: nnz × n_in work instead of n × N × n_in.
    for (std::int64_t t = 0; t < alpha.size(0); ++t) {
        const at::Tensor cols = alpha[t].nonzero().squeeze(1);
        if (cols.numel() > 0)
            out[t] += at::mv(weightRows(sae.decoder, cols).t(), alpha[t].index_select(0, cols));
    }
    if (sae.normalizeInput)
        out = out * record.encoding.scale + record.encoding.mean;
    return out;
}

at::Tensor saeError(const SaeRecord& record)
{
    at::NoGradGuard noGrad;
    const SaeEncoding e = encodeSae(*record.bound.sae, record.input.detach());
    return record.input.detach() - decodeSae(*record.bound.sae, e.latents, e);
}

} // namespace cs
