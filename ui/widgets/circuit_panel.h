#pragma once
// The circuit (product.md §4, "Pinned nodes"): the nodes the user pinned, in the order they tell the
// story, each with a note. PinListModel holds them; CircuitPanel shows them with reorder (drag and drop,
// Move up/down), remove and note editing, and reports what the user does through signals — the main
// window decides what a click, an export or "Present" means.

#include "core/session/session.h"

#include <QAbstractTableModel>
#include <QWidget>

#include <vector>

class QAction;
class QLabel;
class QPushButton;
class QToolButton;
class QTableView;

namespace cs::ui {

// The pins as a table: node name, note (editable); the vertical header numbers them (a data column
// would change in every row below an insert, which models must not do). A node is pinned at most once; its name is the
// key. Dragging rows produces kMimeType data (the pins' names and notes); dropping it moves pins that
// are already here and adds the others, so a drop never loses or duplicates a pin.
class PinListModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { NodeColumn = 0, NoteColumn, ColumnCount };
    enum Role { NameRole = Qt::UserRole + 1 };
    static inline const QString kMimeType = QStringLiteral("application/x-circuitscope-pins");

    explicit PinListModel(QObject* parent = nullptr);

    const std::vector<Session::Pin>& pins() const { return m_pins; }
    // Replaces all pins (duplicates and empty names dropped: a hand-edited session may have them).
    void setPins(std::vector<Session::Pin> pins);
    int indexOf(const QString& name) const;
    QString nameAt(int row) const;
    // Appends a pin; false when the node is already pinned.
    bool addPin(const QString& name, const QString& note = {});
    bool removePin(const QString& name);
    // Moves one pin so that it ends up at row `to` (0 ≤ to < rowCount); false if nothing moved.
    bool movePin(int from, int to);
    // Puts `pins` (in that order) before the row now at `destination` (rowCount(): at the end): pins
    // already here move (their notes replaced by the given ones), the others are added.
    void placePins(const std::vector<Session::Pin>& pins, int destination);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    bool removeRows(int row, int count, const QModelIndex& parent = {}) override;
    bool moveRows(const QModelIndex& sourceParent, int sourceRow, int count, const QModelIndex& destinationParent,
                  int destinationChild) override;

    Qt::DropActions supportedDragActions() const override;
    Qt::DropActions supportedDropActions() const override;
    QStringList mimeTypes() const override;
    QMimeData* mimeData(const QModelIndexList& indexes) const override;
    bool canDropMimeData(const QMimeData* data, Qt::DropAction action, int row, int column,
                         const QModelIndex& parent) const override;
    bool dropMimeData(const QMimeData* data, Qt::DropAction action, int row, int column, const QModelIndex& parent) override;

Q_SIGNALS:
    // Anything changed: a pin added, removed, moved, or a note edited.
    void pinsChanged();

private:
    std::vector<Session::Pin> m_pins;
};

class CircuitPanel : public QWidget {
    Q_OBJECT
public:
    explicit CircuitPanel(QWidget* parent = nullptr);

    PinListModel* model() const { return m_model; }
    QTableView* view() const { return m_view; }
    const std::vector<Session::Pin>& pins() const { return m_model->pins(); }
    void setPins(std::vector<Session::Pin> pins) { m_model->setPins(std::move(pins)); }
    bool isPinned(const QString& name) const { return m_model->indexOf(name) >= 0; }
    bool pin(const QString& name, const QString& note = {}) { return m_model->addPin(name, note); }
    bool unpin(const QString& name) { return m_model->removePin(name); }

    // The pin row the keyboard is on (-1: none), and putting it there (e.g. the node selected elsewhere).
    int currentRow() const;
    void setCurrentRow(int row);
    // Move the current pin up (-1) or down (+1), keeping it current; remove it.
    void moveCurrent(int delta);
    void removeCurrent();

    QAction* moveUpAction() const { return m_moveUp; }
    QAction* moveDownAction() const { return m_moveDown; }
    QAction* removeAction() const { return m_remove; }
    QAction* presentAction() const { return m_present; }
    QAction* exportCsvAction() const { return m_exportCsv; }
    QAction* exportPdfAction() const { return m_exportPdf; }

Q_SIGNALS:
    void pinsChanged();
    // The user clicked a pin or pressed Enter on it.
    void nodeActivated(const QString& name);
    // "Present" from the panel: start at this row.
    void presentRequested(int row);
    // "Export circuit…" as "csv" or "pdf".
    void exportRequested(const QString& format);

private:
    void updateActions();

    PinListModel* m_model = nullptr;
    QTableView* m_view = nullptr;
    QLabel* m_hint = nullptr;
    QAction* m_moveUp = nullptr;
    QAction* m_moveDown = nullptr;
    QAction* m_remove = nullptr;
    QAction* m_editNote = nullptr;
    QAction* m_present = nullptr;
    QAction* m_exportCsv = nullptr;
    QAction* m_exportPdf = nullptr;
};

} // namespace cs::ui
