#pragma once
// The engine: one QObject that owns the model, the autoencoders and the activation record, living on
// one worker thread (style.md "One owner thread for the model"). The GUI never calls into libtorch:
// it posts requests through EngineThread and receives value types through queued signals.
//
// - A newer "inspect node" replaces an older one that has not started yet (a one-slot mailbox), so
//   rapid clicking never builds a queue and the last click wins.
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

public Q_SLOTS:
    void openModel(const QString& dir);
    void addSae(int role, const QString& spec);   // role: 0 MLP, 1 attention, 2 residual; spec "L=PATH"
    void clearSaes();
    void run(const cs::ui::RunRequest& request);
    void processInspect();
    // One node's view for the circuit (pins, present mode, export), answered by viewComputed. Unlike
    // inspect this is not a mailbox: NodeViewCache sends one at a time, so nothing piles up here.
    void computeView(quint64 id, const QString& name, int topK);

Q_SIGNALS:
    void modelOpened(const cs::ui::ModelSummary& summary);
    void saesChanged(const QStringList& descriptions);
    void progress(int done, int total);
    void runFinished(const cs::ui::RunResult& result);
    void runCancelled();
    void nodeReady(const cs::ui::NodeView& view);
    // what: "open model", "open autoencoder", "run", "inspect"; message: one line naming file/field.
    void failed(const QString& what, const QString& message);
    // The answer to computeView: the view, or a one-line error (then `view` is empty). Errors of pinned
    // nodes belong to the circuit, not to the window, so they do not go through failed().
    void viewComputed(quint64 id, const QString& name, const cs::ui::NodeView& view, const QString& error);

private:
    struct State;
    std::unique_ptr<State> m_state;
    std::atomic<quint64> m_cancelUpTo{0};
    mutable std::mutex m_mailboxMutex;
    std::optional<InspectRequest> m_mailbox;
};

// Owns the worker thread and the engine on it; every request is a queued call.
class EngineThread : public QObject {
    Q_OBJECT
public:
    explicit EngineThread(QObject* parent = nullptr);
    ~EngineThread() override; // cancels the job in progress, then joins the thread

    Engine* engine() const { return m_engine; }

    void openModel(const QString& dir);
    void addSae(int role, const QString& spec);
    void clearSaes();
    quint64 run(RunRequest request);         // returns the request id
    quint64 inspect(const NodeRef& node, int topK = 20);
    quint64 computeView(const QString& name, int topK = 20);
    void cancel();

private:
    QThread m_thread;
    Engine* m_engine = nullptr;
    quint64 m_nextId = 1;
};

} // namespace cs::ui

Q_DECLARE_METATYPE(cs::ui::RunRequest)
