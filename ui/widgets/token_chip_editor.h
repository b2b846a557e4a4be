#pragma once
// A list of tokens as chips (product.md §3, the objective editor): each chip shows a token ('·' for a
// leading space) with a remove button, and the field after the chips adds one on Enter (Backspace in
// the empty field removes the last). With the model's tokenizer every token is checked to be one token
// as it is typed: a chip that is not is drawn red and shows its tokenization ("·Mar|zip|an|orama"), its
// tooltip says why. The toolbar's targets and distractors and the second prompt's use it; what they hold
// stays a list of token texts (sessions and runs take them as they are).

#include "core/tokenizer/gpt2_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include <QLabel>
#include <QStringList>
#include <QWidget>

class QHBoxLayout;
class QLineEdit;
class QToolButton;

namespace cs::ui {

class TokenChipEditor : public QWidget {
    Q_OBJECT
public:
    explicit TokenChipEditor(const QString& placeholder, QWidget* parent = nullptr);

    // The chips' token texts (leading spaces kept), then the field's text when it holds one not added
    // yet: a Run takes what the user typed, Enter or not.
    std::vector<std::string> tokens() const;
    // Replaces the chips (empty texts dropped) and clears the field.
    void setTokens(const std::vector<std::string>& tokens);
    void addToken(const QString& text); // empty text: nothing
    void removeToken(int index);

    int chipCount() const { return int(m_tokens.size()); }
    // What chip `index` shows: the display token, or its tokenization when it is not one token.
    QString chipText(int index) const;
    bool chipIsOneToken(int index) const;
    QToolButton* removeButton(int index) const;
    QLineEdit* input() const { return m_input; }

    // The open model's tokenizer (null: nothing is checked).
    void setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer);
    // One line per token that is not one token: "“·Marzipanorama” is 4 tokens: ·Mar|zip|an|orama".
    // Empty without a tokenizer and while the editor is disabled (its tokens are not used then).
    QStringList notOneToken() const;

Q_SIGNALS:
    void tokensChanged();
    void returnPressed(); // Enter in the empty field

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;
    void changeEvent(QEvent* event) override;

private:
    // The tokenization of `text` when it is not one token (empty when it is, or without a tokenizer).
    QStringList piecesIfNotOne(const std::string& text) const;
    void rebuildChips();
    void checkInput();
    void commitInput();
    int inputWidth() const;

    std::vector<std::string> m_tokens;
    std::vector<QWidget*> m_chips;
    QHBoxLayout* m_layout = nullptr;
    QLineEdit* m_input = nullptr;
    QString m_placeholder; // while there are no chips
    std::shared_ptr<const Gpt2Tokenizer> m_tokenizer;
};

// What the warning chip lists for a prompt and its objective: tokens that are not one token, a prompt
// that ends with a space, the first target without a leading space (GPT-2's word tokens start with one).
// `full` says each problem in a sentence; `brief` names each kind once, for the chip itself.
struct ObjectiveProblems {
    QStringList full, brief;
};
ObjectiveProblems objectiveProblems(const QString& prompt, const TokenChipEditor& targets, const TokenChipEditor& distractors);

// The warning chip: the problems in brief ("⚠ not one token, no leading space": a red chip shows its
// tokenization itself), so that it fits the toolbar; the tooltip and fullText() have every sentence.
// Hidden without problems.
class WarningChip : public QLabel {
    Q_OBJECT
public:
    explicit WarningChip(QWidget* parent = nullptr);
    void setProblems(const ObjectiveProblems& problems);
    QString fullText() const { return isHidden() ? QString() : m_text; }

private:
    QString m_text;
};

} // namespace cs::ui
