#include "ui/widgets/second_prompt_bar.h"

#include "ui/engine/engine.h"
#include "ui/widgets/token_chip_editor.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>

namespace cs::ui {

SecondPromptBar::SecondPromptBar(QWidget* parent)
    : QWidget(parent),
      m_prompt(new QLineEdit),
      m_target(new TokenChipEditor(tr("as left"))),
      m_distractor(new TokenChipEditor(tr("as left"))),
      m_warning(new WarningChip),
      m_remove(new QPushButton(tr("Remove second prompt")))
{
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 2, 0, 2);
    m_prompt->setPlaceholderText(tr("Second prompt"));
    m_prompt->setClearButtonEnabled(true);
    m_target->setToolTip(tr("Targets of the second prompt, each a single token; none: the first prompt's"));
    m_distractor->setToolTip(tr("Distractors of the second prompt; none with no targets: the first prompt's"));
    layout->addWidget(new QLabel(tr("Right:")));
    layout->addWidget(m_prompt, 1);
    layout->addWidget(new QLabel(tr("target")));
    layout->addWidget(m_target);
    layout->addWidget(new QLabel(tr("distractor")));
    layout->addWidget(m_distractor);
    layout->addWidget(m_warning);
    layout->addWidget(m_remove);
    connect(m_prompt, &QLineEdit::returnPressed, this, &SecondPromptBar::returnPressed);
    connect(m_prompt, &QLineEdit::textChanged, this, &SecondPromptBar::updateWarning);
    for (TokenChipEditor* f : {m_target, m_distractor}) {
        connect(f, &TokenChipEditor::returnPressed, this, &SecondPromptBar::returnPressed);
        connect(f, &TokenChipEditor::tokensChanged, this, &SecondPromptBar::updateWarning);
    }
    connect(m_remove, &QPushButton::clicked, this, &SecondPromptBar::removeRequested);
    hide();
}

void SecondPromptBar::follow(const EngineClient* client)
{
    connect(client, &EngineClient::modelOpened, this, [this](const ModelSummary& s) { setTokenizer(s.tokenizer); });
}

void SecondPromptBar::setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer)
{
    m_target->setTokenizer(tokenizer);
    m_distractor->setTokenizer(std::move(tokenizer));
}

void SecondPromptBar::setSecondPrompt(const std::optional<Session::SecondPrompt>& second)
{
    if (!second) {
        hide();
        return;
    }
    m_prompt->setText(QString::fromStdString(second->prompt));
    m_target->setTokens(second->targets);
    m_distractor->setTokens(second->distractors);
    show();
}

std::optional<Session::SecondPrompt> SecondPromptBar::secondPrompt() const
{
    if (isHidden())
        return std::nullopt;
    Session::SecondPrompt s;
    s.prompt = m_prompt->text().toStdString();
    s.targets = m_target->tokens();
    s.distractors = m_distractor->tokens();
    return s;
}

QString SecondPromptBar::warning() const
{
    return m_warning->fullText();
}

void SecondPromptBar::updateWarning()
{
    m_warning->setProblems(objectiveProblems(m_prompt->text(), *m_target, *m_distractor));
}

} // namespace cs::ui
