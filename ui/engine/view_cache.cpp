#include "ui/engine/view_cache.h"

#include "ui/engine/engine.h"

namespace cs::ui {

NodeViewCache::NodeViewCache(EngineClient* engine, QObject* parent) : QObject(parent), m_engine(engine)
{
    connect(engine->engine(), &Engine::viewComputed, this, &NodeViewCache::onComputed);
}

const NodeView* NodeViewCache::view(const QString& name) const
{
    const auto it = m_views.constFind(name);
    return it == m_views.cend() ? nullptr : &it.value();
}

QString NodeViewCache::error(const QString& name) const
{
    return m_errors.value(name);
}

void NodeViewCache::want(const QStringList& names)
{
    QStringList front;
    for (const QString& name : names) {
        if (name.isEmpty() || isReady(name) || name == m_inFlight || front.contains(name))
            continue;
        m_queue.removeAll(name);
        front << name;
    }
    m_queue = front + m_queue;
    sendNext();
}

void NodeViewCache::insert(const NodeView& view)
{
    if (view.name.isEmpty())
        return;
    m_views.insert(view.name, view);
    m_errors.remove(view.name);
    m_queue.removeAll(view.name);
    Q_EMIT ready(view.name);
}

void NodeViewCache::clear()
{
    m_views.clear();
    m_errors.clear();
    m_queue.clear();
    // A request in flight still answers; its answer is for the new record (see the header) and is kept.
    Q_EMIT cleared();
}

void NodeViewCache::onComputed(quint64 id, const QString& name, const NodeView& view, const QString& error)
{
    if (id == m_inFlightId) {
        m_inFlight.clear();
        m_inFlightId = 0;
    }
    if (error.isEmpty()) {
        m_views.insert(name, view);
        m_errors.remove(name);
    } else {
        m_errors.insert(name, error);
        m_views.remove(name);
    }
    m_queue.removeAll(name);
    Q_EMIT ready(name);
    sendNext();
}

void NodeViewCache::sendNext()
{
    if (!m_inFlight.isEmpty() || m_queue.isEmpty() || !m_engine)
        return;
    m_inFlight = m_queue.takeFirst();
    m_inFlightId = m_engine->computeView(m_inFlight, m_topK);
}

} // namespace cs::ui
