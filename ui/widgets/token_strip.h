#pragma once
// The prompt as a row of token chips (product.md §3). A click picks the token of interest; chips are
// colored by the selected node's activation at each token. Leading spaces are shown as '·'.

#include <QStringList>
#include <QVector>
#include <QWidget>

namespace cs::ui {

class TokenStrip : public QWidget {
    Q_OBJECT
public:
    explicit TokenStrip(QWidget* parent = nullptr);

    void setTokens(const QStringList& tokens);          // display strings
    const QStringList& tokens() const { return m_tokens; }
    const QVector<double>& activations() const { return m_values; }
    void setActivations(const QVector<double>& values); // empty: no coloring
    void setTokenOfInterest(int index);                 // does not emit
    int tokenOfInterest() const { return m_current; }
    QRect chipRect(int index) const;                    // for tests and tooltips

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

Q_SIGNALS:
    void tokenClicked(int index);

protected:
    void paintEvent(QPaintEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;
    bool event(QEvent* event) override;

private:
    void layoutChips();
    int chipAt(const QPoint& pos) const;

    QStringList m_tokens;
    QVector<double> m_values;
    QVector<QRect> m_rects;
    int m_current = -1;
    int m_height = 32;
};

class EngineClient;

// The second prompt's tokens under the first's (product.md §3 "Two prompts"): shown while the latest
// run compares two prompts, with the positions whose token differs from the first prompt's colored.
class ComparedTokenStrip : public TokenStrip {
    Q_OBJECT
public:
    explicit ComparedTokenStrip(QWidget* parent = nullptr);
    void follow(const EngineClient* client);
};

} // namespace cs::ui
