#include "ui/widgets/layer_grid.h"

#include "core/util/errors.h"
#include "ui/widgets/color_scale.h"

#include <QContextMenuEvent>
#include <QHelpEvent>
#include <QMenu>
#include "ui/widgets/node_actions.h"

#include <memory>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QRegularExpression>
#include <QToolTip>

#include <cmath>

namespace cs::ui {

namespace {

constexpr int kCell = 30, kCellH = 24, kGap = 2, kGroupGap = 14, kLabelWidth = 40, kHeader = 22, kLegendHeight = 52;

const char* const kGroupNames[] = {"Heads", "Neurons (top %1)", "MLP latents (top %1)", "Attn latents (top %1)", "Resid latents (top %1)"};

QString shortLabel(const GridCell& c)
{
    return QString::number(c.node.index);
}

} // namespace

LayerGrid::LayerGrid(QWidget* parent) : QWidget(parent)
{
    setFocusPolicy(Qt::StrongFocus);
    setMouseTracking(true);
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
}

void LayerGrid::setSnapshot(const GridSnapshot& snapshot)
{
    m_snapshot = snapshot;
    m_token = std::clamp(m_token, 0, std::max(0, snapshot.tokenCount - 1));
    if (!m_snapshot.has(m_metric))
        m_metric = Metric::Activation;
    rebuild();
}

QString LayerGrid::valueName() const
{
    if (m_snapshot.delta.isEmpty())
        return metricLabel(m_metric);
    return tr("Δ %1 (%2)").arg(metricLabel(m_metric), m_snapshot.delta);
}

void LayerGrid::setTokenOfInterest(int token)
{
    m_token = token;
    rebuild();
}

void LayerGrid::setMetric(Metric metric)
{
    m_metric = metric;
    rebuild();
}

void LayerGrid::setTopN(int n)
{
    m_topN = std::max(1, n);
    rebuild();
}

void LayerGrid::setSelectedNode(const std::optional<NodeRef>& node)
{
    m_selected = node;
    update();
}

namespace {

QString headKey(const NodeRef& n)
{
    return QStringLiteral("%1:%2@%3").arg(n.layer).arg(n.index).arg(n.token);
}

} // namespace

void LayerGrid::setPinnedNodes(const QSet<QString>& names)
{
    m_pinned = names;
    m_pinnedHeads.clear();
    for (const QString& name : names) {
        try {
            const NodeRef n = NodeRef::parse(name.toStdString());
            if (n.kind == NodeKind::AttnHead)
                m_pinnedHeads.insert(headKey(n));
        } catch (const InputError&) {
            // a pin that is not a node name marks nothing
        }
    }
    update();
}

bool LayerGrid::isMarked(const NodeRef& node) const
{
    return isPinned(node) || (node.kind == NodeKind::AttnHead && m_pinnedHeads.contains(headKey(node)));
}

bool LayerGrid::isAblated(const NodeRef& node) const
{
    const int n = m_snapshot.tokenCount;
    return m_actions && (m_actions->isAblated(ablationName(node, false, n)) || m_actions->isAblated(ablationName(node, true, n)));
}

bool LayerGrid::isPinned(const NodeRef& node) const
{
    return m_pinned.contains(QString::fromStdString(node.name()));
}

QSize LayerGrid::sizeHint() const
{
    if (m_cells.isEmpty())
        return {640, 360};
    QRect bounds;
    for (const auto& c : m_cells)
        bounds |= c.rect;
    return {bounds.right() + 12, bounds.bottom() + kLegendHeight + 16};
}

void LayerGrid::rebuild()
{
    m_cells.clear();
    m_groupHeaders.clear();
    m_maxAbs = 0;
    if (!m_snapshot.has(m_metric) || m_token < 0 || m_token >= m_snapshot.tokenCount) {
        setMinimumSize(0, 0);
        updateGeometry();
        update();
        return;
    }
    // Column groups that have something in any layer.
    const int groups = 5;
    QVector<int> width(groups, 0);
    for (int layer = 0; layer < m_snapshot.nLayers; ++layer) {
        const GridLayerRow& row = m_snapshot.row(m_metric, m_token, layer);
        const QVector<GridCell>* lists[] = {&row.heads, &row.neurons, &row.mlpLatents, &row.attnLatents, &row.residLatents};
        for (int g = 0; g < groups; ++g) {
            const int n = g == 0 ? static_cast<int>(lists[g]->size()) : std::min<int>(m_topN, static_cast<int>(lists[g]->size()));
            width[g] = std::max(width[g], n);
        }
    }
    QVector<int> groupX(groups, 0);
    int x = kLabelWidth;
    for (int g = 0; g < groups; ++g) {
        groupX[g] = x;
        if (width[g] == 0)
            continue;
        const int w = width[g] * (kCell + kGap);
        const QString name = QString::fromLatin1(kGroupNames[g]);
        m_groupHeaders.push_back({QRect(x, 0, std::max(w, 150), kHeader), g == 0 ? name : name.arg(m_topN)});
        x += w + kGroupGap;
    }
    for (int layer = 0; layer < m_snapshot.nLayers; ++layer) {
        const GridLayerRow& row = m_snapshot.row(m_metric, m_token, layer);
        const QVector<GridCell>* lists[] = {&row.heads, &row.neurons, &row.mlpLatents, &row.attnLatents, &row.residLatents};
        const int y = kHeader + layer * (kCellH + kGap);
        for (int g = 0; g < groups; ++g) {
            const int n = g == 0 ? static_cast<int>(lists[g]->size()) : std::min<int>(m_topN, static_cast<int>(lists[g]->size()));
            for (int i = 0; i < n; ++i) {
                const GridCell& c = (*lists[g])[i];
                m_cells.push_back({QRect(groupX[g] + i * (kCell + kGap), y, kCell, kCellH), c, layer, g, i});
                m_maxAbs = std::max(m_maxAbs, std::abs(c.value));
            }
        }
    }
    const int bottom = kHeader + m_snapshot.nLayers * (kCellH + kGap) + 10;
    m_legend = QRect(kLabelWidth, bottom, 240, 12);
    // In its scroll area the grid is never squeezed below what it draws: every column group stays
    // reachable through the scroll bars instead of being cut off at the panel's edge.
    setMinimumSize(sizeHint());
    updateGeometry();
    update();
}

const LayerGrid::Cell* LayerGrid::cellAt(const QPoint& pos) const
{
    for (const auto& c : m_cells) {
        if (c.rect.contains(pos))
            return &c;
    }
    return nullptr;
}

const LayerGrid::Cell* LayerGrid::cellFor(const NodeRef& node) const
{
    for (const auto& c : m_cells) {
        const NodeRef& n = c.cell.node;
        if (n.kind != node.kind || n.layer != node.layer || n.index != node.index)
            continue;
        if (n.kind == NodeKind::AttnHead || n.token == node.token)
            return &c;
    }
    return nullptr;
}

void LayerGrid::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    p.fillRect(rect(), palette().color(QPalette::Base));
    if (m_cells.isEmpty()) {
        p.setPen(palette().color(QPalette::PlaceholderText));
        p.drawText(rect().adjusted(12, 0, -12, 0), Qt::AlignCenter | Qt::TextWordWrap,
                   m_snapshot.nLayers == 0            ? tr("Run a prompt to see the layer grid.")
                   : !m_snapshot.has(m_metric)        ? tr("%1 needs a target token.").arg(metricLabel(m_metric))
                                                      : tr("No Δ at token %1: the right prompt has %2 tokens; choose one of "
                                                           "the first %2 in the token strip.").arg(m_token).arg(m_snapshot.comparedTokens));
        return;
    }
    QFont small = font();
    small.setPointSizeF(font().pointSizeF() * 0.8);
    p.setFont(small);
    p.setPen(palette().color(QPalette::Text));
    for (const auto& [r, text] : m_groupHeaders)
        p.drawText(r, Qt::AlignLeft | Qt::AlignVCenter, text);
    for (int layer = 0; layer < m_snapshot.nLayers; ++layer)
        p.drawText(QRect(0, kHeader + layer * (kCellH + kGap), kLabelWidth - 6, kCellH), Qt::AlignRight | Qt::AlignVCenter,
                   QStringLiteral("L%1").arg(layer));
    for (const auto& c : m_cells) {
        const QColor fill = divergingColor(c.cell.value, m_maxAbs);
        p.fillRect(c.rect, fill);
        p.setPen(textColorOn(fill));
        p.drawText(c.rect, Qt::AlignCenter, shortLabel(c.cell));
        if (isMarked(c.cell.node)) {
            // A dark corner triangle with a light edge: visible on every fill of the diverging map.
            const QPoint tr = c.rect.topRight() + QPoint(1, 0);
            const QPolygon corner({tr, tr + QPoint(-9, 0), tr + QPoint(0, 9)});
            p.setPen(QPen(Qt::white, 1));
            p.setBrush(QColor(20, 20, 20));
            p.drawPolygon(corner);
            p.setBrush(Qt::NoBrush);
        }
        if (isAblated(c.cell.node)) {
            // Ablated at this token or at every token: a dashed outline, distinct from the selection's.
            p.setPen(QPen(QColor(20, 20, 20), 2, Qt::DashLine));
            p.drawRect(c.rect.adjusted(1, 1, -1, -1));
        }
    }
    if (m_selected) {
        if (const Cell* c = cellFor(*m_selected)) {
            p.setPen(QPen(palette().color(QPalette::Highlight), 3));
            p.setBrush(Qt::NoBrush);
            p.drawRect(c->rect.adjusted(-1, -1, 1, 1));
        }
    }
    // Legend: the diverging scale with its end values.
    QLinearGradient grad(m_legend.topLeft(), m_legend.topRight());
    grad.setColorAt(0, divergingColor(-1, 1));
    grad.setColorAt(0.5, divergingColor(0, 1));
    grad.setColorAt(1, divergingColor(1, 1));
    p.fillRect(m_legend, grad);
    p.setPen(QColor(150, 150, 150));
    p.drawRect(m_legend);
    p.setPen(palette().color(QPalette::Text));
    const QRect labels(m_legend.left() - 40, m_legend.bottom() + 2, m_legend.width() + 80, 16);
    p.drawText(labels, Qt::AlignLeft, QString::number(-m_maxAbs, 'g', 3));
    p.drawText(labels, Qt::AlignHCenter, QStringLiteral("0"));
    p.drawText(labels, Qt::AlignRight, QString::number(m_maxAbs, 'g', 3));
    // Under the scale, not beside it: beside it a narrow panel clipped the caption.
    p.drawText(QRect(m_legend.left(), labels.bottom() + 1, width() - m_legend.left(), 18), Qt::AlignLeft | Qt::AlignVCenter,
               tr("%1 at token %2").arg(valueName()).arg(m_token));
}

void LayerGrid::selectCell(const Cell& cell)
{
    m_selected = cell.cell.node;
    update();
    Q_EMIT nodeClicked(cell.cell.node);
}

void LayerGrid::mousePressEvent(QMouseEvent* event)
{
    setFocus();
    if (const Cell* c = cellAt(event->position().toPoint()))
        selectCell(*c);
}

void LayerGrid::keyPressEvent(QKeyEvent* event)
{
    const Cell* current = m_selected ? cellFor(*m_selected) : nullptr;
    if (event->key() == Qt::Key_P && !(event->modifiers() & (Qt::ControlModifier | Qt::AltModifier | Qt::MetaModifier))) {
        // The node as selected (a head at the key token chosen), not the cell's default, is what gets pinned.
        if (m_selected)
            Q_EMIT pinToggleRequested(*m_selected);
        event->accept();
        return;
    }
    if (event->key() == Qt::Key_A && !(event->modifiers() & (Qt::ControlModifier | Qt::AltModifier | Qt::MetaModifier))) {
        if (m_selected && m_actions)
            m_actions->toggleAblation(*m_selected);
        event->accept();
        return;
    }
    if (m_cells.isEmpty() || !(event->key() == Qt::Key_Left || event->key() == Qt::Key_Right || event->key() == Qt::Key_Up ||
                               event->key() == Qt::Key_Down)) {
        QWidget::keyPressEvent(event);
        return;
    }
    if (!current) {
        selectCell(m_cells.first());
        return;
    }
    // Left/right walk the cells of a layer across groups; up/down keep the group and column.
    const int i = static_cast<int>(current - m_cells.data());
    const Cell* next = nullptr;
    if (event->key() == Qt::Key_Left && i > 0 && m_cells[i - 1].layer == current->layer)
        next = &m_cells[i - 1];
    else if (event->key() == Qt::Key_Right && i + 1 < m_cells.size() && m_cells[i + 1].layer == current->layer)
        next = &m_cells[i + 1];
    else if (event->key() == Qt::Key_Up || event->key() == Qt::Key_Down) {
        const int layer = current->layer + (event->key() == Qt::Key_Up ? -1 : 1);
        for (const auto& c : m_cells) {
            if (c.layer == layer && c.group == current->group && c.column <= current->column)
                next = &c; // same column, or the last one of a shorter row
        }
    }
    if (next)
        selectCell(*next);
    event->accept();
}

void LayerGrid::contextMenuEvent(QContextMenuEvent* event)
{
    const Cell* c = cellAt(event->pos());
    if (!c) {
        QWidget::contextMenuEvent(event);
        return;
    }
    std::unique_ptr<QMenu> menu(contextMenuFor(c->cell.node));
    menu->exec(event->globalPos());
}

QMenu* LayerGrid::contextMenuFor(const NodeRef& node)
{
    const QString name = QString::fromStdString(node.name());
    auto* menu = new QMenu(this);
    menu->addAction(isPinned(node) ? tr("Unpin %1").arg(name) : tr("Pin %1").arg(name), this, [this, node] {
        Q_EMIT pinToggleRequested(node);
    })->setShortcut(QKeySequence(Qt::Key_P));
    menu->addAction(tr("Select %1").arg(name), this, [this, node] {
        if (const Cell* cell = cellFor(node))
            selectCell(*cell);
    });
    if (m_actions)
        m_actions->populate(menu, node);
    return menu;
}

bool LayerGrid::event(QEvent* event)
{
    if (event->type() == QEvent::ToolTip) {
        auto* help = static_cast<QHelpEvent*>(event);
        if (const Cell* c = cellAt(help->pos())) {
            QToolTip::showText(help->globalPos(),
                               QStringLiteral("%1\n%2 = %3").arg(QString::fromStdString(c->cell.node.name()), valueName())
                                   .arg(c->cell.value, 0, 'g', 6),
                               this);
        } else {
            QToolTip::hideText();
        }
        return true;
    }
    return QWidget::event(event);
}

std::optional<NodeRef> parseGoToNode(const QString& text, int token, const GridSnapshot* grid, Metric metric)
{
    const QString t = text.trimmed();
    if (t.isEmpty())
        return std::nullopt;
    try {
        if (t.contains(u'@'))
            return NodeRef::parse(t.toStdString());
    } catch (const InputError&) {
        return std::nullopt;
    }
    static const QRegularExpression words(QStringLiteral(R"(^(mlp|attn|mlp_sae|attn_sae|resid_sae)\s+(\d+)\s+(\d+)$)"),
                                          QRegularExpression::CaseInsensitiveOption);
    static const QRegularExpression compact(QStringLiteral(R"(^L(\d+)\s*/\s*([NH])(\d+)$)"), QRegularExpression::CaseInsensitiveOption);
    NodeRef n;
    n.token = token;
    if (const auto m = words.match(t); m.hasMatch()) {
        n.kind = *nodeKindFromName(m.captured(1).toLower().toStdString());
        n.layer = m.captured(2).toInt();
        n.index = m.captured(3).toInt();
    } else if (const auto m = compact.match(t); m.hasMatch()) {
        n.kind = m.captured(2).toUpper() == u"N" ? NodeKind::MlpNeuron : NodeKind::AttnHead;
        n.layer = m.captured(1).toInt();
        n.index = m.captured(3).toInt();
    } else {
        return std::nullopt;
    }
    if (n.kind == NodeKind::AttnHead) {
        n.keyToken = token;
        if (grid && grid->has(metric) && token < grid->tokenCount && n.layer < grid->nLayers) {
            const auto& heads = grid->row(metric, token, n.layer).heads;
            if (n.index < heads.size())
                n.keyToken = heads[n.index].node.keyToken;
        }
    }
    return n;
}

} // namespace cs::ui
