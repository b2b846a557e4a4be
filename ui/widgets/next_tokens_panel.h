#pragma once
// The Next-token candidates panel (product.md §3, §5.1 "logits"): the top and bottom K next tokens by
// logit with their probability, the objective's targets and distractors pinned at the top and
// labelled, each logit also relative to the first target's; with ablations (ablated / baseline) or two
// prompts (left / right) both sides and Δ.

#include "ui/engine/engine_types.h"

#include <QAbstractTableModel>
#include <QWidget>

class QLabel;
class QTableView;

namespace cs::ui {

class NextTokensModel : public QAbstractTableModel {
    Q_OBJECT
public:
    // The logits of both sides and their Δ first, so that a narrow panel cuts the probabilities off,
    // never the Δ.
    enum Column { RoleColumn, TokenColumn, LogitColumn, OtherLogitColumn, DeltaLogitColumn, ProbColumn, OtherProbColumn, VsTargetColumn, ColumnCount };
    enum Role { SortRole = Qt::UserRole + 1 }; // raw numbers
    enum class RowKind { Target, Distractor, Top, Bottom };
    struct Row {
        RowKind kind;
        NextTokenView token;
        std::optional<NextTokenView> other; // the same token on the other side, when listed there
    };

    explicit NextTokensModel(QObject* parent = nullptr);
    // `other` is the baseline's (Comparison::Baseline) or the second prompt's (Prompts) candidates.
    void setCandidates(const NextTokensView& main, const NextTokensView& other, Comparison comparison);
    const QVector<Row>& rows() const { return m_rows; }
    Comparison comparison() const { return m_comparison; }
    static QString kindLabel(RowKind kind);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    std::optional<double> number(const Row& row, int column) const;

    QVector<Row> m_rows;
    std::optional<double> m_firstTarget; // its logit on the main side
    Comparison m_comparison = Comparison::None;
};

class EngineClient;

class NextTokensPanel : public QWidget {
    Q_OBJECT
public:
    explicit NextTokensPanel(QWidget* parent = nullptr);
    // Shows every run `client` shows (the baseline's or the second prompt's candidates beside), and
    // nothing after a model opens.
    void follow(const EngineClient* client);
    void setCandidates(const NextTokensView& main, const NextTokensView& other, Comparison comparison, const QString& at);
    NextTokensModel* model() const { return m_model; }
    QTableView* view() const { return m_view; }

private:
    NextTokensModel* m_model;
    QTableView* m_view;
    QLabel* m_caption;
};

} // namespace cs::ui
