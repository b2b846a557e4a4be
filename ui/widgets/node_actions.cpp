#include "ui/widgets/node_actions.h"

#include <QInputDialog>
#include <QMenu>

namespace cs::ui {

QString ablationName(const NodeRef& node, bool everyToken, int tokenCount)
{
    if (node.kind == NodeKind::Embedding)
        return {};
    const int token = node.token == tokenCount - 1 ? -1 : node.token;
    return QStringLiteral("%1:%2:%3@").arg(QString::fromLatin1(nodeKindName(node.kind))).arg(node.layer).arg(node.index) +
           (everyToken ? QStringLiteral("*") : QString::number(token));
}

std::string portableNodeName(const NodeRef& node, int tokenCount)
{
    NodeRef n = node;
    if (n.token == tokenCount - 1)
        n.token = -1;
    if (n.kind == NodeKind::AttnHead && n.keyToken == tokenCount - 1)
        n.keyToken = -1;
    return n.name();
}

NodeActions::NodeActions(QObject* parent) : QObject(parent) {}

void NodeActions::toggleAblation(const NodeRef& node)
{
    const QString name = ablationName(node, false, m_tokenCount);
    if (name.isEmpty())
        return;
    if (isAblated(name))
        Q_EMIT unablateRequested(name);
    else
        Q_EMIT ablateRequested(name, 0.0);
}

void NodeActions::populate(QMenu* menu, const NodeRef& node)
{
    if (node.kind == NodeKind::Embedding)
        return;
    menu->addSeparator();
    const QString here = ablationName(node, false, m_tokenCount);
    const QString every = ablationName(node, true, m_tokenCount);
    const QString what = node.kind == NodeKind::AttnHead ? tr("head L%1H%2").arg(node.layer).arg(node.index) : here;
    for (const QString& name : {here, every}) {
        if (isAblated(name))
            menu->addAction(tr("Remove ablation %1").arg(name), this, [this, name] { Q_EMIT unablateRequested(name); });
    }
    if (!isAblated(here)) {
        menu->addAction(tr("Ablate %1 at this token (= 0)").arg(what), this, [this, here] { Q_EMIT ablateRequested(here, 0.0); })
            ->setShortcut(QKeySequence(Qt::Key_A));
    }
    if (!isAblated(every))
        menu->addAction(tr("Ablate %1 at every token (= 0)").arg(what), this, [this, every] { Q_EMIT ablateRequested(every, 0.0); });
    menu->addAction(tr("Ablate %1 with a value…").arg(what), this, [this, menu, here, every] {
        bool ok = false;
        const double value = QInputDialog::getDouble(menu->parentWidget(), tr("Ablate"), tr("Hold %1 at:").arg(here), 0.0, -1e9, 1e9, 6, &ok);
        if (ok)
            Q_EMIT ablateRequested(here, value);
    });
    if (node.kind == NodeKind::AttnHead) {
        QMenu* trace = menu->addMenu(tr("Trace attention %1 upstream").arg(QString::fromStdString(node.name())));
        const std::pair<const char*, QString> modes[] = {
            {"qk", tr("through Q·K (the score)")}, {"q", tr("through the query")}, {"k", tr("through the key")},
            {"v", tr("through the value, onto the objective")}};
        for (const auto& [mode, label] : modes) {
            const QString through = QString::fromLatin1(mode);
            trace->addAction(label, this, [this, node, through] { Q_EMIT traceRequested(node, through); });
        }
        trace->addAction(tr("through the value, onto a downstream node (click it next)…"), this,
                         [this, node] { Q_EMIT valueTraceOntoRequested(node); });
    } else {
        menu->addAction(tr("Trace upstream: what caused %1?").arg(QString::fromStdString(node.name())), this,
                        [this, node] { Q_EMIT traceRequested(node, QString()); });
    }
}

} // namespace cs::ui
