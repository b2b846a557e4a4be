#include "ui/widgets/main_window.h"

#include "core/model/demo_model.h"
#include "core/model/hf_cache.h"
#include "ui/charts/chart_widget.h"
#include "ui/charts/circuit_report.h"
#include "ui/engine/view_cache.h"
#include "ui/widgets/ablations_panel.h"
#include "ui/widgets/circuit_exporter.h"
#include "ui/widgets/circuit_panel.h"
#include "ui/widgets/examples_view.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/next_tokens_panel.h"
#include "ui/widgets/node_actions.h"
#include "ui/widgets/node_inspector.h"
#include "ui/widgets/node_table_view.h"
#include "ui/widgets/objective_editor.h"
#include "ui/widgets/present_view.h"
#include "ui/widgets/second_prompt_bar.h"
#include "ui/widgets/session_controller.h"
#include "ui/widgets/token_chip_editor.h"
#include "ui/widgets/settings.h"
#include "ui/widgets/token_effects_view.h"
#include "ui/widgets/token_strip.h"
#include "ui/widgets/trace_bar.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QStandardPaths>
#include <QTimer>
#include <QFileInfo>
#include <QTabWidget>
#include <QCoreApplication>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QScreen>
#include <QWindow>
#include <QSpinBox>
#include <QSplitter>
#include <QStatusBar>
#include <QToolBar>
#include <QToolButton>
#include <QVBoxLayout>

#include <utility>

namespace cs::ui {

namespace {

constexpr int kGridTopNComputed = 32; // the engine ships this many per layer; the spin box shows fewer
constexpr int kCircuitDockWidth = 340;
constexpr int kAblationsDockWidth = 240;

QString roleName(SaeRole role)
{
    switch (role) {
    case SaeRole::Mlp: return QObject::tr("MLP");
    case SaeRole::Attn: return QObject::tr("attention");
    case SaeRole::Resid: return QObject::tr("residual");
    }
    return {};
}

} // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), m_engine(new EngineClient(this))
{
    setWindowTitle(tr("Circuitscope"));
    m_views = new NodeViewCache(m_engine, this);
    // Nothing worth saving before a model has run a prompt.
    m_sessions = new SessionController([this]() -> std::optional<Session> {
        if (!m_model || !m_lastRun)
            return std::nullopt;
        return currentSession();
    }, this);
    m_actions = new NodeActions(this);
    m_actions->setAblatedQuery([this](const QString& name) { return m_ablations && m_ablations->model()->rowOfNode(name) >= 0; });
    connect(m_actions, &NodeActions::ablateRequested, this, &MainWindow::ablate);
    connect(m_actions, &NodeActions::unablateRequested, this, &MainWindow::removeAblation);
    connect(m_actions, &NodeActions::traceRequested, this, &MainWindow::trace);
    connect(m_actions, &NodeActions::valueTraceOntoRequested, this, &MainWindow::pickDownstreamFor);
    buildToolbar();
    buildCentral();
    buildCircuitDock();
    buildInterventionDocks();
    buildStatusBar();
    connectEngine();

    restoreGeometry(Settings::windowGeometry());
    restoreState(Settings::windowState());
    // A saved state may show the Ablations or the Circuit dock; each shows only while it has entries.
    findChild<QDockWidget*>(QStringLiteral("ablationsDock"))->setVisible(false);
    findChild<QDockWidget*>(QStringLiteral("circuitDock"))->setVisible(false);
    const LastPrompt last = Settings::lastPrompt();
    setPrompt(last.text, last.targets, last.distractors);
}

QString MainWindow::autosavePath()
{
    return SessionController::autosavePath();
}

bool MainWindow::autosaveNow()
{
    return m_sessions->autosaveNow();
}

QString MainWindow::sessionPath() const
{
    return m_sessions->path();
}

QStringList MainWindow::recentSessions()
{
    return SessionController::recentSessions();
}

void MainWindow::setModelLocator(ModelLocator locator)
{
    m_sessions->setModelLocator(std::move(locator));
}

MainWindow::~MainWindow() = default;

void MainWindow::buildToolbar()
{
    auto* bar = addToolBar(tr("Main"));
    bar->setObjectName(QStringLiteral("mainToolbar"));
    bar->setMovable(false);

    m_modelButton = new QToolButton;
    m_modelButton->setText(tr("Open model"));
    m_modelButton->setPopupMode(QToolButton::InstantPopup);
    m_modelMenu = new QMenu(m_modelButton);
    connect(m_modelMenu, &QMenu::aboutToShow, this, &MainWindow::fillModelMenu);
    m_modelButton->setMenu(m_modelMenu);
    bar->addWidget(m_modelButton);

    m_saeButton = new QToolButton;
    m_saeButton->setText(tr("Open SAEs"));
    m_saeButton->setPopupMode(QToolButton::InstantPopup);
    auto* saeMenu = new QMenu(m_saeButton);
    for (SaeRole role : kSaeRoles)
        saeMenu->addAction(tr("%1 autoencoder for a layer…").arg(roleName(role)), this, [this, role] { chooseAutoencoder(role); });
    saeMenu->addSeparator();
    saeMenu->addAction(tr("Remove all autoencoders"), this, [this] {
        m_saeSpecs.clear();
        m_engine->clearSaes();
    });
    m_saeButton->setMenu(saeMenu);
    bar->addWidget(m_saeButton);

    auto* sessionButton = new QToolButton;
    sessionButton->setText(tr("Session"));
    sessionButton->setPopupMode(QToolButton::InstantPopup);
    auto* sessionMenu = new QMenu(sessionButton);
    sessionMenu->addAction(tr("Open session…"), QKeySequence::Open, this, &MainWindow::chooseSessionToOpen);
    m_recentSessionsMenu = sessionMenu->addMenu(tr("Recent sessions"));
    connect(m_recentSessionsMenu, &QMenu::aboutToShow, this, &MainWindow::fillRecentSessionsMenu);
    fillRecentSessionsMenu();
    sessionMenu->addAction(tr("Save session"), QKeySequence::Save, this, &MainWindow::saveCurrentSession);
    sessionMenu->addAction(tr("Save session as…"), QKeySequence::SaveAs, this, &MainWindow::chooseSessionToSave);
    // The shortcuts work with the menu closed too.
    addActions(sessionMenu->actions());
    sessionMenu->addSeparator();
    sessionMenu->addAction(tr("Export circuit as CSV…"), this, [this] { chooseCircuitExport(QStringLiteral("csv")); });
    sessionMenu->addAction(tr("Export circuit as PDF (a page per pin)…"), this, [this] { chooseCircuitExport(QStringLiteral("pdf")); });
    sessionButton->setMenu(sessionMenu);
    bar->addWidget(sessionButton);
    bar->addSeparator();

    m_prompt = new QLineEdit;
    m_prompt->setPlaceholderText(tr("Prompt"));
    m_prompt->setClearButtonEnabled(true);
    // 280: with the objective's chips, Run, Add second prompt and Present still fit a 1280-pixel
    // screen (a wider window gives the prompt the rest).
    m_prompt->setMinimumWidth(280);
    connect(m_prompt, &QLineEdit::returnPressed, this, &MainWindow::run);
    bar->addWidget(m_prompt);

    m_objective = new ObjectiveEditor;
    m_objective->follow(m_engine);
    m_target = m_objective->targetField();
    m_distractor = m_objective->distractorField();
    connect(m_objective, &ObjectiveEditor::returnPressed, this, &MainWindow::run);
    connect(m_prompt, &QLineEdit::textChanged, m_objective, &ObjectiveEditor::setPrompt);
    bar->addWidget(m_objective);

    m_runButton = new QPushButton(tr("Run"));
    m_runButton->setDefault(true);
    connect(m_runButton, &QPushButton::clicked, this, &MainWindow::run);
    bar->addWidget(m_runButton);
    m_secondPromptAction = bar->addAction(tr("Add second prompt"), this, &MainWindow::addSecondPrompt);
    m_secondPromptAction->setToolTip(tr("Compare with a second prompt (a copy of this one, to edit): left / right / Δ"));
    bar->addSeparator();

    m_presentAction = new QAction(tr("Present"), this);
    m_presentAction->setShortcut(QKeySequence(Qt::Key_F5));
    m_presentAction->setToolTip(tr("Present the circuit full screen, one pinned node at a time (F5; arrows step, Esc leaves)"));
    connect(m_presentAction, &QAction::triggered, this, [this] { present(std::max(0, m_circuit->currentRow())); });
    bar->addAction(m_presentAction);
}

void MainWindow::buildCentral()
{
    auto* central = new QWidget;
    auto* layout = new QVBoxLayout(central);
    layout->setContentsMargins(6, 4, 6, 4);

    m_error = new QLabel;
    m_error->setWordWrap(true);
    m_error->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_error->setStyleSheet(QStringLiteral("QLabel { background: #fdecea; color: #8a1c12; border: 1px solid #f5c2bd; border-radius: 4px; padding: 6px; }"));
    m_error->hide();
    layout->addWidget(m_error);

    m_second = new SecondPromptBar;
    m_second->follow(m_engine);
    connect(m_second, &SecondPromptBar::removeRequested, this, &MainWindow::removeSecondPrompt);
    connect(m_second, &SecondPromptBar::returnPressed, this, &MainWindow::run);
    layout->addWidget(m_second);

    m_tokens = new TokenStrip;
    connect(m_tokens, &TokenStrip::tokenClicked, this, &MainWindow::onTokenOfInterest);
    layout->addWidget(m_tokens);
    m_tokenEffects = new TokenEffectsView;
    m_tokenEffects->follow(m_engine);
    layout->addWidget(m_tokenEffects);
    m_tokens2 = new ComparedTokenStrip;
    m_tokens2->follow(m_engine);
    layout->addWidget(m_tokens2);

    // Grid panel: controls above the grid.
    auto* gridPanel = new QWidget;
    auto* gridLayout = new QVBoxLayout(gridPanel);
    gridLayout->setContentsMargins(0, 0, 0, 0);
    auto* controls = new QHBoxLayout;
    m_metric = new QComboBox;
    for (Metric m : kMetrics)
        m_metric->addItem(metricLabel(m), QVariant::fromValue(m));
    m_metric->setToolTip(tr("Cell color. Direct and total effects need a target token."));
    connect(m_metric, &QComboBox::currentIndexChanged, this, [this] {
        m_grid->setMetric(gridMetric());
    });
    m_topN = new QSpinBox;
    m_topN->setRange(1, kGridTopNComputed);
    m_topN->setValue(16);
    m_topN->setPrefix(tr("top "));
    m_topN->setToolTip(tr("Neurons and latents shown per layer, by |metric| at the token of interest"));
    connect(m_topN, &QSpinBox::valueChanged, this, [this](int n) { m_grid->setTopN(n); });
    m_tableTopK = new QSpinBox;
    m_tableTopK->setRange(1, 200);
    m_tableTopK->setValue(Session::View().tableTopK);
    m_tableTopK->setPrefix(tr("table top "));
    m_tableTopK->setToolTip(tr("Nodes per metric in the node table (the top K by |value| of each metric, merged)"));
    connect(m_tableTopK, &QSpinBox::valueChanged, this, [this] { rerun(); });
    m_goTo = new QLineEdit;
    m_goTo->setPlaceholderText(tr("Go to node: mlp 5 123, attn 3 7, L5/N123, attn_sae:1:42@-1"));
    connect(m_goTo, &QLineEdit::returnPressed, this, &MainWindow::onGoTo);
    controls->addWidget(new QLabel(tr("Metric")));
    controls->addWidget(m_metric);
    m_deltaGrid = new QCheckBox(tr("Δ"));
    m_deltaGrid->setToolTip(tr("Color the grid by Δ: ablated − baseline with ablations, right − left with two prompts "
                               "(each layer's top neurons and latents by |Δ|)"));
    m_deltaGrid->setEnabled(false);
    connect(m_deltaGrid, &QCheckBox::toggled, this, &MainWindow::showGrid);
    controls->addWidget(m_deltaGrid);
    controls->addWidget(m_topN);
    controls->addWidget(m_tableTopK);
    controls->addWidget(m_goTo, 1);
    m_traceBar = new TraceBar;
    m_traceBar->follow(m_engine);
    connect(m_traceBar, &TraceBar::clearRequested, this, &MainWindow::clearTrace);
    gridLayout->addWidget(m_traceBar);
    gridLayout->addLayout(controls);
    m_grid = new LayerGrid;
    m_grid->setNodeActions(m_actions);
    connect(m_grid, &LayerGrid::nodeClicked, this, &MainWindow::selectNode);
    connect(m_grid, &LayerGrid::pinToggleRequested, this, &MainWindow::togglePin);
    m_gridScroll = new QScrollArea;
    m_gridScroll->setWidget(m_grid);
    m_gridScroll->setWidgetResizable(true);
    gridLayout->addWidget(m_gridScroll, 1);
    m_gridPanel = gridPanel;

    m_inspector = new NodeInspector;
    m_inspector->setNodeActions(m_actions);
    connect(m_inspector, &NodeInspector::pinToggleRequested, this, &MainWindow::togglePin);
    // Dataset examples (issue 14): the tab owns its corpus index; a click runs the example as the prompt.
    m_examples = new ExamplesView;
    m_inspector->tabs()->addTab(m_examples, tr("Examples"));
    m_examples->setSourceProvider([this] { return ExamplesSource{m_model ? m_model->path : QString(), m_saeSpecs}; });
    connect(m_examples, &ExamplesView::exampleActivated, this, [this](const QString& prompt, const NodeRef& node) {
        m_prompt->setText(prompt);
        m_selected = node;
        run();
    });
    connect(m_examples, &ExamplesView::normalizationChanged, this, [this] {
        showGrid();
        if (m_inspector->hasView())
            m_tokens->setActivations(m_examples->shownActivations(m_inspector->view().node, m_inspector->view().activationByToken));
    });
    m_table = new NodeTableView;
    m_table->setNodeActions(m_actions);
    connect(m_table, &NodeTableView::nodeActivated, this, &MainWindow::selectNode);
    connect(m_table, &NodeTableView::pinToggleRequested, this, &MainWindow::togglePin);
    m_nextTokens = new NextTokensPanel;
    m_nextTokens->follow(m_engine);
    // Two columns: the grid with the node table under it (a short grid leaves its room to the table,
    // see fitGridPanel), the inspector with the next-token candidates under it.
    m_leftColumn = new QSplitter(Qt::Vertical);
    m_leftColumn->setObjectName(QStringLiteral("leftSplitter"));
    m_leftColumn->setChildrenCollapsible(false);
    m_leftColumn->addWidget(gridPanel);
    m_leftColumn->addWidget(m_table);
    m_leftColumn->setStretchFactor(0, 0);
    m_leftColumn->setStretchFactor(1, 1);
    auto* right = new QSplitter(Qt::Vertical);
    right->setObjectName(QStringLiteral("rightSplitter"));
    right->setChildrenCollapsible(false);
    right->addWidget(m_inspector);
    right->addWidget(m_nextTokens);
    // The inspector's charts first: at 1280 × 800 a 3:2 split left the write chart 8 bars of 40.
    right->setStretchFactor(0, 2);
    right->setStretchFactor(1, 1);
    right->setSizes({660, 340});
    auto* vertical = new QSplitter(Qt::Horizontal);
    vertical->setObjectName(QStringLiteral("mainSplitter"));
    vertical->addWidget(m_leftColumn);
    vertical->addWidget(right);
    vertical->setStretchFactor(0, 1);
    vertical->setStretchFactor(1, 1);
    vertical->setSizes({800, 800});
    layout->addWidget(vertical, 1);
    setCentralWidget(central);
}

void MainWindow::buildCircuitDock()
{
    m_circuit = new CircuitPanel;
    auto* dock = new QDockWidget(tr("Circuit"), this);
    dock->setObjectName(QStringLiteral("circuitDock"));
    // Not closable: there is no other way to the pins, and a closed dock would hide them for good.
    dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
    dock->setWidget(m_circuit);
    addDockWidget(Qt::RightDockWidgetArea, dock);
    resizeDocks({dock}, {kCircuitDockWidth}, Qt::Horizontal);

    connect(m_circuit, &CircuitPanel::pinsChanged, this, &MainWindow::syncPins);
    // Empty, the list would only take a fifth of the width from the grid: the dock shows while there
    // are pins (P, or Pin in a context menu or the inspector, adds the first).
    connect(m_circuit, &CircuitPanel::pinsChanged, dock, [this, dock] {
        const bool show = !m_circuit->pins().empty(), wasHidden = dock->isHidden();
        dock->setVisible(show);
        if (show && wasHidden)
            resizeDocks({dock}, {kCircuitDockWidth}, Qt::Horizontal); // the notes wrap in it
    });
    dock->setVisible(false);
    connect(m_circuit, &CircuitPanel::nodeActivated, this, &MainWindow::onPinActivated);
    connect(m_circuit, &CircuitPanel::presentRequested, this, &MainWindow::present);
    connect(m_circuit, &CircuitPanel::exportRequested, this, &MainWindow::chooseCircuitExport);
    m_exporter = new CircuitExporter(m_views, m_circuit, this);
    connect(m_exporter, &CircuitExporter::exported, this, [this](const QString& path, int pages) {
        statusBar()->showMessage(tr("Exported the circuit (%n pin(s)) to %1", nullptr, pages).arg(path), 6000);
        Q_EMIT circuitExported(path);
    });
    connect(m_exporter, &CircuitExporter::failed, this, [this](const QString& message) {
        statusBar()->clearMessage();
        showError(message);
    });
}

bool MainWindow::togglePin(const NodeRef& node)
{
    const QString name = QString::fromStdString(node.name());
    if (m_circuit->isPinned(name)) {
        m_circuit->unpin(name);
        statusBar()->showMessage(tr("Unpinned %1").arg(name), 4000);
        return false;
    }
    m_circuit->pin(name);
    m_circuit->setCurrentRow(m_circuit->model()->indexOf(name));
    statusBar()->showMessage(tr("Pinned %1 (%n node(s) in the circuit)", nullptr, static_cast<int>(m_circuit->pins().size())).arg(name), 4000);
    return true;
}

// Every view that marks pinned nodes learns the new set; they never hold pins of their own.
void MainWindow::syncPins()
{
    QSet<QString> names;
    for (const auto& pin : m_circuit->pins())
        names.insert(QString::fromStdString(pin.node));
    m_grid->setPinnedNodes(names);
    m_table->setPinnedNodes(names);
    m_inspector->setPinned(m_inspector->hasView() && names.contains(m_inspector->view().name));
}

void MainWindow::onPinActivated(const QString& name)
{
    if (!m_lastRun)
        return;
    try {
        const NodeRef node = NodeRef::parse(name.toStdString()).resolved(static_cast<int>(m_lastRun->tokens.size()));
        clearError();
        selectNode(node);
    } catch (const std::exception& e) {
        showError(tr("Pinned node %1 is not in this prompt: %2").arg(name, QString::fromUtf8(e.what())));
    }
}

PresentView* MainWindow::presentView() const
{
    return m_present.data();
}

void MainWindow::present(int row)
{
    if (m_circuit->pins().empty()) {
        showError(tr("Present: pin some nodes first (P in the layer grid, a table row's context menu, or Pin in the inspector)."));
        return;
    }
    if (!m_lastRun) {
        showError(tr("Present: run a prompt first."));
        return;
    }
    if (!m_present) {
        // A window of its own (full screen), owned by this one so that it never outlives the engine.
        m_present = new PresentView(m_views, this);
        m_present->setWindowFlag(Qt::Window);
        m_present->setAttribute(Qt::WA_DeleteOnClose);
        connect(m_present, &PresentView::currentChanged, m_circuit, &CircuitPanel::setCurrentRow);
    }
    m_present->setPins(m_circuit->pins(), row);
    m_present->showFullScreen();
    // Without a window manager (a bare X server, some kiosks) nobody honours the full-screen request
    // and the window keeps its size hint: then cover the screen ourselves. Checked a moment later,
    // because a window manager applies the request asynchronously.
    QScreen* screen = windowHandle() ? windowHandle()->screen() : QGuiApplication::primaryScreen();
    QTimer::singleShot(250, m_present, [view = m_present, screen = QPointer<QScreen>(screen)] {
        if (view && screen && view->isVisible() && view->geometry() != screen->geometry())
            view->setGeometry(screen->geometry());
    });
    m_present->raise();
    m_present->activateWindow();
    m_present->setFocus();
}

void MainWindow::chooseCircuitExport(const QString& format)
{
    QString path = QFileDialog::getSaveFileName(this, tr("Export circuit"), QStringLiteral("circuit.") + format,
                                                format == u"pdf" ? tr("PDF (*.pdf)") : tr("CSV files (*.csv)"));
    if (path.isEmpty())
        return;
    if (!path.endsWith(u'.' + format, Qt::CaseInsensitive))
        path += u'.' + format;
    exportCircuit(path);
}

void MainWindow::exportCircuit(const QString& path)
{
    if (!m_lastRun) {
        showError(tr("Export circuit: run a prompt first."));
        return;
    }
    CircuitReport header;
    header.model = m_model ? m_model->name : QString();
    header.prompt = m_lastRun->prompt;
    if (m_lastRun->hasObjective)
        header.objective = m_lastRun->objectiveText;
    QString error;
    clearError();
    statusBar()->showMessage(tr("Exporting the circuit…"));
    if (!m_exporter->start(path, header, &error)) {
        statusBar()->clearMessage();
        showError(error);
    }
}

void MainWindow::buildStatusBar()
{
    m_modelLabel = new QLabel(tr("no model"));
    m_saeLabel = new QLabel;
    m_tokenCountLabel = new QLabel;
    m_timeLabel = new QLabel;
    // The objective line can be long (ablated, baseline, Δ, right prompt): it is elided by the status
    // bar rather than widening the window past the screen; the tooltip has all of it.
    m_timeLabel->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    m_progress = new QProgressBar;
    m_progress->setMaximumWidth(180);
    m_progress->hide();
    m_cancelButton = new QPushButton(tr("Cancel"));
    m_cancelButton->hide();
    connect(m_cancelButton, &QPushButton::clicked, this, [this] { m_engine->cancel(); });
    statusBar()->addWidget(m_modelLabel);
    statusBar()->addWidget(m_saeLabel);
    statusBar()->addWidget(m_tokenCountLabel);
    statusBar()->addWidget(m_timeLabel, 1);
    statusBar()->addPermanentWidget(m_progress);
    statusBar()->addPermanentWidget(m_cancelButton);
}

void MainWindow::connectEngine()
{
    Engine* e = m_engine->engine();
    // `this` as context: queued results for a window that is gone are dropped by Qt.
    connect(e, &Engine::modelOpened, this, &MainWindow::onModelOpened);
    // The latest run only (the client drops superseded ones), after the panels that follow the client.
    connect(m_engine, &EngineClient::runShown, this, &MainWindow::onRunFinished);
    connect(e, &Engine::nodeReady, this, &MainWindow::onNodeReady);
    connect(e, &Engine::failed, this, &MainWindow::onFailed);
    // After the window's own slots (queued in connection order), so the examples see the new state.
    connect(e, &Engine::modelOpened, m_examples, &ExamplesView::sourceChanged);
    connect(e, &Engine::saesChanged, m_examples, &ExamplesView::sourceChanged);
    connect(e, &Engine::progress, this, [this](int done, int total) {
        m_progress->setRange(0, total);
        m_progress->setValue(done);
    });
    // The progress bar says which stage the run is in; staged results fill the grid and the table in
    // before the autoencoders' latents are done (the rest of the window waits for the final result).
    connect(e, &Engine::stageChanged, this, [this](quint64 id, const QString& stage) {
        if (id == m_engine->latestRun())
            m_progress->setFormat(stage + QStringLiteral(" · %p%"));
    });
    connect(e, &Engine::runStaged, this, &MainWindow::onRunStaged);
    connect(e, &Engine::runCancelled, this, [this](quint64 id) {
        if (id != m_engine->latestRun())
            return; // superseded by a newer run, which is on its way
        setBusy(false);
        statusBar()->showMessage(tr("Run cancelled; the previous results are kept."), 5000);
    });
    connect(e, &Engine::saesChanged, this, [this](const QStringList& saes) {
        m_saeLabel->setText(saes.isEmpty() ? QString() : tr("· %n autoencoder(s)", nullptr, static_cast<int>(saes.size())));
        m_saeLabel->setToolTip(saes.join(u'\n'));
        if (!saes.isEmpty())
            clearError();
    });
}

QString MainWindow::errorText() const
{
    return m_error->isVisible() ? m_error->text() : QString();
}

void MainWindow::showError(const QString& message)
{
    m_error->setText(message);
    m_error->show();
    Q_EMIT errorShown(message);
}

void MainWindow::clearError()
{
    m_error->hide();
    m_error->clear();
}

void MainWindow::fillModelMenu()
{
    m_modelMenu->clear();
    m_modelMenu->addAction(tr("Open folder…"), this, &MainWindow::chooseModelFolder);
    m_modelMenu->addAction(tr("Corpus… (for the Examples tab)"), m_examples, &ExamplesView::chooseCorpus);
    if (const auto demo = findBundledDemoModel(QCoreApplication::applicationDirPath().toStdString())) {
        const QString path = QString::fromStdString(demo->string());
        m_modelMenu->addAction(tr("Bundled demo model"), this, [this, path] { openModel(path); });
    }
    const auto cached = findCachedGpt2Models();
    if (!cached.empty()) {
        m_modelMenu->addSection(tr("Hugging Face cache"));
        for (const auto& c : cached) {
            const QString path = QString::fromStdString(c.snapshot.string());
            m_modelMenu->addAction(QString::fromStdString(c.name), this, [this, path] { openModel(path); })->setToolTip(path);
        }
    }
    const QStringList recent = Settings::recentModels().items();
    if (!recent.isEmpty()) {
        m_modelMenu->addSection(tr("Recent"));
        for (const QString& path : recent)
            m_modelMenu->addAction(path, this, [this, path] { openModel(path); });
    }
}

void MainWindow::chooseModelFolder()
{
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Open a Hugging Face GPT-2 folder"));
    if (!dir.isEmpty())
        openModel(dir);
}

void MainWindow::chooseAutoencoder(SaeRole role)
{
    if (!m_model) {
        showError(tr("Open a model before its autoencoders."));
        return;
    }
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a %1 autoencoder").arg(roleName(role)), QString(),
                                                      tr("Autoencoders (*.pt cfg.json);;All files (*)"));
    if (path.isEmpty())
        return;
    bool ok = false;
    const int layer = QInputDialog::getInt(this, tr("Layer"), tr("Layer of this %1 autoencoder:").arg(roleName(role)), 0, 0,
                                           m_model->nLayer - 1, 1, &ok);
    if (!ok)
        return;
    // A SAELens cfg.json stands for its folder.
    const QString target = path.endsWith(QStringLiteral("cfg.json")) ? QFileInfo(path).absolutePath() : path;
    addAutoencoder(role, QString::number(layer) + u'=' + target);
}

void MainWindow::openModel(const QString& dir)
{
    m_pendingModelPath = dir;
    m_modelLabel->setText(tr("opening %1…").arg(QFileInfo(dir).fileName()));
    m_engine->openModel(dir);
}

void MainWindow::addAutoencoder(SaeRole role, const QString& spec)
{
    m_saeSpecs.push_back({role, spec});
    m_engine->addSae(role, spec);
}

namespace {

const char* const kTabNames[] = {"write", "read", "pairs", "activation"};

} // namespace

Session::Objective MainWindow::objectiveFromFields() const
{
    return m_objective->objective();
}

std::vector<std::string> MainWindow::ablationSpecs() const
{
    std::vector<std::string> out;
    for (const QString& a : m_ablations->ablations())
        out.push_back(a.toStdString());
    return out;
}

Session MainWindow::currentSession() const
{
    Session s;
    s.modelPath = m_model ? m_model->path.toStdString() : std::string();
    for (const auto& [role, spec] : m_saeSpecs)
        s.autoencoders.push_back({role, spec.toStdString()});
    s.prompt = m_prompt->text().toStdString();
    s.objective = objectiveFromFields();
    s.ablations = ablationSpecs();
    s.trace = m_trace;
    s.secondPrompt = m_second->secondPrompt();
    if (m_lastRun && m_grid->tokenOfInterest() != m_lastRun->tokens.size() - 1)
        s.tokenOfInterest = m_grid->tokenOfInterest();
    if (m_selected)
        s.selectedNode = m_selected->name();
    s.pins = m_circuit->pins();
    s.view.metric = gridMetric();
    s.view.topN = m_topN->value();
    s.view.tableTopK = m_tableTopK->value();
    s.view.perUnitWrite = m_inspector->perUnitWrite();
    s.view.gridDelta = m_deltaGrid->isChecked();
    s.view.inspectorTab = kTabNames[std::clamp(m_inspector->tabs()->currentIndex(), 0, 3)];
    return s;
}

bool MainWindow::saveSession(const QString& path)
{
    QString error;
    if (!m_sessions->save(path, &error)) {
        showError(error);
        return false;
    }
    statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
    return true;
}

void MainWindow::openSession(const QString& path, bool asTemplate)
{
    QString error;
    const std::optional<Session> s = m_sessions->open(path, asTemplate, &error);
    if (!s) {
        showError(error);
        return; // nothing changes
    }
    clearError();
    m_restoring = s;
    m_circuit->setPins(s->pins);
    connect(this, &MainWindow::modelReady, this, &MainWindow::continueRestore, Qt::SingleShotConnection);
    openModel(QString::fromStdString(s->modelPath));
}

// Restoring runs in steps, each when the engine has answered the previous one: model → autoencoders
// and run → token of interest, view and selected node.
void MainWindow::continueRestore()
{
    if (!m_restoring)
        return;
    const Session s = *m_restoring;
    m_saeSpecs.clear();
    for (const auto& a : s.autoencoders) {
        addAutoencoder(a.role, QString::fromStdString(a.spec));
    }
    m_prompt->setText(QString::fromStdString(s.prompt));
    m_objective->setObjective(s.objective);
    QStringList ablations;
    for (const auto& a : s.ablations)
        ablations << QString::fromStdString(a);
    m_ablations->setAblations(ablations);
    m_trace = s.trace;
    m_second->setSecondPrompt(s.secondPrompt);
    m_secondPromptAction->setEnabled(!s.secondPrompt);
    setGridMetric(s.view.metric);
    m_topN->setValue(s.view.topN);
    {
        // Part of the restore's one run, not a run of its own.
        const QSignalBlocker block(m_tableTopK);
        m_tableTopK->setValue(s.view.tableTopK);
    }
    m_inspector->setPerUnitWrite(s.view.perUnitWrite);
    m_deltaGrid->setChecked(s.view.gridDelta);
    for (int t = 0; t < 4; ++t) {
        if (s.view.inspectorTab == kTabNames[t])
            m_inspector->tabs()->setCurrentIndex(t);
    }
    m_selected.reset();
    if (s.selectedNode) {
        try {
            m_selected = NodeRef::parse(*s.selectedNode);
        } catch (const std::exception&) {
        }
    }
    connect(this, &MainWindow::runReady, this, [this] {
        if (!m_restoring)
            return;
        if (m_restoring->tokenOfInterest >= 0 && m_restoring->tokenOfInterest < m_lastRun->tokens.size()) {
            m_tokens->setTokenOfInterest(m_restoring->tokenOfInterest);
            m_grid->setTokenOfInterest(m_restoring->tokenOfInterest);
        }
        m_restoring.reset();
        Q_EMIT sessionRestored();
    }, Qt::SingleShotConnection);
    if (s.prompt.empty()) {
        m_restoring.reset();
        Q_EMIT sessionRestored();
        return;
    }
    run();
}

void MainWindow::chooseSessionToOpen()
{
    const QString path = QFileDialog::getOpenFileName(this, tr("Open session"), QString(), tr("Circuitscope sessions (*.circuitscope.json)"));
    if (!path.isEmpty())
        openSession(path);
}

void MainWindow::saveCurrentSession()
{
    if (m_sessions->path().isEmpty())
        chooseSessionToSave();
    else
        saveSession(m_sessions->path());
}

void MainWindow::fillRecentSessionsMenu()
{
    m_recentSessionsMenu->clear();
    const QStringList recent = Settings::recentSessions().items();
    for (const QString& path : recent)
        m_recentSessionsMenu->addAction(QFileInfo(path).fileName() + QStringLiteral("  —  ") + QFileInfo(path).absolutePath(),
                                        this, [this, path] { openSession(path); });
    if (recent.isEmpty())
        m_recentSessionsMenu->addAction(tr("(none yet)"))->setEnabled(false);
}

void MainWindow::chooseSessionToSave()
{
    QString path = QFileDialog::getSaveFileName(this, tr("Save session"), QStringLiteral("investigation.circuitscope.json"),
                                                tr("Circuitscope sessions (*.circuitscope.json)"));
    if (path.isEmpty())
        return;
    if (!path.endsWith(QStringLiteral(".circuitscope.json")))
        path += QStringLiteral(".circuitscope.json");
    saveSession(path);
}

void MainWindow::setPrompt(const QString& prompt, const QStringList& targets, const QStringList& distractors)
{
    const auto texts = [](const QStringList& tokens) {
        std::vector<std::string> out;
        for (const QString& t : tokens)
            out.push_back(t.toStdString());
        return out;
    };
    m_prompt->setText(prompt);
    m_target->setTokens(texts(targets));
    m_distractor->setTokens(texts(distractors));
}

void MainWindow::run()
{
    clearError();
    if (!m_model) {
        showError(tr("Open a model first (Open model ▾)."));
        return;
    }
    RunRequest r;
    r.prompt = m_prompt->text();
    r.objective = objectiveFromFields();
    r.ablations = ablationSpecs();
    r.trace = m_trace;
    r.secondPrompt = m_second->secondPrompt();
    r.tableTopK = m_tableTopK->value();
    r.gridTopN = kGridTopNComputed;
    setBusy(true);
    m_engine->run(r);
}

void MainWindow::setBusy(bool busy)
{
    m_progress->setVisible(busy);
    m_cancelButton->setVisible(busy);
    m_progress->setValue(0);
    m_progress->setFormat(QStringLiteral("%p%"));
}

// A staged result of the run in progress: the grid and the node table so far, the model's own nodes
// first and then the latents of more layers. The inspector, the other panels and the session wait for
// the final result (onRunFinished), which replaces all of this.
void MainWindow::onRunStaged(const RunResult& r)
{
    if (r.id != m_engine->latestRun() || !r.partial)
        return;
    m_grid->setSnapshot(r.grid);
    m_table->setEffectsAvailable(r.hasObjective);
    m_table->setComparison(Comparison::None);
    m_table->setRows(r.table);
    m_timeLabel->setText(tr("· %1 s: the model's nodes and the latents of %2 of %3 layers so far")
                             .arg(r.seconds, 0, 'f', 2)
                             .arg(r.latentLayersDone)
                             .arg(r.latentLayersTotal));
    Q_EMIT runStagedShown(r.latentLayersDone, r.latentLayersTotal);
}

void MainWindow::onModelOpened(const ModelSummary& s)
{
    clearError();
    m_saeSpecs.clear();
    m_model = s;
    m_lastRun.reset();
    m_selected.reset();
    m_views->clear(); // views of the old model
    m_modelLabel->setText(tr("%1 · %2 layers × %3 heads · d %4").arg(s.name).arg(s.nLayer).arg(s.nHead).arg(s.dModel));
    m_modelLabel->setToolTip(s.path);
    m_tokens->setTokens({});
    m_grid->setSnapshot({});
    m_table->setRows({});
    m_inspector->clear(tr("Run a prompt, then click a node."));
    if (!s.warnings.isEmpty())
        statusBar()->showMessage(s.warnings.join(QStringLiteral("; ")), 8000);
    Settings::recentModels().remember(s.path);
    Q_EMIT modelReady();
}

void MainWindow::onRunFinished(const RunResult& r)
{
    setBusy(false);
    clearError();
    m_lastRun = r;
    m_views->clear(); // the engine's record changed: every view of a pin is stale
    m_tokens->setTokens(r.tokens);
    m_deltaGrid->setEnabled(r.comparison != Comparison::None);
    showGrid();
    const int interest = tracedTokenOfInterest(int(r.tokens.size()));
    m_grid->setTokenOfInterest(interest);
    m_tokens->setTokenOfInterest(interest);
    updateMetricChooser();
    m_table->setEffectsAvailable(r.hasObjective);
    m_table->setComparison(r.comparison);
    m_table->setProvenance(m_model ? m_model->name : QString(), r.prompt);
    m_table->setRows(r.table);
    m_actions->setTokenCount(int(r.tokens.size()));
    fitGridPanel();
    m_tokenCountLabel->setText(tr("· %n token(s)", nullptr, static_cast<int>(r.tokens.size())));
    QString timing = tr("· computed in %1 s").arg(r.seconds, 0, 'f', 2);
    if (r.hasObjective) {
        timing += tr(" · %1 = %2").arg(r.objectiveText).arg(r.objective, 0, 'g', 6);
        if (r.baselineObjective)
            timing += tr(" (ablated; baseline %1, Δ %2)").arg(*r.baselineObjective, 0, 'g', 6).arg(r.objective - *r.baselineObjective, 0, 'g', 6);
    }
    if (r.right && r.right->hasObjective)
        timing += tr(" · right: %1 (Δ %2)").arg(r.right->objective, 0, 'g', 6).arg(r.right->objective - r.objective, 0, 'g', 6);
    if (!r.nextTokens.isEmpty())
        timing += tr(" · next: %1 (p = %2)").arg(r.nextTokens.first().token).arg(r.nextTokens.first().value, 0, 'g', 3);
    m_timeLabel->setText(timing);
    m_timeLabel->setToolTip(timing);
    if (!r.warnings.isEmpty())
        statusBar()->showMessage(r.warnings.join(QStringLiteral("; ")), 8000);
    // Keep the selected node if it still exists in this prompt.
    // Keep the selected node if it still exists in this prompt; otherwise show the table's first node
    // so the inspector is never empty after a run.
    std::optional<NodeRef> keep;
    if (m_selected) {
        try {
            keep = m_selected->resolved(static_cast<int>(r.tokens.size()));
        } catch (const std::exception&) {
        }
    }
    if (keep)
        selectNode(*keep);
    else if (!r.table.isEmpty())
        selectNode(r.table.first().node);
    else
        m_inspector->clear(tr("Click a node in the grid or the table."));
    const auto list = [](const std::vector<std::string>& tokens) {
        QStringList out;
        for (const auto& t : tokens)
            out << QString::fromStdString(t);
        return out;
    };
    Settings::setLastPrompt({r.prompt, list(m_target->tokens()), list(m_distractor->tokens())});
    Q_EMIT runReady();
}

// Where a trace's upstream nodes have effects: a neuron's or latent's token, a head's query token
// (through Q or Q·K) or key token (through K or V); without a trace, the last token.
int MainWindow::tracedTokenOfInterest(int tokenCount) const
{
    if (!m_trace)
        return tokenCount - 1;
    try {
        const NodeRef node = NodeRef::parse(m_trace->node).resolved(tokenCount);
        const bool atKey = node.kind == NodeKind::AttnHead && (m_trace->through == "k" || m_trace->through == "v");
        return atKey ? node.keyToken : node.token;
    } catch (const std::exception&) {
        return tokenCount - 1; // the run has refused such a trace already
    }
}

// The run's own values (normalized by the Examples tab's maxima when that is on), or their Δ.
void MainWindow::showGrid()
{
    if (!m_lastRun)
        return;
    m_grid->setSnapshot(isGridDelta() ? m_lastRun->deltaGrid : m_examples->shownGrid(m_lastRun->grid));
}

bool MainWindow::isGridDelta() const
{
    return m_deltaGrid->isEnabled() && m_deltaGrid->isChecked() && m_lastRun && m_lastRun->deltaGrid.nLayers > 0;
}

void MainWindow::updateMetricChooser()
{
    const bool effects = m_lastRun && m_lastRun->hasObjective;
    for (int i = 0; i < m_metric->count(); ++i) {
        const bool needsTarget = metricNeedsObjective(m_metric->itemData(i).value<Metric>());
        // Without a target the effect metrics are hidden, not shown as zeros (product.md §3).
        m_metric->setItemData(i, needsTarget && !effects ? QVariant(0) : QVariant(), Qt::UserRole - 1);
    }
    if (!effects && metricNeedsObjective(gridMetric()))
        setGridMetric(Metric::Activation);
    m_grid->setMetric(gridMetric());
}

Metric MainWindow::gridMetric() const
{
    return m_metric->currentData().value<Metric>();
}

void MainWindow::setGridMetric(Metric metric)
{
    for (int i = 0; i < m_metric->count(); ++i) {
        if (m_metric->itemData(i).value<Metric>() == metric)
            m_metric->setCurrentIndex(i);
    }
}

void MainWindow::selectNode(const NodeRef& node)
{
    if (!m_lastRun)
        return;
    if (m_pickingDownstreamFor) {
        const NodeRef head = *std::exchange(m_pickingDownstreamFor, std::nullopt);
        traceOnto(head, node, m_traceBar->downstreamThrough());
        return;
    }
    m_selected = node;
    m_grid->setSelectedNode(node);
    m_table->selectNode(node);
    m_circuit->setCurrentRow(m_circuit->model()->indexOf(QString::fromStdString(node.name())));
    m_latestInspect = m_engine->inspect(node);
}

void MainWindow::onNodeReady(const NodeView& view)
{
    m_views->insert(view); // computed from the current record: present mode and exports reuse it
    if (view.requestId != m_latestInspect)
        return; // an older click; a newer answer is coming
    m_inspector->setView(view);
    m_inspector->setPinned(m_circuit->isPinned(view.name));
    m_tokens->setActivations(m_examples->shownActivations(view.node, view.activationByToken));
    m_examples->setNode(view.node);
    Q_EMIT nodeShown();
}

void MainWindow::onFailed(EngineJob job, const QString& message)
{
    switch (job) {
    case EngineJob::OpenAutoencoder:
        if (!m_saeSpecs.isEmpty())
            m_saeSpecs.removeLast(); // it was not added
        break;
    case EngineJob::Run:
        m_restoring.reset();
        setBusy(false);
        break;
    case EngineJob::OpenModel:
        m_modelLabel->setText(m_model ? tr("%1 · %2 layers × %3 heads · d %4").arg(m_model->name).arg(m_model->nLayer).arg(m_model->nHead).arg(m_model->dModel)
                                      : tr("no model"));
        break;
    case EngineJob::Inspect: break;
    }
    showError(tr("Could not %1: %2").arg(engineJobText(job), message));
}

void MainWindow::onTokenOfInterest(int token)
{
    m_grid->setTokenOfInterest(token);
}

void MainWindow::onGoTo()
{
    const auto node = parseGoToNode(m_goTo->text(), m_grid->tokenOfInterest(), &m_grid->snapshot(), m_grid->metric());
    if (!node) {
        showError(tr("Go to node: '%1' is not a node name (try mlp 5 123, attn 3 7, L5/N123 or mlp:5:123@7).").arg(m_goTo->text()));
        return;
    }
    clearError();
    selectNode(*node);
}

void MainWindow::buildInterventionDocks()
{
    m_ablations = new AblationsPanel;
    connect(m_ablations, &AblationsPanel::ablationsEdited, this, [this] { rerun(); });
    auto* ablationsDock = new QDockWidget(tr("Ablations"), this);
    ablationsDock->setObjectName(QStringLiteral("ablationsDock"));
    ablationsDock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
    ablationsDock->setWidget(m_ablations);
    auto* circuitDock = findChild<QDockWidget*>(QStringLiteral("circuitDock"));
    addDockWidget(Qt::RightDockWidgetArea, ablationsDock);
    splitDockWidget(circuitDock, ablationsDock, Qt::Vertical);
    resizeDocks({circuitDock, ablationsDock}, {600, 240}, Qt::Vertical);
    // Empty, the list would only take the pins' room: the dock shows while there are ablations.
    const auto showWhenUsed = [this, ablationsDock, circuitDock] {
        const bool show = m_ablations->model()->rowCount() > 0, wasHidden = ablationsDock->isHidden();
        ablationsDock->setVisible(show);
        // Alone on the right, the short list of node names and values needs less room than the pins'
        // notes: the grid keeps the rest (at 1280 × 800 the Circuit dock's width hid the neuron columns).
        if (show && wasHidden && circuitDock->isHidden())
            resizeDocks({ablationsDock}, {kAblationsDockWidth}, Qt::Horizontal);
    };
    connect(m_ablations->model(), &QAbstractItemModel::modelReset, ablationsDock, showWhenUsed);
    connect(m_ablations->model(), &QAbstractItemModel::rowsInserted, ablationsDock, showWhenUsed);
    connect(m_ablations->model(), &QAbstractItemModel::rowsRemoved, ablationsDock, showWhenUsed);
    showWhenUsed();
}

// The grid panel gets the height its grid draws (controls, rows, legend, the horizontal scroll bar when
// the groups are wider than the panel), at most 60 % of the column; the node table under it the rest.
// Refitted only when that height changes (another model, a trace bar), so a dragged splitter stays.
void MainWindow::fitGridPanel()
{
    // The scroll area's own size hint keeps the grid's first one (Qt caches it): the grid's current
    // height replaces it.
    int wanted = m_gridPanel->sizeHint().height() - m_gridScroll->sizeHint().height() + m_grid->sizeHint().height() +
                 2 * m_gridScroll->frameWidth();
    if (m_grid->sizeHint().width() > m_gridScroll->viewport()->width())
        wanted += m_gridScroll->horizontalScrollBar()->sizeHint().height();
    if (wanted == m_fittedGridHeight)
        return;
    m_fittedGridHeight = wanted;
    const QList<int> sizes = m_leftColumn->sizes();
    const int total = sizes.value(0) + sizes.value(1);
    if (total <= 0)
        return;
    const int grid = std::min(wanted, total * 6 / 10);
    m_leftColumn->setSizes({grid, total - grid});
}

void MainWindow::rerun()
{
    if (m_model && m_lastRun)
        run();
}

void MainWindow::setAblations(const QStringList& specs)
{
    m_ablations->setAblations(specs);
    rerun();
}

QStringList MainWindow::ablations() const
{
    return m_ablations->ablations();
}

void MainWindow::ablate(const QString& name, double value)
{
    QStringList specs = m_ablations->ablations();
    const QString spec = AblationListModel::spec({name, value});
    const int row = m_ablations->model()->rowOfNode(name);
    if (row >= 0)
        specs[row] = spec;
    else
        specs << spec;
    statusBar()->showMessage(tr("Ablated %1").arg(spec), 4000);
    setAblations(specs);
}

void MainWindow::removeAblation(const QString& name)
{
    const int row = m_ablations->model()->rowOfNode(name);
    if (row < 0)
        return;
    QStringList specs = m_ablations->ablations();
    specs.removeAt(row);
    setAblations(specs);
}

void MainWindow::trace(const NodeRef& node, const QString& through)
{
    m_pickingDownstreamFor.reset();
    Session::Trace t;
    t.node = m_lastRun ? portableNodeName(node, int(m_lastRun->tokens.size())) : node.name();
    t.through = through.toStdString();
    m_trace = t;
    m_traceBar->setTrace(m_trace, m_lastRun ? m_lastRun->tokens : QStringList()); // no longer picking
    rerun();
}

void MainWindow::traceOnto(const NodeRef& head, const NodeRef& downstream, const QString& downstreamThrough)
{
    m_pickingDownstreamFor.reset();
    const int n = m_lastRun ? int(m_lastRun->tokens.size()) : 0;
    Session::Trace t;
    t.node = n ? portableNodeName(head, n) : head.name();
    t.through = "v";
    t.downstream = n ? portableNodeName(downstream, n) : downstream.name();
    // Only a head is traced through q, k or qk; for a neuron or a latent the choice does not apply.
    if (downstream.kind == NodeKind::AttnHead)
        t.downstreamThrough = downstreamThrough.toStdString();
    m_trace = t;
    m_traceBar->setTrace(m_trace, m_lastRun ? m_lastRun->tokens : QStringList()); // no longer picking
    rerun();
}

void MainWindow::pickDownstreamFor(const NodeRef& head)
{
    m_pickingDownstreamFor = head;
    m_traceBar->setPickingDownstream(head, m_lastRun ? m_lastRun->tokens : QStringList());
    statusBar()->showMessage(tr("Click the downstream node of the value trace (Cancel in the trace bar: no trace)"), 6000);
}

void MainWindow::clearTrace()
{
    if (m_pickingDownstreamFor) {
        // Cancel while picking a downstream node: the trace already in place (if any) stays.
        m_pickingDownstreamFor.reset();
        m_traceBar->setTrace(m_trace, m_lastRun ? m_lastRun->tokens : QStringList());
        return;
    }
    m_trace.reset();
    m_traceBar->setTrace(std::nullopt, {});
    rerun();
}

void MainWindow::addSecondPrompt()
{
    Session::SecondPrompt second;
    second.prompt = m_prompt->text().toStdString();
    const Session::Objective o = objectiveFromFields();
    second.targets = o.targets;
    second.distractors = o.distractors;
    m_second->setSecondPrompt(second);
    m_secondPromptAction->setEnabled(false);
    m_second->promptField()->setFocus();
    rerun();
}

void MainWindow::removeSecondPrompt()
{
    m_second->setSecondPrompt(std::nullopt);
    m_secondPromptAction->setEnabled(true);
    rerun();
}

QString MainWindow::statusText() const
{
    return m_timeLabel->text();
}

void MainWindow::closeEvent(QCloseEvent* event)
{
    Settings::setWindow(saveGeometry(), saveState());
    m_engine->cancel();
    m_sessions->removeAutosave(); // a clean exit: nothing to recover
    QMainWindow::closeEvent(event);
}

} // namespace cs::ui
