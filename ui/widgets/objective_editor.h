#pragma once
// The objective editor of the toolbar (product.md §3, §5.1): target and distractor token lists as
// chips (each checked to be one token as it is typed, the tokenization shown when it is not), a swap
// button, the objective kind (logit difference, logit minus mean, probability) and a warning chip when
// the prompt or a target looks mistyped.

#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"

#include <memory>

#include <QWidget>

class QComboBox;
class QToolButton;

namespace cs::ui {

class EngineClient;
class TokenChipEditor;
class WarningChip;

class ObjectiveEditor : public QWidget {
    Q_OBJECT
public:
    explicit ObjectiveEditor(QWidget* parent = nullptr);

    // Takes the tokenizer of each model the client opens (the live one-token check).
    void follow(const EngineClient* client);

    Session::Objective objective() const;
    void setObjective(const Session::Objective& objective);

    // The prompt the objective is for: a trailing space is warned about (GPT-2 tokens start with one).
    void setPrompt(const QString& prompt);
    QString warning() const;   // the warning chip's whole text; empty when nothing looks wrong
    // The open model's tokenizer (null: no per-token check).
    void setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer);
    // The targets and distractors that are not one token each, as "“text” is n tokens: ·tok|en".
    QStringList notOneToken() const;

    TokenChipEditor* targetField() const { return m_target; }
    TokenChipEditor* distractorField() const { return m_distractor; }
    QComboBox* kindChooser() const { return m_kind; }
    QToolButton* swapButton() const { return m_swap; }
    WarningChip* warningLabel() const { return m_warning; }

    void swap();

Q_SIGNALS:
    void returnPressed();

private:
    void updateWarning();

    TokenChipEditor* m_target = nullptr;
    TokenChipEditor* m_distractor = nullptr;
    QToolButton* m_swap = nullptr;
    QComboBox* m_kind = nullptr;
    WarningChip* m_warning = nullptr;
    QString m_prompt;
};

} // namespace cs::ui
