#pragma once
// Top and bottom tokens of a direction (write tokens, Q-/K-read tokens; product.md §3) as a horizontal
// bar chart: one bar per token, positive values red and negative blue, in descending order from the
// top, token strings on the y axis with their spaces made visible.

#include "ui/charts/chart_widget.h"

namespace cs::ui {

class TokenBarChart : public ChartWidget {
    Q_OBJECT
public:
    explicit TokenBarChart(QWidget* parent = nullptr);

    // Empty lists show the "no result" state.
    void setData(const TopTokenList& tokens, const Provenance& provenance);
    const TopTokenList& data() const { return m_data; }

    // Where a bar sits on the key (y) axis: top[i] first, then bottom[] from the least negative down.
    struct Bar {
        double key = 0;
        TokenValue entry;
        bool top = true; // from TopTokenList::top (else ::bottom)
        int rank = 0;    // 1-based within its list
    };
    const QVector<Bar>& bars() const { return m_bars; }

protected:
    void rebuild() override;
    QString hoverText(const QPointF& pos) const override;
    void writeCsvRows(CsvWriter& csv) const override;
    void adaptToSize() override;

private:
    TopTokenList m_data;
    QVector<Bar> m_bars;
    QVector<double> m_keyPositions;
    QStringList m_keyLabels;
};

} // namespace cs::ui
