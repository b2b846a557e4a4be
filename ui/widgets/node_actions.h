#pragma once
// Ablate and Trace on a node (product.md §3 "Testing a hypothesis"), the same entries in the layer
// grid's, the node table's and the inspector's menus. The window owns one NodeActions, knows the
// current ablations and trace, and acts on its signals; the widgets only build menus from it.

#include "core/analysis/node.h"

#include <QObject>
#include <QString>

#include <functional>

class QMenu;

namespace cs::ui {

// The ablation's node part as --ablate takes it: a neuron or latent at its token, a head's whole
// causal row at its query token (D11); `everyToken` gives "@*". The last of `tokenCount` tokens is
// written "@-1", so that the ablation means the same position in a second prompt of another length.
// Embeddings cannot be ablated (empty).
QString ablationName(const NodeRef& node, bool everyToken, int tokenCount);
// A node's name with the last of `tokenCount` (query) tokens written -1, for traces (same reason).
std::string portableNodeName(const NodeRef& node, int tokenCount);

class NodeActions : public QObject {
    Q_OBJECT
public:
    explicit NodeActions(QObject* parent = nullptr);

    // Whether an ablation with this node part exists (the menus then offer to remove it).
    void setAblatedQuery(std::function<bool(const QString& ablationName)> isAblated) { m_isAblated = std::move(isAblated); }
    bool isAblated(const QString& name) const { return m_isAblated && m_isAblated(name); }
    // The prompt's length, for names relative to its end.
    void setTokenCount(int n) { m_tokenCount = n; }

    // Adds the Ablate and Trace entries for `node` to `menu` (after a separator).
    void populate(QMenu* menu, const NodeRef& node);
    // Key A: ablate at this token with 0, or remove that ablation when there is one.
    void toggleAblation(const NodeRef& node);

Q_SIGNALS:
    void ablateRequested(const QString& ablationName, double value);
    void unablateRequested(const QString& ablationName);
    // through: "" (a neuron or latent), "q", "k", "qk" or "v" (heads).
    void traceRequested(const cs::NodeRef& node, const QString& through);
    // A head's value trace onto a downstream node that the user clicks next.
    void valueTraceOntoRequested(const cs::NodeRef& head);

private:
    std::function<bool(const QString&)> m_isAblated;
    int m_tokenCount = 0;
};

} // namespace cs::ui
