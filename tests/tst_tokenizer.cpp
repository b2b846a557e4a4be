// The GPT-2 tokenizer against ids produced by the reference (Hugging Face `tokenizers`), plus
// round trips, tokenizer.json loading, UTF-8 sanitising and bad input files.

#include "core/tokenizer/gpt2_tokenizer.h"
#include "core/util/errors.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QRegularExpression>
#include <QTest>

#include <climits>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::literals;

namespace {

const QString kDataDir = QStringLiteral(TEST_DATA_DIR);
const QString kGpt2Dir = kDataDir + QStringLiteral("/gpt2-tokenizer");

std::filesystem::path toPath(const QString& path)
{
    return std::filesystem::path(path.toStdString());
}

std::string toStd(const QByteArray& bytes)
{
    return std::string(bytes.constData(), static_cast<std::size_t>(bytes.size()));
}

QByteArray toBytes(std::string_view s)
{
    return QByteArray(s.data(), static_cast<qsizetype>(s.size()));
}

QByteArray utf8(std::u16string_view text)
{
    return QString::fromUtf16(text.data(), static_cast<qsizetype>(text.size())).toUtf8();
}

QList<int> toList(const std::vector<int>& ids)
{
    return QList<int>(ids.begin(), ids.end());
}

QByteArray readAll(const QString& path)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        qFatal("cannot read %s", qPrintable(path));
    return file.readAll();
}

void writeFile(const QString& path, const QByteArray& content)
{
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly) || file.write(content) != content.size())
        qFatal("cannot write %s", qPrintable(path));
}

// A short ASCII rendering of a test text, for row names.
QByteArray preview(const QByteArray& text)
{
    const QString s = QString::fromUtf8(text);
    QByteArray out;
    for (const QChar c : s) {
        if (out.size() >= 32) {
            out += "...";
            break;
        }
        if (c.unicode() >= 0x20 && c.unicode() < 0x7F)
            out += static_cast<char>(c.unicode());
        else
            out += "\\u" + QByteArray::number(c.unicode(), 16).rightJustified(4, '0');
    }
    return out;
}

struct ReferenceCase {
    QByteArray text;
    QList<int> ids;
};

std::vector<ReferenceCase> publicCases()
{
    const QJsonArray cases = QJsonDocument::fromJson(readAll(kDataDir + QStringLiteral("/tokenizer_public.json"))).array();
    std::vector<ReferenceCase> out;
    for (const QJsonValue& value : cases) {
        const QJsonObject object = value.toObject();
        ReferenceCase c{object.value(QStringLiteral("text")).toString().toUtf8(), {}};
        for (const QJsonValue& id : object.value(QStringLiteral("ids")).toArray())
            c.ids.append(id.toInt());
        out.push_back(std::move(c));
    }
    return out;
}

// Ids from the reference for the corners of the pre-tokenizer: which characters count as \s, \p{L}
// and \p{N}, contractions, and the special token. Several rely on "'s" being a contraction only
// after a space or letter boundary the regex can see: "X's" gives 338 ("'s") when X is a letter,
// number or whitespace, but "X'" + "s" when X is "other".
struct EdgeCase {
    const char* name;
    std::u16string_view text;
    std::vector<int> ids;
};

const std::vector<EdgeCase>& edgeCases()
{
    static const std::vector<EdgeCase> cases{
        {"NBSP is whitespace: the space before it stands alone", u"a \u00A0b"sv, {64, 220, 1849, 65}},
        {"NEL U+0085 is whitespace", u"x\u0085's"sv, {87, 126, 227, 338}},
        {"line separator U+2028 after a space", u"a \u2028b"sv, {64, 220, 447, 101, 65}},
        {"paragraph separator U+2029 is whitespace", u"a\u2029's"sv, {64, 447, 102, 338}},
        {"ideographic space U+3000 is whitespace", u"a \u3000b"sv, {64, 220, 5099, 222, 65}},
        {"narrow NBSP U+202F is whitespace", u"a \u202Fb"sv, {64, 220, 447, 107, 65}},
        {"vertical tab and form feed are whitespace", u"a\u000B\u000C's"sv, {64, 199, 200, 338}},
        {"zero-width space is not whitespace", u"a \u200Bb"sv, {64, 20126, 65}},
        {"U+001C is not whitespace", u"x\u001C's"sv, {87, 216, 6, 82}},
        {"Mongolian vowel separator U+180E is not whitespace", u"a \u180Eb"sv, {64, 28053, 254, 236, 65}},
        {"BOM U+FEFF is not whitespace", u"a \uFEFFb"sv, {64, 27332, 119, 123, 65}},
        {"space run before a word leaves one space to it", u"a   b"sv, {64, 220, 220, 275}},
        {"newlines then spaces before a word", u"a\n\n  b"sv, {64, 628, 220, 275}},
        {"whitespace run at the end stays whole", u"a \n \n"sv, {64, 220, 198, 220, 198}},
        {"curly apostrophe is no contraction", u"it\u2019s"sv, {270, 447, 247, 82}},
        {"double apostrophe", u"''s"sv, {7061, 82}},
        {"space then contraction", u"x 's"sv, {87, 705, 82}},
        {"contraction followed by letters", u"'sound 'llama"sv, {338, 633, 705, 297, 1689}},
        {"long digit run", u"12345678901234567890"sv, {10163, 2231, 3134, 4531, 486, 1954, 2231, 30924, 3829}},
        {"letters and digits split", u"abc123def"sv, {39305, 10163, 4299}},
        {"superscript, fraction and roman numeral are numbers", u"x\u00B2 \u00BD \u2160"sv,
         {87, 31185, 25208, 2343, 227, 254}},
        {"combining marks are not letters", u"e\u0301\u0301s"sv, {68, 136, 223, 136, 223, 82}},
        {"endoftext alone", u"<|endoftext|>"sv, {50256}},
        {"endoftext between words", u"Hello<|endoftext|>world"sv, {15496, 50256, 6894}},
        {"endoftext between spaces", u"a <|endoftext|> b"sv, {64, 220, 50256, 275}},
        {"endoftext twice", u"<|endoftext|><|endoftext|>"sv, {50256, 50256}},
        {"unterminated endoftext is plain text", u"<|endoftext|"sv, {27, 91, 437, 1659, 5239, 91}},
        {"Unicode 16 letter (Garay)", u"\U00010D4A's"sv, {172, 238, 113, 232, 338}},
        {"Unicode 16 digit (Garay)", u"\U00010D40's"sv, {172, 238, 113, 222, 338}},
        {"Unicode 15 CJK extension H", u"\U00031350's"sv, {172, 109, 235, 238, 338}},
        {"unassigned code point is not a letter", u"\u0378's"sv, {137, 116, 6, 82}},
        {"NUL and DEL", u"a\u0000b\u007F"sv, {64, 188, 65, 221}},
    };
    return cases;
}

// Marks a file content in bad-input rows: copy the real file, or the 256 byte tokens of the real
// vocabulary (enough to load, so that later checks are reached).
const QByteArray kGoodFile = "@good";
const QByteArray kByteVocab = "@bytevocab";

QJsonObject byteVocabObject()
{
    const QJsonObject full = QJsonDocument::fromJson(readAll(kGpt2Dir + QStringLiteral("/vocab.json"))).object();
    QJsonObject bytes;
    for (auto it = full.begin(); it != full.end(); ++it) {
        if (it.value().toInt() < 256)
            bytes.insert(it.key(), it.value());
    }
    return bytes;
}

QByteArray expandContent(const QByteArray& content, const QString& realFile)
{
    if (content == kGoodFile)
        return readAll(realFile);
    if (content.contains(kByteVocab)) {
        QByteArray expanded = content;
        return expanded.replace(kByteVocab, QJsonDocument(byteVocabObject()).toJson(QJsonDocument::Compact));
    }
    return content;
}

// A tokenizer.json holding the test vocabulary and merges.
QByteArray buildTokenizerJson(bool mergesAsPairs, bool withAddedTokens)
{
    QJsonArray merges;
    const QList<QByteArray> lines = readAll(kGpt2Dir + QStringLiteral("/merges.txt")).split('\n');
    for (const QByteArray& line : lines) {
        if (line.isEmpty() || line.startsWith("#version"))
            continue;
        const QString merge = QString::fromUtf8(line);
        if (mergesAsPairs) {
            const QStringList parts = merge.split(QLatin1Char(' '));
            merges.append(QJsonArray{parts.at(0), parts.at(1)});
        } else {
            merges.append(merge);
        }
    }
    QJsonObject model;
    model.insert(QStringLiteral("type"), QStringLiteral("BPE"));
    model.insert(QStringLiteral("vocab"),
                 QJsonDocument::fromJson(readAll(kGpt2Dir + QStringLiteral("/vocab.json"))).object());
    model.insert(QStringLiteral("merges"), merges);
    QJsonObject root;
    root.insert(QStringLiteral("model"), model);
    if (withAddedTokens) {
        QJsonObject endOfText;
        endOfText.insert(QStringLiteral("id"), 50256);
        endOfText.insert(QStringLiteral("content"), QStringLiteral("<|endoftext|>"));
        endOfText.insert(QStringLiteral("special"), true);
        root.insert(QStringLiteral("added_tokens"), QJsonArray{endOfText});
    }
    return QJsonDocument(root).toJson(QJsonDocument::Compact);
}

} // namespace

class TokenizerTest : public QObject {
    Q_OBJECT

private:
    std::optional<cs::Gpt2Tokenizer> m_tokenizer;
    const cs::Gpt2Tokenizer& tokenizer() const { return *m_tokenizer; }

private Q_SLOTS:
    void initTestCase()
    {
        m_tokenizer = cs::Gpt2Tokenizer::fromDirectory(toPath(kGpt2Dir));
        QCOMPARE(tokenizer().vocabSize(), 50257);
        QCOMPARE(tokenizer().endOfTextId(), std::optional<int>(50256));
    }

    void referenceIds_data()
    {
        QTest::addColumn<QByteArray>("text");
        QTest::addColumn<QList<int>>("ids");
        const std::vector<ReferenceCase> cases = publicCases();
        QCOMPARE(cases.size(), std::size_t{41});
        for (std::size_t i = 0; i < cases.size(); ++i)
            QTest::addRow("public %02d: %s", int(i), preview(cases[i].text).constData()) << cases[i].text << cases[i].ids;
    }
    void referenceIds()
    {
        QFETCH(QByteArray, text);
        QFETCH(QList<int>, ids);
        QCOMPARE(toList(tokenizer().encode(toStd(text))), ids);
    }

    void edgeCaseIds_data()
    {
        QTest::addColumn<QByteArray>("text");
        QTest::addColumn<QList<int>>("ids");
        for (const EdgeCase& c : edgeCases())
            QTest::newRow(c.name) << utf8(c.text) << toList(c.ids);
    }
    void edgeCaseIds()
    {
        QFETCH(QByteArray, text);
        QFETCH(QList<int>, ids);
        QCOMPARE(toList(tokenizer().encode(toStd(text))), ids);
    }

    void roundTrip_data()
    {
        QTest::addColumn<QByteArray>("text");
        const std::vector<ReferenceCase> cases = publicCases();
        for (std::size_t i = 0; i < cases.size(); ++i)
            QTest::addRow("public %02d: %s", int(i), preview(cases[i].text).constData()) << cases[i].text;
        for (const EdgeCase& c : edgeCases())
            QTest::newRow(c.name) << utf8(c.text);
        QTest::newRow("paragraph with punctuation")
            << QByteArray("Well... \"quoted\" (parenthesised) -- and; colons: 50% off, $3.99!\n\tIndented.");
        QTest::newRow("emoji ZWJ family and skin tone") << utf8(u"\U0001F468\u200D\U0001F469\u200D\U0001F467 \U0001F44B\U0001F3FF");
        QTest::newRow("CRLF blank lines") << QByteArray("a\r\n\r\n\r\nb\r\n");
        QTest::newRow("only spaces") << QByteArray("      ");
        QTest::newRow("mixed scripts") << utf8(u"Grüße, Мир, 世界, عالم, שלום, ☃ ∞");
        QTest::newRow("private use and supplementary symbols") << utf8(u"\uE000\U0001D11E\U0010FFFD");
    }
    void roundTrip()
    {
        QFETCH(QByteArray, text);
        const std::string s = toStd(text);
        QCOMPARE(tokenizer().decode(tokenizer().encode(s)), s);
    }

    void tokenString_data()
    {
        QTest::addColumn<int>("id");
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QByteArray>("display");
        QTest::newRow("leading space kept") << 5335 << QByteArray(" Mary") << QByteArray(" Mary");
        QTest::newRow("lone space") << 220 << QByteArray(" ") << QByteArray(" ");
        QTest::newRow("newline") << 198 << QByteArray("\n") << QByteArray("\n");
        QTest::newRow("NBSP, two bytes") << 1849 << QByteArray("\xC2\xA0") << QByteArray("\xC2\xA0");
        QTest::newRow("half a UTF-8 character shows U+FFFD") << 127 << QByteArray("\xC3") << QByteArray("\xEF\xBF\xBD");
        QTest::newRow("endoftext") << 50256 << QByteArray("<|endoftext|>") << QByteArray("<|endoftext|>");
    }
    void tokenString()
    {
        QFETCH(int, id);
        QFETCH(QByteArray, bytes);
        QFETCH(QByteArray, display);
        QCOMPARE(toBytes(tokenizer().tokenBytes(id)), bytes);
        QCOMPARE(toBytes(tokenizer().tokenString(id)), display);
        QCOMPARE(tokenizer().idOfToken(toStd(bytes)), std::optional<int>(id));
        QVERIFY(tokenizer().hasId(id));
    }

    void idOfUnknownToken()
    {
        QCOMPARE(tokenizer().idOfToken("no such token, surely"), std::nullopt);
        QCOMPARE(tokenizer().idOfToken(""), std::nullopt);
    }

    void decodeJoinsBytesBeforeReplacing()
    {
        // "Ü" is split over two tokens; only a token left alone is invalid UTF-8.
        QCOMPARE(toBytes(tokenizer().decode({127, 250})), utf8(u"\u00DC"));
        QCOMPARE(toBytes(tokenizer().decode({127, 64})), QByteArray("\xEF\xBF\xBD" "a"));
        QCOMPARE(tokenizer().decode({}), std::string());
    }

    void unknownIdsAreInputErrors_data()
    {
        QTest::addColumn<int>("id");
        QTest::newRow("negative") << -1;
        QTest::newRow("one past the vocabulary") << 50257;
        QTest::newRow("INT_MAX") << INT_MAX;
    }
    void unknownIdsAreInputErrors()
    {
        QFETCH(int, id);
        QVERIFY(!tokenizer().hasId(id));
        QVERIFY_THROWS_EXCEPTION(cs::InputError, tokenizer().decode({64, id}));
        QVERIFY_THROWS_EXCEPTION(cs::InputError, tokenizer().tokenString(id));
        QVERIFY_THROWS_EXCEPTION(cs::InputError, tokenizer().tokenBytes(id));
    }

    void invalidUtf8EncodesBytewise()
    {
        // Stray bytes cannot come from the reference (it takes Unicode strings); they are kept as
        // their byte tokens, so decoding shows exactly where they were.
        const std::string text = "ok\xFF\xC3(\x80 z";
        const std::vector<int> ids = tokenizer().encode(text);
        QCOMPARE(tokenizer().decode(ids), cs::sanitizeUtf8(text));
        std::string joined;
        for (int id : ids)
            joined += tokenizer().tokenBytes(id);
        QCOMPARE(joined, text);
    }

    void tokenizerJson_data()
    {
        QTest::addColumn<bool>("mergesAsPairs");
        QTest::addColumn<bool>("withAddedTokens");
        QTest::newRow("merges as \"a b\" strings") << false << true;
        QTest::newRow("merges as [a, b] pairs") << true << true;
        QTest::newRow("no added_tokens: endoftext still special") << true << false;
    }
    void tokenizerJson()
    {
        QFETCH(bool, mergesAsPairs);
        QFETCH(bool, withAddedTokens);
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        writeFile(dir.filePath(QStringLiteral("tokenizer.json")), buildTokenizerJson(mergesAsPairs, withAddedTokens));

        const cs::Gpt2Tokenizer fromJson = cs::Gpt2Tokenizer::fromDirectory(toPath(dir.path()));
        QCOMPARE(fromJson.vocabSize(), tokenizer().vocabSize());
        QCOMPARE(fromJson.endOfTextId(), tokenizer().endOfTextId());
        for (const ReferenceCase& c : publicCases())
            QCOMPARE(toList(fromJson.encode(toStd(c.text))), c.ids);
        for (const EdgeCase& c : edgeCases())
            QCOMPARE(toList(fromJson.encode(toStd(utf8(c.text)))), toList(c.ids));
    }

    void sanitizeUtf8_data()
    {
        QTest::addColumn<QByteArray>("input");
        QTest::addColumn<QByteArray>("expected");
        QTest::addColumn<bool>("replaced");
        const QByteArray fffd("\xEF\xBF\xBD");
        QTest::newRow("empty") << QByteArray() << QByteArray() << false;
        QTest::newRow("ASCII unchanged") << QByteArray("hello\n") << QByteArray("hello\n") << false;
        QTest::newRow("multibyte unchanged") << utf8(u"\u00E9\u65E5\U0001F600") << utf8(u"\u00E9\u65E5\U0001F600") << false;
        QTest::newRow("lone continuation byte") << QByteArray("a\x80" "b") << QByteArray("a" + fffd + "b") << true;
        QTest::newRow("byte 0xFF") << QByteArray("\xFF") << fffd << true;
        QTest::newRow("truncated at the end: one U+FFFD") << QByteArray("a\xE6\x97") << QByteArray("a" + fffd) << true;
        QTest::newRow("truncated before ASCII") << QByteArray("\xE6\x97z") << QByteArray(fffd + "z") << true;
        QTest::newRow("truncated 4-byte sequence") << QByteArray("\xF0\x9F\x98!") << QByteArray(fffd + "!") << true;
        QTest::newRow("overlong encoding") << QByteArray("\xC0\xAF") << QByteArray(fffd + fffd) << true;
        QTest::newRow("overlong 3-byte encoding") << QByteArray("\xE0\x80\x80") << QByteArray(fffd + fffd + fffd) << true;
        QTest::newRow("encoded surrogate") << QByteArray("\xED\xA0\x80") << QByteArray(fffd + fffd + fffd) << true;
        QTest::newRow("above U+10FFFF") << QByteArray("\xF4\x90\x80\x80") << QByteArray(fffd + fffd + fffd + fffd) << true;
        QTest::newRow("embedded NUL is valid") << QByteArray("a\0b", 3) << QByteArray("a\0b", 3) << false;
    }
    void sanitizeUtf8()
    {
        QFETCH(QByteArray, input);
        QFETCH(QByteArray, expected);
        QFETCH(bool, replaced);
        bool didReplace = !replaced;
        QCOMPARE(toBytes(cs::sanitizeUtf8(toStd(input), &didReplace)), expected);
        QCOMPARE(didReplace, replaced);
        QCOMPARE(toBytes(cs::sanitizeUtf8(toStd(input))), expected);
    }

    void badInput_data()
    {
        // Which files the directory holds (null: absent), how it is loaded, and what the one-line
        // message must name.
        QTest::addColumn<QByteArray>("vocab");
        QTest::addColumn<QByteArray>("merges");
        QTest::addColumn<QByteArray>("tokenizerJson");
        QTest::addColumn<QString>("loader"); // "dir", "files" or "json"
        QTest::addColumn<QString>("file");   // named in the message ("" = the directory)
        QTest::addColumn<QString>("reason"); // also in the message

        const QByteArray absent;
        const QString dir = QStringLiteral("dir");
        const QString files = QStringLiteral("files");
        const QString json = QStringLiteral("json");
        const QString vocabJson = QStringLiteral("vocab.json");
        const QString mergesTxt = QStringLiteral("merges.txt");
        const QString tokJson = QStringLiteral("tokenizer.json");

        QTest::newRow("missing vocab.json") << absent << kGoodFile << absent << files << vocabJson << QStringLiteral("not found");
        QTest::newRow("missing vocab.json next to merges.txt") << absent << kGoodFile << absent << dir << vocabJson
                                                               << QStringLiteral("not found");
        QTest::newRow("missing merges.txt") << kGoodFile << absent << absent << files << mergesTxt << QStringLiteral("not found");
        QTest::newRow("directory without tokenizer files") << absent << absent << absent << dir << QString()
                                                           << QStringLiteral("no tokenizer files");
        QTest::newRow("vocab.json is not JSON") << QByteArray("{\"a\": 1,") << kGoodFile << absent << files << vocabJson
                                                << QStringLiteral("not valid JSON");
        QTest::newRow("vocab.json is empty") << QByteArray("") << kGoodFile << absent << files << vocabJson
                                             << QStringLiteral("not valid JSON");
        QTest::newRow("vocab.json is an array") << QByteArray("[1, 2]") << kGoodFile << absent << files << vocabJson
                                                << QStringLiteral("expected a JSON object");
        QTest::newRow("vocab.json id is a string") << QByteArray("{\"a\": \"1\"}") << kGoodFile << absent << files << vocabJson
                                                   << QStringLiteral("must be an integer");
        QTest::newRow("vocab.json id is fractional") << QByteArray("{\"a\": 1.5}") << kGoodFile << absent << files << vocabJson
                                                     << QStringLiteral("must be an integer");
        QTest::newRow("vocab.json id is negative") << QByteArray("{\"a\": -1}") << kGoodFile << absent << files << vocabJson
                                                   << QStringLiteral("out of range");
        QTest::newRow("vocab.json id is huge") << QByteArray("{\"a\": 99999999999}") << kGoodFile << absent << files << vocabJson
                                               << QStringLiteral("out of range");
        QTest::newRow("vocab.json two tokens share an id") << QByteArray("{\"a\": 0, \"b\": 0}") << kGoodFile << absent << files
                                                           << vocabJson << QStringLiteral("two tokens");
        QTest::newRow("vocab.json lacks byte tokens") << QByteArray("{\"a\": 0}") << kGoodFile << absent << files << vocabJson
                                                      << QStringLiteral("no token for byte");
        QTest::newRow("vocab.json token outside the byte alphabet")
            << QByteArray("{\"\xE6\x97\xA5\": 0}") << kGoodFile << absent << files << vocabJson << QStringLiteral("byte-level");
        QTest::newRow("merges.txt line with one symbol") << kGoodFile << QByteArray("#version: 0.2\n\xC4\xA0 t\n\xC4\xA0" "a\n")
                                                         << absent << files << mergesTxt << QStringLiteral("line 3");
        QTest::newRow("merges.txt line with three symbols") << kGoodFile << QByteArray("#version: 0.2\nh e l\n") << absent
                                                            << files << mergesTxt << QStringLiteral("line 2");
        QTest::newRow("merges.txt line with a double space") << kGoodFile << QByteArray("h  e\n") << absent << files << mergesTxt
                                                             << QStringLiteral("line 1");
        QTest::newRow("merges.txt symbol not in the vocabulary")
            << kGoodFile << QByteArray("h e\n\xC4\xA0 qqqqqqqq\n") << absent << files << mergesTxt
            << QStringLiteral("not in the vocabulary");
        QTest::newRow("merges.txt merged token not in the vocabulary") << kGoodFile << QByteArray("q j\n") << absent << files
                                                                       << mergesTxt << QStringLiteral("merged token");
        QTest::newRow("merges.txt binary garbage") << kGoodFile << QByteArray("\xFF\xFE \x01\n") << absent << files << mergesTxt
                                                   << QStringLiteral("line 1");
        QTest::newRow("tokenizer.json is not JSON") << absent << absent << QByteArray("{\"model\": ") << dir << tokJson
                                                    << QStringLiteral("not valid JSON");
        QTest::newRow("tokenizer.json without model") << absent << absent << QByteArray("{}") << json << tokJson
                                                      << QStringLiteral("\"model\"");
        QTest::newRow("tokenizer.json model is not BPE")
            << absent << absent << QByteArray("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"merges\": []}}") << json
            << tokJson << QStringLiteral("only BPE");
        QTest::newRow("tokenizer.json without merges") << absent << absent
                                                       << QByteArray("{\"model\": {\"vocab\": " + kByteVocab + "}}") << json
                                                       << tokJson << QStringLiteral("model.merges");
        QTest::newRow("tokenizer.json vocab is not an object")
            << absent << absent << QByteArray("{\"model\": {\"vocab\": [], \"merges\": []}}") << json << tokJson
            << QStringLiteral("model.vocab");
        QTest::newRow("tokenizer.json merge is a number")
            << absent << absent << QByteArray("{\"model\": {\"vocab\": " + kByteVocab + ", \"merges\": [1]}}") << json
            << tokJson << QStringLiteral("model.merges[0]");
        QTest::newRow("tokenizer.json merge pair of three")
            << absent << absent
            << QByteArray("{\"model\": {\"vocab\": " + kByteVocab + ", \"merges\": [[\"a\", \"b\", \"c\"]]}}")
            << json << tokJson << QStringLiteral("model.merges[0]");
        QTest::newRow("tokenizer.json added token clashes with the vocabulary")
            << absent << absent
            << QByteArray("{\"model\": {\"vocab\": " + kByteVocab +
                          ", \"merges\": []}, \"added_tokens\": [{\"id\": 0, \"content\": \"<s>\"}]}")
            << json << tokJson << QStringLiteral("added_tokens[0]");
    }
    void badInput()
    {
        QFETCH(QByteArray, vocab);
        QFETCH(QByteArray, merges);
        QFETCH(QByteArray, tokenizerJson);
        QFETCH(QString, loader);
        QFETCH(QString, file);
        QFETCH(QString, reason);

        QTemporaryDir temp;
        QVERIFY(temp.isValid());
        const QString vocabPath = temp.filePath(QStringLiteral("vocab.json"));
        const QString mergesPath = temp.filePath(QStringLiteral("merges.txt"));
        const QString jsonPath = temp.filePath(QStringLiteral("tokenizer.json"));
        if (!vocab.isNull())
            writeFile(vocabPath, expandContent(vocab, kGpt2Dir + QStringLiteral("/vocab.json")));
        if (!merges.isNull())
            writeFile(mergesPath, expandContent(merges, kGpt2Dir + QStringLiteral("/merges.txt")));
        if (!tokenizerJson.isNull())
            writeFile(jsonPath, expandContent(tokenizerJson, QString()));

        std::string message;
        try {
            if (loader == QStringLiteral("dir"))
                cs::Gpt2Tokenizer::fromDirectory(toPath(temp.path()));
            else if (loader == QStringLiteral("files"))
                cs::Gpt2Tokenizer::fromFiles(toPath(vocabPath), toPath(mergesPath));
            else
                cs::Gpt2Tokenizer::fromTokenizerJson(toPath(jsonPath));
            QFAIL("no InputError thrown");
        } catch (const cs::InputError& e) {
            message = e.what();
        }
        const QString text = QString::fromStdString(message);
        const QString named = file.isEmpty() ? temp.path() : temp.filePath(file);
        // "FILE: reason", or "FILE:LINE:COL: reason" for a JSON syntax error.
        const QRegularExpression prefix(QStringLiteral("^") + QRegularExpression::escape(named) + QStringLiteral("(:\\d+:\\d+)?: "));
        QVERIFY2(prefix.match(text).hasMatch(), qPrintable(text));
        QVERIFY2(text.contains(reason), qPrintable(text));
        QVERIFY2(!text.contains(QLatin1Char('\n')), qPrintable(text));
    }

    void missingDirectory()
    {
        QTemporaryDir temp;
        const QString missing = temp.filePath(QStringLiteral("nowhere"));
        QVERIFY_THROWS_EXCEPTION(cs::InputError, cs::Gpt2Tokenizer::fromDirectory(toPath(missing)));
    }

    void concurrentEncodesAgree()
    {
        // The word cache is shared between threads; each must still see exactly the serial result.
        const std::vector<ReferenceCase> cases = publicCases();
        const cs::Gpt2Tokenizer fresh = cs::Gpt2Tokenizer::fromDirectory(toPath(kGpt2Dir));
        constexpr int kThreads = 4;
        std::vector<int> mismatches(kThreads, 0);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                for (int round = 0; round < 20; ++round) {
                    for (std::size_t i = 0; i < cases.size(); ++i) {
                        const auto& c = cases[(i + static_cast<std::size_t>(t) * 7) % cases.size()];
                        if (toList(fresh.encode(toStd(c.text))) != c.ids)
                            ++mismatches[t];
                    }
                }
            });
        }
        for (std::thread& thread : threads)
            thread.join();
        QCOMPARE(mismatches, std::vector<int>(kThreads, 0));
    }

    void longWordsStayFast()
    {
        // A single pre-token of 200k letters: BPE must not be quadratic in the word length.
        const std::string word(200'000, 'a');
        const std::vector<int> ids = tokenizer().encode(word);
        QCOMPARE(tokenizer().decode(ids), word);
        QCOMPARE(ids.front(), 24794); // "aaaa", as in the reference's 300-letter case
    }
};

QTEST_APPLESS_MAIN(TokenizerTest)
#include "tst_tokenizer.moc"
