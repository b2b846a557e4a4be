#include "ui/charts/circuit_report.h"

#include "core/export/csv.h"
#include "ui/charts/heatmap_chart.h"
#include "ui/charts/qcp.h"
#include "ui/charts/token_bar_chart.h"

#include <QApplication>
#include <QBuffer>
#include <QDir>
#include <QFileInfo>
#include <QPageLayout>
#include <QPageSize>
#include <QPdfWriter>
#include <QSaveFile>

#include <memory>

namespace cs::ui {

namespace {

bool fail(QString* error, const QString& message)
{
    if (error)
        *error = message;
    return false;
}

std::string s(const QString& text)
{
    return text.toStdString();
}

QString short4(double v)
{
    return QString::number(v, 'g', 4).replace(u'-', QChar(0x2212));
}

QString metricsLine(const NodeMetricsView& m)
{
    QString text = QStringLiteral("activation %1    write magnitude %2").arg(short4(m.activation), short4(m.writeMagnitude));
    if (m.directEffect)
        text += QStringLiteral("    direct effect %1").arg(short4(*m.directEffect));
    if (m.totalEffect)
        text += QStringLiteral("    estimated total effect %1").arg(short4(*m.totalEffect));
    return text;
}

QFont pointFont(double points, bool bold = false)
{
    QFont f = QApplication::font();
    f.setPointSizeF(points);
    f.setBold(bold);
    return f;
}

// One chart of a page: drawn by the same widgets as the inspector, laid out at the size it takes on
// the page, then painted in place (vector output).
void paintChart(QCPPainter& painter, ChartWidget& chart, const QRect& rect)
{
    painter.save();
    painter.translate(rect.topLeft());
    chart.plot()->toPainter(&painter, rect.width(), rect.height());
    painter.restore();
}

// Bars per side that fit a chart of this height with readable labels (title and axis take ~90 px,
// a bar ~18 px).
int barsPerSide(int height)
{
    return std::clamp((height - 90) / 36, 3, 10);
}

void drawPage(QCPPainter& painter, const QRect& page, const CircuitReport& report, int index)
{
    const CircuitPage& pin = report.pages[index];
    const QColor ink(20, 20, 20), muted(90, 90, 90);
    int y = page.top();

    // Running header: what the circuit is about, and where we are in it.
    painter.setFont(pointFont(8));
    painter.setPen(muted);
    const QFontMetrics small(painter.font());
    const QString counter = QStringLiteral("%1 / %2").arg(index + 1).arg(report.pages.size());
    QString context = QStringLiteral("Circuit · %1 · “%2”").arg(report.model, report.prompt);
    if (!report.objective.isEmpty())
        context += QStringLiteral(" · ") + report.objective;
    const int counterWidth = small.horizontalAdvance(counter) + 20;
    painter.drawText(QRect(page.left(), y, page.width() - counterWidth, small.height()), Qt::AlignLeft | Qt::AlignVCenter,
                     small.elidedText(context, Qt::ElideRight, page.width() - counterWidth));
    painter.drawText(QRect(page.left(), y, page.width(), small.height()), Qt::AlignRight | Qt::AlignVCenter, counter);
    y += small.height() + 6;
    painter.setPen(QPen(QColor(200, 200, 200), 1));
    painter.drawLine(QLineF(page.left(), y, page.right(), y));
    y += 10;

    // Node name, tokens and metrics.
    painter.setFont(pointFont(20, true));
    painter.setPen(ink);
    const QFontMetrics big(painter.font());
    painter.drawText(QRect(page.left(), y, page.width(), big.height()), Qt::AlignLeft | Qt::AlignVCenter, pin.node);
    y += big.height() + 2;
    painter.setFont(pointFont(10));
    const QFontMetrics body(painter.font());
    if (pin.view) {
        const NodeView& v = *pin.view;
        const QString where = v.node.kind == NodeKind::Embedding ? QStringLiteral("embedding · token %1").arg(v.tokenLabel)
                                                                 : QStringLiteral("layer %1 · %2").arg(v.node.layer).arg(v.tokenLabel);
        painter.setPen(muted);
        painter.drawText(QRect(page.left(), y, page.width(), body.height()), Qt::AlignLeft | Qt::AlignVCenter,
                         body.elidedText(where, Qt::ElideRight, page.width()));
        y += body.height() + 2;
        painter.setPen(ink);
        painter.drawText(QRect(page.left(), y, page.width(), body.height()), Qt::AlignLeft | Qt::AlignVCenter, metricsLine(v.metrics));
        y += body.height() + 8;
    }

    // The note: wrapped, at most five lines (the CSV has all of it).
    if (!pin.note.isEmpty()) {
        painter.setFont(pointFont(12));
        const QFontMetrics noteMetrics(painter.font());
        const int maxHeight = noteMetrics.lineSpacing() * 5;
        const QRect box(page.left(), y, page.width(), maxHeight);
        const QRect needed = noteMetrics.boundingRect(box, Qt::TextWordWrap, pin.note);
        const int h = std::min(needed.height(), maxHeight);
        painter.fillRect(QRect(page.left(), y - 2, 4, h + 4), QColor(0xb2, 0x18, 0x2b));
        painter.drawText(QRect(page.left() + 12, y, page.width() - 12, h), Qt::TextWordWrap | Qt::AlignLeft | Qt::AlignTop, pin.note);
        y += h + 12;
    }

    if (!pin.view) {
        painter.setFont(pointFont(12));
        painter.setPen(QColor(0x8a, 0x1c, 0x12));
        painter.drawText(QRect(page.left(), y, page.width(), page.bottom() - y), Qt::TextWordWrap | Qt::AlignLeft | Qt::AlignTop,
                         QStringLiteral("Not computed: %1").arg(pin.error.isEmpty() ? QStringLiteral("no view") : pin.error));
        return;
    }

    // The charts, side by side in what is left: write, read(s), and the pair map where there is one.
    const NodeView& v = *pin.view;
    const QRect area(page.left(), y, page.width(), page.bottom() - y);
    const QFont chartFont = pointFont(8);
    // Three columns: write tokens, the read list(s) (a head's Q- and K-read stacked), the pair map.
    // Short titles and no provenance line in the charts: the page's header names node and model.
    std::vector<std::vector<const TopTokenList*>> columns{{&v.writeInContext}};
    if (!v.reads.isEmpty()) {
        columns.emplace_back();
        for (const TopTokenList& read : v.reads)
            columns.back().push_back(&read);
    }
    const Heatmap* map = mainPairMap(v);
    const int gap = 16;
    const int n = int(columns.size()) + (map ? 1 : 0);
    const int width = (area.width() - gap * (n - 1)) / n;
    Provenance p;
    p.prompt = v.provenance.prompt;
    int x = area.left();
    for (const auto& column : columns) {
        const int count = int(column.size());
        const int height = (area.height() - gap * (count - 1)) / count;
        for (int i = 0; i < count; ++i) {
            const QRect rect(x, area.top() + i * (height + gap), width, height);
            p.metric = column[i]->title;
            auto bars = std::make_unique<TokenBarChart>();
            bars->setAttribute(Qt::WA_DontShowOnScreen);
            bars->setFont(chartFont);
            // Sized before the data arrives: a hidden widget gets no resize event, and setData() lays
            // the plot out at the widget's size.
            bars->resize(rect.size());
            bars->setEmptyMessage(QStringLiteral("No tokens"));
            bars->setData(chartTokens(*column[i], barsPerSide(height)), p);
            // Three value ticks: five collide in a third of a page.
            bars->plot()->xAxis->ticker()->setTickCount(3);
            paintChart(painter, *bars, rect);
        }
        x += width + gap;
    }
    if (map) {
        const QRect rect(x, area.top(), area.right() - x, area.height());
        p.metric = map->metric;
        auto heat = std::make_unique<HeatmapChart>();
        heat->setAttribute(Qt::WA_DontShowOnScreen);
        heat->setFont(chartFont);
        heat->resize(rect.size());
        heat->setData(*map, p);
        paintChart(painter, *heat, rect);
    }
}

} // namespace

TopTokenList firstTokens(const TopTokenList& list, int perSide)
{
    TopTokenList out = list;
    if (out.top.size() > perSide)
        out.top.resize(perSide);
    if (out.bottom.size() > perSide)
        out.bottom.resize(perSide);
    return out;
}

TopTokenList chartTokens(const TopTokenList& list, int perSide)
{
    TopTokenList out = firstTokens(list, perSide);
    out.title = out.title.section(QStringLiteral(" ("), 0, 0);
    return out;
}

const Heatmap* mainPairMap(const NodeView& view)
{
    if (view.pairMaps.isEmpty() || (view.node.kind != NodeKind::AttnHead && view.node.kind != NodeKind::AttnSaeLatent))
        return nullptr;
    return &view.pairMaps.first();
}

std::string circuitCsv(const CircuitReport& report)
{
    CsvWriter csv;
    csv.comment("model", s(report.model));
    csv.comment("prompt", s(report.prompt));
    if (!report.objective.isEmpty())
        csv.comment("objective", s(report.objective));
    csv.comment("metric", "circuit");
    csv.comment("pins", std::to_string(report.pages.size()));
    csv.row({"order", "node", "note", "activation", "write_magnitude", "direct_effect", "total_effect", "top_write_tokens", "error"});
    const auto optional = [](const std::optional<double>& v) { return v ? CsvWriter::number(*v) : std::string(); };
    for (qsizetype i = 0; i < report.pages.size(); ++i) {
        const CircuitPage& p = report.pages[i];
        std::vector<std::string> row{std::to_string(i + 1), s(p.node), s(p.note)};
        if (p.view) {
            const NodeMetricsView& m = p.view->metrics;
            QStringList top;
            for (const TokenValue& t : firstTokens(p.view->writeInContext, 5).top)
                top << t.token;
            row.insert(row.end(), {CsvWriter::number(m.activation), CsvWriter::number(m.writeMagnitude), optional(m.directEffect),
                                   optional(m.totalEffect), s(top.join(QStringLiteral(", "))), std::string()});
        } else {
            row.insert(row.end(), {"", "", "", "", "", s(p.error.isEmpty() ? QStringLiteral("not computed") : p.error)});
        }
        csv.row(row);
    }
    return csv.text();
}

QByteArray circuitPdf(const CircuitReport& report, QString* error)
{
    if (report.pages.isEmpty()) {
        fail(error, QStringLiteral("the circuit has no pinned nodes"));
        return {};
    }
    if (!qobject_cast<QApplication*>(QCoreApplication::instance())) {
        fail(error, QStringLiteral("the circuit PDF needs a QApplication (without a display, set QT_QPA_PLATFORM=offscreen)"));
        return {};
    }
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    {
        QPdfWriter writer(&buffer);
        writer.setCreator(QStringLiteral("Circuitscope"));
        writer.setTitle(QStringLiteral("Circuit — %1").arg(report.model));
        writer.addFileAttachment(QStringLiteral("circuit.csv"), QByteArray::fromStdString(circuitCsv(report)), QStringLiteral("text/csv"));
        // Page coordinates in screen pixels (96 per inch), so that fonts given in points take the same
        // room as when the charts lay themselves out on screen.
        writer.setResolution(96);
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize::A4), QPageLayout::Landscape, QMarginsF(0, 0, 0, 0)));
        QCPPainter painter;
        if (!painter.begin(&writer)) {
            fail(error, QStringLiteral("could not start the PDF"));
            return {};
        }
        painter.setMode(QCPPainter::pmVectorized);
        painter.setMode(QCPPainter::pmNonCosmetic);
        const QRect page = QRect(0, 0, writer.width(), writer.height()).adjusted(40, 32, -40, -32);
        for (qsizetype i = 0; i < report.pages.size(); ++i) {
            if (i > 0)
                writer.newPage();
            drawPage(painter, page, report, int(i));
        }
        painter.end();
    }
    if (error)
        error->clear();
    return bytes;
}

bool writeCircuit(const CircuitReport& report, const QString& path, QString* error)
{
    const QString suffix = QFileInfo(path).suffix().toLower();
    QByteArray bytes;
    if (suffix == u"csv") {
        bytes = QByteArray::fromStdString(circuitCsv(report));
    } else if (suffix == u"pdf") {
        QString why;
        bytes = circuitPdf(report, &why);
        if (bytes.isEmpty())
            return fail(error, why);
    } else {
        return fail(error, QStringLiteral("cannot tell the circuit export format of “%1”: use .csv or .pdf").arg(path));
    }
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
    return true;
}

} // namespace cs::ui
