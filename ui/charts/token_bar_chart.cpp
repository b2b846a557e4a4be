#include "ui/charts/token_bar_chart.h"

#include "core/export/csv.h"
#include "ui/charts/qcp.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace cs::ui {

TokenBarChart::TokenBarChart(QWidget* parent)
    : ChartWidget(parent)
{
    rebuild();
}

void TokenBarChart::setData(const TopTokenList& tokens, const Provenance& provenance)
{
    m_data = tokens;
    setProvenance(provenance);
    setTitle(tokens.title);
    rebuild();
}

void TokenBarChart::rebuild()
{
    startRebuild();
    m_bars.clear();
    const qsizetype nTop = m_data.top.size();
    const qsizetype nBottom = m_data.bottom.size();
    if (nTop + nBottom == 0) {
        showNoResult();
        return;
    }
    // Descending from the top: top[0] (largest) first; bottom[0] (most negative) last, a gap between.
    for (qsizetype i = 0; i < nTop; ++i)
        m_bars.push_back({double(i), m_data.top[i], true, int(i + 1)});
    const double gap = nTop > 0 ? 0.6 : 0.0;
    for (qsizetype j = 0; j < nBottom; ++j)
        m_bars.push_back({double(nTop) + gap + double(nBottom - 1 - j), m_data.bottom[j], false, int(j + 1)});

    QCustomPlot* p = plot();
    QCPAxis* keyAxis = p->yAxis;
    QCPAxis* valueAxis = p->xAxis;
    auto* positive = new QCPBars(keyAxis, valueAxis);
    auto* negative = new QCPBars(keyAxis, valueAxis);
    for (auto [bars, fill, line] : {std::tuple{positive, chartcolors::positiveFill(), chartcolors::positiveLine()},
                                    std::tuple{negative, chartcolors::negativeFill(), chartcolors::negativeLine()}}) {
        bars->setWidth(0.72);
        bars->setBrush(fill);
        bars->setPen(QPen(line, 1));
        bars->setSelectable(QCP::stNone);
    }
    double lo = 0, hi = 0;
    m_keyPositions.clear();
    m_keyLabels.clear();
    for (const Bar& bar : std::as_const(m_bars)) {
        const double v = bar.entry.value;
        if (std::isfinite(v)) {
            (v < 0 ? negative : positive)->addData(bar.key, v);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        m_keyPositions << bar.key;
        m_keyLabels << axisToken(bar.entry.token, 24);
    }
    keyAxis->setRangeReversed(true);
    double lastKey = 0;
    for (const Bar& bar : std::as_const(m_bars))
        lastKey = std::max(lastKey, bar.key);
    keyAxis->setRange(-0.6, lastKey + 0.6);
    keyAxis->grid()->setVisible(false);
    keyAxis->setTickPen(Qt::NoPen);
    keyAxis->setSubTicks(false);
    keyAxis->setBasePen(Qt::NoPen);

    // Zero always visible; symmetric around it when both signs are present.
    double from = lo, to = hi;
    if (lo < 0 && hi > 0) {
        const double m = std::max(-lo, hi);
        from = -m;
        to = m;
    }
    if (from == to)
        to = from + 1;
    const double pad = 0.06 * (to - from);
    valueAxis->setRange(from < 0 ? from - pad : 0, to > 0 ? to + pad : 0);
    valueAxis->setLabel(provenance().metric);
    fitTickLabels(keyAxis, m_keyPositions, m_keyLabels);
    showData();
}

void TokenBarChart::adaptToSize()
{
    if (hasData())
        fitTickLabels(plot()->yAxis, m_keyPositions, m_keyLabels);
}

QString TokenBarChart::hoverText(const QPointF& pos) const
{
    const QCPAxisRect* rect = plot()->axisRect();
    if (pos.y() < rect->top() || pos.y() > rect->bottom() || pos.x() > rect->right())
        return {};
    const double key = plot()->yAxis->pixelToCoord(pos.y());
    for (const Bar& bar : m_bars) {
        if (std::abs(bar.key - key) <= 0.5) {
            const int listSize = int(bar.top ? m_data.top.size() : m_data.bottom.size());
            return displayToken(bar.entry.token) % QStringLiteral("   (id ") % QString::number(bar.entry.id)
                % QStringLiteral(")\nvalue: ") % formatValue(bar.entry.value) % QLatin1Char('\n')
                % (bar.top ? QStringLiteral("top ") : QStringLiteral("bottom ")) % QString::number(bar.rank)
                % QStringLiteral(" of ") % QString::number(listSize);
        }
    }
    return {};
}

void TokenBarChart::writeCsvRows(CsvWriter& csv) const
{
    csv.row({"rank", "list", "id", "token", "value"});
    auto write = [&csv](const QVector<TokenValue>& list, const char* name) {
        for (qsizetype i = 0; i < list.size(); ++i)
            csv.row({std::to_string(i + 1), name, std::to_string(list[i].id), list[i].token.toStdString(),
                     CsvWriter::number(list[i].value)});
    };
    write(m_data.top, "top");
    write(m_data.bottom, "bottom");
}

} // namespace cs::ui
