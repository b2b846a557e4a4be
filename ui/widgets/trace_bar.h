#pragma once
// The trace breadcrumb above the grid (product.md §3): what the run traces upstream from, as a
// question ("What caused mlp:5:123 at ·Mary?"), and Clear to go back to the logit objective.

#include "core/session/session.h"

#include <QWidget>

class QLabel;
class QPushButton;

namespace cs::ui {

// "What caused mlp:5:123 at ·Mary?", "What caused attention ·to → ·Mary of L9H9, through the key?";
// `tokens` are the prompt's display tokens (a node's token outside them is shown by its index).
QString traceQuestion(const Session::Trace& trace, const QStringList& tokens);

class TraceBar : public QWidget {
    Q_OBJECT
public:
    explicit TraceBar(QWidget* parent = nullptr);

    // nullopt hides the bar.
    void setTrace(const std::optional<Session::Trace>& trace, const QStringList& tokens);
    QString text() const;
    QPushButton* clearButton() const { return m_clear; }

Q_SIGNALS:
    void clearRequested();

private:
    QLabel* m_label;
    QPushButton* m_clear;
};

} // namespace cs::ui
