#pragma once
// The engine: one QObject that owns the model, the autoencoders and the activation record, living on
// one worker thread (style.md "One owner thread for the model"). The GUI never calls into libtorch:
// it posts requests through EngineClient and receives value types through queued signals.
//
// - A newer "inspect node" replaces an older one that has not started yet (a one-slot mailbox), so
//   rapid clicking never builds a queue and the last click wins. Runs work the same way, and a new
//   run also cancels the one in progress (rapid ablate/unablate toggling: the last state wins).
// - A run reports progress per layer and can be cancelled between layers.
// - A failed request leaves the previous model, autoencoders and record in place.

#include "ui/engine/engine_types.h"

#include "core/session/session.h"

#include <QObject>
#include <QThread>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>

namespace cs::ui {

// What to run, as the text a session holds (core/commands/session_query.h turns it into the core's
// query on the worker thread, so malformed text fails there with one message like every other input).
struct RunRequest {
    quint64 id = 0;
    QString prompt;
    Session::Objective objective;              // no targets: no objective
    std::vector<std::string> ablations;        // "NODE=VALUE"
    std::optional<Session::Trace> trace;
    std::optional<Session::SecondPrompt> secondPrompt;
    bool truncate = false;
    int tableTopK = 15;
    int gridTopN = 16;
};

// The kinds of job the engine does, for failed(): the window reacts to each differently.
enum class EngineJob { OpenModel, OpenAutoencoder, Run, Inspect };
// "open model", "open autoencoder", "run", "inspect": what "Could not …" says.
QString engineJobText(EngineJob job);

struct InspectRequest {
    quint64 id = 0;
    NodeRef node;
    int topK = 20;
};

class Engine : public QObject {
    Q_OBJECT
public:
    Engine();
    ~Engine() override;

    // Thread-safe, called from the GUI thread: cancels every run with an id up to `upToRunId`, the
    // one in progress and those still queued (checked between layers).
    void requestCancel(quint64 upToRunId);
    // Thread-safe: puts `request` in the inspect mailbox, replacing one not yet started; returns
    // whether a wake-up must be posted (false when one is already pending).
    bool postInspect(const InspectRequest& request);
    // For tests: how many inspect requests are waiting (0 or 1).
    int pendingInspects() const;
    // Thread-safe: puts `request` in the run mailbox, replacing one not yet started; returns whether
    // a wake-up must be posted.
    bool postRun(const RunRequest& request);
    int pendingRuns() const; // 0 or 1

public Q_SLOTS:
    void openModel(const QString& dir);
    void addSae(int role, const QString& spec);   // role: 0 MLP, 1 attention, 2 residual; spec "L=PATH"
    void clearSaes();
    void run(const cs::ui::RunRequest& request);
    void processRun();
    void processInspect();
    // One node's view for the circuit (pins, present mode, export), answered by viewComputed. Unlike
    // inspect this is not a mailbox: NodeViewCache sends one at a time, so nothing piles up here.
    void computeView(quint64 id, const QString& name, int topK);

Q_SIGNALS:
    void modelOpened(const cs::ui::ModelSummary& summary);
    void saesChanged(const QStringList& descriptions);
    void progress(int done, int total);
    void runFinished(const cs::ui::RunResult& result);
    void runCancelled(quint64 id);
    void nodeReady(const cs::ui::NodeView& view);
    // message: one line naming the file or field (userMessage).
    void failed(cs::ui::EngineJob job, const QString& message);
    // The answer to computeView: the view, or a one-line error (then `view` is empty). Errors of pinned
    // nodes belong to the circuit, not to the window, so they do not go through failed().
    void viewComputed(quint64 id, const QString& name, const cs::ui::NodeView& view, const QString& error);

private:
    struct State;
    std::unique_ptr<State> m_state;
    std::atomic<quint64> m_cancelUpTo{0};
    mutable std::mutex m_mailboxMutex;
    std::optional<InspectRequest> m_mailbox;
    std::optional<RunRequest> m_runMailbox;
};

// The GUI side of the engine: owns the worker thread and the engine on it, and turns every request
// into a queued call (a functor, so a renamed slot fails to compile rather than at run time).
class EngineClient : public QObject {
    Q_OBJECT
public:
    explicit EngineClient(QObject* parent = nullptr);
    ~EngineClient() override; // cancels the job in progress, then joins the thread

    Engine* engine() const { return m_engine; }

    void openModel(const QString& dir);
    void addSae(int role, const QString& spec);
    void clearSaes();
    // Returns the request id; supersedes (cancels) every earlier run, queued or in progress.
    quint64 run(RunRequest request);
    quint64 inspect(const NodeRef& node, int topK = 20);
    quint64 computeView(const QString& name, int topK = 20);
    void cancel();

    quint64 latestRun() const { return m_latestRun; }

private:
    template <typename F>
    void post(F&& call);

    QThread m_thread;
    Engine* m_engine = nullptr;
    quint64 m_nextId = 1;
    quint64 m_latestRun = 0;
};

} // namespace cs::ui

Q_DECLARE_METATYPE(cs::ui::RunRequest)
Q_DECLARE_METATYPE(cs::ui::EngineJob)
