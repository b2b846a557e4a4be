#include "ui/engine/engine.h"
#include "ui/engine/node_view.h"
#include "ui/engine/user_message.h"

#include "core/analysis/analysis.h"
#include "core/analysis/converters.h"
#include "core/commands/session_query.h"
#include "core/model/forward.h"
#include "core/model/prompt.h"
#include "core/util/errors.h"

#include <QElapsedTimer>
#include <QFileInfo>

#include <cmath>
#include <limits>

namespace cs::ui {

// A leading space becomes '·' so " Mary" and "Mary" differ visibly.
QString displayToken(const std::string& token)
{
    QString t = QString::fromStdString(token);
    if (t.startsWith(u' '))
        t[0] = QChar(0x00B7);
    t.replace(u'\n', QStringLiteral("⏎"));
    return t;
}

QStringList displayTokens(const std::vector<std::string>& tokens)
{
    QStringList out;
    for (const auto& t : tokens)
        out << displayToken(t);
    return out;
}

QString engineJobText(EngineJob job)
{
    switch (job) {
    case EngineJob::OpenModel: return QStringLiteral("open model");
    case EngineJob::OpenAutoencoder: return QStringLiteral("open autoencoder");
    case EngineJob::Run: return QStringLiteral("run");
    case EngineJob::Inspect: return QStringLiteral("inspect");
    }
    return {};
}

QString metricLabel(Metric metric)
{
    switch (metric) {
    case Metric::Activation: return QStringLiteral("Activation");
    case Metric::WriteMagnitude: return QStringLiteral("Write magnitude");
    case Metric::DirectEffect: return QStringLiteral("Direct effect");
    case Metric::TotalEffect: return QStringLiteral("Estimated total effect");
    }
    return {};
}

namespace {

QString qs(const std::string& s)
{
    return QString::fromStdString(s);
}


QString tokenLabel(const QStringList& tokens, const NodeRef& n)
{
    if (n.kind == NodeKind::AttnHead)
        return tokens.value(n.token) + QStringLiteral(" (") + QString::number(n.token) + QStringLiteral(") → ") +
               tokens.value(n.keyToken) + QStringLiteral(" (") + QString::number(n.keyToken) + u')';
    return tokens.value(n.token) + QStringLiteral(" (") + QString::number(n.token) + u')';
}

TopTokenList toList(const TopTokens& t, const QString& title)
{
    TopTokenList out;
    out.title = title;
    for (const auto& s : t.top)
        out.top.push_back({s.id, qs(s.token), s.value});
    for (const auto& s : t.bottom)
        out.bottom.push_back({s.id, qs(s.token), s.value});
    return out;
}

QVector<double> toVector(const at::Tensor& t)
{
    const at::Tensor c = t.detach().to(at::kDouble).contiguous();
    return QVector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

template <typename F>
void guarded(Engine* engine, EngineJob job, quint64 runId, F&& body)
{
    try {
        body();
    } catch (const Cancelled&) {
        Q_EMIT engine->runCancelled(runId);
    } catch (const std::exception& e) {
        Q_EMIT engine->failed(job, userMessage(e));
    }
}

} // namespace

// Everything the worker thread owns. Only Engine's slots touch it.
struct Engine::State {
    std::shared_ptr<const Gpt2Model> model;
    std::shared_ptr<SaeSet> saes = std::make_shared<SaeSet>();
    // The last run's analysis; node views read its first prompt's (ablated) run.
    std::optional<Analysis> analysis;
    QStringList tokens;
    QString prompt;
    QString interventions;

    void forgetRun() { analysis.reset(); }
    const PromptRun* run() const { return analysis ? &analysis->left.run : nullptr; }
};

Engine::Engine() : m_state(std::make_unique<State>()) {}
Engine::~Engine() = default;

void Engine::requestCancel(quint64 upToRunId)
{
    // Monotonic: a cancel never un-cancels a later request.
    quint64 current = m_cancelUpTo.load();
    while (current < upToRunId && !m_cancelUpTo.compare_exchange_weak(current, upToRunId)) {
    }
}

void Engine::processRun()
{
    const std::optional<RunRequest> request = m_runs.take();
    if (request)
        run(*request);
}

void Engine::openModel(const QString& dir)
{
    guarded(this, EngineJob::OpenModel, 0, [&] {
        auto model = loadHfGpt2(dir.toStdString());
        // A new model invalidates everything computed with the old one, autoencoders included.
        m_state->model = model;
        m_state->saes = std::make_shared<SaeSet>();
        m_state->forgetRun();
        const Gpt2Config& c = model->config;
        ModelSummary s;
        s.path = dir;
        s.name = QFileInfo(dir).fileName();
        s.nLayer = c.nLayer;
        s.nHead = c.nHead;
        s.dModel = c.dModel;
        s.dMlp = c.dMlp;
        s.nCtx = c.nCtx;
        s.vocabSize = c.vocabSize;
        s.parameters = model->weights.parameterCount();
        s.tokenizer = model->tokenizer;
        for (const auto& w : model->warnings)
            s.warnings << qs(w);
        Q_EMIT modelOpened(s);
        Q_EMIT saesChanged({});
    });
}

void Engine::addSae(SaeRole role, const QString& spec)
{
    guarded(this, EngineJob::OpenAutoencoder, 0, [&] {
        if (!m_state->model)
            throw InputError("open a model before its autoencoders");
        BoundSae bound = loadAndBindSae(spec.toStdString(), m_state->model->config, role);
        auto next = std::make_shared<SaeSet>(*m_state->saes);
        next->add(std::move(bound));
        m_state->saes = next;
        m_state->forgetRun(); // the record no longer has every autoencoder's latents
        QStringList descriptions;
        for (const auto& b : next->all())
            descriptions << QStringLiteral("L%1 %2 (%3): %4")
                                .arg(b.layer)
                                .arg(QString::fromLatin1(saeKindName(b.location)), QString::fromLatin1(saeLocationName(b.location)),
                                     QString::fromStdString(b.sae->source.filename().string()));
        Q_EMIT saesChanged(descriptions);
    });
}

void Engine::clearSaes()
{
    m_state->saes = std::make_shared<SaeSet>();
    m_state->forgetRun();
    Q_EMIT saesChanged({});
}

namespace {

GridSnapshot buildGrid(const AnalysisInput& in, const Effects& e, int topN)
{
    const GridValues values = gridValues(in, e, topN);
    GridSnapshot g;
    g.nLayers = in.model.config.nLayer;
    g.nHeads = in.model.config.nHead;
    g.topN = topN;
    g.tokenCount = in.record.tokenCount();
    g.hasEffects = e.hasObjective;
    const auto cells = [](const std::vector<GridCellValue>& list) {
        QVector<GridCell> out;
        out.reserve(static_cast<qsizetype>(list.size()));
        for (const auto& c : list)
            out.push_back({c.node, c.value});
        return out;
    };
    g.rows.resize(kMetricCount);
    for (std::size_t m = 0; m < values.rows.size(); ++m) {
        for (const auto& layers : values.rows[m]) {
            QVector<GridLayerRow> row;
            for (const GridLayerValues& l : layers)
                row.push_back({cells(l.heads), cells(l.neurons), cells(l.mlpLatents), cells(l.attnLatents), cells(l.residLatents)});
            g.rows[static_cast<qsizetype>(m)].push_back(row);
        }
    }
    return g;
}

// The grid colored by Δ (product.md §3): at each token, layer and metric every head's Δ and the top N
// neurons and latents by |Δ|, where Δ = ablated − baseline (otherMinusMain false) or right − left
// (true), node by node at the same position. Tokens past the shorter prompt have no cells. A head's
// cell selects the key the main side's grid selects.
GridSnapshot buildDeltaGrid(const AnalysisInput& in, const Effects& main, const Effects& other, int otherTokens,
                            bool otherMinusMain, int topN)
{
    at::NoGradGuard noGrad;
    GridSnapshot g;
    g.nLayers = in.model.config.nLayer;
    g.nHeads = in.model.config.nHead;
    g.topN = topN;
    g.tokenCount = in.record.tokenCount();
    g.hasEffects = main.hasObjective && other.hasObjective;
    g.delta = otherMinusMain ? QStringLiteral("right − left") : QStringLiteral("ablated − baseline");
    const int common = std::min(g.tokenCount, otherTokens);
    g.comparedTokens = common;
    const auto diff = [&](const at::Tensor& a, const at::Tensor& b) {
        const at::Tensor x = a.narrow(0, 0, common).to(at::kDouble), y = b.narrow(0, 0, common).to(at::kDouble);
        return (otherMinusMain ? y - x : x - y).contiguous();
    };
    g.rows.resize(kMetricCount);
    for (int m = 0; m < kMetricCount; ++m) {
        const auto metric = static_cast<Metric>(m);
        if (!g.hasEffects && metricNeedsObjective(metric))
            continue;
        auto& perToken = g.rows[m];
        perToken = QVector<QVector<GridLayerRow>>(g.tokenCount, QVector<GridLayerRow>(g.nLayers));
        for (int layer = 0; layer < g.nLayers; ++layer) {
            const LayerEffects& a = main.layers[static_cast<std::size_t>(layer)];
            const LayerEffects& b = other.layers[static_cast<std::size_t>(layer)];
            const at::Tensor heads = diff(a.headsOverKeys(metric), b.headsOverKeys(metric)); // [common, H]
            const at::Tensor keys = a.headKeyMaxima(metric).key.contiguous();
            const double* hp = heads.data_ptr<double>();
            const std::int64_t* kp = keys.data_ptr<std::int64_t>();
            for (int t = 0; t < common; ++t) {
                for (int head = 0; head < g.nHeads; ++head)
                    perToken[t][layer].heads.push_back(
                        {NodeRef{NodeKind::AttnHead, layer, head, t, static_cast<int>(kp[t * g.nHeads + head])}, hp[t * g.nHeads + head]});
            }
            const auto topCells = [&](const at::Tensor& values, NodeKind kind, QVector<GridCell> GridLayerRow::*member) {
                const std::int64_t k = std::min<std::int64_t>(topN, values.size(1));
                if (k <= 0 || common == 0)
                    return;
                const at::Tensor idx = std::get<1>(values.abs().topk(k, 1)).contiguous();
                const at::Tensor picked = values.gather(1, idx).contiguous();
                const std::int64_t* ip = idx.data_ptr<std::int64_t>();
                const double* pp = picked.data_ptr<double>();
                for (int t = 0; t < common; ++t) {
                    for (std::int64_t j = 0; j < k; ++j)
                        (perToken[t][layer].*member).push_back({NodeRef{kind, layer, static_cast<int>(ip[t * k + j]), t, 0}, pp[t * k + j]});
                }
            };
            topCells(diff(a.neurons(metric), b.neurons(metric)), NodeKind::MlpNeuron, &GridLayerRow::neurons);
            // Both sides ran with the same autoencoders, in the same order.
            for (std::size_t i = 0; i < a.latents.size() && i < b.latents.size(); ++i) {
                const NodeKind kind = a.latents[i].nodeKind;
                topCells(diff(a.latents[i].dense(metric), b.latents[i].dense(metric)), kind,
                         kind == NodeKind::MlpSaeLatent    ? &GridLayerRow::mlpLatents
                         : kind == NodeKind::AttnSaeLatent ? &GridLayerRow::attnLatents
                                                           : &GridLayerRow::residLatents);
            }
        }
    }
    return g;
}

} // namespace

namespace {

QString objectiveText(const Gpt2Model& model, const ResolvedObjective& o)
{
    auto names = [&](const std::vector<int>& ids) {
        QStringList out;
        for (int id : ids)
            out << displayToken(model.tokenizer->tokenString(id));
        return out;
    };
    if (o.trace) {
        const QString node = QString::fromStdString(o.trace->node.name());
        switch (o.kind()) {
        case ObjectiveKind::AttentionScore:
            return QStringLiteral("score of %1 through %2").arg(node, QString::fromLatin1(traceThroughName(o.trace->through)));
        case ObjectiveKind::ValueWrite: return QStringLiteral("value write of %1").arg(node);
        default: return QStringLiteral("pre-activation of %1").arg(node);
        }
    }
    const QStringList targets = names(o.targets), distractors = names(o.distractors);
    const auto mean = [](const QStringList& tokens, const QString& what) -> QString {
        if (tokens.size() == 1)
            return what % u'(' % tokens.first() % u')';
        return QStringLiteral("mean ") % what % u'(' % tokens.join(QStringLiteral(", ")) % u')';
    };
    switch (o.logitKind) {
    case ObjectiveKind::LogitMinusMean: return mean(targets, QStringLiteral("logit")) % QStringLiteral(" − mean logit");
    case ObjectiveKind::Prob: return QStringLiteral("P(") % targets.join(QStringLiteral(" or ")) % u')';
    default:
        return distractors.isEmpty() ? mean(targets, QStringLiteral("logit"))
                                     : mean(targets, QStringLiteral("logit")) % QStringLiteral(" − ") % mean(distractors, QStringLiteral("logit"));
    }
}

NextTokensView nextTokensView(const NextTokens& n)
{
    NextTokensView v;
    v.token = n.token;
    const auto list = [](const std::vector<NextToken>& in) {
        QVector<NextTokenView> out;
        for (const auto& t : in)
            out.push_back({t.id, displayToken(t.token), t.logit, t.prob});
        return out;
    };
    v.top = list(n.top);
    v.bottom = list(n.bottom);
    v.targets = list(n.targets);
    v.distractors = list(n.distractors);
    return v;
}

QVector<TokenEffectRow> tokenEffectRows(const TokenEffects& e)
{
    QVector<TokenEffectRow> out;
    for (const auto& row : e.rows)
        out.push_back({qs(row.kind), QVector<double>(row.values.begin(), row.values.end())});
    return out;
}

NodeMetricsView metricsView(const NodeMetrics& m, bool hasObjective)
{
    NodeMetricsView v;
    v.activation = m.activation;
    v.writeMagnitude = m.writeMagnitude;
    if (hasObjective) {
        v.directEffect = m.directEffect;
        v.totalEffect = m.totalEffect;
    }
    return v;
}

// The node table (every row's top-3 write tokens from one batched product) and the grid(s) of an
// analysis: the final one, or a staged one whose left side has the latents of some layers only.
void fillTableAndGrid(RunResult& r, const Gpt2Model& model, const SaeSet& saes, const Analysis& analysis, const RunRequest& request)
{
    const PromptAnalysis& left = analysis.left;
    const PromptTokens& p = left.tokens;
    const AnalysisInput in{model, saes, left.run.record};
    const Effects& effects = left.run.effects;
    // The node table, with every row's top-3 write tokens from one batched product. A node only
    // the second prompt has reads its write from the second prompt's record.
    const std::vector<NodeTableRow> rows = nodeTable(model, saes, analysis, request.tableTopK);
    std::vector<at::Tensor> writes;
    for (const auto& row : rows) {
        if (row.left)
            writes.push_back(residualWrite(in, row.node));
        else if (row.right && analysis.right)
            writes.push_back(residualWrite(AnalysisInput{model, saes, analysis.right->run.record}, row.node));
        else
            writes.push_back(at::zeros({model.config.dModel}));
    }
    const at::Tensor tokenWrites = writes.empty() ? at::Tensor() : tokenWrite(model, at::stack(writes));
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const NodeTableRow& tableRow = rows[i];
        const bool twoPrompts = analysis.right.has_value();
        if (!tableRow.left && !(twoPrompts && tableRow.right))
            continue;
        const NodeMetrics& m = tableRow.left ? *tableRow.left : *tableRow.right;
        const std::vector<std::string>& rowTokens = tableRow.left ? p.tokens : analysis.right->tokens.tokens;
        NodeRow row;
        row.node = m.node;
        row.name = qs(m.node.name());
        row.kind = QString::fromLatin1(nodeKindName(m.node.kind));
        row.layer = m.node.kind == NodeKind::Embedding ? -1 : m.node.layer;
        // Raw token strings (leading spaces kept): the table shows them with '·' itself and
        // exports them unchanged to CSV.
        const QString tokenQ = qs(rowTokens[static_cast<std::size_t>(m.node.token)]);
        row.tokens = m.node.kind == NodeKind::AttnHead
                         ? tokenQ + QStringLiteral(" → ") + qs(rowTokens[static_cast<std::size_t>(m.node.keyToken)])
                         : tokenQ;
        row.hasMain = tableRow.left.has_value();
        if (tableRow.left) {
            const NodeMetricsView v = metricsView(*tableRow.left, effects.hasObjective);
            row.activation = v.activation;
            row.writeMagnitude = v.writeMagnitude;
            row.directEffect = v.directEffect;
            row.totalEffect = v.totalEffect;
        }
        if (twoPrompts && tableRow.right)
            row.other = metricsView(*tableRow.right, analysis.right->run.effects.hasObjective);
        else if (!twoPrompts && tableRow.baseline)
            row.other = metricsView(*tableRow.baseline, left.baseline && left.baseline->effects.hasObjective);
        const TopTokens tt = topTokens(*model.tokenizer, tokenWrites[static_cast<std::int64_t>(i)], 3);
        QStringList top3;
        for (const auto& s : tt.top)
            top3 << qs(s.token);
        row.topWriteTokens = top3.join(QStringLiteral(", "));
        r.table.push_back(row);
    }
    r.grid = buildGrid(in, effects, request.gridTopN);
    if (analysis.right)
        r.deltaGrid = buildDeltaGrid(in, effects, analysis.right->run.effects, analysis.right->run.record.tokenCount(), true,
                                     request.gridTopN);
    else if (left.baseline)
        r.deltaGrid = buildDeltaGrid(in, effects, left.baseline->effects, left.baseline->record.tokenCount(), false,
                                     request.gridTopN);
}

} // namespace

void Engine::run(const RunRequest& request)
{
    const auto cancelled = [this, id = request.id] { return id <= m_cancelUpTo.load(); };
    guarded(this, EngineJob::Run, request.id, [&] {
        if (!m_state->model)
            throw InputError("no model is open");
        QElapsedTimer timer;
        timer.start();
        const Gpt2Model& model = *m_state->model;
        AnalysisQuery query = analysisQueryOf(request.prompt.toStdString(), request.objective, request.ablations, request.trace,
                                              request.secondPrompt);
        query.overlong = request.truncate ? OverlongPrompt::KeepLast : OverlongPrompt::Refuse;
        if (cancelled())
            throw Cancelled();
        AnalysisControl control;
        control.cancelled = cancelled;
        control.progress = [this](int done, int total) { Q_EMIT progress(done, total); };
        control.stage = [this, id = request.id](const std::string& stage) { Q_EMIT stageChanged(id, qs(stage)); };
        // Staged results while autoencoders are encoded: the model's own nodes at once, then more
        // layers' latents at most every 0.3 s (a table and grid cost tens of ms; the last stage is the
        // final result, which runFinished brings).
        QElapsedTimer sinceStaged;
        control.staged = [&](const PromptAnalysis& partial, int latentLayers, int latentLayersTotal) {
            if (latentLayersTotal == 0 || latentLayers == latentLayersTotal || cancelled())
                return;
            if (latentLayers > 0 && sinceStaged.isValid() && sinceStaged.elapsed() < 300)
                return;
            Analysis staged;
            staged.left = partial;
            RunResult s;
            s.id = request.id;
            s.partial = true;
            s.latentLayersDone = latentLayers;
            s.latentLayersTotal = latentLayersTotal;
            s.hasObjective = partial.run.effects.hasObjective;
            for (const auto& t : partial.tokens.tokens)
                s.tokens << displayToken(t);
            fillTableAndGrid(s, model, *m_state->saes, staged, request);
            s.seconds = timer.elapsed() / 1000.0;
            Q_EMIT runStaged(s);
            sinceStaged.start();
        };
        Analysis analysis = analyzePrompt(model, *m_state->saes, query, control);
        if (cancelled())
            throw Cancelled();
        const PromptAnalysis& left = analysis.left;
        const PromptTokens& p = left.tokens;
        const Effects& effects = left.run.effects;

        RunResult r;
        r.id = request.id;
        r.prompt = request.prompt;
        for (const auto& t : p.tokens)
            r.tokens << displayToken(t);
        r.ids = QVector<int>(p.ids.begin(), p.ids.end());
        r.hasObjective = effects.hasObjective;
        r.objective = effects.objective;
        if (left.objective.any())
            r.objectiveText = objectiveText(model, left.objective);
        for (const auto& w : p.warnings)
            r.warnings << qs(w);
        {
            at::NoGradGuard noGrad;
            const at::Tensor probs = at::softmax(logitsAt(model, left.run.record, left.run.record.tokenCount() - 1).to(at::kDouble), 0);
            const auto top = probs.topk(10);
            for (int i = 0; i < 10; ++i) {
                const int id = static_cast<int>(std::get<1>(top)[i].item<std::int64_t>());
                r.nextTokens.push_back({id, displayToken(model.tokenizer->tokenString(id)), std::get<0>(top)[i].item<double>()});
            }
        }
        r.next = nextTokensView(left.run.next);
        if (effects.hasObjective)
            r.tokenEffects = tokenEffectRows(left.run.tokenEffects);
        r.trace = request.trace;
        r.ablations = QStringList();
        for (const auto& a : analysis.ablations)
            r.ablations << qs(a);
        if (analysis.right) {
            r.comparison = Comparison::Prompts;
            const PromptAnalysis& right = *analysis.right;
            RightPrompt side;
            side.prompt = qs(right.text);
            for (const auto& t : right.tokens.tokens)
                side.tokens << displayToken(t);
            side.hasObjective = right.run.effects.hasObjective;
            side.objective = right.run.effects.objective;
            if (right.objective.any())
                side.objectiveText = objectiveText(model, right.objective);
            side.next = nextTokensView(right.run.next);
            r.right = side;
        } else if (left.baseline) {
            r.comparison = Comparison::Baseline;
            if (left.baseline->effects.hasObjective)
                r.baselineObjective = left.baseline->effects.objective;
            r.baselineNext = nextTokensView(left.baseline->next);
        }
        fillTableAndGrid(r, model, *m_state->saes, analysis, request);
        r.seconds = timer.elapsed() / 1000.0;

        // Only now, with everything computed, replace the cached state: a failure above keeps the old one.
        m_state->tokens = r.tokens;
        m_state->prompt = request.prompt;
        m_state->interventions = interventionSummary(query);
        m_state->analysis = std::move(analysis);
        Q_EMIT runFinished(r);
    });
}

QString interventionSummary(const AnalysisQuery& q)
{
    QStringList parts;
    if (!q.ablations.empty()) {
        QStringList specs;
        for (const auto& a : q.ablations)
            specs << QString::fromStdString(a.spec());
        parts << QStringLiteral("ablated: ") % specs.join(QStringLiteral(", "));
    }
    if (q.trace) {
        QString t = QStringLiteral("traced: ") % QString::fromStdString(q.trace->node.name());
        if (q.trace->node.kind == NodeKind::AttnHead)
            t += QStringLiteral(" through ") % QString::fromLatin1(traceThroughName(q.trace->effectiveThrough()));
        if (q.trace->downstream)
            t += QStringLiteral(" onto ") % QString::fromStdString(q.trace->downstream->name());
        parts << t;
    }
    return parts.join(QStringLiteral("; "));
}


NodeView buildNodeView(const AnalysisInput& in, const Effects& effects, const NodeRef& requested, const QStringList& tokens,
                       const QString& prompt, int k)
{
    const Gpt2Model& model = in.model;
    const ActivationRecord& rec = in.record;
    const NodeRef node = checkedNode(in, requested);

    NodeView v;
    v.node = node;
    v.name = qs(node.name());
    v.tokens = tokens;
    v.tokenLabel = tokenLabel(tokens, node);
    v.provenance = {QString::fromStdString(model.directory.filename().string()), prompt, v.name, QString(), QString()};
    const NodeMetrics m = metricsOf(in, effects, node);
    v.metrics.activation = m.activation;
    v.metrics.writeMagnitude = m.writeMagnitude;
    if (effects.hasObjective) {
        v.metrics.directEffect = m.directEffect;
        v.metrics.totalEffect = m.totalEffect;
    }
    // One pass over the vocabulary matrix for all lists: the in-context write is the per-unit write
    // times the activation (the logit lens is linear), and the reads share the (tied) matrix.
    const NodeReads reads = residualReads(in, node);
    std::vector<at::Tensor> readRows;
    QStringList readTitles;
    if (reads.read) {
        readRows.push_back(*reads.read);
        readTitles << QStringLiteral("Read tokens");
    }
    if (reads.readQ) {
        readRows.push_back(*reads.readQ);
        readTitles << QStringLiteral("Q-read tokens (query side)");
    }
    if (reads.readK) {
        readRows.push_back(*reads.readK);
        readTitles << QStringLiteral("K-read tokens (key side)");
    }
    const at::Tensor perUnit = residualWritePerUnit(in, node).unsqueeze(0);
    const LensTopTokens lenses = lensTopTokens(model, perUnit, readRows.empty() ? at::empty({0, model.config.dModel}) : at::stack(readRows), k);
    const double activation = node.kind == NodeKind::Embedding ? 1.0 : m.activation;
    v.writePerUnit = toList(lenses.writes[0], QStringLiteral("Write tokens (per unit activation)"));
    v.writeInContext = toList(scaledTopTokens(lenses.writes[0], activation), QStringLiteral("Write tokens (this context)"));
    for (int i = 0; i < readTitles.size(); ++i)
        v.reads.push_back(toList(lenses.reads[static_cast<std::size_t>(i)], readTitles[i]));

    const int n = rec.tokenCount();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto lowerTriangle = [&](const at::Tensor& m) {
        QVector<double> values = toVector(m);
        for (int q = 0; q < n; ++q)
            for (int kk = q + 1; kk < n; ++kk)
                values[q * n + kk] = nan;
        return values;
    };
    if (node.kind == NodeKind::AttnHead) {
        const HeadMaps maps = headMaps(in, node.layer, node.index);
        v.pairMaps.push_back({QStringLiteral("Attention probability"), QStringLiteral("P[q,k]"), v.tokens, v.tokens,
                              lowerTriangle(maps.probs), node.token});
        v.pairMaps.push_back({QStringLiteral("Write magnitude per pair"), QStringLiteral("‖P·V·W_O‖"), v.tokens, v.tokens,
                              lowerTriangle(maps.writeMagnitude), node.token});
    } else if (node.kind == NodeKind::AttnSaeLatent) {
        // Rows of query tokens where the latent is inactive stay blank (D4: no attribution, not zeros).
        const PairAttributionMap map = pairAttributionMap(in, node);
        if (map.active.any().item<bool>()) {
            QVector<double> values = lowerTriangle(map.values);
            const at::Tensor active = map.active.to(at::kBool).contiguous();
            const bool* isActive = active.data_ptr<bool>();
            for (int q = 0; q < n; ++q)
                if (!isActive[q])
                    std::fill(values.begin() + q * n, values.begin() + (q + 1) * n, nan);
            v.pairMaps.push_back({QStringLiteral("Token-pair attribution"), QStringLiteral("Σ_h P·∂z/∂P"), v.tokens, v.tokens, values, node.token});
        } else {
            v.pairMapsNote = QStringLiteral("The latent is inactive at every token of this prompt.");
        }
    } else {
        v.pairMapsNote = QStringLiteral("Token pairs exist for attention heads and attention-autoencoder latents.");
    }
    v.activationByToken = toVector(activationByToken(in, node));
    return v;
}

NodeView computeNodeView(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& query, const NodeRef& node, int topK,
                         std::vector<std::string>* warnings)
{
    const Analysis a = analyzePrompt(model, saes, query);
    const PromptAnalysis& p = a.left;
    if (warnings)
        warnings->insert(warnings->end(), p.tokens.warnings.begin(), p.tokens.warnings.end());
    const AnalysisInput in{model, saes, p.run.record};
    NodeView v = buildNodeView(in, p.run.effects, node, displayTokens(p.tokens.tokens), QString::fromStdString(query.prompt), topK);
    v.provenance.interventions = interventionSummary(query);
    return v;
}

void Engine::processInspect()
{
    const std::optional<InspectRequest> request = m_inspects.take();
    if (!request)
        return;
    guarded(this, EngineJob::Inspect, 0, [&] {
        const PromptRun* run = m_state->run();
        if (!m_state->model || !run)
            throw InputError("run a prompt first");
        const AnalysisInput in{*m_state->model, *m_state->saes, run->record};
        NodeView v = buildNodeView(in, run->effects, request->node, m_state->tokens, m_state->prompt, request->topK);
        v.provenance.interventions = m_state->interventions;
        v.requestId = request->id;
        if (const auto& baseline = m_state->analysis->left.baseline)
            v.baselineMetrics = metricsView(metricsOf(AnalysisInput{*m_state->model, *m_state->saes, baseline->record}, baseline->effects, v.node),
                                            baseline->effects.hasObjective);
        Q_EMIT nodeReady(v);
    });
}

void Engine::computeView(quint64 id, const QString& name, int topK)
{
    NodeView v;
    QString error;
    try {
        const PromptRun* run = m_state->run();
        if (!m_state->model || !run)
            throw InputError("run a prompt first");
        const NodeRef node = NodeRef::parse(name.toStdString()).resolved(static_cast<int>(m_state->tokens.size()));
        const AnalysisInput in{*m_state->model, *m_state->saes, run->record};
        v = buildNodeView(in, run->effects, node, m_state->tokens, m_state->prompt, topK);
        v.provenance.interventions = m_state->interventions;
        v.requestId = id;
        if (const auto& baseline = m_state->analysis->left.baseline)
            v.baselineMetrics = metricsView(metricsOf(AnalysisInput{*m_state->model, *m_state->saes, baseline->record}, baseline->effects, v.node),
                                            baseline->effects.hasObjective);
    } catch (const std::exception& e) {
        error = userMessage(e);
    }
    Q_EMIT viewComputed(id, name, v, error);
}

EngineClient::EngineClient(QObject* parent) : QObject(parent)
{
    registerViewTypes();
    qRegisterMetaType<ModelSummary>();
    qRegisterMetaType<RunResult>();
    qRegisterMetaType<RunRequest>();
    qRegisterMetaType<EngineJob>();
    m_engine = new Engine;
    connect(m_engine, &Engine::runFinished, this, [this](const RunResult& r) {
        if (r.id == m_latestRun)
            Q_EMIT runShown(r);
    });
    connect(m_engine, &Engine::modelOpened, this, &EngineClient::modelOpened);
    m_engine->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_engine, &QObject::deleteLater);
    m_thread.setObjectName(QStringLiteral("circuitscope-engine"));
    m_thread.start();
}

EngineClient::~EngineClient()
{
    m_engine->requestCancel(std::numeric_limits<quint64>::max());
    m_thread.quit();
    m_thread.wait();
}

// The engine is deleted only after its thread's event loop ends, which runs every call posted here
// first, so the raw pointer inside the functor never dangles.
template <typename F>
void EngineClient::post(F&& call)
{
    QMetaObject::invokeMethod(m_engine, [engine = m_engine, call = std::forward<F>(call)] { call(engine); }, Qt::QueuedConnection);
}

void EngineClient::openModel(const QString& dir)
{
    post([dir](Engine* e) { e->openModel(dir); });
}

void EngineClient::addSae(SaeRole role, const QString& spec)
{
    post([role, spec](Engine* e) { e->addSae(role, spec); });
}

void EngineClient::clearSaes()
{
    post([](Engine* e) { e->clearSaes(); });
}

quint64 EngineClient::run(RunRequest request)
{
    request.id = m_nextId++;
    m_latestRun = request.id;
    // Superseded: the run in progress stops at its next layer, one still in the mailbox is replaced.
    m_engine->requestCancel(request.id - 1);
    if (m_engine->postRun(request))
        post([](Engine* e) { e->processRun(); });
    return request.id;
}

quint64 EngineClient::inspect(const NodeRef& node, int topK)
{
    const quint64 id = m_nextId++;
    if (m_engine->postInspect({id, node, topK}))
        post([](Engine* e) { e->processInspect(); });
    return id;
}

quint64 EngineClient::computeView(const QString& name, int topK)
{
    const quint64 id = m_nextId++;
    post([id, name, topK](Engine* e) { e->computeView(id, name, topK); });
    return id;
}

void EngineClient::cancel()
{
    m_engine->requestCancel(m_nextId - 1);
}

} // namespace cs::ui
