#include "ui/widgets/present_view.h"

#include "ui/charts/circuit_report.h"
#include "ui/charts/heatmap_chart.h"
#include "ui/charts/qcp.h"
#include "ui/charts/token_bar_chart.h"
#include "ui/engine/view_cache.h"

#include <QFrame>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QStackedWidget>
#include <QVBoxLayout>

namespace cs::ui {

namespace {

// Black on white: the highest contrast a projector keeps, and the charts' own white background.
const QColor kInk(0, 0, 0);
const QColor kSecondary(40, 40, 40);
const QColor kPaper(255, 255, 255);

QLabel* label(double points, bool bold, const QColor& color)
{
    auto* l = new QLabel;
    QFont f = l->font();
    f.setPointSizeF(points);
    f.setBold(bold);
    l->setFont(f);
    QPalette p = l->palette();
    p.setColor(QPalette::WindowText, color);
    l->setPalette(p);
    return l;
}

QString short4(double v)
{
    return QString::number(v, 'g', 4).replace(u'-', QChar(0x2212));
}

} // namespace

PresentView::PresentView(NodeViewCache* views, QWidget* parent) : QWidget(parent), m_views(views)
{
    setWindowTitle(tr("Circuitscope — present"));
    setAutoFillBackground(true);
    QPalette pal = palette();
    pal.setColor(QPalette::Window, kPaper);
    pal.setColor(QPalette::WindowText, kInk);
    setPalette(pal);
    setFocusPolicy(Qt::StrongFocus);

    m_title = label(34, true, kInk);
    m_title->setTextInteractionFlags(Qt::NoTextInteraction);
    m_counter = label(20, true, kSecondary);
    m_counter->setAlignment(Qt::AlignRight | Qt::AlignTop);
    m_where = label(18, false, kSecondary);
    m_metrics = label(18, false, kInk);
    m_note = label(24, false, kInk);
    m_note->setWordWrap(true);
    // The note stands out by a red bar at its left, the color of the positive bars.
    m_noteBox = new QWidget;
    auto* noteLayout = new QHBoxLayout(m_noteBox);
    noteLayout->setContentsMargins(0, 0, 0, 0);
    noteLayout->setSpacing(16);
    auto* bar = new QFrame;
    bar->setFixedWidth(8);
    bar->setAutoFillBackground(true);
    QPalette barPalette = bar->palette();
    barPalette.setColor(QPalette::Window, QColor(0xb2, 0x18, 0x2b));
    bar->setPalette(barPalette);
    noteLayout->addWidget(bar);
    noteLayout->addWidget(m_note, 1);

    m_message = label(28, false, kSecondary);
    m_message->setAlignment(Qt::AlignCenter);
    m_message->setWordWrap(true);

    // Charts in presentation type; each rebuilds itself for the new font (ChartWidget::changeEvent).
    // Three columns fill the width: write tokens, the read list(s) (a head's Q- and K-read stacked),
    // and the pair map where there is one.
    QFont chartFont = font();
    chartFont.setPointSizeF(14);
    m_write = new TokenBarChart;
    m_read0 = new TokenBarChart;
    m_read1 = new TokenBarChart;
    m_map = new HeatmapChart;
    for (ChartWidget* c : std::initializer_list<ChartWidget*>{m_write, m_read0, m_read1, m_map})
        c->setFont(chartFont);
    auto* reads = new QWidget;
    auto* readsLayout = new QVBoxLayout(reads);
    readsLayout->setContentsMargins(0, 0, 0, 0);
    readsLayout->setSpacing(12);
    readsLayout->addWidget(m_read0, 1);
    readsLayout->addWidget(m_read1, 1);
    auto* charts = new QWidget;
    auto* chartsLayout = new QHBoxLayout(charts);
    chartsLayout->setContentsMargins(0, 0, 0, 0);
    chartsLayout->setSpacing(32);
    chartsLayout->addWidget(m_write, 1);
    chartsLayout->addWidget(reads, 1);
    chartsLayout->addWidget(m_map, 1);
    m_body = new QStackedWidget;
    m_body->addWidget(m_message);
    m_body->addWidget(charts);

    m_hint = label(14, false, kSecondary);
    m_hint->setText(tr("→ / Space / Page Down: next    ← / Page Up: back    Home / End: first / last    Esc: leave"));

    auto* header = new QHBoxLayout;
    auto* titles = new QVBoxLayout;
    titles->setSpacing(4);
    titles->addWidget(m_title);
    titles->addWidget(m_where);
    titles->addWidget(m_metrics);
    header->addLayout(titles, 1);
    header->addWidget(m_counter, 0, Qt::AlignTop);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(48, 32, 48, 20);
    layout->setSpacing(14);
    layout->addLayout(header);
    layout->addWidget(m_noteBox);
    layout->addWidget(m_body, 1);
    layout->addWidget(m_hint);

    if (m_views) {
        connect(m_views, &NodeViewCache::ready, this, [this](const QString& name) {
            if (name == shownNode())
                refresh();
        });
        // A new run replaced the views: ask again for the slide on screen.
        connect(m_views, &NodeViewCache::cleared, this, &PresentView::refresh);
    }
}

void PresentView::setPins(std::vector<Session::Pin> pins, int start)
{
    m_pins = std::move(pins);
    m_current = -1;
    setCurrent(start);
}

void PresentView::setCurrent(int index)
{
    const int clamped = m_pins.empty() ? 0 : std::clamp(index, 0, count() - 1);
    const bool changed = clamped != m_current;
    m_current = clamped;
    refresh();
    if (changed)
        Q_EMIT currentChanged(m_current);
}

QString PresentView::shownNode() const
{
    return m_current >= 0 && m_current < count() ? QString::fromStdString(m_pins[static_cast<std::size_t>(m_current)].node) : QString();
}

bool PresentView::isComputing() const
{
    const QString name = shownNode();
    return !name.isEmpty() && m_views && !m_views->isReady(name);
}

QString PresentView::message() const
{
    return m_body->currentWidget() == m_message ? m_message->text() : QString();
}

void PresentView::refresh()
{
    if (m_pins.empty()) {
        m_title->setText(tr("No pinned nodes"));
        m_counter->clear();
        m_where->clear();
        m_metrics->clear();
        m_noteBox->hide();
        showMessage(tr("Pin nodes in the main window (P in the layer grid), then present them."));
        return;
    }
    const Session::Pin& pin = m_pins[static_cast<std::size_t>(m_current)];
    const QString name = QString::fromStdString(pin.node);
    m_title->setText(name);
    m_counter->setText(QStringLiteral("%1 / %2").arg(m_current + 1).arg(count()));
    m_note->setText(QString::fromStdString(pin.note));
    m_noteBox->setVisible(!pin.note.empty());
    if (!m_views) {
        showMessage(tr("No engine."));
        return;
    }
    // This slide first, then its neighbours, so that the next step is usually instant.
    QStringList wanted{name};
    for (int neighbour : {m_current + 1, m_current - 1}) {
        if (neighbour >= 0 && neighbour < count())
            wanted << QString::fromStdString(m_pins[static_cast<std::size_t>(neighbour)].node);
    }
    m_views->want(wanted);
    if (const NodeView* v = m_views->view(name)) {
        showView(*v);
    } else {
        m_where->clear();
        m_metrics->clear();
        const QString error = m_views->error(name);
        showMessage(error.isEmpty() ? tr("computing…") : tr("Cannot show this node: %1").arg(error));
    }
}

void PresentView::showMessage(const QString& text)
{
    m_message->setText(text);
    m_body->setCurrentWidget(m_message);
}

void PresentView::showView(const NodeView& v)
{
    m_where->setText(v.node.kind == NodeKind::Embedding ? tr("embedding · token %1").arg(v.tokenLabel)
                                                        : tr("layer %1 · %2").arg(v.node.layer).arg(v.tokenLabel));
    QString metrics = tr("activation %1   ·   write magnitude %2").arg(short4(v.metrics.activation), short4(v.metrics.writeMagnitude));
    if (v.metrics.directEffect)
        metrics += tr("   ·   direct effect %1").arg(short4(*v.metrics.directEffect));
    if (v.metrics.totalEffect)
        metrics += tr("   ·   total effect %1").arg(short4(*v.metrics.totalEffect));
    m_metrics->setText(metrics);

    // Ten tokens a side (five for a head's two stacked read lists): what a room can read at this size.
    // Short titles and no provenance line: the slide's header already names the node.
    Provenance p;
    p.prompt = v.provenance.prompt;
    p.metric = QStringLiteral("write tokens in context");
    m_write->setData(chartTokens(v.writeInContext, 10), p);
    const int perSide = v.reads.size() > 1 ? 5 : 10;
    TokenBarChart* reads[] = {m_read0, m_read1};
    for (int i = 0; i < 2; ++i) {
        const bool has = i < v.reads.size();
        reads[i]->setVisible(has);
        if (has) {
            p.metric = v.reads[i].title;
            reads[i]->setData(chartTokens(v.reads[i], perSide), p);
        }
    }
    const Heatmap* map = mainPairMap(v);
    m_map->setVisible(map != nullptr);
    if (map) {
        p.metric = map->metric;
        m_map->setData(*map, p);
    }
    // Three value ticks: at this type size the default five collide on a third of the screen.
    for (TokenBarChart* chart : {m_write, m_read0, m_read1}) {
        chart->plot()->xAxis->ticker()->setTickCount(3);
        chart->plot()->replot();
    }
    m_body->setCurrentIndex(1);
}

void PresentView::keyPressEvent(QKeyEvent* event)
{
    switch (event->key()) {
    case Qt::Key_Right:
    case Qt::Key_Down:
    case Qt::Key_PageDown:
    case Qt::Key_Space:
        step(+1);
        break;
    case Qt::Key_Left:
    case Qt::Key_Up:
    case Qt::Key_PageUp:
    case Qt::Key_Backspace:
        step(-1);
        break;
    case Qt::Key_Home:
        setCurrent(0);
        break;
    case Qt::Key_End:
        setCurrent(count() - 1);
        break;
    case Qt::Key_Escape:
        close();
        break;
    default:
        QWidget::keyPressEvent(event);
        return;
    }
    event->accept();
}

} // namespace cs::ui
