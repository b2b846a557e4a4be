#pragma once
// An independent float64 GPT-2 with autoencoders and interventions, for the intervention tests
// (interventions-math §10.5: "an independent computation per case, not a re-derivation of the
// implementation's own formulas"). Written from the Hugging Face weights and TDB's definitions: its
// own layer norm, GELU, attention, autoencoder encode/decode, clone-and-assign ablations and TDB's
// literal autoencoder graph decode(α1) + (x − decode(α)). It shares no analysis code with the core;
// only the loaders (tested elsewhere) provide the tensors.

#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cs::test {

struct RefAblation {
    enum Kind { Neuron, Prob, Latent } kind = Neuron;
    int layer = 0;
    int token = 0;        // query token for probabilities
    int index = 0;        // neuron, head, latent
    int key = 0;          // probabilities only
    std::string saeKind;  // latents: "mlp_sae", "attn_sae", "resid_sae"
    double value = 0;
};

struct RefOptions {
    std::vector<RefAblation> ablations;
    int detachLn1Layer = -1;   // σ of ln_1 held fixed at this layer (every token)
    int detachLn2Layer = -1;   // σ of ln_2
    // A head whose query (or key) is cut from the graph: {layer, head}.
    std::optional<std::pair<int, int>> detachQueryOf, detachKeyOf;
    // The variant the math rejects: the autoencoder's error term treated as a constant, so that
    // ∂out/∂x = I even with ablated latents (used to show the tests can tell the two apart).
    bool constantErrorTerm = false;
};

struct RefSaeRecord {
    at::Tensor input;   // x
    at::Tensor latents; // α1, the latents the decoder sees (ablated), attached
    at::Tensor preActivation;
    at::Tensor scale;   // std + 1e-5, or ones
};

struct RefLayer {
    at::Tensor residIn, query, key, value, scores, probs, z, attnOut, residMid, mlpPre, mlpPost, mlpOut, residOut;
    std::map<std::string, RefSaeRecord> saes; // by node kind
};

struct RefRecord {
    at::Tensor embeddings; // leaf
    std::vector<RefLayer> layers;
    at::Tensor logits;     // [n, V], the ordinary final layer norm
};

class ReferenceModel {
public:
    ReferenceModel(const Gpt2Model& model, const SaeSet& saes) : m_config(model.config)
    {
        const Gpt2Weights& w = model.weights;
        const auto d = [](const at::Tensor& t) { return t.to(at::kDouble).contiguous(); };
        m_wte = d(w.tokenEmbedding);
        m_wpe = d(w.positionEmbedding);
        m_lnfG = d(w.lnFinalGain);
        m_lnfB = d(w.lnFinalBias);
        m_unembed = d(w.unembedding);
        for (const auto& lw : w.layers)
            m_layers.push_back({d(lw.ln1Gain), d(lw.ln1Bias), d(lw.attnQkvWeight), d(lw.attnQkvBias), d(lw.attnOutWeight),
                                d(lw.attnOutBias), d(lw.ln2Gain), d(lw.ln2Bias), d(lw.mlpInWeight), d(lw.mlpInBias),
                                d(lw.mlpOutWeight), d(lw.mlpOutBias)});
        for (const auto& b : saes.all()) {
            const SparseAutoencoder& s = *b.sae;
            Sae r;
            r.enc = d(s.encoder);
            r.encBias = d(s.encoderBias);
            r.dec = d(s.decoder);
            r.preBias = d(s.preBias);
            r.subtractPreBias = s.subtractPreBias;
            r.normalize = s.normalizeInput;
            r.activation = s.activation;
            r.k = s.topK;
            r.topKReLU = s.topKPostReLU;
            if (s.threshold.defined())
                r.threshold = d(s.threshold);
            r.location = b.location;
            r.layer = b.layer;
            r.kind = saeKindName(b.location);
            m_saes.push_back(r);
        }
    }

    // The forward pass with autograd from a leaf embedding.
    RefRecord forward(const std::vector<int>& ids, const RefOptions& o = {}) const
    {
        const std::int64_t n = static_cast<std::int64_t>(ids.size());
        RefRecord rec;
        const at::Tensor idx = at::tensor(std::vector<std::int64_t>(ids.begin(), ids.end()), at::kLong);
        rec.embeddings = (m_wte.index_select(0, idx) + m_wpe.narrow(0, 0, n)).detach().requires_grad_(true);
        at::Tensor resid = rec.embeddings;
        for (int l = 0; l < m_config.nLayer; ++l) {
            RefLayer L;
            resid = sae(SaeLocation::ResidPre, l, resid, L, o);
            L.residIn = resid;
            attention(l, resid, o, L);
            L.residMid = sae(SaeLocation::ResidMid, l, resid + L.attnOut, L, o);
            mlp(l, L.residMid, o, L);
            L.residOut = sae(SaeLocation::ResidPost, l, L.residMid + L.mlpOut, L, o);
            resid = L.residOut;
            rec.layers.push_back(L);
        }
        rec.logits = at::matmul(layerNorm(resid, m_lnfG, m_lnfB, false), m_unembed.t());
        return rec;
    }

    // Layer l's attention block on the residual `residIn` (TDB's clean module code: a traced quantity
    // recomputed from the residual that feeds it). Fills query … attnOut and the block's autoencoders.
    void attention(int l, const at::Tensor& residIn, const RefOptions& o, RefLayer& L) const
    {
        const std::int64_t n = residIn.size(0);
        const std::int64_t d = m_config.dModel, H = m_config.nHead, dh = d / H;
        const Layer& W = m_layers[l];
        const at::Tensor x1 = layerNorm(residIn, W.ln1G, W.ln1B, o.detachLn1Layer == l);
        const at::Tensor qkv = at::matmul(x1, W.qkv) + W.qkvB;
        L.query = cutHead(qkv.narrow(1, 0, d).reshape({n, H, dh}), o.detachQueryOf, l);
        L.key = cutHead(qkv.narrow(1, d, d).reshape({n, H, dh}), o.detachKeyOf, l);
        L.value = qkv.narrow(1, 2 * d, d).reshape({n, H, dh});
        double scale = m_config.scaleAttnWeights ? 1.0 / std::sqrt(static_cast<double>(dh)) : 1.0;
        if (m_config.scaleAttnByInverseLayerIdx)
            scale /= l + 1;
        // scores[q, k, h] = Σ_c q[q,h,c]·k[k,h,c]·scale, −inf for k > q
        const at::Tensor future = at::ones({n, n}, at::kBool).triu(1).unsqueeze(-1).expand({n, n, H});
        L.scores = (at::einsum("qhc,khc->qkh", {L.query, L.key}) * scale).masked_fill(future, -INFINITY);
        at::Tensor probs = at::softmax(L.scores, 1);
        bool cloned = false;
        for (const auto& a : o.ablations) {
            if (a.kind == RefAblation::Prob && a.layer == l && a.token < n) {
                if (!cloned)
                    probs = probs.clone();
                cloned = true;
                probs.index_put_({a.token, a.key, a.index}, a.value);
            }
        }
        L.probs = probs;
        L.z = sae(SaeLocation::AttnZ, l, at::einsum("qkh,khc->qhc", {probs, L.value}).reshape({n, d}), L, o);
        L.attnOut = sae(SaeLocation::ResidDeltaAttn, l, at::matmul(L.z, W.attnOut) + W.attnOutB, L, o);
    }

    // Layer l's MLP block on `residMid`: mlpPre, mlpPost (ablated), mlpOut and its autoencoders.
    void mlp(int l, const at::Tensor& residMid, const RefOptions& o, RefLayer& L) const
    {
        const Layer& W = m_layers[l];
        const at::Tensor x2 = layerNorm(residMid, W.ln2G, W.ln2B, o.detachLn2Layer == l);
        L.mlpPre = at::matmul(x2, W.mlpIn) + W.mlpInB;
        at::Tensor post = gelu(L.mlpPre);
        bool cloned = false;
        for (const auto& a : o.ablations) {
            if (a.kind == RefAblation::Neuron && a.layer == l) {
                if (!cloned)
                    post = post.clone();
                cloned = true;
                post.index_put_({a.token, a.index}, a.value);
            }
        }
        L.mlpPost = post;
        const at::Tensor hidden = sae(SaeLocation::MlpPostAct, l, post, L, o);
        L.mlpOut = sae(SaeLocation::ResidDeltaMlp, l, at::matmul(hidden, W.mlpOut) + W.mlpOutB, L, o);
    }

    // z of an autoencoder (by node kind and layer) on its input x, [n, N].
    at::Tensor latentPreActivation(const std::string& kind, int layer, const at::Tensor& x) const
    {
        return encode(saeOf(kind, layer), x).z;
    }

    // The logit objectives at the last token with σ_f held fixed (D9).
    enum class Logit { Diff, MinusMean, Prob };
    at::Tensor logitObjective(const RefRecord& rec, Logit kind, const std::vector<int>& targets, const std::vector<int>& distractors) const
    {
        const at::Tensor r = rec.layers.back().residOut;
        const at::Tensor logits = at::matmul(layerNorm(r[r.size(0) - 1], m_lnfG, m_lnfB, true), m_unembed.t());
        auto mean = [&](const std::vector<int>& ids) {
            at::Tensor s = at::zeros({}, at::kDouble);
            for (int id : ids)
                s = s + logits[id];
            return s / static_cast<double>(ids.size());
        };
        switch (kind) {
        case Logit::Diff: return distractors.empty() ? mean(targets) : mean(targets) - mean(distractors);
        case Logit::MinusMean: return mean(targets) - logits.mean();
        case Logit::Prob: {
            const at::Tensor p = at::softmax(logits, 0);
            at::Tensor s = at::zeros({}, at::kDouble);
            for (int id : targets)
                s = s + p[id];
            return s;
        }
        }
        return {};
    }

    // A head's value write at (q, k): P·V[k,h]·W_O[h] in residual space, [d].
    at::Tensor headWrite(const RefRecord& rec, int layer, int head, int q, int k) const
    {
        const std::int64_t dh = m_config.dModel / m_config.nHead;
        const RefLayer& L = rec.layers[layer];
        return L.probs[q][k][head] * at::matmul(L.value[k][head], m_layers[layer].attnOut.narrow(0, head * dh, dh));
    }

    at::Tensor outWeight(int layer, int head) const
    {
        const std::int64_t dh = m_config.dModel / m_config.nHead;
        return m_layers[layer].attnOut.narrow(0, head * dh, dh);
    }
    at::Tensor mlpOutWeight(int layer) const { return m_layers[layer].mlpOut; }
    // An autoencoder's decoder direction pushed to the residual stream (D_l, D_l·W_out, D_l·W_O).
    at::Tensor latentDirection(const std::string& kind, int layer, int latent) const
    {
        const Sae& s = saeOf(kind, layer);
        const at::Tensor dir = s.dec[latent];
        switch (s.location) {
        case SaeLocation::MlpPostAct: return at::matmul(dir, m_layers[layer].mlpOut);
        case SaeLocation::AttnZ: return at::matmul(dir, m_layers[layer].attnOut);
        default: return dir;
        }
    }

private:
    struct Layer {
        at::Tensor ln1G, ln1B, qkv, qkvB, attnOut, attnOutB, ln2G, ln2B, mlpIn, mlpInB, mlpOut, mlpOutB;
    };
    struct Sae {
        at::Tensor enc, encBias, dec, preBias, threshold;
        bool subtractPreBias = true, normalize = false, topKReLU = true;
        SaeActivation activation = SaeActivation::ReLU;
        int k = 0;
        SaeLocation location = SaeLocation::MlpPostAct;
        int layer = 0;
        std::string kind;
    };

    at::Tensor layerNorm(const at::Tensor& x, const at::Tensor& g, const at::Tensor& b, bool detachSigma) const
    {
        const at::Tensor c = x - x.mean(-1, true);
        at::Tensor sigma = (c.pow(2).mean(-1, true) + m_config.layerNormEps).sqrt();
        if (detachSigma)
            sigma = sigma.detach();
        return c / sigma * g + b;
    }

    at::Tensor gelu(const at::Tensor& x) const
    {
        if (m_config.activation == MlpActivation::GeluNew)
            return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
        return 0.5 * x * (1.0 + at::erf(x / std::sqrt(2.0)));
    }

    static at::Tensor cutHead(const at::Tensor& t, const std::optional<std::pair<int, int>>& which, int layer)
    {
        if (!which || which->first != layer)
            return t;
        at::Tensor mask = at::zeros({1, t.size(1), 1}, at::kBool);
        mask[0][which->second][0] = true;
        return at::where(mask, t.detach(), t);
    }

    const Sae& saeOf(const std::string& kind, int layer) const
    {
        for (const auto& s : m_saes)
            if (s.kind == kind && s.layer == layer)
                return s;
        throw std::logic_error("reference: no " + kind + " at layer " + std::to_string(layer));
    }

    struct Encoding {
        at::Tensor mean, scale, z, alpha;
    };
    Encoding encode(const Sae& s, const at::Tensor& input) const
    {
        Encoding e;
        at::Tensor x = input;
        if (s.normalize) {
            e.mean = x.mean(-1, true);
            e.scale = ((x - e.mean).pow(2).sum(-1, true) / (x.size(-1) - 1)).sqrt() + 1e-5;
            x = (x - e.mean) / e.scale;
        } else {
            e.mean = at::zeros({x.size(0), 1}, at::kDouble);
            e.scale = at::ones({x.size(0), 1}, at::kDouble);
        }
        if (s.subtractPreBias)
            x = x - s.preBias;
        e.z = at::matmul(x, s.enc) + s.encBias;
        switch (s.activation) {
        case SaeActivation::ReLU: e.alpha = at::relu(e.z); break;
        case SaeActivation::JumpReLU: e.alpha = e.z * (e.z > s.threshold).to(at::kDouble); break;
        case SaeActivation::TopK: {
            auto [values, indices] = e.z.topk(std::min<std::int64_t>(s.k, e.z.size(1)), -1);
            if (s.topKReLU)
                values = at::relu(values);
            e.alpha = at::zeros_like(e.z).scatter(-1, indices, values);
            break;
        }
        }
        return e;
    }

    at::Tensor decode(const Sae& s, const at::Tensor& alpha, const Encoding& e) const
    {
        const at::Tensor out = at::matmul(alpha, s.dec) + s.preBias;
        return s.normalize ? out * e.scale + e.mean : out;
    }

    // TDB's online autoencoder: out = decode(α1) + (x − decode(α)), α1 = α with the ablations assigned.
    at::Tensor sae(SaeLocation location, int layer, const at::Tensor& x, RefLayer& L, const RefOptions& o) const
    {
        const Sae* s = nullptr;
        for (const auto& c : m_saes)
            if (c.location == location && c.layer == layer)
                s = &c;
        if (!s)
            return x;
        const Encoding e = encode(*s, x);
        auto assigned = [&](at::Tensor alpha) {
            for (const auto& a : o.ablations)
                if (a.kind == RefAblation::Latent && a.layer == layer && a.saeKind == s->kind)
                    alpha.index_put_({a.token, a.index}, a.value);
            return alpha;
        };
        if (o.constantErrorTerm) {
            // ∂out/∂x = I and ∂out/∂α1 = s·D, but the error term no longer moves with α(x), s(x).
            Encoding fixed = e;
            fixed.mean = e.mean.detach();
            fixed.scale = e.scale.detach();
            const at::Tensor alpha1 = assigned(e.alpha.detach().clone()).requires_grad_(true);
            L.saes[s->kind] = {x, alpha1, e.z, e.scale};
            return decode(*s, alpha1, fixed) + x - decode(*s, e.alpha, e).detach();
        }
        const at::Tensor alpha1 = assigned(e.alpha.clone());
        L.saes[s->kind] = {x, alpha1, e.z, e.scale};
        return decode(*s, alpha1, e) + (x - decode(*s, e.alpha, e));
    }

    Gpt2Config m_config;
    at::Tensor m_wte, m_wpe, m_lnfG, m_lnfB, m_unembed;
    std::vector<Layer> m_layers;
    std::vector<Sae> m_saes;
};

} // namespace cs::test
