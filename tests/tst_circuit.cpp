// The circuit (issue 6): the pin list model (reorder by model moves and by drag-and-drop mime data,
// under QAbstractItemModelTester), the Circuit panel's keyboard actions, the circuit CSV (parsed back)
// and multi-page PDF (one page per pin), and — on the tiny model in the real window — pinning from the
// grid, the table and the inspector, notes through session save/open and autosave, exporting from the
// window, and present mode's keys and background computing.

#include "core/export/csv.h"
#include "test_support.h"
#include "ui/charts/circuit_report.h"
#include "ui/charts/heatmap_chart.h"
#include "ui/charts/token_bar_chart.h"
#include "ui/engine/view_cache.h"
#include "ui/widgets/circuit_panel.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/main_window.h"
#include "ui/widgets/node_inspector.h"
#include "ui/widgets/node_table_model.h"
#include "ui/widgets/node_table_view.h"
#include "ui/widgets/present_view.h"

#include <QAbstractItemModelTester>
#include <QAction>
#include <QApplication>
#include <QContextMenuEvent>
#include <QFile>
#include <QLineEdit>
#include <QMenu>
#include <QMimeData>
#include <QPushButton>
#include <QSemaphore>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>
#include <QTableView>

#include <cmath>
#include <limits>

using namespace cs;
using namespace cs::ui;

using test::kPrompt;
using test::tinyModel;

namespace {

constexpr auto kQtTest = QAbstractItemModelTester::FailureReportingMode::QtTest;

// A note that needs every CSV quoting rule, and non-ASCII text.
const std::string kNastyNote = "reads \"Mary\", writes John\nsecond line · ünïcode";

QStringList names(const PinListModel& model)
{
    QStringList out;
    for (const auto& p : model.pins())
        out << QString::fromStdString(p.node);
    return out;
}

std::vector<Session::Pin> pinsNamed(const QStringList& names)
{
    std::vector<Session::Pin> pins;
    for (const QString& n : names)
        pins.push_back({n.toStdString(), "note " + n.toStdString()});
    return pins;
}

// Page objects in a PDF: "/Type /Page" not followed by "s" (that one is the page tree).
int pdfPageCount(const QByteArray& pdf)
{
    int pages = 0;
    const QByteArray needle("/Type /Page");
    for (qsizetype at = pdf.indexOf(needle); at >= 0; at = pdf.indexOf(needle, at + 1)) {
        const qsizetype next = at + needle.size();
        if (next >= pdf.size() || pdf[next] != 's')
            ++pages;
    }
    return pages;
}

QByteArray readAll(const QString& path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// A synthetic view of each kind of page: a neuron (write + read), a head (write, Q- and K-read and a
// pair map), an attention latent (write, read, pair map).
NodeView syntheticView(const NodeRef& node)
{
    NodeView v;
    v.node = node;
    v.name = QString::fromStdString(node.name());
    v.tokens = {QStringLiteral("When"), QStringLiteral("·Mary"), QStringLiteral("·and"), QStringLiteral("·John")};
    v.tokenLabel = QStringLiteral("·John (3)");
    v.metrics.activation = 1.25;
    v.metrics.writeMagnitude = 0.5;
    v.metrics.directEffect = -0.125;
    v.provenance = {QStringLiteral("tiny"), QStringLiteral("When Mary and John"), v.name, QString()};
    auto list = [](const QString& title) {
        TopTokenList l;
        l.title = title;
        for (int i = 0; i < 20; ++i) {
            l.top.push_back({i, QStringLiteral(" tok%1").arg(i), 2.0 - i * 0.1});
            l.bottom.push_back({100 + i, QStringLiteral(" neg%1").arg(i), -2.0 + i * 0.1});
        }
        return l;
    };
    v.writeInContext = list(QStringLiteral("Write tokens (this context)"));
    v.writePerUnit = list(QStringLiteral("Write tokens (per unit activation)"));
    v.reads.push_back(list(QStringLiteral("Read tokens")));
    if (node.kind == NodeKind::AttnHead)
        v.reads.push_back(list(QStringLiteral("K-read tokens (key side)")));
    if (node.kind == NodeKind::AttnHead || node.kind == NodeKind::AttnSaeLatent) {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        QVector<double> values;
        for (int q = 0; q < 4; ++q)
            for (int k = 0; k < 4; ++k)
                values << (k <= q ? 1.0 / (q + 1) : nan);
        v.pairMaps.push_back({QStringLiteral("Attention probability"), QStringLiteral("P[q,k]"), v.tokens, v.tokens, values, 3});
    }
    v.activationByToken = {0.1, 0.2, 0.3, 1.25};
    return v;
}

CircuitReport syntheticReport(int pages)
{
    CircuitReport r;
    r.model = QStringLiteral("tiny-gpt2");
    r.prompt = QStringLiteral("When Mary and John");
    r.objective = QStringLiteral("logit(·Mary) − logit(·John)");
    const NodeRef kinds[] = {NodeRef{NodeKind::MlpNeuron, 1, 5, 3, 0}, NodeRef{NodeKind::AttnHead, 1, 2, 3, 1},
                             NodeRef{NodeKind::AttnSaeLatent, 1, 10, 3, 0}};
    for (int i = 0; i < pages; ++i) {
        NodeRef n = kinds[i % 3];
        n.index += i; // distinct names
        CircuitPage p;
        p.node = QString::fromStdString(n.name());
        p.note = i == 0 ? QString::fromStdString(kNastyNote) : QStringLiteral("pin %1").arg(i + 1);
        p.view = syntheticView(n);
        r.pages.push_back(p);
    }
    return r;
}

// Runs `pick` on the next popup menu that opens (QMenu::exec blocks until it closes) and closes it.
void onNextPopup(std::function<void(QMenu*)> pick)
{
    QTimer::singleShot(0, qApp, [pick = std::move(pick)] {
        auto* menu = qobject_cast<QMenu*>(QApplication::activePopupWidget());
        if (!menu)
            return;
        pick(menu);
        menu->close();
    });
}

QAction* actionStartingWith(QMenu* menu, const QString& prefix)
{
    for (QAction* a : menu->actions()) {
        if (a->text().startsWith(prefix))
            return a;
    }
    return nullptr;
}

} // namespace

class TestCircuit : public QObject {
    Q_OBJECT

    std::unique_ptr<MainWindow> m_window;

    void openWindow()
    {
        m_window = std::make_unique<MainWindow>();
        m_window->resize(1600, 1000);
        m_window->show();
        QSignalSpy ready(m_window.get(), &MainWindow::modelReady);
        m_window->openModel(tinyModel());
        QVERIFY(test::waitForSignal(ready, 30000));
    }

    void run(const QString& target = QStringLiteral(" Mary"), const QString& distractor = QStringLiteral(" John"))
    {
        m_window->setPrompt(kPrompt, {target}, {distractor});
        QSignalSpy ready(m_window.get(), &MainWindow::runReady);
        m_window->run();
        QVERIFY2(test::waitForSignal(ready, 60000), qPrintable(m_window->errorText()));
    }

    void showNode(const QString& name)
    {
        m_window->selectNode(NodeRef::parse(name.toStdString()));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().name == name, 30000);
    }

private Q_SLOTS:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }
    void cleanup() { m_window.reset(); }

    // ---- the model -------------------------------------------------------------------------------

    void pinModelUnderTester()
    {
        PinListModel model;
        QAbstractItemModelTester tester(&model, kQtTest);
        QSignalSpy changed(&model, &PinListModel::pinsChanged);
        // A hand-edited session may repeat a pin or leave a name empty: both dropped, order kept.
        model.setPins({{"mlp:1:5@13", "a"}, {"", "empty"}, {"attn:0:3@13,2", "b"}, {"mlp:1:5@13", "again"}});
        QCOMPARE(names(model), (QStringList{QStringLiteral("mlp:1:5@13"), QStringLiteral("attn:0:3@13,2")}));
        QCOMPARE(model.pins()[0].note, std::string("a"));
        QVERIFY(model.addPin(QStringLiteral("emb@2"), QStringLiteral("embedding")));
        QVERIFY(!model.addPin(QStringLiteral("emb@2")));
        QVERIFY(!model.addPin(QString()));
        QCOMPARE(model.rowCount(), 3);
        QCOMPARE(model.headerData(2, Qt::Vertical).toInt(), 3); // the pin's number
        QCOMPARE(model.index(1, PinListModel::NodeColumn).data().toString(), QStringLiteral("attn:0:3@13,2"));
        // Only the note is editable.
        QVERIFY(!(model.flags(model.index(0, PinListModel::NodeColumn)) & Qt::ItemIsEditable));
        QVERIFY(model.setData(model.index(0, PinListModel::NoteColumn), QString::fromStdString(kNastyNote)));
        QVERIFY(!model.setData(model.index(0, PinListModel::NodeColumn), QStringLiteral("mlp:9:9@9")));
        QCOMPARE(model.pins()[0].note, kNastyNote);
        QCOMPARE(model.pins()[0].node, std::string("mlp:1:5@13"));
        QVERIFY(model.removePin(QStringLiteral("mlp:1:5@13")));
        QVERIFY(!model.removePin(QStringLiteral("mlp:1:5@13")));
        QCOMPARE(names(model), (QStringList{QStringLiteral("attn:0:3@13,2"), QStringLiteral("emb@2")}));
        QVERIFY(changed.count() >= 4);
    }

    void movePinReorders_data()
    {
        QTest::addColumn<int>("from");
        QTest::addColumn<int>("to");
        QTest::addColumn<QString>("expected");
        QTest::addColumn<bool>("moved");
        QTest::newRow("first to last") << 0 << 3 << QStringLiteral("B C D A") << true;
        QTest::newRow("last to first") << 3 << 0 << QStringLiteral("D A B C") << true;
        QTest::newRow("one down") << 1 << 2 << QStringLiteral("A C B D") << true;
        QTest::newRow("one up") << 2 << 1 << QStringLiteral("A C B D") << true;
        QTest::newRow("onto itself") << 2 << 2 << QStringLiteral("A B C D") << false;
        QTest::newRow("past the end") << 1 << 4 << QStringLiteral("A B C D") << false;
        QTest::newRow("negative") << -1 << 0 << QStringLiteral("A B C D") << false;
    }
    void movePinReorders()
    {
        QFETCH(int, from);
        QFETCH(int, to);
        QFETCH(QString, expected);
        QFETCH(bool, moved);
        PinListModel model;
        QAbstractItemModelTester tester(&model, kQtTest);
        model.setPins(pinsNamed({QStringLiteral("A"), QStringLiteral("B"), QStringLiteral("C"), QStringLiteral("D")}));
        QSignalSpy rowsMoved(&model, &QAbstractItemModel::rowsMoved);
        QCOMPARE(model.movePin(from, to), moved);
        QCOMPARE(names(model).join(u' '), expected);
        QCOMPARE(rowsMoved.count(), moved ? 1 : 0);
        // Notes travel with their pins.
        for (int row = 0; row < model.rowCount(); ++row) {
            QCOMPARE(model.pins()[row].note, "note " + model.pins()[row].node);
            QCOMPARE(model.index(row, PinListModel::NoteColumn).data().toString(), QString::fromStdString(model.pins()[row].note));
        }
    }

    void dragMimeRoundTrip()
    {
        PinListModel model;
        QAbstractItemModelTester tester(&model, kQtTest);
        model.setPins(pinsNamed({QStringLiteral("A"), QStringLiteral("B"), QStringLiteral("C"), QStringLiteral("D")}));
        model.setData(model.index(0, PinListModel::NoteColumn), QString::fromStdString(kNastyNote));

        // Drag A (any column of its row selects it) and drop it between C and D.
        std::unique_ptr<QMimeData> data(model.mimeData({model.index(0, PinListModel::NodeColumn), model.index(0, PinListModel::NoteColumn)}));
        QVERIFY(data->hasFormat(PinListModel::kMimeType));
        QCOMPARE(data->text(), QStringLiteral("A"));
        QVERIFY(model.canDropMimeData(data.get(), Qt::MoveAction, 3, 0, {}));
        QVERIFY(model.dropMimeData(data.get(), Qt::MoveAction, 3, 0, {}));
        QCOMPARE(names(model).join(u' '), QStringLiteral("B C A D"));
        QCOMPARE(model.pins()[2].note, kNastyNote);

        // Two pins dropped on D's row (before D) keep their order; a drop below the list appends.
        data.reset(model.mimeData({model.index(0, 0), model.index(1, 0)}));
        QCOMPARE(data->text(), QStringLiteral("B\nC"));
        QVERIFY(model.dropMimeData(data.get(), Qt::MoveAction, -1, -1, model.index(3, 0)));
        QCOMPARE(names(model).join(u' '), QStringLiteral("A B C D"));
        data.reset(model.mimeData({model.index(0, 0)}));
        QVERIFY(model.dropMimeData(data.get(), Qt::MoveAction, -1, -1, {}));
        QCOMPARE(names(model).join(u' '), QStringLiteral("B C D A"));

        // Pins from another window's circuit are added, never duplicated.
        PinListModel other;
        other.setPins(pinsNamed({QStringLiteral("E"), QStringLiteral("A")}));
        data.reset(other.mimeData({other.index(0, 0), other.index(1, 0)}));
        QVERIFY(model.dropMimeData(data.get(), Qt::CopyAction, 0, 0, {}));
        QCOMPARE(names(model).join(u' '), QStringLiteral("E A B C D"));

        // Not ours, or malformed: refused, nothing changes.
        QMimeData text;
        text.setText(QStringLiteral("mlp:1:5@13"));
        QVERIFY(!model.canDropMimeData(&text, Qt::MoveAction, 0, 0, {}));
        QVERIFY(!model.dropMimeData(&text, Qt::MoveAction, 0, 0, {}));
        QMimeData broken;
        broken.setData(PinListModel::kMimeType, "[{\"node\": 3}, \"x\", {\"nod");
        QVERIFY(!model.dropMimeData(&broken, Qt::MoveAction, 0, 0, {}));
        QCOMPARE(names(model).join(u' '), QStringLiteral("E A B C D"));
    }

    void panelKeyboardActions()
    {
        CircuitPanel panel;
        panel.setPins(pinsNamed({QStringLiteral("A"), QStringLiteral("B"), QStringLiteral("C")}));
        QSignalSpy changed(&panel, &CircuitPanel::pinsChanged);
        panel.setCurrentRow(2);
        QVERIFY(!panel.moveDownAction()->isEnabled());
        QVERIFY(panel.moveUpAction()->isEnabled());
        panel.moveUpAction()->trigger();
        QCOMPARE(names(*panel.model()).join(u' '), QStringLiteral("A C B"));
        QCOMPARE(panel.currentRow(), 1);
        panel.moveUpAction()->trigger();
        QCOMPARE(names(*panel.model()).join(u' '), QStringLiteral("C A B"));
        QCOMPARE(panel.currentRow(), 0);
        QVERIFY(!panel.moveUpAction()->isEnabled());
        panel.moveDownAction()->trigger();
        QCOMPARE(names(*panel.model()).join(u' '), QStringLiteral("A C B"));
        QCOMPARE(panel.currentRow(), 1);
        panel.removeAction()->trigger();
        QCOMPARE(names(*panel.model()).join(u' '), QStringLiteral("A B"));
        QCOMPARE(panel.currentRow(), 1); // the next pin takes the removed one's place
        QVERIFY(changed.count() >= 4);

        // The same through the keys, with the list focused (Ctrl+Up/Down, Delete).
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.view()->setFocus();
        panel.setCurrentRow(1);
        QTest::keyClick(panel.view(), Qt::Key_Up, Qt::ControlModifier);
        QCOMPARE(names(*panel.model()).join(u' '), QStringLiteral("B A"));
        QTest::keyClick(panel.view(), Qt::Key_Delete);
        QCOMPARE(names(*panel.model()).join(u' '), QStringLiteral("A"));

        // Clicking a pin asks the window to select its node.
        QSignalSpy activated(&panel, &CircuitPanel::nodeActivated);
        const QRect cell = panel.view()->visualRect(panel.model()->index(0, PinListModel::NodeColumn));
        QTest::mouseClick(panel.view()->viewport(), Qt::LeftButton, {}, cell.center());
        QCOMPARE(activated.count(), 1);
        QCOMPARE(activated.first().first().toString(), QStringLiteral("A"));
    }

    // ---- the documents ---------------------------------------------------------------------------

    void circuitCsvRoundTrips()
    {
        CircuitReport report = syntheticReport(3);
        report.pages[1].view->metrics.totalEffect = 0.1 + 0.2; // a value "%.9g" would not round-trip
        report.pages[2].view.reset();
        report.pages[2].error = QStringLiteral("node 'mlp:1:5@40': token 40 is outside the prompt");
        const std::string text = circuitCsv(report);
        std::vector<std::pair<std::string, std::string>> comments;
        const auto rows = parseCsv(text, &comments);
        QCOMPARE(comments.size(), std::size_t(5));
        QCOMPARE(comments[0], (std::pair<std::string, std::string>{"model", "tiny-gpt2"}));
        QCOMPARE(comments[1].second, std::string("When Mary and John"));
        QCOMPARE(comments[2].first, std::string("objective"));
        QCOMPARE(comments[4], (std::pair<std::string, std::string>{"pins", "3"}));
        QCOMPARE(rows.size(), std::size_t(4));
        QCOMPARE(rows[0], (std::vector<std::string>{"order", "node", "note", "activation", "write_magnitude", "direct_effect",
                                                    "total_effect", "top_write_tokens", "error"}));
        QCOMPARE(rows[1][0], std::string("1"));
        QCOMPARE(rows[1][1], report.pages[0].node.toStdString());
        QCOMPARE(rows[1][2], kNastyNote);
        QCOMPARE(std::stod(rows[1][3]), 1.25);
        QCOMPARE(std::stod(rows[1][5]), -0.125);
        QCOMPARE(rows[1][6], std::string()); // no total effect known: empty, not 0
        QCOMPARE(rows[1][7], std::string(" tok0,  tok1,  tok2,  tok3,  tok4")); // leading spaces kept
        QCOMPARE(rows[1][8], std::string());
        QCOMPARE(std::stod(rows[2][6]), 0.1 + 0.2);
        QCOMPARE(rows[3][0], std::string("3"));
        QCOMPARE(rows[3][3], std::string());
        QCOMPARE(rows[3][8], report.pages[2].error.toStdString());
        for (const auto& row : rows)
            QCOMPARE(row.size(), std::size_t(9));
    }

    void circuitPdfHasOnePagePerPin_data()
    {
        QTest::addColumn<int>("pins");
        QTest::newRow("one neuron") << 1;
        QTest::newRow("neuron, head, attention latent") << 3;
        QTest::newRow("seven, one not computed") << 7;
    }
    void circuitPdfHasOnePagePerPin()
    {
        QFETCH(int, pins);
        CircuitReport report = syntheticReport(pins);
        if (pins > 3) {
            report.pages[4].view.reset();
            report.pages[4].error = QStringLiteral("run a prompt first");
        }
        QString error;
        const QByteArray pdf = circuitPdf(report, &error);
        QVERIFY2(error.isEmpty(), qPrintable(error));
        QVERIFY(pdf.startsWith("%PDF-"));
        QCOMPARE(pdfPageCount(pdf), pins);
        QVERIFY(pdf.contains(QByteArray(QByteArray("/Count ") + QByteArray::number(pins))));
        QVERIFY(pdf.contains("circuit.csv")); // the data travels with the document

        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("circuit.pdf"));
        QVERIFY2(writeCircuit(report, path, &error), qPrintable(error));
        QCOMPARE(pdfPageCount(readAll(path)), pins);
    }

    void circuitExportRefusesBadInput()
    {
        QTemporaryDir dir;
        QString error;
        QVERIFY(circuitPdf(CircuitReport{}, &error).isEmpty());
        QCOMPARE(error, QStringLiteral("the circuit has no pinned nodes"));
        const QString odd = dir.filePath(QStringLiteral("circuit.docx"));
        QVERIFY(!writeCircuit(syntheticReport(1), odd, &error));
        QVERIFY2(error.contains(QStringLiteral("use .csv or .pdf")), qPrintable(error));
        QVERIFY(!QFile::exists(odd));
        const QString nowhere = dir.filePath(QStringLiteral("missing/folder/circuit.csv"));
        QVERIFY(!writeCircuit(syntheticReport(1), nowhere, &error));
        QVERIFY2(error.startsWith(QStringLiteral("cannot write")), qPrintable(error));
        QVERIFY(!error.contains(u'\n'));
    }

    // ---- in the window ---------------------------------------------------------------------------

    void pinFromTheGrid()
    {
        openWindow();
        run();
        LayerGrid* grid = m_window->grid();
        const LayerGrid::Cell cell = grid->cells()[3];
        const QString name = QString::fromStdString(cell.cell.node.name());
        QTest::mouseClick(grid, Qt::LeftButton, {}, cell.rect.center());
        QTest::keyClick(grid, Qt::Key_P);
        QCOMPARE(names(*m_window->circuit()->model()), QStringList{name});
        QVERIFY(grid->isPinned(cell.cell.node));
        QTest::keyClick(grid, Qt::Key_P);
        QVERIFY(m_window->circuit()->pins().empty());
        QVERIFY(!grid->isPinned(cell.cell.node));

        // Context menu on another cell: "Pin <name>", then "Unpin <name>".
        const LayerGrid::Cell other = grid->cells().last();
        const QString otherName = QString::fromStdString(other.cell.node.name());
        for (const QString& verb : {QStringLiteral("Pin "), QStringLiteral("Unpin ")}) {
            QString seen;
            onNextPopup([&](QMenu* menu) {
                if (QAction* a = actionStartingWith(menu, verb)) {
                    seen = a->text();
                    a->trigger();
                }
            });
            QContextMenuEvent event(QContextMenuEvent::Mouse, other.rect.center(), grid->mapToGlobal(other.rect.center()));
            QApplication::sendEvent(grid, &event);
            QCOMPARE(seen, verb + otherName);
            QCOMPARE(m_window->circuit()->isPinned(otherName), verb == u"Pin ");
        }
    }

    void pinFromTheTable()
    {
        openWindow();
        run();
        NodeTableView* table = m_window->table();
        std::unique_ptr<QMenu> menu(table->contextMenuForRow(0));
        QVERIFY(menu);
        const QString name = QString::fromStdString(table->model()->nodeAt(table->proxy()->mapToSource(table->proxy()->index(0, 0)).row()).name());
        QAction* pin = actionStartingWith(menu.get(), QStringLiteral("Pin "));
        QVERIFY(pin);
        QCOMPARE(pin->text(), QStringLiteral("Pin ") + name);
        pin->trigger();
        QVERIFY(m_window->circuit()->isPinned(name));
        menu.reset(table->contextMenuForRow(0));
        QAction* unpin = actionStartingWith(menu.get(), QStringLiteral("Unpin "));
        QVERIFY(unpin);
        unpin->trigger();
        QVERIFY(m_window->circuit()->pins().empty());
        QVERIFY(!table->contextMenuForRow(10000));
    }

    void pinFromTheInspector()
    {
        openWindow();
        run();
        showNode(QStringLiteral("attn:1:2@13,1"));
        QPushButton* button = m_window->inspector()->pinButton();
        QCOMPARE(button->text(), QStringLiteral("Pin"));
        QTest::mouseClick(button, Qt::LeftButton);
        QCOMPARE(names(*m_window->circuit()->model()), QStringList{QStringLiteral("attn:1:2@13,1")});
        QCOMPARE(button->text(), QStringLiteral("Unpin"));
        QCOMPARE(m_window->circuit()->currentRow(), 0);
        // Selecting another node shows "Pin" again; unpinning from the panel updates the button.
        showNode(QStringLiteral("mlp:1:5@13"));
        QCOMPARE(button->text(), QStringLiteral("Pin"));
        QTest::mouseClick(button, Qt::LeftButton);
        QCOMPARE(m_window->circuit()->pins().size(), std::size_t(2));
        m_window->circuit()->unpin(QStringLiteral("mlp:1:5@13"));
        QCOMPARE(button->text(), QStringLiteral("Pin"));
        // Clicking a pin in the panel selects its node in the window.
        QSignalSpy shown(m_window.get(), &MainWindow::nodeShown);
        Q_EMIT m_window->circuit()->nodeActivated(QStringLiteral("attn:1:2@13,1"));
        QTRY_COMPARE_WITH_TIMEOUT(m_window->inspector()->view().name, QStringLiteral("attn:1:2@13,1"), 30000);
        QCOMPARE(button->text(), QStringLiteral("Unpin"));
        // A pin that does not fit this prompt: a one-line error, nothing else changes.
        m_window->circuit()->pin(QStringLiteral("mlp:1:5@40"));
        Q_EMIT m_window->circuit()->nodeActivated(QStringLiteral("mlp:1:5@40"));
        QVERIFY2(m_window->errorText().startsWith(QStringLiteral("Pinned node mlp:1:5@40 is not in this prompt")), qPrintable(m_window->errorText()));
        QCOMPARE(m_window->inspector()->view().name, QStringLiteral("attn:1:2@13,1"));
    }

    void notesSurviveSessionSaveAndOpen()
    {
        openWindow();
        run();
        QFile::remove(MainWindow::autosavePath());
        QVERIFY(m_window->autosaveNow());
        const QByteArray before = readAll(MainWindow::autosavePath());
        // Pins and notes are unsaved changes: the next autosave writes them.
        m_window->togglePin(NodeRef::parse("mlp:1:5@13"));
        m_window->togglePin(NodeRef::parse("attn:1:2@13,1"));
        m_window->togglePin(NodeRef::parse("emb@3"));
        PinListModel* model = m_window->circuit()->model();
        model->setData(model->index(0, PinListModel::NoteColumn), QString::fromStdString(kNastyNote));
        model->setData(model->index(1, PinListModel::NoteColumn), QStringLiteral("moves Mary"));
        QVERIFY(model->movePin(2, 0));
        QVERIFY(m_window->autosaveNow());
        const Session autosaved = loadSession(MainWindow::autosavePath().toStdString());
        QVERIFY(readAll(MainWindow::autosavePath()) != before);
        const std::vector<Session::Pin> expected{{"emb@3", ""}, {"mlp:1:5@13", kNastyNote}, {"attn:1:2@13,1", "moves Mary"}};
        QCOMPARE(autosaved.pins, expected);

        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("circuit.circuitscope.json"));
        QVERIFY(m_window->saveSession(path));
        MainWindow other;
        other.resize(1600, 1000);
        QSignalSpy restored(&other, &MainWindow::sessionRestored);
        other.openSession(path);
        QVERIFY2(test::waitForSignal(restored, 60000), qPrintable(other.errorText()));
        QCOMPARE(other.circuit()->pins(), expected);
        QCOMPARE(other.circuit()->model()->index(1, PinListModel::NoteColumn).data().toString(), QString::fromStdString(kNastyNote));
        QCOMPARE(other.currentSession().pins, expected);
        // The restored grid marks the pinned nodes.
        QVERIFY(other.grid()->isPinned(NodeRef::parse("mlp:1:5@13")));
    }

    void exportFromTheWindow()
    {
        openWindow();
        run();
        for (const char* n : {"mlp:1:5@13", "attn:1:2@13,1", "mlp:0:7@40", "mlp:0:3@2"})
            m_window->circuit()->pin(QString::fromLatin1(n), QStringLiteral("note, \"%1\"").arg(QString::fromLatin1(n)));
        QTemporaryDir dir;
        const QString csvPath = dir.filePath(QStringLiteral("circuit.csv"));
        QSignalSpy exported(m_window.get(), &MainWindow::circuitExported);
        m_window->exportCircuit(csvPath);
        QVERIFY2(test::waitForSignal(exported, 60000), qPrintable(m_window->errorText()));
        QCOMPARE(exported.first().first().toString(), csvPath);
        std::vector<std::pair<std::string, std::string>> comments;
        const auto rows = parseCsv(readAll(csvPath).toStdString(), &comments);
        QCOMPARE(comments[0].second, std::string("tiny-gpt2"));
        QCOMPARE(comments[1].second, kPrompt.toStdString());
        QCOMPARE(rows.size(), std::size_t(5));
        // Each row carries the numbers the engine computed for that node.
        for (int i = 0; i < 4; ++i) {
            const auto& row = rows[std::size_t(i + 1)];
            const QString name = QString::fromStdString(row[1]);
            QCOMPARE(row[0], std::to_string(i + 1));
            QCOMPARE(row[2], "note, \"" + row[1] + "\"");
            if (name == u"mlp:0:7@40") {
                QVERIFY2(QString::fromStdString(row[8]).contains(QStringLiteral("40")), row[8].c_str());
                QCOMPARE(row[3], std::string());
                continue;
            }
            const NodeView* v = m_window->views()->view(name);
            QVERIFY(v);
            QCOMPARE(std::stod(row[3]), v->metrics.activation);
            QCOMPARE(std::stod(row[5]), *v->metrics.directEffect);
            QCOMPARE(std::stod(row[6]), *v->metrics.totalEffect);
            QVERIFY(QString::fromStdString(row[7]).startsWith(v->writeInContext.top[0].token));
            QCOMPARE(row[8], std::string());
        }

        const QString pdfPath = dir.filePath(QStringLiteral("circuit.pdf"));
        exported.clear();
        m_window->exportCircuit(pdfPath);
        QVERIFY2(test::waitForSignal(exported, 60000), qPrintable(m_window->errorText()));
        QCOMPARE(pdfPageCount(readAll(pdfPath)), 4);

        // Nothing pinned, or a format we do not write: a one-line error, no file.
        m_window->exportCircuit(dir.filePath(QStringLiteral("circuit.txt")));
        QVERIFY(m_window->errorText().contains(QStringLiteral(".csv or .pdf")));
        m_window->circuit()->setPins({});
        m_window->exportCircuit(dir.filePath(QStringLiteral("empty.pdf")));
        QVERIFY(m_window->errorText().contains(QStringLiteral("nothing is pinned")));
        QVERIFY(!QFile::exists(dir.filePath(QStringLiteral("empty.pdf"))));
    }

    void presentModeKeys()
    {
        openWindow();
        run();
        const QStringList pins{QStringLiteral("mlp:1:5@13"), QStringLiteral("attn:1:2@13,1"), QStringLiteral("mlp:0:3@2")};
        for (const QString& p : pins)
            m_window->circuit()->pin(p, QStringLiteral("about ") + p);
        m_window->presentAction()->trigger(); // F5
        PresentView* present = m_window->presentView();
        QVERIFY(present);
        QVERIFY(present->isVisible());
        QVERIFY(present->windowState() & Qt::WindowFullScreen);
        QCOMPARE(present->count(), 3);
        QCOMPARE(present->current(), 0);
        QTRY_VERIFY_WITH_TIMEOUT(!present->isComputing(), 30000);
        QCOMPARE(present->shownNode(), pins[0]);
        QCOMPARE(present->message(), QString());
        const NodeView* first = m_window->views()->view(pins[0]);
        QVERIFY(first);
        QCOMPARE(present->writeChart()->data().top, firstTokens(first->writeInContext, 10).top);
        QCOMPARE(present->writeChart()->data().bottom, first->writeInContext.bottom.mid(0, 10));
        QCOMPARE(present->writeChart()->data().title, QStringLiteral("Write tokens"));
        QVERIFY(!present->pairChart()->isVisible()); // a neuron has no pair map

        struct Step {
            int key;
            int expected;
        };
        const Step steps[] = {
            {Qt::Key_Right, 1}, {Qt::Key_Down, 2}, {Qt::Key_PageDown, 2}, {Qt::Key_Space, 2}, {Qt::Key_Right, 2}, // end
            {Qt::Key_Left, 1},  {Qt::Key_Up, 0},   {Qt::Key_PageUp, 0},   {Qt::Key_Left, 0},                      // start
            {Qt::Key_PageDown, 1}, {Qt::Key_Space, 2}, {Qt::Key_PageUp, 1}, {Qt::Key_End, 2}, {Qt::Key_Home, 0},
        };
        for (const Step& s : steps) {
            QTest::keyClick(present, Qt::Key(s.key));
            QCOMPARE(present->current(), s.expected);
            QCOMPARE(present->shownNode(), pins[s.expected]);
            QCOMPARE(m_window->circuit()->currentRow(), s.expected);
        }
        // The head's slide shows its attention pattern.
        QTest::keyClick(present, Qt::Key_Right);
        QTRY_VERIFY_WITH_TIMEOUT(!present->isComputing(), 30000);
        QVERIFY(present->pairChart()->isVisible());
        QCOMPARE(present->pairChart()->data().title, QStringLiteral("Attention probability"));

        // Stepping never waits for the engine: with the worker held busy, the slide says "computing…"
        // at once and fills in when the view arrives.
        // Nothing may be in flight when the cache is cleared, or its answer could fill the slide early.
        const auto settled = [&] {
            for (const QString& p : pins) {
                if (!m_window->views()->isReady(p) || m_window->views()->isWanted(p))
                    return false;
            }
            return true;
        };
        QTRY_VERIFY_WITH_TIMEOUT(settled(), 30000);
        m_window->views()->clear();
        QSemaphore hold;
        QMetaObject::invokeMethod(m_window->engine()->engine(), [&hold] { hold.acquire(); }, Qt::QueuedConnection);
        QTest::keyClick(present, Qt::Key_End);
        QCOMPARE(present->current(), 2);
        QVERIFY(present->isComputing());
        QCOMPARE(present->message(), QStringLiteral("computing…"));
        hold.release();
        QTRY_VERIFY_WITH_TIMEOUT(!present->isComputing(), 30000);
        QCOMPARE(present->message(), QString());
        QCOMPARE(present->writeChart()->data().top, firstTokens(m_window->views()->view(pins[2])->writeInContext, 10).top);

        QTest::keyClick(present, Qt::Key_Escape);
        QTRY_VERIFY(!m_window->presentView());
    }

    void presentNeedsPinsAndARun()
    {
        openWindow();
        m_window->present();
        QVERIFY(m_window->errorText().contains(QStringLiteral("pin some nodes first")));
        QVERIFY(!m_window->presentView());
        m_window->circuit()->pin(QStringLiteral("mlp:1:5@13"));
        m_window->present();
        QVERIFY(m_window->errorText().contains(QStringLiteral("run a prompt first")));
        QVERIFY(!m_window->presentView());
        // A pin outside the prompt gets a slide that says why, and the others still show.
        run();
        m_window->circuit()->pin(QStringLiteral("mlp:1:5@40"));
        m_window->present(1);
        PresentView* present = m_window->presentView();
        QVERIFY(present);
        QTRY_VERIFY_WITH_TIMEOUT(!present->isComputing(), 30000);
        QVERIFY2(present->message().startsWith(QStringLiteral("Cannot show this node:")), qPrintable(present->message()));
        QTest::keyClick(present, Qt::Key_Home);
        QTRY_VERIFY_WITH_TIMEOUT(!present->isComputing(), 30000);
        QCOMPARE(present->message(), QString());
        present->close();
    }
};

QTEST_MAIN(TestCircuit)
#include "tst_circuit.moc"
