#include "ui/widgets/ablations_panel.h"

#include <QHeaderView>
#include <QLabel>
#include <QTableView>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

namespace cs::ui {

AblationListModel::AblationListModel(QObject* parent) : QAbstractTableModel(parent) {}

AblationListModel::Entry AblationListModel::parse(const QString& spec)
{
    const qsizetype eq = spec.lastIndexOf(u'=');
    if (eq < 0)
        return {spec, 0};
    bool ok = false;
    const double value = spec.mid(eq + 1).toDouble(&ok);
    // A value that is not a number stays in the name, so the core's message names the whole spec.
    return ok ? Entry{spec.left(eq), value} : Entry{spec, 0};
}

QString AblationListModel::spec(const Entry& e)
{
    // 17 significant digits: the value the user typed survives the round trip through text exactly.
    return e.node + u'=' + QString::number(e.value, 'g', 17);
}

void AblationListModel::setSpecs(const QStringList& specs)
{
    beginResetModel();
    m_entries.clear();
    for (const QString& s : specs)
        m_entries.push_back(parse(s));
    endResetModel();
}

QStringList AblationListModel::specs() const
{
    QStringList out;
    for (const Entry& e : m_entries)
        out << spec(e);
    return out;
}

int AblationListModel::rowOfNode(const QString& node) const
{
    for (int i = 0; i < m_entries.size(); ++i) {
        if (m_entries[i].node == node)
            return i;
    }
    return -1;
}

int AblationListModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : int(m_entries.size());
}

int AblationListModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant AblationListModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const Entry& e = m_entries[index.row()];
    if (index.column() == RemoveColumn)
        return role == Qt::ToolTipRole ? QVariant(tr("Remove this ablation")) : QVariant();
    switch (role) {
    case Qt::DisplayRole:
        return index.column() == NodeColumn ? e.node : QString::number(e.value, 'g', 6);
    case Qt::EditRole:
        return index.column() == NodeColumn ? QVariant(e.node) : QVariant(e.value);
    case Qt::ToolTipRole:
        return index.column() == NodeColumn
                   ? tr("%1 is held at %2 (no gradient flows through it)").arg(e.node, QString::number(e.value, 'g', 17))
                   : tr("Double-click to change the value");
    default: return {};
    }
}

QVariant AblationListModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    switch (section) {
    case NodeColumn: return tr("Ablated node");
    case ValueColumn: return tr("Value");
    case RemoveColumn: return QString();
    default: return {};
    }
}

Qt::ItemFlags AblationListModel::flags(const QModelIndex& index) const
{
    if (!index.isValid())
        return Qt::NoItemFlags;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
    if (index.column() == ValueColumn)
        f |= Qt::ItemIsEditable;
    return f;
}

bool AblationListModel::setData(const QModelIndex& index, const QVariant& value, int role)
{
    if (role != Qt::EditRole || !checkIndex(index, CheckIndexOption::IndexIsValid) || index.column() != ValueColumn)
        return false;
    bool ok = false;
    const double v = value.toDouble(&ok);
    if (!ok || !std::isfinite(v))
        return false;
    if (m_entries[index.row()].value == v)
        return true;
    m_entries[index.row()].value = v;
    Q_EMIT dataChanged(index, index);
    Q_EMIT edited();
    return true;
}

bool AblationListModel::removeRows(int row, int count, const QModelIndex& parent)
{
    if (parent.isValid() || row < 0 || count <= 0 || row + count > m_entries.size())
        return false;
    beginRemoveRows(parent, row, row + count - 1);
    m_entries.remove(row, count);
    endRemoveRows();
    Q_EMIT edited();
    return true;
}

AblationsPanel::AblationsPanel(QWidget* parent)
    : QWidget(parent), m_model(new AblationListModel(this)), m_view(new QTableView(this)), m_empty(new QLabel(this))
{
    m_view->setModel(m_model);
    m_view->verticalHeader()->hide();
    m_view->horizontalHeader()->setSectionResizeMode(AblationListModel::NodeColumn, QHeaderView::Stretch);
    m_view->horizontalHeader()->setSectionResizeMode(AblationListModel::RemoveColumn, QHeaderView::ResizeToContents);
    m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_view->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed);
    m_empty->setText(tr("No ablations. Ablate a node from the grid (A, or its context menu), the table or the inspector."));
    m_empty->setWordWrap(true);
    m_empty->setStyleSheet(QStringLiteral("QLabel { color: palette(mid); padding: 6px; }"));
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addWidget(m_empty);
    layout->addWidget(m_view, 1);
    connect(m_model, &AblationListModel::edited, this, [this] {
        rebuildButtons();
        Q_EMIT ablationsEdited(m_model->specs());
    });
    rebuildButtons();
}

void AblationsPanel::setAblations(const QStringList& specs)
{
    if (specs == m_model->specs())
        return;
    m_model->setSpecs(specs);
    rebuildButtons();
}

void AblationsPanel::removeAt(int row)
{
    m_model->removeRows(row, 1);
}

// A × on each row's value cell: one click removes that ablation.
void AblationsPanel::rebuildButtons()
{
    const bool any = m_model->rowCount() > 0;
    m_empty->setVisible(!any);
    m_view->setVisible(any);
    for (int row = 0; row < m_model->rowCount(); ++row) {
        auto* remove = new QToolButton;
        remove->setText(QStringLiteral("×"));
        remove->setAutoRaise(true);
        remove->setToolTip(tr("Remove this ablation"));
        const QString node = m_model->entries()[row].node;
        connect(remove, &QToolButton::clicked, this, [this, node] {
            const int r = m_model->rowOfNode(node);
            if (r >= 0)
                removeAt(r);
        });
        m_view->setIndexWidget(m_model->index(row, AblationListModel::RemoveColumn), remove);
    }
}

} // namespace cs::ui
