#pragma once
// Present mode (product.md §4): the circuit full screen, one pinned node at a time, in large type and
// high contrast — name, note, metrics, write and read tokens, and the token-pair map for heads and
// attention latents.
//
// Keys: Right, Down, Page Down, Space step forward; Left, Up, Page Up step back (a presentation clicker
// sends Page Up/Down); Home and End jump to the first and last pin; Esc leaves.
//
// Stepping never waits: a slide shows the view if the NodeViewCache has it, otherwise "computing…"
// while the cache asks the engine (the slide and its neighbours, the slide first); the view appears
// when it arrives.

#include "core/session/session.h"

#include <QPointer>
#include <QWidget>

#include <vector>

class QLabel;
class QStackedWidget;

namespace cs::ui {

class HeatmapChart;
class NodeViewCache;
class TokenBarChart;
struct NodeView;

class PresentView : public QWidget {
    Q_OBJECT
public:
    explicit PresentView(NodeViewCache* views, QWidget* parent = nullptr);

    // The pins to present and the one to start at (clamped to the list).
    void setPins(std::vector<Session::Pin> pins, int start = 0);
    int current() const { return m_current; }
    int count() const { return static_cast<int>(m_pins.size()); }
    void setCurrent(int index);
    void step(int delta) { setCurrent(m_current + delta); }

    // What the slide shows now: the pin's node name, and whether it waits for the engine.
    QString shownNode() const;
    bool isComputing() const;
    // The text in the body when there is no chart to show ("computing…", or the engine's error).
    QString message() const;
    TokenBarChart* writeChart() const { return m_write; }
    HeatmapChart* pairChart() const { return m_map; }

Q_SIGNALS:
    void currentChanged(int index);

protected:
    void keyPressEvent(QKeyEvent* event) override;

private:
    void refresh();
    void showView(const NodeView& view);
    void showMessage(const QString& text);

    QPointer<NodeViewCache> m_views;
    std::vector<Session::Pin> m_pins;
    int m_current = 0;
    QLabel* m_counter = nullptr;
    QLabel* m_title = nullptr;
    QLabel* m_where = nullptr;
    QLabel* m_metrics = nullptr;
    QLabel* m_note = nullptr;
    QWidget* m_noteBox = nullptr;
    QStackedWidget* m_body = nullptr;
    QLabel* m_message = nullptr;
    TokenBarChart* m_write = nullptr;
    TokenBarChart* m_read0 = nullptr;
    TokenBarChart* m_read1 = nullptr;
    HeatmapChart* m_map = nullptr;
    QLabel* m_hint = nullptr;
};

} // namespace cs::ui
