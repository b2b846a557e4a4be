#include "ui/charts/activation_chart.h"

#include "core/export/csv.h"
#include "ui/charts/qcp.h"

#include <algorithm>
#include <cmath>

namespace cs::ui {

ActivationChart::ActivationChart(QWidget* parent)
    : ChartWidget(parent)
{
    rebuild();
}

void ActivationChart::setData(const QStringList& tokens, const QVector<double>& values, const Provenance& provenance,
                              const QString& title)
{
    const qsizetype n = std::min(tokens.size(), values.size());
    m_data.title = title;
    m_data.tokens = tokens.mid(0, n);
    m_data.values = values.mid(0, n);
    setProvenance(provenance);
    setTitle(title);
    rebuild();
}

void ActivationChart::setData(const ActivationSeries& series, const Provenance& provenance)
{
    setData(series.tokens, series.values, provenance, series.title);
}

void ActivationChart::rebuild()
{
    startRebuild();
    m_axisLabels.clear();
    m_positions.clear();
    const qsizetype n = m_data.tokens.size();
    if (n == 0) {
        showNoResult();
        return;
    }
    QCustomPlot* p = plot();
    QCPAxis* keyAxis = p->xAxis;
    QCPAxis* valueAxis = p->yAxis;
    auto* positive = new QCPBars(keyAxis, valueAxis);
    auto* negative = new QCPBars(keyAxis, valueAxis);
    positive->setBrush(chartcolors::positiveFill());
    positive->setPen(QPen(chartcolors::positiveLine(), 1));
    negative->setBrush(chartcolors::negativeFill());
    negative->setPen(QPen(chartcolors::negativeLine(), 1));
    double lo = 0, hi = 0;
    for (qsizetype i = 0; i < n; ++i) {
        const double v = m_data.values[i];
        if (std::isfinite(v)) {
            (v < 0 ? negative : positive)->addData(double(i), v);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        m_axisLabels << axisToken(m_data.tokens[i], 20);
        m_positions << double(i);
    }
    for (QCPBars* bars : {positive, negative}) {
        bars->setWidth(0.72);
        bars->setSelectable(QCP::stNone);
    }
    keyAxis->setRange(-0.6, double(n) - 0.4);
    keyAxis->grid()->setVisible(false);
    keyAxis->setSubTicks(false);
    keyAxis->setTickLengthOut(3);
    keyAxis->setBasePen(Qt::NoPen);
    keyAxis->setLabel(QStringLiteral("prompt token"));

    if (lo == hi)
        hi = lo + 1;
    const double pad = 0.08 * (hi - lo);
    valueAxis->setRange(lo < 0 ? lo - pad : 0, hi > 0 ? hi + pad : 0);
    valueAxis->setLabel(provenance().metric.isEmpty() ? QStringLiteral("activation") : provenance().metric);
    fitTickLabels(keyAxis, m_positions, m_axisLabels);
    showData();
}

void ActivationChart::adaptToSize()
{
    if (hasData())
        fitTickLabels(plot()->xAxis, m_positions, m_axisLabels);
}

int ActivationChart::indexAt(const QPointF& pos) const
{
    if (!hasData())
        return -1;
    const QCPAxisRect* rect = plot()->axisRect();
    if (pos.x() < rect->left() || pos.x() > rect->right() || pos.y() < rect->top())
        return -1;
    const int i = int(std::lround(plot()->xAxis->pixelToCoord(pos.x())));
    return i >= 0 && i < m_data.tokens.size() ? i : -1;
}

QString ActivationChart::hoverText(const QPointF& pos) const
{
    const int i = indexAt(pos);
    if (i < 0)
        return {};
    return displayToken(m_data.tokens[i]) % QStringLiteral("   (token ") % QString::number(i)
        % QStringLiteral(")\nvalue: ") % formatValue(m_data.values[i]);
}

void ActivationChart::writeCsvRows(CsvWriter& csv) const
{
    csv.row({"index", "token", "value"});
    for (qsizetype i = 0; i < m_data.tokens.size(); ++i)
        csv.row({std::to_string(i), m_data.tokens[i].toStdString(), CsvWriter::number(m_data.values[i])});
}

} // namespace cs::ui
