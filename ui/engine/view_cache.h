#pragma once
// Node views for the circuit (the pinned nodes): the circuit export and present mode need the views of
// many nodes, and present mode must step through them without ever waiting on the GUI thread. This
// cache lives on the GUI thread, asks the engine for views one at a time (most wanted first) and keeps
// the answers until the record they came from is replaced.
//
// Why one at a time: a presenter holding the arrow key would otherwise queue a view per keypress on the
// worker; with one request in flight, a newer want() simply moves to the front of the queue.
//
// Staleness: clear() must be called when the engine's record changes (a finished run, a new model).
// Views computed from the old record always arrive before the signal announcing the new one (the
// worker answers in order and queued signals keep it), so clearing at that signal is exact.

#include "ui/engine/view_types.h"

#include <QHash>
#include <QObject>
#include <QPointer>
#include <QStringList>

namespace cs::ui {

class EngineClient;

class NodeViewCache : public QObject {
    Q_OBJECT
public:
    explicit NodeViewCache(EngineClient* engine, QObject* parent = nullptr);

    // The view of a node (by the name it was asked for), once computed; null before or on failure.
    const NodeView* view(const QString& name) const;
    // The engine's one-line reason when it could not compute the node (e.g. a token outside the prompt).
    QString error(const QString& name) const;
    // Answered (a view or an error) since the last clear().
    bool isReady(const QString& name) const { return m_views.contains(name) || m_errors.contains(name); }
    bool isWanted(const QString& name) const { return m_queue.contains(name) || m_inFlight == name; }

    // Asks for the views of `names` that are not ready yet. They go to the front of the queue in the
    // given order (the first is computed next), ahead of anything wanted before.
    void want(const QStringList& names);
    // A view computed elsewhere for the current record (the inspector's), so it need not be asked again.
    void insert(const NodeView& view);
    // Forgets every view and error and the queue (the record changed); emits cleared().
    void clear();

    int tokensPerList() const { return m_topK; }

Q_SIGNALS:
    // A view or an error for `name` arrived.
    void ready(const QString& name);
    void cleared();

private:
    void onComputed(quint64 id, const QString& name, const NodeView& view, const QString& error);
    void sendNext();

    QPointer<EngineClient> m_engine;
    QHash<QString, NodeView> m_views;
    QHash<QString, QString> m_errors;
    QStringList m_queue;
    QString m_inFlight;      // empty: nothing asked
    quint64 m_inFlightId = 0;
    int m_topK = 20;
};

} // namespace cs::ui
