#include "ui/charts/figure.h"

#include "ui/charts/heatmap_chart.h"
#include "ui/charts/token_bar_chart.h"

#include <QApplication>

#include <memory>

namespace cs::ui {

bool renderFigure(const FigureData& figure, const QString& path, QString* error, ExportFormat format)
{
    auto fail = [error](const QString& message) {
        if (error)
            *error = message;
        return false;
    };
    if (!qobject_cast<QApplication*>(QCoreApplication::instance()))
        return fail(QStringLiteral("figures need a QApplication (without a display, set QT_QPA_PLATFORM=offscreen)"));
    if (!figure.size.isValid() || figure.size.width() < 100 || figure.size.height() < 100)
        return fail(QStringLiteral("figure size %1\u00D7%2 is too small").arg(figure.size.width()).arg(figure.size.height()));

    std::unique_ptr<ChartWidget> chart;
    if (std::holds_alternative<Heatmap>(figure.data))
        chart = std::make_unique<HeatmapChart>();
    else if (std::holds_alternative<ActivationSeries>(figure.data))
        chart = std::make_unique<ActivationChart>();
    else
        chart = std::make_unique<TokenBarChart>();
    chart->setAttribute(Qt::WA_DontShowOnScreen);
    chart->resize(figure.size);
    if (figure.fontPointSize > 0) {
        QFont font = chart->font();
        font.setPointSizeF(figure.fontPointSize);
        chart->setFont(font);
    }
    chart->setEmptyMessage(figure.emptyMessage);

    if (const auto* tokens = std::get_if<TopTokenList>(&figure.data))
        static_cast<TokenBarChart*>(chart.get())->setData(*tokens, figure.provenance);
    else if (const auto* heatmap = std::get_if<Heatmap>(&figure.data))
        static_cast<HeatmapChart*>(chart.get())->setData(*heatmap, figure.provenance);
    else if (const auto* series = std::get_if<ActivationSeries>(&figure.data))
        static_cast<ActivationChart*>(chart.get())->setData(*series, figure.provenance);
    else
        static_cast<TokenBarChart*>(chart.get())->setData(TopTokenList{}, figure.provenance);

    return chart->exportTo(path, format, figure.scale, error);
}

} // namespace cs::ui
