#pragma once
// The node table (product.md §3): the top nodes of a prompt, one row each, with their four metrics.
//
// NodeTableModel takes whole snapshots (a QVector<NodeRow> inside begin/endResetModel) and never
// changes a row in place. Display text is formatted; SortRole carries raw values so that sorting is
// numeric; NodeTableProxy filters (text, kind) and sorts by SortRole with absent values always last.
//
// NodeRow::tokens and NodeRow::topWriteTokens are expected to hold the raw token strings (leading
// spaces kept, " → " between a head's query and key token, ", " between the top write tokens); the
// model makes leading spaces and line breaks visible for display and the CSV export keeps them raw.

#include "ui/engine/engine_types.h"

#include <QAbstractTableModel>
#include <QSortFilterProxyModel>

#include <optional>

namespace cs::ui {

class NodeTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column {
        NameColumn,
        KindColumn,
        LayerColumn,
        TokensColumn,
        ActivationColumn,
        WriteMagnitudeColumn,
        DirectEffectColumn,
        TotalEffectColumn,
        TopWriteTokensColumn,
        // With a comparison (ablations or two prompts): each metric's other side and Δ. Last, so the
        // plain table's columns keep their numbers; the view shows them next to their metric.
        ActivationOtherColumn,
        ActivationDeltaColumn,
        WriteMagnitudeOtherColumn,
        WriteMagnitudeDeltaColumn,
        DirectEffectOtherColumn,
        DirectEffectDeltaColumn,
        TotalEffectOtherColumn,
        TotalEffectDeltaColumn,
        ColumnCount
    };
    enum Role {
        // Raw value to sort by: double for metrics (invalid QVariant when absent), int for layer and kind,
        // a key string for names (numbers zero-padded, so mlp:9 sorts before mlp:10), text otherwise.
        SortRole = Qt::UserRole + 1,
        NodeRole,    // the row's cs::NodeRef (QVariant::fromValue)
        RawTextRole, // unformatted text of the text columns (tokens with their real spaces)
        KindRole,    // int(cs::NodeKind)
    };

    explicit NodeTableModel(QObject* parent = nullptr);

    // Replaces every row (one model reset).
    void setRows(QVector<NodeRow> rows);
    const QVector<NodeRow>& rows() const { return m_rows; }
    const NodeRow& rowAt(int row) const { return m_rows.at(row); }
    NodeRef nodeAt(int row) const { return m_rows.at(row).node; }
    // The row holding this node, or -1.
    int rowOf(const NodeRef& node) const;

    // Without a target the effect columns have no values; the view hides them (not zeros, not blanks).
    void setEffectsAvailable(bool available);
    bool effectsAvailable() const { return m_effectsAvailable; }
    static bool isEffectColumn(int column);
    static bool isNumericColumn(int column);
    // The comparison shown: None hides the other/Δ columns. Baseline: main = ablated, Δ = ablated −
    // baseline; Prompts: main = left, other = right, Δ = right − left (product.md §5.1).
    void setComparison(Comparison comparison);
    Comparison comparison() const { return m_comparison; }
    static bool isComparisonColumn(int column) { return column >= ActivationOtherColumn && column < ColumnCount; }
    // The plain metric column a comparison column belongs to.
    static int metricColumnOf(int column);

    // Short human-readable kind ("neuron", "head", "MLP latent", …) and display forms of token text.
    static QString kindLabel(NodeKind kind);
    // Leading spaces of each token become '·', line breaks and tabs become visible symbols.
    // Tokens are split on `separator` (" → " for a head's pair, ", " for the top write tokens) and
    // joined again with `shownSeparator` (default: the same).
    static QString visibleTokens(const QString& raw, const QString& separator, const QString& shownSeparator = {});
    // The top write tokens as shown: "·went │ , │ ·a" (a comma token stays readable).
    static QString visibleTopTokens(const QString& raw);
    // Four significant digits, '−' for negatives; what the Display role shows for a metric.
    static QString formatNumber(double value);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

Q_SIGNALS:
    void effectsAvailableChanged(bool available);

private:
    QVariant displayData(const NodeRow& row, int column) const;
    QVariant sortData(const NodeRow& row, int column) const;
    QVariant toolTipData(const NodeRow& row, int column) const;
    std::optional<double> metric(const NodeRow& row, int column) const;

    QVector<NodeRow> m_rows;
    bool m_effectsAvailable = true;
    Comparison m_comparison = Comparison::None;
};

// Sorts by NodeTableModel::SortRole (numbers numerically, absent values last in either order) and
// filters by text (name, tokens, top write tokens; case-insensitive; '·' stands for a space) and kind.
class NodeTableProxy : public QSortFilterProxyModel {
    Q_OBJECT
public:
    explicit NodeTableProxy(QObject* parent = nullptr);

    void setTextFilter(const QString& text);
    QString textFilter() const { return m_text; }
    // std::nullopt = all kinds.
    void setKindFilter(std::optional<NodeKind> kind);
    std::optional<NodeKind> kindFilter() const { return m_kind; }

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const override;
    bool lessThan(const QModelIndex& left, const QModelIndex& right) const override;

private:
    QString m_text;   // as typed, '·' already turned into ' '
    std::optional<NodeKind> m_kind;
};

} // namespace cs::ui
