// RFC 4180 CSV with provenance comments (product.md §4): quoting, CRLF, UTF-8, exact numbers.

#include "core/export/csv.h"

#include <QTest>

using namespace cs;

class TestCsv : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void fieldsRoundTrip_data()
    {
        QTest::addColumn<QString>("field");
        QTest::newRow("plain") << QStringLiteral("Mary");
        QTest::newRow("leading space") << QStringLiteral(" Mary");
        QTest::newRow("comma") << QStringLiteral("a,b");
        QTest::newRow("quote") << QStringLiteral("say \"hi\"");
        QTest::newRow("newline") << QStringLiteral("line1\nline2");
        QTest::newRow("CRLF") << QStringLiteral("x\r\ny");
        QTest::newRow("comma quote newline") << QStringLiteral(",\"\n");
        QTest::newRow("unicode") << QStringLiteral("日本語 🙂");
        QTest::newRow("empty") << QString();
    }
    void fieldsRoundTrip()
    {
        QFETCH(QString, field);
        CsvWriter w;
        w.comment("model", "tiny\nmodel");
        w.row({"token", "value"});
        w.row({field.toStdString(), CsvWriter::number(0.1)});
        std::vector<std::pair<std::string, std::string>> comments;
        const auto rows = parseCsv(w.text(), &comments);
        QCOMPARE(rows.size(), std::size_t(2));
        QCOMPARE(QString::fromStdString(rows[1][0]), field);
        QCOMPARE(std::stod(rows[1][1]), 0.1);
        QCOMPARE(comments.size(), std::size_t(1));
        QCOMPARE(comments[0].second, std::string("tiny model")); // a comment stays one line
    }

    void quotingFollowsRfc4180()
    {
        QCOMPARE(CsvWriter::field("plain"), std::string("plain"));
        QCOMPARE(CsvWriter::field("a,b"), std::string("\"a,b\""));
        QCOMPARE(CsvWriter::field("say \"hi\""), std::string("\"say \"\"hi\"\"\""));
        CsvWriter w;
        w.row({"a", "b"});
        QCOMPARE(w.text(), std::string("a,b\r\n"));
    }

    void numbersAreExact()
    {
        for (double v : {0.1, 1.0 / 3.0, -2.5e-7, 123456789.123, 0.0}) {
            QCOMPARE(std::stod(CsvWriter::number(v)), v);
        }
        QCOMPARE(CsvWriter::number(std::nan("")), std::string());
    }
};

QTEST_GUILESS_MAIN(TestCsv)
#include "tst_csv.moc"
