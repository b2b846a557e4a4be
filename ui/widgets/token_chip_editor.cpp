#include "ui/widgets/token_chip_editor.h"

#include "ui/engine/view_types.h"

#include <QEvent>
#include <QFrame>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLineEdit>
#include <QToolButton>

namespace cs::ui {

namespace {

const char* const kChipStyle = "QFrame#tokenChip { background: #eef1f5; border: 1px solid #c9d1dc; border-radius: 9px; }";
const char* const kBadChipStyle = "QFrame#tokenChip { background: #fdecea; border: 1px solid #c5221f; border-radius: 9px; }"
                                  "QLabel { color: #8a1c12; }";

} // namespace

TokenChipEditor::TokenChipEditor(const QString& placeholder, QWidget* parent) : QWidget(parent)
{
    // As wide as its chips and field, never wider: a wide toolbar gives the rest to the prompt.
    setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Preferred);
    m_layout = new QHBoxLayout(this);
    m_layout->setContentsMargins(0, 0, 0, 0);
    m_layout->setSpacing(2);
    m_placeholder = placeholder;
    m_input = new QLineEdit;
    m_input->setPlaceholderText(placeholder);
    // Room for a typical token; a long one scrolls inside the field rather than widening the toolbar.
    m_input->setFixedWidth(inputWidth());
    m_input->installEventFilter(this);
    connect(m_input, &QLineEdit::returnPressed, this, [this] {
        if (m_input->text().isEmpty())
            Q_EMIT returnPressed();
        else
            commitInput();
    });
    connect(m_input, &QLineEdit::textChanged, this, [this] {
        m_input->setFixedWidth(inputWidth());
        checkInput();
        Q_EMIT tokensChanged();
    });
    m_layout->addWidget(m_input);
}

std::vector<std::string> TokenChipEditor::tokens() const
{
    std::vector<std::string> out = m_tokens;
    if (!m_input->text().isEmpty())
        out.push_back(m_input->text().toStdString());
    return out;
}

void TokenChipEditor::setTokens(const std::vector<std::string>& tokens)
{
    m_tokens.clear();
    for (const auto& t : tokens) {
        if (!t.empty())
            m_tokens.push_back(t);
    }
    {
        const QSignalBlocker block(m_input);
        m_input->clear();
    }
    rebuildChips();
    checkInput();
    Q_EMIT tokensChanged();
}

void TokenChipEditor::addToken(const QString& text)
{
    if (text.isEmpty())
        return;
    m_tokens.push_back(text.toStdString());
    rebuildChips();
    Q_EMIT tokensChanged();
}

void TokenChipEditor::removeToken(int index)
{
    if (index < 0 || index >= chipCount())
        return;
    m_tokens.erase(m_tokens.begin() + index);
    rebuildChips();
    Q_EMIT tokensChanged();
}

void TokenChipEditor::commitInput()
{
    const QString text = m_input->text();
    {
        // One tokensChanged for the move from the field to a chip.
        const QSignalBlocker block(m_input);
        m_input->clear();
    }
    checkInput();
    addToken(text);
}

QStringList TokenChipEditor::piecesIfNotOne(const std::string& text) const
{
    if (!m_tokenizer)
        return {};
    const std::vector<int> ids = m_tokenizer->encode(text);
    if (ids.size() == 1)
        return {};
    QStringList pieces;
    for (int id : ids)
        pieces << displayToken(m_tokenizer->tokenString(id));
    return pieces;
}

QString TokenChipEditor::chipText(int index) const
{
    const std::string& text = m_tokens.at(std::size_t(index));
    const QStringList pieces = piecesIfNotOne(text);
    return pieces.isEmpty() ? displayToken(text) : pieces.join(u'|');
}

bool TokenChipEditor::chipIsOneToken(int index) const
{
    return piecesIfNotOne(m_tokens.at(std::size_t(index))).isEmpty();
}

QToolButton* TokenChipEditor::removeButton(int index) const
{
    return m_chips.at(std::size_t(index))->findChild<QToolButton*>();
}

void TokenChipEditor::setTokenizer(std::shared_ptr<const Gpt2Tokenizer> tokenizer)
{
    m_tokenizer = std::move(tokenizer);
    rebuildChips();
    checkInput();
    Q_EMIT tokensChanged();
}

QStringList TokenChipEditor::notOneToken() const
{
    QStringList out;
    if (!isEnabled())
        return out;
    for (const auto& text : tokens()) {
        const QStringList pieces = piecesIfNotOne(text);
        if (!pieces.isEmpty())
            out << tr("“%1” is %n tokens: %2", nullptr, int(pieces.size())).arg(displayToken(text), pieces.join(u'|'));
    }
    return out;
}

void TokenChipEditor::rebuildChips()
{
    for (QWidget* chip : m_chips) {
        // A chip may be rebuilt from its own remove button's click: deleted once that has returned.
        chip->hide();
        chip->deleteLater();
    }
    m_chips.clear();
    for (int i = 0; i < chipCount(); ++i) {
        auto* chip = new QFrame;
        chip->setObjectName(QStringLiteral("tokenChip"));
        chip->setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Fixed);
        const bool one = chipIsOneToken(i);
        chip->setStyleSheet(QString::fromLatin1(one ? kChipStyle : kBadChipStyle));
        auto* row = new QHBoxLayout(chip);
        row->setContentsMargins(6, 0, 0, 0);
        row->setSpacing(0);
        auto* label = new QLabel(chipText(i));
        row->addWidget(label);
        auto* remove = new QToolButton;
        remove->setText(QStringLiteral("×"));
        remove->setAutoRaise(true);
        remove->setToolTip(tr("Remove"));
        row->addWidget(remove);
        const QString shown = displayToken(m_tokens[std::size_t(i)]);
        chip->setToolTip(one ? tr("%1 (one token)").arg(shown)
                             : tr("“%1” is not one token: the model reads it as %2.\nEach target and distractor must be one "
                                  "token of the model's vocabulary.")
                                   .arg(shown, chipText(i)));
        connect(remove, &QToolButton::clicked, this, [this, i] { removeToken(i); });
        m_layout->insertWidget(i, chip);
        chip->show(); // now, not when the layout's queued show comes: a click may follow at once
        m_chips.push_back(chip);
    }
    // With chips the field is only where the next one is typed: narrow, so that two editors and the
    // prompt still fit a 1280-pixel toolbar; it widens while it holds text.
    m_input->setPlaceholderText(m_tokens.empty() ? m_placeholder : QStringLiteral("+"));
    m_input->setFixedWidth(inputWidth());
    m_layout->activate();
}

int TokenChipEditor::inputWidth() const
{
    const int m = fontMetrics().horizontalAdvance(QStringLiteral("M"));
    return m * (m_tokens.empty() || !m_input->text().isEmpty() ? 7 : 3);
}

// The field is checked as it is typed, like a chip.
void TokenChipEditor::checkInput()
{
    const QStringList pieces = m_input->text().isEmpty() ? QStringList() : piecesIfNotOne(m_input->text().toStdString());
    const bool bad = !pieces.isEmpty();
    m_input->setStyleSheet(bad ? QStringLiteral("QLineEdit { border: 1px solid #c5221f; border-radius: 2px; }") : QString());
    m_input->setToolTip(bad ? tr("“%1” is %n tokens: %2", nullptr, int(pieces.size()))
                                  .arg(displayToken(m_input->text().toStdString()), pieces.join(u'|'))
                            : tr("Type a token and press Enter to add it (the leading space is part of it: “ Mary”).\n"
                                 "Enter in the empty field runs; Backspace in it removes the last token."));
}

bool TokenChipEditor::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == m_input && event->type() == QEvent::KeyPress && m_input->text().isEmpty() && chipCount() > 0 &&
        static_cast<QKeyEvent*>(event)->key() == Qt::Key_Backspace) {
        removeToken(chipCount() - 1);
        return true;
    }
    return QWidget::eventFilter(watched, event);
}

void TokenChipEditor::changeEvent(QEvent* event)
{
    // A disabled editor's tokens are not used (distractors of a probability objective): not warned about.
    if (event->type() == QEvent::EnabledChange)
        Q_EMIT tokensChanged();
    QWidget::changeEvent(event);
}

ObjectiveProblems objectiveProblems(const QString& prompt, const TokenChipEditor& targets, const TokenChipEditor& distractors)
{
    ObjectiveProblems p;
    p.full = targets.notOneToken() + distractors.notOneToken();
    if (!p.full.isEmpty())
        p.brief << QObject::tr("not one token");
    if (prompt.endsWith(u' ')) {
        p.full << QObject::tr("the prompt ends with a space");
        p.brief << QObject::tr("prompt ends with a space");
    }
    for (const auto& t : targets.tokens()) {
        if (t.front() != ' ') {
            p.full << QObject::tr("“%1” has no leading space").arg(QString::fromStdString(t));
            p.brief << QObject::tr("no leading space");
            break;
        }
    }
    return p;
}

WarningChip::WarningChip(QWidget* parent) : QLabel(parent)
{
    setStyleSheet(QStringLiteral("QLabel { background: #fff4ce; color: #6b4e00; border: 1px solid #f0d98c; border-radius: 8px; padding: 1px 6px; }"));
    hide();
}

void WarningChip::setProblems(const ObjectiveProblems& problems)
{
    if (problems.full.isEmpty()) {
        hide();
        clear();
        m_text.clear();
        return;
    }
    m_text = QStringLiteral("⚠ ") + problems.full.join(QStringLiteral("; "));
    setText(QStringLiteral("⚠ ") + problems.brief.join(QStringLiteral(", ")));
    setToolTip(m_text + QStringLiteral("\n\n") +
               tr("Each target and distractor must be one token of the model's vocabulary.\n"
                  "GPT-2's word tokens start with a space: the next word after “… to” is “ Mary”, so a prompt "
                  "should not end with a space and a target usually starts with one."));
    show();
}

} // namespace cs::ui
