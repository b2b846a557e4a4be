#pragma once
// Writing the circuit (every pin's view, with its note) as .csv or .pdf. The views come from the
// engine in the background (NodeViewCache); the file is written once every pin has its view or the
// engine's reason why not, so the window never waits.

#include "ui/charts/circuit_report.h"

#include <QObject>

namespace cs::ui {

class CircuitPanel;
class NodeViewCache;

class CircuitExporter : public QObject {
    Q_OBJECT
public:
    CircuitExporter(NodeViewCache* views, CircuitPanel* circuit, QObject* parent = nullptr);

    // Starts an export to `path` (.csv or .pdf) with `header`'s model, prompt and objective. False with
    // *error set when it cannot start (wrong suffix, nothing pinned); otherwise exported() or failed()
    // follows, possibly before this returns.
    bool start(const QString& path, const CircuitReport& header, QString* error);
    bool isPending() const { return !m_path.isEmpty(); }

Q_SIGNALS:
    void exported(const QString& path, int pages);
    void failed(const QString& message);

private:
    void proceed();

    NodeViewCache* m_views;
    CircuitPanel* m_circuit;
    QString m_path;        // the export waiting for views (empty: none)
    CircuitReport m_header;
};

} // namespace cs::ui
