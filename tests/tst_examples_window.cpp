// The Examples tab in the real window on the tiny fixture model (offscreen): open a corpus, watch it
// index in the background (progress, Cancel, resume), open the tab for a node, click an example — it
// becomes the prompt, runs, and the node at the example's maximum has the activation the index holds —
// and the "normalize by corpus max" checkbox divides the grid's activations.

#include "core/examples/example_index.h"
#include "test_support.h"
#include "ui/engine/examples_controller.h"
#include "ui/widgets/examples_view.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/main_window.h"
#include "ui/widgets/node_inspector.h"

#include <QCheckBox>
#include <QDir>
#include <QElapsedTimer>
#include <QLabel>
#include <QLineEdit>
#include <QScrollArea>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>

#include <fstream>
#include <random>

using namespace cs;
using namespace cs::ui;

namespace {

std::string corpusText(int documents)
{
    static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "Mary", "John", "went", "to", "store", "gave",
                                  "drink", "book", "red", "blue", "house", "river", "said", "that", "it", "was", "Paris"};
    std::mt19937 rng(5);
    std::string text;
    for (int d = 0; d < documents; ++d) {
        const int n = 10 + static_cast<int>(rng() % 50);
        for (int i = 0; i < n; ++i)
            text += std::string(i ? " " : "") + words[rng() % (sizeof words / sizeof *words)];
        text += "\n";
    }
    return text;
}

} // namespace

class TestExamplesWindow : public QObject {
    Q_OBJECT

    std::unique_ptr<MainWindow> m_window;
    QTemporaryDir m_tmp;

private Q_SLOTS:
    void initTestCase()
    {
        QStandardPaths::setTestModeEnabled(true);
        QSettings().clear();
        // The index goes to the (test-mode) cache directory; start from an empty one.
        QDir(QString::fromStdString(defaultExampleCacheDir().string())).removeRecursively();
        std::ofstream(m_tmp.filePath(QStringLiteral("small.txt")).toStdString()) << corpusText(60);
        std::ofstream(m_tmp.filePath(QStringLiteral("large.txt")).toStdString()) << corpusText(4000);
        m_window = std::make_unique<MainWindow>();
        m_window->resize(1600, 1000);
        m_window->show();
        QSignalSpy ready(m_window.get(), &MainWindow::modelReady);
        m_window->openModel(test::tinyModel());
        QVERIFY(test::waitForSignal(ready, 30000));
    }

    void cleanupTestCase() { m_window.reset(); }

    void theTabIsInTheInspector()
    {
        QTabWidget* tabs = m_window->inspector()->tabs();
        QVERIFY(m_window->examples());
        QCOMPARE(tabs->tabText(tabs->indexOf(m_window->examples())), QStringLiteral("Examples"));
    }

    void indexingRunsInTheBackgroundAndCancels()
    {
        ExamplesView* view = m_window->examples();
        ExamplesController* c = view->controller();
        QSignalSpy progress(c, &ExamplesController::progress);
        QSignalSpy cancelled(c, &ExamplesController::cancelled);
        view->openCorpus(m_tmp.filePath(QStringLiteral("large.txt")));
        QVERIFY(c->busy());
        QVERIFY(view->cancelButton()->isVisibleTo(view));
        // The window keeps working while it indexes: a prompt runs meanwhile.
        QSignalSpy ran(m_window.get(), &MainWindow::runReady);
        m_window->setPrompt(test::kPrompt);
        m_window->run();
        QVERIFY(test::waitForSignal(ran, 60000));
        QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty() && progress.last().at(0).value<ExamplesProgress>().tokensDone > 0, 60000);
        const auto p = progress.last().at(0).value<ExamplesProgress>();
        QVERIFY(p.tokens > p.tokensDone);
        QVERIFY(view->statusLabel()->text().contains(QStringLiteral("tokens/s")));
        QVERIFY(view->statusLabel()->text().contains(QStringLiteral("ETA")));
        QTest::mouseClick(view->cancelButton(), Qt::LeftButton);
        QVERIFY(test::waitForSignal(cancelled, 30000));
        QVERIFY(!c->busy() && !c->ready());
    }

    void openingTheTabAndClickingAnExampleRunsIt()
    {
        ExamplesView* view = m_window->examples();
        ExamplesController* c = view->controller();
        QSignalSpy indexed(c, &ExamplesController::indexReady);
        view->openCorpus(m_tmp.filePath(QStringLiteral("small.txt")));
        QVERIFY(test::waitForSignal(indexed, 120000));

        const NodeRef node = NodeRef::parse("mlp:1:5@-1").resolved(static_cast<int>(m_window->lastRun()->tokens.size()));
        QSignalSpy shown(m_window.get(), &MainWindow::nodeShown);
        m_window->selectNode(node);
        QVERIFY(test::waitForSignal(shown, 30000));
        m_window->inspector()->tabs()->setCurrentWidget(view);
        QTRY_COMPARE_WITH_TIMEOUT(view->snapshot().node, QStringLiteral("mlp:1:5"), 10000);
        // Opening the tab for a node: read, convert and lay out 60 examples.
        QElapsedTimer t;
        t.start();
        view->setNode(node);
        const double ms = t.nsecsElapsed() / 1e6;
        qInfo("Examples tab for %s: %.2f ms (index read + conversion %.2f ms), %d examples", "mlp:1:5", ms,
              view->snapshot().milliseconds, view->canvas()->exampleCount());
        QCOMPARE(view->snapshot().top.size(), kExampleTop);
        QVERIFY(view->canvas()->exampleCount() >= kExampleTop + kExamplesPerBand);
        QVERIFY(view->snapshot().message.isEmpty());

        // Click the third top example.
        const ExampleItem example = view->canvas()->example(2);
        QSignalSpy ran(m_window.get(), &MainWindow::runReady);
        QSignalSpy nodeShown(m_window.get(), &MainWindow::nodeShown);
        view->canvas()->ensurePolished();
        QScrollArea* scroll = qobject_cast<QScrollArea*>(view->canvas()->parentWidget()->parentWidget());
        if (scroll)
            scroll->ensureVisible(0, view->canvas()->exampleRect(2).center().y());
        QTest::mouseClick(view->canvas(), Qt::LeftButton, {}, view->canvas()->exampleRect(2).center());
        QVERIFY(test::waitForSignal(ran, 60000));
        QCOMPARE(m_window->promptField()->text(), example.prompt);
        // The selected node is the example's maximum, and the engine computes the indexed value there.
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().node.token == example.promptToken, 30000);
        const NodeView& v = m_window->inspector()->view();
        QCOMPARE(v.node.kind, NodeKind::MlpNeuron);
        QCOMPARE(v.node.index, 5);
        QVERIFY2(std::abs(v.metrics.activation - example.max) < 1e-4,
                 qPrintable(QStringLiteral("%1 vs %2").arg(v.metrics.activation).arg(example.max)));
    }

    void normalizeByCorpusMax()
    {
        ExamplesView* view = m_window->examples();
        QVERIFY(view->controller()->ready());
        const GridSnapshot before = m_window->grid()->snapshot();
        view->normalizeBox()->setChecked(true);
        const GridSnapshot after = m_window->grid()->snapshot();
        int compared = 0;
        const auto& rowsBefore = before.rows[int(Metric::Activation)];
        const auto& rowsAfter = after.rows[int(Metric::Activation)];
        for (int t = 0; t < rowsBefore.size(); ++t) {
            for (int l = 0; l < rowsBefore[t].size(); ++l) {
                for (int i = 0; i < rowsBefore[t][l].neurons.size(); ++i) {
                    const auto& cell = rowsBefore[t][l].neurons[i];
                    // A node never active over the corpus keeps its value (nothing to divide by).
                    const double max = view->controller()->corpusMax(cell.node);
                    QVERIFY(std::abs(rowsAfter[t][l].neurons[i].value - (max > 0 ? cell.value / max : cell.value)) < 1e-9);
                    compared += max > 0;
                }
            }
        }
        QVERIFY(compared > 0);
        view->normalizeBox()->setChecked(false);
        QCOMPARE(m_window->grid()->snapshot().rows[int(Metric::Activation)][0][0].neurons[0].value,
                 before.rows[int(Metric::Activation)][0][0].neurons[0].value);
    }

    void badCorpusIsShownInTheTab()
    {
        ExamplesView* view = m_window->examples();
        const QString bad = m_tmp.filePath(QStringLiteral("binary.txt"));
        std::ofstream(bad.toStdString(), std::ios::binary) << std::string("ab\0cd", 5);
        QSignalSpy failed(view->controller(), &ExamplesController::failed);
        view->openCorpus(bad);
        QVERIFY(test::waitForSignal(failed, 30000));
        QVERIFY2(view->statusLabel()->text().contains(QStringLiteral("not a text file")), qPrintable(view->statusLabel()->text()));
    }
};

QTEST_MAIN(TestExamplesWindow)
#include "tst_examples_window.moc"
