#include "ui/widgets/circuit_exporter.h"

#include "ui/engine/view_cache.h"
#include "ui/widgets/circuit_panel.h"

#include <QFileInfo>

#include <utility>

namespace cs::ui {

CircuitExporter::CircuitExporter(NodeViewCache* views, CircuitPanel* circuit, QObject* parent)
    : QObject(parent), m_views(views), m_circuit(circuit)
{
    // A new run while an export waits clears the views: proceed() asks for them again.
    connect(m_views, &NodeViewCache::ready, this, &CircuitExporter::proceed);
    connect(m_views, &NodeViewCache::cleared, this, &CircuitExporter::proceed);
}

bool CircuitExporter::start(const QString& path, const CircuitReport& header, QString* error)
{
    const QString suffix = QFileInfo(path).suffix().toLower();
    if (suffix != u"csv" && suffix != u"pdf") {
        *error = tr("Export circuit: use a .csv or .pdf file name, not “%1”.").arg(path);
        return false;
    }
    if (m_circuit->pins().empty()) {
        *error = tr("Export circuit: nothing is pinned yet.");
        return false;
    }
    m_path = path;
    m_header = header;
    proceed();
    return true;
}

void CircuitExporter::proceed()
{
    if (m_path.isEmpty())
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
    const QString path = std::exchange(m_path, QString());
    CircuitReport report = m_header;
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
        Q_EMIT failed(tr("Export circuit: %1").arg(error));
        return;
    }
    Q_EMIT exported(path, static_cast<int>(report.pages.size()));
}

} // namespace cs::ui
