#include "ui/widgets/trace_bar.h"

#include "core/analysis/node.h"

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
        QString q = QObject::tr("What caused attention %1 → %2 of L%3H%4, %5")
                        .arg(tokenAt(tokens, node.token), tokenAt(tokens, node.keyToken))
                        .arg(node.layer)
                        .arg(node.index)
                        .arg(throughText(trace.through));
        if (!trace.downstream.empty())
            q += QObject::tr(" onto %1").arg(QString::fromStdString(trace.downstream));
        return q + u'?';
    }
    const std::string name = node.name();
    const QString head = QString::fromStdString(name.substr(0, name.find('@')));
    return QObject::tr("What caused %1 at %2?").arg(head, tokenAt(tokens, node.token));
}

TraceBar::TraceBar(QWidget* parent) : QWidget(parent), m_label(new QLabel), m_clear(new QPushButton(tr("Clear trace")))
{
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(6, 3, 6, 3);
    m_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_label->setToolTip(tr("The four metrics, the grid, the table and the token effects are relative to this traced quantity"));
    layout->addWidget(new QLabel(QStringLiteral("↶")));
    layout->addWidget(m_label, 1);
    layout->addWidget(m_clear);
    setAutoFillBackground(true);
    setStyleSheet(QStringLiteral("cs--ui--TraceBar { background: #e8f0fe; border: 1px solid #c6d7f9; border-radius: 4px; }"));
    setAttribute(Qt::WA_StyledBackground);
    connect(m_clear, &QPushButton::clicked, this, &TraceBar::clearRequested);
    hide();
}

void TraceBar::setTrace(const std::optional<Session::Trace>& trace, const QStringList& tokens)
{
    if (!trace) {
        m_label->clear();
        hide();
        return;
    }
    m_label->setText(traceQuestion(*trace, tokens));
    show();
}

QString TraceBar::text() const
{
    return isHidden() ? QString() : m_label->text();
}

} // namespace cs::ui
