#include "ui/widgets/next_tokens_panel.h"

#include "ui/engine/engine.h"
#include "ui/widgets/node_table_model.h"

#include <QBrush>
#include <QColor>
#include <QHeaderView>
#include <QLabel>
#include <QTableView>
#include <QVBoxLayout>

namespace cs::ui {

NextTokensModel::NextTokensModel(QObject* parent) : QAbstractTableModel(parent) {}

QString NextTokensModel::kindLabel(RowKind kind)
{
    switch (kind) {
    case RowKind::Target: return tr("target");
    case RowKind::Distractor: return tr("distractor");
    case RowKind::Top: return tr("top");
    case RowKind::Bottom: return tr("bottom");
    }
    return {};
}

void NextTokensModel::setCandidates(const NextTokensView& main, const NextTokensView& other, Comparison comparison)
{
    const auto find = [&other](int id) -> std::optional<NextTokenView> {
        for (const auto* list : {&other.targets, &other.distractors, &other.top, &other.bottom}) {
            for (const auto& t : *list) {
                if (t.id == id)
                    return t;
            }
        }
        return std::nullopt;
    };
    beginResetModel();
    m_comparison = other.isEmpty() ? Comparison::None : comparison;
    m_rows.clear();
    const auto add = [&](RowKind kind, const QVector<NextTokenView>& list) {
        for (const auto& t : list)
            m_rows.push_back({kind, t, m_comparison == Comparison::None ? std::nullopt : find(t.id)});
    };
    add(RowKind::Target, main.targets);
    add(RowKind::Distractor, main.distractors);
    add(RowKind::Top, main.top);
    add(RowKind::Bottom, main.bottom);
    m_firstTarget = main.targets.isEmpty() ? std::nullopt : std::optional<double>(main.targets.first().logit);
    endResetModel();
}

int NextTokensModel::rowCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : int(m_rows.size());
}

int NextTokensModel::columnCount(const QModelIndex& parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

std::optional<double> NextTokensModel::number(const Row& row, int column) const
{
    switch (column) {
    case LogitColumn: return row.token.logit;
    case ProbColumn: return row.token.prob;
    case VsTargetColumn:
        return m_firstTarget ? std::optional<double>(row.token.logit - *m_firstTarget) : std::nullopt;
    case OtherLogitColumn: return row.other ? std::optional<double>(row.other->logit) : std::nullopt;
    case OtherProbColumn: return row.other ? std::optional<double>(row.other->prob) : std::nullopt;
    case DeltaLogitColumn:
        if (!row.other)
            return std::nullopt;
        // Δ as in the node table: ablated − baseline, right − left.
        return m_comparison == Comparison::Baseline ? row.token.logit - row.other->logit : row.other->logit - row.token.logit;
    default: return std::nullopt;
    }
}

QVariant NextTokensModel::data(const QModelIndex& index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const Row& row = m_rows[index.row()];
    const int column = index.column();
    const bool pinned = row.kind == RowKind::Target || row.kind == RowKind::Distractor;
    switch (role) {
    case Qt::DisplayRole:
        if (column == RoleColumn)
            return kindLabel(row.kind);
        if (column == TokenColumn)
            return row.token.token;
        if (const auto v = number(row, column))
            return NodeTableModel::formatNumber(*v);
        return QStringLiteral("—");
    case SortRole:
        if (column == RoleColumn)
            return int(row.kind);
        if (column == TokenColumn)
            return row.token.token;
        if (const auto v = number(row, column))
            return *v;
        return {};
    case Qt::ToolTipRole:
        if (column == TokenColumn)
            return tr("token id %1").arg(row.token.id);
        if (const auto v = number(row, column))
            return QString::number(*v, 'g', 10);
        return {};
    case Qt::TextAlignmentRole:
        return int(column >= LogitColumn ? Qt::AlignRight | Qt::AlignVCenter : Qt::AlignLeft | Qt::AlignVCenter);
    case Qt::BackgroundRole:
        if (pinned)
            return QBrush(row.kind == RowKind::Target ? QColor(0xe6, 0xf4, 0xea) : QColor(0xfc, 0xe8, 0xe6));
        return {};
    case Qt::FontRole:
        if (pinned) {
            QFont f;
            f.setBold(true);
            return f;
        }
        return {};
    default: return {};
    }
}

QVariant NextTokensModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    const bool baseline = m_comparison == Comparison::Baseline;
    const bool compared = m_comparison != Comparison::None;
    switch (section) {
    // Short headers: the dock is narrow; the caption says which side is which.
    case RoleColumn: return QString();
    case TokenColumn: return tr("Token");
    case LogitColumn: return compared ? (baseline ? tr("logit") : tr("logit L")) : tr("logit");
    case ProbColumn: return compared ? (baseline ? tr("P") : tr("P L")) : tr("P");
    case VsTargetColumn: return tr("−tgt");
    case OtherLogitColumn: return baseline ? tr("base") : tr("logit R");
    case OtherProbColumn: return baseline ? tr("P base") : tr("P R");
    case DeltaLogitColumn: return tr("Δ");
    default: return {};
    }
}

NextTokensPanel::NextTokensPanel(QWidget* parent)
    : QWidget(parent), m_model(new NextTokensModel(this)), m_view(new QTableView(this)), m_caption(new QLabel(this))
{
    m_view->setModel(m_model);
    m_view->verticalHeader()->hide();
    m_view->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 4);
    m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_view->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_view->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_caption->setWordWrap(true);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addWidget(m_caption);
    layout->addWidget(m_view, 1);
    setCandidates({}, {}, Comparison::None, {});
}

void NextTokensPanel::follow(const EngineClient* client)
{
    connect(client, &EngineClient::runShown, this, [this](const RunResult& r) {
        const NextTokensView& other = r.comparison == Comparison::Baseline ? r.baselineNext : r.right ? r.right->next : NextTokensView();
        setCandidates(r.next, other, r.comparison, r.tokens.value(r.next.token));
    });
    connect(client, &EngineClient::modelOpened, this, [this] { setCandidates({}, {}, Comparison::None, {}); });
}

void NextTokensPanel::setCandidates(const NextTokensView& main, const NextTokensView& other, Comparison comparison, const QString& at)
{
    m_model->setCandidates(main, other, comparison);
    const bool compared = m_model->comparison() != Comparison::None;
    for (int c : {int(NextTokensModel::OtherLogitColumn), int(NextTokensModel::OtherProbColumn), int(NextTokensModel::DeltaLogitColumn)})
        m_view->setColumnHidden(c, !compared);
    m_view->setColumnHidden(NextTokensModel::VsTargetColumn, main.targets.isEmpty());
    QString caption = tr("Next token after %1").arg(at);
    if (m_model->comparison() == Comparison::Baseline)
        caption += tr(": ablated, baseline (base) and Δ = ablated − baseline; −tgt = logit − the first target's");
    else if (m_model->comparison() == Comparison::Prompts)
        caption += tr(": left prompt (L), right prompt (R) and Δ = right − left; −tgt = logit − the first target's");
    else if (!main.targets.isEmpty())
        caption += tr("; −tgt = logit − the first target's");
    m_caption->setText(main.isEmpty() ? tr("Run a prompt to see the next-token candidates.") : caption);
}

} // namespace cs::ui
