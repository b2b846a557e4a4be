#include "ui/widgets/trace_bar.h"

#include "core/analysis/node.h"
#include "ui/engine/engine.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>

namespace cs::ui {

namespace {

QString tokenAt(const QStringList& tokens, int index)
{
    if (index < 0)
        index += int(tokens.size());
    return index >= 0 && index < tokens.size() ? tokens[index] : QStringLiteral("token %1").arg(index);
}

QString throughText(const std::string& through)
{
    if (through == "q")
        return QObject::tr("through the query");
    if (through == "k")
        return QObject::tr("through the key");
    if (through == "v")
        return QObject::tr("through the value");
    return QObject::tr("through the query and the key");
}

// "attention ·to → ·Mary of L9H9" or "mlp:5:123 at ·Mary".
QString nodePhrase(const NodeRef& node, const QStringList& tokens)
{
    if (node.kind == NodeKind::AttnHead)
        return QObject::tr("attention %1 → %2 of L%3H%4")
            .arg(tokenAt(tokens, node.token), tokenAt(tokens, node.keyToken))
            .arg(node.layer)
            .arg(node.index);
    const std::string name = node.name();
    return QObject::tr("%1 at %2").arg(QString::fromStdString(name.substr(0, name.find('@'))), tokenAt(tokens, node.token));
}

} // namespace

QString traceQuestion(const Session::Trace& trace, const QStringList& tokens)
{
    NodeRef node;
    try {
        node = NodeRef::parse(trace.node);
    } catch (const std::exception&) {
        return QObject::tr("What caused %1?").arg(QString::fromStdString(trace.node));
    }
    if (node.kind == NodeKind::AttnHead) {
        QString q = QObject::tr("What caused %1, %2").arg(nodePhrase(node, tokens), throughText(trace.through));
        if (!trace.downstream.empty()) {
            try {
                const NodeRef down = NodeRef::parse(trace.downstream);
                q += QObject::tr(" onto %1").arg(nodePhrase(down, tokens));
                if (down.kind == NodeKind::AttnHead)
                    q += u' ' + QObject::tr("(%1)").arg(throughText(trace.downstreamThrough));
            } catch (const std::exception&) {
                q += QObject::tr(" onto %1").arg(QString::fromStdString(trace.downstream));
            }
        }
        return q + u'?';
    }
    return QObject::tr("What caused %1?").arg(nodePhrase(node, tokens));
}

TraceBar::TraceBar(QWidget* parent) : QWidget(parent), m_label(new QLabel), m_clear(new QPushButton(tr("Clear trace")))
{
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(6, 3, 6, 3);
    m_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    // A long question (a value trace onto a downstream head) wraps instead of widening the grid's column.
    m_label->setWordWrap(true);
    m_label->setToolTip(tr("The four metrics, the grid, the table and the token effects are relative to this traced quantity"));
    layout->addWidget(new QLabel(QStringLiteral("↶")));
    layout->addWidget(m_label, 1);
    m_downstreamThrough = new QComboBox;
    m_downstreamThrough->addItem(tr("a head through Q·K"), QString());
    m_downstreamThrough->addItem(tr("a head through the query"), QStringLiteral("q"));
    m_downstreamThrough->addItem(tr("a head through the key"), QStringLiteral("k"));
    m_downstreamThrough->setToolTip(tr("When the downstream node is an attention head: which of its inputs reads the value write"));
    m_downstreamThrough->hide();
    layout->addWidget(m_downstreamThrough);
    layout->addWidget(m_clear);
    setAutoFillBackground(true);
    setStyleSheet(QStringLiteral("cs--ui--TraceBar { background: #e8f0fe; border: 1px solid #c6d7f9; border-radius: 4px; }"));
    setAttribute(Qt::WA_StyledBackground);
    connect(m_clear, &QPushButton::clicked, this, &TraceBar::clearRequested);
    hide();
}

void TraceBar::follow(const EngineClient* client)
{
    connect(client, &EngineClient::runShown, this, [this](const RunResult& r) {
        if (m_picking)
            setPickingDownstream(m_pickingFor, r.tokens);
        else
            setTrace(r.trace, r.tokens);
    });
    connect(client, &EngineClient::modelOpened, this, [this] { setTrace(std::nullopt, {}); });
}

void TraceBar::setTrace(const std::optional<Session::Trace>& trace, const QStringList& tokens)
{
    m_picking = false;
    m_downstreamThrough->hide();
    m_clear->setText(tr("Clear trace"));
    if (!trace) {
        m_label->clear();
        hide();
        return;
    }
    m_label->setText(traceQuestion(*trace, tokens));
    show();
}

void TraceBar::setPickingDownstream(const NodeRef& head, const QStringList& tokens)
{
    m_picking = true;
    m_pickingFor = head;
    m_label->setText(tr("Tracing %1 through the value: click the downstream node (in the grid or the table) that reads it")
                         .arg(nodePhrase(head, tokens)));
    m_downstreamThrough->show();
    m_clear->setText(tr("Cancel"));
    show();
}

QString TraceBar::downstreamThrough() const
{
    return m_downstreamThrough->currentData().toString();
}

QString TraceBar::text() const
{
    return isHidden() ? QString() : m_label->text();
}

} // namespace cs::ui
