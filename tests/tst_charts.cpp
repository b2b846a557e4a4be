// The node inspector's charts and their exports (product.md §3–§4): PNG at a scale, SVG, PDF and CSV
// for every chart kind; CSV round trips with raw token strings; atomic writes that fail cleanly; the
// "no result" state; hover text; the headless figure path and the export button.

#include "core/export/csv.h"
#include "ui/charts/activation_chart.h"
#include "ui/charts/export_button.h"
#include "ui/charts/figure.h"
#include "ui/charts/heatmap_chart.h"
#include "ui/charts/qcp.h"
#include "ui/charts/token_bar_chart.h"

#include <QDir>
#include <QFile>
#include <QImage>
#include <QMenu>
#include <QSignalSpy>
#include <QSvgRenderer>
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

using namespace cs::ui;

// Charts are widgets: run without a display unless told otherwise.
static const bool s_offscreen = [] {
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    return true;
}();

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

enum class Kind { Tokens, Heatmap, DivergingHeatmap, Activation };

QString str(const char* utf8) { return QString::fromUtf8(utf8); }

// The awkward tokens every export must carry unchanged.
QString nastyToken() { return str("a,b \"c\"\nd"); }
QString spacedToken() { return str(" Mary"); }

Provenance provenance()
{
    return {str("/models/gpt2 small"), str("When Mary and John went to the store, John gave a drink to"),
            str("attn:5:1@13,1"), str("logit difference")};
}

TopTokenList sampleTokens()
{
    TopTokenList list;
    list.title = str("Write tokens (this context)");
    list.top = {{5335, spacedToken(), 0.1 + 0.2}, {11, nastyToken(), 1.0 / 3.0}, {198, str("\n"), 2.5e-7},
                {1757, str("caf\xC3\xA9 \xE6\x97\xA5"), 0.0}};
    list.bottom = {{1757, str(" John"), -1.75}, {13, str("\t."), -0.125}};
    return list;
}

QStringList promptTokens()
{
    return {str("When"), spacedToken(), str(" and"), nastyToken(), str(" to")};
}

Heatmap sampleHeatmap(bool diverging)
{
    Heatmap h;
    h.title = diverging ? str("Token-pair attribution") : str("Attention probability");
    h.metric = diverging ? str("attribution") : str("probability");
    h.rowLabels = promptTokens();
    h.columnLabels = promptTokens();
    const int n = int(h.rowLabels.size());
    for (int q = 0; q < n; ++q) {
        for (int k = 0; k < n; ++k) {
            if (k > q)
                h.values << kNaN; // no such pair: blank
            else
                h.values << (diverging ? (q - 2 * k) / 7.0 : 1.0 / (q + 1));
        }
    }
    h.highlightRow = n - 1;
    return h;
}

QVector<double> activations() { return {0.5, -1.25, 3.0 / 7.0, 2.0, -0.0625}; }

std::unique_ptr<ChartWidget> makeChart(Kind kind, bool empty = false)
{
    const Provenance p = provenance();
    switch (kind) {
    case Kind::Tokens: {
        auto chart = std::make_unique<TokenBarChart>();
        chart->setData(empty ? TopTokenList{str("Read tokens"), {}, {}} : sampleTokens(), p);
        return chart;
    }
    case Kind::Heatmap:
    case Kind::DivergingHeatmap: {
        auto chart = std::make_unique<HeatmapChart>();
        chart->setData(empty ? Heatmap{} : sampleHeatmap(kind == Kind::DivergingHeatmap), p);
        return chart;
    }
    case Kind::Activation: {
        auto chart = std::make_unique<ActivationChart>();
        if (empty)
            chart->setData(QStringList(), QVector<double>(), p, str("Activation by token"));
        else
            chart->setData(promptTokens(), activations(), p, str("Activation by token"));
        return chart;
    }
    }
    return {};
}

void addKindRows()
{
    QTest::addColumn<Kind>("kind");
    QTest::addRow("tokens") << Kind::Tokens;
    QTest::addRow("heatmap") << Kind::Heatmap;
    QTest::addRow("heatmap diverging with NaN") << Kind::DivergingHeatmap;
    QTest::addRow("activation") << Kind::Activation;
}

QByteArray readAll(const QString& path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// Pixels that are neither white nor gray: the chart drew its colors.
int coloredPixels(const QImage& image)
{
    int n = 0;
    for (int y = 0; y < image.height(); y += 3) {
        for (int x = 0; x < image.width(); x += 3) {
            const QColor c = image.pixelColor(x, y);
            if (std::abs(c.red() - c.blue()) > 40)
                ++n;
        }
    }
    return n;
}

using Rows = std::vector<std::vector<std::string>>;

// The CSV rows each chart must write: raw tokens, exact values (empty for NaN).
Rows expectedRows(Kind kind)
{
    auto num = [](double v) { return cs::CsvWriter::number(v); };
    Rows rows;
    switch (kind) {
    case Kind::Tokens: {
        rows.push_back({"rank", "list", "id", "token", "value"});
        const TopTokenList list = sampleTokens();
        for (int i = 0; i < list.top.size(); ++i)
            rows.push_back({std::to_string(i + 1), "top", std::to_string(list.top[i].id), list.top[i].token.toStdString(),
                            num(list.top[i].value)});
        for (int i = 0; i < list.bottom.size(); ++i)
            rows.push_back({std::to_string(i + 1), "bottom", std::to_string(list.bottom[i].id),
                            list.bottom[i].token.toStdString(), num(list.bottom[i].value)});
        break;
    }
    case Kind::Heatmap:
    case Kind::DivergingHeatmap: {
        rows.push_back({"query_index", "query_token", "key_index", "key_token", "value"});
        const Heatmap h = sampleHeatmap(kind == Kind::DivergingHeatmap);
        for (int q = 0; q < h.rowLabels.size(); ++q) {
            for (int k = 0; k < h.columnLabels.size(); ++k)
                rows.push_back({std::to_string(q), h.rowLabels[q].toStdString(), std::to_string(k),
                                h.columnLabels[k].toStdString(), num(h.at(q, k))});
        }
        break;
    }
    case Kind::Activation: {
        rows.push_back({"index", "token", "value"});
        const QStringList tokens = promptTokens();
        for (int i = 0; i < tokens.size(); ++i)
            rows.push_back({std::to_string(i), tokens[i].toStdString(), num(activations()[i])});
        break;
    }
    }
    return rows;
}

} // namespace

Q_DECLARE_METATYPE(Kind)

class TestCharts : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void displayToken_data();
    void displayToken();
    void formatFromPath();

    void png_data();
    void png();
    void svg_data() { addKindRows(); }
    void svg();
    void pdf_data() { addKindRows(); }
    void pdf();
    void csvRoundTrip_data() { addKindRows(); }
    void csvRoundTrip();
    void unwritablePath_data();
    void unwritablePath();
    void badFormatOrScale();

    void emptyData_data() { addKindRows(); }
    void emptyData();
    void malformedHeatmap();
    void heatmapColorScale();
    void hoverText();
    void fontChangeKeepsData();

    void figure_data();
    void figure();
    void figureWithoutData();
    void exportButton();
};

void TestCharts::displayToken_data()
{
    QTest::addColumn<QString>("token");
    QTest::addColumn<QString>("shown");
    QTest::addRow("leading space") << str(" Mary") << str("\xC2\xB7Mary");
    QTest::addRow("two leading spaces") << str("  x") << str("\xC2\xB7\xC2\xB7x");
    QTest::addRow("inner space kept") << str("a b") << str("a b");
    QTest::addRow("trailing space") << str("a ") << str("a\xC2\xB7");
    QTest::addRow("newline") << str("\n") << str("\xE2\x8F\x8E");
    QTest::addRow("tab") << str("\t.") << str("\xE2\x86\x92.");
    QTest::addRow("carriage return") << str("\r") << str("\xE2\x90\x8D");
    QTest::addRow("control character") << str("\x1b") << str("\\x1b");
    QTest::addRow("empty") << QString() << str("\xE2\x88\x85");
    QTest::addRow("unicode") << str("caf\xC3\xA9") << str("caf\xC3\xA9");
}

void TestCharts::displayToken()
{
    QFETCH(QString, token);
    QFETCH(QString, shown);
    QCOMPARE(cs::ui::displayToken(token), shown);
    QCOMPARE(axisToken(token), shown);
}

void TestCharts::formatFromPath()
{
    QCOMPARE(exportFormatForPath(str("/x/a.png")), ExportFormat::Png);
    QCOMPARE(exportFormatForPath(str("a.SVG")), ExportFormat::Svg);
    QCOMPARE(exportFormatForPath(str("a.b.pdf")), ExportFormat::Pdf);
    QCOMPARE(exportFormatForPath(str("a.csv")), ExportFormat::Csv);
    QCOMPARE(exportFormatForPath(str("a.jpg")), ExportFormat::FromExtension);
    QCOMPARE(exportFormatForPath(str("png")), ExportFormat::FromExtension);
    const QString longToken = QString(60, QLatin1Char('x'));
    QCOMPARE(axisToken(longToken, 20).size(), 20);
}

void TestCharts::png_data()
{
    QTest::addColumn<Kind>("kind");
    QTest::addColumn<double>("scale");
    for (const double scale : {1.0, 2.0}) {
        const QByteArray s = QByteArray::number(scale);
        QTest::addRow("tokens x%s", s.constData()) << Kind::Tokens << scale;
        QTest::addRow("heatmap x%s", s.constData()) << Kind::Heatmap << scale;
        QTest::addRow("heatmap diverging with NaN x%s", s.constData()) << Kind::DivergingHeatmap << scale;
        QTest::addRow("activation x%s", s.constData()) << Kind::Activation << scale;
    }
}

void TestCharts::png()
{
    QFETCH(Kind, kind);
    QFETCH(double, scale);
    QTemporaryDir dir;
    auto chart = makeChart(kind);
    chart->resize(640, 420);
    QVERIFY(chart->hasData());
    const QString path = dir.filePath(str("chart.png"));
    QString error;
    QSignalSpy spy(chart.get(), &ChartWidget::exported);
    QVERIFY2(chart->exportTo(path, ExportFormat::FromExtension, scale, &error), qPrintable(error));
    QVERIFY(error.isEmpty());
    QCOMPARE(spy.count(), 1);
    QImage image(path);
    QVERIFY(!image.isNull());
    QCOMPARE(image.size(), QSize(qRound(640 * scale), qRound(420 * scale)));
    QVERIFY(coloredPixels(image) > 50);
    // The figure names where it came from.
    QVERIFY(image.text(str("Description")).contains(str("attn:5:1@13,1")));
    QVERIFY(image.text(str("Description")).contains(str("/models/gpt2 small")));
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files), QStringList{str("chart.png")});
}

void TestCharts::svg()
{
    QFETCH(Kind, kind);
    QTemporaryDir dir;
    auto chart = makeChart(kind);
    chart->resize(640, 420);
    const QString path = dir.filePath(str("chart.svg"));
    QString error;
    QVERIFY2(chart->exportTo(path, ExportFormat::FromExtension, 1.0, &error), qPrintable(error));
    QSvgRenderer renderer(path);
    QVERIFY(renderer.isValid());
    QCOMPARE(renderer.viewBox(), QRect(0, 0, 640, 420));
    const QByteArray svg = readAll(path);
    QVERIFY(svg.contains("attn:5:1@13,1"));
}

void TestCharts::pdf()
{
    QFETCH(Kind, kind);
    QTemporaryDir dir;
    auto chart = makeChart(kind);
    chart->resize(640, 420);
    const QString path = dir.filePath(str("chart.pdf"));
    QString error;
    QVERIFY2(chart->exportTo(path, ExportFormat::FromExtension, 1.0, &error), qPrintable(error));
    const QByteArray pdf = readAll(path);
    QVERIFY(pdf.startsWith("%PDF"));
    QVERIFY(pdf.trimmed().endsWith("%%EOF"));
    QVERIFY(pdf.size() > 1000);
}

void TestCharts::csvRoundTrip()
{
    QFETCH(Kind, kind);
    QTemporaryDir dir;
    auto chart = makeChart(kind);
    const QString path = dir.filePath(str("chart.csv"));
    QString error;
    QVERIFY2(chart->exportTo(path, ExportFormat::FromExtension, 1.0, &error), qPrintable(error));
    const QByteArray bytes = readAll(path);
    QCOMPARE(bytes.toStdString(), chart->csv());
    std::vector<std::pair<std::string, std::string>> comments;
    const Rows rows = cs::parseCsv(bytes.toStdString(), &comments);
    const Rows expected = expectedRows(kind);
    QCOMPARE(rows.size(), expected.size());
    for (std::size_t i = 0; i < rows.size(); ++i)
        QCOMPARE(rows[i], expected[i]);

    // Values read back exactly; tokens are raw (leading spaces, not the '·' display form).
    const std::size_t valueColumn = expected[0].size() - 1;
    for (std::size_t i = 1; i < rows.size(); ++i) {
        const std::string& v = rows[i][valueColumn];
        if (!v.empty())
            QCOMPARE(std::to_string(std::stod(v)), std::to_string(std::stod(expected[i][valueColumn])));
    }
    bool sawNasty = false, sawSpaced = false;
    for (const auto& row : rows) {
        for (const auto& field : row) {
            sawNasty |= field == nastyToken().toStdString();
            sawSpaced |= field == spacedToken().toStdString();
        }
    }
    QVERIFY(sawNasty);
    QVERIFY(sawSpaced);

    std::map<std::string, std::string> header(comments.begin(), comments.end());
    const Provenance p = provenance();
    QCOMPARE(header["model"], p.model.toStdString());
    QCOMPARE(header["prompt"], p.prompt.toStdString());
    QCOMPARE(header["node"], p.node.toStdString());
    QCOMPARE(header["metric"], p.metric.toStdString());
}

void TestCharts::unwritablePath_data()
{
    QTest::addColumn<Kind>("kind");
    QTest::addColumn<QString>("suffix");
    for (const char* suffix : {"png", "svg", "pdf", "csv"}) {
        QTest::addRow("tokens %s", suffix) << Kind::Tokens << str(suffix);
        QTest::addRow("heatmap %s", suffix) << Kind::DivergingHeatmap << str(suffix);
        QTest::addRow("activation %s", suffix) << Kind::Activation << str(suffix);
    }
}

void TestCharts::unwritablePath()
{
    QFETCH(Kind, kind);
    QFETCH(QString, suffix);
    QTemporaryDir dir;
    // A "directory" that is a regular file cannot hold anything, whoever runs the test.
    const QString notADir = dir.filePath(str("file"));
    {
        QFile f(notADir);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("x");
    }
    auto chart = makeChart(kind);
    const QString path = notADir % str("/chart.") % suffix;
    QString error;
    QVERIFY(!chart->exportTo(path, ExportFormat::FromExtension, 2.0, &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(error.contains(path));
    QVERIFY(!QFile::exists(path));
    QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden), QStringList{str("file")});
    QCOMPARE(readAll(notADir), QByteArray("x"));

    // A missing directory fails the same way.
    const QString missing = dir.filePath(str("missing/chart.")) % suffix;
    QVERIFY(!chart->exportTo(missing, ExportFormat::FromExtension, 1.0, &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(!QFile::exists(missing));
}

void TestCharts::badFormatOrScale()
{
    QTemporaryDir dir;
    auto chart = makeChart(Kind::Tokens);
    QString error;
    QVERIFY(!chart->exportTo(dir.filePath(str("chart.jpg")), ExportFormat::FromExtension, 1.0, &error));
    QVERIFY(error.contains(str(".png")));
    QVERIFY(!chart->exportTo(dir.filePath(str("chart.png")), ExportFormat::Png, 0.0, &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(!chart->exportTo(dir.filePath(str("chart.png")), ExportFormat::Png, std::nan(""), &error));
    QVERIFY(!chart->exportTo(dir.filePath(str("chart.png")), ExportFormat::Png, 1000.0, &error));
    QVERIFY(QDir(dir.path()).isEmpty());
    // An explicit format wins over the suffix.
    const QString path = dir.filePath(str("data.txt"));
    QVERIFY2(chart->exportTo(path, ExportFormat::Csv, 1.0, &error), qPrintable(error));
    QVERIFY(readAll(path).startsWith("# model: "));
}

void TestCharts::emptyData()
{
    QFETCH(Kind, kind);
    QTemporaryDir dir;
    auto chart = makeChart(kind, /*empty=*/true);
    chart->resize(500, 320);
    QVERIFY(!chart->hasData());
    QCOMPARE(chart->message(), str("No result"));
    QCOMPARE(chart->plot()->plottableCount(), 0);
    QVERIFY(!chart->plot()->xAxis->visible());
    QVERIFY(!chart->plot()->yAxis->visible());
    QVERIFY(chart->toolTipAt(QPointF(250, 160)).isEmpty());
    // The message is what the plot shows.
    bool shown = false;
    for (int i = 0; i < chart->plot()->itemCount(); ++i) {
        if (auto* text = qobject_cast<QCPItemText*>(chart->plot()->item(i)))
            shown |= text->text() == str("No result");
    }
    QVERIFY(shown);

    QString error;
    const QString png = dir.filePath(str("empty.png"));
    QVERIFY2(chart->exportTo(png, ExportFormat::FromExtension, 1.0, &error), qPrintable(error));
    QCOMPARE(QImage(png).size(), QSize(500, 320));
    const Rows rows = cs::parseCsv(chart->csv());
    QCOMPARE(rows.size(), std::size_t(1)); // the header only

    chart->setEmptyMessage(str("latent inactive at this token"));
    QCOMPARE(chart->message(), str("latent inactive at this token"));

    // Data after "no result" brings the plot back.
    auto full = makeChart(kind);
    QVERIFY(full->hasData());
    QVERIFY(full->message().isEmpty());
    QVERIFY(full->plot()->plottableCount() > 0);
}

void TestCharts::malformedHeatmap()
{
    Heatmap h = sampleHeatmap(false);
    h.values.removeLast();
    HeatmapChart chart;
    chart.setData(h, provenance());
    QVERIFY(!chart.hasData());
    QVERIFY(chart.message().startsWith(str("No result")));
    QString error;
    QTemporaryDir dir;
    QVERIFY2(chart.exportTo(dir.filePath(str("m.png")), ExportFormat::Png, 1.0, &error), qPrintable(error));
    QCOMPARE(cs::parseCsv(chart.csv()).size(), std::size_t(1));

    // Single row and single column maps are fine.
    Heatmap one;
    one.title = str("one");
    one.metric = str("p");
    one.rowLabels = QStringList{str(" x")};
    one.columnLabels = QStringList{str(" y")};
    one.values = {0.5};
    chart.setData(one, provenance());
    QVERIFY(chart.hasData());
    QVERIFY2(chart.exportTo(dir.filePath(str("one.png")), ExportFormat::Png, 1.0, &error), qPrintable(error));
}

void TestCharts::heatmapColorScale()
{
    HeatmapChart chart;
    chart.setData(sampleHeatmap(false), provenance());
    QVERIFY(!chart.isDiverging());
    QCOMPARE(chart.colorRangeLower(), 0.0);
    QCOMPARE(chart.colorRangeUpper(), 1.0);

    chart.setData(sampleHeatmap(true), provenance());
    QVERIFY(chart.isDiverging());
    double maxAbs = 0;
    for (const double v : sampleHeatmap(true).values) {
        if (!std::isnan(v))
            maxAbs = std::max(maxAbs, std::abs(v));
    }
    QCOMPARE(chart.colorRangeUpper(), maxAbs);
    QCOMPARE(chart.colorRangeLower(), -maxAbs);
    // The legend is labelled with the metric, and the selected query row is outlined.
    QCPColorScale* scale = nullptr;
    for (int i = 0; i < chart.plot()->plotLayout()->elementCount(); ++i) {
        if (auto* s = qobject_cast<QCPColorScale*>(chart.plot()->plotLayout()->elementAt(i)))
            scale = s;
    }
    QVERIFY(scale);
    QCOMPARE(scale->label(), str("attribution"));
    QCOMPARE(chart.plot()->itemCount(), 1);
    QVERIFY(qobject_cast<QCPItemRect*>(chart.plot()->item(0)));
    // CSV names the heatmap's metric when the provenance has none.
    Provenance p = provenance();
    p.metric.clear();
    chart.setData(sampleHeatmap(true), p);
    std::vector<std::pair<std::string, std::string>> comments;
    cs::parseCsv(chart.csv(), &comments);
    QVERIFY(std::find(comments.begin(), comments.end(), std::pair<std::string, std::string>("metric", "attribution"))
            != comments.end());
}

void TestCharts::hoverText()
{
    TokenBarChart bars;
    bars.resize(800, 500);
    bars.setData(sampleTokens(), provenance());
    bars.show();
    QVERIFY(QTest::qWaitForWindowExposed(&bars));
    QCustomPlot* p = bars.plot();
    // The second top bar (the comma/quote/newline token), hovered in the middle of its row.
    const QString tip = bars.toolTipAt(QPointF(p->xAxis->coordToPixel(0.1), p->yAxis->coordToPixel(1.0)));
    QVERIFY2(tip.contains(str("a,b \"c\"\xE2\x8F\x8E" "d")), qPrintable(tip));
    QVERIFY(tip.contains(str("id 11")));
    QVERIFY(tip.contains(formatValue(1.0 / 3.0)));
    // The most negative token is drawn last, at the bottom.
    const TokenBarChart::Bar* lowest = &bars.bars().front();
    for (const TokenBarChart::Bar& bar : bars.bars()) {
        if (bar.key > lowest->key)
            lowest = &bar;
    }
    QCOMPARE(lowest->entry.token, str(" John"));
    QVERIFY(!lowest->top);
    QCOMPARE(lowest->rank, 1);
    const QString tipBottom = bars.toolTipAt(QPointF(p->xAxis->coordToPixel(-1.0), p->yAxis->coordToPixel(lowest->key)));
    QVERIFY2(tipBottom.contains(str("\xC2\xB7John")), qPrintable(tipBottom));
    QVERIFY(tipBottom.contains(str("-1.75")));
    QVERIFY(bars.toolTipAt(QPointF(-100, -100)).isEmpty());

    HeatmapChart heat;
    heat.resize(800, 500);
    heat.setData(sampleHeatmap(true), provenance());
    heat.show();
    QVERIFY(QTest::qWaitForWindowExposed(&heat));
    QCustomPlot* hp = heat.plot();
    const QPointF cell(hp->xAxis->coordToPixel(1), hp->yAxis->coordToPixel(3));
    QCOMPARE(heat.cellAt(cell), QPoint(3, 1));
    const QString heatTip = heat.toolTipAt(cell);
    QCOMPARE(heatTip, str("q: a,b \"c\"\xE2\x8F\x8E" "d (3) \xE2\x86\x92 k: \xC2\xB7Mary (1): ") % formatValue(1.0 / 7.0));
    QVERIFY(heat.toolTipAt(QPointF(hp->xAxis->coordToPixel(4), hp->yAxis->coordToPixel(0))).endsWith(str("no value")));

    ActivationChart act;
    act.resize(800, 500);
    act.setData(promptTokens(), activations(), provenance(), str("Activation by token"));
    act.show();
    QVERIFY(QTest::qWaitForWindowExposed(&act));
    QCustomPlot* ap = act.plot();
    const QPointF bar(ap->xAxis->coordToPixel(1), ap->yAxis->coordToPixel(-0.5));
    QCOMPARE(act.indexAt(bar), 1);
    QVERIFY2(act.toolTipAt(bar).contains(str("\xC2\xB7Mary")), qPrintable(act.toolTipAt(bar)));
    QVERIFY(act.toolTipAt(bar).contains(str("-1.25")));
}

void TestCharts::fontChangeKeepsData()
{
    auto chart = makeChart(Kind::Heatmap);
    const std::string before = chart->csv();
    QFont big = chart->font();
    big.setPointSizeF(20);
    chart->setFont(big);
    QVERIFY(chart->hasData());
    QCOMPARE(chart->csv(), before);
    QCOMPARE(chart->plot()->xAxis->labelFont().pointSizeF(), 20.0);
}

void TestCharts::figure_data()
{
    QTest::addColumn<Kind>("kind");
    QTest::addColumn<QString>("suffix");
    for (const char* suffix : {"png", "svg", "pdf", "csv"}) {
        QTest::addRow("tokens %s", suffix) << Kind::Tokens << str(suffix);
        QTest::addRow("heatmap %s", suffix) << Kind::DivergingHeatmap << str(suffix);
        QTest::addRow("activation %s", suffix) << Kind::Activation << str(suffix);
    }
}

void TestCharts::figure()
{
    QFETCH(Kind, kind);
    QFETCH(QString, suffix);
    FigureData fig;
    fig.provenance = provenance();
    fig.size = QSize(600, 400);
    fig.scale = 2;
    if (kind == Kind::Tokens)
        fig.data = sampleTokens();
    else if (kind == Kind::Activation)
        fig.data = ActivationSeries{str("Activation by token"), promptTokens(), activations()};
    else
        fig.data = sampleHeatmap(true);
    QTemporaryDir dir;
    const QString path = dir.filePath(str("figure.") % suffix);
    QString error;
    QVERIFY2(renderFigure(fig, path, &error), qPrintable(error));
    const QByteArray bytes = readAll(path);
    if (suffix == str("png")) {
        const QImage image = QImage::fromData(bytes);
        QCOMPARE(image.size(), QSize(1200, 800));
        QVERIFY(coloredPixels(image) > 50);
    } else if (suffix == str("svg")) {
        QVERIFY(QSvgRenderer(bytes).isValid());
    } else if (suffix == str("pdf")) {
        QVERIFY(bytes.startsWith("%PDF"));
    } else {
        QCOMPARE(cs::parseCsv(bytes.toStdString()), expectedRows(kind));
    }
    QVERIFY(!renderFigure(fig, dir.filePath(str("nowhere/figure.")) % suffix, &error));
    QVERIFY(!error.isEmpty());
}

void TestCharts::figureWithoutData()
{
    FigureData fig;
    fig.provenance = provenance();
    fig.emptyMessage = str("not an attention node");
    fig.size = QSize(400, 300);
    fig.scale = 1;
    QTemporaryDir dir;
    QString error;
    QVERIFY2(renderFigure(fig, dir.filePath(str("none.png")), &error), qPrintable(error));
    QCOMPARE(QImage(dir.filePath(str("none.png"))).size(), QSize(400, 300));
    fig.size = QSize(10, 10);
    QVERIFY(!renderFigure(fig, dir.filePath(str("tiny.png")), &error));
    QVERIFY(!error.isEmpty());
}

void TestCharts::exportButton()
{
    auto chart = makeChart(Kind::Tokens);
    chart->resize(300, 200);
    ExportButton button(chart.get());
    QVERIFY(button.isEnabled());
    QVERIFY(button.menu());
    QStringList labels;
    for (QAction* action : button.menu()->actions()) {
        if (!action->isSeparator())
            labels << action->text();
    }
    for (const char* expected : {"PNG", "SVG", "PDF", "CSV", "1\xC3\x97", "2\xC3\x97", "4\xC3\x97"}) {
        bool found = false;
        for (const QString& label : labels)
            found |= label.startsWith(str(expected));
        QVERIFY2(found, expected);
    }
    QCOMPARE(button.pngScale(), 2.0);

    QTemporaryDir dir;
    QString suggested;
    button.setFileNameProvider([&](ExportFormat format, const QString& path) {
        suggested = path;
        return format == ExportFormat::Csv ? QString() : dir.filePath(str("from-button"));
    });
    QSignalSpy exported(&button, &ExportButton::exported);
    button.setPngScale(4);
    QVERIFY(button.exportAs(ExportFormat::Png));
    QVERIFY(suggested.endsWith(str("attn_5_1_13_1-write_tokens_this_context.png")));
    QCOMPARE(exported.count(), 1);
    QCOMPARE(exported.at(0).at(0).toString(), dir.filePath(str("from-button.png")));
    QCOMPARE(QImage(dir.filePath(str("from-button.png"))).size(), QSize(1200, 800));
    QVERIFY(!button.exportAs(ExportFormat::Csv)); // cancelled
    QCOMPARE(exported.count(), 1);

    chart.reset();
    QVERIFY(!button.exportAs(ExportFormat::Png)); // the chart is gone: nothing happens
}

QTEST_MAIN(TestCharts)
#include "tst_charts.moc"
