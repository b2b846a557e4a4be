#pragma once
// Plain value types that cross from the engine's worker thread to the widgets (queued signals).
// No libtorch here: widgets never see tensors, only these snapshots.

#include "core/analysis/node.h"

#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

#include <optional>

namespace cs::ui {

// Token strings for display: a leading space becomes '·', a newline '⏎'.
QString displayToken(const std::string& token);
QStringList displayTokens(const std::vector<std::string>& tokens);

struct TokenValue {
    int id = 0;
    QString token;   // decoded, leading spaces kept
    double value = 0;
    bool operator==(const TokenValue&) const = default;
};

// Top (most positive first) and bottom (most negative first) tokens of a direction.
struct TopTokenList {
    QString title;   // e.g. "Write tokens (this context)", "Q-read tokens"
    QVector<TokenValue> top;
    QVector<TokenValue> bottom;
    bool operator==(const TopTokenList&) const = default;
};

// A matrix over token pairs: rows = query tokens, columns = key tokens (row-major values).
// Cells that do not exist (k > q) hold NaN and are drawn blank.
struct Heatmap {
    QString title;    // e.g. "Attention probability"
    QString metric;   // what a cell value is, for legends and CSV headers
    QStringList rowLabels;
    QStringList columnLabels;
    QVector<double> values; // rows × columns
    int highlightRow = -1;  // the selected query row, or -1
    double at(int row, int column) const { return values[row * columnLabels.size() + column]; }
};

// Where a figure came from: written into every export so a figure can be traced back (product.md §4).
struct Provenance {
    QString model;
    QString prompt;
    QString node;
    QString metric;
    QString interventions; // "ablated: …; traced: …", empty when the run had none
};

// The four metrics of math §6.2 for one node; effects are absent without a target.
struct NodeMetricsView {
    double activation = 0;
    double writeMagnitude = 0;
    std::optional<double> directEffect;
    std::optional<double> totalEffect;
    bool operator==(const NodeMetricsView&) const = default;
};

// Everything the node inspector shows for one node, computed from the cached record.
struct NodeView {
    NodeRef node;
    QString name;                   // "mlp:5:123@7"
    QString tokenLabel;             // e.g. "· Mary (7)" or "· to (13) → · Mary (1)"
    NodeMetricsView metrics;
    // With ablations: the same node without them (the inspector shows ablated / baseline / Δ).
    std::optional<NodeMetricsView> baselineMetrics;
    TopTokenList writeInContext;    // D6 default
    TopTokenList writePerUnit;      // D6 switch
    QVector<TopTokenList> reads;    // one (neurons, latents), Q and K (heads), none (embeddings)
    QVector<Heatmap> pairMaps;      // heads: probabilities + write magnitude; attention latents: attribution
    QString pairMapsNote;           // why there is no map ("latent inactive", "not an attention node")
    QVector<double> activationByToken;
    QStringList tokens;
    Provenance provenance;
    quint64 requestId = 0;
};

// A row of the node table (product.md §3).
struct NodeRow {
    NodeRef node;
    QString name;
    QString kind;        // "mlp", "attn", "mlp_sae", ...
    int layer = -1;      // -1 for embeddings
    QString tokens;      // "· Mary" or "· to → · Mary"
    double activation = 0;
    double writeMagnitude = 0;
    std::optional<double> directEffect;
    std::optional<double> totalEffect;
    QString topWriteTokens; // the top 3 write tokens, comma separated
    // The metrics above are the first prompt's (ablated) run's; false for a node that only the second
    // prompt has (then they are absent).
    bool hasMain = true;
    // With a comparison (RunResult::comparison): the baseline's or the second prompt's metrics of
    // the same node; nullopt where that side does not have the node.
    std::optional<NodeMetricsView> other;
};

void registerViewTypes();

} // namespace cs::ui

Q_DECLARE_METATYPE(cs::ui::TopTokenList)
Q_DECLARE_METATYPE(cs::ui::Heatmap)
Q_DECLARE_METATYPE(cs::ui::NodeView)
Q_DECLARE_METATYPE(cs::ui::NodeRow)
