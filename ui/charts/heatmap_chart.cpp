#include "ui/charts/heatmap_chart.h"

#include "core/export/csv.h"
#include "ui/charts/qcp.h"

#include <algorithm>
#include <cmath>

namespace cs::ui {

namespace {

constexpr int kAxisRow = 2; // below the title and subtitle rows of ChartWidget

QCPColorGradient sequentialGradient()
{
    QCPColorGradient g;
    g.clearColorStops();
    g.setColorStopAt(0.0, QColor(0xff, 0xff, 0xff));
    g.setColorStopAt(0.25, QColor(0xfc, 0xbb, 0xa1));
    g.setColorStopAt(0.5, QColor(0xfb, 0x6a, 0x4a));
    g.setColorStopAt(0.75, QColor(0xcb, 0x18, 0x1d));
    g.setColorStopAt(1.0, QColor(0x67, 0x00, 0x0d));
    return g;
}

QCPColorGradient divergingGradient()
{
    QCPColorGradient g;
    g.clearColorStops();
    g.setColorStopAt(0.0, QColor(0x05, 0x30, 0x61));
    g.setColorStopAt(0.15, QColor(0x21, 0x66, 0xac));
    g.setColorStopAt(0.3, QColor(0x92, 0xc5, 0xde));
    g.setColorStopAt(0.5, QColor(0xff, 0xff, 0xff));
    g.setColorStopAt(0.7, QColor(0xf4, 0xa5, 0x82));
    g.setColorStopAt(0.85, QColor(0xb2, 0x18, 0x2b));
    g.setColorStopAt(1.0, QColor(0x67, 0x00, 0x1f));
    return g;
}

} // namespace

HeatmapChart::HeatmapChart(QWidget* parent)
    : ChartWidget(parent)
{
    rebuild();
}

void HeatmapChart::setData(const Heatmap& heatmap, const Provenance& provenance)
{
    m_data = heatmap;
    setProvenance(provenance);
    setTitle(heatmap.title);
    rebuild();
}

QString HeatmapChart::csvMetric() const
{
    return provenance().metric.isEmpty() ? m_data.metric : provenance().metric;
}

void HeatmapChart::removeColorScale()
{
    if (!m_scale)
        return;
    plot()->plotLayout()->remove(m_scale);
    plot()->plotLayout()->simplify();
    m_scale = nullptr;
}

void HeatmapChart::rebuild()
{
    startRebuild();
    const qsizetype rows = m_data.rowLabels.size();
    const qsizetype cols = m_data.columnLabels.size();
    if (rows == 0 || cols == 0) {
        removeColorScale();
        showNoResult();
        return;
    }
    if (m_data.values.size() != rows * cols) {
        removeColorScale();
        showNoResult(QStringLiteral("No result\n(%1 values for %2 \u00D7 %3 cells)").arg(m_data.values.size()).arg(rows).arg(cols));
        return;
    }

    double lo = 0, hi = 0;
    for (const double v : std::as_const(m_data.values)) {
        if (!std::isnan(v)) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    }
    m_diverging = lo < 0;
    if (m_diverging) {
        const double m = std::max(-lo, hi);
        m_lower = -m;
        m_upper = m;
    } else {
        m_lower = 0;
        m_upper = hi > 0 ? hi : 1;
    }

    QCustomPlot* p = plot();
    QCPAxis* x = p->xAxis;
    QCPAxis* y = p->yAxis;
    auto* map = new QCPColorMap(x, y);
    map->setInterpolate(false);
    map->setTightBoundary(false);
    map->setSelectable(QCP::stNone);
    // QCPColorMap needs two cells per dimension to know a cell's extent: a single row or column is
    // drawn as two half cells with the same value.
    const int dataCols = cols == 1 ? 2 : int(cols);
    const int dataRows = rows == 1 ? 2 : int(rows);
    map->data()->setSize(dataCols, dataRows);
    map->data()->setRange(cols == 1 ? QCPRange(-0.25, 0.25) : QCPRange(0, double(cols - 1)),
                          rows == 1 ? QCPRange(-0.25, 0.25) : QCPRange(0, double(rows - 1)));
    for (int r = 0; r < dataRows; ++r) {
        for (int c = 0; c < dataCols; ++c)
            map->data()->setCell(c, r, m_data.at(rows == 1 ? 0 : r, cols == 1 ? 0 : c));
    }

    if (!m_scale) {
        m_scale = new QCPColorScale(p);
        p->plotLayout()->addElement(kAxisRow, 1, m_scale);
        m_scale->setType(QCPAxis::atRight);
        m_scale->setBarWidth(14);
        m_scale->setRangeDrag(false);
        m_scale->setRangeZoom(false);
        if (!m_margins)
            m_margins = new QCPMarginGroup(p);
        p->axisRect()->setMarginGroup(QCP::msTop | QCP::msBottom, m_margins);
        m_scale->setMarginGroup(QCP::msTop | QCP::msBottom, m_margins);
    }
    QCPAxis* scaleAxis = m_scale->axis();
    scaleAxis->setTickLabelFont(tickFont());
    scaleAxis->setLabelFont(labelFont());
    scaleAxis->setTickLabelColor(QColor(60, 60, 60));
    scaleAxis->setLabelColor(QColor(60, 60, 60));
    scaleAxis->setBasePen(QPen(QColor(120, 120, 120), 1));
    scaleAxis->setTickPen(QPen(QColor(120, 120, 120), 1));
    scaleAxis->setSubTickPen(QPen(QColor(160, 160, 160), 1));
    scaleAxis->setLabel(m_data.metric);
    map->setColorScale(m_scale);
    QCPColorGradient gradient = m_diverging ? divergingGradient() : sequentialGradient();
    gradient.setColorInterpolation(QCPColorGradient::ciRGB);
    gradient.setNanHandling(QCPColorGradient::nhTransparent);
    gradient.setLevelCount(512);
    map->setGradient(gradient);
    map->setDataRange(QCPRange(m_lower, m_upper));

    m_columnPositions.clear();
    m_columnAxisLabels.clear();
    for (qsizetype c = 0; c < cols; ++c) {
        m_columnPositions << double(c);
        m_columnAxisLabels << axisToken(m_data.columnLabels[c], 20);
    }
    m_rowPositions.clear();
    m_rowAxisLabels.clear();
    for (qsizetype r = 0; r < rows; ++r) {
        m_rowPositions << double(r);
        m_rowAxisLabels << axisToken(m_data.rowLabels[r], 20);
    }
    x->setRange(-0.5, double(cols) - 0.5);
    y->setRange(-0.5, double(rows) - 0.5);
    y->setRangeReversed(true); // first query token at the top
    for (QCPAxis* axis : {x, y}) {
        axis->grid()->setVisible(false);
        axis->setSubTicks(false);
        axis->setBasePen(Qt::NoPen);
        axis->setTickLengthOut(3);
    }
    x->setLabel(QStringLiteral("key token"));
    y->setLabel(QStringLiteral("query token"));
    // NaN cells show the axis rect's background: a faint gray, so that "no cell" differs from zero.
    p->axisRect()->setBackground(QBrush(QColor(0xf2, 0xf2, 0xf2)));

    if (m_data.highlightRow >= 0 && m_data.highlightRow < rows) {
        auto* outline = new QCPItemRect(p);
        outline->topLeft->setCoords(-0.5, m_data.highlightRow - 0.5);
        outline->bottomRight->setCoords(double(cols) - 0.5, m_data.highlightRow + 0.5);
        outline->setPen(QPen(QColor(20, 20, 20), 2));
        outline->setBrush(Qt::NoBrush);
        outline->setSelectable(false);
        outline->setClipToAxisRect(false); // the outline of the last row would lose half its width
    }
    fitTickLabels(x, m_columnPositions, m_columnAxisLabels);
    fitTickLabels(y, m_rowPositions, m_rowAxisLabels);
    showData();
}

void HeatmapChart::adaptToSize()
{
    if (!hasData())
        return;
    fitTickLabels(plot()->xAxis, m_columnPositions, m_columnAxisLabels);
    fitTickLabels(plot()->yAxis, m_rowPositions, m_rowAxisLabels);
}

QPoint HeatmapChart::cellAt(const QPointF& pos) const
{
    if (!hasData())
        return {-1, -1};
    const QCPAxisRect* rect = plot()->axisRect();
    if (!QRectF(rect->rect()).adjusted(-0.5, -0.5, 0.5, 0.5).contains(pos))
        return {-1, -1};
    const int c = int(std::lround(plot()->xAxis->pixelToCoord(pos.x())));
    const int r = int(std::lround(plot()->yAxis->pixelToCoord(pos.y())));
    if (r < 0 || r >= m_data.rowLabels.size() || c < 0 || c >= m_data.columnLabels.size())
        return {-1, -1};
    return {r, c};
}

QString HeatmapChart::hoverText(const QPointF& pos) const
{
    const QPoint cell = cellAt(pos);
    if (cell.x() < 0)
        return {};
    const int r = cell.x(), c = cell.y();
    return QStringLiteral("q: ") % displayToken(m_data.rowLabels[r]) % QStringLiteral(" (") % QString::number(r)
        % QStringLiteral(") \u2192 k: ") % displayToken(m_data.columnLabels[c]) % QStringLiteral(" (")
        % QString::number(c) % QStringLiteral("): ") % formatValue(m_data.at(r, c));
}

void HeatmapChart::writeCsvRows(CsvWriter& csv) const
{
    csv.row({"query_index", "query_token", "key_index", "key_token", "value"});
    const qsizetype rows = m_data.rowLabels.size();
    const qsizetype cols = m_data.columnLabels.size();
    if (m_data.values.size() != rows * cols)
        return;
    for (qsizetype r = 0; r < rows; ++r) {
        const std::string q = m_data.rowLabels[r].toStdString();
        for (qsizetype c = 0; c < cols; ++c)
            csv.row({std::to_string(r), q, std::to_string(c), m_data.columnLabels[c].toStdString(),
                     CsvWriter::number(m_data.at(int(r), int(c)))});
    }
}

} // namespace cs::ui
