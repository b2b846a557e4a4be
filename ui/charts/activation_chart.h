#pragma once
// A node's activation at every prompt token (product.md §3, "Activation by token"): one vertical bar
// per token in prompt order, positive red and negative blue, token strings on the x axis (turned on
// their side when they would not fit).

#include "ui/charts/chart_widget.h"

namespace cs::ui {

// The data of an ActivationChart, as one value (for FigureData).
struct ActivationSeries {
    QString title;
    QStringList tokens;
    QVector<double> values;
};

class ActivationChart : public ChartWidget {
    Q_OBJECT
public:
    explicit ActivationChart(QWidget* parent = nullptr);

    // values[i] belongs to tokens[i]; extra entries of the longer list are ignored. No tokens shows
    // the "no result" state.
    void setData(const QStringList& tokens, const QVector<double>& values, const Provenance& provenance,
                 const QString& title);
    void setData(const ActivationSeries& series, const Provenance& provenance);
    const ActivationSeries& data() const { return m_data; }

    // The token index under a point in plot pixels, or -1.
    int indexAt(const QPointF& pos) const;

protected:
    void rebuild() override;
    QString hoverText(const QPointF& pos) const override;
    void writeCsvRows(CsvWriter& csv) const override;
    void adaptToSize() override;

private:
    ActivationSeries m_data;
    QVector<double> m_positions;
    QStringList m_axisLabels;
};

} // namespace cs::ui
