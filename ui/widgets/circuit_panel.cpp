#include "ui/widgets/circuit_panel.h"

#include <QAction>
#include <QDrag>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QKeyEvent>
#include <QLabel>
#include <QMenu>
#include <QMimeData>
#include <QPushButton>
#include <QSet>
#include <QToolButton>
#include <QTableView>
#include <QVBoxLayout>

namespace cs::ui {

namespace {

QString qs(const std::string& s)
{
    return QString::fromStdString(s);
}

// The pins a drag carries, or none when the data is not ours or malformed (a drop from elsewhere
// must never crash or add garbage).
std::vector<Session::Pin> decodePins(const QMimeData* data)
{
    std::vector<Session::Pin> pins;
    if (!data || !data->hasFormat(PinListModel::kMimeType))
        return pins;
    const QJsonDocument doc = QJsonDocument::fromJson(data->data(PinListModel::kMimeType));
    for (const QJsonValue& v : doc.array()) {
        const QString name = v.toObject().value(QStringLiteral("node")).toString();
        if (!name.isEmpty())
            pins.push_back({name.toStdString(), v.toObject().value(QStringLiteral("note")).toString().toStdString()});
    }
    return pins;
}

} // namespace

PinListModel::PinListModel(QObject* parent) : QAbstractTableModel(parent)
{
    connect(this, &QAbstractItemModel::rowsInserted, this, &PinListModel::pinsChanged);
    connect(this, &QAbstractItemModel::rowsRemoved, this, &PinListModel::pinsChanged);
    connect(this, &QAbstractItemModel::rowsMoved, this, &PinListModel::pinsChanged);
    connect(this, &QAbstractItemModel::modelReset, this, &PinListModel::pinsChanged);
    connect(this, &QAbstractItemModel::dataChanged, this, &PinListModel::pinsChanged);
}

void PinListModel::setPins(std::vector<Session::Pin> pins)
{
    std::vector<Session::Pin> unique;
    QSet<QString> seen;
    for (auto& p : pins) {
        const QString name = qs(p.node);
        if (name.isEmpty() || seen.contains(name))
            continue;
        seen.insert(name);
        unique.push_back(std::move(p));
    }
    beginResetModel();
    m_pins = std::move(unique);
    endResetModel();
}

int PinListModel::indexOf(const QString& name) const
{
    const std::string n = name.toStdString();
    for (std::size_t i = 0; i < m_pins.size(); ++i) {
        if (m_pins[i].node == n)
            return static_cast<int>(i);
    }
    return -1;
}

QString PinListModel::nameAt(int row) const
{
    return row >= 0 && row < rowCount() ? qs(m_pins[static_cast<std::size_t>(row)].node) : QString();
}

bool PinListModel::addPin(const QString& name, const QString& note)
{
    if (name.isEmpty() || indexOf(name) >= 0)
        return false;
    const int row = rowCount();
    beginInsertRows({}, row, row);
    m_pins.push_back({name.toStdString(), note.toStdString()});
    endInsertRows();
    return true;
}

bool PinListModel::removePin(const QString& name)
{
    const int row = indexOf(name);
    return row >= 0 && removeRows(row, 1);
}

bool PinListModel::movePin(int from, int to)
{
    if (from < 0 || from >= rowCount() || to < 0 || to >= rowCount() || from == to)
        return false;
    // moveRows' destination is the row to insert before, counted before the move.
    return moveRows({}, from, 1, {}, to > from ? to + 1 : to);
}

void PinListModel::placePins(const std::vector<Session::Pin>& pins, int destination)
{
    int dest = std::clamp(destination, 0, rowCount());
    for (const auto& pin : pins) {
        const QString name = qs(pin.node);
        if (name.isEmpty())
            continue;
        const int from = indexOf(name);
        if (from < 0) {
            beginInsertRows({}, dest, dest);
            m_pins.insert(m_pins.begin() + dest, pin);
            endInsertRows();
            ++dest;
            continue;
        }
        if (from != dest && from + 1 != dest)
            moveRows({}, from, 1, {}, dest);
        // After the move the pin sits just before `dest` when it came from above, at `dest` otherwise.
        const int now = indexOf(name);
        dest = now + 1;
        if (m_pins[static_cast<std::size_t>(now)].note != pin.note) {
            m_pins[static_cast<std::size_t>(now)].note = pin.note;
            Q_EMIT dataChanged(index(now, NoteColumn), index(now, NoteColumn));
        }
    }
}

int PinListModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_pins.size());
}

int PinListModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant PinListModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const Session::Pin& pin = m_pins[static_cast<std::size_t>(index.row())];
    if (role == NameRole)
        return qs(pin.node);
    switch (index.column()) {
    case NodeColumn:
        if (role == Qt::DisplayRole || role == Qt::ToolTipRole)
            return qs(pin.node);
        break;
    case NoteColumn:
        if (role == Qt::DisplayRole || role == Qt::EditRole)
            return qs(pin.note);
        if (role == Qt::ToolTipRole)
            return pin.note.empty() ? tr("Double-click to write a note") : qs(pin.note);
        break;
    default:
        break;
    }
    return {};
}

QVariant PinListModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (role != Qt::DisplayRole)
        return {};
    if (orientation == Qt::Vertical)
        return section + 1; // the pin's place in the circuit
    switch (section) {
    case NodeColumn: return tr("Node");
    case NoteColumn: return tr("Note");
    default: return {};
    }
}

bool PinListModel::setData(const QModelIndex& index, const QVariant& value, int role)
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid) || index.column() != NoteColumn ||
        role != Qt::EditRole)
        return false;
    std::string note = value.toString().toStdString();
    auto& pin = m_pins[static_cast<std::size_t>(index.row())];
    if (pin.note == note)
        return true;
    pin.note = std::move(note);
    Q_EMIT dataChanged(index, index, {Qt::DisplayRole, Qt::EditRole, Qt::ToolTipRole});
    return true;
}

Qt::ItemFlags PinListModel::flags(const QModelIndex& index) const
{
    // Drops land between rows (or on the empty area), never "on" a pin.
    if (!index.isValid())
        return Qt::ItemIsDropEnabled;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemIsDragEnabled | Qt::ItemNeverHasChildren;
    if (index.column() == NoteColumn)
        f |= Qt::ItemIsEditable;
    return f;
}

bool PinListModel::removeRows(int row, int count, const QModelIndex& parent)
{
    if (parent.isValid() || row < 0 || count <= 0 || row + count > rowCount())
        return false;
    beginRemoveRows({}, row, row + count - 1);
    m_pins.erase(m_pins.begin() + row, m_pins.begin() + row + count);
    endRemoveRows();
    return true;
}

bool PinListModel::moveRows(const QModelIndex& sourceParent, int sourceRow, int count, const QModelIndex& destinationParent,
                            int destinationChild)
{
    if (sourceParent.isValid() || destinationParent.isValid() || count <= 0 || sourceRow < 0 || sourceRow + count > rowCount() ||
        destinationChild < 0 || destinationChild > rowCount())
        return false;
    if (destinationChild >= sourceRow && destinationChild <= sourceRow + count)
        return false; // onto itself: beginMoveRows refuses it too
    if (!beginMoveRows({}, sourceRow, sourceRow + count - 1, {}, destinationChild))
        return false;
    std::vector<Session::Pin> block(m_pins.begin() + sourceRow, m_pins.begin() + sourceRow + count);
    m_pins.erase(m_pins.begin() + sourceRow, m_pins.begin() + sourceRow + count);
    const int at = destinationChild > sourceRow ? destinationChild - count : destinationChild;
    m_pins.insert(m_pins.begin() + at, block.begin(), block.end());
    endMoveRows();
    return true;
}

Qt::DropActions PinListModel::supportedDragActions() const
{
    return Qt::MoveAction;
}

Qt::DropActions PinListModel::supportedDropActions() const
{
    return Qt::MoveAction | Qt::CopyAction;
}

QStringList PinListModel::mimeTypes() const
{
    return {kMimeType};
}

QMimeData* PinListModel::mimeData(const QModelIndexList& indexes) const
{
    QList<int> rows;
    for (const QModelIndex& i : indexes) {
        if (i.isValid() && i.model() == this && !rows.contains(i.row()))
            rows << i.row();
    }
    std::sort(rows.begin(), rows.end());
    QJsonArray array;
    QStringList names;
    for (int row : rows) {
        const auto& pin = m_pins[static_cast<std::size_t>(row)];
        array.append(QJsonObject{{QStringLiteral("node"), qs(pin.node)}, {QStringLiteral("note"), qs(pin.note)}});
        names << qs(pin.node);
    }
    auto* data = new QMimeData;
    data->setData(kMimeType, QJsonDocument(array).toJson(QJsonDocument::Compact));
    data->setText(names.join(u'\n')); // dropping into a text editor gives the node names
    return data;
}

bool PinListModel::canDropMimeData(const QMimeData* data, Qt::DropAction action, int, int, const QModelIndex&) const
{
    return (action == Qt::MoveAction || action == Qt::CopyAction) && data && data->hasFormat(kMimeType);
}

bool PinListModel::dropMimeData(const QMimeData* data, Qt::DropAction action, int row, int column, const QModelIndex& parent)
{
    if (action == Qt::IgnoreAction)
        return true;
    if (!canDropMimeData(data, action, row, column, parent))
        return false;
    const std::vector<Session::Pin> pins = decodePins(data);
    if (pins.empty())
        return false;
    // row -1: dropped on a pin (before it) or on the empty area below the list (at the end).
    const int destination = row >= 0 ? row : parent.isValid() ? parent.row() : rowCount();
    placePins(pins, destination);
    return true;
}

namespace {

// The pin list. Its drag moves pins inside the model (dropMimeData) and nothing else: QAbstractItemView's
// own startDrag would then remove the "moved" rows a second time.
class PinTableView : public QTableView {
public:
    using QTableView::QTableView;

protected:
    void startDrag(Qt::DropActions) override
    {
        const QModelIndexList rows = selectionModel()->selectedRows(PinListModel::NodeColumn);
        if (rows.isEmpty())
            return;
        auto* drag = new QDrag(this);
        drag->setMimeData(model()->mimeData(rows));
        drag->exec(Qt::MoveAction);
    }
};

} // namespace

CircuitPanel::CircuitPanel(QWidget* parent) : QWidget(parent), m_model(new PinListModel(this)), m_view(new PinTableView(this))
{
    m_view->setModel(m_model);
    m_view->setShowGrid(false);
    // Notes wrap, and each row is as tall as its note: a circuit has a handful of pins, and the notes
    // are the point of it.
    m_view->setWordWrap(true);
    m_view->setTextElideMode(Qt::ElideRight);
    m_view->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_view->verticalHeader()->setMinimumSectionSize(m_view->fontMetrics().height() + 8);
    m_view->setStyleSheet(QStringLiteral("QTableView::item { padding: 3px 4px; }"));
    m_view->verticalHeader()->setDefaultAlignment(Qt::AlignRight | Qt::AlignVCenter);
    m_view->setAlternatingRowColors(true);
    m_view->setSelectionMode(QAbstractItemView::SingleSelection);
    m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_view->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed | QAbstractItemView::SelectedClicked);
    m_view->setDragEnabled(true);
    m_view->setAcceptDrops(true);
    m_view->setDropIndicatorShown(true);
    m_view->setDragDropMode(QAbstractItemView::InternalMove);
    m_view->setDefaultDropAction(Qt::MoveAction);
    m_view->setContextMenuPolicy(Qt::ActionsContextMenu);
    m_view->horizontalHeader()->setStretchLastSection(true);
    m_view->horizontalHeader()->setSectionResizeMode(PinListModel::NodeColumn, QHeaderView::ResizeToContents);
    m_view->horizontalHeader()->setDefaultAlignment(Qt::AlignLeft | Qt::AlignVCenter);
    m_view->setToolTip(tr("Drag to reorder · double-click a note to edit it"));

    m_hint = new QLabel(tr("No pinned nodes yet. Pin a node with <b>P</b> in the layer grid, the node table’s context "
                           "menu, or the inspector’s <b>Pin</b> button."));
    m_hint->setWordWrap(true);
    m_hint->setTextFormat(Qt::RichText);
    m_hint->setMargin(6);

    auto action = [this](const QString& text, const QKeySequence& key, const QString& tip) {
        auto* a = new QAction(text, this);
        if (!key.isEmpty()) {
            a->setShortcut(key);
            a->setShortcutContext(Qt::WidgetWithChildrenShortcut);
        }
        a->setToolTip(key.isEmpty() ? tip : tip + QStringLiteral(" (") + key.toString(QKeySequence::NativeText) + u')');
        m_view->addAction(a);
        return a;
    };
    // F2 is the note editor's own key (EditKeyPressed); the action is for the context menu.
    m_editNote = action(tr("Edit note"), QKeySequence(), tr("Edit the note of this pin (double-click or F2)"));
    m_moveUp = action(tr("Move up"), QKeySequence(Qt::CTRL | Qt::Key_Up), tr("Move this pin one place up"));
    m_moveDown = action(tr("Move down"), QKeySequence(Qt::CTRL | Qt::Key_Down), tr("Move this pin one place down"));
    m_remove = action(tr("Remove"), QKeySequence(QKeySequence::Delete), tr("Unpin this node"));
    m_present = action(tr("Present from here"), QKeySequence(), tr("Show the circuit full screen, one pin at a time, from this pin (F5)"));
    connect(m_editNote, &QAction::triggered, this, [this] {
        if (currentRow() >= 0)
            m_view->edit(m_model->index(currentRow(), PinListModel::NoteColumn));
    });
    connect(m_moveUp, &QAction::triggered, this, [this] { moveCurrent(-1); });
    connect(m_moveDown, &QAction::triggered, this, [this] { moveCurrent(+1); });
    connect(m_remove, &QAction::triggered, this, &CircuitPanel::removeCurrent);
    connect(m_present, &QAction::triggered, this, [this] { Q_EMIT presentRequested(std::max(0, currentRow())); });
    m_exportCsv = new QAction(tr("Circuit as CSV…"), this);
    m_exportPdf = new QAction(tr("Circuit as PDF (a page per pin)…"), this);
    connect(m_exportCsv, &QAction::triggered, this, [this] { Q_EMIT exportRequested(QStringLiteral("csv")); });
    connect(m_exportPdf, &QAction::triggered, this, [this] { Q_EMIT exportRequested(QStringLiteral("pdf")); });

    auto button = [](QAction* a, const QString& text) {
        auto* b = new QToolButton;
        b->setDefaultAction(a);
        b->setText(text);
        b->setAutoRaise(false);
        return b;
    };
    auto* up = button(m_moveUp, QStringLiteral("▲"));
    auto* down = button(m_moveDown, QStringLiteral("▼"));
    auto* remove = button(m_remove, tr("Remove"));
    auto* exportButton = new QToolButton;
    exportButton->setText(tr("Export"));
    exportButton->setToolTip(tr("Save the circuit as CSV, or as a PDF with one page per pinned node"));
    exportButton->setPopupMode(QToolButton::InstantPopup);
    auto* exportMenu = new QMenu(exportButton);
    exportMenu->addAction(m_exportCsv);
    exportMenu->addAction(m_exportPdf);
    exportButton->setMenu(exportMenu);
    auto* present = new QPushButton(tr("Present"));
    present->setToolTip(tr("Show the circuit full screen, one pin at a time (F5; arrow keys step, Esc leaves)"));
    connect(present, &QPushButton::clicked, this, [this] { Q_EMIT presentRequested(std::max(0, currentRow())); });

    auto* bar = new QHBoxLayout;
    bar->setContentsMargins(0, 0, 0, 0);
    bar->addWidget(up);
    bar->addWidget(down);
    bar->addWidget(remove);
    bar->addStretch(1);
    bar->addWidget(exportButton);
    bar->addWidget(present);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_hint);
    layout->addWidget(m_view, 1);
    layout->addLayout(bar);

    connect(m_model, &PinListModel::pinsChanged, this, &CircuitPanel::pinsChanged);
    connect(m_model, &PinListModel::pinsChanged, this, &CircuitPanel::updateActions);
    connect(m_view->selectionModel(), &QItemSelectionModel::currentRowChanged, this, &CircuitPanel::updateActions);
    // Clicks and Enter select the node in the window; editing a note does not (it is the same node).
    const auto activate = [this](const QModelIndex& index) {
        if (index.isValid())
            Q_EMIT nodeActivated(m_model->nameAt(index.row()));
    };
    connect(m_view, &QTableView::clicked, this, activate);
    connect(m_view, &QTableView::activated, this, activate);
    updateActions();
}

int CircuitPanel::currentRow() const
{
    const QModelIndex current = m_view->currentIndex();
    return current.isValid() ? current.row() : -1;
}

void CircuitPanel::setCurrentRow(int row)
{
    if (row < 0 || row >= m_model->rowCount()) {
        m_view->selectionModel()->clearCurrentIndex();
        m_view->clearSelection();
        return;
    }
    m_view->selectionModel()->setCurrentIndex(m_model->index(row, PinListModel::NodeColumn),
                                              QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
}

void CircuitPanel::moveCurrent(int delta)
{
    const int row = currentRow();
    if (row < 0 || !m_model->movePin(row, row + delta))
        return;
    setCurrentRow(row + delta);
}

void CircuitPanel::removeCurrent()
{
    const int row = currentRow();
    if (row < 0)
        return;
    m_model->removeRows(row, 1);
    setCurrentRow(std::min(row, m_model->rowCount() - 1));
}

void CircuitPanel::updateActions()
{
    const int row = currentRow();
    const int n = m_model->rowCount();
    m_hint->setVisible(n == 0);
    m_moveUp->setEnabled(row > 0);
    m_moveDown->setEnabled(row >= 0 && row + 1 < n);
    m_remove->setEnabled(row >= 0);
    m_editNote->setEnabled(row >= 0);
    m_present->setEnabled(n > 0);
    m_exportCsv->setEnabled(n > 0);
    m_exportPdf->setEnabled(n > 0);
}

} // namespace cs::ui
