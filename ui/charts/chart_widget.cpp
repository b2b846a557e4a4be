#include "ui/charts/chart_widget.h"

#include "core/export/csv.h"
#include "ui/charts/qcp.h"

#include <QBuffer>
#include <QDir>
#include <QFileInfo>
#include <QFontMetrics>
#include <QImage>
#include <QPageLayout>
#include <QPageSize>
#include <QPdfWriter>
#include <QSaveFile>
#include <QSvgGenerator>
#include <QToolTip>
#include <QVBoxLayout>
#include <QXmlStreamWriter>

#include <cmath>

namespace cs::ui {

namespace {

constexpr int kTitleRow = 0;
constexpr int kSubtitleRow = 1;
constexpr double kMaxScale = 16;
constexpr int kMaxPixels = 16384; // per side of a PNG

bool fail(QString* error, const QString& message)
{
    if (error)
        *error = message;
    return false;
}

QString provenanceSummary(const Provenance& p, const QString& metric)
{
    QString summary = QStringLiteral("model: ") % p.model % QStringLiteral("; prompt: ") % p.prompt
        % QStringLiteral("; node: ") % p.node % QStringLiteral("; metric: ") % metric;
    if (!p.interventions.isEmpty())
        summary += QStringLiteral("; ") % p.interventions;
    return summary;
}

// Title, description and tool in the PDF's XMP packet, so the figure names what it came from.
QByteArray xmpPacket(const QString& title, const QString& description)
{
    QByteArray xml;
    QXmlStreamWriter w(&xml);
    w.writeProcessingInstruction(QStringLiteral("xpacket"),
                                 QStringLiteral("begin=\"\uFEFF\" id=\"W5M0MpCehiHzreSzNTczkc9d\""));
    w.writeStartElement(QStringLiteral("x:xmpmeta"));
    w.writeAttribute(QStringLiteral("xmlns:x"), QStringLiteral("adobe:ns:meta/"));
    w.writeStartElement(QStringLiteral("rdf:RDF"));
    w.writeAttribute(QStringLiteral("xmlns:rdf"), QStringLiteral("http://www.w3.org/1999/02/22-rdf-syntax-ns#"));
    w.writeStartElement(QStringLiteral("rdf:Description"));
    w.writeAttribute(QStringLiteral("rdf:about"), QString());
    w.writeAttribute(QStringLiteral("xmlns:dc"), QStringLiteral("http://purl.org/dc/elements/1.1/"));
    w.writeAttribute(QStringLiteral("xmlns:xmp"), QStringLiteral("http://ns.adobe.com/xap/1.0/"));
    auto alt = [&w](const QString& element, const QString& text) {
        w.writeStartElement(element);
        w.writeStartElement(QStringLiteral("rdf:Alt"));
        w.writeStartElement(QStringLiteral("rdf:li"));
        w.writeAttribute(QStringLiteral("xml:lang"), QStringLiteral("x-default"));
        w.writeCharacters(text);
        w.writeEndElement();
        w.writeEndElement();
        w.writeEndElement();
    };
    alt(QStringLiteral("dc:title"), title);
    alt(QStringLiteral("dc:description"), description);
    w.writeTextElement(QStringLiteral("xmp:CreatorTool"), QStringLiteral("Circuitscope"));
    w.writeEndElement();
    w.writeEndElement();
    w.writeEndElement();
    w.writeProcessingInstruction(QStringLiteral("xpacket"), QStringLiteral("end=\"w\""));
    return xml;
}

QString slug(const QString& text)
{
    QString out;
    bool pendingSeparator = false;
    for (const QChar c : text) {
        if ((c >= QLatin1Char('a') && c <= QLatin1Char('z')) || (c >= QLatin1Char('A') && c <= QLatin1Char('Z'))
            || (c >= QLatin1Char('0') && c <= QLatin1Char('9'))) {
            if (pendingSeparator && !out.isEmpty())
                out += QLatin1Char('_');
            pendingSeparator = false;
            out += c.toLower();
        } else {
            pendingSeparator = true;
        }
    }
    return out;
}

void styleAxis(QCPAxis* axis, const QFont& tickFont, const QFont& labelFont)
{
    const QColor ink(60, 60, 60);
    axis->setVisible(true);
    axis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    axis->setRangeReversed(false);
    axis->setLabel(QString());
    axis->setTickLabelRotation(0);
    axis->setTickLabelFont(tickFont);
    axis->setLabelFont(labelFont);
    axis->setTickLabelColor(ink);
    axis->setLabelColor(ink);
    axis->setBasePen(QPen(QColor(120, 120, 120), 1));
    axis->setTickPen(QPen(QColor(120, 120, 120), 1));
    axis->setSubTickPen(QPen(QColor(160, 160, 160), 1));
    axis->setTicks(true);
    axis->setTickLabels(true);
    axis->setSubTicks(true);
    axis->setTickLengthIn(0);
    axis->setTickLengthOut(4);
    axis->setSubTickLengthIn(0);
    axis->setSubTickLengthOut(2);
    axis->setPadding(4);
    axis->setLabelPadding(6);
    axis->grid()->setVisible(true);
    axis->grid()->setPen(QPen(QColor(228, 228, 228), 1));
    axis->grid()->setZeroLinePen(QPen(QColor(110, 110, 110), 1));
    axis->grid()->setSubGridVisible(false);
}

} // namespace

ExportFormat exportFormatForPath(const QString& path)
{
    const QString suffix = QFileInfo(path).suffix().toLower();
    if (suffix == QLatin1String("png"))
        return ExportFormat::Png;
    if (suffix == QLatin1String("svg"))
        return ExportFormat::Svg;
    if (suffix == QLatin1String("pdf"))
        return ExportFormat::Pdf;
    if (suffix == QLatin1String("csv"))
        return ExportFormat::Csv;
    return ExportFormat::FromExtension;
}

QString exportFormatSuffix(ExportFormat format)
{
    switch (format) {
    case ExportFormat::Png:
        return QStringLiteral("png");
    case ExportFormat::Svg:
        return QStringLiteral("svg");
    case ExportFormat::Pdf:
        return QStringLiteral("pdf");
    case ExportFormat::Csv:
        return QStringLiteral("csv");
    case ExportFormat::FromExtension:
        break;
    }
    return QString();
}

QString displayToken(const QString& token)
{
    if (token.isEmpty())
        return QString(QChar(0x2205)); // ∅
    const qsizetype n = token.size();
    qsizetype lead = 0;
    while (lead < n && token[lead] == QLatin1Char(' '))
        ++lead;
    qsizetype trail = n;
    while (trail > lead && token[trail - 1] == QLatin1Char(' '))
        --trail;
    QString out;
    out.reserve(n + 4);
    for (qsizetype i = 0; i < n; ++i) {
        const QChar c = token[i];
        if (c == QLatin1Char(' ') && (i < lead || i >= trail))
            out += QChar(0x00B7); // ·
        else if (c == QLatin1Char('\n'))
            out += QChar(0x23CE); // ⏎
        else if (c == QLatin1Char('\r'))
            out += QChar(0x240D); // ␍
        else if (c == QLatin1Char('\t'))
            out += QChar(0x2192); // →
        else if (c.unicode() < 0x20 || c.unicode() == 0x7f)
            out += QStringLiteral("\\x") % QString::number(c.unicode(), 16).rightJustified(2, QLatin1Char('0'));
        else
            out += c;
    }
    return out;
}

QString axisToken(const QString& token, int maxChars)
{
    const QString shown = displayToken(token);
    if (maxChars < 3 || shown.size() <= maxChars)
        return shown;
    const qsizetype keep = maxChars - 1;
    QString head = shown.left(keep - keep / 2);
    QString tail = shown.right(keep / 2);
    if (!head.isEmpty() && head.back().isHighSurrogate())
        head.chop(1);
    if (!tail.isEmpty() && tail.front().isLowSurrogate())
        tail.remove(0, 1);
    return head % QChar(0x2026) % tail; // …
}

QString formatValue(double value)
{
    if (std::isnan(value))
        return QStringLiteral("no value");
    return QString::number(value, 'g', QLocale::FloatingPointShortest);
}

namespace chartcolors {
QColor positiveFill() { return QColor(0xd6, 0x60, 0x4d); }
QColor positiveLine() { return QColor(0xb2, 0x18, 0x2b); }
QColor negativeFill() { return QColor(0x43, 0x93, 0xc3); }
QColor negativeLine() { return QColor(0x21, 0x66, 0xac); }
} // namespace chartcolors

ChartWidget::ChartWidget(QWidget* parent)
    : QWidget(parent)
    , m_plot(new QCustomPlot(this))
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_plot);
    setMinimumSize(240, 180);

    m_plot->setMouseTracking(true);
    m_plot->setBackground(Qt::white);
    m_plot->setPlottingHint(QCP::phCacheLabels, false); // labels change with every node
    QCPLayoutGrid* grid = m_plot->plotLayout();
    grid->insertRow(0);
    grid->insertRow(0);
    m_titleElement = new QCPTextElement(m_plot, QString(), titleFont());
    m_titleElement->setTextColor(QColor(30, 30, 30));
    grid->addElement(kTitleRow, 0, m_titleElement);
    m_subtitleElement = new QCPTextElement(m_plot, QString(), labelFont());
    m_subtitleElement->setTextColor(QColor(110, 110, 110));
    grid->addElement(kSubtitleRow, 0, m_subtitleElement);
    grid->setRowSpacing(0);
    grid->setMargins(QMargins(10, 6, 16, 8));

    connect(m_plot, &QCustomPlot::mouseMove, this, &ChartWidget::onMouseMove);
    m_message = QStringLiteral("No result");
}

ChartWidget::~ChartWidget() = default;

void ChartWidget::setEmptyMessage(const QString& message)
{
    m_emptyMessage = message;
    if (!m_hasData)
        rebuild();
}

QString ChartWidget::toolTipAt(const QPointF& pos) const
{
    return m_hasData ? hoverText(pos) : QString();
}

QFont ChartWidget::tickFont() const
{
    QFont f = font();
    if (f.pointSizeF() > 0 && f.pointSizeF() < 9)
        f.setPointSizeF(9);
    return f;
}

QFont ChartWidget::labelFont() const
{
    return tickFont();
}

QFont ChartWidget::titleFont() const
{
    QFont f = tickFont();
    if (f.pointSizeF() > 0)
        f.setPointSizeF(f.pointSizeF() * 1.3);
    else
        f.setPixelSize(f.pixelSize() * 13 / 10);
    f.setBold(true);
    return f;
}

QString ChartWidget::subtitleText() const
{
    QStringList parts;
    if (!m_provenance.node.isEmpty())
        parts << m_provenance.node;
    if (!m_provenance.model.isEmpty()) {
        const QString name = QFileInfo(QDir::cleanPath(m_provenance.model)).fileName();
        parts << (name.isEmpty() ? m_provenance.model : name);
    }
    // A figure made under ablations or a trace says so where the reader looks first.
    if (!m_provenance.interventions.isEmpty())
        parts << m_provenance.interventions;
    return parts.join(QStringLiteral("   \u00B7   "));
}

void ChartWidget::startRebuild()
{
    m_plot->clearPlottables();
    m_plot->clearItems();
    const QFont ticks = tickFont();
    const QFont labels = labelFont();
    for (QCPAxis* axis : {m_plot->xAxis, m_plot->yAxis})
        styleAxis(axis, ticks, labels);
    m_plot->xAxis2->setVisible(false);
    m_plot->yAxis2->setVisible(false);
    m_plot->axisRect()->setBackground(Qt::NoBrush);
    m_titleElement->setFont(titleFont());
    m_titleElement->setText(m_title);
    m_subtitleElement->setFont(labels);
    m_subtitleElement->setText(subtitleText());
}

void ChartWidget::showData()
{
    m_hasData = true;
    m_message.clear();
    layOut();
}

// Lays the plot out at the size it will be drawn at (the plot is not laid out yet while the widget is
// hidden, e.g. in the headless figure path) and lets the chart fit its labels; twice, because fitting
// the labels of one axis changes the room left for the other.
void ChartWidget::layOut()
{
    m_plot->setViewport(QRect(QPoint(0, 0), exportSize()));
    for (int pass = 0; pass < 2; ++pass) {
        m_plot->replot();
        adaptToSize();
    }
    m_plot->replot();
}

void ChartWidget::showNoResult(const QString& message)
{
    m_hasData = false;
    m_message = !message.isEmpty() ? message : !m_emptyMessage.isEmpty() ? m_emptyMessage : QStringLiteral("No result");
    for (QCPAxis* axis : {m_plot->xAxis, m_plot->yAxis}) {
        axis->setVisible(false);
        axis->grid()->setVisible(false);
    }
    auto* text = new QCPItemText(m_plot);
    text->setClipToAxisRect(false);
    text->position->setType(QCPItemPosition::ptAxisRectRatio);
    text->position->setCoords(0.5, 0.45);
    text->setPositionAlignment(Qt::AlignCenter);
    text->setTextAlignment(Qt::AlignCenter);
    QFont f = titleFont();
    f.setBold(false);
    text->setFont(f);
    text->setColor(QColor(120, 120, 120));
    text->setText(m_message);
    m_plot->setViewport(QRect(QPoint(0, 0), exportSize()));
    m_plot->replot();
}

void ChartWidget::fitTickLabels(QCPAxis* axis, const QVector<double>& positions, const QStringList& labels)
{
    const QRect rect = axis->axisRect()->rect();
    const bool horizontal = axis->orientation() == Qt::Horizontal;
    const double perUnit = (horizontal ? rect.width() : rect.height()) / std::max(axis->range().size(), 1e-9);
    QFont font = tickFont();
    QFontMetricsF fm(font);
    double widest = 0;
    for (const QString& label : labels)
        widest = std::max(widest, fm.horizontalAdvance(label));
    const bool rotate = horizontal && widest + 1.5 * fm.averageCharWidth() > perUnit;
    double needed = horizontal && !rotate ? widest : fm.height();
    // A line's height includes leading; labels may come a little closer before they collide.
    const double room = (rotate || !horizontal) ? 1.15 * perUnit : perUnit;
    if (rotate || !horizontal) {
        // Shrink the font until the labels fit, but not below 6 pt (8 px).
        for (int step = 0; step < 24 && needed > room; ++step) {
            const double factor = std::clamp(room / needed, 0.5, 0.95);
            if (font.pointSizeF() > 0) {
                if (font.pointSizeF() <= 6)
                    break;
                font.setPointSizeF(std::max(font.pointSizeF() * factor, 6.0));
            } else {
                if (font.pixelSize() <= 8)
                    break;
                font.setPixelSize(std::max(int(font.pixelSize() * factor), 8));
            }
            fm = QFontMetricsF(font);
            needed = fm.height();
        }
    }
    const int stride = needed > room ? int(std::ceil(needed / std::max(room, 1e-9))) : 1;
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    ticker->setSubTickCount(0);
    for (qsizetype i = 0; i < std::min(positions.size(), labels.size()); i += stride)
        ticker->addTick(positions[i], labels[i]);
    axis->setTicker(ticker);
    axis->setTickLabelFont(font);
    axis->setTickLabelRotation(rotate ? 90 : 0);
}

void ChartWidget::changeEvent(QEvent* event)
{
    QWidget::changeEvent(event);
    if (event->type() == QEvent::FontChange)
        rebuild();
}

void ChartWidget::resizeEvent(QResizeEvent* event)
{
    QWidget::resizeEvent(event);
    if (m_hasData)
        layOut();
}

void ChartWidget::onMouseMove(QMouseEvent* event)
{
    const QString text = toolTipAt(event->position());
    if (text.isEmpty())
        QToolTip::hideText();
    else
        QToolTip::showText(event->globalPosition().toPoint(), text, m_plot);
}

QSize ChartWidget::exportSize() const
{
    const QSize s = size();
    return s.isEmpty() ? QSize(1200, 800) : s;
}

std::string ChartWidget::csv() const
{
    CsvWriter w;
    w.comment("model", m_provenance.model.toStdString());
    w.comment("prompt", m_provenance.prompt.toStdString());
    w.comment("node", m_provenance.node.toStdString());
    w.comment("metric", csvMetric().toStdString());
    if (!m_provenance.interventions.isEmpty())
        w.comment("interventions", m_provenance.interventions.toStdString());
    w.comment("title", m_title.toStdString());
    writeCsvRows(w);
    return w.text();
}

QString ChartWidget::suggestedFileName(ExportFormat format) const
{
    QStringList parts;
    for (const QString& part : {slug(m_provenance.node), slug(m_title)}) {
        if (!part.isEmpty())
            parts << part;
    }
    const QString base = parts.isEmpty() ? QStringLiteral("chart") : parts.join(QLatin1Char('-'));
    const QString suffix = exportFormatSuffix(format);
    return suffix.isEmpty() ? base : base % QLatin1Char('.') % suffix;
}

QByteArray ChartWidget::exportBytes(ExportFormat format, double scale, QString* error)
{
    if (error)
        error->clear();
    const QSize size = exportSize();
    if (m_hasData && m_plot->viewport().size() != size)
        layOut(); // resized while hidden: fit the labels to the size being exported
    const QString summary = provenanceSummary(m_provenance, csvMetric());
    const QString docTitle = m_provenance.node.isEmpty() ? m_title : m_title % QStringLiteral(" \u2014 ") % m_provenance.node;
    const double dpi = m_plot->logicalDpiX() > 0 ? m_plot->logicalDpiX() : 96.0;

    switch (format) {
    case ExportFormat::Csv:
        return QByteArray::fromStdString(csv());

    case ExportFormat::Png: {
        if (!(scale > 0) || scale > kMaxScale) {
            fail(error, QStringLiteral("PNG scale must be above 0 and at most 16, not %1").arg(scale));
            return {};
        }
        if (std::lround(size.width() * scale) > kMaxPixels || std::lround(size.height() * scale) > kMaxPixels) {
            fail(error, QStringLiteral("a %1\u00D7%2 image at scale %3 is too large").arg(size.width()).arg(size.height()).arg(scale));
            return {};
        }
        QImage image = m_plot->toPixmap(size.width(), size.height(), scale).toImage();
        if (image.isNull()) {
            fail(error, QStringLiteral("could not render the chart to an image"));
            return {};
        }
        const int dotsPerMeter = static_cast<int>(std::lround(dpi * scale / 0.0254));
        image.setDotsPerMeterX(dotsPerMeter);
        image.setDotsPerMeterY(dotsPerMeter);
        image.setText(QStringLiteral("Title"), docTitle);
        image.setText(QStringLiteral("Description"), summary);
        image.setText(QStringLiteral("Software"), QStringLiteral("Circuitscope"));
        QByteArray bytes;
        QBuffer buffer(&bytes);
        buffer.open(QIODevice::WriteOnly);
        if (!image.save(&buffer, "PNG")) {
            fail(error, QStringLiteral("could not encode the PNG"));
            return {};
        }
        return bytes;
    }

    case ExportFormat::Svg: {
        QByteArray bytes;
        QBuffer buffer(&bytes);
        buffer.open(QIODevice::WriteOnly);
        QSvgGenerator generator;
        generator.setOutputDevice(&buffer);
        generator.setSize(size);
        generator.setViewBox(QRect(QPoint(0, 0), size));
        generator.setResolution(static_cast<int>(std::lround(dpi)));
        generator.setTitle(docTitle);
        generator.setDescription(summary);
        QCPPainter painter;
        if (!painter.begin(&generator)) {
            fail(error, QStringLiteral("could not start the SVG"));
            return {};
        }
        painter.setMode(QCPPainter::pmVectorized);
        painter.setMode(QCPPainter::pmNonCosmetic);
        m_plot->toPainter(&painter, size.width(), size.height());
        painter.end();
        return bytes;
    }

    case ExportFormat::Pdf: {
        QByteArray bytes;
        QBuffer buffer(&bytes);
        buffer.open(QIODevice::WriteOnly);
        {
            QPdfWriter writer(&buffer);
            writer.setCreator(QStringLiteral("Circuitscope"));
            writer.setTitle(docTitle);
            writer.setDocumentXmpMetadata(xmpPacket(docTitle, summary));
            // The data travels with the figure.
            writer.addFileAttachment(suggestedFileName(ExportFormat::Csv), QByteArray::fromStdString(csv()),
                                     QStringLiteral("text/csv"));
            // One page exactly the size of the chart on screen (1 px = 72/dpi pt).
            const QSizeF points = QSizeF(size) * (72.0 / dpi);
            writer.setPageLayout(QPageLayout(QPageSize(points, QPageSize::Point, QString(), QPageSize::ExactMatch),
                                             QPageLayout::Portrait, QMarginsF(0, 0, 0, 0)));
            QCPPainter painter;
            if (!painter.begin(&writer)) {
                fail(error, QStringLiteral("could not start the PDF"));
                return {};
            }
            painter.setMode(QCPPainter::pmVectorized);
            painter.setMode(QCPPainter::pmNonCosmetic);
            painter.setWindow(QRect(QPoint(0, 0), size));
            m_plot->toPainter(&painter, size.width(), size.height());
            painter.end();
        }
        return bytes;
    }

    case ExportFormat::FromExtension:
        break;
    }
    fail(error, QStringLiteral("no export format given"));
    return {};
}

bool ChartWidget::exportTo(const QString& path, ExportFormat format, double scale, QString* error)
{
    if (format == ExportFormat::FromExtension) {
        format = exportFormatForPath(path);
        if (format == ExportFormat::FromExtension)
            return fail(error, QStringLiteral("cannot tell the export format of \u201C%1\u201D: use .png, .svg, .pdf or .csv").arg(path));
    }
    QString renderError;
    const QByteArray bytes = exportBytes(format, scale, &renderError);
    if (!renderError.isEmpty())
        return fail(error, renderError);

    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return fail(error, QStringLiteral("cannot write %1: %2").arg(QDir::toNativeSeparators(path), file.errorString()));
    if (file.write(bytes) != bytes.size()) {
        const QString why = file.errorString();
        file.cancelWriting();
        return fail(error, QStringLiteral("cannot write %1: %2").arg(QDir::toNativeSeparators(path), why));
    }
    if (!file.commit())
        return fail(error, QStringLiteral("cannot save %1: %2").arg(QDir::toNativeSeparators(path), file.errorString()));
    if (error)
        error->clear();
    Q_EMIT exported(path);
    return true;
}

} // namespace cs::ui
