#include "ui/charts/export_button.h"

#include <QActionGroup>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QStandardPaths>

namespace cs::ui {

namespace {

// The folder of the last export, for the next dialog (per session).
QString& lastDirectory()
{
    static QString dir = QStandardPaths::writableLocation(QStandardPaths::PicturesLocation);
    return dir;
}

QString filterFor(ExportFormat format)
{
    switch (format) {
    case ExportFormat::Png:
        return ExportButton::tr("PNG image (*.png)");
    case ExportFormat::Svg:
        return ExportButton::tr("SVG image (*.svg)");
    case ExportFormat::Pdf:
        return ExportButton::tr("PDF document (*.pdf)");
    case ExportFormat::Csv:
        return ExportButton::tr("CSV table (*.csv)");
    case ExportFormat::FromExtension:
        break;
    }
    return QString();
}

} // namespace

ExportButton::ExportButton(QWidget* parent)
    : ExportButton(nullptr, parent)
{
}

ExportButton::ExportButton(ChartWidget* chart, QWidget* parent)
    : QToolButton(parent)
{
    setText(tr("Export"));
    setToolTip(tr("Export this chart as an image or its data as CSV"));
    setPopupMode(QToolButton::InstantPopup);
    setToolButtonStyle(Qt::ToolButtonTextOnly);

    auto* menu = new QMenu(this);
    const std::pair<ExportFormat, QString> items[] = {
        {ExportFormat::Png, tr("PNG image\u2026")},
        {ExportFormat::Svg, tr("SVG image\u2026")},
        {ExportFormat::Pdf, tr("PDF document\u2026")},
        {ExportFormat::Csv, tr("CSV data\u2026")},
    };
    for (const auto& [format, label] : items) {
        QAction* action = menu->addAction(label);
        action->setData(exportFormatSuffix(format));
        connect(action, &QAction::triggered, this, [this, f = format] { exportAs(f); });
    }
    menu->addSection(tr("PNG scale"));
    m_scales = new QActionGroup(this);
    for (const int s : {1, 2, 4}) {
        QAction* action = menu->addAction(QString::number(s) % QChar(0x00D7));
        action->setCheckable(true);
        action->setData(s);
        action->setChecked(s == 2);
        m_scales->addAction(action);
        connect(action, &QAction::triggered, this, [this, s] { m_scale = s; });
    }
    setMenu(menu);
    setChart(chart);
}

void ExportButton::setChart(ChartWidget* chart)
{
    m_chart = chart;
    setEnabled(chart != nullptr);
}

void ExportButton::setPngScale(double scale)
{
    m_scale = scale;
    for (QAction* action : m_scales->actions())
        action->setChecked(action->data().toDouble() == scale);
}

bool ExportButton::exportAs(ExportFormat format)
{
    if (!m_chart || format == ExportFormat::FromExtension)
        return false;
    const QString suffix = exportFormatSuffix(format);
    const QString suggested = QDir(lastDirectory()).filePath(m_chart->suggestedFileName(format));
    QString path = m_provider ? m_provider(format, suggested)
                              : QFileDialog::getSaveFileName(this, tr("Export chart"), suggested, filterFor(format));
    if (path.isEmpty())
        return false;
    if (QFileInfo(path).suffix().isEmpty())
        path += QLatin1Char('.') % suffix;
    lastDirectory() = QFileInfo(path).absolutePath();

    QString error;
    if (!m_chart->exportTo(path, format, m_scale, &error)) {
        Q_EMIT exportFailed(error);
        auto* box = new QMessageBox(QMessageBox::Warning, tr("Export failed"), error, QMessageBox::Ok, this);
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->open();
        return false;
    }
    Q_EMIT exported(path);
    return true;
}

} // namespace cs::ui
