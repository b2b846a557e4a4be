#pragma once
// The trace breadcrumb above the grid (product.md §3): what the run traces upstream from, as a
// question ("What caused mlp:5:123 at ·Mary?"), and Clear to go back to the logit objective.

#include "core/analysis/node.h"
#include "core/session/session.h"

#include <QWidget>

class QComboBox;
class QLabel;
class QPushButton;

namespace cs::ui {

// "What caused mlp:5:123 at ·Mary?", "What caused attention ·to → ·Mary of L9H9, through the key?";
// `tokens` are the prompt's display tokens (a node's token outside them is shown by its index).
// A downstream node is named the same way: "onto mlp:6:2 at ·to", "onto attention ·to → ·Mary of L3H1
// (through the key)".
QString traceQuestion(const Session::Trace& trace, const QStringList& tokens);

class EngineClient;

class TraceBar : public QWidget {
    Q_OBJECT
public:
    explicit TraceBar(QWidget* parent = nullptr);

    // Follows the client: each run shown names its trace (none hides the bar), while a bar waiting for
    // a downstream node keeps waiting with the new run's tokens; a model that opens hides it.
    void follow(const EngineClient* client);

    // nullopt hides the bar.
    void setTrace(const std::optional<Session::Trace>& trace, const QStringList& tokens);
    // A value trace of `head` waiting for its downstream node (the next node clicked): says so, offers
    // how a downstream head is traced (q, k or qk), and Cancel (clearRequested).
    void setPickingDownstream(const NodeRef& head, const QStringList& tokens);
    bool isPickingDownstream() const { return m_picking; }
    // "" (Q·K, the default), "q" or "k": for a downstream node that is a head.
    QString downstreamThrough() const;
    QString text() const;
    QPushButton* clearButton() const { return m_clear; }
    QComboBox* downstreamThroughChooser() const { return m_downstreamThrough; }

Q_SIGNALS:
    void clearRequested();

private:
    QLabel* m_label;
    QPushButton* m_clear;
    QComboBox* m_downstreamThrough;
    bool m_picking = false;
    NodeRef m_pickingFor; // while picking: the head whose value is traced
};

} // namespace cs::ui
