#pragma once
// Results of the engine's jobs (model opened, prompt run), as plain values for queued signals.

#include "ui/engine/view_types.h"

#include "core/analysis/metric.h"
#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"

#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

#include <memory>
#include <optional>

namespace cs::ui {

struct ModelSummary {
    QString path;
    QString name;       // the directory's name, for the status bar and provenance
    int nLayer = 0, nHead = 0, dModel = 0, dMlp = 0, nCtx = 0, vocabSize = 0;
    qint64 parameters = 0;
    QStringList warnings;
    // The model's tokenizer (immutable, safe from any thread): the objective editor checks its tokens live.
    std::shared_ptr<const Gpt2Tokenizer> tokenizer;
};

// A metric's name in the window ("Write magnitude"); metricKey is its name in files.
QString metricLabel(Metric metric);

struct GridCell {
    NodeRef node;      // what a click selects (heads: the key token with the largest |value|)
    double value = 0;
};

// One layer's row of the grid at one token of interest.
struct GridLayerRow {
    QVector<GridCell> heads;        // all heads: activation = max over key tokens, other metrics = sum
    QVector<GridCell> neurons;      // top-N by |value|
    QVector<GridCell> mlpLatents;   // top-N, empty without an MLP autoencoder at this layer
    QVector<GridCell> attnLatents;
    QVector<GridCell> residLatents;
};

struct GridSnapshot {
    int nLayers = 0;
    int nHeads = 0;
    int topN = 0;
    int tokenCount = 0;
    bool hasEffects = false;
    // Empty for the run's own values; for a grid of differences what they are ("ablated − baseline",
    // "right − left").
    QString delta;
    int comparedTokens = 0; // a grid of differences: the positions both sides have (the others are empty)
    // [metric][token][layer]; metrics without a value (effects without a target) are empty.
    QVector<QVector<QVector<GridLayerRow>>> rows;

    bool has(Metric m) const { return rows.size() > int(m) && !rows[int(m)].isEmpty(); }
    const GridLayerRow& row(Metric m, int token, int layer) const { return rows[int(m)][token][layer]; }
};

// One next-token candidate (product.md §5.1 "logits"), at the objective's token.
struct NextTokenView {
    int id = 0;
    QString token;      // display form ('·' for a leading space)
    double logit = 0;
    double prob = 0;
    bool operator==(const NextTokenView&) const = default;
};
struct NextTokensView {
    int token = -1;                     // the position whose logits these are
    QVector<NextTokenView> top, bottom; // by logit: largest first / smallest first
    QVector<NextTokenView> targets, distractors;
    bool isEmpty() const { return token < 0; }
};

// The summed estimated total effect per prompt token, one row per kind ("embedding", "mlp",
// "attn_from", "attn_to", latents); empty without an objective.
struct TokenEffectRow {
    QString kind;
    QVector<double> values;
};

// What a run is compared with, in the table, the inspector and the next-token panel.
enum class Comparison {
    None,
    Baseline, // ablations are active: ablated (main) / baseline (other) / Δ
    Prompts,  // two prompts: left (main) / right (other) / Δ
};

// The second prompt of a two-prompt run.
struct RightPrompt {
    QString prompt;
    QStringList tokens;
    bool hasObjective = false;
    double objective = 0;
    QString objectiveText;
    NextTokensView next;
};

struct RunResult {
    quint64 id = 0;
    // A staged result (Engine::runStaged): only the table and the grid are filled, with the latents of
    // latentLayersDone of latentLayersTotal layers' autoencoders.
    bool partial = false;
    int latentLayersDone = 0, latentLayersTotal = 0;
    QString prompt;
    QStringList tokens;
    QVector<int> ids;
    bool hasObjective = false;
    double objective = 0;
    QString objectiveText;          // e.g. "logit(· Mary) − logit(· John)"
    QVector<TokenValue> nextTokens; // top predictions at the last token, value = probability
    NextTokensView next;            // under the ablations
    QVector<TokenEffectRow> tokenEffects;
    QStringList ablations;          // "name=value", as run
    std::optional<Session::Trace> trace; // as run: what the trace breadcrumb names
    Comparison comparison = Comparison::None;
    std::optional<double> baselineObjective;    // with ablations: the objective without them
    NextTokensView baselineNext;                // with ablations: the candidates without them
    std::optional<RightPrompt> right;
    QVector<NodeRow> table;         // with a comparison each row also carries the other side
    GridSnapshot grid;
    GridSnapshot deltaGrid;         // with a comparison: the grid of Δ (empty otherwise)
    double seconds = 0;
    QStringList warnings;
};

} // namespace cs::ui

Q_DECLARE_METATYPE(cs::Metric) // the grid's metric chooser holds it
Q_DECLARE_METATYPE(cs::ui::ModelSummary)
Q_DECLARE_METATYPE(cs::ui::RunResult)
Q_DECLARE_METATYPE(cs::ui::NextTokensView)
