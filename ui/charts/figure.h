#pragma once
// Headless figures for `circuitscope-cli figure` (product.md §5): the same charts and exports as the
// node inspector, drawn without showing a window. Needs a QApplication (QT_QPA_PLATFORM=offscreen
// works without a display).

#include "ui/charts/activation_chart.h"
#include "ui/charts/chart_widget.h"

#include <QSize>

#include <variant>

namespace cs::ui {

struct FigureData {
    // One of the three chart kinds; monostate draws the "no result" state.
    std::variant<std::monostate, TopTokenList, Heatmap, ActivationSeries> data;
    Provenance provenance;
    QString emptyMessage;     // text of the "no result" state, e.g. "latent inactive at this token"
    QSize size{1200, 750};    // logical pixels: the PNG size at scale 1, the page of SVG and PDF
    double scale = 2.0;       // PNG only
    qreal fontPointSize = 0;  // 0: the application font
};

// Writes the figure to path (format from the suffix unless given). False with *error on bad input or
// a write error; never crashes.
bool renderFigure(const FigureData& figure, const QString& path, QString* error = nullptr,
                  ExportFormat format = ExportFormat::FromExtension);

} // namespace cs::ui
