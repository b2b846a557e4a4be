#include "ui/widgets/second_prompt_bar.h"

#include "ui/widgets/objective_editor.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>

namespace cs::ui {

SecondPromptBar::SecondPromptBar(QWidget* parent)
    : QWidget(parent), m_prompt(new QLineEdit), m_target(new QLineEdit), m_distractor(new QLineEdit), m_remove(new QPushButton(tr("Remove second prompt")))
{
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 2, 0, 2);
    m_prompt->setPlaceholderText(tr("Second prompt"));
    m_prompt->setClearButtonEnabled(true);
    m_target->setPlaceholderText(tr("first prompt's"));
    m_target->setToolTip(tr("Targets of the second prompt (several separated by |); empty: the first prompt's"));
    m_target->setMaximumWidth(140);
    m_distractor->setPlaceholderText(tr("first prompt's"));
    m_distractor->setToolTip(tr("Distractors of the second prompt; empty with empty targets: the first prompt's"));
    m_distractor->setMaximumWidth(140);
    layout->addWidget(new QLabel(tr("Right:")));
    layout->addWidget(m_prompt, 1);
    layout->addWidget(new QLabel(tr("target")));
    layout->addWidget(m_target);
    layout->addWidget(new QLabel(tr("distractor")));
    layout->addWidget(m_distractor);
    layout->addWidget(m_remove);
    for (QLineEdit* f : {m_prompt, m_target, m_distractor})
        connect(f, &QLineEdit::returnPressed, this, &SecondPromptBar::returnPressed);
    connect(m_remove, &QPushButton::clicked, this, &SecondPromptBar::removeRequested);
    hide();
}

void SecondPromptBar::setSecondPrompt(const std::optional<Session::SecondPrompt>& second)
{
    if (!second) {
        hide();
        return;
    }
    m_prompt->setText(QString::fromStdString(second->prompt));
    m_target->setText(ObjectiveEditor::fieldText(second->targets));
    m_distractor->setText(ObjectiveEditor::fieldText(second->distractors));
    show();
}

std::optional<Session::SecondPrompt> SecondPromptBar::secondPrompt() const
{
    if (isHidden())
        return std::nullopt;
    Session::SecondPrompt s;
    s.prompt = m_prompt->text().toStdString();
    s.targets = ObjectiveEditor::tokenTexts(m_target->text());
    s.distractors = ObjectiveEditor::tokenTexts(m_distractor->text());
    return s;
}

} // namespace cs::ui
