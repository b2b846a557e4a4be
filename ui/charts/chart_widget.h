#pragma once
// The base of the node inspector's charts (product.md §3–§4): one QCustomPlot with a title and a
// provenance subtitle, a "no result" state instead of an empty plot, hover tooltips with exact values,
// and the exports every chart has — PNG at a scale factor, SVG, PDF, and the data behind the chart as
// CSV with a provenance header. Every file is written atomically through QSaveFile.

#include "ui/engine/view_types.h"

#include <QByteArray>
#include <QFont>
#include <QPointF>
#include <QString>
#include <QWidget>

#include <string>

class QCustomPlot;
class QCPAxis;
class QCPTextElement;
class QMouseEvent;

namespace cs {
class CsvWriter;
}

namespace cs::ui {

enum class ExportFormat { FromExtension, Png, Svg, Pdf, Csv };

// ".png" ".svg" ".pdf" ".csv" (any case) → that format; anything else → FromExtension (= unknown).
ExportFormat exportFormatForPath(const QString& path);
QString exportFormatSuffix(ExportFormat format); // "png", "svg", "pdf", "csv"; empty for FromExtension

// A token as charts show it: leading and trailing spaces as '·', newline '⏎', carriage return '␍',
// tab '→', other control characters as \xNN, the empty token as '∅'. Exports keep the raw string.
QString displayToken(const QString& token);
// displayToken(), elided in the middle to at most maxChars characters (axis labels).
QString axisToken(const QString& token, int maxChars = 28);
// The exact value (shortest text that reads back to the same double); "no value" for NaN.
QString formatValue(double value);

class ChartWidget : public QWidget {
    Q_OBJECT
public:
    explicit ChartWidget(QWidget* parent = nullptr);
    ~ChartWidget() override;

    QCustomPlot* plot() const { return m_plot; }
    const Provenance& provenance() const { return m_provenance; }
    QString title() const { return m_title; }

    // False in the "no result" state (empty or unusable data): the plot then shows message().
    bool hasData() const { return m_hasData; }
    QString message() const { return m_hasData ? QString() : m_message; }
    // The text of the "no result" state ("No result" by default), e.g. "latent inactive at this token".
    void setEmptyMessage(const QString& message);

    // The tooltip for a point in plot pixels (what hovering there shows); empty when nothing is there.
    QString toolTipAt(const QPointF& pos) const;

    // Writes the chart to path atomically. FromExtension takes the format from the suffix. scale
    // multiplies the pixel size of PNGs (2 → twice the widget size); vector formats ignore it.
    // Returns false and sets *error (never crashes) on an unknown format, a bad scale or a write error;
    // a failed export leaves no file behind.
    bool exportTo(const QString& path, ExportFormat format = ExportFormat::FromExtension, double scale = 1.0,
                  QString* error = nullptr);
    // The bytes exportTo() would write.
    QByteArray exportBytes(ExportFormat format, double scale = 1.0, QString* error = nullptr);
    // The data behind the chart as CSV (UTF-8, RFC 4180, '#' comments: model, prompt, node, metric, title).
    std::string csv() const;
    // A file name built from the node and the title, e.g. "mlp_5_123_7-write-tokens.png".
    QString suggestedFileName(ExportFormat format) const;
    // The size of image exports at scale 1: the widget's size (a default when it has none).
    QSize exportSize() const;

Q_SIGNALS:
    void exported(const QString& path);

protected:
    // Subclasses keep their data and rebuild the whole plot from it in rebuild(); the base calls it
    // again when the font changes (e.g. presentation mode).
    virtual void rebuild() = 0;
    virtual QString hoverText(const QPointF& pos) const = 0;
    virtual void writeCsvRows(CsvWriter& csv) const = 0;
    // The metric named in the CSV header: the provenance's, unless a subclass knows better.
    virtual QString csvMetric() const { return m_provenance.metric; }
    // Called after the plot was laid out at its size (data, font or size changed), e.g. to fit
    // crowded labels with fitTickLabels().
    virtual void adaptToSize() {}

    void setProvenance(const Provenance& provenance) { m_provenance = provenance; }
    void setTitle(const QString& title) { m_title = title; }

    // rebuild() helpers: startRebuild() clears plottables and items and restores axes, fonts and
    // the title; finish with showData() or showNoResult().
    void startRebuild();
    void showData();
    void showNoResult(const QString& message = {});

    QFont tickFont() const;
    QFont labelFont() const;
    QFont titleFont() const;
    // Labels a key axis (one label per unit step) so that they stay readable at the current size:
    // turned by 90° when they do not fit side by side, then a smaller font (down to 6 pt), then only
    // every n-th label.
    void fitTickLabels(QCPAxis* axis, const QVector<double>& positions, const QStringList& labels);

    void changeEvent(QEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;

private:
    void layOut();
    void onMouseMove(QMouseEvent* event);
    QString subtitleText() const;

    QCustomPlot* m_plot = nullptr;
    QCPTextElement* m_titleElement = nullptr;
    QCPTextElement* m_subtitleElement = nullptr;
    Provenance m_provenance;
    QString m_title;
    QString m_message;
    QString m_emptyMessage;
    bool m_hasData = false;
    bool m_rebuilding = false;
};

// Colors shared by the charts (and usable by other widgets for consistency): positive values red,
// negative blue, as in the heatmaps' blue–white–red diverging scale.
namespace chartcolors {
QColor positiveFill();
QColor positiveLine();
QColor negativeFill();
QColor negativeLine();
} // namespace chartcolors

} // namespace cs::ui
