#pragma once
// The inspector's Examples tab (issue 14): where the selected node fires most in the user's corpus —
// the top 20 windows and 10 from each of 4 quantile bands, each ≈32 tokens tinted by the node's
// activation (on the node's corpus-wide scale), the maximum outlined and, for a head, the
// most-attended key marked. Hover shows the values; a click makes the example the prompt and runs it.
// The tab owns its indexing job (ExamplesController): progress, tokens/s, ETA and Cancel are shown here.
// A checkbox asks the window to show the token strip and the grid's activations divided by each node's
// corpus maximum (as TDB's node page does).

#include "ui/engine/engine_types.h"
#include "ui/engine/examples_controller.h"

#include <QHash>
#include <QWidget>

#include <functional>

class QCheckBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QScrollArea;

namespace cs::ui {

// The painted list of examples (one widget, not a widget per token: 60 rows of 32 chips draw in
// well under the tab's 20 ms budget).
class ExamplesCanvas : public QWidget {
    Q_OBJECT
public:
    explicit ExamplesCanvas(QWidget* parent = nullptr);
    void setSnapshot(const ExamplesSnapshot& snapshot);
    int exampleCount() const { return static_cast<int>(m_items.size()); }
    const ExampleItem& example(int i) const { return *m_items[static_cast<std::size_t>(i)]; }
    QRect exampleRect(int i) const;            // for tests: where example i is drawn
    QRect chipRect(int example, int token) const;
    QSize sizeHint() const override;

Q_SIGNALS:
    void exampleClicked(int index);

protected:
    void paintEvent(QPaintEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;
    void changeEvent(QEvent* event) override;
    bool event(QEvent* event) override;

private:
    struct Line {
        QString heading;                      // a section heading, or empty for an example
        int example = -1;
        QRect rect;
        QVector<QRect> chips;
    };
    void relayout();
    std::pair<int, int> hit(const QPoint& p) const; // (example, token), -1 when none

    ExamplesSnapshot m_snapshot;
    std::vector<const ExampleItem*> m_items;
    QVector<Line> m_lines;
    QHash<QString, int> m_widths; // chip width per token string (≈ 2,000 chips per node; few distinct)
    int m_height = 0;
};

class ExamplesView : public QWidget {
    Q_OBJECT
public:
    explicit ExamplesView(QWidget* parent = nullptr);

    ExamplesController* controller() const { return m_controller; }
    // Where the model and autoencoders come from (the window's state), read on sourceChanged().
    void setSourceProvider(std::function<ExamplesSource()> provider) { m_provider = std::move(provider); }
    // The model or its autoencoders changed: reopen (or rebuild) the index for them.
    void sourceChanged();
    // Open ▾ → Corpus…: asks for a .txt/.jsonl file (or a folder, from the tab's own button).
    void chooseCorpus();
    void chooseCorpusFolder();
    void openCorpus(const QString& path);
    // Shows the node's examples (or what stands in the way).
    void setNode(const NodeRef& node);
    const ExamplesSnapshot& snapshot() const { return m_snapshot; }

    bool normalized() const;
    // The node's corpus maximum when normalizing and known, else 1: what the window divides by.
    double scaleFor(const NodeRef& node) const;
    // What the grid and the token strip show: as computed, or divided by the corpus maxima.
    GridSnapshot shownGrid(const GridSnapshot& grid) const;
    QVector<double> shownActivations(const NodeRef& node, const QVector<double>& values) const;

    ExamplesCanvas* canvas() const { return m_canvas; }
    QLabel* statusLabel() const { return m_status; }
    QPushButton* cancelButton() const { return m_cancel; }
    QCheckBox* normalizeBox() const { return m_normalize; }
    QProgressBar* progressBar() const { return m_progress; }

Q_SIGNALS:
    // A click on an example: run `prompt` and select `node` at the example's maximum.
    void exampleActivated(const QString& prompt, const cs::NodeRef& node);
    void normalizationChanged(bool normalized);
    void snapshotShown();

protected:
    void showEvent(QShowEvent* event) override;

private:
    void refresh();
    void startIfVisible();

    ExamplesController* m_controller = nullptr;
    std::function<ExamplesSource()> m_provider;
    QString m_userCorpus;           // chosen by the user (else the demo's bundled corpus, if any)
    std::optional<NodeRef> m_node;
    ExamplesSnapshot m_snapshot;
    QLabel* m_status = nullptr;
    QLabel* m_header = nullptr;
    QProgressBar* m_progress = nullptr;
    QPushButton* m_cancel = nullptr;
    QPushButton* m_index = nullptr;
    QCheckBox* m_normalize = nullptr;
    ExamplesCanvas* m_canvas = nullptr;
    QScrollArea* m_scroll = nullptr;
};

// The activation metric of a grid divided by each node's corpus maximum (`scale` returns 1 for a node
// without one); other metrics unchanged.
GridSnapshot normalizedGrid(const GridSnapshot& grid, const std::function<double(const NodeRef&)>& scale);

} // namespace cs::ui
