#pragma once
// The node inspector (product.md §3): a header with the node's name, token(s) and metrics, and four
// tabs — write tokens, read tokens, token pairs, activation by token — each a chart with an Export menu;
// a Pin button adds the node to the circuit.

#include "ui/engine/view_types.h"

#include <QWidget>

class QCheckBox;
class QLabel;
class QPushButton;
class QStackedWidget;
class QTabWidget;
class QToolButton;

namespace cs::ui {

class ActivationChart;
class HeatmapChart;
class NodeActions;
class TokenBarChart;

class NodeInspector : public QWidget {
    Q_OBJECT
public:
    explicit NodeInspector(QWidget* parent = nullptr);

    void setView(const NodeView& view);
    void clear(const QString& message);
    const NodeView& view() const { return m_view; }
    bool hasView() const { return m_hasView; }

    // The widgets inside, for tests and for exporting from the window.
    TokenBarChart* writeChart() const { return m_write; }
    TokenBarChart* readChart(int i) const { return i == 0 ? m_read0 : m_read1; }
    HeatmapChart* pairChart(int i) const { return i == 0 ? m_pairs0 : m_pairs1; }
    ActivationChart* activationChart() const { return m_activation; }
    QTabWidget* tabs() const { return m_tabs; }
    // The write list on screen: in context (default, D6) or per unit activation.
    const TopTokenList& shownWrite() const;
    void setPerUnitWrite(bool perUnit);
    bool perUnitWrite() const;
    // Whether the node shown is pinned: the header's button reads "Pin" or "Unpin" accordingly.
    void setPinned(bool pinned);
    QPushButton* pinButton() const { return m_pin; }
    // The "Ablate / Trace" menu of the header, filled from `actions` for the node shown.
    void setNodeActions(NodeActions* actions) { m_actions = actions; }
    QToolButton* interventionButton() const { return m_interventions; }

Q_SIGNALS:
    // The header's Pin/Unpin button was clicked for the node shown.
    void pinToggleRequested(const cs::NodeRef& node);

private:
    void showWrite();

    NodeView m_view;
    bool m_hasView = false;
    QLabel* m_title = nullptr;
    QPushButton* m_pin = nullptr;
    QToolButton* m_interventions = nullptr;
    NodeActions* m_actions = nullptr;
    QLabel* m_subtitle = nullptr;
    QLabel* m_metrics = nullptr;
    QTabWidget* m_tabs = nullptr;
    QCheckBox* m_perUnit = nullptr;
    TokenBarChart* m_write = nullptr;
    TokenBarChart* m_read0 = nullptr;
    TokenBarChart* m_read1 = nullptr;
    QWidget* m_read1Box = nullptr;
    HeatmapChart* m_pairs0 = nullptr;
    HeatmapChart* m_pairs1 = nullptr;
    QWidget* m_pairs1Box = nullptr;
    QLabel* m_pairsNote = nullptr;
    ActivationChart* m_activation = nullptr;
};

} // namespace cs::ui
