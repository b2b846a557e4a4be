// The real window on the tiny fixture model, driven like a user (offscreen): type a prompt, Run, click
// a grid cell, and check that the inspector shows what the core computes for that node; keyboard,
// "Go to node", rapid clicking, Cancel, closing during a job, and bad input shown in the window.

#include "core/analysis/converters.h"
#include "core/model/forward.h"
#include "test_support.h"
#include "ui/charts/token_bar_chart.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/main_window.h"
#include "ui/widgets/token_chip_editor.h"
#include "ui/widgets/node_inspector.h"
#include "ui/widgets/node_table_view.h"
#include "ui/widgets/token_strip.h"

#include <QComboBox>
#include <QDockWidget>
#include <QFile>
#include <QLineEdit>
#include <QPushButton>
#include <QSemaphore>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QFileInfo>
#include <QSettings>
#include <QTemporaryDir>
#include <QTest>

using namespace cs;
using namespace cs::ui;

using test::kPrompt;
using test::tinyModel;

class TestMainWindow : public QObject {
    Q_OBJECT

    std::unique_ptr<MainWindow> m_window;

    void typeAndRun(const QString& prompt, const QString& target, const QString& distractor, bool expectSuccess = true)
    {
        m_window->promptField()->clear();
        QTest::keyClicks(m_window->promptField(), prompt);
        // Typed into the chip editors' fields, without Enter: a Run takes what was typed.
        m_window->targetField()->setTokens({});
        QTest::keyClicks(m_window->targetField()->input(), target);
        m_window->distractorField()->setTokens({});
        QTest::keyClicks(m_window->distractorField()->input(), distractor);
        QSignalSpy ready(m_window.get(), &MainWindow::runReady);
        QSignalSpy error(m_window.get(), &MainWindow::errorShown);
        QTest::mouseClick(m_window->runButton(), Qt::LeftButton);
        if (expectSuccess)
            QVERIFY2(test::waitForSignal(ready, 60000), qPrintable(m_window->errorText()));
        else
            QVERIFY(test::waitForSignal(error, 60000));
    }

private Q_SLOTS:
    void initTestCase()
    {
        QStandardPaths::setTestModeEnabled(true);
        QSettings().clear(); // recent files and remembered relocations from an earlier run
    }

    void init()
    {
        m_window = std::make_unique<MainWindow>();
        m_window->resize(1600, 1000);
        m_window->show();
        QSignalSpy ready(m_window.get(), &MainWindow::modelReady);
        m_window->openModel(tinyModel());
        QVERIFY(test::waitForSignal(ready, 30000));
    }
    void cleanup() { m_window.reset(); }

    // Without pins the Circuit dock is hidden and the grid's side gets the whole width; the first pin
    // shows it, the last unpin hides it, and a session with pins opens with it shown.
    void circuitDockShowsOnlyWithPins()
    {
        typeAndRun(kPrompt, QString(), QString());
        auto* dock = m_window->findChild<QDockWidget*>(QStringLiteral("circuitDock"));
        QVERIFY(dock && !dock->isVisible());
        QTRY_VERIFY(m_window->centralWidget()->width() > m_window->width() * 95 / 100);
        const int wide = m_window->centralWidget()->width();
        const NodeRef node = NodeRef::parse("mlp:1:5@13");
        QVERIFY(m_window->togglePin(node));
        QVERIFY(dock->isVisible());
        QTRY_VERIFY(m_window->centralWidget()->width() < wide);
        QVERIFY(!m_window->togglePin(node));
        QVERIFY(!dock->isVisible());
        QTRY_COMPARE(m_window->centralWidget()->width(), wide);

        QVERIFY(m_window->togglePin(node));
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("pins.circuitscope.json"));
        QVERIFY(m_window->saveSession(path));
        MainWindow other;
        other.resize(1600, 1000);
        other.show();
        QVERIFY(!other.findChild<QDockWidget*>(QStringLiteral("circuitDock"))->isVisible());
        QSignalSpy restored(&other, &MainWindow::sessionRestored);
        other.openSession(path);
        QVERIFY2(test::waitForSignal(restored, 60000), qPrintable(other.errorText()));
        QVERIFY(other.findChild<QDockWidget*>(QStringLiteral("circuitDock"))->isVisible());
    }

    void clickingAGridCellShowsTheCoreComputation()
    {
        typeAndRun(kPrompt, QStringLiteral(" Mary"), QStringLiteral(" John"));
        LayerGrid* grid = m_window->grid();
        const LayerGrid::Cell* target = nullptr;
        for (const auto& c : grid->cells()) {
            if (c.cell.node.kind == NodeKind::MlpNeuron && c.layer == 1) {
                target = &c;
                break;
            }
        }
        QVERIFY(target);
        const NodeRef node = target->cell.node;
        QSignalSpy shown(m_window.get(), &MainWindow::nodeShown);
        QTest::mouseClick(grid, Qt::LeftButton, {}, target->rect.center());
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().node == node, 30000);

        // The same numbers straight from the core.
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        const auto& ids = m_window->lastRun()->ids;
        const ActivationRecord rec = runForward(*model, std::vector<int>(ids.begin(), ids.end()));
        const SaeSet none;
        const AnalysisInput in{*model, none, rec};
        const TopTokens write = topTokens(*model->tokenizer, tokenWrite(*model, residualWrite(in, node)), 20);
        const TopTokens read = topTokens(*model->tokenizer, tokenRead(*model, *residualReads(in, node).read), 20);
        const NodeView& v = m_window->inspector()->view();
        QCOMPARE(v.writeInContext.top.size(), 20);
        for (int i = 0; i < 20; ++i) {
            QCOMPARE(v.writeInContext.top[i].id, write.top[i].id);
            QCOMPARE(v.writeInContext.bottom[i].id, write.bottom[i].id);
            QVERIFY(std::abs(v.writeInContext.top[i].value - write.top[i].value) < 1e-5);
            QCOMPARE(v.reads[0].top[i].id, read.top[i].id);
            QVERIFY(std::abs(v.reads[0].bottom[i].value - read.bottom[i].value) < 1e-5);
        }
        // What the chart shows is that list.
        QCOMPARE(m_window->inspector()->writeChart()->data(), v.writeInContext);
        // The table selected the same node if it lists it; the grid outlines it.
        QVERIFY(grid->cellFor(node));
    }

    void stagedResultsComeBeforeTheFinalOne()
    {
        // With autoencoders the grid and table first show the model's own nodes (runStagedShown, no
        // latents done yet), then the final result (runReady).
        m_window->addAutoencoder(SaeRole::Mlp, QStringLiteral("1=") + QString::fromStdString((test::dataDir() / "sae/mlp_post_act.relu.pt").string()));
        QList<QString> order;
        connect(m_window.get(), &MainWindow::runStagedShown, this, [&](int done, int total) {
            order << QStringLiteral("staged %1/%2").arg(done).arg(total);
        });
        connect(m_window.get(), &MainWindow::runReady, this, [&] { order << QStringLiteral("final"); });
        typeAndRun(QStringLiteral("When Mary and John went to the store, John gave a drink to"), QStringLiteral(" Mary"), QStringLiteral(" John"));
        QVERIFY2(order.size() >= 2 && order.first() == QStringLiteral("staged 0/1") && order.last() == QStringLiteral("final"),
                 qPrintable(order.join(u',')));
        QVERIFY(m_window->lastRun() && !m_window->lastRun()->partial);
    }

    void keyboardAndGoToNodeSelect()
    {
        typeAndRun(kPrompt, QString(), QString());
        LayerGrid* grid = m_window->grid();
        QTest::mouseClick(grid, Qt::LeftButton, {}, grid->cells().first().rect.center());
        const NodeRef first = grid->cells().first().cell.node;
        QTest::keyClick(grid, Qt::Key_Right);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().node == grid->cells()[1].cell.node, 30000);
        QTest::keyClick(grid, Qt::Key_Down);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->view().node.layer == 1, 30000);
        QVERIFY(!(m_window->inspector()->view().node == first));

        m_window->goToField()->setText(QStringLiteral("L1/N5"));
        QTest::keyClick(m_window->goToField(), Qt::Key_Return);
        QTRY_COMPARE_WITH_TIMEOUT(m_window->inspector()->view().name, QStringLiteral("mlp:1:5@13"), 30000);
        m_window->goToField()->setText(QStringLiteral("attn 0 3"));
        QTest::keyClick(m_window->goToField(), Qt::Key_Return);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->view().node.kind == NodeKind::AttnHead, 30000);
        QCOMPARE(m_window->inspector()->view().pairMaps.size(), 2);
    }

    void tokenStripPicksTheTokenOfInterest()
    {
        typeAndRun(kPrompt, QString(), QString());
        QCOMPARE(m_window->grid()->tokenOfInterest(), 13);
        TokenStrip* strip = m_window->tokenStrip();
        QTest::mouseClick(strip, Qt::LeftButton, {}, strip->chipRect(1).center());
        QCOMPARE(m_window->grid()->tokenOfInterest(), 1);
        for (const auto& c : m_window->grid()->cells()) {
            if (c.cell.node.kind != NodeKind::AttnHead)
                QCOMPARE(c.cell.node.token, 1);
        }
    }

    void rapidClicksDoNotQueueAndTheLastWins()
    {
        typeAndRun(kPrompt, QString(), QString());
        LayerGrid* grid = m_window->grid();
        const auto& cells = grid->cells();
        int maxPending = 0;
        NodeRef last;
        for (int i = 0; i < 200; ++i) {
            const auto& c = cells[i % cells.size()];
            QTest::mouseClick(grid, Qt::LeftButton, {}, c.rect.center());
            last = c.cell.node;
            maxPending = std::max(maxPending, m_window->engine()->engine()->pendingInspects());
        }
        QVERIFY(maxPending <= 1);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().node == last, 30000);
    }

    void cancelKeepsThePreviousResults()
    {
        typeAndRun(kPrompt, QString(), QString());
        const QStringList before = m_window->lastRun()->tokens;
        QSignalSpy cancelled(m_window->engine()->engine(), &Engine::runCancelled);
        // Hold the worker thread so the click lands while the run is still pending, whatever the timing.
        QSemaphore hold;
        QMetaObject::invokeMethod(m_window->engine()->engine(), [&hold] { hold.acquire(); }, Qt::QueuedConnection);
        m_window->promptField()->setText(QStringLiteral("Another prompt entirely"));
        m_window->run();
        QVERIFY(m_window->cancelButton()->isVisible());
        QTest::mouseClick(m_window->cancelButton(), Qt::LeftButton);
        hold.release();
        QVERIFY(test::waitForSignal(cancelled, 30000));
        QCOMPARE(m_window->lastRun()->tokens, before);
        // The engine's signal was seen from its thread; the window hears of it through its event loop.
        QTRY_VERIFY_WITH_TIMEOUT(!m_window->cancelButton()->isVisible(), 30000);
    }

    void closingDuringARunIsSafe()
    {
        m_window->setPrompt(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        m_window->run();
        m_window->run();
        m_window->close();
        m_window.reset();
        QVERIFY(!m_window);
        init();
    }

    void badInputIsShownAndThePreviousStateKept_data()
    {
        QTest::addColumn<QString>("what");
        QTest::addColumn<QString>("expected");
        QTest::newRow("folder that is not a model") << QStringLiteral("model") << QStringLiteral("no config.json");
        QTest::newRow("multi-token target") << QStringLiteral("target") << QStringLiteral("' Mary and' is 2 tokens [' Mary', ' and']");
        QTest::newRow("empty prompt") << QStringLiteral("prompt") << QStringLiteral("prompt: empty");
    }
    void badInputIsShownAndThePreviousStateKept()
    {
        QFETCH(QString, what);
        QFETCH(QString, expected);
        typeAndRun(kPrompt, QString(), QString());
        const RunResult before = *m_window->lastRun();
        QSignalSpy error(m_window.get(), &MainWindow::errorShown);
        if (what == u"model") {
            m_window->openModel(QString::fromStdString((test::dataDir() / "sae").string()));
            QVERIFY(test::waitForSignal(error, 30000));
        } else if (what == u"target") {
            typeAndRun(kPrompt, QStringLiteral(" Mary and"), QString(), false);
        } else {
            typeAndRun(QString(), QString(), QString(), false);
        }
        QVERIFY2(m_window->errorText().contains(expected), qPrintable(m_window->errorText()));
        QCOMPARE(m_window->model()->name, QStringLiteral("tiny-gpt2"));
        QCOMPARE(m_window->lastRun()->tokens, before.tokens);
        // The window still works.
        typeAndRun(kPrompt, QString(), QString());
        QVERIFY(m_window->errorText().isEmpty());
    }

    void effectMetricsNeedATarget()
    {
        typeAndRun(kPrompt, QString(), QString());
        QVERIFY(!m_window->lastRun()->hasObjective);
        QVERIFY(!m_window->lastRun()->grid.has(Metric::DirectEffect));
        typeAndRun(kPrompt, QStringLiteral(" Mary"), QString());
        QVERIFY(m_window->lastRun()->grid.has(Metric::TotalEffect));
    }

    void sessionRoundTripRestoresTheInvestigation()
    {
        m_window->addAutoencoder(SaeRole::Attn, QStringLiteral("1=") + QString::fromStdString((test::dataDir() / "sae/resid_delta_attn.relu.pt").string()));
        typeAndRun(kPrompt, QStringLiteral(" Mary"), QStringLiteral(" John"));
        m_window->metricChooser()->setCurrentIndex(m_window->metricChooser()->findData(QVariant::fromValue(Metric::DirectEffect)));
        m_window->selectNode(NodeRef::parse("attn_sae:1:10@13"));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().name == QStringLiteral("attn_sae:1:10@13"), 30000);
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("ioi.circuitscope.json"));
        QVERIFY(m_window->saveSession(path));

        MainWindow other;
        other.resize(1600, 1000);
        QSignalSpy restored(&other, &MainWindow::sessionRestored);
        other.openSession(path);
        QVERIFY2(test::waitForSignal(restored, 60000), qPrintable(other.errorText()));
        QCOMPARE(other.promptField()->text(), kPrompt);
        QCOMPARE(other.targetField()->tokens(), std::vector<std::string>{" Mary"});
        QVERIFY(other.gridMetric() == Metric::DirectEffect);
        QTRY_VERIFY_WITH_TIMEOUT(other.inspector()->hasView() && other.inspector()->view().name == QStringLiteral("attn_sae:1:10@13"), 30000);
        // Saving the restored window gives the same file, byte for byte.
        const QString again = dir.filePath(QStringLiteral("again.circuitscope.json"));
        QVERIFY(other.saveSession(again));
        QFile a(path), b(again);
        QVERIFY(a.open(QIODevice::ReadOnly) && b.open(QIODevice::ReadOnly));
        QCOMPARE(a.readAll(), b.readAll());
    }

    void sessionWithAMissingModelAsksWhereItIs()
    {
        QTemporaryDir dir;
        Session s;
        s.modelPath = "/nowhere/gpt2";
        s.prompt = "When Mary and John";
        const QString path = dir.filePath(QStringLiteral("moved.circuitscope.json"));
        cs::saveSession(path.toStdString(), s);
        QString asked;
        m_window->setModelLocator([&](const QString& missing) {
            asked = missing;
            return tinyModel();
        });
        QSignalSpy restored(m_window.get(), &MainWindow::sessionRestored);
        m_window->openSession(path);
        QVERIFY(test::waitForSignal(restored, 60000));
        QCOMPARE(asked, QStringLiteral("/nowhere/gpt2"));
        QCOMPARE(m_window->lastRun()->tokens.size(), 4);
    }

    // Save writes back to the session's own file; both open and save put it first in Recent sessions.
    void saveWritesBackAndRemembersRecentSessions()
    {
        typeAndRun(kPrompt, QStringLiteral(" Mary"), QStringLiteral(" John"));
        QTemporaryDir dir;
        const QString path = QFileInfo(dir.filePath(QStringLiteral("recent.circuitscope.json"))).absoluteFilePath();
        QVERIFY(m_window->saveSession(path));
        QCOMPARE(m_window->sessionPath(), path);
        QCOMPARE(MainWindow::recentSessions().value(0), path);
        m_window->targetField()->setTokens({" John"});
        m_window->saveCurrentSession(); // no dialog: the session has a file
        QCOMPARE(loadSession(path.toStdString()).objective.targets, std::vector<std::string>{" John"});

        // A template (the demo walkthrough) opens untitled and stays out of the recent list.
        const QString other = QFileInfo(dir.filePath(QStringLiteral("template.circuitscope.json"))).absoluteFilePath();
        QVERIFY(QFile::copy(path, other));
        MainWindow second;
        QSignalSpy restored(&second, &MainWindow::sessionRestored);
        second.openSession(other, /*asTemplate=*/true);
        QVERIFY(test::waitForSignal(restored, 60000));
        QVERIFY(second.sessionPath().isEmpty());
        QVERIFY(!MainWindow::recentSessions().contains(other));
    }

    // The folder given for a missing model is remembered: the next session naming the same missing
    // path opens without asking again.
    void relocatedModelIsRemembered()
    {
        QTemporaryDir dir;
        Session s;
        s.modelPath = "/moved/away/gpt2";
        s.prompt = "When Mary and John";
        const QString path = dir.filePath(QStringLiteral("moved.circuitscope.json"));
        cs::saveSession(path.toStdString(), s);
        int asked = 0;
        m_window->setModelLocator([&](const QString&) {
            ++asked;
            return tinyModel();
        });
        for (int i = 0; i < 2; ++i) {
            QSignalSpy restored(m_window.get(), &MainWindow::sessionRestored);
            m_window->openSession(path);
            QVERIFY(test::waitForSignal(restored, 60000));
            QCOMPARE(m_window->lastRun()->tokens.size(), 4);
        }
        QCOMPARE(asked, 1);
    }

    void corruptOrFutureSessionsChangeNothing_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("expected");
        QTest::newRow("corrupt") << QStringLiteral("{\"schema\": \"circ") << QStringLiteral("not valid JSON");
        QTest::newRow("future version") << QStringLiteral("{\"schema\":\"circuitscope-session\",\"version\":7}") << QStringLiteral("newer than this Circuitscope");
    }
    void corruptOrFutureSessionsChangeNothing()
    {
        QFETCH(QString, text);
        QFETCH(QString, expected);
        typeAndRun(kPrompt, QString(), QString());
        const QStringList before = m_window->lastRun()->tokens;
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("bad.circuitscope.json"));
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(text.toUtf8());
        f.close();
        m_window->openSession(path);
        QVERIFY2(m_window->errorText().contains(expected), qPrintable(m_window->errorText()));
        QCOMPARE(m_window->lastRun()->tokens, before);
        QCOMPARE(m_window->promptField()->text(), kPrompt);
    }

    void autosaveIsWrittenAndRemovedOnCleanClose()
    {
        QFile::remove(MainWindow::autosavePath());
        QVERIFY(!m_window->autosaveNow()); // nothing run yet: nothing to save
        typeAndRun(kPrompt, QStringLiteral(" Mary"), QString());
        QVERIFY(m_window->autosaveNow());
        QVERIFY(QFile::exists(MainWindow::autosavePath()));
        const Session saved = loadSession(MainWindow::autosavePath().toStdString());
        QCOMPARE(saved.prompt, kPrompt.toStdString());
        QCOMPARE(saved.objective.targets, std::vector<std::string>{" Mary"});
        m_window->close();
        QVERIFY(!QFile::exists(MainWindow::autosavePath()));
    }

    void inspectorChartsExport()
    {
        typeAndRun(kPrompt, QStringLiteral(" Mary"), QStringLiteral(" John"));
        m_window->selectNode(NodeRef::parse("attn:1:2@13,1"));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView(), 30000);
        QTemporaryDir dir;
        for (const char* ext : {"png", "svg", "pdf", "csv"}) {
            const QString path = dir.filePath(QStringLiteral("write.") + QString::fromLatin1(ext));
            QString error;
            QVERIFY2(m_window->inspector()->writeChart()->exportTo(path, ExportFormat::FromExtension, 1.0, &error), qPrintable(error));
            QVERIFY(QFileInfo(path).size() > 0);
        }
    }
};

QTEST_MAIN(TestMainWindow)
#include "tst_main_window.moc"
