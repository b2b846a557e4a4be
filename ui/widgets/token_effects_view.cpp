#include "ui/widgets/token_effects_view.h"

#include "ui/engine/engine.h"
#include "ui/widgets/color_scale.h"

#include <QHelpEvent>
#include <QPainter>
#include <QToolTip>

#include <algorithm>
#include <cmath>
#include <utility>

namespace cs::ui {

namespace {
constexpr int kRowHeight = 16, kGap = 1;
}

TokenEffectsView::TokenEffectsView(QWidget* parent) : QWidget(parent)
{
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    setMouseTracking(true);
    hide();
}

void TokenEffectsView::follow(const EngineClient* client)
{
    connect(client, &EngineClient::runShown, this, [this](const RunResult& r) { setEffects(r.tokenEffects, r.tokens); });
    connect(client, &EngineClient::modelOpened, this, [this] { setEffects({}, {}); });
}

QString TokenEffectsView::kindLabel(const QString& kind)
{
    static const std::pair<const char16_t*, const char*> labels[] = {
        {u"embedding", QT_TR_NOOP("embeddings")}, {u"mlp", QT_TR_NOOP("neurons")},        {u"attn_from", QT_TR_NOOP("heads (query)")},
        {u"attn_to", QT_TR_NOOP("heads (key)")},  {u"mlp_sae", QT_TR_NOOP("MLP latents")}, {u"attn_sae", QT_TR_NOOP("attn latents")},
        {u"resid_sae", QT_TR_NOOP("resid latents")}};
    for (const auto& [name, label] : labels) {
        if (kind == QStringView(name))
            return tr(label);
    }
    return kind;
}

void TokenEffectsView::setEffects(const QVector<TokenEffectRow>& rows, const QStringList& tokens)
{
    m_rows = rows;
    m_tokens = tokens;
    // One scale for all rows, so that rows compare with each other.
    m_maxAbs = 0;
    for (const auto& r : m_rows)
        for (double v : r.values)
            m_maxAbs = std::max(m_maxAbs, std::abs(v));
    setVisible(!m_rows.isEmpty());
    updateGeometry();
    update();
}

int TokenEffectsView::labelWidth() const
{
    return fontMetrics().horizontalAdvance(tr("resid latents")) + 12;
}

QRect TokenEffectsView::cellRect(int row, int token) const
{
    const int n = int(m_tokens.size());
    if (n == 0 || row < 0 || row >= m_rows.size() || token < 0 || token >= n)
        return {};
    const int left = labelWidth();
    const double w = double(width() - left - 4) / n;
    return QRect(left + int(std::floor(token * w)), row * (kRowHeight + kGap), std::max(1, int(std::floor(w)) - kGap), kRowHeight);
}

QString TokenEffectsView::toolTipAt(const QPoint& pos) const
{
    for (int r = 0; r < m_rows.size(); ++r) {
        for (int t = 0; t < m_tokens.size(); ++t) {
            if (cellRect(r, t).contains(pos) && t < m_rows[r].values.size())
                return tr("%1 at %2 (%3): %4 (summed estimated total effect)")
                    .arg(kindLabel(m_rows[r].kind), m_tokens[t])
                    .arg(t)
                    .arg(QString::number(m_rows[r].values[t], 'g', 8));
        }
    }
    return {};
}

QSize TokenEffectsView::sizeHint() const
{
    return {600, int(m_rows.size()) * (kRowHeight + kGap)};
}

QSize TokenEffectsView::minimumSizeHint() const
{
    return {100, int(m_rows.size()) * (kRowHeight + kGap)};
}

void TokenEffectsView::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    QFont small = font();
    small.setPointSizeF(small.pointSizeF() * 0.85);
    p.setFont(small);
    for (int r = 0; r < m_rows.size(); ++r) {
        const QRect label(0, r * (kRowHeight + kGap), labelWidth() - 6, kRowHeight);
        p.setPen(palette().color(QPalette::WindowText));
        p.drawText(label, Qt::AlignRight | Qt::AlignVCenter, kindLabel(m_rows[r].kind));
        for (int t = 0; t < m_tokens.size() && t < m_rows[r].values.size(); ++t) {
            const QRect cell = cellRect(r, t);
            const QColor c = m_maxAbs > 0 ? divergingColor(m_rows[r].values[t], m_maxAbs) : QColor(Qt::white);
            p.fillRect(cell, c);
            p.setPen(textColorOn(c));
            p.drawText(cell.adjusted(2, 0, -2, 0), Qt::AlignCenter, p.fontMetrics().elidedText(m_tokens[t], Qt::ElideRight, cell.width() - 4));
        }
    }
}

bool TokenEffectsView::event(QEvent* event)
{
    if (event->type() == QEvent::ToolTip) {
        auto* help = static_cast<QHelpEvent*>(event);
        const QString tip = toolTipAt(help->pos());
        if (tip.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(help->globalPos(), tip, this);
        return true;
    }
    return QWidget::event(event);
}

} // namespace cs::ui
