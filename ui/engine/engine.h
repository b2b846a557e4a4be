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
#include <utility>

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

// One request waiting for the worker: a newer one replaces it before it starts (clicks and edits
// that come faster than the engine never queue up). Thread-safe.
template <typename Request>
class Mailbox {
public:
    // Returns whether the box was empty (then a wake-up must be posted; otherwise one is pending).
    bool put(const Request& request)
    {
        std::lock_guard lock(m_mutex);
        const bool wasEmpty = !m_request.has_value();
        m_request = request;
        return wasEmpty;
    }
    std::optional<Request> take()
    {
        std::lock_guard lock(m_mutex);
        return std::exchange(m_request, std::nullopt);
    }
    int pending() const
    {
        std::lock_guard lock(m_mutex);
        return m_request ? 1 : 0;
    }

private:
    mutable std::mutex m_mutex;
    std::optional<Request> m_request;
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
    bool postInspect(const InspectRequest& request) { return m_inspects.put(request); }
    // For tests: how many inspect requests are waiting (0 or 1).
    int pendingInspects() const { return m_inspects.pending(); }
    // Thread-safe: puts `request` in the run mailbox, replacing one not yet started; returns whether
    // a wake-up must be posted.
    bool postRun(const RunRequest& request) { return m_runs.put(request); }
    int pendingRuns() const { return m_runs.pending(); } // 0 or 1

public Q_SLOTS:
    void openModel(const QString& dir);
    void addSae(cs::SaeRole role, const QString& spec); // spec "L=PATH"
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
    // While a run with autoencoders is in progress: its node table and grid so far (result.partial): the
    // model's own nodes first, then the latents of more layers (at most every ~0.3 s). The final result
    // still comes as runFinished.
    void runStaged(const cs::ui::RunResult& result);
    // What the run in progress is computing ("forward", "autoencoders of layer 5", …).
    void stageChanged(quint64 runId, const QString& stage);
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
    Mailbox<InspectRequest> m_inspects;
    Mailbox<RunRequest> m_runs;
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
    void addSae(SaeRole role, const QString& spec);
    void clearSaes();
    // Returns the request id; supersedes (cancels) every earlier run, queued or in progress.
    quint64 run(RunRequest request);
    quint64 inspect(const NodeRef& node, int topK = 20);
    quint64 computeView(const QString& name, int topK = 20);
    void cancel();

    quint64 latestRun() const { return m_latestRun; }

Q_SIGNALS:
    // On the GUI thread: the latest run's results (a run that a newer request superseded is dropped)
    // and the model that opened. The panels connect to these themselves.
    void runShown(const cs::ui::RunResult& result);
    void modelOpened(const cs::ui::ModelSummary& summary);

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
