#pragma once
// The second prompt row (product.md §3 "Two prompts"): its prompt, targets and distractors as token
// chips (empty: the first prompt's; checked to be one token each as they are typed, like the
// toolbar's), a warning chip, and Remove. Both prompts run with the same ablations and trace.

#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"

#include <memory>

#include <QWidget>

class QLineEdit;
class QPushButton;

namespace cs::ui {

class EngineClient;
class TokenChipEditor;
class WarningChip;

class SecondPromptBar : public QWidget {
    Q_OBJECT
public:
    explicit SecondPromptBar(QWidget* parent = nullptr);

    // Takes the tokenizer of each model the client opens (the live one-token check).
    void follow(const EngineClient* client);
    void setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer);

    // nullopt hides the row.
    void setSecondPrompt(const std::optional<Session::SecondPrompt>& second);
    // What the row holds; nullopt when it is hidden.
    std::optional<Session::SecondPrompt> secondPrompt() const;
    QString warning() const; // the warning chip's whole text; empty when nothing looks wrong

    QLineEdit* promptField() const { return m_prompt; }
    TokenChipEditor* targetField() const { return m_target; }
    TokenChipEditor* distractorField() const { return m_distractor; }
    QPushButton* removeButton() const { return m_remove; }

Q_SIGNALS:
    void removeRequested();
    void returnPressed();

private:
    void updateWarning();

    QLineEdit* m_prompt;
    TokenChipEditor* m_target;
    TokenChipEditor* m_distractor;
    WarningChip* m_warning;
    QPushButton* m_remove;
};

} // namespace cs::ui
