#include "ui/widgets/node_table_view.h"

#include "core/export/csv.h"
#include "ui/widgets/node_actions.h"
#include "ui/widgets/node_table_model.h"

#include <QComboBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QMessageBox>
#include <QPushButton>
#include <QSaveFile>
#include <QScopedValueRollback>
#include <QTableView>
#include <QVBoxLayout>

namespace cs::ui {

namespace {

// Column names of the CSV export: stable, machine-friendly, independent of the UI language.
const char* csvColumnName(int column)
{
    switch (column) {
    case NodeTableModel::NameColumn: return "node";
    case NodeTableModel::KindColumn: return "kind";
    case NodeTableModel::LayerColumn: return "layer";
    case NodeTableModel::TokensColumn: return "tokens";
    case NodeTableModel::ActivationColumn: return "activation";
    case NodeTableModel::WriteMagnitudeColumn: return "write_magnitude";
    case NodeTableModel::DirectEffectColumn: return "direct_effect";
    case NodeTableModel::TotalEffectColumn: return "total_effect";
    case NodeTableModel::TopWriteTokensColumn: return "top_write_tokens";
    case NodeTableModel::ActivationOtherColumn: return "activation_other";
    case NodeTableModel::ActivationDeltaColumn: return "activation_delta";
    case NodeTableModel::WriteMagnitudeOtherColumn: return "write_magnitude_other";
    case NodeTableModel::WriteMagnitudeDeltaColumn: return "write_magnitude_delta";
    case NodeTableModel::DirectEffectOtherColumn: return "direct_effect_other";
    case NodeTableModel::DirectEffectDeltaColumn: return "direct_effect_delta";
    case NodeTableModel::TotalEffectOtherColumn: return "total_effect_other";
    case NodeTableModel::TotalEffectDeltaColumn: return "total_effect_delta";
    }
    return "";
}

std::string csvField(const NodeTableModel& model, const NodeRow& row, int sourceRow, int column)
{
    if (column != NodeTableModel::LayerColumn && NodeTableModel::isNumericColumn(column)) {
        // The model's raw value: exactly what is shown (absent where a side lacks the node or the metric).
        const QVariant v = model.index(sourceRow, column).data(NodeTableModel::SortRole);
        return v.isValid() ? CsvWriter::number(v.toDouble()) : std::string();
    }
    switch (column) {
    case NodeTableModel::NameColumn: return row.name.toStdString();
    case NodeTableModel::KindColumn:
        return row.kind.isEmpty() ? std::string(nodeKindName(row.node.kind)) : row.kind.toStdString();
    case NodeTableModel::LayerColumn: return row.layer >= 0 ? std::to_string(row.layer) : std::string();
    case NodeTableModel::TokensColumn: return row.tokens.toStdString();
    case NodeTableModel::TopWriteTokensColumn: return row.topWriteTokens.toStdString();
    }
    return {};
}

// Widest a text column gets when fitted to its contents; the tooltip shows the rest.
int maxColumnWidth(int column, const QFontMetrics& fm)
{
    switch (column) {
    case NodeTableModel::NameColumn: return fm.horizontalAdvance(QStringLiteral("attn_sae:11:32767@127,127")) + 16;
    case NodeTableModel::TokensColumn: return fm.horizontalAdvance(QLatin1Char('M')) * 18;
    default: return fm.horizontalAdvance(QLatin1Char('M')) * 14;
    }
}

} // namespace

NodeTableView::NodeTableView(QWidget* parent)
    : QWidget(parent)
    , m_model(new NodeTableModel(this))
    , m_proxy(new NodeTableProxy(this))
    , m_table(new QTableView(this))
    , m_filter(new QLineEdit(this))
    , m_kind(new QComboBox(this))
    , m_count(new QLabel(this))
    , m_export(new QPushButton(tr("Export CSV…"), this))
{
    qRegisterMetaType<cs::NodeRef>();
    m_proxy->setSourceModel(m_model);

    // Connected before the table's selection model exists, so these run first: a selection change
    // caused by rows leaving or the model resetting is never mistaken for the user's choice.
    const auto changing = [this] { m_modelChanging = true; };
    const auto changed = [this] {
        m_modelChanging = false;
        updateCount();
    };
    connect(m_proxy, &QAbstractItemModel::rowsAboutToBeRemoved, this, changing);
    connect(m_proxy, &QAbstractItemModel::rowsRemoved, this, changed);
    connect(m_proxy, &QAbstractItemModel::rowsInserted, this, changed);
    connect(m_proxy, &QAbstractItemModel::modelAboutToBeReset, this, changing);
    connect(m_proxy, &QAbstractItemModel::modelReset, this, changed);
    connect(m_proxy, &QAbstractItemModel::layoutAboutToBeChanged, this, changing);
    connect(m_proxy, &QAbstractItemModel::layoutChanged, this, changed);

    m_filter->setPlaceholderText(tr("Filter by name or token (· = space)"));
    m_filter->setClearButtonEnabled(true);
    m_filter->setMinimumWidth(fontMetrics().horizontalAdvance(QLatin1Char('M')) * 14);
    m_filter->setMaximumWidth(fontMetrics().horizontalAdvance(QLatin1Char('M')) * 30);
    m_filter->setToolTip(tr("Shows the nodes whose name, tokens or top write tokens contain this text (any case)"));

    m_kind->addItem(tr("All kinds"), -1);
    m_kind->addItem(tr("Neurons"), int(NodeKind::MlpNeuron));
    m_kind->addItem(tr("Heads"), int(NodeKind::AttnHead));
    m_kind->addItem(tr("MLP latents"), int(NodeKind::MlpSaeLatent));
    m_kind->addItem(tr("Attention latents"), int(NodeKind::AttnSaeLatent));
    m_kind->addItem(tr("Residual latents"), int(NodeKind::ResidSaeLatent));
    m_kind->addItem(tr("Embeddings"), int(NodeKind::Embedding));
    m_kind->setSizeAdjustPolicy(QComboBox::AdjustToContents);

    m_export->setToolTip(tr("Save the rows shown, in this order, as CSV"));

    m_table->setModel(m_proxy);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setAlternatingRowColors(true);
    m_table->setWordWrap(false);
    m_table->setTextElideMode(Qt::ElideRight);
    m_table->setHorizontalScrollMode(QAbstractItemView::ScrollPerPixel);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setSectionResizeMode(QHeaderView::Fixed);
    m_table->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
    QHeaderView* header = m_table->horizontalHeader();
    header->setStretchLastSection(true);
    header->setHighlightSections(false);
    header->setSectionResizeMode(QHeaderView::Interactive);
    header->setDefaultAlignment(Qt::AlignLeft | Qt::AlignVCenter);
    header->setSortIndicatorShown(true);
    m_table->setSortingEnabled(true);
    // Each metric's other side and Δ sit right after it on screen.
    for (int metric : {int(NodeTableModel::ActivationColumn), int(NodeTableModel::WriteMagnitudeColumn),
                       int(NodeTableModel::DirectEffectColumn), int(NodeTableModel::TotalEffectColumn)}) {
        int other = NodeTableModel::ActivationOtherColumn;
        while (NodeTableModel::metricColumnOf(other) != metric)
            other += 2;
        for (int k = 0; k < 2; ++k)
            header->moveSection(header->visualIndex(other + k), header->visualIndex(metric) + 1 + k);
    }
    updateHiddenColumns();
    applyDefaultSort();

    auto* bar = new QHBoxLayout;
    bar->setContentsMargins(4, 4, 4, 0);
    bar->addWidget(m_filter, 1);
    bar->addWidget(m_kind);
    bar->addStretch(1);
    bar->addWidget(m_count);
    bar->addWidget(m_export);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(bar);
    layout->addWidget(m_table, 1);

    connect(header, &QHeaderView::sectionClicked, this, [this] { m_userSorted = true; });
    connect(m_table->selectionModel(), &QItemSelectionModel::selectionChanged, this, &NodeTableView::onSelectionChanged);
    connect(m_filter, &QLineEdit::textChanged, this, [this](const QString& text) {
        {
            const QScopedValueRollback guard(m_syncing, true);
            m_proxy->setTextFilter(text);
        }
        restoreSelection();
    });
    connect(m_kind, &QComboBox::currentIndexChanged, this, [this] {
        const int kind = m_kind->currentData().toInt();
        {
            const QScopedValueRollback guard(m_syncing, true);
            m_proxy->setKindFilter(kind < 0 ? std::nullopt : std::optional<NodeKind>(NodeKind(kind)));
        }
        restoreSelection();
    });
    connect(m_export, &QPushButton::clicked, this, &NodeTableView::exportCsvInteractive);
    m_table->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(m_table, &QWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
        const QModelIndex index = m_table->indexAt(pos);
        if (!index.isValid())
            return;
        if (QMenu* menu = contextMenuForRow(index.row())) {
            menu->setAttribute(Qt::WA_DeleteOnClose);
            menu->popup(m_table->viewport()->mapToGlobal(pos));
        }
    });

    updateCount();
}

// Default sort: Total effect, descending (signed, not |value|). Total effect is the estimate of how
// much the node matters for the prediction (product.md §1, "Explore"), and the signed order puts the
// nodes pushing toward the target first; one header click flips to the ones pushing toward the
// distractor. Sorting by |value| would need an ordering the header's arrow cannot show, and every
// header click here means "by the number shown". Without a target the effect columns are hidden, so
// the default falls back to Write magnitude (a norm, already non-negative).
void NodeTableView::applyDefaultSort()
{
    const int column = m_model->effectsAvailable() ? NodeTableModel::TotalEffectColumn : NodeTableModel::WriteMagnitudeColumn;
    m_table->sortByColumn(column, Qt::DescendingOrder);
}

QMenu* NodeTableView::contextMenuForRow(int proxyRow)
{
    const QModelIndex index = m_proxy->index(proxyRow, 0);
    if (!index.isValid())
        return nullptr;
    const NodeRef node = m_model->nodeAt(m_proxy->mapToSource(index).row());
    const QString name = QString::fromStdString(node.name());
    auto* menu = new QMenu(this);
    menu->addAction(m_pinned.contains(name) ? tr("Unpin %1").arg(name) : tr("Pin %1").arg(name), this,
                    [this, node] { Q_EMIT pinToggleRequested(node); });
    menu->addAction(tr("Select %1").arg(name), this, [this, proxyRow] { m_table->selectRow(proxyRow); });
    if (m_actions)
        m_actions->populate(menu, node);
    return menu;
}

void NodeTableView::setRows(QVector<NodeRow> rows)
{
    {
        const QScopedValueRollback guard(m_syncing, true);
        m_model->setRows(std::move(rows));
        m_table->resizeColumnsToContents();
        const QFontMetrics fm = m_table->fontMetrics();
        for (int c = 0; c < NodeTableModel::ColumnCount; ++c) {
            const int widest = maxColumnWidth(c, fm);
            if (m_table->columnWidth(c) > widest)
                m_table->setColumnWidth(c, widest);
        }
    }
    restoreSelection();
    updateCount();
}

void NodeTableView::setEffectsAvailable(bool available)
{
    {
        const QScopedValueRollback guard(m_syncing, true);
        m_model->setEffectsAvailable(available);
        updateHiddenColumns();
        const int sorted = m_table->horizontalHeader()->sortIndicatorSection();
        if (!available && NodeTableModel::isEffectColumn(sorted))
            applyDefaultSort();
        else if (available && !m_userSorted)
            applyDefaultSort();
    }
    restoreSelection();
}

void NodeTableView::setComparison(Comparison comparison)
{
    {
        const QScopedValueRollback guard(m_syncing, true);
        m_model->setComparison(comparison);
        updateHiddenColumns();
    }
    restoreSelection();
}

// Effect columns (and their other side and Δ) need a target; comparison columns need a comparison.
void NodeTableView::updateHiddenColumns()
{
    for (int c = 0; c < NodeTableModel::ColumnCount; ++c) {
        const bool hidden = (NodeTableModel::isEffectColumn(c) && !m_model->effectsAvailable()) ||
                            (NodeTableModel::isComparisonColumn(c) && m_model->comparison() == Comparison::None);
        m_table->setColumnHidden(c, hidden);
    }
}

void NodeTableView::setProvenance(const QString& model, const QString& prompt)
{
    m_modelName = model;
    m_prompt = prompt;
}

void NodeTableView::selectNode(const cs::NodeRef& node)
{
    m_selected = node;
    restoreSelection();
}

void NodeTableView::clearSelection()
{
    m_selected.reset();
    const QScopedValueRollback guard(m_syncing, true);
    m_table->selectionModel()->clearSelection();
}

void NodeTableView::selectProxyRow(int proxyRow)
{
    const QScopedValueRollback guard(m_syncing, true);
    const QModelIndex index = m_proxy->index(proxyRow, 0);
    m_table->selectionModel()->setCurrentIndex(index, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
    m_table->scrollTo(index);
}

// Shows m_selected as the selected row when it is visible, no selection otherwise; never emits.
void NodeTableView::restoreSelection()
{
    const QScopedValueRollback guard(m_syncing, true);
    QItemSelectionModel* selection = m_table->selectionModel();
    if (!m_selected) {
        return;
    }
    const int sourceRow = m_model->rowOf(*m_selected);
    const QModelIndex proxyIndex = sourceRow < 0 ? QModelIndex() : m_proxy->mapFromSource(m_model->index(sourceRow, 0));
    if (!proxyIndex.isValid()) {
        selection->clearSelection();
        return;
    }
    if (!selection->isRowSelected(proxyIndex.row(), {}))
        selectProxyRow(proxyIndex.row());
}

void NodeTableView::onSelectionChanged(const QItemSelection&, const QItemSelection&)
{
    if (m_syncing || m_modelChanging)
        return;
    const QModelIndexList rows = m_table->selectionModel()->selectedRows();
    if (rows.isEmpty()) {
        m_selected.reset(); // the user deselected (Ctrl+click)
        return;
    }
    const NodeRef node = m_model->nodeAt(m_proxy->mapToSource(rows.first()).row());
    if (m_selected && *m_selected == node)
        return; // same node after a re-sort: nothing new to tell
    m_selected = node;
    Q_EMIT nodeActivated(node);
}

void NodeTableView::updateCount()
{
    const int shown = m_proxy->rowCount();
    const int total = m_model->rowCount();
    const QString nodes = total == 1 ? tr("1 node") : tr("%1 nodes").arg(total);
    m_count->setText(shown == total ? nodes : tr("%1 of %2").arg(shown).arg(nodes));
}

bool NodeTableView::exportCsv(const QString& path, QString* error) const
{
    const auto fail = [&](const QString& message) {
        if (error)
            *error = message;
        return false;
    };

    QVector<int> columns;
    for (int c = 0; c < NodeTableModel::ColumnCount; ++c) {
        if (!m_table->isColumnHidden(c))
            columns.append(c);
    }

    CsvWriter csv;
    csv.comment("model", m_modelName.toStdString());
    csv.comment("prompt", m_prompt.toStdString());
    csv.comment("metric", "node table");
    if (!m_proxy->textFilter().isEmpty() || m_proxy->kindFilter()) {
        QString filter;
        if (m_proxy->kindFilter())
            filter = QStringLiteral("kind = ") % QString::fromLatin1(nodeKindName(*m_proxy->kindFilter()));
        if (!m_proxy->textFilter().isEmpty())
            filter += (filter.isEmpty() ? QString() : QStringLiteral("; ")) % QStringLiteral("text contains \"") %
                m_proxy->textFilter() % QLatin1Char('"');
        csv.comment("filter", filter.toStdString());
    }
    const int sortColumn = m_proxy->sortColumn();
    if (sortColumn >= 0 && sortColumn < NodeTableModel::ColumnCount) {
        csv.comment("sort", std::string(csvColumnName(sortColumn)) +
                        (m_proxy->sortOrder() == Qt::AscendingOrder ? " ascending" : " descending"));
    }
    csv.comment("rows", std::to_string(m_proxy->rowCount()) + " of " + std::to_string(m_model->rowCount()));

    std::vector<std::string> fields;
    for (int c : columns)
        fields.emplace_back(csvColumnName(c));
    csv.row(fields);
    for (int r = 0; r < m_proxy->rowCount(); ++r) {
        const NodeRow& row = m_model->rowAt(m_proxy->mapToSource(m_proxy->index(r, 0)).row());
        fields.clear();
        for (int c : columns)
            fields.push_back(csvField(*m_model, row, m_proxy->mapToSource(m_proxy->index(r, 0)).row(), c));
        csv.row(fields);
    }

    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return fail(tr("Cannot write %1: %2").arg(path, file.errorString()));
    const std::string& text = csv.text();
    if (file.write(text.data(), qint64(text.size())) != qint64(text.size())) {
        const QString message = tr("Cannot write %1: %2").arg(path, file.errorString());
        file.cancelWriting();
        return fail(message);
    }
    if (!file.commit())
        return fail(tr("Cannot save %1: %2").arg(path, file.errorString()));
    return true;
}

void NodeTableView::exportCsvInteractive()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("Export node table"), QStringLiteral("node-table.csv"),
                                                      tr("CSV files (*.csv);;All files (*)"));
    if (path.isEmpty())
        return;
    QString error;
    if (!exportCsv(path, &error))
        QMessageBox::warning(this, tr("Export node table"), error);
}

} // namespace cs::ui
