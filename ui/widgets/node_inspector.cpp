#include "ui/widgets/node_inspector.h"
#include "ui/widgets/node_actions.h"

#include "ui/charts/activation_chart.h"
#include "ui/charts/export_button.h"
#include "ui/charts/heatmap_chart.h"
#include "ui/charts/token_bar_chart.h"

#include <QCheckBox>

#include <algorithm>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QMenu>
#include <QScrollArea>
#include <QSplitter>
#include <QTabWidget>
#include <QToolButton>
#include <QVBoxLayout>

namespace cs::ui {

namespace {

// A bar chart of the top and bottom 20 tokens (the engine's lists) with every token label: 12 px a
// bar (at 420 px for the chart and its title, subtitle and axis, only every other label fitted), and
// the Export bar.
constexpr int kTokenBarsHeight = 160 + 12 * 40;

// A chart with its Export ▾ button above it, right-aligned.
QWidget* withExport(ChartWidget* chart, QWidget* extra = nullptr)
{
    auto* box = new QWidget;
    auto* layout = new QVBoxLayout(box);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* bar = new QHBoxLayout;
    if (extra)
        bar->addWidget(extra);
    bar->addStretch(1);
    bar->addWidget(new ExportButton(chart));
    layout->addLayout(bar);
    layout->addWidget(chart, 1);
    return box;
}

// Two stacked charts need twice a chart's minimum height; in a scroll area they never force the
// whole window taller than a 1280 × 800 screen, and scroll instead.
QWidget* scrolled(QWidget* content)
{
    auto* area = new QScrollArea;
    area->setWidget(content);
    area->setWidgetResizable(true);
    area->setFrameShape(QFrame::NoFrame);
    return area;
}

// Four significant digits on screen; the exact values are in the tooltip and the exports.
QString short4(double v)
{
    return QString::number(v, 'g', 4).replace(u'-', QChar(0x2212));
}

QString metricText(const NodeMetricsView& m)
{
    QString text = QStringLiteral("activation <b>%1</b> &nbsp; write magnitude <b>%2</b>").arg(short4(m.activation), short4(m.writeMagnitude));
    if (m.directEffect)
        text += QStringLiteral(" &nbsp; direct effect <b>%1</b>").arg(short4(*m.directEffect));
    if (m.totalEffect)
        text += QStringLiteral(" &nbsp; estimated total effect <b>%1</b>").arg(short4(*m.totalEffect));
    return text;
}

// With ablations: each metric as ablated / baseline / Δ (Δ = ablated − baseline).
QString comparedMetricText(const NodeMetricsView& m, const NodeMetricsView& b)
{
    const auto one = [](const QString& name, double ablated, double baseline) {
        return QStringLiteral("%1 <b>%2</b> <span style='color:gray'>(baseline %3, Δ %4)</span>")
            .arg(name, short4(ablated), short4(baseline), short4(ablated - baseline));
    };
    QStringList parts;
    parts << one(QStringLiteral("activation"), m.activation, b.activation);
    parts << one(QStringLiteral("write magnitude"), m.writeMagnitude, b.writeMagnitude);
    if (m.directEffect && b.directEffect)
        parts << one(QStringLiteral("direct effect"), *m.directEffect, *b.directEffect);
    if (m.totalEffect && b.totalEffect)
        parts << one(QStringLiteral("estimated total effect"), *m.totalEffect, *b.totalEffect);
    return QStringLiteral("ablated: ") + parts.join(QStringLiteral(" &nbsp; "));
}

QString metricToolTip(const NodeMetricsView& m)
{
    QString text = QStringLiteral("activation = %1\nwrite magnitude = %2").arg(formatValue(m.activation), formatValue(m.writeMagnitude));
    if (m.directEffect)
        text += QStringLiteral("\ndirect effect = %1").arg(formatValue(*m.directEffect));
    if (m.totalEffect)
        text += QStringLiteral("\nestimated total effect = %1").arg(formatValue(*m.totalEffect));
    return text + QStringLiteral("\n\nDirect effect: the node's write · ∂objective/∂(final residual), with the final layer "
                                 "norm's scale held fixed (as TDB). Estimated total effect: activation × ∂objective/∂activation.");
}

} // namespace

NodeInspector::NodeInspector(QWidget* parent) : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    m_title = new QLabel;
    QFont big = m_title->font();
    big.setPointSizeF(big.pointSizeF() * 1.35);
    big.setBold(true);
    m_title->setFont(big);
    m_title->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_subtitle = new QLabel;
    m_subtitle->setWordWrap(true); // the hint shown before a node is chosen must not widen the window
    m_metrics = new QLabel;
    m_metrics->setTextFormat(Qt::RichText);
    m_metrics->setWordWrap(true);
    m_metrics->setToolTip(tr("Direct effect: the node's write · ∂objective/∂(final residual), with the final layer norm's "
                             "scale held fixed (as TDB). Estimated total effect: activation × ∂objective/∂activation."));
    m_pin = new QPushButton(tr("Pin"));
    m_pin->setToolTip(tr("Add this node to the circuit (the Circuit panel), or take it out (P in the layer grid)"));
    connect(m_pin, &QPushButton::clicked, this, [this] {
        if (m_hasView)
            Q_EMIT pinToggleRequested(m_view.node);
    });
    m_interventions = new QToolButton;
    m_interventions->setText(tr("Ablate / Trace"));
    m_interventions->setPopupMode(QToolButton::InstantPopup);
    m_interventions->setToolTip(tr("Ablate this node (hold it at a value) or trace upstream what caused it"));
    auto* interventionMenu = new QMenu(m_interventions);
    connect(interventionMenu, &QMenu::aboutToShow, this, [this, interventionMenu] {
        interventionMenu->clear();
        if (m_actions && m_hasView)
            m_actions->populate(interventionMenu, m_view.node);
    });
    m_interventions->setMenu(interventionMenu);
    m_interventions->setEnabled(false);
    auto* titleRow = new QHBoxLayout;
    titleRow->addWidget(m_title, 1);
    titleRow->addWidget(m_interventions);
    titleRow->addWidget(m_pin);
    layout->addLayout(titleRow);
    layout->addWidget(m_subtitle);
    layout->addWidget(m_metrics);

    m_tabs = new QTabWidget;
    layout->addWidget(m_tabs, 1);

    m_write = new TokenBarChart;
    m_perUnit = new QCheckBox(tr("Per unit activation"));
    m_perUnit->setToolTip(tr("Off: this node's write in this context (activation × direction, sign included).\n"
                             "On: the write of one unit of positive activation."));
    connect(m_perUnit, &QCheckBox::toggled, this, [this] { showWrite(); });
    // Room for every token label; a shorter inspector scrolls the tab.
    QWidget* writeBox = withExport(m_write, m_perUnit);
    writeBox->setMinimumHeight(kTokenBarsHeight);
    m_tabs->addTab(scrolled(writeBox), tr("Write tokens"));

    // Two charts of a head (Q-read and K-read, the two pair maps) are stacked, not side by side: side
    // by side at half the inspector's width their titles and token labels did not fit.
    auto* reads = new QSplitter(Qt::Vertical);
    reads->setChildrenCollapsible(false);
    m_read0 = new TokenBarChart;
    m_read1 = new TokenBarChart;
    reads->addWidget(withExport(m_read0));
    m_read1Box = withExport(m_read1);
    reads->addWidget(m_read1Box);
    // Each stacked chart keeps the room of a chart of its own (titles, every token label); the tab
    // scrolls to the second one when the inspector is shorter than both.
    for (QWidget* box : {reads->widget(0), reads->widget(1)})
        box->setMinimumHeight(kTokenBarsHeight);
    m_tabs->addTab(scrolled(reads), tr("Read tokens"));

    auto* pairs = new QWidget;
    auto* pairsLayout = new QVBoxLayout(pairs);
    pairsLayout->setContentsMargins(0, 0, 0, 0);
    m_pairsNote = new QLabel;
    m_pairsNote->setWordWrap(true);
    pairsLayout->addWidget(m_pairsNote);
    auto* maps = new QSplitter(Qt::Vertical);
    maps->setChildrenCollapsible(false);
    m_pairs0 = new HeatmapChart;
    m_pairs1 = new HeatmapChart;
    maps->addWidget(withExport(m_pairs0));
    m_pairs1Box = withExport(m_pairs1);
    maps->addWidget(m_pairs1Box);
    pairsLayout->addWidget(maps, 1);
    for (QWidget* box : {maps->widget(0), maps->widget(1)})
        box->setMinimumHeight(340);
    m_tabs->addTab(scrolled(pairs), tr("Token pairs"));

    m_activation = new ActivationChart;
    m_tabs->addTab(withExport(m_activation), tr("Activation by token"));

    clear(tr("Click a cell of the layer grid, a row of the node table, or type a node in “Go to node”."));
}

void NodeInspector::clear(const QString& message)
{
    m_hasView = false;
    m_view = NodeView();
    m_title->setText(tr("No node selected"));
    m_pin->setEnabled(false);
    m_interventions->setEnabled(false);
    setPinned(false);
    m_subtitle->setText(message);
    m_metrics->clear();
    const Provenance none;
    m_write->setData(TopTokenList(), none);
    m_read0->setData(TopTokenList(), none);
    m_read1Box->hide();
    m_pairs0->setData(Heatmap(), none);
    m_pairs1Box->hide();
    m_pairsNote->hide();
    m_activation->setData({}, {}, none, tr("Activation by token"));
}

const TopTokenList& NodeInspector::shownWrite() const
{
    return m_perUnit->isChecked() ? m_view.writePerUnit : m_view.writeInContext;
}

void NodeInspector::setPerUnitWrite(bool perUnit)
{
    m_perUnit->setChecked(perUnit);
}

bool NodeInspector::perUnitWrite() const
{
    return m_perUnit->isChecked();
}

void NodeInspector::setPinned(bool pinned)
{
    m_pin->setText(pinned ? tr("Unpin") : tr("Pin"));
}

void NodeInspector::showWrite()
{
    Provenance p = m_view.provenance;
    p.metric = m_perUnit->isChecked() ? QStringLiteral("write tokens per unit activation") : QStringLiteral("write tokens in context");
    // A node that writes nothing here (activation 0, e.g. ablated to 0) has no top tokens: its list is
    // a tie of zeros, which as bars would only show arbitrary token labels.
    const TopTokenList& shown = shownWrite();
    const auto zero = [](const QVector<TokenValue>& list) {
        return std::all_of(list.begin(), list.end(), [](const TokenValue& t) { return t.value == 0; });
    };
    if (m_hasView && !shown.top.isEmpty() && zero(shown.top) && zero(shown.bottom)) {
        TopTokenList none;
        none.title = shown.title;
        m_write->setEmptyMessage(tr("Writes nothing here (activation 0)"));
        m_write->setData(none, p);
        return;
    }
    m_write->setData(shown, p);
}

void NodeInspector::setView(const NodeView& view)
{
    m_view = view;
    m_hasView = true;
    m_title->setText(view.name);
    m_pin->setEnabled(true);
    m_interventions->setEnabled(view.node.kind != NodeKind::Embedding);
    m_subtitle->setText(view.node.kind == NodeKind::Embedding ? tr("embedding · token %1").arg(view.tokenLabel)
                                                              : tr("layer %1 · %2").arg(view.node.layer).arg(view.tokenLabel));
    m_metrics->setText(view.baselineMetrics ? comparedMetricText(view.metrics, *view.baselineMetrics) : metricText(view.metrics));
    m_metrics->setToolTip(metricToolTip(view.metrics));
    showWrite();

    Provenance p = view.provenance;
    if (view.reads.isEmpty()) {
        TopTokenList none;
        none.title = tr("Read tokens");
        m_read0->setEmptyMessage(tr("An embedding reads nothing."));
        m_read0->setData(none, p);
        m_read1Box->hide();
    } else {
        p.metric = view.reads[0].title;
        m_read0->setData(view.reads[0], p);
        m_read1Box->setVisible(view.reads.size() > 1);
        if (view.reads.size() > 1) {
            p.metric = view.reads[1].title;
            m_read1->setData(view.reads[1], p);
        }
    }

    m_pairsNote->setVisible(!view.pairMapsNote.isEmpty());
    m_pairsNote->setText(view.pairMapsNote);
    if (view.pairMaps.isEmpty()) {
        m_pairs0->setEmptyMessage(view.pairMapsNote);
        m_pairs0->setData(Heatmap(), p);
        m_pairs1Box->hide();
    } else {
        p.metric = view.pairMaps[0].metric;
        m_pairs0->setData(view.pairMaps[0], p);
        m_pairs1Box->setVisible(view.pairMaps.size() > 1);
        if (view.pairMaps.size() > 1) {
            p.metric = view.pairMaps[1].metric;
            m_pairs1->setData(view.pairMaps[1], p);
        }
    }
    p.metric = QStringLiteral("activation");
    m_activation->setData(view.tokens, view.activationByToken, p, tr("Activation of %1 by token").arg(view.name));
}

} // namespace cs::ui
