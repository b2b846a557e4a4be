// Testing a hypothesis in the real window (offscreen), driven like a user: ablate a head from the
// grid's context menu, trace a neuron from the table, compare two prompts, the next-token panel, the
// token effect rows, a session round trip with all of it, rapid toggling, and every new model under
// QAbstractItemModelTester. Each figure is checked against the core's own analysis of the same query
// (what `circuitscope-cli nodes --ablate/--trace/--prompt2` prints: the CLI calls the same
// analysisQueryOf + analyzePrompt + nodeTable).

#include "core/analysis/analysis.h"
#include "core/analysis/converters.h"
#include "core/commands/session_query.h"
#include "core/model/forward.h"
#include "test_support.h"
#include "ui/widgets/ablations_panel.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/main_window.h"
#include "ui/widgets/next_tokens_panel.h"
#include "ui/widgets/node_inspector.h"
#include "ui/widgets/node_actions.h"
#include "ui/widgets/node_table_model.h"
#include "ui/widgets/node_table_view.h"
#include "ui/widgets/objective_editor.h"
#include "ui/widgets/second_prompt_bar.h"
#include "ui/widgets/token_chip_editor.h"
#include "ui/widgets/token_effects_view.h"
#include "ui/widgets/token_strip.h"
#include "ui/widgets/trace_bar.h"

#include <QAbstractItemModelTester>
#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QLabel>
#include <QProcess>
#include <QScrollArea>
#include <QLineEdit>
#include <QMenu>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTableView>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <memory>

using namespace cs;
using namespace cs::ui;

using test::kPrompt;
using test::tinyModel;

namespace {

// The core's analysis of what the window ran (the CLI's path).
struct Reference {
    std::shared_ptr<const Gpt2Model> model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
    SaeSet saes;
    Analysis analyze(const Session& s) const
    {
        return analyzePrompt(*model, saes, analysisQueryOf(s.prompt, s.objective, s.ablations, s.trace, s.secondPrompt));
    }
};

QAction* findAction(QMenu* menu, const QString& startsWith)
{
    for (QAction* a : menu->actions()) {
        if (a->text().startsWith(startsWith))
            return a;
        if (a->menu()) {
            if (QAction* inner = findAction(a->menu(), startsWith))
                return inner;
        }
    }
    return nullptr;
}

// `circuitscope-cli ARGS` as JSON (the test fails when it does not exit with 0).
nlohmann::json runCli(const QStringList& args)
{
    QProcess p;
    p.start(QStringLiteral(CLI_PATH), args);
    if (!p.waitForFinished(120000) || p.exitCode() != 0)
        qFatal("circuitscope-cli %s failed: %s", qPrintable(args.join(u' ')), p.readAllStandardError().constData());
    return nlohmann::json::parse(p.readAllStandardOutput().toStdString());
}

bool close(double a, double b, double tol = 1e-6)
{
    return std::abs(a - b) <= tol * std::max(1.0, std::abs(b));
}

} // namespace

class TestWindowInterventions : public QObject {
    Q_OBJECT

    std::unique_ptr<MainWindow> m_window;
    Reference m_ref;

    // Waits for the run the window has just started (or the next one) to be shown.
    bool waitForRun(QSignalSpy& ready)
    {
        if (!test::waitForSignal(ready, 60000))
            return false;
        // Superseded runs are dropped; wait for the one asked for last.
        return QTest::qWaitFor([&] { return m_window->lastRun() && m_window->lastRun()->id == m_window->engine()->latestRun(); }, 60000);
    }

    void typeAndRun(const QString& prompt, const QStringList& targets, const QStringList& distractors)
    {
        m_window->setPrompt(prompt, targets, distractors);
        QSignalSpy ready(m_window.get(), &MainWindow::runReady);
        QTest::mouseClick(m_window->runButton(), Qt::LeftButton);
        QVERIFY2(waitForRun(ready), qPrintable(m_window->errorText()));
    }

    template <typename F>
    void actAndWait(F&& act)
    {
        QSignalSpy ready(m_window.get(), &MainWindow::runReady);
        act();
        QVERIFY2(waitForRun(ready), qPrintable(m_window->errorText()));
    }

    const NodeTableModel* table() const { return m_window->table()->model(); }

    // The first cell the grid shows of `kind` at `layer` (that `also` accepts), or null.
    const LayerGrid::Cell* gridCell(NodeKind kind, int layer, const std::function<bool(const NodeRef&)>& also = {}) const
    {
        for (const auto& c : m_window->grid()->cells()) {
            if (c.cell.node.kind == kind && c.layer == layer && (!also || also(c.cell.node)))
                return &c;
        }
        return nullptr;
    }

private Q_SLOTS:
    void initTestCase()
    {
        QStandardPaths::setTestModeEnabled(true);
        QSettings().clear();
    }

    void init()
    {
        m_window = std::make_unique<MainWindow>();
        m_window->resize(1600, 1000);
        m_window->show();
        // Every model the window adds is watched for the whole test.
        new QAbstractItemModelTester(m_window->ablationsPanel()->model(), QAbstractItemModelTester::FailureReportingMode::QtTest, m_window.get());
        new QAbstractItemModelTester(m_window->nextTokensPanel()->model(), QAbstractItemModelTester::FailureReportingMode::QtTest, m_window.get());
        new QAbstractItemModelTester(m_window->table()->model(), QAbstractItemModelTester::FailureReportingMode::QtTest, m_window.get());
        QSignalSpy ready(m_window.get(), &MainWindow::modelReady);
        m_window->openModel(tinyModel());
        QVERIFY(test::waitForSignal(ready, 30000));
    }
    void cleanup() { m_window.reset(); }

    // The window fits a 1280 × 800 screen, before and after a run with a comparison (every panel's
    // minimum together: long hints and status text wrap or elide instead of widening it).
    void fitsA1280By800Screen()
    {
        MainWindow w;
        QVERIFY2(w.minimumSizeHint().width() <= 1280 && w.minimumSizeHint().height() <= 800, qPrintable(QStringLiteral("%1×%2").arg(w.minimumSizeHint().width()).arg(w.minimumSizeHint().height())));
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        actAndWait([&] { m_window->ablate(QStringLiteral("attn:1:2@-1")); });
        actAndWait([&] { m_window->addSecondPrompt(); });
        const QSize min = m_window->minimumSizeHint();
        QVERIFY2(min.width() <= 1280 && min.height() <= 800, qPrintable(QStringLiteral("%1×%2").arg(min.width()).arg(min.height())));
        // At 1280 × 800 the toolbar keeps every action on it (no » overflow menu) with a chip in each
        // objective list, and the Ablations dock, alone on the right, leaves the grid its room.
        m_window->resize(1280, 800);
        auto* overflow = m_window->findChild<QToolButton*>(QStringLiteral("qt_toolbar_ext_button"));
        QVERIFY(overflow);
        QTRY_VERIFY(m_window->width() == 1280);
        QTest::qWait(50); // the toolbar lays out after the resize
        QVERIFY(!overflow->isVisible());
        auto* ablations = m_window->findChild<QDockWidget*>(QStringLiteral("ablationsDock"));
        QVERIFY(ablations->isVisible());
        QVERIFY2(ablations->width() <= 260, qPrintable(QString::number(ablations->width())));
    }

    // A short grid takes only the height it draws; the node table under it gets the rest, and the
    // empty Ablations dock leaves its room to the pins.
    void shortGridLeavesItsRoomToTheTable()
    {
        QVERIFY(!m_window->findChild<QDockWidget*>(QStringLiteral("ablationsDock"))->isVisible());
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        auto* scroll = qobject_cast<QScrollArea*>(m_window->grid()->parentWidget()->parentWidget());
        QVERIFY(scroll);
        const int gridHeight = m_window->grid()->sizeHint().height();
        QVERIFY(QTest::qWaitFor([&] { return scroll->viewport()->height() >= gridHeight; }, 5000));
        QVERIFY2(scroll->viewport()->height() - gridHeight <= 4,
                 qPrintable(QStringLiteral("viewport %1, grid %2").arg(scroll->viewport()->height()).arg(gridHeight)));
        QVERIFY2(m_window->table()->height() > scroll->height(),
                 qPrintable(QStringLiteral("table %1, grid panel %2").arg(m_window->table()->height()).arg(scroll->height())));
    }

    void ablateAHeadFromTheGridAndRemoveIt()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        const RunResult before = *m_window->lastRun();
        QCOMPARE(before.comparison, Comparison::None);
        const LayerGrid::Cell* head = gridCell(NodeKind::AttnHead, 1);
        QVERIFY(head);
        const NodeRef node = head->cell.node;
        std::unique_ptr<QMenu> menu(m_window->grid()->contextMenuFor(node));
        QAction* ablate = findAction(menu.get(), QStringLiteral("Ablate head L1H%1 at this token").arg(node.index));
        QVERIFY(ablate);
        actAndWait([&] { ablate->trigger(); });

        // At the last token, written from the end (so it means the same in a second prompt).
        QCOMPARE(node.token, int(before.tokens.size()) - 1);
        const QString spec = QStringLiteral("attn:1:%1@-1=0").arg(node.index);
        QCOMPARE(m_window->ablationsPanel()->ablations(), QStringList{spec});
        QCOMPARE(m_window->ablationsPanel()->model()->rowCount(), 1);
        QVERIFY(m_window->grid()->isAblated(node)); // the cell is outlined
        auto* dock = m_window->findChild<QDockWidget*>(QStringLiteral("ablationsDock"));
        QVERIFY(dock && dock->isVisible()); // shown once there is an ablation
        const RunResult& r = *m_window->lastRun();
        QCOMPARE(r.comparison, Comparison::Baseline);
        QCOMPARE(r.ablations, QStringList{spec});

        // The objective in the status bar is the core's (= `nodes --ablate`), with the baseline.
        const Session s = m_window->currentSession();
        const Analysis ref = m_ref.analyze(s);
        QVERIFY(close(r.objective, ref.left.run.effects.objective));
        QVERIFY(ref.left.baseline);
        QVERIFY(r.baselineObjective && close(*r.baselineObjective, ref.left.baseline->effects.objective));
        QVERIFY(close(*r.baselineObjective, before.objective));
        QVERIFY(std::abs(r.objective - before.objective) > 1e-9); // the ablation changed something
        QVERIFY2(m_window->statusText().contains(QString::number(r.objective, 'g', 6)), qPrintable(m_window->statusText()));
        // ... and `circuitscope-cli nodes --ablate` on the same prompt: its objective, its baseline's, and
        // every node it lists is in the window's table with the same ablated, baseline and Δ values.
        const nlohmann::json cli = runCli({QStringLiteral("nodes"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"), kPrompt,
                                           QStringLiteral("--target"), QStringLiteral(" Mary"), QStringLiteral("--distractor"), QStringLiteral(" John"),
                                           QStringLiteral("--top"), QString::number(m_window->tableTopK()->value()), QStringLiteral("--ablate"), spec});
        QVERIFY(close(r.objective, cli["objective"].get<double>()));
        QVERIFY(close(*r.baselineObjective, cli["baseline"]["objective"].get<double>()));
        QVERIFY(!cli["nodes"].empty());
        for (const auto& row : cli["nodes"]) {
            const QString name = QString::fromStdString(row["node"].get<std::string>());
            int found = -1;
            for (int i = 0; i < table()->rowCount(); ++i) {
                if (table()->rowAt(i).name == name)
                    found = i;
            }
            QVERIFY2(found >= 0, qPrintable(name));
            const NodeRow& shown = table()->rowAt(found);
            QVERIFY(close(shown.activation, row["activation"].get<double>()));
            QVERIFY(close(*shown.totalEffect, row["total_effect"].get<double>()));
            QVERIFY(shown.other && close(*shown.other->totalEffect, row["baseline"]["total_effect"].get<double>()));
            const double delta = table()->index(found, NodeTableModel::TotalEffectDeltaColumn).data(NodeTableModel::SortRole).toDouble();
            QVERIFY(close(delta, row["total_effect"].get<double>() - row["baseline"]["total_effect"].get<double>(), 1e-5));
        }

        // The table: ablated = the core's run, baseline = the core's baseline, Δ = ablated − baseline.
        const std::vector<NodeTableRow> refRows = nodeTable(*m_ref.model, m_ref.saes, ref, m_window->tableTopK()->value());
        QVERIFY(!m_window->table()->tableView()->isColumnHidden(NodeTableModel::TotalEffectDeltaColumn));
        int compared = 0;
        for (int row = 0; row < table()->rowCount(); ++row) {
            const NodeRow& shown = table()->rowAt(row);
            for (const auto& refRow : refRows) {
                if (refRow.node != shown.node || !refRow.left || !refRow.baseline)
                    continue;
                QVERIFY(shown.other);
                QVERIFY(close(*shown.totalEffect, refRow.left->totalEffect));
                QVERIFY(close(*shown.other->totalEffect, refRow.baseline->totalEffect));
                QVERIFY(close(shown.activation, refRow.left->activation));
                QVERIFY(close(shown.other->activation, refRow.baseline->activation));
                const double delta = table()->index(row, NodeTableModel::TotalEffectDeltaColumn).data(NodeTableModel::SortRole).toDouble();
                QVERIFY(close(delta, refRow.left->totalEffect - refRow.baseline->totalEffect, 1e-5));
                ++compared;
            }
        }
        QCOMPARE(compared, table()->rowCount());
        // The next-token panel shows both sides.
        QCOMPARE(m_window->nextTokensPanel()->model()->comparison(), Comparison::Baseline);

        // Remove it with its × button: the figures are the baseline's again, exactly.
        actAndWait([&] { m_window->ablationsPanel()->removeAt(0); });
        const RunResult& after = *m_window->lastRun();
        QVERIFY(m_window->ablationsPanel()->ablations().isEmpty());
        QVERIFY(!dock->isVisible()); // empty: hidden again, the pins get its room
        QVERIFY(!m_window->grid()->isAblated(node));
        QCOMPARE(after.comparison, Comparison::None);
        QCOMPARE(after.objective, before.objective);
        QCOMPARE(after.table.size(), before.table.size());
        for (int i = 0; i < after.table.size(); ++i) {
            QCOMPARE(after.table[i].node, before.table[i].node);
            QVERIFY(after.table[i].activation == before.table[i].activation);
            QVERIFY(after.table[i].totalEffect == before.table[i].totalEffect);
        }
        QVERIFY(m_window->table()->tableView()->isColumnHidden(NodeTableModel::TotalEffectDeltaColumn));
    }

    void traceANeuronFromTheTable()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        const RunResult logit = *m_window->lastRun();
        int proxyRow = -1;
        NodeRef neuron;
        for (int r = 0; r < m_window->table()->proxy()->rowCount(); ++r) {
            const NodeRef n = qvariant_cast<NodeRef>(m_window->table()->proxy()->index(r, 0).data(NodeTableModel::NodeRole));
            if (n.kind == NodeKind::MlpNeuron && n.layer == 1) {
                proxyRow = r;
                neuron = n;
                break;
            }
        }
        QVERIFY(proxyRow >= 0);
        std::unique_ptr<QMenu> menu(m_window->table()->contextMenuForRow(proxyRow));
        QAction* trace = findAction(menu.get(), QStringLiteral("Trace upstream"));
        QVERIFY(trace);
        actAndWait([&] { trace->trigger(); });

        const QString head = QStringLiteral("mlp:1:%1").arg(neuron.index);
        QVERIFY2(m_window->traceBar()->text().startsWith(QStringLiteral("What caused %1 at ").arg(head)), qPrintable(m_window->traceBar()->text()));
        QVERIFY(m_window->traceBar()->text().contains(m_window->lastRun()->tokens[neuron.token]));
        const RunResult& r = *m_window->lastRun();
        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QCOMPARE(ref.left.run.effects.objectiveKind, ObjectiveKind::Activation);
        QVERIFY(close(r.objective, ref.left.run.effects.objective));
        const std::vector<NodeTableRow> refRows = nodeTable(*m_ref.model, m_ref.saes, ref, m_window->tableTopK()->value());
        QCOMPARE(r.table.size(), qsizetype(refRows.size()));
        for (std::size_t i = 0; i < refRows.size(); ++i) {
            QCOMPARE(r.table[qsizetype(i)].node, refRows[i].node);
            QVERIFY(close(*r.table[qsizetype(i)].directEffect, refRows[i].left->directEffect));
            QVERIFY(close(*r.table[qsizetype(i)].totalEffect, refRows[i].left->totalEffect));
        }

        // ... and they are `circuitscope-cli nodes --trace` on the same prompt, row for row.
        const nlohmann::json cli = runCli({QStringLiteral("nodes"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"), kPrompt,
                                           QStringLiteral("--target"), QStringLiteral(" Mary"), QStringLiteral("--distractor"), QStringLiteral(" John"),
                                           QStringLiteral("--top"), QString::number(m_window->tableTopK()->value()), QStringLiteral("--trace"),
                                           QString::fromStdString(m_window->currentTrace()->node)});
        QCOMPARE(cli["objective_kind"].get<std::string>(), std::string("activation"));
        QVERIFY(close(r.objective, cli["objective"].get<double>()));
        QCOMPARE(r.table.size(), qsizetype(cli["nodes"].size()));
        for (qsizetype i = 0; i < r.table.size(); ++i) {
            const auto& row = cli["nodes"][std::size_t(i)];
            QCOMPARE(r.table[i].name.toStdString(), row["node"].get<std::string>());
            QVERIFY(close(r.table[i].activation, row["activation"].get<double>()));
            QVERIFY(close(*r.table[i].directEffect, row["direct_effect"].get<double>()));
            QVERIFY(close(*r.table[i].totalEffect, row["total_effect"].get<double>()));
        }

        // Clear: back to the logit objective.
        actAndWait([&] { QTest::mouseClick(m_window->traceBar()->clearButton(), Qt::LeftButton); });
        QVERIFY(m_window->traceBar()->text().isEmpty());
        QVERIFY(!m_window->currentTrace());
        QCOMPARE(m_window->lastRun()->objectiveText, logit.objectiveText);
        QCOMPARE(m_window->lastRun()->objective, logit.objective);
    }

    // With ablations the grid can be colored by Δ = ablated − baseline: every head's Δ and each layer's
    // top neurons by |Δ|, equal to the core's two runs; without a comparison the toggle is off.
    void gridColoredByDelta()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        QCheckBox* toggle = m_window->gridDeltaToggle();
        QVERIFY(!toggle->isEnabled());
        toggle->setChecked(true); // not applicable yet: the grid keeps the run's own values
        QVERIFY(!m_window->isGridDelta());
        QVERIFY(m_window->grid()->snapshot().delta.isEmpty());

        actAndWait([&] { m_window->ablate(QStringLiteral("attn:0:1@-1")); });
        QVERIFY(toggle->isEnabled());
        QVERIFY(m_window->isGridDelta());
        const GridSnapshot& g = m_window->grid()->snapshot();
        QCOMPARE(g.delta, QStringLiteral("ablated − baseline"));
        QVERIFY(m_window->grid()->valueName().startsWith(QStringLiteral("Δ ")));
        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QVERIFY(ref.left.baseline);
        const int t = m_window->grid()->tokenOfInterest();
        QCOMPARE(t, int(m_window->lastRun()->tokens.size()) - 1);
        int heads = 0, neurons = 0;
        for (Metric metric : {Metric::Activation, Metric::TotalEffect}) {
            m_window->metricChooser()->setCurrentIndex(m_window->metricChooser()->findData(QVariant::fromValue(metric)));
            QVERIFY(m_window->grid()->metric() == metric);
            for (int layer = 0; layer < g.nLayers; ++layer) {
                const LayerEffects& a = ref.left.run.effects.layers[std::size_t(layer)];
                const LayerEffects& b = ref.left.baseline->effects.layers[std::size_t(layer)];
                const GridLayerRow& row = g.row(metric, t, layer);
                QCOMPARE(row.heads.size(), qsizetype(g.nHeads));
                const at::Tensor headDelta = (a.headsOverKeys(metric) - b.headsOverKeys(metric)).to(at::kDouble);
                for (const GridCell& c : row.heads) {
                    QVERIFY(close(c.value, headDelta[t][c.node.index].item<double>(), 1e-5));
                    ++heads;
                }
                const at::Tensor neuronDelta = (a.neurons(metric).to(at::kDouble) - b.neurons(metric).to(at::kDouble))[t];
                QVERIFY(!row.neurons.isEmpty());
                // Ranked by |Δ|: the first is the layer's largest.
                QVERIFY(close(std::abs(row.neurons.first().value), neuronDelta.abs().max().item<double>(), 1e-5));
                for (int i = 0; i < row.neurons.size(); ++i) {
                    const GridCell& c = row.neurons[i];
                    QCOMPARE(c.node.token, t);
                    QVERIFY(close(c.value, neuronDelta[c.node.index].item<double>(), 1e-5));
                    if (i > 0)
                        QVERIFY(std::abs(c.value) <= std::abs(row.neurons[i - 1].value) + 1e-12);
                    ++neurons;
                }
            }
        }
        QVERIFY(heads > 0 && neurons > 0);
        // Ablating a layer-0 head at the last token changes layer 1 there.
        const GridLayerRow& layer1 = g.row(Metric::Activation, t, 1);
        QVERIFY(std::abs(layer1.neurons.first().value) > 1e-9);

        // Off: the run's own (ablated) values.
        toggle->setChecked(false);
        QVERIFY(m_window->grid()->snapshot().delta.isEmpty());
        QCOMPARE(m_window->grid()->snapshot().row(Metric::Activation, t, 0).heads.first().value,
                 m_window->lastRun()->grid.row(Metric::Activation, t, 0).heads.first().value);
        toggle->setChecked(true);

        // The session keeps the choice.
        QVERIFY(m_window->currentSession().view.gridDelta);

        // Two prompts: Δ = right − left.
        actAndWait([&] { m_window->setAblations({}); });
        QVERIFY(!toggle->isEnabled());
        QVERIFY(m_window->grid()->snapshot().delta.isEmpty());
        actAndWait([&] { m_window->addSecondPrompt(); });
        actAndWait([&] {
            m_window->secondPromptBar()->promptField()->setText(QStringLiteral("When John and Mary went to the park, Mary gave it to"));
            m_window->run();
        });
        QVERIFY(toggle->isEnabled());
        QCOMPARE(m_window->grid()->snapshot().delta, QStringLiteral("right − left"));
        const Analysis two = m_ref.analyze(m_window->currentSession());
        QVERIFY(two.right);
        const int common = std::min(two.left.run.record.tokenCount(), two.right->run.record.tokenCount());
        const int tt = common - 1;
        const GridLayerRow& row = m_window->grid()->snapshot().row(Metric::Activation, tt, 1);
        const at::Tensor d = (two.right->run.effects.layers[1].neurons(Metric::Activation).to(at::kDouble)[tt] -
                              two.left.run.effects.layers[1].neurons(Metric::Activation).to(at::kDouble)[tt]);
        for (const GridCell& c : row.neurons)
            QVERIFY(close(c.value, d[c.node.index].item<double>(), 1e-5));
        // Past the shorter prompt there is nothing to compare.
        if (m_window->lastRun()->tokens.size() > common)
            QVERIFY(m_window->grid()->snapshot().row(Metric::Activation, common, 0).heads.isEmpty());
    }

    // A head traced through its value onto a downstream node chosen by the next click: the breadcrumb
    // names both, and the node table equals `circuitscope-cli nodes --trace … --through v --downstream …`.
    void traceAHeadThroughTheValueOntoAClickedNode()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        const RunResult logit = *m_window->lastRun();
        const LayerGrid::Cell* headCell = gridCell(NodeKind::AttnHead, 0, [](const NodeRef& n) { return n.keyToken < n.token; });
        QVERIFY(headCell);
        const NodeRef head = headCell->cell.node;
        std::unique_ptr<QMenu> menu(m_window->grid()->contextMenuFor(head));
        QAction* pick = findAction(menu.get(), QStringLiteral("through the value, onto a downstream node"));
        QVERIFY(pick);
        pick->trigger();
        QVERIFY(m_window->traceBar()->isPickingDownstream());
        QVERIFY(m_window->traceBar()->isVisible());
        QVERIFY(m_window->traceBar()->text().contains(QStringLiteral("click the downstream node")));

        // Cancel: nothing is traced, no run.
        QTest::mouseClick(m_window->traceBar()->clearButton(), Qt::LeftButton);
        QVERIFY(!m_window->traceBar()->isPickingDownstream());
        QVERIFY(!m_window->traceBar()->isVisible());
        QVERIFY(!m_window->currentTrace());
        QCOMPARE(m_window->lastRun()->id, logit.id);

        // Again, and click a layer-1 neuron in the grid.
        pick->trigger();
        const LayerGrid::Cell* neuronCell = gridCell(NodeKind::MlpNeuron, 1);
        QVERIFY(neuronCell);
        const NodeRef neuron = neuronCell->cell.node;
        const QPoint at = neuronCell->rect.center();
        actAndWait([&] { QTest::mouseClick(m_window->grid(), Qt::LeftButton, {}, at); });
        QVERIFY(!m_window->traceBar()->isPickingDownstream());
        QVERIFY(m_window->currentTrace());
        const Session::Trace trace = *m_window->currentTrace();
        QCOMPARE(trace.through, std::string("v"));
        QCOMPARE(trace.downstream, portableNodeName(neuron, int(logit.tokens.size())));
        // The grid moves to where the value trace's upstream nodes are: the traced pair's key token.
        QCOMPARE(m_window->grid()->tokenOfInterest(), head.keyToken);
        QCOMPARE(m_window->tokenStrip()->tokenOfInterest(), head.keyToken);
        const QString crumb = m_window->traceBar()->text();
        QVERIFY2(crumb.contains(QStringLiteral("of L0H%1, through the value onto mlp:1:%2 at ").arg(head.index).arg(neuron.index)),
                 qPrintable(crumb));

        // The table is the CLI's for the same spec.
        const int k = m_window->tableTopK()->value();
        const nlohmann::json j = runCli({QStringLiteral("nodes"), QStringLiteral("--model"), tinyModel(), QStringLiteral("--prompt"), kPrompt,
                                         QStringLiteral("--target"), QStringLiteral(" Mary"), QStringLiteral("--distractor"), QStringLiteral(" John"),
                                         QStringLiteral("--top"), QString::number(k), QStringLiteral("--trace"), QString::fromStdString(trace.node),
                                         QStringLiteral("--through"), QStringLiteral("v"), QStringLiteral("--downstream"),
                                         QString::fromStdString(trace.downstream)});
        const RunResult& r = *m_window->lastRun();
        QCOMPARE(j["objective_kind"].get<std::string>(), std::string("value_write"));
        QVERIFY(close(r.objective, j["objective"].get<double>()));
        QVERIFY(!close(r.objective, logit.objective));
        QCOMPARE(r.table.size(), qsizetype(j["nodes"].size()));
        for (qsizetype i = 0; i < r.table.size(); ++i) {
            const auto& row = j["nodes"][std::size_t(i)];
            QCOMPARE(r.table[i].name.toStdString(), row["node"].get<std::string>());
            QVERIFY(close(r.table[i].activation, row["activation"].get<double>()));
            QVERIFY(close(r.table[i].writeMagnitude, row["write_magnitude"].get<double>()));
            QVERIFY(close(*r.table[i].directEffect, row["direct_effect"].get<double>()));
            QVERIFY(close(*r.table[i].totalEffect, row["total_effect"].get<double>()));
        }

        // A downstream head, read through its key: the chooser in the trace bar applies.
        pick->trigger();
        QComboBox* through = m_window->traceBar()->downstreamThroughChooser();
        QVERIFY(through->isVisible());
        through->setCurrentIndex(through->findData(QStringLiteral("k")));
        const LayerGrid::Cell* laterHead = gridCell(NodeKind::AttnHead, 1);
        QVERIFY(laterHead);
        const QPoint headAt = laterHead->rect.center();
        actAndWait([&] { QTest::mouseClick(m_window->grid(), Qt::LeftButton, {}, headAt); });
        QCOMPARE(m_window->currentTrace()->downstreamThrough, std::string("k"));
        QVERIFY2(m_window->traceBar()->text().contains(QStringLiteral("of L1H%1 (through the key)?").arg(laterHead->cell.node.index)),
                 qPrintable(m_window->traceBar()->text()));
        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QCOMPARE(ref.left.run.effects.objectiveKind, ObjectiveKind::ValueWrite);
        QVERIFY(close(m_window->lastRun()->objective, ref.left.run.effects.objective));

        // Clear: the logit objective again.
        actAndWait([&] { QTest::mouseClick(m_window->traceBar()->clearButton(), Qt::LeftButton); });
        QVERIFY(!m_window->currentTrace());
        QCOMPARE(m_window->lastRun()->objective, logit.objective);
        QCOMPARE(m_window->grid()->tokenOfInterest(), int(logit.tokens.size()) - 1);
    }

    void twoPromptsOfDifferentLengths()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        actAndWait([&] { m_window->addSecondPrompt(); });
        QCOMPARE(m_window->secondPromptBar()->promptField()->text(), kPrompt);
        const QString shorter = QStringLiteral("When John and Mary went to the park, Mary gave it to");
        actAndWait([&] {
            m_window->secondPromptBar()->promptField()->setText(shorter);
            m_window->run();
        });
        const RunResult& r = *m_window->lastRun();
        QCOMPARE(r.comparison, Comparison::Prompts);
        QVERIFY(r.right);
        QVERIFY(r.right->tokens.size() != r.tokens.size());
        QVERIFY(m_window->secondTokenStrip()->isVisible());
        // The second row: the right prompt's tokens, a position marked where it differs from the left's.
        QCOMPARE(m_window->secondTokenStrip()->tokens(), r.right->tokens);
        QCOMPARE(m_window->secondTokenStrip()->activations().size(), r.right->tokens.size());
        for (int i = 0; i < r.right->tokens.size(); ++i)
            QCOMPARE(m_window->secondTokenStrip()->activations()[i], i < r.tokens.size() && r.tokens[i] == r.right->tokens[i] ? 0.0 : 1.0);
        QCOMPARE(m_window->secondTokenStrip()->activations()[0], 0.0);  // "When"
        QCOMPARE(m_window->secondTokenStrip()->activations()[1], 1.0);  // "·John" against "·Mary"
        QCOMPARE(table()->headerData(NodeTableModel::ActivationColumn, Qt::Horizontal).toString(), QStringLiteral("Activation (left)"));
        QCOMPARE(table()->headerData(NodeTableModel::ActivationOtherColumn, Qt::Horizontal).toString(), QStringLiteral("Activation (right)"));
        QVERIFY(!m_window->table()->tableView()->isColumnHidden(NodeTableModel::ActivationDeltaColumn));

        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QVERIFY(ref.right);
        QVERIFY(close(r.objective, ref.left.run.effects.objective));
        QVERIFY(close(r.right->objective, ref.right->run.effects.objective));
        const std::vector<NodeTableRow> refRows = nodeTable(*m_ref.model, m_ref.saes, ref, m_window->tableTopK()->value());
        int both = 0, oneSide = 0;
        for (int row = 0; row < table()->rowCount(); ++row) {
            const NodeRow& shown = table()->rowAt(row);
            const auto it = std::find_if(refRows.begin(), refRows.end(), [&](const NodeTableRow& x) { return x.node == shown.node; });
            QVERIFY(it != refRows.end());
            const QVariant delta = table()->index(row, NodeTableModel::TotalEffectDeltaColumn).data(NodeTableModel::SortRole);
            if (it->left && it->right) {
                QVERIFY(close(delta.toDouble(), it->right->totalEffect - it->left->totalEffect, 1e-5));
                QVERIFY(close(shown.other->totalEffect.value(), it->right->totalEffect));
                ++both;
            } else {
                QVERIFY(!delta.isValid()); // one side lacks the node: no Δ
                ++oneSide;
            }
        }
        QVERIFY(both > 0);
        Q_UNUSED(oneSide);

        // The next-token panel pins the target and the distractor at the top, both prompts' values.
        const NextTokensModel* next = m_window->nextTokensPanel()->model();
        QCOMPARE(next->comparison(), Comparison::Prompts);
        QCOMPARE(next->index(0, NextTokensModel::RoleColumn).data().toString(), QStringLiteral("target"));
        QCOMPARE(next->index(0, NextTokensModel::TokenColumn).data().toString(), QStringLiteral("·Mary"));
        QCOMPARE(next->index(1, NextTokensModel::RoleColumn).data().toString(), QStringLiteral("distractor"));
        QCOMPARE(next->index(1, NextTokensModel::TokenColumn).data().toString(), QStringLiteral("·John"));
        QVERIFY(close(next->rows()[0].token.logit, ref.left.run.next.targets[0].logit));
        QVERIFY(next->rows()[0].other && close(next->rows()[0].other->logit, ref.right->run.next.targets[0].logit));
        QCOMPARE(next->index(0, NextTokensModel::VsTargetColumn).data(NextTokensModel::SortRole).toDouble(), 0.0);
        QVERIFY(close(next->index(1, NextTokensModel::VsTargetColumn).data(NextTokensModel::SortRole).toDouble(),
                      ref.left.run.next.distractors[0].logit - ref.left.run.next.targets[0].logit));

        // Remove: one prompt again.
        actAndWait([&] { QTest::mouseClick(m_window->secondPromptBar()->removeButton(), Qt::LeftButton); });
        QCOMPARE(m_window->lastRun()->comparison, Comparison::None);
        QVERIFY(!m_window->secondPromptBar()->secondPrompt());
        QVERIFY(!m_window->secondTokenStrip()->isVisible());
    }

    void tokenEffectsAndObjectiveEditor()
    {
        typeAndRun(kPrompt, {}, {});
        QVERIFY(!m_window->tokenEffects()->isVisible()); // no objective: hidden
        ObjectiveEditor* editor = m_window->objectiveEditor();
        editor->kindChooser()->setCurrentIndex(editor->kindChooser()->findData(QStringLiteral("prob")));
        QVERIFY(!editor->distractorField()->isEnabled());
        typeAndRun(kPrompt, {QStringLiteral(" Mary"), QStringLiteral(" John")}, {});
        Session::Objective o = m_window->objectiveFromFields();
        QCOMPARE(o.kind, std::string("prob"));
        QCOMPARE(o.targets, (std::vector<std::string>{" Mary", " John"}));
        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QCOMPARE(ref.left.run.effects.objectiveKind, ObjectiveKind::Prob);
        QVERIFY(close(m_window->lastRun()->objective, ref.left.run.effects.objective));
        // The token effect rows are the core's sums, one row per kind, and hover names the exact value.
        TokenEffectsView* effects = m_window->tokenEffects();
        QVERIFY(effects->isVisible());
        QCOMPARE(effects->rows().size(), qsizetype(ref.left.run.tokenEffects.rows.size()));
        for (int k = 0; k < effects->rows().size(); ++k) {
            const auto& refRow = ref.left.run.tokenEffects.rows[std::size_t(k)];
            QCOMPARE(effects->rows()[k].kind, QString::fromStdString(refRow.kind));
            for (std::size_t t = 0; t < refRow.values.size(); ++t)
                QVERIFY(close(effects->rows()[k].values[qsizetype(t)], refRow.values[t]));
        }
        const QString tip = effects->toolTipAt(effects->cellRect(0, 2).center());
        QVERIFY2(tip.contains(QString::number(effects->rows()[0].values[2], 'g', 8)), qPrintable(tip));

        // Swap, and the warnings for a trailing space and a target without its leading space.
        editor->kindChooser()->setCurrentIndex(0);
        m_window->setPrompt(kPrompt + u' ', {QStringLiteral("Mary")}, {QStringLiteral(" John")});
        QVERIFY(editor->warning().contains(QStringLiteral("ends with a space")));
        QVERIFY(editor->warning().contains(QStringLiteral("“Mary” has no leading space")));
        QTest::mouseClick(editor->swapButton(), Qt::LeftButton);
        QCOMPARE(m_window->targetField()->tokens(), std::vector<std::string>{" John"});
        QCOMPARE(m_window->distractorField()->tokens(), std::vector<std::string>{"Mary"});

        // Live, without a run: each chip is checked to be one token, and one that is not shows its
        // tokenization (the model's own), drawn red, and is named in the warning chip.
        const quint64 lastRun = m_window->lastRun()->id;
        m_window->setPrompt(kPrompt, {QStringLiteral(" Mary"), QStringLiteral(" Marzipanorama")}, {QStringLiteral(" John")});
        const std::vector<int> ids = m_ref.model->tokenizer->encode(" Marzipanorama");
        QVERIFY(ids.size() > 1);
        QStringList pieces;
        for (int id : ids)
            pieces << displayToken(m_ref.model->tokenizer->tokenString(id));
        const QString expected = QStringLiteral("“·Marzipanorama” is %1 tokens: %2").arg(ids.size()).arg(pieces.join(u'|'));
        QVERIFY2(editor->warning().contains(expected), qPrintable(editor->warning() + QStringLiteral(" / ") + expected));
        QCOMPARE(editor->notOneToken(), QStringList{expected});
        QVERIFY(!editor->warningLabel()->isHidden());
        QCOMPARE(m_window->targetField()->chipCount(), 2);
        QVERIFY(m_window->targetField()->chipIsOneToken(0));
        QCOMPARE(m_window->targetField()->chipText(0), QStringLiteral("·Mary"));
        QVERIFY(!m_window->targetField()->chipIsOneToken(1));
        QCOMPARE(m_window->targetField()->chipText(1), pieces.join(u'|'));
        QVERIFY(m_window->distractorField()->chipIsOneToken(0));
        // Removing the chip that is not one token clears the warning.
        QTest::mouseClick(m_window->targetField()->removeButton(1), Qt::LeftButton);
        QCOMPARE(m_window->targetField()->tokens(), std::vector<std::string>{" Mary"});
        QVERIFY(editor->warning().isEmpty());
        QVERIFY(editor->warningLabel()->isHidden());
        // A distractor is checked as well, while it is typed (before Enter makes it a chip).
        QTest::keyClicks(m_window->distractorField()->input(), QStringLiteral(" Marzipanorama"));
        QVERIFY(editor->warning().contains(expected));
        QVERIFY(m_window->distractorField()->input()->styleSheet().contains(QStringLiteral("border")));
        QTest::keyClick(m_window->distractorField()->input(), Qt::Key_Return);
        QCOMPARE(m_window->distractorField()->chipCount(), 2);
        QVERIFY(!m_window->distractorField()->chipIsOneToken(1));
        QVERIFY(m_window->distractorField()->input()->text().isEmpty());
        QVERIFY(m_window->distractorField()->input()->styleSheet().isEmpty());
        QVERIFY(editor->warning().contains(expected));
        QCOMPARE(m_window->lastRun()->id, lastRun); // all of it before any run
    }

    void sessionRoundTripWithInterventions()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary"), QStringLiteral(" drink")}, {QStringLiteral(" John")});
        actAndWait([&] { m_window->ablate(QStringLiteral("mlp:0:3@*"), 0.5); });
        actAndWait([&] { m_window->trace(NodeRef::parse("mlp:1:5@-1").resolved(int(m_window->lastRun()->tokens.size()))); });
        actAndWait([&] { m_window->addSecondPrompt(); });
        actAndWait([&] {
            m_window->secondPromptBar()->promptField()->setText(QStringLiteral("Then John gave a drink to"));
            // The second prompt's own objective, its chips swapped from the first's.
            m_window->secondPromptBar()->targetField()->setTokens({" John"});
            m_window->secondPromptBar()->distractorField()->setTokens({" Mary"});
            m_window->run();
        });
        actAndWait([&] { m_window->tableTopK()->setValue(7); });
        const Session saved = m_window->currentSession();
        QCOMPARE(saved.view.tableTopK, 7);
        QCOMPARE(saved.ablations, std::vector<std::string>{"mlp:0:3@*=0.5"});
        QVERIFY(saved.trace && saved.trace->node == "mlp:1:5@-1");
        QVERIFY(saved.secondPrompt && saved.secondPrompt->prompt == "Then John gave a drink to");
        QCOMPARE(saved.objective.targets, (std::vector<std::string>{" Mary", " drink"}));
        QCOMPARE(saved.secondPrompt->targets, std::vector<std::string>{" John"});
        QCOMPARE(saved.secondPrompt->distractors, std::vector<std::string>{" Mary"});
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("hypothesis.circuitscope.json"));
        QVERIFY(m_window->saveSession(path));
        // What autosave writes is the same session.
        QVERIFY(m_window->autosaveNow());
        QVERIFY(loadSession(MainWindow::autosavePath().toStdString()) == loadSession(path.toStdString()));

        MainWindow other;
        QSignalSpy restored(&other, &MainWindow::sessionRestored);
        other.openSession(path);
        QVERIFY2(test::waitForSignal(restored, 60000), qPrintable(other.errorText()));
        const Session back = other.currentSession();
        QCOMPARE(back.ablations, saved.ablations);
        QVERIFY(back.trace == saved.trace);
        QVERIFY(back.secondPrompt == saved.secondPrompt);
        QVERIFY(back.objective == saved.objective);
        QCOMPARE(other.targetField()->chipCount(), 2);
        QCOMPARE(other.distractorField()->chipCount(), 1);
        QCOMPARE(other.secondPromptBar()->targetField()->tokens(), std::vector<std::string>{" John"});
        QCOMPARE(other.secondPromptBar()->distractorField()->tokens(), std::vector<std::string>{" Mary"});
        QCOMPARE(back.view.tableTopK, 7);
        QCOMPARE(other.lastRun()->table.size(), m_window->lastRun()->table.size());
        QCOMPARE(other.ablationsPanel()->ablations(), QStringList{QStringLiteral("mlp:0:3@*=0.5")});
        QVERIFY(!other.traceBar()->text().isEmpty());
        QCOMPARE(other.lastRun()->comparison, Comparison::Prompts);
        QCOMPARE(other.lastRun()->objective, m_window->lastRun()->objective);
        QCOMPARE(other.lastRun()->right->objective, m_window->lastRun()->right->objective);

        // A version-1 session (one target and distractor, no interventions) still opens.
        const QString old = dir.filePath(QStringLiteral("old.circuitscope.json"));
        QFile f(old);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QStringLiteral(R"({"schema":"circuitscope-session","version":1,"model":"%1","prompt":"%2","target":" Mary","distractor":" John"})")
                    .arg(tinyModel(), kPrompt)
                    .toUtf8());
        f.close();
        MainWindow third;
        QSignalSpy restored3(&third, &MainWindow::sessionRestored);
        third.openSession(old);
        QVERIFY2(test::waitForSignal(restored3, 60000), qPrintable(third.errorText()));
        QVERIFY(third.ablations().isEmpty() && !third.currentTrace() && !third.currentSession().secondPrompt);
        QCOMPARE(third.targetField()->tokens(), std::vector<std::string>{" Mary"});
        QCOMPARE(third.lastRun()->comparison, Comparison::None);
    }

    void rapidTogglingLeavesNoQueueAndTheLastStateWins()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        const NodeRef neuron = NodeRef::parse("mlp:1:7@4");
        int maxPending = 0;
        for (int i = 0; i < 201; ++i) {
            m_window->nodeActions()->toggleAblation(neuron);
            maxPending = std::max(maxPending, m_window->engine()->engine()->pendingRuns());
        }
        QVERIFY(maxPending <= 1);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->lastRun()->id == m_window->engine()->latestRun(), 60000);
        QCOMPARE(m_window->engine()->engine()->pendingRuns(), 0);
        // An odd number of toggles: ablated.
        QCOMPARE(m_window->ablations(), QStringList{QStringLiteral("mlp:1:7@4=0")});
        QCOMPARE(m_window->lastRun()->ablations, QStringList{QStringLiteral("mlp:1:7@4=0")});
        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QVERIFY(close(m_window->lastRun()->objective, ref.left.run.effects.objective));
    }

    // Key A on the grid's selected node ablates it at its token (again: removes it); the inspector's
    // Ablate / Trace menu ablates it at every token. Each run is the core's for the resulting spec.
    void ablateWithKeyAAndFromTheInspector()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        const LayerGrid::Cell* cell = gridCell(NodeKind::MlpNeuron, 1);
        QVERIFY(cell);
        const NodeRef node = cell->cell.node;
        const int n = int(m_window->lastRun()->tokens.size());
        m_window->selectNode(node);
        m_window->grid()->setFocus();
        actAndWait([&] { QTest::keyClick(m_window->grid(), Qt::Key_A); });
        const QString here = ablationName(node, false, n) + QStringLiteral("=0");
        QCOMPARE(m_window->ablations(), QStringList{here});
        QCOMPARE(m_window->lastRun()->ablations, QStringList{here});
        QVERIFY(close(m_window->lastRun()->objective, m_ref.analyze(m_window->currentSession()).left.run.effects.objective));
        actAndWait([&] { QTest::keyClick(m_window->grid(), Qt::Key_A); });
        QVERIFY(m_window->ablations().isEmpty());
        QCOMPARE(m_window->lastRun()->comparison, Comparison::None);

        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().node == node, 30000);
        QMenu* menu = m_window->inspector()->interventionButton()->menu();
        Q_EMIT menu->aboutToShow(); // what opening the button's menu does: it is filled for the shown node
        QAction* every = findAction(menu, QStringLiteral("Ablate %1 at every token").arg(ablationName(node, false, n)));
        QVERIFY(every);
        actAndWait([&] { every->trigger(); });
        const QString everywhere = ablationName(node, true, n) + QStringLiteral("=0");
        QVERIFY(everywhere.contains(u'*'));
        QCOMPARE(m_window->ablations(), QStringList{everywhere});
        QCOMPARE(m_window->lastRun()->comparison, Comparison::Baseline);
        QVERIFY(close(m_window->lastRun()->objective, m_ref.analyze(m_window->currentSession()).left.run.effects.objective));
    }

    void ablationValueIsEditable()
    {
        typeAndRun(kPrompt, {QStringLiteral(" Mary")}, {QStringLiteral(" John")});
        actAndWait([&] { m_window->ablate(QStringLiteral("mlp:1:7@4")); });
        AblationListModel* model = m_window->ablationsPanel()->model();
        actAndWait([&] { QVERIFY(model->setData(model->index(0, AblationListModel::ValueColumn), 2.5)); });
        QCOMPARE(m_window->ablations(), QStringList{QStringLiteral("mlp:1:7@4=2.5")});
        const Analysis ref = m_ref.analyze(m_window->currentSession());
        QVERIFY(close(m_window->lastRun()->objective, ref.left.run.effects.objective));
        // The inspector shows ablated / baseline / Δ for the selected node.
        m_window->selectNode(NodeRef::parse("mlp:1:7@4"));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->inspector()->hasView() && m_window->inspector()->view().name == u"mlp:1:7@4", 30000);
        const NodeView& v = m_window->inspector()->view();
        QVERIFY(v.baselineMetrics);
        QCOMPARE(v.metrics.activation, 2.5);
        const AnalysisInput base{*m_ref.model, m_ref.saes, ref.left.baseline->record};
        QVERIFY(close(v.baselineMetrics->activation, nodeActivation(base, v.node)));
    }
};

QTEST_MAIN(TestWindowInterventions)
#include "tst_window_interventions.moc"
