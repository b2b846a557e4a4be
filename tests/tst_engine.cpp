// The engine on its worker thread: requests in, value types out (style.md "One owner thread").
// Checks: results match the core's own computation, the inspect mailbox never queues more than one
// request and the last click wins, cancel, and bad input keeps the previous state.

#include "core/analysis/converters.h"
#include "core/model/forward.h"
#include "test_support.h"
#include "ui/engine/engine.h"

#include <QSemaphore>
#include <QSignalSpy>
#include <QTest>

using namespace cs;
using namespace cs::ui;

using test::kPrompt;
using test::tinyModel;

class TestEngine : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> m_engine;

    RunResult runAndWait(const RunRequest& request)
    {
        QSignalSpy finished(m_engine->engine(), &Engine::runFinished);
        QSignalSpy failed(m_engine->engine(), &Engine::failed);
        m_engine->run(request);
        if (!test::waitForSignal(finished, 60000) || !failed.isEmpty())
            qFatal("run did not finish: %s", failed.isEmpty() ? "timeout" : qPrintable(failed.first().at(1).toString()));
        return finished.first().first().value<RunResult>();
    }

private Q_SLOTS:
    void init()
    {
        m_engine = std::make_unique<EngineClient>();
        QSignalSpy opened(m_engine->engine(), &Engine::modelOpened);
        m_engine->openModel(tinyModel());
        QVERIFY(test::waitForSignal(opened, 30000));
        QCOMPARE(opened.first().first().value<ModelSummary>().nLayer, 2);
    }
    void cleanup() { m_engine.reset(); }

    void runGivesTableGridAndPredictions()
    {
        RunRequest r;
        r.prompt = kPrompt;
        r.objective.targets = {" Mary"};
        r.objective.distractors = {" John"};
        const RunResult result = runAndWait(r);
        QCOMPARE(result.tokens.size(), 14);
        QCOMPARE(result.tokens[1], QStringLiteral("·Mary"));
        QVERIFY(result.hasObjective);
        QVERIFY(!result.table.isEmpty());
        QCOMPARE(result.nextTokens.size(), 10);
        QVERIFY(result.grid.has(Metric::TotalEffect));
        const GridLayerRow& row = result.grid.row(Metric::Activation, 13, 1);
        QCOMPARE(row.heads.size(), 4);
        QCOMPARE(row.neurons.size(), 16);
        for (int i = 1; i < row.neurons.size(); ++i)
            QVERIFY(std::abs(row.neurons[i].value) <= std::abs(row.neurons[i - 1].value));
        // A grid cell's value is the record's activation.
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        const ActivationRecord rec = runForward(*model, std::vector<int>(result.ids.begin(), result.ids.end()));
        const GridCell& cell = row.neurons.first();
        QVERIFY(std::abs(cell.value - rec.layers[1].mlpPost[13][cell.node.index].item<double>()) < 1e-5);
    }

    void withoutTargetEffectsAreAbsent()
    {
        RunRequest r;
        r.prompt = kPrompt;
        const RunResult result = runAndWait(r);
        QVERIFY(!result.hasObjective);
        QVERIFY(!result.grid.has(Metric::DirectEffect));
        QVERIFY(result.grid.has(Metric::WriteMagnitude));
        for (const NodeRow& row : result.table)
            QVERIFY(!row.directEffect && !row.totalEffect);
    }

    void stagedResultsShowTheModelNodesFirst()
    {
        // With autoencoders, a run first sends the table and grid of the model's own nodes (no latents
        // yet), then the final result; the staged values are the final ones for the same nodes.
        QSignalSpy changed(m_engine->engine(), &Engine::saesChanged);
        m_engine->addSae(SaeRole::Mlp, QStringLiteral("1=") + QString::fromStdString((test::dataDir() / "sae/mlp_post_act.relu.pt").string()));
        m_engine->addSae(SaeRole::Attn, QStringLiteral("0=") + QString::fromStdString((test::dataDir() / "sae/resid_delta_attn.relu.pt").string()));
        QVERIFY(test::waitForSignal(changed, 30000));
        while (changed.size() < 2)
            QVERIFY(test::waitForSignal(changed, 30000));
        QSignalSpy staged(m_engine->engine(), &Engine::runStaged);
        QSignalSpy stages(m_engine->engine(), &Engine::stageChanged);
        RunRequest r;
        r.prompt = kPrompt;
        r.objective.targets = {" Mary"};
        r.tableTopK = 200;
        const RunResult final = runAndWait(r);
        QVERIFY(!final.partial);
        QVERIFY(staged.size() >= 1);
        const RunResult first = staged.first().first().value<RunResult>();
        QVERIFY(first.partial);
        QCOMPARE(first.id, final.id);
        QCOMPARE(first.latentLayersDone, 0);
        QCOMPARE(first.latentLayersTotal, 2);
        QVERIFY(!first.table.isEmpty());
        QMap<QString, const NodeRow*> finalRows;
        bool finalHasLatents = false;
        for (const NodeRow& row : final.table) {
            finalRows.insert(row.name, &row);
            finalHasLatents |= row.kind.endsWith(QStringLiteral("_sae"));
        }
        QVERIFY(finalHasLatents);
        int matched = 0;
        for (const NodeRow& row : first.table) {
            QVERIFY2(!row.kind.endsWith(QStringLiteral("_sae")), qPrintable(row.name));
            if (const NodeRow* f = finalRows.value(row.name)) {
                QCOMPARE(row.activation, f->activation);
                QVERIFY(row.totalEffect && f->totalEffect && std::abs(*row.totalEffect - *f->totalEffect) <= 1e-9);
                ++matched;
            }
        }
        QVERIFY(matched > 0);
        // The grid: the model's neurons and heads as in the final one, no latents yet.
        for (int t = 0; t < final.grid.tokenCount; ++t) {
            for (int layer = 0; layer < final.grid.nLayers; ++layer) {
                const GridLayerRow& a = first.grid.row(Metric::TotalEffect, t, layer);
                const GridLayerRow& b = final.grid.row(Metric::TotalEffect, t, layer);
                QCOMPARE(a.neurons.size(), b.neurons.size());
                for (int i = 0; i < a.neurons.size(); ++i)
                    QCOMPARE(a.neurons[i].node.index, b.neurons[i].node.index);
                QVERIFY(a.mlpLatents.isEmpty() && a.attnLatents.isEmpty());
            }
        }
        // The progress bar's stages named what was computed.
        QStringList names;
        for (const auto& s : stages)
            names << s.at(1).toString();
        QVERIFY2(names.join(u'|').contains(QStringLiteral("autoencoder")), qPrintable(names.join(u'|')));
    }

    void inspectMatchesTheCore()
    {
        RunRequest r;
        r.prompt = kPrompt;
        r.objective.targets = {" Mary"};
        const RunResult result = runAndWait(r);
        QSignalSpy ready(m_engine->engine(), &Engine::nodeReady);
        const NodeRef node = NodeRef::parse("mlp:1:7@-1").resolved(14);
        m_engine->inspect(node);
        QVERIFY(test::waitForSignal(ready, 30000));
        const NodeView v = ready.first().first().value<NodeView>();
        QCOMPARE(v.name, QStringLiteral("mlp:1:7@13"));

        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        const ActivationRecord rec = runForward(*model, std::vector<int>(result.ids.begin(), result.ids.end()));
        const SaeSet none;
        const AnalysisInput in{*model, none, rec};
        const TopTokens expected = topTokens(*model->tokenizer, tokenWrite(*model, residualWrite(in, node)), 20);
        QCOMPARE(v.writeInContext.top.size(), 20);
        for (int i = 0; i < 20; ++i) {
            QCOMPARE(v.writeInContext.top[i].id, expected.top[i].id);
            QVERIFY(std::abs(v.writeInContext.top[i].value - expected.top[i].value) < 1e-5);
        }
        QCOMPARE(v.reads.size(), 1);
        QCOMPARE(v.activationByToken.size(), 14);
        QVERIFY(v.metrics.totalEffect.has_value());
        QVERIFY(v.pairMaps.isEmpty() && !v.pairMapsNote.isEmpty());
    }

    void headInspectHasPairMapsAndTwoReads()
    {
        RunRequest r;
        r.prompt = kPrompt;
        runAndWait(r);
        QSignalSpy ready(m_engine->engine(), &Engine::nodeReady);
        m_engine->inspect(NodeRef::parse("attn:0:2@13,4").resolved(14));
        QVERIFY(test::waitForSignal(ready, 30000));
        const NodeView v = ready.first().first().value<NodeView>();
        QCOMPARE(v.reads.size(), 2);
        QCOMPARE(v.pairMaps.size(), 2);
        QCOMPARE(v.pairMaps[0].values.size(), 14 * 14);
        QVERIFY(std::isnan(v.pairMaps[0].at(2, 3)));
        QCOMPARE(v.pairMaps[0].highlightRow, 13);
    }

    void rapidInspectsCoalesceAndTheLastWins()
    {
        RunRequest r;
        r.prompt = kPrompt;
        runAndWait(r);
        QSignalSpy ready(m_engine->engine(), &Engine::nodeReady);
        quint64 lastId = 0;
        int maxPending = 0;
        for (int i = 0; i < 200; ++i) {
            lastId = m_engine->inspect(NodeRef{NodeKind::MlpNeuron, i % 2, i % 128, i % 14, 0});
            maxPending = std::max(maxPending, m_engine->engine()->pendingInspects());
        }
        QCOMPARE(maxPending, 1);
        QTRY_VERIFY_WITH_TIMEOUT(!ready.isEmpty() && ready.last().first().value<NodeView>().requestId == lastId, 30000);
        QTest::qWait(200);
        QVERIFY(ready.size() < 200); // superseded requests were never computed
        QCOMPARE(ready.last().first().value<NodeView>().name, QStringLiteral("mlp:1:71@3"));
    }

    void cancelStopsARun()
    {
        QSignalSpy cancelled(m_engine->engine(), &Engine::runCancelled);
        QSignalSpy finished(m_engine->engine(), &Engine::runFinished);
        RunRequest r;
        r.prompt = kPrompt;
        // Hold the worker so the cancel arrives while the run is queued, whatever the timing.
        QSemaphore hold;
        QMetaObject::invokeMethod(m_engine->engine(), [&hold] { hold.acquire(); }, Qt::QueuedConnection);
        m_engine->run(r);
        m_engine->cancel();
        hold.release();
        QVERIFY(test::waitForSignal(cancelled, 30000));
        QVERIFY(finished.isEmpty());
        // The next run is not affected by the earlier cancel.
        runAndWait(r);
    }

    void badInputKeepsThePreviousState_data()
    {
        QTest::addColumn<QString>("what");
        QTest::addColumn<QString>("expected");
        QTest::newRow("folder that is not a model") << QStringLiteral("model") << QStringLiteral("no config.json");
        QTest::newRow("multi-token target") << QStringLiteral("target") << QStringLiteral("target: ' Mary and' is 2 tokens");
        QTest::newRow("empty prompt") << QStringLiteral("prompt") << QStringLiteral("prompt: empty");
        QTest::newRow("autoencoder of the wrong width") << QStringLiteral("sae") << QStringLiteral("fits no --attn-sae location");
    }
    void badInputKeepsThePreviousState()
    {
        QFETCH(QString, what);
        QFETCH(QString, expected);
        RunRequest good;
        good.prompt = kPrompt;
        const RunResult before = runAndWait(good);
        QSignalSpy failed(m_engine->engine(), &Engine::failed);
        if (what == u"model") {
            m_engine->openModel(QString::fromStdString((test::dataDir() / "sae").string()));
        } else if (what == u"sae") {
            m_engine->addSae(SaeRole::Attn, QStringLiteral("0=") + QString::fromStdString((test::dataDir() / "sae/mlp_post_act.relu.pt").string()));
        } else {
            RunRequest bad = good;
            if (what == u"target")
                bad.objective.targets = {" Mary and"};
            else
                bad.prompt.clear();
            m_engine->run(bad);
        }
        QVERIFY(test::waitForSignal(failed, 30000));
        QVERIFY2(failed.first().at(1).toString().contains(expected), qPrintable(failed.first().at(1).toString()));
        // The old model and record still answer.
        QSignalSpy ready(m_engine->engine(), &Engine::nodeReady);
        m_engine->inspect(NodeRef::parse("mlp:0:3@2"));
        QVERIFY(test::waitForSignal(ready, 30000));
        QCOMPARE(runAndWait(good).tokens, before.tokens);
    }

    void destroyingDuringARunIsSafe()
    {
        RunRequest r;
        r.prompt = kPrompt;
        r.objective.targets = {" Mary"};
        m_engine->run(r);
        m_engine->run(r);
        m_engine.reset(); // cancels and joins
        QVERIFY(!m_engine);
        init();
    }
};

QTEST_GUILESS_MAIN(TestEngine)
#include "tst_engine.moc"
