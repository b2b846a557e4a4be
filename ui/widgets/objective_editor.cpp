#include "ui/widgets/objective_editor.h"

#include "ui/engine/view_types.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
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
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(4);
    const auto tokenField = [this](const QString& placeholder, const QString& tip) {
        auto* f = new QLineEdit;
        f->setPlaceholderText(placeholder);
        f->setToolTip(tip);
        f->setMaximumWidth(140);
        connect(f, &QLineEdit::returnPressed, this, &ObjectiveEditor::returnPressed);
        connect(f, &QLineEdit::textChanged, this, &ObjectiveEditor::updateWarning);
        return f;
    };
    m_target = tokenField(tr("e.g. ␣Mary"), tr("Target token(s), each a single token, several separated by |.\n"
                                               "Type the leading space: \" Mary\"."));
    m_distractor = tokenField(tr("optional"), tr("Distractor token(s) whose mean logit is subtracted (logit difference only)."));
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
    m_warning = new QLabel;
    m_warning->setStyleSheet(QStringLiteral("QLabel { background: #fff4ce; color: #6b4e00; border: 1px solid #f0d98c; border-radius: 8px; padding: 1px 6px; }"));
    m_warning->hide();

    layout->addWidget(new QLabel(tr("target")));
    layout->addWidget(m_target);
    layout->addWidget(m_swap);
    layout->addWidget(new QLabel(tr("distractor")));
    layout->addWidget(m_distractor);
    layout->addWidget(m_kind);
    layout->addWidget(m_warning);
}

std::vector<std::string> ObjectiveEditor::tokenTexts(const QString& field)
{
    std::vector<std::string> out;
    for (const QString& piece : field.split(u'|')) {
        if (!piece.isEmpty())
            out.push_back(piece.toStdString());
    }
    return out;
}

QString ObjectiveEditor::fieldText(const std::vector<std::string>& tokens)
{
    QStringList parts;
    for (const auto& t : tokens)
        parts << QString::fromStdString(t);
    return parts.join(u'|');
}

Session::Objective ObjectiveEditor::objective() const
{
    Session::Objective o;
    o.kind = m_kind->currentData().toString().toStdString();
    o.targets = tokenTexts(m_target->text());
    if (m_distractor->isEnabled())
        o.distractors = tokenTexts(m_distractor->text());
    return o;
}

void ObjectiveEditor::setObjective(const Session::Objective& o)
{
    const int kind = m_kind->findData(QString::fromStdString(o.kind));
    m_kind->setCurrentIndex(kind < 0 ? 0 : kind);
    m_target->setText(fieldText(o.targets));
    m_distractor->setText(fieldText(o.distractors));
}

void ObjectiveEditor::swap()
{
    const QString target = m_target->text();
    m_target->setText(m_distractor->text());
    m_distractor->setText(target);
}

void ObjectiveEditor::setPrompt(const QString& prompt)
{
    m_prompt = prompt;
    updateWarning();
}

void ObjectiveEditor::setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer)
{
    m_tokenizer = std::move(tokenizer);
    updateWarning();
}

QStringList ObjectiveEditor::notOneToken(const QLineEdit* field) const
{
    QStringList out;
    if (!m_tokenizer || !field->isEnabled())
        return out;
    for (const auto& text : tokenTexts(field->text())) {
        const std::vector<int> ids = m_tokenizer->encode(text);
        if (ids.size() == 1)
            continue;
        QStringList pieces;
        for (int id : ids)
            pieces << displayToken(m_tokenizer->tokenString(id));
        out << tr("“%1” is %n tokens: %2", nullptr, int(ids.size())).arg(displayToken(text), pieces.join(u'|'));
    }
    return out;
}

QStringList ObjectiveEditor::notOneToken() const
{
    return notOneToken(m_target) + notOneToken(m_distractor);
}

QString ObjectiveEditor::warning() const
{
    return m_warning->isHidden() ? QString() : m_warningText;
}

void ObjectiveEditor::updateWarning()
{
    QStringList problems;
    // A field with a piece that is not one token gets a red frame, as well as the chip.
    for (QLineEdit* field : {m_target, m_distractor}) {
        const QStringList bad = notOneToken(field);
        field->setStyleSheet(bad.isEmpty() ? QString() : QStringLiteral("QLineEdit { border: 1px solid #c5221f; border-radius: 2px; }"));
        problems += bad;
    }
    if (m_prompt.endsWith(u' '))
        problems << tr("the prompt ends with a space");
    const std::vector<std::string> targets = tokenTexts(m_target->text());
    for (const auto& t : targets) {
        if (!t.empty() && t.front() != ' ') {
            problems << tr("“%1” has no leading space").arg(QString::fromStdString(t));
            break;
        }
    }
    if (problems.isEmpty()) {
        m_warning->hide();
        m_warning->clear();
        m_warningText.clear();
        return;
    }
    m_warningText = QStringLiteral("⚠ ") + problems.join(QStringLiteral("; "));
    // Elided in the toolbar (a long tokenization would push the Run button off a 1280-pixel screen);
    // the tooltip has all of it.
    m_warning->setText(m_warning->fontMetrics().elidedText(m_warningText, Qt::ElideRight, 300));
    m_warning->setToolTip(m_warningText + QStringLiteral("\n\n") +
                          tr("Each target and distractor must be one token of the model's vocabulary.\n"
                             "GPT-2's word tokens start with a space: the next word after “… to” is “ Mary”, so a prompt "
                             "should not end with a space and a target usually starts with one."));
    m_warning->show();
}

} // namespace cs::ui
