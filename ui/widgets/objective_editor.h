#pragma once
// The objective editor of the toolbar (product.md §3, §5.1): target and distractor token lists, a
// swap button, the objective kind (logit difference, logit minus mean, probability) and a warning when
// the prompt or a target looks mistyped. Several tokens go in one field separated by '|' (a token may
// be ',' or ' ', never '|' in GPT-2's common vocabulary); each must be one token: with the model's
// tokenizer every piece is checked as it is typed, and one that is not a single token is shown with
// its tokenization in the warning chip (the run refuses it too).

#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"

#include <memory>

#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;
class QToolButton;

namespace cs::ui {

class ObjectiveEditor : public QWidget {
    Q_OBJECT
public:
    explicit ObjectiveEditor(QWidget* parent = nullptr);

    Session::Objective objective() const;
    void setObjective(const Session::Objective& objective);
    // Splits a field's text into token texts (spaces kept; empty pieces dropped).
    static std::vector<std::string> tokenTexts(const QString& field);
    // The field's text for token texts (tokenTexts' inverse).
    static QString fieldText(const std::vector<std::string>& tokens);

    // The prompt the objective is for: a trailing space is warned about (GPT-2 tokens start with one).
    void setPrompt(const QString& prompt);
    QString warning() const;   // empty when nothing looks wrong
    // The open model's tokenizer (null: no per-token check).
    void setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer);
    // Token texts of the fields that are not one token each, as "text → ·tok|en" (empty without a tokenizer).
    QStringList notOneToken() const;

    QLineEdit* targetField() const { return m_target; }
    QLineEdit* distractorField() const { return m_distractor; }
    QComboBox* kindChooser() const { return m_kind; }
    QToolButton* swapButton() const { return m_swap; }
    QLabel* warningLabel() const { return m_warning; }

    void swap();

Q_SIGNALS:
    void returnPressed();

private:
    void updateWarning();
    QStringList notOneToken(const QLineEdit* field) const;

    QLineEdit* m_target = nullptr;
    QLineEdit* m_distractor = nullptr;
    QToolButton* m_swap = nullptr;
    QComboBox* m_kind = nullptr;
    QLabel* m_warning = nullptr;
    QString m_prompt;
    QString m_warningText; // the chip's whole text (the label shows it elided)
    std::shared_ptr<const Gpt2Tokenizer> m_tokenizer;
};

} // namespace cs::ui
