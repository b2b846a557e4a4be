// Interventions (interventions-math §10, product.md §5.1) against an independent float64 model
// (reference_model.h: its own forward pass, clone-and-assign ablations, TDB's literal autoencoder graph,
// σ detached by hand, plain autograd). Every case computes the expected value there, not with the
// core's own formulas.
// Tolerances: 1e-6 where the same float32 computation is repeated (ablating to the current value);
// 2e-5 absolute between float32 and float64 (the tiny model's values are O(1), sums over ≤ 3k terms).

#include "analysis_fixture.h"
#include "reference_model.h"

#include "core/analysis/analysis.h"
#include "core/analysis/objective.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"

#include <torch/csrc/autograd/autograd.h>

#include <QTest>

#include <functional>
#include <set>

using namespace cs;
using test::AnalysisFixture;
using test::RefAblation;
using test::ReferenceModel;
using test::RefOptions;
using test::RefRecord;

namespace {

constexpr int kMary = 5335, kJohn = 1757, kDrink = 4144, kStore = 3650;
constexpr double kTol = 2e-5;

QStringList strings(std::initializer_list<const char*> list)
{
    QStringList out;
    for (const char* s : list)
        out << QString::fromUtf8(s);
    return out;
}

// The reference's effects on a scalar O: G at the residual R the objective reads, direct effects of the
// nodes upstream of R (the caller says which, per math §10.3's order), act×grad of every node.
struct RefEffects {
    double objective = 0;
    at::Tensor G, embDirect, embTotal;
    std::vector<at::Tensor> neuronDirect, neuronTotal, headDirect, headTotal;
    std::map<std::pair<std::string, int>, std::pair<at::Tensor, at::Tensor>> latents; // (kind, layer) → (direct, total)
};

// Which nodes are upstream of the residual an objective reads (math §10.3's order), written out per
// case: "*" everything; else "layer:kinds|layer:kinds", kinds among mlp, attn, mlp_sae, attn_sae,
// resid_sae or "*" (e.g. a neuron of layer 1 reads resid_post_attn(1): "0:*|1:attn,attn_sae,resid_sae",
// the fixture's layer-1 residual autoencoder being on resid_pre). The embedding is always upstream.
bool isUpstream(const std::string& spec, const std::string& kind, int layer)
{
    if (spec == "*")
        return true;
    for (const QString& part : QString::fromStdString(spec).split(u'|', Qt::SkipEmptyParts)) {
        const QStringList lk = part.split(u':');
        if (lk[0].toInt() != layer)
            continue;
        for (const QString& k : lk[1].split(u','))
            if (k == u"*" || k.toStdString() == kind)
                return true;
    }
    return false;
}

RefEffects refEffects(const ReferenceModel& ref, const RefRecord& rec, const at::Tensor& O, const at::Tensor& R, const std::string& upstream,
                      int nLayer, int nHead)
{
    std::vector<at::Tensor> inputs{R, rec.embeddings};
    for (const auto& L : rec.layers) {
        inputs.push_back(L.mlpPost);
        inputs.push_back(L.probs);
        for (const auto& [kind, s] : L.saes)
            inputs.push_back(s.latents);
    }
    const auto grads = torch::autograd::grad({O}, inputs, {}, true, false, true);
    auto g = [&](std::size_t i) { return grads[i].defined() ? grads[i] : at::zeros_like(inputs[i]); };
    RefEffects e;
    e.objective = O.item<double>();
    e.G = g(0);
    const at::Tensor r0 = rec.embeddings.detach();
    e.embDirect = (r0 * e.G).sum(-1);
    e.embTotal = (r0 * g(1)).sum(-1);
    std::size_t i = 2;
    for (int l = 0; l < nLayer; ++l) {
        const auto& L = rec.layers[static_cast<std::size_t>(l)];
        const bool attnUp = isUpstream(upstream, "attn", l);
        const bool mlpUp = isUpstream(upstream, "mlp", l);
        const at::Tensor a = L.mlpPost.detach();
        e.neuronTotal.push_back(a * g(i++));
        e.neuronDirect.push_back(mlpUp ? a * at::matmul(e.G, ref.mlpOutWeight(l).t()) : at::zeros_like(a));
        const at::Tensor P = L.probs.detach();
        e.headTotal.push_back(P * g(i++));
        at::Tensor direct = at::zeros_like(P);
        if (attnUp) {
            for (int h = 0; h < nHead; ++h) {
                const at::Tensor vwo = at::matmul(L.value.detach().select(1, h), ref.outWeight(l, h)); // [k, d]
                direct.select(2, h).copy_(P.select(2, h) * at::matmul(e.G, vwo.t()));
            }
        }
        e.headDirect.push_back(direct);
        for (const auto& [kind, s] : L.saes) {
            const at::Tensor alpha = s.latents.detach();
            const at::Tensor total = alpha * g(i++);
            const bool up2 = isUpstream(upstream, kind, l);
            at::Tensor dir = at::zeros_like(alpha);
            if (up2) {
                const std::int64_t N = alpha.size(1);
                std::vector<at::Tensor> rows;
                for (std::int64_t k = 0; k < N; ++k)
                    rows.push_back(ref.latentDirection(kind, l, static_cast<int>(k)));
                const at::Tensor D = at::stack(rows); // [N, d]
                dir = alpha * s.scale.detach() * at::matmul(e.G, D.t());
            }
            e.latents[{kind, l}] = {dir, total};
        }
    }
    return e;
}

// Compares every metric tensor, naming the first that differs.
bool sameTensor(const char* what, int layer, const at::Tensor& a, const at::Tensor& e, double tol, std::string* failure)
{
    if (a.sizes() != e.sizes()) {
        *failure = std::string(what) + " layer " + std::to_string(layer) + ": shapes differ";
        return false;
    }
    const double d = test::maxAbsDiff(a, e);
    if (d <= tol)
        return true;
    *failure = std::string(what) + " layer " + std::to_string(layer) + ": max |difference| " + std::to_string(d) + " (largest |expected| " +
               std::to_string(e.abs().max().item<double>()) + ")";
    return false;
}

std::string effectsDiffer(const Effects& e, const RefEffects& r, double tol)
{
    std::string f;
    if (!e.hasObjective)
        return "no objective";
    if (std::abs(e.objective - r.objective) >= tol)
        return "objective " + std::to_string(e.objective) + " vs " + std::to_string(r.objective);
    if (!sameTensor("G", -1, e.residualGradient, r.G, tol, &f) || !sameTensor("embedding direct", -1, e.embeddingDirect, r.embDirect, tol, &f) ||
        !sameTensor("embedding total", -1, e.embeddingTotal, r.embTotal, tol, &f))
        return f;
    for (std::size_t l = 0; l < e.layers.size(); ++l) {
        const LayerEffects& le = e.layers[l];
        const int li = static_cast<int>(l);
        if (!sameTensor("neuron direct", li, le.neurons(Metric::DirectEffect), r.neuronDirect[l], tol, &f) ||
            !sameTensor("neuron total", li, le.neurons(Metric::TotalEffect), r.neuronTotal[l], tol, &f) ||
            !sameTensor("head direct", li, le.heads(Metric::DirectEffect), r.headDirect[l], tol, &f) ||
            !sameTensor("head total", li, le.heads(Metric::TotalEffect), r.headTotal[l], tol, &f))
            return f;
        for (const auto& lat : le.latents) {
            const auto it = r.latents.find({lat.kind, li});
            if (it == r.latents.end())
                return lat.kind + " missing in the reference";
            if (!sameTensor((lat.kind + " direct").c_str(), li, lat.dense(Metric::DirectEffect), it->second.first, tol, &f) ||
                !sameTensor((lat.kind + " total").c_str(), li, lat.dense(Metric::TotalEffect), it->second.second, tol, &f))
                return f;
        }
    }
    return {};
}

#define COMPARE_EFFECTS(effects, expected, tol)                                                                              \
    do {                                                                                                                      \
        const std::string why_ = effectsDiffer((effects), (expected), (tol));                                                 \
        QVERIFY2(why_.empty(), why_.c_str());                                                                                 \
    } while (false)

} // namespace

class TestInterventions : public QObject {
    Q_OBJECT

    std::unique_ptr<AnalysisFixture> m_fx;
    std::unique_ptr<ReferenceModel> m_ref;
    std::vector<int> m_ids;
    int m_n = 0;

    Analysis analyze(AnalysisQuery q) const
    {
        if (q.prompt.empty())
            q.prompt = test::kPrompt.toStdString();
        return analyzePrompt(*m_fx->model, m_fx->saes, q);
    }
    static AnalysisQuery logitQuery(std::vector<std::string> ablations = {})
    {
        AnalysisQuery q;
        q.objective.targets = {" Mary"};
        q.objective.distractors = {" John"};
        for (const auto& a : ablations)
            q.ablations.push_back(AblationSpec::parse(a));
        return q;
    }
    AnalysisInput input(const PromptRun& run) const { return {*m_fx->model, m_fx->saes, run.record}; }
    // Every position's logits (analyzePrompt records none: it needs one row).
    at::Tensor logitsOf(const ActivationRecord& record) const
    {
        return at::mm(record.lnFinalOut.detach(), m_fx->model->weights.unembedding.t());
    }

    // The most active latent of an autoencoder at token t in a plain run.
    int activeLatent(const char* kind, int layer, int t) const
    {
        const Analysis a = analyze(AnalysisQuery{});
        const SaeRecord* s = nullptr;
        for (const auto& r : a.left.run.record.layers[layer].saes)
            if (std::string(saeKindName(r.bound.location)) == kind)
                s = &r;
        return static_cast<int>(s->latents[t].argmax().item<std::int64_t>());
    }

    // "kind:layer:*@t..." → the most active latent of that autoencoder at token t.
    std::string withActiveLatent(std::string name) const
    {
        const auto star = name.find(":*@");
        if (star == std::string::npos)
            return name;
        const std::string kind = name.substr(0, name.find(':'));
        const int layer = std::stoi(name.substr(name.find(':') + 1));
        const int t = std::stoi(name.substr(star + 3));
        return name.substr(0, star) + ":" + std::to_string(activeLatent(kind.c_str(), layer, t < 0 ? t + m_n : t)) + name.substr(star + 2);
    }

    static RefAblation refAblation(const AblationSpec& a, int n)
    {
        RefAblation r;
        r.layer = a.layer;
        r.index = a.index;
        r.token = *a.token < 0 ? *a.token + n : *a.token;
        r.value = a.value;
        if (a.kind == NodeKind::MlpNeuron) {
            r.kind = RefAblation::Neuron;
        } else if (a.kind == NodeKind::AttnHead) {
            r.kind = RefAblation::Prob;
            r.key = a.keyToken ? (*a.keyToken < 0 ? *a.keyToken + n : *a.keyToken) : 0;
        } else {
            r.kind = RefAblation::Latent;
            r.saeKind = nodeKindName(a.kind);
        }
        return r;
    }
    // The reference's ablations for a list of specs: rows expanded to their causal keys, @* to every token.
    std::vector<RefAblation> refAblations(const std::vector<std::string>& specs) const
    {
        std::vector<RefAblation> out;
        for (const auto& text : specs) {
            AblationSpec a = AblationSpec::parse(text);
            std::vector<int> tokens;
            if (a.token)
                tokens.push_back(*a.token < 0 ? *a.token + m_n : *a.token);
            else
                for (int t = 0; t < m_n; ++t)
                    tokens.push_back(t);
            for (int t : tokens) {
                a.token = t;
                if (a.kind == NodeKind::AttnHead && !a.keyToken) {
                    for (int k = 0; k <= t; ++k) {
                        AblationSpec pair = a;
                        pair.keyToken = k;
                        out.push_back(refAblation(pair, m_n));
                    }
                } else {
                    out.push_back(refAblation(a, m_n));
                }
            }
        }
        return out;
    }

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        m_fx = std::make_unique<AnalysisFixture>();
        m_ref = std::make_unique<ReferenceModel>(*m_fx->model, m_fx->saes);
        m_ids = AnalysisFixture::promptIds(0);
        m_n = static_cast<int>(m_ids.size());
        QCOMPARE(m_fx->model->tokenizer->encode(test::kPrompt.toStdString()), m_ids);
        // The reference reproduces the production forward pass (same logits within float32 error).
        const RefRecord rec = m_ref->forward(m_ids);
        const Analysis a = analyze(AnalysisQuery{});
        CS_COMPARE_TENSORS(logitsOf(a.left.run.record), rec.logits, kTol);
    }

    // ---- Ablations ----------------------------------------------------------------------------

    void ablatingToTheCurrentValueChangesNothing_data()
    {
        QTest::addColumn<QString>("node");
        QTest::addRow("neuron") << "mlp:1:7@-1";
        QTest::addRow("head pair") << "attn:0:3@5,2";
        QTest::addRow("head row at query 0 (P = 1)") << "attn:1:2@0";
        QTest::addRow("mlp_post_act latent") << "mlp_sae:1:*@-1";
        QTest::addRow("attention latent, TopK normalized") << "attn_sae:0:*@7";
        QTest::addRow("attention latent, ReLU") << "attn_sae:1:*@-1";
        QTest::addRow("residual latent, TopK normalized") << "resid_sae:1:*@7";
        QTest::addRow("residual latent, resid_post") << "resid_sae:0:*@-1";
    }
    void ablatingToTheCurrentValueChangesNothing()
    {
        QFETCH(QString, node);
        std::string name = node.toStdString();
        const Analysis plain = analyze(logitQuery());
        if (const auto star = name.find(":*@"); star != std::string::npos) {
            // The latent index is the most active one at that token (an active latent is the hard case).
            const std::string kind = name.substr(0, name.find(':'));
            const int layer = name[name.find(':') + 1] - '0';
            const int t = std::stoi(name.substr(name.find('@') + 1));
            name = kind + ":" + std::to_string(layer) + ":" + std::to_string(activeLatent(kind.c_str(), layer, t < 0 ? t + m_n : t)) +
                   name.substr(name.find('@'));
        }
        const AblationSpec spec = AblationSpec::parse(name);
        NodeRef ref;
        ref.kind = spec.kind;
        ref.layer = spec.layer;
        ref.index = spec.index;
        ref.token = *spec.token;
        ref.keyToken = spec.keyToken.value_or(0);
        const double current = nodeActivation(input(plain.left.run), ref.resolved(m_n));
        QVERIFY2(spec.kind == NodeKind::AttnHead || std::abs(current) > 1e-3, "the node must be active for the test to mean something");
        AblationSpec own = spec;
        own.value = current;
        AnalysisQuery q = logitQuery();
        q.ablations = {own};
        const Analysis a = analyze(q);
        CS_COMPARE_TENSORS(logitsOf(a.left.run.record), logitsOf(plain.left.run.record), 1e-6);
        QVERIFY(std::abs(a.left.run.effects.objective - plain.left.run.effects.objective) < 1e-6);
        // Both figures are reported: the baseline is the plain run.
        QVERIFY(a.left.baseline.has_value());
        CS_COMPARE_TENSORS(logitsOf(a.left.baseline->record), logitsOf(plain.left.run.record), 0.0);
    }

    void ablationEqualsAHandZeroedForward_data()
    {
        QTest::addColumn<QStringList>("ablations");
        QTest::addRow("neuron to 0") << QStringList{QStringLiteral("mlp:0:91@-1")};
        QTest::addRow("neuron to 0.3 at every token") << QStringList{QStringLiteral("mlp:1:7@*=0.3")};
        QTest::addRow("head row (causal keys, D11)") << QStringList{QStringLiteral("attn:1:0@-1")};
        QTest::addRow("head row to 0.05") << QStringList{QStringLiteral("attn:0:2@9=0.05")};
        QTest::addRow("one probability") << QStringList{QStringLiteral("attn:1:3@-1,1")};
        QTest::addRow("every query row") << QStringList{QStringLiteral("attn:0:1@*")};
        QTest::addRow("MLP latent (mlp_post_act)") << QStringList{QStringLiteral("mlp_sae:1:5@-1=2")};
        QTest::addRow("MLP latent (resid_delta_mlp)") << QStringList{QStringLiteral("mlp_sae:0:10@-1=1.5")};
        QTest::addRow("attention latent TopK normalized") << QStringList{QStringLiteral("attn_sae:0:3@*=0.7")};
        QTest::addRow("residual latent (resid_pre, TopK)") << QStringList{QStringLiteral("resid_sae:1:2@-1=1")};
        QTest::addRow("several at once") << QStringList{QStringLiteral("mlp:0:91@-1"), QStringLiteral("attn:1:0@-1"),
                                                        QStringLiteral("attn_sae:1:4@*=0.5"), QStringLiteral("resid_sae:0:1@3=2")};
    }
    void ablationEqualsAHandZeroedForward()
    {
        QFETCH(QStringList, ablations);
        std::vector<std::string> specs;
        for (const QString& s : ablations)
            specs.push_back(s.toStdString());
        const Analysis a = analyze(logitQuery(specs));
        RefOptions o;
        o.ablations = refAblations(specs);
        const RefRecord rec = m_ref->forward(m_ids, o);
        CS_COMPARE_TENSORS(logitsOf(a.left.run.record), rec.logits, kTol);
        // The ablation did something (so the comparison above is not of two unchanged runs).
        QVERIFY(test::maxAbsDiff(logitsOf(a.left.run.record), logitsOf(a.left.baseline->record)) > 100 * kTol);
        // The record holds the ablated values (its probabilities are recomputed where they are read).
        for (const auto& r : o.ablations) {
            const LayerRecord& L = a.left.run.record.layers[r.layer];
            if (r.kind == RefAblation::Neuron)
                QCOMPARE(L.mlpPost[r.token][r.index].item<float>(), float(r.value));
            else if (r.kind == RefAblation::Prob)
                QCOMPARE(float(layerProbs(*m_fx->model, a.left.run.record, r.layer).at(r.token, r.key, r.index)), float(r.value));
        }
    }

    void ablatedEffectsEqualIndependentAutograd_data()
    {
        QTest::addColumn<QStringList>("ablations");
        QTest::addRow("neuron and head row") << QStringList{QStringLiteral("mlp:0:91@-1"), QStringLiteral("attn:1:0@-1")};
        // "*" as the latent index: the most active latent at that token (ablating an active latent is
        // where the error term's ∂α/∂x matters).
        QTest::addRow("MLP latents (error term kept)") << strings({"mlp_sae:1:*@-1=2", "mlp_sae:0:*@9=0"});
        QTest::addRow("normalized attention latent") << strings({"attn_sae:0:*@-1=0.7"});
        QTest::addRow("residual latents") << strings({"resid_sae:1:*@-1=1", "resid_sae:0:*@5=0.5"});
    }
    void ablatedEffectsEqualIndependentAutograd()
    {
        QFETCH(QStringList, ablations);
        std::vector<std::string> specs;
        for (const QString& s : ablations)
            specs.push_back(withActiveLatent(s.toStdString()));
        const Analysis a = analyze(logitQuery(specs));
        RefOptions o;
        o.ablations = refAblations(specs);
        const RefRecord rec = m_ref->forward(m_ids, o);
        const at::Tensor O = m_ref->logitObjective(rec, ReferenceModel::Logit::Diff, {kMary}, {kJohn});
        const int L = m_fx->model->config.nLayer;
        const RefEffects expected = refEffects(*m_ref, rec, O, rec.layers.back().residOut, "*", L, m_fx->model->config.nHead);
        COMPARE_EFFECTS(a.left.run.effects, expected, kTol);
        // An ablated latent's error term carries ∂α/∂x: the variant without it gives other totals.
        if (ablations.join(QString()).contains(QStringLiteral("_sae"))) {
            RefOptions constant = o;
            constant.constantErrorTerm = true;
            const RefRecord rc = m_ref->forward(m_ids, constant);
            const at::Tensor Oc = m_ref->logitObjective(rc, ReferenceModel::Logit::Diff, {kMary}, {kJohn});
            const RefEffects variant = refEffects(*m_ref, rc, Oc, rc.layers.back().residOut, "*", L, m_fx->model->config.nHead);
            double worst = test::maxAbsDiff(variant.embTotal, expected.embTotal);
            for (int l = 0; l < L; ++l)
                worst = std::max({worst, test::maxAbsDiff(variant.neuronTotal[l], expected.neuronTotal[l]),
                                  test::maxAbsDiff(variant.headTotal[l], expected.headTotal[l])});
            for (const auto& [key, v] : variant.latents)
                worst = std::max(worst, test::maxAbsDiff(v.second, expected.latents.at(key).second));
            QVERIFY2(worst > 10 * kTol, qPrintable(QStringLiteral("identity-Jacobian variant differs by only %1").arg(worst)));
        }
    }

    void noGradientFlowsBackThroughAnAblatedEntry()
    {
        // The record's own graph: with neuron (1,7) at the last token and head 1.0's whole last row
        // ablated, ∂O/∂(that neuron's pre-activation) and ∂O/∂(that row's scores) are exactly zero;
        // without the ablations they are not.
        const int last = m_n - 1;
        auto gradients = [&](const std::vector<std::string>& specs) {
            const Analysis a = analyze(logitQuery(specs));
            const AnalysisInput in = input(a.left.run);
            const ObjectiveScalar o = buildObjective(in, a.left.objective);
            const LayerRecord& L = a.left.run.record.layers[1];
            const auto g = torch::autograd::grad({o.value}, {L.mlpPre, L.query}, {}, false, false, true);
            const at::Tensor pre = g[0].defined() ? g[0] : at::zeros_like(L.mlpPre);
            const at::Tensor query = g[1].defined() ? g[1] : at::zeros_like(L.query);
            return std::pair{pre[last][7].item<double>(), query[last][0].abs().max().item<double>()};
        };
        const auto [neuron, row] = gradients({"mlp:1:7@-1=0.5", "attn:1:0@-1=0.1"});
        QCOMPARE(neuron, 0.0);
        QCOMPARE(row, 0.0);
        const auto [neuron0, row0] = gradients({});
        QVERIFY(std::abs(neuron0) > 1e-6);
        QVERIFY(row0 > 1e-6);
    }

    // ---- Traces -------------------------------------------------------------------------------

    void tracedQuantityIsItsRecordedValue()
    {
        const Analysis plain = analyze(logitQuery());
        const ActivationRecord& rec = plain.left.run.record;
        const int last = m_n - 1;
        auto traced = [&](const std::string& node, std::optional<TraceThrough> through = std::nullopt,
                          std::optional<std::string> downstream = std::nullopt) {
            AnalysisQuery q = logitQuery();
            TraceSpec t;
            t.node = NodeRef::parse(node);
            t.through = through;
            if (downstream)
                t.downstream = NodeRef::parse(*downstream);
            q.trace = t;
            return analyze(q);
        };
        auto latentZ = [&](SaeLocation loc, int layer, int t, int l) {
            return saePreActivation(*rec.layers[layer].sae(loc))[t][l].item<double>();
        };
        const int mlpLatent = activeLatent("mlp_sae", 1, last), attnLatent = activeLatent("attn_sae", 1, last);
        const int topkLatent = activeLatent("attn_sae", 0, 7), residLatent = activeLatent("resid_sae", 1, 7);
        struct Case {
            Analysis a;
            double expected;
            ObjectiveKind kind;
            const char* what;
        };
        const Case cases[] = {
            {traced("mlp:1:7@-1"), rec.layers[1].mlpPre[last][7].item<double>(), ObjectiveKind::Activation, "neuron"},
            {traced("mlp_sae:1:" + std::to_string(mlpLatent) + "@-1"), latentZ(SaeLocation::MlpPostAct, 1, last, mlpLatent),
             ObjectiveKind::Activation, "MLP latent"},
            {traced("attn_sae:1:" + std::to_string(attnLatent) + "@-1"), latentZ(SaeLocation::ResidDeltaAttn, 1, last, attnLatent),
             ObjectiveKind::Activation, "attention latent"},
            {traced("attn_sae:0:" + std::to_string(topkLatent) + "@7"), latentZ(SaeLocation::ResidDeltaAttn, 0, 7, topkLatent),
             ObjectiveKind::Activation, "normalized attention latent"},
            {traced("resid_sae:1:" + std::to_string(residLatent) + "@7"), latentZ(SaeLocation::ResidPre, 1, 7, residLatent),
             ObjectiveKind::Activation, "residual latent"},
            {traced("attn:1:2@-1,3", TraceThrough::Q), attentionScores(*m_fx->model, rec, 1)[last][3][2].item<double>(), ObjectiveKind::AttentionScore, "head Q"},
            {traced("attn:1:2@-1,3", TraceThrough::K), attentionScores(*m_fx->model, rec, 1)[last][3][2].item<double>(), ObjectiveKind::AttentionScore, "head K"},
            {traced("attn:1:2@-1,3"), attentionScores(*m_fx->model, rec, 1)[last][3][2].item<double>(), ObjectiveKind::AttentionScore, "head QK"},
            // V without a downstream node: the pair's direct effect on the logit objective.
            {traced("attn:0:2@-1,3", TraceThrough::V), metricsOf(input(plain.left.run), plain.left.run.effects, NodeRef::parse("attn:0:2@-1,3")).directEffect,
             ObjectiveKind::ValueWrite, "head V"},
        };
        for (const Case& c : cases) {
            QVERIFY2(c.a.left.run.effects.hasObjective, c.what);
            QVERIFY2(std::abs(c.a.left.run.effects.objective - c.expected) < 1e-5,
                     qPrintable(QStringLiteral("%1: %2 vs %3").arg(QString::fromLatin1(c.what)).arg(c.a.left.run.effects.objective).arg(c.expected)));
            QCOMPARE(c.a.left.run.effects.objectiveKind, c.kind);
        }
        // V onto a downstream node: P·(V·W_O)·(the downstream node's read direction) at the head's query.
        const AnalysisInput in = input(plain.left.run);
        const at::Tensor write = residualWrite(in, NodeRef::parse("attn:0:2@-1,3").resolved(m_n));
        const at::Tensor readNeuron = *residualReads(in, NodeRef::parse("mlp:1:5@-1").resolved(m_n)).read;
        QVERIFY(std::abs(traced("attn:0:2@-1,3", TraceThrough::V, "mlp:1:5@-1").left.run.effects.objective -
                         at::dot(write, readNeuron).item<double>()) < 1e-5);
        const NodeReads headReads = residualReads(in, NodeRef::parse("attn:1:1@-1,4").resolved(m_n));
        QVERIFY(std::abs(traced("attn:0:2@-1,3", TraceThrough::V, "attn:1:1@-1,4").left.run.effects.objective -
                         at::dot(write, *headReads.readQ).item<double>()) < 1e-5);
        // Downstream at another token than the head's query: exactly zero (only g[q] enters).
        QCOMPARE(traced("attn:0:2@-1,3", TraceThrough::V, "mlp:1:5@4").left.run.effects.objective, 0.0);
        // The logits go with the traced token (TDB).
        QCOMPARE(traced("mlp:1:7@6").left.run.next.token, 6);
    }

    void traceEffectsEqualPlainAutograd_data()
    {
        QTest::addColumn<QString>("node");
        QTest::addColumn<QString>("through");
        QTest::addColumn<QString>("downstream");
        QTest::addColumn<QString>("downstreamThrough");
        QTest::addColumn<QString>("upstream"); // the nodes with a direct effect (isUpstream's notation)
        // Layer 1 reads resid_post_attn(1) after layer 1's attention and the resid_pre(1) autoencoder.
        const char* beforeMlp1 = "0:*|1:attn,attn_sae,resid_sae";
        // Layer 1's attention reads resid_pre(1): all of layer 0 and the resid_pre(1) latents.
        const char* beforeAttn1 = "0:*|1:resid_sae";
        QTest::addRow("neuron") << "mlp:1:7@-1" << "" << "" << "" << beforeMlp1;
        QTest::addRow("neuron at layer 0") << "mlp:0:91@9" << "" << "" << "" << "0:attn,attn_sae";
        QTest::addRow("MLP latent") << "mlp_sae:1:*@-1" << "" << "" << "" << beforeMlp1;
        QTest::addRow("MLP latent (resid_delta_mlp)") << "mlp_sae:0:*@-1" << "" << "" << "" << "0:attn,attn_sae";
        QTest::addRow("attention latent") << "attn_sae:1:*@-1" << "" << "" << "" << beforeAttn1;
        QTest::addRow("normalized attention latent") << "attn_sae:0:*@7" << "" << "" << "" << "";
        // resid_pre(1) reads layer 0's output (after the resid_post(0) autoencoder), before its own latents.
        QTest::addRow("residual latent (resid_pre)") << "resid_sae:1:*@7" << "" << "" << "" << "0:*";
        QTest::addRow("residual latent (resid_post)") << "resid_sae:0:*@-1" << "" << "" << "" << "0:attn,attn_sae,mlp,mlp_sae";
        QTest::addRow("head Q") << "attn:1:2@-1,3" << "q" << "" << "" << beforeAttn1;
        QTest::addRow("head K") << "attn:1:2@-1,3" << "k" << "" << "" << beforeAttn1;
        QTest::addRow("head QK") << "attn:1:2@-1,3" << "qk" << "" << "" << beforeAttn1;
        QTest::addRow("head QK at one token") << "attn:1:0@9,9" << "qk" << "" << "" << beforeAttn1;
        QTest::addRow("head V, logit objective") << "attn:0:2@-1,3" << "v" << "" << "" << "";
        QTest::addRow("head V onto a neuron") << "attn:0:2@-1,3" << "v" << "mlp:1:5@-1" << "" << "";
        QTest::addRow("head V onto a head through Q") << "attn:0:2@-1,3" << "v" << "attn:1:1@-1,4" << "q" << "";
        QTest::addRow("head V onto a head through QK") << "attn:0:2@-1,3" << "v" << "attn:1:1@-1,4" << "" << "";
        QTest::addRow("head V onto an attention latent (D12)") << "attn:0:1@-1,2" << "v" << "attn_sae:1:*@-1" << "" << "";
    }
    void traceEffectsEqualPlainAutograd()
    {
        QFETCH(QString, node);
        QFETCH(QString, through);
        QFETCH(QString, downstream);
        QFETCH(QString, downstreamThrough);
        QFETCH(QString, upstream);
        auto withLatent = [&](std::string name) {
            if (const auto star = name.find(":*@"); star != std::string::npos) {
                const std::string kind = name.substr(0, name.find(':'));
                const int layer = name[name.find(':') + 1] - '0';
                const int t = std::stoi(name.substr(name.find('@') + 1));
                name = kind + ":" + std::to_string(layer) + ":" + std::to_string(activeLatent(kind.c_str(), layer, t < 0 ? t + m_n : t)) +
                       name.substr(name.find('@'));
            }
            return NodeRef::parse(name).resolved(m_n);
        };
        TraceSpec spec;
        spec.node = withLatent(node.toStdString());
        if (!through.isEmpty())
            spec.through = traceThroughFromName(through.toStdString());
        if (!downstream.isEmpty())
            spec.downstream = withLatent(downstream.toStdString());
        if (!downstreamThrough.isEmpty())
            spec.downstreamThrough = traceThroughFromName(downstreamThrough.toStdString());
        AnalysisQuery q = logitQuery();
        q.trace = spec;
        const Analysis a = analyze(q);

        // The reference: its own forward pass, then the traced quantity recomputed from the residual R
        // that feeds the node by the reference's own block code, with the node's LN σ detached (TDB).
        const NodeRef& n = spec.node;
        const int L = m_fx->model->config.nLayer, H = m_fx->model->config.nHead;
        const RefRecord forward = m_ref->forward(m_ids);
        const RefRecord* rec = &forward;
        at::Tensor O, R;
        test::RefLayer block;
        RefOptions o;
        const TraceThrough t = spec.effectiveThrough();
        // ∇ of a node's traced quantity at its own input residual (a detached copy): the V trace's g.
        auto gradientOf = [&](const NodeRef& d, TraceThrough through) {
            RefOptions od;
            test::RefLayer b;
            at::Tensor RD, sD;
            if (d.kind == NodeKind::MlpNeuron || d.kind == NodeKind::MlpSaeLatent) {
                od.detachLn2Layer = d.layer;
                RD = forward.layers[d.layer].residMid.detach().clone().requires_grad_(true);
                m_ref->mlp(d.layer, RD, od, b);
                sD = d.kind == NodeKind::MlpNeuron ? b.mlpPre[d.token][d.index] : b.saes.at("mlp_sae").preActivation[d.token][d.index];
            } else {
                od.detachLn1Layer = d.layer;
                if (through == TraceThrough::Q)
                    od.detachKeyOf = std::pair{d.layer, d.index};
                if (through == TraceThrough::K)
                    od.detachQueryOf = std::pair{d.layer, d.index};
                RD = forward.layers[d.layer].residIn.detach().clone().requires_grad_(true);
                m_ref->attention(d.layer, RD, od, b);
                sD = d.kind == NodeKind::AttnHead ? b.scores[d.token][d.keyToken][d.index] : b.saes.at("attn_sae").preActivation[d.token][d.index];
            }
            return torch::autograd::grad({sD}, {RD}, {}, false, false, true)[0];
        };
        switch (n.kind) {
        case NodeKind::MlpNeuron:
        case NodeKind::MlpSaeLatent:
            o.detachLn2Layer = n.layer;
            R = rec->layers[n.layer].residMid;
            m_ref->mlp(n.layer, R, o, block);
            O = n.kind == NodeKind::MlpNeuron ? block.mlpPre[n.token][n.index] : block.saes.at("mlp_sae").preActivation[n.token][n.index];
            break;
        case NodeKind::AttnSaeLatent:
            o.detachLn1Layer = n.layer;
            R = rec->layers[n.layer].residIn;
            m_ref->attention(n.layer, R, o, block);
            O = block.saes.at("attn_sae").preActivation[n.token][n.index];
            break;
        case NodeKind::ResidSaeLatent:
            R = rec->layers[n.layer].saes.at("resid_sae").input;
            O = m_ref->latentPreActivation("resid_sae", n.layer, R)[n.token][n.index];
            break;
        case NodeKind::AttnHead: {
            o.detachLn1Layer = n.layer;
            if (t == TraceThrough::Q)
                o.detachKeyOf = std::pair{n.layer, n.index};
            if (t == TraceThrough::K)
                o.detachQueryOf = std::pair{n.layer, n.index};
            R = rec->layers[n.layer].residIn;
            m_ref->attention(n.layer, R, o, block);
            if (t != TraceThrough::V) {
                O = block.scores[n.token][n.keyToken][n.index];
                break;
            }
            // g: the downstream node's gradient at its own input residual, or the logit objective's at
            // the final residual.
            at::Tensor g;
            if (spec.downstream) {
                g = gradientOf(*spec.downstream, spec.downstreamThrough.value_or(TraceThrough::QK));
            } else {
                const at::Tensor RF = forward.layers.back().residOut;
                const at::Tensor loss = m_ref->logitObjective(forward, ReferenceModel::Logit::Diff, {kMary}, {kJohn});
                g = torch::autograd::grad({loss}, {RF}, {}, true)[0];
            }
            const at::Tensor p = rec->layers[n.layer].probs[n.token][n.keyToken][n.index].detach();
            O = p * at::dot(at::matmul(block.value[n.keyToken][n.index], m_ref->outWeight(n.layer, n.index)), g[n.token].detach());
            break;
        }
        case NodeKind::Embedding: QFAIL("no embedding traces"); break;
        }
        const RefEffects expected = refEffects(*m_ref, *rec, O, R, upstream.toStdString(), L, H);
        QVERIFY2(std::abs(expected.objective) > 1e-6, "the traced quantity must not be trivially zero");
        COMPARE_EFFECTS(a.left.run.effects, expected, kTol);
    }

    void ablationAndTraceTogetherUseTheAblatedNetwork()
    {
        // D14: a head ablated inside an attention latent's trace changes the traced value; the value is
        // the ablated network's own.
        const int latent = activeLatent("attn_sae", 1, m_n - 1);
        const std::string node = "attn_sae:1:" + std::to_string(latent) + "@-1";
        AnalysisQuery q;
        q.trace = TraceSpec{NodeRef::parse(node), std::nullopt, std::nullopt, std::nullopt};
        q.ablations = {AblationSpec::parse("attn:1:0@-1"), AblationSpec::parse("mlp:0:91@-1")};
        const Analysis a = analyze(q);
        RefOptions o;
        o.ablations = refAblations({"attn:1:0@-1", "mlp:0:91@-1"});
        const RefRecord rec = m_ref->forward(m_ids, o);
        RefOptions traced = o;
        traced.detachLn1Layer = 1;
        test::RefLayer block;
        m_ref->attention(1, rec.layers[1].residIn, traced, block);
        const at::Tensor O = block.saes.at("attn_sae").preActivation[m_n - 1][latent];
        const RefEffects expected = refEffects(*m_ref, rec, O, rec.layers[1].residIn, "0:*|1:resid_sae", 2, 4);
        COMPARE_EFFECTS(a.left.run.effects, expected, kTol);
        QVERIFY(a.left.baseline.has_value());
        QVERIFY(std::abs(a.left.run.effects.objective - a.left.baseline->effects.objective) > 100 * kTol);
        // Ablating a neuron's post-activation and tracing its pre-activation: the objective is unchanged.
        AnalysisQuery same;
        same.trace = TraceSpec{NodeRef::parse("mlp:1:7@-1"), std::nullopt, std::nullopt, std::nullopt};
        same.ablations = {AblationSpec::parse("mlp:1:7@-1")};
        const Analysis b = analyze(same);
        QVERIFY(std::abs(b.left.run.effects.objective - b.left.baseline->effects.objective) < 1e-6);
    }

    // ---- Objectives ---------------------------------------------------------------------------

    void logitObjectivesEqualPlainAutograd_data()
    {
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QStringList>("targets");
        QTest::addColumn<QStringList>("distractors");
        QTest::addRow("logit_diff, 2 vs 2") << "logit_diff" << QStringList{QStringLiteral(" Mary"), QStringLiteral(" drink")}
                                            << QStringList{QStringLiteral(" John"), QStringLiteral(" store")};
        QTest::addRow("logit_diff, targets only") << "logit_diff" << QStringList{QStringLiteral(" Mary"), QStringLiteral(" John")} << QStringList{};
        QTest::addRow("logit_minus_mean") << "logit_minus_mean" << QStringList{QStringLiteral(" Mary")} << QStringList{};
        QTest::addRow("prob, 2 targets") << "prob" << QStringList{QStringLiteral(" Mary"), QStringLiteral(" John")} << QStringList{};
    }
    void logitObjectivesEqualPlainAutograd()
    {
        QFETCH(QString, kind);
        QFETCH(QStringList, targets);
        QFETCH(QStringList, distractors);
        AnalysisQuery q;
        q.objective.kind = *logitObjectiveFromName(kind.toStdString());
        std::vector<int> t, d;
        for (const QString& s : targets) {
            q.objective.targets.push_back(s.toStdString());
            t.push_back(m_fx->model->tokenizer->encode(s.toStdString()).at(0));
        }
        for (const QString& s : distractors) {
            q.objective.distractors.push_back(s.toStdString());
            d.push_back(m_fx->model->tokenizer->encode(s.toStdString()).at(0));
        }
        q.ablations = {AblationSpec::parse("mlp:0:91@-1")};
        const Analysis a = analyze(q);
        RefOptions o;
        o.ablations = refAblations({"mlp:0:91@-1"});
        const RefRecord rec = m_ref->forward(m_ids, o);
        const auto refKind = kind == u"prob" ? ReferenceModel::Logit::Prob
                             : kind == u"logit_minus_mean" ? ReferenceModel::Logit::MinusMean : ReferenceModel::Logit::Diff;
        const at::Tensor O = m_ref->logitObjective(rec, refKind, t, d);
        COMPARE_EFFECTS(a.left.run.effects, refEffects(*m_ref, rec, O, rec.layers.back().residOut, "*", 2, 4), kTol);
        QCOMPARE(QString::fromLatin1(objectiveKindName(a.left.run.effects.objectiveKind)), kind);
        // The targets and distractors are listed with the logits.
        QCOMPARE(a.left.run.next.targets.size(), t.size());
        QCOMPARE(a.left.run.next.distractors.size(), d.size());
        for (std::size_t i = 0; i < t.size(); ++i)
            QVERIFY(std::abs(a.left.run.next.targets[i].logit - logitsOf(a.left.run.record)[m_n - 1][t[i]].item<double>()) < 1e-6);
    }

    void directEffectIdentityHoldsForMultiTokenObjectives_data()
    {
        QTest::addColumn<QString>("kind");
        QTest::addRow("logit_diff, mean of 2 minus mean of 2") << "logit_diff";
        QTest::addRow("logit_minus_mean") << "logit_minus_mean";
    }
    void directEffectIdentityHoldsForMultiTokenObjectives()
    {
        // With σ_f fixed the objective is affine in the last residual: it equals Σ direct(emb, heads,
        // neurons) + Σ (b_O + b_out)·G + b_f·direction, direction = mean U[T] − mean U[D] (logit_diff) or
        // mean U[T] − mean_v U[v] (logit_minus_mean). (prob is not affine in the residual: no identity.)
        QFETCH(QString, kind);
        AnalysisQuery q;
        q.objective.kind = *logitObjectiveFromName(kind.toStdString());
        q.objective.targets = {" Mary", " drink"};
        if (kind == u"logit_diff")
            q.objective.distractors = {" John", " store"};
        const Analysis a = analyze(q);
        const Effects& e = a.left.run.effects;
        const Gpt2Weights& w = m_fx->model->weights;
        const at::Tensor G = e.residualGradient[-1];
        double sum = e.embeddingDirect.sum().item<double>();
        for (std::size_t l = 0; l < e.layers.size(); ++l) {
            sum += e.layers[l].heads(Metric::DirectEffect).sum().item<double>() + at::dot(w.layers[l].attnOutBias, G).item<double>();
            sum += e.layers[l].neurons(Metric::DirectEffect).sum().item<double>() + at::dot(w.layers[l].mlpOutBias, G).item<double>();
        }
        at::Tensor direction = (w.unembedding[kMary] + w.unembedding[kDrink]) / 2;
        direction = kind == u"logit_diff" ? direction - (w.unembedding[kJohn] + w.unembedding[kStore]) / 2 : direction - w.unembedding.mean(0);
        sum += at::dot(w.lnFinalBias, direction).item<double>();
        QVERIFY2(std::abs(sum - e.objective) < 1e-4, qPrintable(QStringLiteral("%1 vs %2").arg(sum).arg(e.objective)));
    }

    // ---- Two prompts --------------------------------------------------------------------------

    void twoPromptsOfDifferentLengthsMatchRowsByName()
    {
        AnalysisQuery q = logitQuery({"mlp:0:91@-1"});
        q.second = AnalysisQuery::SecondPrompt{"When Mary and John went out, John gave it to", {}, {}};
        const Analysis a = analyze(q);
        QVERIFY(a.right.has_value());
        const int n1 = a.left.run.record.tokenCount(), n2 = a.right->run.record.tokenCount();
        QVERIFY(n1 != n2);
        // @-1 resolves per prompt.
        QCOMPARE(a.left.run.record.layers[0].mlpPost[n1 - 1][91].item<float>(), 0.0f);
        QCOMPARE(a.right->run.record.layers[0].mlpPost[n2 - 1][91].item<float>(), 0.0f);
        QVERIFY(a.right->run.record.layers[0].mlpPost[n1 - 1 < n2 ? n1 - 1 : 0][91].item<float>() != 0.0f);
        // The right side uses the first prompt's targets; no baseline with two prompts (TDB).
        QCOMPARE(a.right->objective.targets, a.left.objective.targets);
        QVERIFY(!a.left.baseline);
        const std::vector<NodeTableRow> rows = nodeTable(*m_fx->model, m_fx->saes, a, 5);
        std::set<NodeRef> names;
        bool someMissingOnTheRight = false;
        for (const auto& row : rows) {
            QVERIFY(names.insert(row.node).second);
            const bool fitsRight = row.node.token < n2 && row.node.keyToken < n2;
            QCOMPARE(row.right.has_value(), fitsRight);
            QVERIFY(row.left.has_value());
            someMissingOnTheRight |= !fitsRight;
            if (row.right) {
                const NodeMetrics m = metricsOf(input(a.right->run), a.right->run.effects, row.node);
                QCOMPARE(row.right->totalEffect, m.totalEffect);
                QCOMPARE(row.right->node, row.node);
            }
        }
        QVERIFY(someMissingOnTheRight); // the last token of the longer prompt does not exist on the right
        // Each prompt alone gives the same numbers as in the pair.
        AnalysisQuery alone = logitQuery({"mlp:0:91@-1"});
        alone.prompt = q.second->prompt;
        const Analysis b = analyze(alone);
        CS_COMPARE_TENSORS(logitsOf(b.left.run.record), logitsOf(a.right->run.record), 0.0);
        QCOMPARE(b.left.run.effects.objective, a.right->run.effects.objective);
    }

    void batchedEqualsPerNodeUnderInterventions()
    {
        AnalysisQuery q = logitQuery({"attn:1:0@-1", "mlp_sae:1:5@-1=2"});
        q.trace = TraceSpec{NodeRef::parse("mlp:1:7@-1"), std::nullopt, std::nullopt, std::nullopt};
        const Analysis a = analyze(q);
        const AnalysisInput in = input(a.left.run);
        const std::vector<NodeMetrics> table = topNodes(in, a.left.run.effects, 6);
        QVERIFY(table.size() >= 6);
        std::vector<at::Tensor> writes;
        for (const auto& m : table) {
            const NodeMetrics single = metricsOf(in, a.left.run.effects, m.node);
            QCOMPARE(single.totalEffect, m.totalEffect);
            QCOMPARE(single.directEffect, m.directEffect);
            writes.push_back(residualWrite(in, m.node));
        }
        const at::Tensor batched = tokenWrite(*m_fx->model, at::stack(writes));
        for (std::size_t i = 0; i < writes.size(); ++i) {
            const at::Tensor single = tokenWrite(*m_fx->model, writes[i]);
            const double scale = std::max(1e-6, single.abs().max().item<double>());
            QVERIFY(test::maxAbsDiff(batched[static_cast<std::int64_t>(i)], single) / scale < 1e-5);
        }
        // Token effects are the per-token sums of the total effects.
        const TokenEffects& te = a.left.run.tokenEffects;
        const Effects& e = a.left.run.effects;
        const TokenEffects::Row* mlp = te.find("mlp");
        const TokenEffects::Row* from = te.find("attn_from");
        const TokenEffects::Row* to = te.find("attn_to");
        QVERIFY(mlp && from && to && te.find("embedding") && te.find("mlp_sae") && te.find("attn_sae") && te.find("resid_sae"));
        for (int t = 0; t < m_n; ++t) {
            double neurons = 0, queries = 0, keys = 0;
            for (const auto& le : e.layers) {
                neurons += le.neurons(Metric::TotalEffect)[t].sum().item<double>();
                queries += le.heads(Metric::TotalEffect)[t].sum().item<double>();
                keys += le.heads(Metric::TotalEffect).select(1, t).sum().item<double>();
            }
            QVERIFY(std::abs(mlp->values[t] - neurons) < 1e-6);
            QVERIFY(std::abs(from->values[t] - queries) < 1e-6);
            QVERIFY(std::abs(to->values[t] - keys) < 1e-6);
        }
    }

    // ---- Bad input ----------------------------------------------------------------------------

    void badInputIsOneClearError_data()
    {
        QTest::addColumn<QStringList>("ablations");
        QTest::addColumn<QString>("trace");      // "" none; "node|through|downstream|downstream_through"
        QTest::addColumn<QString>("objective");  // "kind|targets,...|distractors,..."
        QTest::addColumn<QString>("prompt2");
        QTest::addColumn<QString>("expected");   // a substring of the message
        const QStringList none;
        const QString logit = QStringLiteral("logit_diff| Mary| John");
        QTest::addRow("ablation layer out of range") << strings({"mlp:5:1@0"}) << "" << logit << "" << "layer 5 does not exist";
        QTest::addRow("ablation index out of range") << strings({"mlp:0:999@0"}) << "" << logit << "" << "index 999 is out of range";
        QTest::addRow("ablation token out of range") << strings({"mlp:0:1@40"}) << "" << logit << "" << "outside the prompt's 14 tokens";
        QTest::addRow("ablation key after query") << strings({"attn:0:1@3,5"}) << "" << logit << "" << "comes after query token";
        QTest::addRow("ablation of an autoencoder not loaded") << strings({"mlp_sae:1:99999@0"}) << "" << logit << "" << "out of range";
        QTest::addRow("ablation of an embedding") << strings({"emb@3"}) << "" << logit << "" << "cannot be ablated";
        QTest::addRow("ablation value not a number") << strings({"mlp:0:1@0=abc"}) << "" << logit << "" << "not a finite number";
        QTest::addRow("ablation value infinite") << strings({"mlp:0:1@0=inf"}) << "" << logit << "" << "not a finite number";
        QTest::addRow("the same node twice, other values") << strings({"mlp:0:1@-1=1", "mlp:0:1@13=2"}) << "" << logit << ""
                                                           << "already ablated to another value";
        QTest::addRow("row and pair disagree") << strings({"attn:0:1@5", "attn:0:1@5,2=0.5"}) << "" << logit << ""
                                               << "already ablated to another value";
        QTest::addRow("@* with a key") << strings({"attn:0:1@*,2"}) << "" << logit << "" << "takes no key token";
        QTest::addRow("two tokens on a neuron") << strings({"mlp:0:1@1,2"}) << "" << logit << "" << "only attention heads take two tokens";
        QTest::addRow("--through on a neuron") << none << "mlp:0:1@-1|q||" << logit << "" << "only for a traced attention head";
        QTest::addRow("--downstream without --through v") << none << "attn:0:1@-1,2|qk|mlp:1:3@-1|" << logit << "" << "only with --through v";
        QTest::addRow("--downstream-through v") << none << "attn:0:1@-1,2|v|attn:1:1@-1,2|v" << logit << "" << "never v";
        QTest::addRow("downstream not after the traced head") << none << "attn:1:1@-1,2|v|attn:1:0@-1,2|" << logit << "" << "reads the residual stream before";
        QTest::addRow("downstream head of the same layer (layer 0)") << none << "attn:0:1@-1,2|v|attn:0:3@-1,2|" << logit << "" << "reads the residual stream before";
        QTest::addRow("--through v without a target") << none << "attn:0:1@-1,2|v||" << "logit_diff||" << "" << "needs a --target";
        QTest::addRow("trace of an embedding") << none << "emb@3|||" << logit << "" << "has no pre-activation";
        QTest::addRow("trace token out of range") << none << "mlp:0:1@20|||" << logit << "" << "outside the prompt's 14 tokens";
        QTest::addRow("trace of a latent not loaded") << none << "mlp_sae:0:99999@0|||" << logit << "" << "out of range";
        QTest::addRow("prob with a distractor") << none << "" << "prob| Mary| John" << "" << "takes no --distractor";
        QTest::addRow("logit_minus_mean with a distractor") << none << "" << "logit_minus_mean| Mary| John" << "" << "takes no --distractor";
        QTest::addRow("prob without a target") << none << "" << "prob||" << "" << "needs a --target";
        QTest::addRow("multi-token target") << none << "" << "logit_diff| Mary and|" << "" << "a single token is needed";
        QTest::addRow("distractor without target") << none << "" << "logit_diff|| John" << "" << "needs a --target";
        QTest::addRow("empty second prompt") << none << "" << logit << "<empty>" << "second prompt";
        QTest::addRow("second prompt too long") << none << "" << logit << "<long>" << "second prompt";
        QTest::addRow("ablation beyond the second prompt") << strings({"mlp:0:1@13"}) << "" << logit << "Mary went to" << "second prompt";
    }
    void badInputIsOneClearError()
    {
        QFETCH(QStringList, ablations);
        QFETCH(QString, trace);
        QFETCH(QString, objective);
        QFETCH(QString, prompt2);
        QFETCH(QString, expected);
        std::string message;
        try {
            AnalysisQuery q;
            q.prompt = test::kPrompt.toStdString();
            const QStringList o = objective.split(u'|');
            q.objective.kind = *logitObjectiveFromName(o[0].toStdString());
            for (const QString& s : o[1].split(u',', Qt::SkipEmptyParts))
                q.objective.targets.push_back(s.toStdString());
            for (const QString& s : o[2].split(u',', Qt::SkipEmptyParts))
                q.objective.distractors.push_back(s.toStdString());
            for (const QString& a : ablations)
                q.ablations.push_back(AblationSpec::parse(a.toStdString()));
            if (!trace.isEmpty()) {
                const QStringList t = trace.split(u'|');
                TraceSpec spec;
                spec.node = NodeRef::parse(t[0].toStdString());
                if (!t[1].isEmpty())
                    spec.through = traceThroughFromName(t[1].toStdString());
                if (!t[2].isEmpty())
                    spec.downstream = NodeRef::parse(t[2].toStdString());
                if (!t[3].isEmpty())
                    spec.downstreamThrough = traceThroughFromName(t[3].toStdString());
                q.trace = spec;
            }
            if (!prompt2.isEmpty()) {
                std::string text = prompt2.toStdString();
                if (prompt2 == u"<empty>")
                    text.clear();
                if (prompt2 == u"<long>")
                    for (int i = 0; i < 70; ++i)
                        text += " word";
                q.second = AnalysisQuery::SecondPrompt{text, {}, {}};
            }
            analyzePrompt(*m_fx->model, m_fx->saes, q);
            QFAIL("no error");
        } catch (const InputError& e) {
            message = e.what();
        }
        QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());
        QVERIFY2(message.find('\n') == std::string::npos, "one line");
    }
};

QTEST_GUILESS_MAIN(TestInterventions)
#include "tst_interventions.moc"
