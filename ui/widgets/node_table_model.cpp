#include "ui/widgets/node_table_model.h"

#include "core/export/csv.h"

#include <cmath>

namespace cs::ui {

namespace {

const QString kAbsent = QStringLiteral("—");

bool isPresent(const QVariant& v)
{
    if (!v.isValid())
        return false;
    if (v.typeId() == QMetaType::Double)
        return !std::isnan(v.toDouble());
    return true;
}

bool isNumber(const QVariant& v)
{
    switch (v.typeId()) {
    case QMetaType::Double:
    case QMetaType::Float:
    case QMetaType::Int:
    case QMetaType::UInt:
    case QMetaType::LongLong:
    case QMetaType::ULongLong:
        return true;
    default:
        return false;
    }
}

QString exact(double value)
{
    return QString::fromStdString(CsvWriter::number(value));
}

// Zero-padded so that a plain string comparison orders names by kind, layer, index, then token.
QString nameSortKey(const NodeRef& n)
{
    const auto pad = [](qint64 v) { return QStringLiteral("%1").arg(v + (qint64(1) << 32), 12, 10, QLatin1Char('0')); };
    return pad(int(n.kind)) % QLatin1Char('|') % pad(n.layer) % QLatin1Char('|') % pad(n.index) % QLatin1Char('|') %
        pad(n.token) % QLatin1Char('|') % pad(n.keyToken);
}

} // namespace

NodeTableModel::NodeTableModel(QObject* parent)
    : QAbstractTableModel(parent)
{
}

void NodeTableModel::setRows(QVector<NodeRow> rows)
{
    beginResetModel();
    m_rows = std::move(rows);
    endResetModel();
}

int NodeTableModel::rowOf(const NodeRef& node) const
{
    for (int i = 0; i < m_rows.size(); ++i) {
        if (m_rows[i].node == node)
            return i;
    }
    return -1;
}

void NodeTableModel::setEffectsAvailable(bool available)
{
    if (available == m_effectsAvailable)
        return;
    m_effectsAvailable = available;
    if (!m_rows.isEmpty())
        Q_EMIT dataChanged(index(0, DirectEffectColumn), index(m_rows.size() - 1, TotalEffectColumn));
    Q_EMIT headerDataChanged(Qt::Horizontal, DirectEffectColumn, TotalEffectColumn);
    Q_EMIT effectsAvailableChanged(available);
}

bool NodeTableModel::isNumericColumn(int column)
{
    return column == LayerColumn || column == ActivationColumn || column == WriteMagnitudeColumn ||
        isEffectColumn(column) || isComparisonColumn(column);
}

bool NodeTableModel::isEffectColumn(int column)
{
    const int metric = metricColumnOf(column);
    return metric == DirectEffectColumn || metric == TotalEffectColumn;
}

int NodeTableModel::metricColumnOf(int column)
{
    switch (column) {
    case ActivationOtherColumn:
    case ActivationDeltaColumn: return ActivationColumn;
    case WriteMagnitudeOtherColumn:
    case WriteMagnitudeDeltaColumn: return WriteMagnitudeColumn;
    case DirectEffectOtherColumn:
    case DirectEffectDeltaColumn: return DirectEffectColumn;
    case TotalEffectOtherColumn:
    case TotalEffectDeltaColumn: return TotalEffectColumn;
    default: return column;
    }
}

void NodeTableModel::setComparison(Comparison comparison)
{
    if (comparison == m_comparison)
        return;
    m_comparison = comparison;
    if (!m_rows.isEmpty())
        Q_EMIT dataChanged(index(0, 0), index(m_rows.size() - 1, ColumnCount - 1));
    Q_EMIT headerDataChanged(Qt::Horizontal, 0, ColumnCount - 1);
}

QString NodeTableModel::kindLabel(NodeKind kind)
{
    switch (kind) {
    case NodeKind::MlpNeuron: return tr("neuron");
    case NodeKind::AttnHead: return tr("head");
    case NodeKind::MlpSaeLatent: return tr("MLP latent");
    case NodeKind::AttnSaeLatent: return tr("attn latent");
    case NodeKind::ResidSaeLatent: return tr("resid latent");
    case NodeKind::Embedding: return tr("embedding");
    }
    return {};
}

QString NodeTableModel::visibleTopTokens(const QString& raw)
{
    return visibleTokens(raw, QStringLiteral(", "), QStringLiteral(" │ "));
}

QString NodeTableModel::visibleTokens(const QString& raw, const QString& separator, const QString& shownSeparator)
{
    const QStringList parts = raw.split(separator);
    QStringList shown;
    shown.reserve(parts.size());
    for (const QString& part : parts) {
        QString s;
        s.reserve(part.size());
        bool leading = true;
        for (const QChar c : part) {
            if (leading && c == QLatin1Char(' ')) {
                s += QChar(0x00B7); // ·
                continue;
            }
            leading = false;
            if (c == QLatin1Char('\n'))
                s += QChar(0x23CE); // ⏎ (as the engine shows it)
            else if (c == QLatin1Char('\r'))
                s += QChar(0x240D); // ␍
            else if (c == QLatin1Char('\t'))
                s += QChar(0x21E5); // ⇥
            else
                s += c;
        }
        shown.append(s);
    }
    return shown.join(shownSeparator.isEmpty() ? separator : shownSeparator);
}

QString NodeTableModel::formatNumber(double value)
{
    if (std::isnan(value))
        return kAbsent;
    QString s = QString::number(value, 'g', 4);
    if (s.startsWith(QLatin1Char('-')))
        s[0] = QChar(0x2212); // a real minus sign lines up with the digits
    return s;
}

int NodeTableModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : int(m_rows.size());
}

int NodeTableModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

namespace {

std::optional<double> metricOf(const NodeMetricsView& m, int metricColumn)
{
    switch (metricColumn) {
    case NodeTableModel::ActivationColumn: return m.activation;
    case NodeTableModel::WriteMagnitudeColumn: return m.writeMagnitude;
    case NodeTableModel::DirectEffectColumn: return m.directEffect;
    case NodeTableModel::TotalEffectColumn: return m.totalEffect;
    default: return std::nullopt;
    }
}

} // namespace

std::optional<double> NodeTableModel::metric(const NodeRow& row, int column) const
{
    const int metricColumn = metricColumnOf(column);
    if (metricColumn != column && m_comparison == Comparison::None)
        return std::nullopt;
    if (isEffectColumn(column) && !m_effectsAvailable)
        return std::nullopt;
    std::optional<double> main;
    if (row.hasMain)
        main = metricOf({row.activation, row.writeMagnitude, row.directEffect, row.totalEffect}, metricColumn);
    const std::optional<double> other = row.other ? metricOf(*row.other, metricColumn) : std::nullopt;
    std::optional<double> v;
    if (metricColumn == column) {
        v = main;
    } else {
        const bool isDelta = column == ActivationDeltaColumn || column == WriteMagnitudeDeltaColumn ||
                             column == DirectEffectDeltaColumn || column == TotalEffectDeltaColumn;
        if (!isDelta)
            v = other;
        else if (main && other)
            v = m_comparison == Comparison::Baseline ? *main - *other : *other - *main;
    }
    if (v && std::isnan(*v))
        v.reset();
    return v;
}

QVariant NodeTableModel::displayData(const NodeRow& row, int column) const
{
    switch (column) {
    case NameColumn: return row.name;
    case KindColumn: return kindLabel(row.node.kind);
    case LayerColumn: return row.layer >= 0 ? QString::number(row.layer) : kAbsent;
    case TokensColumn: return visibleTokens(row.tokens, QStringLiteral(" → "));
    case TopWriteTokensColumn: return visibleTopTokens(row.topWriteTokens);
    default: {
        const auto v = metric(row, column);
        return v ? formatNumber(*v) : kAbsent;
    }
    }
}

QVariant NodeTableModel::sortData(const NodeRow& row, int column) const
{
    switch (column) {
    case NameColumn: return nameSortKey(row.node);
    case KindColumn: return int(row.node.kind);
    case LayerColumn: return row.layer;
    // By position in the prompt (query, then key token): the order the user reads the prompt in.
    case TokensColumn: return qint64(row.node.token) * 1'000'000 + row.node.keyToken;
    case TopWriteTokensColumn: return row.topWriteTokens;
    default: {
        const auto v = metric(row, column);
        return v ? QVariant(*v) : QVariant();
    }
    }
}

QVariant NodeTableModel::toolTipData(const NodeRow& row, int column) const
{
    const QString header = headerData(column, Qt::Horizontal, Qt::DisplayRole).toString();
    switch (column) {
    case NameColumn: return QString(row.name % QStringLiteral(" (") % kindLabel(row.node.kind) % QLatin1Char(')'));
    case KindColumn:
        return QString(kindLabel(row.node.kind) % QStringLiteral(" (") % QString::fromLatin1(nodeKindName(row.node.kind)) %
                       QLatin1Char(')'));
    case LayerColumn: return row.layer >= 0 ? tr("Layer %1").arg(row.layer) : tr("Embedding (before layer 0)");
    case TokensColumn: return visibleTokens(row.tokens, QStringLiteral(" → "));
    case TopWriteTokensColumn: return visibleTopTokens(row.topWriteTokens);
    default: {
        if (isEffectColumn(column) && !m_effectsAvailable)
            return tr("%1 needs a target token").arg(header);
        const auto v = metric(row, column);
        return v ? QString(header % QStringLiteral(": ") % exact(*v)) : tr("%1: not computed for this node").arg(header);
    }
    }
}

QVariant NodeTableModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const NodeRow& row = m_rows[index.row()];
    const int column = index.column();
    switch (role) {
    case Qt::DisplayRole: return displayData(row, column);
    case Qt::ToolTipRole: return toolTipData(row, column);
    case Qt::TextAlignmentRole:
        return int(isNumericColumn(column) ? Qt::AlignRight | Qt::AlignVCenter : Qt::AlignLeft | Qt::AlignVCenter);
    case SortRole: return sortData(row, column);
    case NodeRole: return QVariant::fromValue(row.node);
    case KindRole: return int(row.node.kind);
    case RawTextRole:
        switch (column) {
        case NameColumn: return row.name;
        case KindColumn: return row.kind.isEmpty() ? QString::fromLatin1(nodeKindName(row.node.kind)) : row.kind;
        case TokensColumn: return row.tokens;
        case TopWriteTokensColumn: return row.topWriteTokens;
        default: return {};
        }
    default: return {};
    }
}

QVariant NodeTableModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || section < 0 || section >= ColumnCount)
        return QAbstractTableModel::headerData(section, orientation, role);
    if (role == Qt::DisplayRole && (isComparisonColumn(section) || (isNumericColumn(section) && section != LayerColumn &&
                                                                     m_comparison != Comparison::None))) {
        const QString metric = headerData(metricColumnOf(section), orientation, Qt::UserRole).toString();
        const bool baseline = m_comparison == Comparison::Baseline;
        if (!isComparisonColumn(section))
            return QString(metric % (baseline ? tr(" (ablated)") : tr(" (left)")));
        const bool isDelta = section == ActivationDeltaColumn || section == WriteMagnitudeDeltaColumn ||
                             section == DirectEffectDeltaColumn || section == TotalEffectDeltaColumn;
        if (isDelta)
            return QString(QStringLiteral("Δ ") % metric);
        return QString(metric % (baseline ? tr(" (baseline)") : tr(" (right)")));
    }
    if (role == Qt::DisplayRole || role == Qt::UserRole) { // UserRole: the plain name, whatever the comparison
        switch (section) {
        case NameColumn: return tr("Name");
        case KindColumn: return tr("Kind");
        case LayerColumn: return tr("Layer");
        case TokensColumn: return tr("Token(s)");
        case ActivationColumn: return tr("Activation");
        case WriteMagnitudeColumn: return tr("Write magnitude");
        case DirectEffectColumn: return tr("Direct effect");
        case TotalEffectColumn: return tr("Total effect");
        case TopWriteTokensColumn: return tr("Top write tokens");
        }
    } else if (role == Qt::ToolTipRole) {
        switch (section) {
        case NameColumn: return tr("Node name, as the CLI and the \"Go to node\" field accept it");
        case TokensColumn: return tr("The node's token (heads: query → key); · marks a leading space");
        case ActivationColumn: return tr("Activation at the node's token");
        case WriteMagnitudeColumn: return tr("Norm of what the node writes to the residual stream");
        case DirectEffectColumn: return tr("Direct effect on the target − distractor logit difference");
        case TotalEffectColumn: return tr("Estimated total effect (activation × gradient) on the logit difference");
        case TopWriteTokensColumn: return tr("The three tokens the node's write direction promotes most");
        case ActivationDeltaColumn:
        case WriteMagnitudeDeltaColumn:
        case DirectEffectDeltaColumn:
        case TotalEffectDeltaColumn:
            return m_comparison == Comparison::Baseline ? tr("Ablated − baseline") : tr("Right prompt − left prompt");
        default: break;
        }
    } else if (role == Qt::TextAlignmentRole) {
        return int((isNumericColumn(section) ? Qt::AlignRight : Qt::AlignLeft) | Qt::AlignVCenter);
    }
    return {};
}

// ---- NodeTableProxy ------------------------------------------------------------------------------

NodeTableProxy::NodeTableProxy(QObject* parent)
    : QSortFilterProxyModel(parent)
{
    setSortRole(NodeTableModel::SortRole);
    setDynamicSortFilter(true);
}

void NodeTableProxy::setTextFilter(const QString& text)
{
    QString t = text;
    t.replace(QChar(0x00B7), QLatin1Char(' '));
    if (t.trimmed().isEmpty())
        t.clear();
    if (t == m_text)
        return;
    m_text = t;
    invalidateRowsFilter();
}

void NodeTableProxy::setKindFilter(std::optional<NodeKind> kind)
{
    if (kind == m_kind)
        return;
    m_kind = kind;
    invalidateRowsFilter();
}

bool NodeTableProxy::filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const
{
    const QAbstractItemModel* src = sourceModel();
    if (m_kind) {
        const QVariant kind = src->index(sourceRow, NodeTableModel::NameColumn, sourceParent).data(NodeTableModel::KindRole);
        if (kind.toInt() != int(*m_kind))
            return false;
    }
    if (m_text.isEmpty())
        return true;
    for (int column : {int(NodeTableModel::NameColumn), int(NodeTableModel::TokensColumn), int(NodeTableModel::TopWriteTokensColumn)}) {
        const QString text = src->index(sourceRow, column, sourceParent).data(NodeTableModel::RawTextRole).toString();
        if (text.contains(m_text, Qt::CaseInsensitive))
            return true;
    }
    return false;
}

bool NodeTableProxy::lessThan(const QModelIndex& left, const QModelIndex& right) const
{
    const QVariant l = left.data(sortRole());
    const QVariant r = right.data(sortRole());
    const bool lp = isPresent(l);
    const bool rp = isPresent(r);
    if (!lp || !rp) {
        if (lp == rp)
            return false;
        // Absent values go last whichever way the column is sorted (a descending sort compares
        // right < left, so "last" means greatest ascending and least descending).
        return sortOrder() == Qt::AscendingOrder ? lp : !lp;
    }
    if (isNumber(l) && isNumber(r))
        return l.toDouble() < r.toDouble();
    if (l.typeId() == QMetaType::QString && r.typeId() == QMetaType::QString) {
        const int c = QString::compare(l.toString(), r.toString(), Qt::CaseInsensitive);
        return c != 0 ? c < 0 : l.toString() < r.toString();
    }
    return QSortFilterProxyModel::lessThan(left, right);
}

} // namespace cs::ui
