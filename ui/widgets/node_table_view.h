#pragma once
// The node table panel (product.md §3): a filter field, a kind chooser, the sortable table and a CSV
// export of exactly the rows on screen, in screen order.
//
// Selection: when the user selects a row, nodeActivated(node) is emitted — the main window forwards it
// so that the node is selected everywhere. selectNode(node) is the way back in: it selects the matching
// row (or clears the selection when the node is not in the table) without emitting, so the two never
// feed each other. The selected node is remembered across snapshots, sorting and filtering.

#include "ui/engine/engine_types.h"

#include <QSet>
#include <QWidget>

#include <optional>

class QComboBox;
class QItemSelection;
class QLabel;
class QLineEdit;
class QMenu;
class QPushButton;
class QTableView;

namespace cs::ui {

class NodeActions;
class NodeTableModel;
class NodeTableProxy;

class NodeTableView : public QWidget {
    Q_OBJECT
public:
    explicit NodeTableView(QWidget* parent = nullptr);

    // A whole new snapshot of rows (the selected node stays selected if it is still there).
    void setRows(QVector<NodeRow> rows);
    // false without a target: the effect columns are hidden and left out of the CSV.
    void setEffectsAvailable(bool available);
    // Ablated / baseline / Δ or left / right / Δ columns for every metric (None: the plain table).
    void setComparison(Comparison comparison);
    // Written into the CSV's comment header.
    void setProvenance(const QString& model, const QString& prompt);

    // Writes the visible rows (filtered, in the current sort order) atomically: `#` comments (model,
    // prompt, metric "node table", filter, sort), a header line, then raw values (full-precision numbers,
    // raw token strings). On failure returns false, sets *error and leaves no file behind.
    bool exportCsv(const QString& path, QString* error = nullptr) const;

    // The names of the pinned nodes: a row's context menu offers Pin or Unpin accordingly.
    void setPinnedNodes(const QSet<QString>& names) { m_pinned = names; }
    // Ablate/Trace entries in the rows' context menus (null: none).
    void setNodeActions(NodeActions* actions) { m_actions = actions; }
    // The context menu of a table row (Pin/Unpin, Select, Ablate, Trace), built on demand; null for no row.
    QMenu* contextMenuForRow(int proxyRow);

    // The node whose row is selected (or was last selected, if it is filtered out), if any.
    std::optional<NodeRef> selectedNode() const { return m_selected; }

    NodeTableModel* model() const { return m_model; }
    NodeTableProxy* proxy() const { return m_proxy; }
    QTableView* tableView() const { return m_table; }
    QLineEdit* filterEdit() const { return m_filter; }
    QComboBox* kindCombo() const { return m_kind; }

public Q_SLOTS:
    void selectNode(const cs::NodeRef& node);
    void clearSelection();
    // Asks for a file name and exports; errors are shown in a message box.
    void exportCsvInteractive();

Q_SIGNALS:
    void nodeActivated(const cs::NodeRef& node);
    // "Pin"/"Unpin" in a row's context menu.
    void pinToggleRequested(const cs::NodeRef& node);

private:
    void onSelectionChanged(const QItemSelection& selected, const QItemSelection& deselected);
    void restoreSelection();
    void selectProxyRow(int proxyRow);
    void applyDefaultSort();
    void updateCount();
    void updateHiddenColumns();

    NodeTableModel* m_model = nullptr;
    NodeTableProxy* m_proxy = nullptr;
    QTableView* m_table = nullptr;
    QLineEdit* m_filter = nullptr;
    QComboBox* m_kind = nullptr;
    QLabel* m_count = nullptr;
    QPushButton* m_export = nullptr;

    NodeActions* m_actions = nullptr;
    QSet<QString> m_pinned;
    QString m_modelName;
    QString m_prompt;
    std::optional<NodeRef> m_selected;
    bool m_syncing = false;       // we are changing the selection ourselves: do not emit
    bool m_modelChanging = false; // rows are being removed/reset/re-laid out: selection changes are not the user's
    bool m_userSorted = false;    // the user clicked a header: keep their sort across snapshots
};

} // namespace cs::ui
