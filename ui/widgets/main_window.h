#pragma once
// The main window (product.md §3): toolbar, token strip, layer grid, node inspector, node table and
// status bar, wired to the engine. Each panel is its own widget; this class only connects them.

#include "core/session/session.h"
#include "ui/engine/engine.h"

#include <functional>

#include <QMainWindow>
#include <QPointer>

#include <optional>

class QAction;
class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QMenu;
class QProgressBar;
class QPushButton;
class QScrollArea;
class QSplitter;
class QSpinBox;
class QToolButton;

namespace cs::ui {

class AblationsPanel;
class CircuitExporter;
class NextTokensPanel;
class NodeActions;
class ObjectiveEditor;
class SecondPromptBar;
class TokenEffectsView;
class TraceBar;
class CircuitPanel;
class SessionController;
class ExamplesView;
class LayerGrid;
class NodeInspector;
class NodeViewCache;
class PresentView;
class NodeTableView;
class TokenStrip;
class ComparedTokenStrip;
class TokenChipEditor;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    void openModel(const QString& dir);
    void setPrompt(const QString& prompt, const QStringList& targets = {}, const QStringList& distractors = {});
    void addAutoencoder(SaeRole role, const QString& spec);
    void run();
    void selectNode(const NodeRef& node);

    // Testing a hypothesis (product.md §3, §5.1); each change reruns the prompt once one has run.
    // Ablations as "NODE=VALUE"; ablate() adds one or changes its value.
    void ablate(const QString& ablationName, double value = 0);
    void removeAblation(const QString& ablationName);
    void setAblations(const QStringList& specs);
    QStringList ablations() const;
    // Trace upstream from a node (through: "" for neurons and latents, q|k|qk|v for heads).
    void trace(const NodeRef& node, const QString& through = {});
    // A head's value trace onto a downstream node (through: "" = qk, q or k when it is a head).
    void traceOnto(const NodeRef& head, const NodeRef& downstream, const QString& downstreamThrough = {});
    // The next node selected (grid, table, Go to) becomes the downstream node of `head`'s value trace.
    void pickDownstreamFor(const NodeRef& head);
    void clearTrace();
    const std::optional<Session::Trace>& currentTrace() const { return m_trace; }
    // A second prompt, first a copy of the first (prompt, targets, distractors).
    void addSecondPrompt();
    void removeSecondPrompt();

    // The circuit: pinned nodes with notes, in order (the Circuit panel; saved in sessions).
    // togglePin returns whether the node is pinned afterwards.
    bool togglePin(const NodeRef& node);
    // Present mode from this pin (F5, "Present"): full screen, one pinned node at a time.
    void present(int row = 0);
    // Writes the circuit as .csv or .pdf once the engine has computed every pin's view (in the
    // background); circuitExported(path) or errorShown tells how it went.
    void exportCircuit(const QString& path);

    // Sessions (.circuitscope.json): the current state, and restoring one. A session whose model folder
    // is missing asks for its new location (through `modelLocator`, a folder dialog by default).
    Session currentSession() const;
    Session::Objective objectiveFromFields() const;
    bool saveSession(const QString& path);
    // Opens a session; afterwards "Save" writes back to it. A template (the demo's walkthrough) opens
    // untitled, so that Save asks where instead of overwriting the shipped file.
    void openSession(const QString& path, bool asTemplate = false);
    // Save (Ctrl+S): to the session's file, or asks for one when it has none.
    void saveCurrentSession();
    QString sessionPath() const;
    // Sessions opened or saved most recently first (at most 8).
    static QStringList recentSessions();
    // Autosave: the current session is written every 20 s while it changes, to `autosavePath()`, and
    // removed when the window closes normally; a file left there means the app crashed or was killed.
    static QString autosavePath();
    bool autosaveNow();
    using ModelLocator = std::function<QString(const QString& missingPath)>;
    void setModelLocator(ModelLocator locator);

    // The parts, for tests and screenshots.
    EngineClient* engine() const { return m_engine; }
    LayerGrid* grid() const { return m_grid; }
    NodeInspector* inspector() const { return m_inspector; }
    NodeTableView* table() const { return m_table; }
    CircuitPanel* circuit() const { return m_circuit; }
    ExamplesView* examples() const { return m_examples; }
    NodeViewCache* views() const { return m_views; }
    PresentView* presentView() const; // null when present mode is not open
    QAction* presentAction() const { return m_presentAction; }
    TokenStrip* tokenStrip() const { return m_tokens; }
    QLineEdit* promptField() const { return m_prompt; }
    TokenChipEditor* targetField() const { return m_target; }
    TokenChipEditor* distractorField() const { return m_distractor; }
    QLineEdit* goToField() const { return m_goTo; }
    QComboBox* metricChooser() const { return m_metric; }
    // The grid's metric (the chooser holds the metric itself, not its name or position).
    Metric gridMetric() const;
    void setGridMetric(Metric metric);
    // "Δ": the grid colored by ablated − baseline or right − left; enabled only with a comparison.
    QCheckBox* gridDeltaToggle() const { return m_deltaGrid; }
    bool isGridDelta() const;
    QPushButton* runButton() const { return m_runButton; }
    QPushButton* cancelButton() const { return m_cancelButton; }
    QString errorText() const;
    QString statusText() const;   // model-independent part of the status bar: time, objective, next token
    ObjectiveEditor* objectiveEditor() const { return m_objective; }
    AblationsPanel* ablationsPanel() const { return m_ablations; }
    TraceBar* traceBar() const { return m_traceBar; }
    NextTokensPanel* nextTokensPanel() const { return m_nextTokens; }
    SecondPromptBar* secondPromptBar() const { return m_second; }
    TokenEffectsView* tokenEffects() const { return m_tokenEffects; }
    ComparedTokenStrip* secondTokenStrip() const { return m_tokens2; }
    QSpinBox* tableTopK() const { return m_tableTopK; }
    NodeActions* nodeActions() const { return m_actions; }
    const std::optional<RunResult>& lastRun() const { return m_lastRun; }
    const std::optional<ModelSummary>& model() const { return m_model; }

Q_SIGNALS:
    void modelReady();
    void sessionRestored();
    void runReady();
    // A staged result was shown (grid and table with the latents of `done` of `total` layers).
    void runStagedShown(int done, int total);
    void nodeShown();
    void errorShown(const QString& message);
    void circuitExported(const QString& path);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void buildToolbar();
    void buildCentral();
    void buildStatusBar();
    void connectEngine();
    void showError(const QString& message);
    void clearError();
    void fillModelMenu();
    void chooseModelFolder();
    void chooseAutoencoder(SaeRole role);
    void onModelOpened(const ModelSummary& summary);
    void onRunFinished(const RunResult& result);
    void onRunStaged(const RunResult& result);
    void onNodeReady(const NodeView& view);
    void onFailed(cs::ui::EngineJob job, const QString& message);
    void buildInterventionDocks();
    void fitGridPanel();
    void showGrid();
    int tracedTokenOfInterest(int tokenCount) const;
    void rerun();
    std::vector<std::string> ablationSpecs() const;
    void onTokenOfInterest(int token);
    void onGoTo();
    void updateMetricChooser();
    void setBusy(bool busy);
    void fillRecentSessionsMenu();
    void buildCircuitDock();
    void syncPins();
    void onPinActivated(const QString& name);
    void chooseCircuitExport(const QString& format);

    EngineClient* m_engine = nullptr;
    QToolButton* m_modelButton = nullptr;
    QMenu* m_modelMenu = nullptr;
    QToolButton* m_saeButton = nullptr;
    QLineEdit* m_prompt = nullptr;
    TokenChipEditor* m_target = nullptr;
    TokenChipEditor* m_distractor = nullptr;
    QPushButton* m_runButton = nullptr;
    QLabel* m_error = nullptr;
    TokenStrip* m_tokens = nullptr;
    LayerGrid* m_grid = nullptr;
    QWidget* m_gridPanel = nullptr;             // the grid with its controls and trace bar
    QScrollArea* m_gridScroll = nullptr;
    QSplitter* m_leftColumn = nullptr;          // the grid panel over the node table
    int m_fittedGridHeight = -1;
    QComboBox* m_metric = nullptr;
    QSpinBox* m_topN = nullptr;
    QCheckBox* m_deltaGrid = nullptr;
    QLineEdit* m_goTo = nullptr;
    NodeInspector* m_inspector = nullptr;
    NodeTableView* m_table = nullptr;
    QLabel* m_modelLabel = nullptr;
    QLabel* m_tokenCountLabel = nullptr;
    QLabel* m_timeLabel = nullptr;
    QLabel* m_saeLabel = nullptr;
    QProgressBar* m_progress = nullptr;
    QPushButton* m_cancelButton = nullptr;

    std::optional<ModelSummary> m_model;
    std::optional<RunResult> m_lastRun;
    quint64 m_latestInspect = 0;
    std::optional<NodeRef> m_selected;
    QString m_pendingModelPath;
    QVector<QPair<SaeRole, QString>> m_saeSpecs;   // autoencoders as added (role, spec), for sessions
    std::optional<Session> m_restoring;         // a session being restored, step by step
    ObjectiveEditor* m_objective = nullptr;
    AblationsPanel* m_ablations = nullptr;      // the ablations: what every run and session uses
    TraceBar* m_traceBar = nullptr;
    std::optional<Session::Trace> m_trace;
    std::optional<NodeRef> m_pickingDownstreamFor; // a value trace waiting for its downstream click
    NextTokensPanel* m_nextTokens = nullptr;
    SecondPromptBar* m_second = nullptr;        // the second prompt, when shown
    QAction* m_secondPromptAction = nullptr;
    TokenEffectsView* m_tokenEffects = nullptr;
    ComparedTokenStrip* m_tokens2 = nullptr;            // the second prompt's tokens
    QSpinBox* m_tableTopK = nullptr;
    NodeActions* m_actions = nullptr;
    SessionController* m_sessions = nullptr;    // the session file, recent sessions, autosave
    CircuitExporter* m_exporter = nullptr;
    QMenu* m_recentSessionsMenu = nullptr;
    CircuitPanel* m_circuit = nullptr;          // the pins (live state; sessions save them)
    ExamplesView* m_examples = nullptr;         // the inspector's Examples tab (issue 14)
    NodeViewCache* m_views = nullptr;           // engine-computed views of pinned nodes
    QPointer<PresentView> m_present;
    QAction* m_presentAction = nullptr;
    void continueRestore();
    void chooseSessionToOpen();
    void chooseSessionToSave();
};

} // namespace cs::ui
