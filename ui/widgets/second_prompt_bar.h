#pragma once
// The second prompt row (product.md §3 "Two prompts"): its prompt, targets and distractors (empty:
// the first prompt's), and Remove. Both prompts run with the same ablations and trace.

#include "core/session/session.h"

#include <QWidget>

class QLineEdit;
class QPushButton;

namespace cs::ui {

class SecondPromptBar : public QWidget {
    Q_OBJECT
public:
    explicit SecondPromptBar(QWidget* parent = nullptr);

    // nullopt hides the row.
    void setSecondPrompt(const std::optional<Session::SecondPrompt>& second);
    // What the row holds; nullopt when it is hidden.
    std::optional<Session::SecondPrompt> secondPrompt() const;

    QLineEdit* promptField() const { return m_prompt; }
    QLineEdit* targetField() const { return m_target; }
    QLineEdit* distractorField() const { return m_distractor; }
    QPushButton* removeButton() const { return m_remove; }

Q_SIGNALS:
    void removeRequested();
    void returnPressed();

private:
    QLineEdit* m_prompt;
    QLineEdit* m_target;
    QLineEdit* m_distractor;
    QPushButton* m_remove;
};

} // namespace cs::ui
