#include "ui/widgets/main_window.h"

#include "core/model/demo_model.h"
#include "core/model/hf_cache.h"
#include "ui/charts/chart_widget.h"
#include "ui/charts/circuit_report.h"
#include "ui/engine/view_cache.h"
#include "ui/widgets/circuit_panel.h"
#include "ui/widgets/examples_view.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/node_inspector.h"
#include "ui/widgets/node_table_view.h"
#include "ui/widgets/present_view.h"
#include "ui/widgets/token_strip.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
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
#include <QScreen>
#include <QSettings>
#include <QWindow>
#include <QSpinBox>
#include <QUrl>
#include <QSplitter>
#include <QStatusBar>
#include <QToolBar>
#include <QToolButton>
#include <QVBoxLayout>

#include <utility>

namespace cs::ui {

namespace {

constexpr int kMaxRecent = 8;
constexpr int kGridTopNComputed = 32; // the engine ships this many per layer; the spin box shows fewer

QString roleName(int role)
{
    return role == 0 ? QObject::tr("MLP") : role == 1 ? QObject::tr("attention") : QObject::tr("residual");
}

} // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), m_engine(new EngineThread(this))
{
    setWindowTitle(tr("Circuitscope"));
    m_views = new NodeViewCache(m_engine, this);
    buildToolbar();
    buildCentral();
    buildCircuitDock();
    buildStatusBar();
    connectEngine();

    QSettings settings;
    restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
    m_prompt->setText(settings.value(QStringLiteral("prompt/text")).toString());
    m_target->setText(settings.value(QStringLiteral("prompt/target")).toString());
    m_distractor->setText(settings.value(QStringLiteral("prompt/distractor")).toString());

    auto* autosave = new QTimer(this);
    autosave->setInterval(20000);
    connect(autosave, &QTimer::timeout, this, &MainWindow::autosaveNow);
    autosave->start();
}

QString MainWindow::autosavePath()
{
    return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/autosave.circuitscope.json");
}

bool MainWindow::autosaveNow()
{
    if (!m_model || !m_lastRun)
        return false;
    const Session s = currentSession();
    const std::string text = sessionToJson(s).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text == m_lastAutosaved)
        return true;
    try {
        QDir().mkpath(QFileInfo(autosavePath()).absolutePath());
        cs::saveSession(autosavePath().toStdString(), s);
        m_lastAutosaved = text;
        return true;
    } catch (const std::exception&) {
        return false; // autosave is best effort; the user's own saves report errors
    }
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
    for (int role = 0; role < 3; ++role)
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
    m_prompt->setMinimumWidth(380);
    connect(m_prompt, &QLineEdit::returnPressed, this, &MainWindow::run);
    bar->addWidget(m_prompt);

    auto tokenField = [this](const QString& placeholder, const QString& tip) {
        auto* f = new QLineEdit;
        f->setPlaceholderText(placeholder);
        f->setToolTip(tip);
        f->setMaximumWidth(130);
        connect(f, &QLineEdit::returnPressed, this, &MainWindow::run);
        return f;
    };
    bar->addWidget(new QLabel(tr("  target ")));
    m_target = tokenField(tr("e.g. ␣Mary"), tr("A single token; its logit (minus the distractor's) is the objective.\nType the leading space: \" Mary\"."));
    bar->addWidget(m_target);
    bar->addWidget(new QLabel(tr("  distractor ")));
    m_distractor = tokenField(tr("optional"), tr("A single token whose logit is subtracted from the target's."));
    bar->addWidget(m_distractor);

    m_runButton = new QPushButton(tr("Run"));
    m_runButton->setDefault(true);
    connect(m_runButton, &QPushButton::clicked, this, &MainWindow::run);
    bar->addWidget(m_runButton);
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

    m_tokens = new TokenStrip;
    connect(m_tokens, &TokenStrip::tokenClicked, this, &MainWindow::onTokenOfInterest);
    layout->addWidget(m_tokens);

    // Grid panel: controls above the grid.
    auto* gridPanel = new QWidget;
    auto* gridLayout = new QVBoxLayout(gridPanel);
    gridLayout->setContentsMargins(0, 0, 0, 0);
    auto* controls = new QHBoxLayout;
    m_metric = new QComboBox;
    for (int m = 0; m < kGridMetricCount; ++m)
        m_metric->addItem(gridMetricName(static_cast<GridMetric>(m)), m);
    m_metric->setToolTip(tr("Cell color. Direct and total effects need a target token."));
    connect(m_metric, &QComboBox::currentIndexChanged, this, [this] {
        m_grid->setMetric(static_cast<GridMetric>(m_metric->currentData().toInt()));
    });
    m_topN = new QSpinBox;
    m_topN->setRange(1, kGridTopNComputed);
    m_topN->setValue(16);
    m_topN->setPrefix(tr("top "));
    m_topN->setToolTip(tr("Neurons and latents shown per layer, by |metric| at the token of interest"));
    connect(m_topN, &QSpinBox::valueChanged, this, [this](int n) { m_grid->setTopN(n); });
    m_goTo = new QLineEdit;
    m_goTo->setPlaceholderText(tr("Go to node: mlp 5 123, attn 3 7, L5/N123, attn_sae:1:42@-1"));
    connect(m_goTo, &QLineEdit::returnPressed, this, &MainWindow::onGoTo);
    controls->addWidget(new QLabel(tr("Metric")));
    controls->addWidget(m_metric);
    controls->addWidget(m_topN);
    controls->addWidget(m_goTo, 1);
    gridLayout->addLayout(controls);
    m_grid = new LayerGrid;
    connect(m_grid, &LayerGrid::nodeClicked, this, &MainWindow::selectNode);
    connect(m_grid, &LayerGrid::pinToggleRequested, this, &MainWindow::togglePin);
    auto* scroll = new QScrollArea;
    scroll->setWidget(m_grid);
    scroll->setWidgetResizable(true);
    gridLayout->addWidget(scroll, 1);

    m_inspector = new NodeInspector;
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
        if (m_lastRun)
            m_grid->setSnapshot(m_examples->shownGrid(m_lastRun->grid));
        if (m_inspector->hasView())
            m_tokens->setActivations(m_examples->shownActivations(m_inspector->view().node, m_inspector->view().activationByToken));
    });
    auto* top = new QSplitter(Qt::Horizontal);
    top->setObjectName(QStringLiteral("topSplitter"));
    top->addWidget(gridPanel);
    top->addWidget(m_inspector);
    top->setStretchFactor(0, 1);
    top->setStretchFactor(1, 1);
    top->setSizes({800, 800});

    m_table = new NodeTableView;
    connect(m_table, &NodeTableView::nodeActivated, this, &MainWindow::selectNode);
    connect(m_table, &NodeTableView::pinToggleRequested, this, &MainWindow::togglePin);
    auto* vertical = new QSplitter(Qt::Vertical);
    vertical->setObjectName(QStringLiteral("mainSplitter"));
    vertical->addWidget(top);
    vertical->addWidget(m_table);
    vertical->setStretchFactor(0, 3);
    vertical->setStretchFactor(1, 2);
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
    resizeDocks({dock}, {340}, Qt::Horizontal);

    connect(m_circuit, &CircuitPanel::pinsChanged, this, &MainWindow::syncPins);
    connect(m_circuit, &CircuitPanel::nodeActivated, this, &MainWindow::onPinActivated);
    connect(m_circuit, &CircuitPanel::presentRequested, this, &MainWindow::present);
    connect(m_circuit, &CircuitPanel::exportRequested, this, &MainWindow::chooseCircuitExport);
    // An export waits for the views of every pin; a new run while it waits asks for them again.
    connect(m_views, &NodeViewCache::ready, this, &MainWindow::continueCircuitExport);
    connect(m_views, &NodeViewCache::cleared, this, &MainWindow::continueCircuitExport);
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
    const QString suffix = QFileInfo(path).suffix().toLower();
    if (suffix != u"csv" && suffix != u"pdf") {
        showError(tr("Export circuit: use a .csv or .pdf file name, not “%1”.").arg(path));
        return;
    }
    if (m_circuit->pins().empty()) {
        showError(tr("Export circuit: nothing is pinned yet."));
        return;
    }
    if (!m_lastRun) {
        showError(tr("Export circuit: run a prompt first."));
        return;
    }
    clearError();
    m_pendingCircuitExport = path;
    statusBar()->showMessage(tr("Exporting the circuit…"));
    continueCircuitExport();
}

// Runs whenever a view arrives while an export waits: asks for what is missing, and writes the file
// once every pin has its view (or the engine's reason why not).
void MainWindow::continueCircuitExport()
{
    if (m_pendingCircuitExport.isEmpty())
        return;
    QStringList missing;
    for (const auto& pin : m_circuit->pins()) {
        const QString name = QString::fromStdString(pin.node);
        if (!m_views->isReady(name) && !m_views->isWanted(name))
            missing << name;
    }
    if (!missing.isEmpty())
        m_views->want(missing);
    for (const auto& pin : m_circuit->pins()) {
        if (!m_views->isReady(QString::fromStdString(pin.node)))
            return; // more to come
    }
    const QString path = std::exchange(m_pendingCircuitExport, QString());
    CircuitReport report;
    report.model = m_model ? m_model->name : QString();
    if (m_lastRun) {
        report.prompt = m_lastRun->prompt;
        if (m_lastRun->hasObjective)
            report.objective = m_lastRun->objectiveText;
    }
    for (const auto& pin : m_circuit->pins()) {
        CircuitPage page;
        page.node = QString::fromStdString(pin.node);
        page.note = QString::fromStdString(pin.note);
        if (const NodeView* v = m_views->view(page.node))
            page.view = *v;
        else
            page.error = m_views->error(page.node);
        report.pages.push_back(page);
    }
    QString error;
    if (!writeCircuit(report, path, &error)) {
        statusBar()->clearMessage();
        showError(tr("Export circuit: %1").arg(error));
        return;
    }
    statusBar()->showMessage(tr("Exported the circuit (%n pin(s)) to %1", nullptr, static_cast<int>(report.pages.size())).arg(path), 6000);
    Q_EMIT circuitExported(path);
}

void MainWindow::buildStatusBar()
{
    m_modelLabel = new QLabel(tr("no model"));
    m_saeLabel = new QLabel;
    m_tokenCountLabel = new QLabel;
    m_timeLabel = new QLabel;
    m_progress = new QProgressBar;
    m_progress->setMaximumWidth(180);
    m_progress->hide();
    m_cancelButton = new QPushButton(tr("Cancel"));
    m_cancelButton->hide();
    connect(m_cancelButton, &QPushButton::clicked, this, [this] { m_engine->cancel(); });
    statusBar()->addWidget(m_modelLabel);
    statusBar()->addWidget(m_saeLabel);
    statusBar()->addWidget(m_tokenCountLabel);
    statusBar()->addWidget(m_timeLabel);
    statusBar()->addPermanentWidget(m_progress);
    statusBar()->addPermanentWidget(m_cancelButton);
}

void MainWindow::connectEngine()
{
    Engine* e = m_engine->engine();
    // `this` as context: queued results for a window that is gone are dropped by Qt.
    connect(e, &Engine::modelOpened, this, &MainWindow::onModelOpened);
    connect(e, &Engine::runFinished, this, &MainWindow::onRunFinished);
    connect(e, &Engine::nodeReady, this, &MainWindow::onNodeReady);
    connect(e, &Engine::failed, this, &MainWindow::onFailed);
    // After the window's own slots (queued in connection order), so the examples see the new state.
    connect(e, &Engine::modelOpened, m_examples, &ExamplesView::sourceChanged);
    connect(e, &Engine::saesChanged, m_examples, &ExamplesView::sourceChanged);
    connect(e, &Engine::progress, this, [this](int done, int total) {
        m_progress->setRange(0, total);
        m_progress->setValue(done);
    });
    connect(e, &Engine::runCancelled, this, [this] {
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
    const QStringList recent = QSettings().value(QStringLiteral("models/recent")).toStringList();
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

void MainWindow::chooseAutoencoder(int role)
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

void MainWindow::addAutoencoder(int role, const QString& spec)
{
    m_saeSpecs.push_back({role, spec});
    m_engine->addSae(role, spec);
}

namespace {

const char* const kRoleNames[] = {"mlp", "attn", "resid"};
const char* const kMetricNames[] = {"activation", "write_magnitude", "direct_effect", "total_effect"};
const char* const kTabNames[] = {"write", "read", "pairs", "activation"};

} // namespace

Session::Objective MainWindow::objectiveFromFields() const
{
    // The fields hold the first target and distractor; the rest come from the restored session.
    Session::Objective o = m_interventions.objective;
    const auto replaceFirst = [](std::vector<std::string>& list, const QString& text) {
        if (text.isEmpty()) {
            list.clear();
            return;
        }
        if (list.empty())
            list.push_back(text.toStdString());
        else
            list.front() = text.toStdString();
    };
    replaceFirst(o.targets, m_target->text());
    replaceFirst(o.distractors, m_distractor->text());
    return o;
}

Session MainWindow::currentSession() const
{
    Session s;
    s.modelPath = m_model ? m_model->path.toStdString() : std::string();
    for (const auto& [role, spec] : m_saeSpecs)
        s.autoencoders.push_back({kRoleNames[role], spec.toStdString()});
    s.prompt = m_prompt->text().toStdString();
    s.objective = objectiveFromFields();
    s.ablations = m_interventions.ablations;
    s.trace = m_interventions.trace;
    s.secondPrompt = m_interventions.secondPrompt;
    if (m_lastRun && m_grid->tokenOfInterest() != m_lastRun->tokens.size() - 1)
        s.tokenOfInterest = m_grid->tokenOfInterest();
    if (m_selected)
        s.selectedNode = m_selected->name();
    s.pins = m_circuit->pins();
    s.view.metric = kMetricNames[std::clamp(m_metric->currentIndex(), 0, 3)];
    s.view.topN = m_topN->value();
    s.view.perUnitWrite = m_inspector->perUnitWrite();
    s.view.inspectorTab = kTabNames[std::clamp(m_inspector->tabs()->currentIndex(), 0, 3)];
    return s;
}

bool MainWindow::saveSession(const QString& path)
{
    try {
        cs::saveSession(path.toStdString(), currentSession());
        statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
        m_sessionPath = QFileInfo(path).absoluteFilePath();
        rememberRecentSession(m_sessionPath);
        return true;
    } catch (const std::exception& e) {
        showError(QString::fromUtf8(e.what()));
        return false;
    }
}

void MainWindow::openSession(const QString& path, bool asTemplate)
{
    Session s;
    try {
        s = loadSession(path.toStdString());
    } catch (const std::exception& e) {
        showError(tr("Could not open session: %1").arg(QString::fromUtf8(e.what())));
        return; // nothing changes
    }
    QString model = QString::fromStdString(s.modelPath);
    if (!QFileInfo::exists(model + QStringLiteral("/config.json"))) {
        // A folder the user already pointed to for this missing path is used again without asking.
        // QSettings keys cannot hold '/' as data, so the missing path is percent-encoded.
        const QString key = QStringLiteral("sessions/relocated/") + QString::fromLatin1(QUrl::toPercentEncoding(model));
        QString relocated = QSettings().value(key).toString();
        if (relocated.isEmpty() || !QFileInfo::exists(relocated + QStringLiteral("/config.json")))
            relocated = m_modelLocator ? m_modelLocator(model)
                                       : QFileDialog::getExistingDirectory(this, tr("The session's model %1 is missing: where is it now?").arg(model));
        if (relocated.isEmpty()) {
            showError(tr("Session not opened: its model folder %1 is missing.").arg(model));
            return;
        }
        QSettings().setValue(key, relocated);
        model = relocated;
        s.modelPath = relocated.toStdString();
    }
    clearError();
    m_sessionPath = asTemplate ? QString() : QFileInfo(path).absoluteFilePath();
    if (!asTemplate)
        rememberRecentSession(m_sessionPath);
    m_restoring = s;
    m_circuit->setPins(s.pins);
    connect(this, &MainWindow::modelReady, this, &MainWindow::continueRestore, Qt::SingleShotConnection);
    openModel(model);
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
        const int role = a.role == "mlp" ? 0 : a.role == "attn" ? 1 : 2;
        addAutoencoder(role, QString::fromStdString(a.spec));
    }
    m_interventions = s;
    setPrompt(QString::fromStdString(s.prompt),
              s.objective.targets.empty() ? QString() : QString::fromStdString(s.objective.targets.front()),
              s.objective.distractors.empty() ? QString() : QString::fromStdString(s.objective.distractors.front()));
    for (int m = 0; m < 4; ++m) {
        if (s.view.metric == kMetricNames[m])
            m_metric->setCurrentIndex(m);
    }
    m_topN->setValue(s.view.topN);
    m_inspector->setPerUnitWrite(s.view.perUnitWrite);
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
    if (m_sessionPath.isEmpty())
        chooseSessionToSave();
    else
        saveSession(m_sessionPath);
}

QStringList MainWindow::recentSessions()
{
    return QSettings().value(QStringLiteral("sessions/recent")).toStringList();
}

void MainWindow::rememberRecentSession(const QString& path)
{
    QStringList recent = recentSessions();
    recent.removeAll(path);
    recent.prepend(path);
    while (recent.size() > kMaxRecent)
        recent.removeLast();
    QSettings().setValue(QStringLiteral("sessions/recent"), recent);
}

void MainWindow::fillRecentSessionsMenu()
{
    m_recentSessionsMenu->clear();
    const QStringList recent = recentSessions();
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

void MainWindow::setPrompt(const QString& prompt, const QString& target, const QString& distractor)
{
    m_prompt->setText(prompt);
    m_target->setText(target);
    m_distractor->setText(distractor);
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
    r.ablations = m_interventions.ablations;
    r.trace = m_interventions.trace;
    r.secondPrompt = m_interventions.secondPrompt;
    r.gridTopN = kGridTopNComputed;
    setBusy(true);
    m_engine->run(r);
}

void MainWindow::setBusy(bool busy)
{
    m_progress->setVisible(busy);
    m_cancelButton->setVisible(busy);
    m_progress->setValue(0);
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
    rememberRecentModel(s.path);
    Q_EMIT modelReady();
}

void MainWindow::rememberRecentModel(const QString& dir)
{
    QSettings settings;
    QStringList recent = settings.value(QStringLiteral("models/recent")).toStringList();
    recent.removeAll(dir);
    recent.prepend(dir);
    while (recent.size() > kMaxRecent)
        recent.removeLast();
    settings.setValue(QStringLiteral("models/recent"), recent);
}

void MainWindow::onRunFinished(const RunResult& r)
{
    setBusy(false);
    clearError();
    m_lastRun = r;
    m_views->clear(); // the engine's record changed: every view of a pin is stale
    m_tokens->setTokens(r.tokens);
    m_grid->setSnapshot(m_examples->shownGrid(r.grid));
    m_grid->setTokenOfInterest(static_cast<int>(r.tokens.size()) - 1);
    updateMetricChooser();
    m_table->setEffectsAvailable(r.hasObjective);
    m_table->setProvenance(m_model ? m_model->name : QString(), r.prompt);
    m_table->setRows(r.table);
    m_tokenCountLabel->setText(tr("· %n token(s)", nullptr, static_cast<int>(r.tokens.size())));
    QString timing = tr("· computed in %1 s").arg(r.seconds, 0, 'f', 2);
    if (r.hasObjective)
        timing += tr(" · %1 = %2").arg(r.objectiveText).arg(r.objective, 0, 'g', 4);
    if (!r.nextTokens.isEmpty())
        timing += tr(" · next: %1 (p = %2)").arg(r.nextTokens.first().token).arg(r.nextTokens.first().value, 0, 'g', 3);
    m_timeLabel->setText(timing);
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
    QSettings settings;
    settings.setValue(QStringLiteral("prompt/text"), r.prompt);
    settings.setValue(QStringLiteral("prompt/target"), m_target->text());
    settings.setValue(QStringLiteral("prompt/distractor"), m_distractor->text());
    Q_EMIT runReady();
}

void MainWindow::updateMetricChooser()
{
    const bool effects = m_lastRun && m_lastRun->hasObjective;
    for (int m = 0; m < kGridMetricCount; ++m) {
        const bool needsTarget = m >= int(GridMetric::DirectEffect);
        // Without a target the effect metrics are hidden, not shown as zeros (product.md §3).
        m_metric->setItemData(m, needsTarget && !effects ? QVariant(0) : QVariant(), Qt::UserRole - 1);
    }
    if (!effects && m_metric->currentIndex() >= int(GridMetric::DirectEffect))
        m_metric->setCurrentIndex(int(GridMetric::Activation));
    m_grid->setMetric(static_cast<GridMetric>(m_metric->currentData().toInt()));
}

void MainWindow::selectNode(const NodeRef& node)
{
    if (!m_lastRun)
        return;
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

void MainWindow::onFailed(const QString& what, const QString& message)
{
    if (what == u"open autoencoder" && !m_saeSpecs.isEmpty())
        m_saeSpecs.removeLast(); // it was not added
    if (m_restoring && what == u"run")
        m_restoring.reset();
    if (what == u"run")
        setBusy(false);
    if (what == u"open model" && m_model)
        m_modelLabel->setText(tr("%1 · %2 layers × %3 heads · d %4").arg(m_model->name).arg(m_model->nLayer).arg(m_model->nHead).arg(m_model->dModel));
    else if (what == u"open model")
        m_modelLabel->setText(tr("no model"));
    showError(tr("Could not %1: %2").arg(what, message));
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

void MainWindow::closeEvent(QCloseEvent* event)
{
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/state"), saveState());
    m_engine->cancel();
    QFile::remove(autosavePath()); // a clean exit: nothing to recover
    QMainWindow::closeEvent(event);
}

} // namespace cs::ui
