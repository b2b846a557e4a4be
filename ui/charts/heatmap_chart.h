#pragma once
// A matrix over token pairs (attention probabilities, per-pair write magnitude, token-pair attribution;
// product.md §3): rows are query tokens top to bottom in prompt order, columns key tokens, a color
// scale legend named after the metric. Non-negative data uses a sequential scale from white, anything
// with negative values a blue–white–red scale symmetric around zero. NaN cells stay blank.

#include "ui/charts/chart_widget.h"

class QCPColorScale;
class QCPMarginGroup;

namespace cs::ui {

class HeatmapChart : public ChartWidget {
    Q_OBJECT
public:
    explicit HeatmapChart(QWidget* parent = nullptr);

    // Empty or malformed data (values.size() != rows × columns) shows the "no result" state.
    void setData(const Heatmap& heatmap, const Provenance& provenance);
    const Heatmap& data() const { return m_data; }

    bool isDiverging() const { return m_diverging; }
    // The value range the colors span: [0, max] or [−max|v|, +max|v|].
    double colorRangeLower() const { return m_lower; }
    double colorRangeUpper() const { return m_upper; }
    // The cell (row, column) under a point in plot pixels, or {-1, -1}.
    QPoint cellAt(const QPointF& pos) const;

protected:
    void rebuild() override;
    QString hoverText(const QPointF& pos) const override;
    void writeCsvRows(CsvWriter& csv) const override;
    QString csvMetric() const override;
    void adaptToSize() override;

private:
    void removeColorScale();

    Heatmap m_data;
    QCPColorScale* m_scale = nullptr;
    QCPMarginGroup* m_margins = nullptr;
    QVector<double> m_columnPositions, m_rowPositions;
    QStringList m_columnAxisLabels, m_rowAxisLabels;
    bool m_diverging = false;
    double m_lower = 0;
    double m_upper = 1;
};

} // namespace cs::ui
