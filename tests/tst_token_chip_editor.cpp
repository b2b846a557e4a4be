// The token chip editor (product.md §3, the objective editor), alone and inside the objective editor
// and the second prompt row: add with Enter, remove with a chip's button or Backspace, the live
// one-token check with the tokenization on the chip, swap, and the session round trip of the lists.

#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"
#include "ui/engine/view_types.h"
#include "ui/widgets/objective_editor.h"
#include "ui/widgets/second_prompt_bar.h"
#include "ui/widgets/token_chip_editor.h"

#include <QComboBox>
#include <QLineEdit>
#include <QSignalSpy>
#include <QTest>
#include <QToolButton>

#include <filesystem>

using namespace cs;
using namespace cs::ui;

namespace {

std::shared_ptr<const Gpt2Tokenizer> tinyTokenizer()
{
    static const auto t = std::make_shared<const Gpt2Tokenizer>(
        Gpt2Tokenizer::fromDirectory(std::filesystem::path(TEST_DATA_DIR) / "tiny-gpt2"));
    return t;
}

// What the model's tokenizer makes of `text`, as a chip shows it ("·Mar|zip|an|orama").
QString tokenization(const std::string& text)
{
    QStringList pieces;
    for (int id : tinyTokenizer()->encode(text))
        pieces << displayToken(tinyTokenizer()->tokenString(id));
    return pieces.join(u'|');
}

using Tokens = std::vector<std::string>;

} // namespace

class TestTokenChipEditor : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void addWithEnterAndRemove()
    {
        TokenChipEditor e(QStringLiteral("add"));
        e.show();
        e.setTokenizer(tinyTokenizer());
        QSignalSpy changed(&e, &TokenChipEditor::tokensChanged);
        QSignalSpy run(&e, &TokenChipEditor::returnPressed);
        QTest::keyClicks(e.input(), QStringLiteral(" Mary"));
        // Typed but not added yet: it counts (a Run takes it), and is not a chip.
        QCOMPARE(e.tokens(), Tokens{" Mary"});
        QCOMPARE(e.chipCount(), 0);
        QTest::keyClick(e.input(), Qt::Key_Return);
        QCOMPARE(e.chipCount(), 1);
        QCOMPARE(e.chipText(0), QStringLiteral("·Mary"));
        QVERIFY(e.input()->text().isEmpty());
        QCOMPARE(run.count(), 0); // Enter with text adds, it does not run
        QTest::keyClicks(e.input(), QStringLiteral(" John"));
        QTest::keyClick(e.input(), Qt::Key_Return);
        QTest::keyClicks(e.input(), QStringLiteral(" drink"));
        QTest::keyClick(e.input(), Qt::Key_Return);
        QCOMPARE(e.tokens(), (Tokens{" Mary", " John", " drink"}));
        QVERIFY(changed.count() > 0);

        // The middle chip's remove button, then Backspace in the empty field removes the last.
        QTest::mouseClick(e.removeButton(1), Qt::LeftButton);
        QCOMPARE(e.tokens(), (Tokens{" Mary", " drink"}));
        QCOMPARE(e.chipText(1), QStringLiteral("·drink"));
        QTest::keyClick(e.input(), Qt::Key_Backspace);
        QCOMPARE(e.tokens(), Tokens{" Mary"});
        // Backspace in a field with text edits the text, not the chips.
        QTest::keyClicks(e.input(), QStringLiteral("ab"));
        QTest::keyClick(e.input(), Qt::Key_Backspace);
        QCOMPARE(e.tokens(), (Tokens{" Mary", "a"}));
        e.input()->clear();

        // Enter in the empty field asks for a run.
        QTest::keyClick(e.input(), Qt::Key_Return);
        QCOMPARE(run.count(), 1);
        QCOMPARE(e.tokens(), Tokens{" Mary"});
    }

    void multiTokenChipShowsItsTokenization()
    {
        const std::string word = " Marzipanorama";
        QVERIFY(tinyTokenizer()->encode(word).size() > 1);
        const QString expected = tokenization(word);
        TokenChipEditor e(QStringLiteral("add"));
        e.show();
        e.setTokens({" Mary", word});
        // Without a tokenizer nothing is checked.
        QVERIFY(e.notOneToken().isEmpty());
        QCOMPARE(e.chipText(1), QStringLiteral("·Marzipanorama"));
        e.setTokenizer(tinyTokenizer());
        QVERIFY(e.chipIsOneToken(0));
        QVERIFY(!e.chipIsOneToken(1));
        QCOMPARE(e.chipText(1), expected);
        const QString line = QStringLiteral("“·Marzipanorama” is %1 tokens: %2").arg(tinyTokenizer()->encode(word).size()).arg(expected);
        QCOMPARE(e.notOneToken(), QStringList{line});
        // The field is checked as it is typed.
        QTest::keyClicks(e.input(), QStringLiteral(" Marzipanorama"));
        QCOMPARE(e.notOneToken().size(), 2);
        QVERIFY(e.input()->styleSheet().contains(QStringLiteral("border")));
        QVERIFY(e.input()->toolTip().contains(expected));
        e.input()->clear();
        QVERIFY(e.input()->styleSheet().isEmpty());
        // Disabled (the distractors of a probability objective), its tokens are not warned about.
        e.setEnabled(false);
        QVERIFY(e.notOneToken().isEmpty());
    }

    void objectiveEditorSwapAndWarningChip()
    {
        ObjectiveEditor editor;
        editor.show();
        editor.setTokenizer(tinyTokenizer());
        editor.setPrompt(QStringLiteral("When Mary and John went to the store, John gave a drink to"));
        editor.setObjective({"logit_diff", {" Mary", " Marzipanorama"}, {" John"}});
        QVERIFY(editor.warning().contains(tokenization(" Marzipanorama")));
        // The chip itself says it briefly (the red chip shows the tokenization); its tooltip has it all.
        QCOMPARE(editor.warningLabel()->text(), QStringLiteral("⚠ not one token"));
        QVERIFY(editor.warningLabel()->toolTip().contains(tokenization(" Marzipanorama")));
        QTest::mouseClick(editor.targetField()->removeButton(1), Qt::LeftButton);
        QVERIFY(editor.warning().isEmpty());
        QTest::mouseClick(editor.swapButton(), Qt::LeftButton);
        QCOMPARE(editor.objective().targets, Tokens{" John"});
        QCOMPARE(editor.objective().distractors, Tokens{" Mary"});
        QCOMPARE(editor.targetField()->chipText(0), QStringLiteral("·John"));
        // Swap takes text typed but not added yet along.
        QTest::keyClicks(editor.distractorField()->input(), QStringLiteral(" drink"));
        QTest::mouseClick(editor.swapButton(), Qt::LeftButton);
        QCOMPARE(editor.objective().targets, (Tokens{" Mary", " drink"}));
        QCOMPARE(editor.targetField()->chipCount(), 2);
        // The warning chip: a trailing space, a target without its leading space.
        editor.setPrompt(QStringLiteral("gave a drink to "));
        QTest::keyClicks(editor.targetField()->input(), QStringLiteral("Anna"));
        QVERIFY(editor.warning().contains(QStringLiteral("the prompt ends with a space")));
        QVERIFY(editor.warning().contains(QStringLiteral("“Anna” has no leading space")));
        QCOMPARE(editor.warningLabel()->text(), QStringLiteral("⚠ prompt ends with a space, no leading space"));
        // A probability objective has no distractors: they are left out, and not warned about.
        editor.targetField()->setTokens({" Mary"});
        editor.setPrompt(QStringLiteral("gave a drink to"));
        editor.distractorField()->setTokens({" Marzipanorama"});
        QVERIFY(!editor.warning().isEmpty());
        editor.kindChooser()->setCurrentIndex(editor.kindChooser()->findData(QStringLiteral("prob")));
        QVERIFY(editor.warning().isEmpty());
        QVERIFY(editor.objective().distractors.empty());
    }

    void sessionRoundTripOfTheLists()
    {
        ObjectiveEditor editor;
        editor.show();
        editor.setTokenizer(tinyTokenizer());
        for (const char* t : {" Mary", " drink"}) {
            QTest::keyClicks(editor.targetField()->input(), QString::fromUtf8(t));
            QTest::keyClick(editor.targetField()->input(), Qt::Key_Return);
        }
        QTest::keyClicks(editor.distractorField()->input(), QStringLiteral(" John")); // not added: still saved
        SecondPromptBar second;
        second.setTokenizer(tinyTokenizer());
        second.setSecondPrompt(Session::SecondPrompt{"Then John gave a drink to", {}, {}});
        QTest::keyClicks(second.targetField()->input(), QStringLiteral(" John"));
        QTest::keyClick(second.targetField()->input(), Qt::Key_Return);

        Session s;
        s.prompt = "When Mary and John went to the store, John gave a drink to";
        s.objective = editor.objective();
        s.secondPrompt = second.secondPrompt();
        QCOMPARE(s.objective.targets, (Tokens{" Mary", " drink"}));
        QCOMPARE(s.objective.distractors, Tokens{" John"});
        QCOMPARE(s.secondPrompt->targets, Tokens{" John"});
        QVERIFY(s.secondPrompt->distractors.empty());
        const Session back = sessionFromJson(sessionToJson(s), "round-trip.circuitscope.json");
        QVERIFY(back == s);

        ObjectiveEditor restored;
        restored.setObjective(back.objective);
        QVERIFY(restored.objective() == s.objective);
        QCOMPARE(restored.targetField()->chipCount(), 2);
        QCOMPARE(restored.distractorField()->chipCount(), 1);
        QVERIFY(restored.targetField()->input()->text().isEmpty());
        SecondPromptBar restoredSecond;
        restoredSecond.setSecondPrompt(back.secondPrompt);
        QVERIFY(restoredSecond.secondPrompt() == s.secondPrompt);
    }

    void secondPromptChipsAreCheckedLive()
    {
        SecondPromptBar bar;
        bar.show();
        bar.setTokenizer(tinyTokenizer());
        bar.setSecondPrompt(Session::SecondPrompt{"Then John gave a drink to", {}, {}});
        QVERIFY(bar.warning().isEmpty());
        QTest::keyClicks(bar.targetField()->input(), QStringLiteral(" Marzipanorama"));
        QVERIFY2(bar.warning().contains(tokenization(" Marzipanorama")), qPrintable(bar.warning()));
        QTest::keyClick(bar.targetField()->input(), Qt::Key_Return);
        QVERIFY(!bar.targetField()->chipIsOneToken(0));
        QCOMPARE(bar.targetField()->chipText(0), tokenization(" Marzipanorama"));
        QTest::mouseClick(bar.targetField()->removeButton(0), Qt::LeftButton);
        QVERIFY(bar.warning().isEmpty());
        bar.promptField()->setText(QStringLiteral("Then John gave a drink to "));
        QVERIFY(bar.warning().contains(QStringLiteral("the prompt ends with a space")));
    }
};

QTEST_MAIN(TestTokenChipEditor)
#include "tst_token_chip_editor.moc"
