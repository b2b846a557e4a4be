#include "core/analysis/converters.h"

#include "core/linalg/weight_product.h"
#include "core/util/errors.h"

#include <cmath>

namespace cs {

namespace {

// Centering projector applied to a vector: C·v = v − mean(v).
at::Tensor centered(const at::Tensor& v)
{
    return v - v.mean(-1, /*keepdim=*/true);
}

// VJP of a detached-σ layer norm (math §4.3): ∇_x[u·LN̂(x)] = (1/σ)·C·(g ⊙ u).
at::Tensor layerNormVjp(const at::Tensor& u, const at::Tensor& gain, double sigma)
{
    return centered(gain * u) / sigma;
}

const SaeRecord& saeRecordFor(const AnalysisInput& in, const NodeRef& node)
{
    const BoundSae* bound = in.saes.find(nodeKindName(node.kind), node.layer);
    const SaeRecord* rec = bound ? in.record.layers.at(static_cast<std::size_t>(node.layer)).sae(bound->location) : nullptr;
    if (!rec)
        throw InputError("node '" + node.name() + "': no " + nodeKindName(node.kind) + " autoencoder at layer " +
                         std::to_string(node.layer) + " in this run");
    return *rec;
}

// Value of head h at every key token pushed through W_O[h]: [n, d].
at::Tensor headValueWrites(const AnalysisInput& in, int layer, int head)
{
    const int dh = in.model.config.dHead();
    const LayerRecord& L = in.record.layers.at(static_cast<std::size_t>(layer));
    return at::mm(L.value.select(1, head), asFloat32(in.model.weights.layers.at(static_cast<std::size_t>(layer)).outWeight(head, dh)));
}

// The latent's decoder direction in residual space, without α and s: D_l, D_l·W_out or D_l·W_O.
at::Tensor latentResidualDirection(const AnalysisInput& in, const SaeRecord& rec, int latent)
{
    const at::Tensor dir = asFloat32(rec.bound.sae->decoder[latent]);
    const Gpt2LayerWeights& lw = in.model.weights.layers.at(static_cast<std::size_t>(rec.bound.layer));
    switch (rec.bound.location) {
    case SaeLocation::MlpPostAct: return timesWeight(dir.unsqueeze(0), lw.mlpOutWeight).squeeze(0);
    case SaeLocation::AttnZ: return timesWeight(dir.unsqueeze(0), lw.attnOutWeight).squeeze(0);
    default: return dir;
    }
}

} // namespace

void checkNodeIndex(const Gpt2Model& model, const SaeSet& saes, NodeKind kind, int layer, int index, const std::string& name)
{
    const Gpt2Config& c = model.config;
    auto bad = [&](const std::string& why) { throw InputError("node '" + name + "': " + why); };
    if (kind == NodeKind::Embedding)
        return;
    if (layer < 0 || layer >= c.nLayer)
        bad("layer " + std::to_string(layer) + " does not exist (the model has " + std::to_string(c.nLayer) + " layers)");
    std::int64_t count = 0;
    switch (kind) {
    case NodeKind::MlpNeuron: count = c.dMlp; break;
    case NodeKind::AttnHead: count = c.nHead; break;
    default: {
        const BoundSae* b = saes.find(nodeKindName(kind), layer);
        if (!b)
            bad(std::string("no ") + nodeKindName(kind) + " autoencoder is loaded for layer " + std::to_string(layer));
        count = b->sae->latentCount();
    }
    }
    if (index < 0 || index >= count)
        bad("index " + std::to_string(index) + " is out of range (0.." + std::to_string(count - 1) + ")");
}

NodeRef checkedNode(const Gpt2Model& model, const SaeSet& saes, const NodeRef& node, int tokenCount)
{
    const NodeRef r = node.resolved(tokenCount);
    checkNodeIndex(model, saes, r.kind, r.layer, r.index, node.name());
    return r;
}

NodeRef checkedNode(const AnalysisInput& in, const NodeRef& node)
{
    return checkedNode(in.model, in.saes, node, in.record.tokenCount());
}

double nodeActivation(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    switch (n.kind) {
    case NodeKind::Embedding: return 1.0;
    case NodeKind::MlpNeuron: return in.record.layers[n.layer].mlpPost[n.token][n.index].item<double>();
    case NodeKind::AttnHead: return layerProbs(in.model, in.record, n.layer).at(n.token, n.keyToken, n.index);
    default: return saeRecordFor(in, n).latents[n.token][n.index].item<double>();
    }
}

at::Tensor activationByToken(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    at::NoGradGuard noGrad;
    const std::int64_t tokens = in.record.tokenCount();
    switch (n.kind) {
    case NodeKind::Embedding: return at::ones({tokens}, at::kDouble);
    case NodeKind::MlpNeuron: return in.record.layers[n.layer].mlpPost.detach().select(1, n.index).to(at::kDouble);
    // Causal: P[t,k,h] is 0 for t < k.
    case NodeKind::AttnHead: return layerProbs(in.model, in.record, n.layer).head(n.index).select(1, n.keyToken).to(at::kDouble);
    default: return saeRecordFor(in, n).latents.detach().select(1, n.index).to(at::kDouble);
    }
}

at::Tensor residualWritePerUnit(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    at::NoGradGuard noGrad;
    switch (n.kind) {
    case NodeKind::Embedding: return in.record.embeddings[n.token].detach();
    case NodeKind::MlpNeuron: return asFloat32(in.model.weights.layers[n.layer].mlpOutWeight[n.index]);
    case NodeKind::AttnHead: return headValueWrites(in, n.layer, n.index)[n.keyToken].detach();
    default: {
        const SaeRecord& rec = saeRecordFor(in, n);
        const double scale = rec.encoding.scale[n.token][0].item<double>();
        return latentResidualDirection(in, rec, n.index) * scale;
    }
    }
}

at::Tensor residualWrite(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    if (n.kind == NodeKind::Embedding)
        return residualWritePerUnit(in, n);
    at::NoGradGuard noGrad;
    return residualWritePerUnit(in, n) * nodeActivation(in, n);
}

at::Tensor tokenWrite(const Gpt2Model& model, const at::Tensor& writes)
{
    at::NoGradGuard noGrad;
    const Gpt2Weights& w = model.weights;
    // (w ⊙ g_f)·Uᵀ equals w·U_g with U_g = diag(g_f)·U (math §1.6) without materializing U_g.
    const bool single = writes.dim() == 1;
    const at::Tensor m = single ? writes.unsqueeze(0) : writes;
    const at::Tensor z = timesWeightT(m * w.lnFinalGain, w.unembedding);
    const at::Tensor out = z - z.mean(1, /*keepdim=*/true);
    return single ? out.squeeze(0) : out;
}

at::Tensor tokenRead(const Gpt2Model& model, const at::Tensor& reads)
{
    at::NoGradGuard noGrad;
    const bool single = reads.dim() == 1;
    const at::Tensor m = single ? reads.unsqueeze(0) : reads;
    const at::Tensor out = timesWeightT(m, model.weights.tokenEmbedding);
    return single ? out.squeeze(0) : out;
}

NeuronTokenScan scanNeuronWriteTokens(const Gpt2Model& model, int layer, int k, int blockSize)
{
    const Gpt2Config& c = model.config;
    if (layer < 0 || layer >= c.nLayer)
        throw InputError("scan: layer " + std::to_string(layer) + " does not exist");
    if (k < 1 || k > c.vocabSize || blockSize < 1)
        throw InputError("scan: k must be in 1.." + std::to_string(c.vocabSize) + " and the block size positive");
    at::NoGradGuard noGrad;
    const at::Tensor wOut = model.weights.layers[layer].mlpOutWeight; // [F, d]
    const at::Tensor gain = model.weights.lnFinalGain;
    const at::Tensor unembedding = model.weights.unembedding;        // [V, d]
    // Each row's vocabulary mean is (w ⊙ g)·ū with ū the mean unembedding row: one mat-vec, not [F × V].
    const at::Tensor meanRow = weightMeanRow(unembedding);
    NeuronTokenScan out;
    const std::int64_t F = wOut.size(0);
    out.topIds = at::empty({F, k}, at::kLong);
    out.topValues = at::empty({F, k});
    out.bottomIds = at::empty({F, k}, at::kLong);
    out.bottomValues = at::empty({F, k});
    for (std::int64_t start = 0; start < F; start += blockSize) {
        const std::int64_t m = std::min<std::int64_t>(blockSize, F - start);
        const at::Tensor w = asFloat32(wOut.narrow(0, start, m)) * gain; // [m, d]
        const at::Tensor scores = timesWeightT(w, unembedding);          // [m, V]
        const at::Tensor mean = at::mv(w, meanRow).unsqueeze(1);       // [m, 1]
        const auto [topV, topI] = scores.topk(k, 1, true, true);
        const auto [botV, botI] = scores.topk(k, 1, false, true);
        out.topValues.narrow(0, start, m).copy_(topV - mean);
        out.topIds.narrow(0, start, m).copy_(topI);
        out.bottomValues.narrow(0, start, m).copy_(botV - mean);
        out.bottomIds.narrow(0, start, m).copy_(botI);
    }
    return out;
}

at::Tensor saeEncoderGradient(const SparseAutoencoder& sae, const at::Tensor& x, int latent)
{
    at::NoGradGuard noGrad;
    const at::Tensor u = sae.encoder.select(1, latent).to(computeDtype(sae.encoder));
    if (!sae.normalizeInput)
        return x.dim() == 1 ? u.clone() : u.unsqueeze(0).expand({x.size(0), u.size(0)}).clone();
    // x̃ = x_c / S with x_c = x − μ, s = sqrt(Σx_c²/(m−1)), S = s + 1e-5 (D2). Its VJP, row by row:
    //   ∇_x[u·x̃] = C·u / S − (u·x_c)·x_c / (S²·(m−1)·s)
    // computed in float64 so the batched rows equal the single-row result to rounding.
    const at::Tensor rows = x.detach().reshape({-1, x.size(-1)}).to(at::kDouble);
    const at::Tensor xc = rows - rows.mean(-1, /*keepdim=*/true);
    const double m = static_cast<double>(x.size(-1));
    const at::Tensor s = (xc.pow(2).sum(-1, /*keepdim=*/true) / (m - 1.0)).sqrt();
    const at::Tensor S = s + 1e-5;
    const at::Tensor ud = u.to(at::kDouble);
    const at::Tensor uc = ud - ud.mean();
    const at::Tensor dots = at::mv(xc, ud).unsqueeze(1);
    const at::Tensor g = (uc.unsqueeze(0) / S - xc * (dots / (S * S * (m - 1.0) * s))).to(u.scalar_type());
    return x.dim() == 1 ? g.squeeze(0) : g;
}

NodeReads residualReads(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    at::NoGradGuard noGrad;
    NodeReads out;
    if (n.kind == NodeKind::Embedding)
        return out;
    const Gpt2Config& c = in.model.config;
    const Gpt2LayerWeights& lw = in.model.weights.layers[n.layer];
    const LayerRecord& L = in.record.layers[n.layer];

    if (n.kind == NodeKind::AttnHead) {
        // D1: S[q,k,h] = scale·Q[q,h]·K[k,h], Q and K affine in LN̂1 of their own token's residual.
        const double scale = attentionScale(c, n.layer);
        const int dh = c.dHead();
        const at::Tensor qVec = L.query[n.token][n.index].detach();
        const at::Tensor kVec = L.key[n.keyToken][n.index].detach();
        out.readQ = layerNormVjp(at::mv(asFloat32(lw.queryWeight(n.index, dh)), kVec) * scale, lw.ln1Gain,
                                 L.ln1Sigma[n.token].item<double>());
        out.readK = layerNormVjp(at::mv(asFloat32(lw.keyWeight(n.index, dh)), qVec) * scale, lw.ln1Gain,
                                 L.ln1Sigma[n.keyToken].item<double>());
        return out;
    }
    if (n.kind == NodeKind::MlpNeuron) {
        out.read = layerNormVjp(asFloat32(lw.mlpInWeight.select(1, n.index)), lw.ln2Gain, L.ln2Sigma[n.token].item<double>());
        return out;
    }

    const SaeRecord& rec = saeRecordFor(in, n);
    const SparseAutoencoder& sae = *rec.bound.sae;
    const double sigma2 = L.ln2Sigma[n.token].item<double>();
    const double sigma1 = L.ln1Sigma[n.token].item<double>();
    switch (rec.bound.location) {
    case SaeLocation::MlpPostAct: {
        const at::Tensor u = saeEncoderGradient(sae, rec.input[n.token], n.index);
        out.read = layerNormVjp(weightTimesVector(lw.mlpInWeight, mlpActivationDerivative(L.mlpPre[n.token], c.activation) * u),
                                lw.ln2Gain, sigma2);
        break;
    }
    case SaeLocation::ResidDeltaMlp: {
        const at::Tensor u = saeEncoderGradient(sae, rec.input[n.token], n.index);
        const at::Tensor back = weightTimesVector(lw.mlpOutWeight, u);
        out.read = layerNormVjp(weightTimesVector(lw.mlpInWeight, mlpActivationDerivative(L.mlpPre[n.token], c.activation) * back),
                                lw.ln2Gain, sigma2);
        break;
    }
    case SaeLocation::ResidDeltaAttn:
    case SaeLocation::AttnZ: {
        // Math §5.3: attention reconstituted from this token's residual alone, so it attends only to
        // itself (P ≡ 1) and Q, K drop out; the normalization (D2) is evaluated at that single-token input.
        const std::int64_t d = c.dModel;
        const at::Tensor x1 = layerNorm(L.residIn[n.token].detach(), lw.ln1Gain, lw.ln1Bias, c.layerNormEps, nullptr);
        const at::Tensor wV = asFloat32(lw.attnQkvWeight.narrow(1, 2 * d, d)); // [d, d]: small next to the vocabulary
        const at::Tensor z = at::mv(wV.t(), x1) + lw.attnQkvBias.narrow(0, 2 * d, d);
        if (rec.bound.location == SaeLocation::AttnZ) {
            const at::Tensor u = saeEncoderGradient(sae, z, n.index);
            out.read = layerNormVjp(at::mv(wV, u), lw.ln1Gain, sigma1);
        } else {
            const at::Tensor a = timesWeight(z.unsqueeze(0), lw.attnOutWeight).squeeze(0) + lw.attnOutBias;
            const at::Tensor u = saeEncoderGradient(sae, a, n.index);
            out.read = layerNormVjp(at::mv(wV, weightTimesVector(lw.attnOutWeight, u)), lw.ln1Gain, sigma1);
        }
        break;
    }
    case SaeLocation::ResidPre:
    case SaeLocation::ResidMid:
    case SaeLocation::ResidPost:
        // D5: no layer norm between the residual and the encoder.
        out.read = saeEncoderGradient(sae, rec.input[n.token], n.index);
        break;
    }
    return out;
}

std::optional<at::Tensor> pairAttribution(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    if (n.kind != NodeKind::AttnSaeLatent)
        throw InputError("node '" + node.name() + "': token-pair attribution exists only for attention-autoencoder latents");
    at::NoGradGuard noGrad;
    const SaeRecord& rec = saeRecordFor(in, n);
    if (!(rec.latents[n.token][n.index].item<float>() > 0.0f))
        return std::nullopt; // D4: an inactive latent has no attribution, not zeros
    const Gpt2Config& c = in.model.config;
    const LayerRecord& L = in.record.layers[n.layer];
    const int H = c.nHead, dh = c.dHead();
    const std::int64_t q = n.token;
    // ∂z_l/∂(autoencoder input at q); the input is linear in P[q,·,·], so the chain rule gives
    // Σ_h P[q,k,h]·∂z_l/∂P[q,k,h] = Σ_h P[q,k,h]·V[k,h]·(∂z_l/∂Z[q,h])  (Z[q,h] = Σ_k P[q,k,h]V[k,h]).
    const at::Tensor u = saeEncoderGradient(*rec.bound.sae, rec.input[q], n.index);
    at::Tensor uPerHead; // ∂z_l/∂Z[q,h], [H, dh]
    if (rec.bound.location == SaeLocation::AttnZ)
        uPerHead = u.view({H, dh});
    else
        uPerHead = weightTimesVector(in.model.weights.layers[n.layer].attnOutWeight, u).view({H, dh}); // W_O·u
    const at::Tensor values = L.value.narrow(0, 0, q + 1).detach();          // [q+1, H, dh]
    const at::Tensor perHead = (values * uPerHead.unsqueeze(0)).sum(-1);      // [q+1, H]
    const at::Tensor probs = layerProbs(in.model, in.record, n.layer).rows(q, 1)[0].narrow(0, 0, q + 1); // [q+1, H]
    return (probs * perHead).sum(-1);
}

PairAttributionMap pairAttributionMap(const AnalysisInput& in, const NodeRef& node)
{
    const NodeRef n = checkedNode(in, node);
    if (n.kind != NodeKind::AttnSaeLatent)
        throw InputError("node '" + node.name() + "': token-pair attribution exists only for attention-autoencoder latents");
    at::NoGradGuard noGrad;
    const SaeRecord& rec = saeRecordFor(in, n);
    const Gpt2Config& c = in.model.config;
    const LayerRecord& L = in.record.layers[n.layer];
    const std::int64_t tokens = in.record.tokenCount();
    const int H = c.nHead, dh = c.dHead();
    PairAttributionMap out;
    out.active = rec.latents.select(1, n.index).detach() > 0;
    out.values = at::zeros({tokens, tokens}, L.value.options());
    const at::Tensor rows = out.active.nonzero().flatten(); // the query tokens where α > 0 (D4)
    if (rows.numel() == 0)
        return out;
    // Same chain rule as pairAttribution, for all active rows: u_q = ∂z_l/∂Z[q] ([m, H·dh]), then per
    // head (u_q,h · V[k,h]) ⊙ P[q,k,h], summed over heads. Entries above the diagonal have P = 0.
    const at::Tensor u = saeEncoderGradient(*rec.bound.sae, rec.input.detach().index_select(0, rows), n.index);
    const at::Tensor uPerHead = rec.bound.location == SaeLocation::AttnZ
                                    ? u
                                    : timesWeightT(u, in.model.weights.layers[n.layer].attnOutWeight); // (W_O·u_q)ᵀ
    const at::Tensor probs = layerProbs(in.model, in.record, n.layer).rowsAt(rows); // [m, k, H]
    at::Tensor acc = at::zeros({rows.size(0), tokens}, L.value.options());
    for (int h = 0; h < H; ++h) {
        const at::Tensor vh = L.value.detach().select(1, h);                   // [k, dh]
        const at::Tensor uh = uPerHead.narrow(1, static_cast<std::int64_t>(h) * dh, dh); // [m, dh]
        acc.add_(at::mm(uh, vh.t()) * probs.select(2, h));
    }
    out.values.index_copy_(0, rows, acc);
    return out;
}

HeadMaps headMaps(const AnalysisInput& in, int layer, int head)
{
    const Gpt2Config& c = in.model.config;
    if (layer < 0 || layer >= c.nLayer || head < 0 || head >= c.nHead)
        throw InputError("head " + std::to_string(layer) + "." + std::to_string(head) + " does not exist");
    at::NoGradGuard noGrad;
    const at::Tensor probs = layerProbs(in.model, in.record, layer).head(head).contiguous(); // [q, k]
    const at::Tensor norms = headValueWrites(in, layer, head).norm(2, -1);                         // [k]
    return {probs, probs * norms.unsqueeze(0)};
}

TopTokens topTokens(const Gpt2Tokenizer& tokenizer, const at::Tensor& scores, int k)
{
    TopTokens out;
    const at::Tensor s = scores.detach().to(at::kFloat).contiguous();
    const std::int64_t kk = std::min<std::int64_t>(std::max(k, 0), s.numel());
    if (kk == 0)
        return out;
    auto fill = [&](bool largest, std::vector<TokenScore>& list) {
        const auto [values, ids] = s.topk(kk, 0, largest, /*sorted=*/true);
        const float* v = values.data_ptr<float>();
        const std::int64_t* id = ids.data_ptr<std::int64_t>();
        for (std::int64_t i = 0; i < kk; ++i) {
            const int tokenId = static_cast<int>(id[i]);
            list.push_back({tokenId, tokenizer.hasId(tokenId) ? tokenizer.tokenString(tokenId) : std::string(), v[i]});
        }
    };
    fill(true, out.top);
    fill(false, out.bottom);
    return out;
}

LensTopTokens lensTopTokens(const Gpt2Model& model, const at::Tensor& writes, const at::Tensor& reads, int k)
{
    at::NoGradGuard noGrad;
    const Gpt2Tokenizer& tokenizer = *model.tokenizer;
    LensTopTokens out;
    if (!model.embeddingRanker || !model.unembeddingRanker) {
        for (std::int64_t i = 0; i < writes.size(0); ++i)
            out.writes.push_back(topTokens(tokenizer, tokenWrite(model, writes[i]), k));
        for (std::int64_t i = 0; i < reads.size(0); ++i)
            out.reads.push_back(topTokens(tokenizer, tokenRead(model, reads[i]), k));
        return out;
    }
    const auto lists = [&](const RankedRows::Row& row, double shift) {
        TopTokens t;
        const auto fill = [&](const std::vector<std::int64_t>& ids, const std::vector<float>& values, std::vector<TokenScore>& list) {
            for (std::size_t i = 0; i < ids.size(); ++i) {
                const int id = static_cast<int>(ids[i]);
                list.push_back({id, tokenizer.hasId(id) ? tokenizer.tokenString(id) : std::string(),
                                static_cast<float>(values[i] - shift)});
            }
        };
        fill(row.topIds, row.topValues, t.top);
        fill(row.bottomIds, row.bottomValues, t.bottom);
        return t;
    };
    // (w ⊙ g_f)·U_j minus its mean over j, which is (w ⊙ g_f)·ū: ranking needs no centering.
    const at::Tensor gained = writes.to(at::kFloat) * model.weights.lnFinalGain;
    const at::Tensor shifts = at::mv(gained, model.unembeddingRanker->meanRow()).to(at::kDouble).contiguous();
    const auto addWrites = [&](const RankedRows& ranked, std::size_t first) {
        for (std::int64_t i = 0; i < writes.size(0); ++i)
            out.writes.push_back(lists(ranked.rows[first + static_cast<std::size_t>(i)], shifts[i].item<double>()));
    };
    const auto addReads = [&](const RankedRows& ranked, std::size_t first) {
        for (std::int64_t i = 0; i < reads.size(0); ++i)
            out.reads.push_back(lists(ranked.rows[first + static_cast<std::size_t>(i)], 0.0));
    };
    if (model.embeddingRanker == model.unembeddingRanker) {
        const RankedRows ranked = model.embeddingRanker->rank(at::cat({gained, reads.to(at::kFloat)}, 0), k);
        addWrites(ranked, 0);
        addReads(ranked, static_cast<std::size_t>(writes.size(0)));
    } else {
        addWrites(model.unembeddingRanker->rank(gained, k), 0);
        addReads(model.embeddingRanker->rank(reads, k), 0);
    }
    return out;
}

TopTokens scaledTopTokens(const TopTokens& t, double factor)
{
    TopTokens out;
    const auto scaled = [&](const std::vector<TokenScore>& list) {
        std::vector<TokenScore> s = list;
        for (TokenScore& entry : s)
            entry.value = static_cast<float>(entry.value * factor);
        return s;
    };
    out.top = scaled(factor < 0 ? t.bottom : t.top);
    out.bottom = scaled(factor < 0 ? t.top : t.bottom);
    return out;
}

} // namespace cs
