#pragma once
// "Export ▾" for a chart: PNG (at 1×, 2× or 4×), SVG, PDF or CSV through a save dialog.

#include "ui/charts/chart_widget.h"

#include <QPointer>
#include <QToolButton>

#include <functional>

class QActionGroup;

namespace cs::ui {

class ExportButton : public QToolButton {
    Q_OBJECT
public:
    explicit ExportButton(QWidget* parent = nullptr);
    explicit ExportButton(ChartWidget* chart, QWidget* parent = nullptr);

    void setChart(ChartWidget* chart);
    ChartWidget* chart() const { return m_chart; }

    double pngScale() const { return m_scale; }
    void setPngScale(double scale); // 1, 2 or 4 (2 by default)

    // Replaces the save dialog (tests, scripted exports): gets the format and a suggested path,
    // returns the chosen path or an empty string to cancel.
    using FileNameProvider = std::function<QString(ExportFormat format, const QString& suggestedPath)>;
    void setFileNameProvider(FileNameProvider provider) { m_provider = std::move(provider); }

    // Asks for a file name and exports; false when cancelled or failed.
    bool exportAs(ExportFormat format);

Q_SIGNALS:
    void exported(const QString& path);
    void exportFailed(const QString& error);

private:
    QPointer<ChartWidget> m_chart;
    QActionGroup* m_scales = nullptr;
    double m_scale = 2;
    FileNameProvider m_provider;
};

} // namespace cs::ui
