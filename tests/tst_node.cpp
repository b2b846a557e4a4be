// Node names of product.md §5: parse, print, resolve negative tokens, and reject malformed names with
// a message that says what is wrong.

#include "core/analysis/node.h"
#include "core/util/errors.h"

#include <QTest>

using namespace cs;

Q_DECLARE_METATYPE(NodeKind)

class TestNode : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void parsesAndPrints_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<NodeKind>("kind");
        QTest::addColumn<int>("layer");
        QTest::addColumn<int>("index");
        QTest::addColumn<int>("token");
        QTest::addColumn<int>("keyToken");
        QTest::newRow("neuron") << QStringLiteral("mlp:5:123@7") << NodeKind::MlpNeuron << 5 << 123 << 7 << 0;
        QTest::newRow("head") << QStringLiteral("attn:5:3@7,2") << NodeKind::AttnHead << 5 << 3 << 7 << 2;
        QTest::newRow("mlp latent") << QStringLiteral("mlp_sae:1:42@3") << NodeKind::MlpSaeLatent << 1 << 42 << 3 << 0;
        QTest::newRow("attn latent, last token") << QStringLiteral("attn_sae:1:42@-1") << NodeKind::AttnSaeLatent << 1 << 42 << -1 << 0;
        QTest::newRow("resid latent") << QStringLiteral("resid_sae:0:9@3") << NodeKind::ResidSaeLatent << 0 << 9 << 3 << 0;
        QTest::newRow("embedding") << QStringLiteral("emb@3") << NodeKind::Embedding << 0 << 0 << 3 << 0;
        QTest::newRow("head, negative tokens") << QStringLiteral("attn:0:1@-1,-2") << NodeKind::AttnHead << 0 << 1 << -1 << -2;
    }
    void parsesAndPrints()
    {
        QFETCH(QString, name);
        QFETCH(NodeKind, kind);
        QFETCH(int, layer);
        QFETCH(int, index);
        QFETCH(int, token);
        QFETCH(int, keyToken);
        const NodeRef n = NodeRef::parse(name.toStdString());
        QCOMPARE(n.kind, kind);
        QCOMPARE(n.layer, layer);
        QCOMPARE(n.index, index);
        QCOMPARE(n.token, token);
        QCOMPARE(n.keyToken, keyToken);
        QCOMPARE(QString::fromStdString(n.name()), name);
    }

    void rejectsMalformedNames_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        QTest::newRow("no token") << QStringLiteral("mlp:5:123") << QStringLiteral("missing '@token'");
        QTest::newRow("unknown kind") << QStringLiteral("neuron:5:1@0") << QStringLiteral("unknown kind 'neuron'");
        QTest::newRow("missing index") << QStringLiteral("mlp:5@0") << QStringLiteral("expected <kind>:<layer>:<index>@<token>");
        QTest::newRow("non-numeric layer") << QStringLiteral("mlp:x:1@0") << QStringLiteral("layer 'x' is not an integer");
        QTest::newRow("negative layer") << QStringLiteral("mlp:-1:1@0") << QStringLiteral("layer must not be negative");
        QTest::newRow("head without key token") << QStringLiteral("attn:1:2@3") << QStringLiteral("needs a query and a key token");
        QTest::newRow("neuron with two tokens") << QStringLiteral("mlp:1:2@3,1") << QStringLiteral("only attention heads take two tokens");
        QTest::newRow("embedding with layer") << QStringLiteral("emb:1:2@3") << QStringLiteral("no layer or index");
        QTest::newRow("trailing garbage") << QStringLiteral("mlp:1:2@3x") << QStringLiteral("token '3x' is not an integer");
        QTest::newRow("empty") << QString() << QStringLiteral("missing '@token'");
    }
    void rejectsMalformedNames()
    {
        QFETCH(QString, name);
        QFETCH(QString, expected);
        try {
            NodeRef::parse(name.toStdString());
            QFAIL("accepted a malformed name");
        } catch (const InputError& e) {
            const QString msg = QString::fromUtf8(e.what());
            QVERIFY2(msg.contains(expected), qPrintable(msg));
            QVERIFY2(msg.startsWith(QStringLiteral("node '") + name + u'\''), qPrintable(msg));
        }
    }

    void resolvesNegativeTokens()
    {
        QCOMPARE(NodeRef::parse("attn_sae:1:42@-1").resolved(14).token, 13);
        const NodeRef head = NodeRef::parse("attn:0:1@-1,-3").resolved(5);
        QCOMPARE(head.token, 4);
        QCOMPARE(head.keyToken, 2);
        QVERIFY_THROWS_EXCEPTION(InputError, NodeRef::parse("mlp:0:1@5").resolved(5));
        QVERIFY_THROWS_EXCEPTION(InputError, NodeRef::parse("mlp:0:1@-6").resolved(5));
        QVERIFY_THROWS_EXCEPTION(InputError, NodeRef::parse("attn:0:1@1,2").resolved(5)); // key after query
    }
};

QTEST_GUILESS_MAIN(TestNode)
#include "tst_node.moc"
