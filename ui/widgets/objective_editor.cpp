#include "ui/widgets/objective_editor.h"

#include "ui/engine/engine.h"
#include "ui/widgets/token_chip_editor.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QToolButton>

namespace cs::ui {

namespace {

struct Kind {
    const char* name;
    const char* label;
};
const Kind kKinds[] = {
    {"logit_diff", "logit difference"},
    {"logit_minus_mean", "logit − mean"},
    {"prob", "probability"},
};

} // namespace

ObjectiveEditor::ObjectiveEditor(QWidget* parent) : QWidget(parent)
{
    setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Preferred); // the prompt field takes a wide toolbar's rest
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(4);
    m_target = new TokenChipEditor(tr("e.g. ␣Mary"));
    m_target->setToolTip(tr("Target tokens, each a single token (Enter adds one). Type the leading space: \" Mary\"."));
    m_distractor = new TokenChipEditor(tr("optional"));
    m_distractor->setToolTip(tr("Distractor tokens whose mean logit is subtracted (logit difference only)."));
    for (TokenChipEditor* f : {m_target, m_distractor}) {
        connect(f, &TokenChipEditor::returnPressed, this, &ObjectiveEditor::returnPressed);
        connect(f, &TokenChipEditor::tokensChanged, this, &ObjectiveEditor::updateWarning);
    }
    m_swap = new QToolButton;
    m_swap->setText(QStringLiteral("⇄"));
    m_swap->setToolTip(tr("Swap targets and distractors"));
    connect(m_swap, &QToolButton::clicked, this, &ObjectiveEditor::swap);
    m_kind = new QComboBox;
    for (const Kind& k : kKinds)
        m_kind->addItem(tr(k.label), QString::fromLatin1(k.name));
    m_kind->setToolTip(tr("What the run differentiates at the last token"));
    connect(m_kind, &QComboBox::currentIndexChanged, this, [this] {
        // Only the logit difference has distractors (the core refuses them for the others).
        m_distractor->setEnabled(m_kind->currentIndex() == 0);
        updateWarning();
    });
    m_warning = new WarningChip;

    layout->addWidget(new QLabel(tr("target")));
    layout->addWidget(m_target);
    layout->addWidget(m_swap);
    layout->addWidget(new QLabel(tr("distractor")));
    layout->addWidget(m_distractor);
    layout->addWidget(m_kind);
    layout->addWidget(m_warning);
}

void ObjectiveEditor::follow(const EngineClient* client)
{
    connect(client, &EngineClient::modelOpened, this, [this](const ModelSummary& s) { setTokenizer(s.tokenizer); });
}

Session::Objective ObjectiveEditor::objective() const
{
    Session::Objective o;
    o.kind = m_kind->currentData().toString().toStdString();
    o.targets = m_target->tokens();
    if (m_distractor->isEnabled())
        o.distractors = m_distractor->tokens();
    return o;
}

void ObjectiveEditor::setObjective(const Session::Objective& o)
{
    const int kind = m_kind->findData(QString::fromStdString(o.kind));
    m_kind->setCurrentIndex(kind < 0 ? 0 : kind);
    m_target->setTokens(o.targets);
    m_distractor->setTokens(o.distractors);
}

void ObjectiveEditor::swap()
{
    const std::vector<std::string> targets = m_target->tokens();
    m_target->setTokens(m_distractor->tokens());
    m_distractor->setTokens(targets);
}

void ObjectiveEditor::setPrompt(const QString& prompt)
{
    m_prompt = prompt;
    updateWarning();
}

void ObjectiveEditor::setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer)
{
    m_target->setTokenizer(tokenizer);
    m_distractor->setTokenizer(std::move(tokenizer));
}

QStringList ObjectiveEditor::notOneToken() const
{
    return m_target->notOneToken() + m_distractor->notOneToken();
}

QString ObjectiveEditor::warning() const
{
    return m_warning->fullText();
}

void ObjectiveEditor::updateWarning()
{
    m_warning->setProblems(objectiveProblems(m_prompt, *m_target, *m_distractor));
}

} // namespace cs::ui
