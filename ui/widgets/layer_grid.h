#pragma once
// The layer grid (product.md §3): one row per layer; column groups for all attention heads and the
// top-N neurons and autoencoder latents at the token of interest; cells colored by the chosen metric
// on a diverging map centered on zero, with a legend. Hover shows exact values, click or arrow keys
// select a node; P or the context menu pins it (pinned cells carry a corner mark).

#include "ui/engine/engine_types.h"

#include <QSet>
#include <QWidget>

#include <optional>

class QMenu;

namespace cs::ui {

class NodeActions;

class LayerGrid : public QWidget {
    Q_OBJECT
public:
    explicit LayerGrid(QWidget* parent = nullptr);

    void setSnapshot(const GridSnapshot& snapshot);
    void setTokenOfInterest(int token);
    void setMetric(Metric metric);
    void setTopN(int n);
    void setSelectedNode(const std::optional<NodeRef>& node); // outline only, does not emit
    // The names of the pinned nodes: their cells get a corner mark, and the context menu offers Unpin.
    void setPinnedNodes(const QSet<QString>& names);
    bool isPinned(const NodeRef& node) const;
    // Whether the node is ablated at its token or at every token (a dashed outline; NodeActions knows).
    bool isAblated(const NodeRef& node) const;

    Metric metric() const { return m_metric; }
    // What a cell's value is: the metric's name, or for a grid of differences "Δ NAME (ablated − baseline)".
    QString valueName() const;
    int tokenOfInterest() const { return m_token; }
    const GridSnapshot& snapshot() const { return m_snapshot; }

    struct Cell {
        QRect rect;
        GridCell cell;
        int layer = 0;
        int group = 0;  // 0 heads, 1 neurons, 2 MLP latents, 3 attention latents, 4 residual latents
        int column = 0; // position within the group
    };
    const QVector<Cell>& cells() const { return m_cells; }
    // The cell of a node shown at the current token and metric, if any (heads match by layer+head).
    const Cell* cellFor(const NodeRef& node) const;

    QSize sizeHint() const override;

    // Ablate/Trace entries in the context menu and key A (null: none).
    void setNodeActions(NodeActions* actions) { m_actions = actions; }
    // The context menu of a cell's node (Pin/Unpin, Select, Ablate, Trace), built on demand; the
    // caller owns it.
    QMenu* contextMenuFor(const NodeRef& node);

Q_SIGNALS:
    void nodeClicked(const cs::NodeRef& node);
    // P on the selected cell, or Pin/Unpin in a cell's context menu: the window pins or unpins it.
    void pinToggleRequested(const cs::NodeRef& node);

protected:
    void paintEvent(QPaintEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void keyPressEvent(QKeyEvent* event) override;
    void contextMenuEvent(QContextMenuEvent* event) override;
    bool event(QEvent* event) override;

private:
    void rebuild();
    const Cell* cellAt(const QPoint& pos) const;
    void selectCell(const Cell& cell);

    NodeActions* m_actions = nullptr;
    GridSnapshot m_snapshot;
    Metric m_metric = Metric::Activation;
    int m_token = 0;
    int m_topN = 16;
    std::optional<NodeRef> m_selected;
    QSet<QString> m_pinned;
    QSet<QString> m_pinnedHeads; // "layer:head@query" of pinned heads: a head's cell is marked whatever key it shows
    bool isMarked(const NodeRef& node) const;
    QVector<Cell> m_cells;
    QVector<QPair<QRect, QString>> m_groupHeaders;
    QRect m_legend;
    double m_maxAbs = 0;
};

// Parses what a user types into "Go to node": canonical names (mlp:5:123@7, attn:3:7@7,2) and the
// short forms "mlp 5 123", "attn 3 7", "L5/N123", "L5/H7" (at the token of interest; a head's key
// token is the one the grid shows for it). nullopt when the text is not a node.
std::optional<NodeRef> parseGoToNode(const QString& text, int tokenOfInterest, const GridSnapshot* grid = nullptr,
                                     Metric metric = Metric::Activation);

} // namespace cs::ui
