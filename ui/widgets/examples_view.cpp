#include "ui/widgets/examples_view.h"

#include "ui/widgets/color_scale.h"

#include <QCheckBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QLocale>
#include <QMenu>
#include <QMouseEvent>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QToolTip>
#include <QVBoxLayout>

#include <cmath>

namespace cs::ui {

namespace {

constexpr int kPad = 6, kGap = 2, kChipHeight = 20, kValueWidth = 64, kHeadingHeight = 26;

QString shown(const QString& token)
{
    QString t = token;
    t.replace(u' ', QChar(0x00B7)).replace(u'\n', QChar(0x21B5));
    return t.isEmpty() ? QStringLiteral("∅") : t;
}

QString number(double v)
{
    return QString::number(v, 'g', 4).replace(u'-', QChar(0x2212));
}

QString bigNumber(qint64 v)
{
    return QLocale(QLocale::English).toString(v);
}

QString duration(double seconds)
{
    if (seconds < 90)
        return QStringLiteral("%1 s").arg(std::lround(seconds));
    return QStringLiteral("%1 min").arg(std::lround(seconds / 60));
}

// The demo bundle ships the held-out part of its training corpus next to the model.
QString bundledCorpus(const QString& modelDir)
{
    const QString p = QDir(modelDir).filePath(QStringLiteral("heldout-corpus.txt"));
    return modelDir.isEmpty() || !QFileInfo::exists(p) ? QString() : p;
}

} // namespace

// ---- ExamplesCanvas ------------------------------------------------------------------------------

ExamplesCanvas::ExamplesCanvas(QWidget* parent) : QWidget(parent)
{
    setMouseTracking(true);
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Minimum);
}

void ExamplesCanvas::setSnapshot(const ExamplesSnapshot& snapshot)
{
    m_snapshot = snapshot;
    m_items.clear();
    for (const auto& e : m_snapshot.top)
        m_items.push_back(&e);
    for (const auto& b : m_snapshot.bands)
        for (const auto& e : b.examples)
            m_items.push_back(&e);
    relayout();
    update();
}

void ExamplesCanvas::relayout()
{
    m_lines.clear();
    const QFontMetrics fm(font());
    const int width = std::max(200, this->width());
    int y = kPad;
    int item = 0;
    const auto heading = [&](const QString& text) {
        Line l;
        l.heading = text;
        l.rect = QRect(0, y, width, kHeadingHeight);
        y += kHeadingHeight;
        m_lines.push_back(l);
    };
    const auto exampleLine = [&](const ExampleItem& e) {
        Line l;
        l.example = item++;
        int x = kPad + kValueWidth, lineTop = y;
        for (const QString& t : e.tokens) {
            auto it = m_widths.find(t);
            if (it == m_widths.end())
                it = m_widths.insert(t, fm.horizontalAdvance(shown(t)) + 8);
            const int w = *it;
            if (x + w > width - kPad && x > kPad + kValueWidth) {
                x = kPad + kValueWidth;
                y += kChipHeight + kGap;
            }
            l.chips.push_back(QRect(x, y, w, kChipHeight));
            x += w + kGap;
        }
        y += kChipHeight + kGap + 4;
        l.rect = QRect(0, lineTop - 2, width, y - lineTop);
        m_lines.push_back(l);
    };
    if (!m_snapshot.top.isEmpty()) {
        heading(tr("Top %1 of %2 windows").arg(m_snapshot.top.size()).arg(bigNumber(m_snapshot.windows)));
        for (const auto& e : m_snapshot.top)
            exampleLine(e);
    }
    for (int b = 0; b < m_snapshot.bands.size(); ++b) {
        const auto& band = m_snapshot.bands[b];
        heading(tr("Quantile band %1 of %2: activation %3 – %4 (random windows where the node is active)")
                    .arg(m_snapshot.bands.size() - b)
                    .arg(m_snapshot.bands.size())
                    .arg(number(band.lo), number(band.hi)));
        for (const auto& e : band.examples)
            exampleLine(e);
    }
    m_height = y + kPad;
    updateGeometry();
    setMinimumHeight(m_height);
}

QSize ExamplesCanvas::sizeHint() const
{
    return {500, std::max(m_height, 100)};
}

QRect ExamplesCanvas::exampleRect(int i) const
{
    for (const auto& l : m_lines)
        if (l.example == i)
            return l.rect;
    return {};
}

QRect ExamplesCanvas::chipRect(int example, int token) const
{
    for (const auto& l : m_lines)
        if (l.example == example)
            return l.chips.value(token);
    return {};
}

void ExamplesCanvas::resizeEvent(QResizeEvent*)
{
    relayout();
}

void ExamplesCanvas::changeEvent(QEvent* event)
{
    if (event->type() == QEvent::FontChange)
        m_widths.clear();
    QWidget::changeEvent(event);
}

void ExamplesCanvas::paintEvent(QPaintEvent* event)
{
    QPainter p(this);
    p.fillRect(rect(), palette().base());
    const QRect dirty = event->rect();
    QFont bold = font();
    bold.setBold(true);
    // One scale for every example: the node's corpus maximum, so that tints compare across rows.
    const double scale = m_snapshot.corpusMax > 0 ? m_snapshot.corpusMax : 1.0;
    for (const auto& l : m_lines) {
        if (!l.rect.intersects(dirty))
            continue;
        if (!l.heading.isEmpty()) {
            p.setFont(bold);
            p.setPen(palette().text().color());
            p.drawText(l.rect.adjusted(kPad, 0, -kPad, 0), Qt::AlignLeft | Qt::AlignBottom, l.heading);
            p.setFont(font());
            continue;
        }
        const ExampleItem& e = *m_items[static_cast<std::size_t>(l.example)];
        p.setPen(palette().text().color());
        p.drawText(QRect(kPad, l.rect.top() + 2, kValueWidth - 6, kChipHeight), Qt::AlignRight | Qt::AlignVCenter, number(e.max));
        for (int t = 0; t < l.chips.size(); ++t) {
            const QRect r = l.chips[t];
            const QColor bg = divergingColor(e.activations.value(t), scale);
            p.fillRect(r, bg);
            p.setPen(textColorOn(bg));
            p.drawText(r, Qt::AlignCenter, shown(e.tokens.value(t)));
            if (t == e.maxIndex) {
                p.setPen(QPen(Qt::black, 2));
                p.drawRect(r.adjusted(1, 1, -1, -1));
            } else if (t == e.keyIndex) {
                p.setPen(QPen(QColor(20, 90, 200), 2, Qt::DashLine));
                p.drawRect(r.adjusted(1, 1, -1, -1));
            }
        }
        p.setPen(palette().mid().color());
        p.drawLine(l.rect.bottomLeft(), l.rect.bottomRight());
    }
}

std::pair<int, int> ExamplesCanvas::hit(const QPoint& pos) const
{
    for (const auto& l : m_lines) {
        if (l.example < 0 || !l.rect.contains(pos))
            continue;
        for (int t = 0; t < l.chips.size(); ++t)
            if (l.chips[t].contains(pos))
                return {l.example, t};
        return {l.example, -1};
    }
    return {-1, -1};
}

void ExamplesCanvas::mousePressEvent(QMouseEvent* event)
{
    const auto [example, token] = hit(event->position().toPoint());
    if (example >= 0 && event->button() == Qt::LeftButton)
        Q_EMIT exampleClicked(example);
}

bool ExamplesCanvas::event(QEvent* event)
{
    if (event->type() == QEvent::ToolTip) {
        auto* help = static_cast<QHelpEvent*>(event);
        const auto [example, token] = hit(help->pos());
        if (example < 0) {
            QToolTip::hideText();
            return true;
        }
        const ExampleItem& e = *m_items[static_cast<std::size_t>(example)];
        QString text = tr("document %1, stream position %2; maximum %3").arg(e.doc).arg(e.position).arg(number(e.max));
        if (token >= 0) {
            const double a = e.activations.value(token);
            text = tr("'%1': activation %2").arg(e.tokens.value(token), number(a)) +
                   (m_snapshot.corpusMax > 0 ? tr(" (%1 of the corpus maximum)").arg(number(a / m_snapshot.corpusMax)) : QString()) +
                   (token == e.maxIndex ? tr("\nthe example's maximum") : QString()) +
                   (token == e.keyIndex ? tr("\nthe key most attended to from the maximum's query") : QString()) + u'\n' + text;
        }
        QToolTip::showText(help->globalPos(), text + tr("\nClick to run this context as the prompt."), this);
        return true;
    }
    return QWidget::event(event);
}

// ---- ExamplesView --------------------------------------------------------------------------------

ExamplesView::ExamplesView(QWidget* parent) : QWidget(parent)
{
    m_controller = new ExamplesController(this);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    auto* bar = new QHBoxLayout;
    m_status = new QLabel;
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_progress = new QProgressBar;
    m_progress->setMaximumWidth(160);
    m_progress->setRange(0, 1000);
    m_progress->hide();
    m_cancel = new QPushButton(tr("Cancel"));
    m_cancel->setToolTip(tr("Stop indexing; what was done is kept, and indexing resumes from there next time"));
    m_cancel->hide();
    m_index = new QPushButton(tr("Index"));
    m_index->setToolTip(tr("Index the corpus for the open model and autoencoders (resumes an interrupted index)"));
    m_index->hide();
    auto* open = new QPushButton(tr("Corpus…"));
    open->setToolTip(tr("A .txt file (one document per line), a .jsonl file with a \"text\" field, or a folder of .txt files"));
    auto* openMenu = new QMenu(open);
    openMenu->addAction(tr("File (.txt, .jsonl)…"), this, &ExamplesView::chooseCorpus);
    openMenu->addAction(tr("Folder of .txt files…"), this, &ExamplesView::chooseCorpusFolder);
    open->setMenu(openMenu);
    m_normalize = new QCheckBox(tr("Normalize by corpus max"));
    m_normalize->setToolTip(tr("Show the token strip's and the grid's activations divided by each node's largest activation "
                               "over the indexed corpus"));
    // The status on a line of its own: progress text is long and must not squeeze the buttons.
    layout->addWidget(m_status);
    bar->addWidget(m_progress);
    bar->addWidget(m_cancel);
    bar->addWidget(m_index);
    bar->addWidget(open);
    bar->addStretch(1);
    bar->addWidget(m_normalize);
    layout->addLayout(bar);
    m_header = new QLabel;
    m_header->setWordWrap(true);
    layout->addWidget(m_header);
    m_canvas = new ExamplesCanvas;
    m_scroll = new QScrollArea;
    m_scroll->setWidget(m_canvas);
    m_scroll->setWidgetResizable(true);
    layout->addWidget(m_scroll, 1);

    connect(m_cancel, &QPushButton::clicked, m_controller, &ExamplesController::cancel);
    connect(m_index, &QPushButton::clicked, m_controller, &ExamplesController::start);
    connect(m_normalize, &QCheckBox::toggled, this, &ExamplesView::normalizationChanged);
    connect(m_canvas, &ExamplesCanvas::exampleClicked, this, [this](int i) {
        if (!m_node || i < 0 || i >= m_canvas->exampleCount())
            return;
        const ExampleItem& e = m_canvas->example(i);
        NodeRef node = *m_node;
        node.token = e.promptToken;
        node.keyToken = node.kind == NodeKind::AttnHead ? e.promptKeyToken : 0;
        Q_EMIT exampleActivated(e.prompt, node);
    });
    connect(m_controller, &ExamplesController::busyChanged, this, [this](bool busy) {
        m_progress->setVisible(busy);
        m_cancel->setVisible(busy);
        m_progress->setValue(0);
        refresh();
    });
    connect(m_controller, &ExamplesController::progress, this, [this](const ExamplesProgress& p) {
        m_progress->setValue(p.tokens > 0 ? int(1000 * p.tokensDone / p.tokens) : 0);
        m_status->setText(tr("Indexing %1: %2 of %3 tokens · %4 tokens/s · ETA %5")
                              .arg(QFileInfo(m_controller->corpus()).fileName(), bigNumber(p.tokensDone), bigNumber(p.tokens))
                              .arg(bigNumber(std::llround(p.tokensPerSecond)))
                              .arg(p.tokensPerSecond > 0 ? duration(p.etaSeconds) : tr("…")));
    });
    connect(m_controller, &ExamplesController::indexReady, this, [this](qint64, bool, double) { refresh(); });
    connect(m_controller, &ExamplesController::cancelled, this, [this] {
        refresh();
        m_status->setText(tr("Indexing cancelled; Index resumes where it stopped."));
    });
    connect(m_controller, &ExamplesController::failed, this, [this](const QString& message) {
        refresh();
        m_status->setText(tr("Cannot index: %1").arg(message));
    });
    connect(m_controller, &ExamplesController::message, this, [this](const QString& message) { m_header->setText(message); });
    refresh();
}

void ExamplesView::sourceChanged()
{
    if (!m_provider)
        return;
    const ExamplesSource source = m_provider();
    if (m_userCorpus.isEmpty())
        m_controller->setCorpus(bundledCorpus(source.modelDir));
    m_controller->setSource(source);
    refresh();
    startIfVisible();
}

void ExamplesView::chooseCorpus()
{
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a corpus"), QString(),
                                                      tr("Text corpora (*.txt *.jsonl);;All files (*)"));
    if (!path.isEmpty())
        openCorpus(path);
}

void ExamplesView::chooseCorpusFolder()
{
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Open a folder of .txt documents"));
    if (!dir.isEmpty())
        openCorpus(dir);
}

void ExamplesView::openCorpus(const QString& path)
{
    m_userCorpus = path;
    if (m_provider)
        m_controller->setSource(m_provider());
    m_controller->setCorpus(path);
    m_header->clear();
    m_controller->start();
    refresh();
}

void ExamplesView::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    startIfVisible();
}

// Indexing starts when the tab is seen (or a corpus is opened), not at every start of the app.
void ExamplesView::startIfVisible()
{
    if (isVisible() && !m_controller->ready() && !m_controller->busy() && !m_controller->corpus().isEmpty() &&
        !m_controller->source().modelDir.isEmpty())
        m_controller->start();
}

void ExamplesView::setNode(const NodeRef& node)
{
    m_node = node;
    refresh();
}

void ExamplesView::refresh()
{
    const bool busy = m_controller->busy();
    m_index->setVisible(!busy && !m_controller->ready() && !m_controller->corpus().isEmpty());
    if (!busy) {
        if (m_controller->corpus().isEmpty())
            m_status->setText(tr("No corpus: open one (Corpus…) to see where nodes fire."));
        else if (m_controller->ready())
            m_status->setText(tr("%1 · %2 tokens indexed")
                                  .arg(QFileInfo(m_controller->corpus()).fileName(), bigNumber(m_controller->indexedTokens())));
        else
            m_status->setText(tr("%1 is not indexed yet for this model.").arg(QFileInfo(m_controller->corpus()).fileName()));
    }
    m_snapshot = m_node ? m_controller->examples(*m_node) : ExamplesSnapshot{};
    if (!m_node)
        m_snapshot.message = tr("Select a node.");
    if (m_snapshot.message.isEmpty()) {
        m_header->setText(tr("<b>%1</b> · corpus maximum %2 · active in %3 of %4 windows")
                              .arg(m_snapshot.node, number(m_snapshot.corpusMax), bigNumber(m_snapshot.activeWindows),
                                   bigNumber(m_snapshot.windows)));
    } else {
        m_header->setText(m_snapshot.message);
    }
    m_canvas->setSnapshot(m_snapshot);
    Q_EMIT snapshotShown();
}

bool ExamplesView::normalized() const
{
    return m_normalize->isChecked();
}

double ExamplesView::scaleFor(const NodeRef& node) const
{
    if (!normalized())
        return 1.0;
    const double m = m_controller->corpusMax(node);
    return m > 0 ? m : 1.0;
}

GridSnapshot ExamplesView::shownGrid(const GridSnapshot& grid) const
{
    return normalized() ? normalizedGrid(grid, [this](const NodeRef& n) { return scaleFor(n); }) : grid;
}

QVector<double> ExamplesView::shownActivations(const NodeRef& node, const QVector<double>& values) const
{
    const double scale = scaleFor(node);
    QVector<double> out = values;
    for (double& v : out)
        v /= scale;
    return out;
}

GridSnapshot normalizedGrid(const GridSnapshot& grid, const std::function<double(const NodeRef&)>& scale)
{
    GridSnapshot out = grid;
    if (!out.has(Metric::Activation))
        return out;
    for (auto& token : out.rows[int(Metric::Activation)]) {
        for (auto& layer : token) {
            for (auto* cells : {&layer.heads, &layer.neurons, &layer.mlpLatents, &layer.attnLatents, &layer.residLatents})
                for (auto& c : *cells)
                    c.value /= scale(c.node);
        }
    }
    return out;
}

} // namespace cs::ui
