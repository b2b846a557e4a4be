#pragma once
// Token effect rows under the token strip (product.md §3, §5.1 "token_effects"): one row per kind
// (embeddings, neurons, heads by query token, heads by key token, latents), each token's cell colored
// by the summed estimated total effect of that kind at that token; hover gives the exact value.
// Hidden without an objective.

#include "ui/engine/engine_types.h"

#include <QWidget>

namespace cs::ui {

class EngineClient;

class TokenEffectsView : public QWidget {
    Q_OBJECT
public:
    explicit TokenEffectsView(QWidget* parent = nullptr);
    // Shows the token effects of every run `client` shows; none after a model opens.
    void follow(const EngineClient* client);

    // No rows (no objective): the view hides itself.
    void setEffects(const QVector<TokenEffectRow>& rows, const QStringList& tokens);
    const QVector<TokenEffectRow>& rows() const { return m_rows; }
    static QString kindLabel(const QString& kind);

    QRect cellRect(int row, int token) const;
    // "neurons at ·Mary (7): 0.123456" for the cell under `pos`; empty elsewhere.
    QString toolTipAt(const QPoint& pos) const;

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;
    bool event(QEvent* event) override;

private:
    int labelWidth() const;

    QVector<TokenEffectRow> m_rows;
    QStringList m_tokens;
    double m_maxAbs = 0;
};

} // namespace cs::ui
