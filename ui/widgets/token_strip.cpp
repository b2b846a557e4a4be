#include "ui/widgets/token_strip.h"

#include "ui/engine/engine.h"
#include "ui/widgets/color_scale.h"

#include <QHelpEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>

#include <cmath>

namespace cs::ui {

namespace {
constexpr int kPad = 6, kGap = 4, kChipHeight = 24;
}

TokenStrip::TokenStrip(QWidget* parent) : QWidget(parent)
{
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Minimum);
    setMouseTracking(true);
}

void TokenStrip::setTokens(const QStringList& tokens)
{
    m_tokens = tokens;
    m_values.clear();
    m_current = tokens.isEmpty() ? -1 : static_cast<int>(tokens.size()) - 1;
    layoutChips();
    update();
}

void TokenStrip::setActivations(const QVector<double>& values)
{
    m_values = values.size() == m_tokens.size() ? values : QVector<double>();
    update();
}

void TokenStrip::setTokenOfInterest(int index)
{
    if (index >= 0 && index < m_tokens.size())
        m_current = index;
    update();
}

QRect TokenStrip::chipRect(int index) const
{
    return m_rects.value(index);
}

QSize TokenStrip::sizeHint() const
{
    return {600, m_height};
}

QSize TokenStrip::minimumSizeHint() const
{
    return {100, m_height};
}

void TokenStrip::resizeEvent(QResizeEvent* event)
{
    QWidget::resizeEvent(event);
    layoutChips();
}

// Chips flow left to right and wrap, like words.
void TokenStrip::layoutChips()
{
    m_rects.clear();
    const QFontMetrics fm(font());
    int x = kPad, y = kPad;
    const int maxWidth = std::max(width(), 200);
    for (const QString& t : m_tokens) {
        const int w = fm.horizontalAdvance(t.isEmpty() ? QStringLiteral(" ") : t) + 2 * kPad;
        if (x + w > maxWidth - kPad && x > kPad) {
            x = kPad;
            y += kChipHeight + kGap;
        }
        m_rects.push_back(QRect(x, y, w, kChipHeight));
        x += w + kGap;
    }
    const int h = (m_rects.isEmpty() ? kChipHeight : m_rects.back().bottom()) + kPad + 1;
    if (h != m_height) {
        m_height = h;
        updateGeometry();
    }
}

void TokenStrip::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    double maxAbs = 0;
    for (double v : m_values)
        maxAbs = std::max(maxAbs, std::abs(v));
    for (int i = 0; i < m_rects.size(); ++i) {
        const QRect r = m_rects[i];
        const QColor fill = m_values.isEmpty() ? palette().color(QPalette::Base) : divergingColor(m_values[i], maxAbs);
        p.setBrush(fill);
        p.setPen(QPen(i == m_current ? palette().color(QPalette::Highlight) : QColor(170, 170, 170), i == m_current ? 2.5 : 1.0));
        p.drawRoundedRect(QRectF(r).adjusted(0.5, 0.5, -0.5, -0.5), 5, 5);
        p.setPen(m_values.isEmpty() ? palette().color(QPalette::Text) : textColorOn(fill));
        p.drawText(r, Qt::AlignCenter, m_tokens[i]);
    }
}

int TokenStrip::chipAt(const QPoint& pos) const
{
    for (int i = 0; i < m_rects.size(); ++i) {
        if (m_rects[i].contains(pos))
            return i;
    }
    return -1;
}

void TokenStrip::mousePressEvent(QMouseEvent* event)
{
    const int i = chipAt(event->position().toPoint());
    if (i < 0)
        return;
    m_current = i;
    update();
    Q_EMIT tokenClicked(i);
}

bool TokenStrip::event(QEvent* event)
{
    if (event->type() == QEvent::ToolTip) {
        auto* help = static_cast<QHelpEvent*>(event);
        const int i = chipAt(help->pos());
        if (i >= 0) {
            QString text = QStringLiteral("token %1: %2").arg(i).arg(m_tokens[i]);
            if (!m_values.isEmpty())
                text += QStringLiteral("\nactivation %1").arg(m_values[i], 0, 'g', 6);
            QToolTip::showText(help->globalPos(), text, this);
        } else {
            QToolTip::hideText();
        }
        return true;
    }
    return QWidget::event(event);
}

ComparedTokenStrip::ComparedTokenStrip(QWidget* parent) : TokenStrip(parent)
{
    setToolTip(tr("The second prompt's tokens (colored where they differ from the first prompt's)"));
    hide();
}

void ComparedTokenStrip::follow(const EngineClient* client)
{
    connect(client, &EngineClient::runShown, this, [this](const RunResult& r) {
        setVisible(r.right.has_value());
        if (!r.right)
            return;
        setTokens(r.right->tokens);
        QVector<double> differs;
        for (int i = 0; i < r.right->tokens.size(); ++i)
            differs.push_back(i < r.tokens.size() && r.tokens[i] == r.right->tokens[i] ? 0.0 : 1.0);
        setActivations(differs);
    });
    connect(client, &EngineClient::modelOpened, this, &QWidget::hide);
}

} // namespace cs::ui
