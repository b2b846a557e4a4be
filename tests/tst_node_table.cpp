// The node table (product.md §3): model snapshots, numeric sorting with absent values last, text and
// kind filters, selection in both directions without feedback, and the CSV export of what is on screen.

#include "core/export/csv.h"
#include "ui/widgets/node_table_model.h"
#include "ui/widgets/node_table_view.h"

#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QFile>
#include <QHeaderView>
#include <QLineEdit>
#include <QSignalSpy>
#include <QTableView>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>

using namespace cs;
using namespace cs::ui;

namespace {

using Tester = QAbstractItemModelTester;
constexpr auto kQtTest = QAbstractItemModelTester::FailureReportingMode::QtTest;

NodeRow makeRow(const NodeRef& node, const QString& tokens, double activation, double write,
                std::optional<double> direct, std::optional<double> total, const QString& top)
{
    NodeRow row;
    row.node = node;
    row.name = QString::fromStdString(node.name());
    row.kind = QString::fromLatin1(nodeKindName(node.kind));
    row.layer = node.kind == NodeKind::Embedding ? -1 : node.layer;
    row.tokens = tokens;
    row.activation = activation;
    row.writeMagnitude = write;
    row.directEffect = direct;
    row.totalEffect = total;
    row.topWriteTokens = top;
    return row;
}

NodeRef ref(NodeKind kind, int layer, int index, int token, int keyToken = 0)
{
    return NodeRef{kind, layer, index, token, keyToken};
}

// A token with a comma, a quote and a newline; tokens with leading spaces.
const QString kNastyToken = QStringLiteral("a,\"b\"\nc");

// Activations 10, 9.5 and -2 (string sorting would put "9.5" above "10"); two absent direct effects.
QVector<NodeRow> sampleRows()
{
    return {
        makeRow(ref(NodeKind::MlpNeuron, 5, 123, 7), QStringLiteral(" Mary"), 10.0, 1.5, 9.5, 10.0,
                QStringLiteral(" Mary,  Mary, mary")),
        makeRow(ref(NodeKind::AttnHead, 3, 7, 7, 2), QStringLiteral(" to →  Mary"), 9.5, 2.25, -2.0, 4.0,
                QStringLiteral(" John, Paris, the")),
        makeRow(ref(NodeKind::MlpSaeLatent, 1, 42, 3), kNastyToken, -2.0, 0.125, std::nullopt, -3.0,
                QStringLiteral("x, y, z")),
        makeRow(ref(NodeKind::AttnSaeLatent, 2, 9, 4), QStringLiteral(" John"), 0.5, 3.0, 1.0 / 3.0, 9.5,
                QStringLiteral(" London, Berlin, Rome")),
        makeRow(ref(NodeKind::ResidSaeLatent, 0, 9, 1), QStringLiteral("Paris"), 1234.5678, 0.000123456, std::nullopt,
                std::nullopt, QStringLiteral(" France, French, ,")),
        makeRow(ref(NodeKind::Embedding, 0, 0, 0), QStringLiteral("The"), 1.0, 7.0, 0.0, 0.5, QStringLiteral(" cat, dog, car")),
        makeRow(ref(NodeKind::MlpNeuron, 10, 5, 7), QStringLiteral(" Mary"), 3.0, 0.5, -0.25, -1.0, QStringLiteral("q, r, s")),
        makeRow(ref(NodeKind::MlpNeuron, 9, 5, 7), QStringLiteral(" Mary"), 2.0, 0.75, 0.25, 1.0, QStringLiteral("t, u, v")),
    };
}

QStringList columnStrings(const QAbstractItemModel& model, int column, int role = NodeTableModel::RawTextRole)
{
    QStringList out;
    for (int r = 0; r < model.rowCount(); ++r)
        out << model.index(r, column).data(role).toString();
    return out;
}

QStringList visibleNames(const QAbstractItemModel& model)
{
    return columnStrings(model, NodeTableModel::NameColumn);
}

QString nameOf(const NodeRef& n)
{
    return QString::fromStdString(n.name());
}

NodeRef nodeOfSignal(const QSignalSpy& spy, int i)
{
    return qvariant_cast<NodeRef>(spy.at(i).at(0));
}

} // namespace

namespace QTest {
template <>
char* toString(const NodeRef& node)
{
    return qstrdup(node.name().c_str());
}
} // namespace QTest

class TestNodeTable : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void modelSnapshotsUnderTester();
    void displayAndRawRoles();
    void effectsUnavailable();
    void sortsByRawNumbers_data();
    void sortsByRawNumbers();
    void absentEffectsSortLast();
    void namesSortByNumbers();
    void textFilter_data();
    void textFilter();
    void kindFilter_data();
    void kindFilter();
    void viewFilterWidgets();
    void selectingRowEmitsNode();
    void keyboardSelectionEmits();
    void sortFilterAndSnapshotsDoNotEmit();
    void selectNodeSelectsSilently();
    void noFeedbackLoop();
    void effectColumnsHiddenWithoutTarget();
    void csvExportMatchesView();
    void csvExportWithoutTarget();
    void csvExportUnwritable();
    void rendersThirtyRows();
};

void TestNodeTable::modelSnapshotsUnderTester()
{
    NodeTableModel model;
    Tester tester(&model, kQtTest);
    QSignalSpy reset(&model, &QAbstractItemModel::modelReset);
    QCOMPARE(model.rowCount(), 0);
    QCOMPARE(model.columnCount(), int(NodeTableModel::ColumnCount));
    model.setRows(sampleRows());
    QCOMPARE(model.rowCount(), int(sampleRows().size()));
    model.setRows({});
    QCOMPARE(model.rowCount(), 0);
    model.setRows(sampleRows().mid(0, 3));
    QCOMPARE(model.rowCount(), 3);
    model.setEffectsAvailable(false);
    model.setEffectsAvailable(true);
    QCOMPARE(reset.count(), 3);
    QCOMPARE(model.rowCount(QModelIndex(model.index(0, 0))), 0); // a flat table: no children
}

void TestNodeTable::displayAndRawRoles()
{
    NodeTableModel model;
    Tester tester(&model, kQtTest);
    model.setRows(sampleRows());
    const auto cell = [&](int row, int column, int role = Qt::DisplayRole) { return model.index(row, column).data(role); };

    QCOMPARE(cell(0, NodeTableModel::NameColumn).toString(), QStringLiteral("mlp:5:123@7"));
    QCOMPARE(cell(0, NodeTableModel::KindColumn).toString(), QStringLiteral("neuron"));
    QCOMPARE(cell(1, NodeTableModel::KindColumn).toString(), QStringLiteral("head"));
    QCOMPARE(cell(0, NodeTableModel::LayerColumn).toString(), QStringLiteral("5"));
    QCOMPARE(cell(5, NodeTableModel::LayerColumn).toString(), QStringLiteral("—")); // embedding
    QCOMPARE(cell(5, NodeTableModel::LayerColumn, NodeTableModel::SortRole).toInt(), -1);

    // Leading spaces visible, raw text kept for filtering and export.
    QCOMPARE(cell(0, NodeTableModel::TokensColumn).toString(), QStringLiteral("·Mary"));
    QCOMPARE(cell(0, NodeTableModel::TokensColumn, NodeTableModel::RawTextRole).toString(), QStringLiteral(" Mary"));
    QCOMPARE(cell(1, NodeTableModel::TokensColumn).toString(), QStringLiteral("·to → ·Mary"));
    QCOMPARE(cell(2, NodeTableModel::TokensColumn).toString(), QStringLiteral("a,\"b\"⏎c"));
    QCOMPARE(cell(4, NodeTableModel::TopWriteTokensColumn).toString(), QStringLiteral("·France │ French │ ,"));
    QCOMPARE(cell(0, NodeTableModel::TopWriteTokensColumn).toString(), QStringLiteral("·Mary │ ·Mary │ mary"));

    // Four significant digits, a real minus sign, raw numbers in SortRole, exact values in tooltips.
    QCOMPARE(cell(4, NodeTableModel::ActivationColumn).toString(), QStringLiteral("1235"));
    QCOMPARE(cell(4, NodeTableModel::WriteMagnitudeColumn).toString(), QStringLiteral("0.0001235"));
    QCOMPARE(cell(3, NodeTableModel::DirectEffectColumn).toString(), QStringLiteral("0.3333"));
    QCOMPARE(cell(2, NodeTableModel::ActivationColumn).toString(), QStringLiteral("−2"));
    QCOMPARE(cell(4, NodeTableModel::ActivationColumn, NodeTableModel::SortRole).toDouble(), 1234.5678);
    QCOMPARE(cell(3, NodeTableModel::DirectEffectColumn, NodeTableModel::SortRole).toDouble(), 1.0 / 3.0);
    QVERIFY(cell(4, NodeTableModel::ActivationColumn, Qt::ToolTipRole).toString().contains(QStringLiteral("1234.5678")));
    QVERIFY(cell(3, NodeTableModel::DirectEffectColumn, Qt::ToolTipRole)
                .toString()
                .contains(QString::fromStdString(CsvWriter::number(1.0 / 3.0))));

    // Absent effect: "—" shown, no sort value.
    QCOMPARE(cell(2, NodeTableModel::DirectEffectColumn).toString(), QStringLiteral("—"));
    QVERIFY(!cell(2, NodeTableModel::DirectEffectColumn, NodeTableModel::SortRole).isValid());

    // Numbers right-aligned, text left-aligned.
    for (int c : {int(NodeTableModel::LayerColumn), int(NodeTableModel::ActivationColumn), int(NodeTableModel::TotalEffectColumn)})
        QVERIFY(cell(0, c, Qt::TextAlignmentRole).toInt() & Qt::AlignRight);
    QVERIFY(cell(0, NodeTableModel::NameColumn, Qt::TextAlignmentRole).toInt() & Qt::AlignLeft);

    // The node itself.
    QCOMPARE(qvariant_cast<NodeRef>(cell(1, NodeTableModel::TokensColumn, NodeTableModel::NodeRole)),
             ref(NodeKind::AttnHead, 3, 7, 7, 2));
    QCOMPARE(model.nodeAt(1), ref(NodeKind::AttnHead, 3, 7, 7, 2));
    QCOMPARE(model.rowOf(ref(NodeKind::AttnHead, 3, 7, 7, 2)), 1);
    QCOMPARE(model.rowOf(ref(NodeKind::AttnHead, 3, 7, 7, 1)), -1);
}

void TestNodeTable::effectsUnavailable()
{
    NodeTableModel model;
    Tester tester(&model, kQtTest);
    model.setRows(sampleRows());
    QSignalSpy changed(&model, &NodeTableModel::effectsAvailableChanged);
    model.setEffectsAvailable(false);
    QCOMPARE(changed.count(), 1);
    QVERIFY(!model.effectsAvailable());
    for (int r = 0; r < model.rowCount(); ++r) {
        for (int c : {int(NodeTableModel::DirectEffectColumn), int(NodeTableModel::TotalEffectColumn)}) {
            QCOMPARE(model.index(r, c).data().toString(), QStringLiteral("—"));
            QVERIFY(!model.index(r, c).data(NodeTableModel::SortRole).isValid());
        }
        QVERIFY(model.index(r, NodeTableModel::ActivationColumn).data(NodeTableModel::SortRole).isValid());
    }
    model.setEffectsAvailable(false);
    QCOMPARE(changed.count(), 1);
}

void TestNodeTable::sortsByRawNumbers_data()
{
    QTest::addColumn<int>("column");
    QTest::addColumn<int>("order");
    QTest::addColumn<QStringList>("expected");
    QTest::addRow("activation descending: 1234.57 > 10 > 9.5 > ... > -2")
        << int(NodeTableModel::ActivationColumn) << int(Qt::DescendingOrder)
        << QStringList{QStringLiteral("resid_sae:0:9@1"), QStringLiteral("mlp:5:123@7"), QStringLiteral("attn:3:7@7,2"),
                       QStringLiteral("mlp:10:5@7"), QStringLiteral("mlp:9:5@7"), QStringLiteral("emb@0"),
                       QStringLiteral("attn_sae:2:9@4"), QStringLiteral("mlp_sae:1:42@3")};
    QTest::addRow("activation ascending")
        << int(NodeTableModel::ActivationColumn) << int(Qt::AscendingOrder)
        << QStringList{QStringLiteral("mlp_sae:1:42@3"), QStringLiteral("attn_sae:2:9@4"), QStringLiteral("emb@0"),
                       QStringLiteral("mlp:9:5@7"), QStringLiteral("mlp:10:5@7"), QStringLiteral("attn:3:7@7,2"),
                       QStringLiteral("mlp:5:123@7"), QStringLiteral("resid_sae:0:9@1")};
    QTest::addRow("write magnitude descending")
        << int(NodeTableModel::WriteMagnitudeColumn) << int(Qt::DescendingOrder)
        << QStringList{QStringLiteral("emb@0"), QStringLiteral("attn_sae:2:9@4"), QStringLiteral("attn:3:7@7,2"),
                       QStringLiteral("mlp:5:123@7"), QStringLiteral("mlp:9:5@7"), QStringLiteral("mlp:10:5@7"),
                       QStringLiteral("mlp_sae:1:42@3"), QStringLiteral("resid_sae:0:9@1")};
    QTest::addRow("layer ascending (embedding first, 9 before 10)")
        << int(NodeTableModel::LayerColumn) << int(Qt::AscendingOrder)
        << QStringList{QStringLiteral("emb@0"), QStringLiteral("resid_sae:0:9@1"), QStringLiteral("mlp_sae:1:42@3"),
                       QStringLiteral("attn_sae:2:9@4"), QStringLiteral("attn:3:7@7,2"), QStringLiteral("mlp:5:123@7"),
                       QStringLiteral("mlp:9:5@7"), QStringLiteral("mlp:10:5@7")};
}

void TestNodeTable::sortsByRawNumbers()
{
    QFETCH(int, column);
    QFETCH(int, order);
    QFETCH(QStringList, expected);
    NodeTableModel model;
    NodeTableProxy proxy;
    proxy.setSourceModel(&model);
    Tester modelTester(&model, kQtTest);
    Tester proxyTester(&proxy, kQtTest);
    model.setRows(sampleRows());
    proxy.sort(column, Qt::SortOrder(order));
    QCOMPARE(visibleNames(proxy), expected);

    // The formatted strings would sort differently ("9.5" > "10" > "1235" as text): the role matters.
    QStringList shown = columnStrings(proxy, column, Qt::DisplayRole);
    QStringList asText = shown;
    asText.sort();
    if (order == Qt::DescendingOrder)
        std::reverse(asText.begin(), asText.end());
    if (column == NodeTableModel::ActivationColumn)
        QVERIFY(shown != asText);

    // A new snapshot keeps the sort.
    model.setRows(sampleRows());
    QCOMPARE(visibleNames(proxy), expected);
}

void TestNodeTable::absentEffectsSortLast()
{
    NodeTableModel model;
    NodeTableProxy proxy;
    proxy.setSourceModel(&model);
    Tester proxyTester(&proxy, kQtTest);
    model.setRows(sampleRows());

    proxy.sort(NodeTableModel::DirectEffectColumn, Qt::DescendingOrder);
    QStringList names = visibleNames(proxy);
    QCOMPARE(names.mid(0, 6),
             (QStringList{QStringLiteral("mlp:5:123@7"), QStringLiteral("attn_sae:2:9@4"), QStringLiteral("mlp:9:5@7"),
                          QStringLiteral("emb@0"), QStringLiteral("mlp:10:5@7"), QStringLiteral("attn:3:7@7,2")}));
    QCOMPARE(QSet<QString>(names.begin() + 6, names.end()),
             (QSet<QString>{QStringLiteral("mlp_sae:1:42@3"), QStringLiteral("resid_sae:0:9@1")}));

    proxy.sort(NodeTableModel::DirectEffectColumn, Qt::AscendingOrder);
    names = visibleNames(proxy);
    QCOMPARE(names.mid(0, 6),
             (QStringList{QStringLiteral("attn:3:7@7,2"), QStringLiteral("mlp:10:5@7"), QStringLiteral("emb@0"),
                          QStringLiteral("mlp:9:5@7"), QStringLiteral("attn_sae:2:9@4"), QStringLiteral("mlp:5:123@7")}));
    QCOMPARE(QSet<QString>(names.begin() + 6, names.end()),
             (QSet<QString>{QStringLiteral("mlp_sae:1:42@3"), QStringLiteral("resid_sae:0:9@1")}));

    // Total effect: only resid_sae:0:9@1 is absent; it stays last both ways.
    proxy.sort(NodeTableModel::TotalEffectColumn, Qt::DescendingOrder);
    QCOMPARE(visibleNames(proxy).first(), QStringLiteral("mlp:5:123@7"));
    QCOMPARE(visibleNames(proxy).last(), QStringLiteral("resid_sae:0:9@1"));
    proxy.sort(NodeTableModel::TotalEffectColumn, Qt::AscendingOrder);
    QCOMPARE(visibleNames(proxy).first(), QStringLiteral("mlp_sae:1:42@3"));
    QCOMPARE(visibleNames(proxy).last(), QStringLiteral("resid_sae:0:9@1"));

    // A NaN counts as absent too.
    QVector<NodeRow> rows = sampleRows();
    rows[0].totalEffect = std::nan("");
    model.setRows(rows);
    QCOMPARE(model.index(0, NodeTableModel::TotalEffectColumn).data().toString(), QStringLiteral("—"));
    QVERIFY(visibleNames(proxy).mid(6).contains(QStringLiteral("mlp:5:123@7")));
}

void TestNodeTable::namesSortByNumbers()
{
    NodeTableModel model;
    NodeTableProxy proxy;
    proxy.setSourceModel(&model);
    Tester proxyTester(&proxy, kQtTest);
    model.setRows({
        makeRow(ref(NodeKind::MlpNeuron, 10, 1, 0), {}, 0, 0, {}, {}, {}),
        makeRow(ref(NodeKind::MlpNeuron, 9, 100, 0), {}, 0, 0, {}, {}, {}),
        makeRow(ref(NodeKind::MlpNeuron, 9, 20, 0), {}, 0, 0, {}, {}, {}),
        makeRow(ref(NodeKind::AttnHead, 2, 11, 5, 3), {}, 0, 0, {}, {}, {}),
        makeRow(ref(NodeKind::AttnHead, 2, 2, 5, 3), {}, 0, 0, {}, {}, {}),
    });
    proxy.sort(NodeTableModel::NameColumn, Qt::AscendingOrder);
    QCOMPARE(visibleNames(proxy),
             (QStringList{QStringLiteral("mlp:9:20@0"), QStringLiteral("mlp:9:100@0"), QStringLiteral("mlp:10:1@0"),
                          QStringLiteral("attn:2:2@5,3"), QStringLiteral("attn:2:11@5,3")}));
}

void TestNodeTable::textFilter_data()
{
    QTest::addColumn<QString>("text");
    QTest::addColumn<QStringList>("expected"); // in source order (the proxy is not sorted here)
    const QString all = QStringLiteral("mlp:5:123@7 attn:3:7@7,2 mlp_sae:1:42@3 attn_sae:2:9@4 resid_sae:0:9@1 emb@0 mlp:10:5@7 mlp:9:5@7");
    QTest::addRow("empty shows all") << QString() << all.split(QLatin1Char(' '));
    QTest::addRow("blank shows all") << QStringLiteral("   ") << all.split(QLatin1Char(' '));
    QTest::addRow("name fragment") << QStringLiteral("mlp:") << QStringList{QStringLiteral("mlp:5:123@7"), QStringLiteral("mlp:10:5@7"), QStringLiteral("mlp:9:5@7")};
    QTest::addRow("name prefix matches latents too") << QStringLiteral("_sae")
        << QStringList{QStringLiteral("mlp_sae:1:42@3"), QStringLiteral("attn_sae:2:9@4"), QStringLiteral("resid_sae:0:9@1")};
    QTest::addRow("token, any case") << QStringLiteral("MARY")
        << QStringList{QStringLiteral("mlp:5:123@7"), QStringLiteral("attn:3:7@7,2"), QStringLiteral("mlp:10:5@7"), QStringLiteral("mlp:9:5@7")};
    QTest::addRow("head's key token") << QStringLiteral(" to") << QStringList{QStringLiteral("attn:3:7@7,2")};
    QTest::addRow("middle dot stands for a space") << QStringLiteral("·John") << QStringList{QStringLiteral("attn:3:7@7,2"), QStringLiteral("attn_sae:2:9@4")};
    QTest::addRow("top write tokens") << QStringLiteral("paris")
        << QStringList{QStringLiteral("attn:3:7@7,2"), QStringLiteral("resid_sae:0:9@1")};
    QTest::addRow("token with quote and newline") << QStringLiteral("\"b\"\n") << QStringList{QStringLiteral("mlp_sae:1:42@3")};
    QTest::addRow("no match") << QStringLiteral("zzz") << QStringList{};
}

void TestNodeTable::textFilter()
{
    QFETCH(QString, text);
    QFETCH(QStringList, expected);
    NodeTableModel model;
    NodeTableProxy proxy;
    proxy.setSourceModel(&model);
    Tester proxyTester(&proxy, kQtTest);
    model.setRows(sampleRows());
    proxy.setTextFilter(text);
    QCOMPARE(visibleNames(proxy), expected);
    // The filter survives a new snapshot, and clearing it brings every row back.
    model.setRows(sampleRows());
    QCOMPARE(visibleNames(proxy), expected);
    proxy.setTextFilter({});
    QCOMPARE(proxy.rowCount(), int(sampleRows().size()));
}

void TestNodeTable::kindFilter_data()
{
    QTest::addColumn<int>("kind"); // -1 = all
    QTest::addColumn<QString>("text");
    QTest::addColumn<QStringList>("expected");
    QTest::addRow("all") << -1 << QString() << QStringLiteral("mlp:5:123@7 attn:3:7@7,2 mlp_sae:1:42@3 attn_sae:2:9@4 resid_sae:0:9@1 emb@0 mlp:10:5@7 mlp:9:5@7").split(QLatin1Char(' '));
    QTest::addRow("neurons") << int(NodeKind::MlpNeuron) << QString()
        << QStringList{QStringLiteral("mlp:5:123@7"), QStringLiteral("mlp:10:5@7"), QStringLiteral("mlp:9:5@7")};
    QTest::addRow("heads") << int(NodeKind::AttnHead) << QString() << QStringList{QStringLiteral("attn:3:7@7,2")};
    QTest::addRow("MLP latents") << int(NodeKind::MlpSaeLatent) << QString() << QStringList{QStringLiteral("mlp_sae:1:42@3")};
    QTest::addRow("attention latents") << int(NodeKind::AttnSaeLatent) << QString() << QStringList{QStringLiteral("attn_sae:2:9@4")};
    QTest::addRow("residual latents") << int(NodeKind::ResidSaeLatent) << QString() << QStringList{QStringLiteral("resid_sae:0:9@1")};
    QTest::addRow("embeddings") << int(NodeKind::Embedding) << QString() << QStringList{QStringLiteral("emb@0")};
    QTest::addRow("neurons and text") << int(NodeKind::MlpNeuron) << QStringLiteral("mlp:1")
        << QStringList{QStringLiteral("mlp:10:5@7")};
    QTest::addRow("heads and text, none") << int(NodeKind::AttnHead) << QStringLiteral("London") << QStringList{};
}

void TestNodeTable::kindFilter()
{
    QFETCH(int, kind);
    QFETCH(QString, text);
    QFETCH(QStringList, expected);
    NodeTableModel model;
    NodeTableProxy proxy;
    proxy.setSourceModel(&model);
    Tester proxyTester(&proxy, kQtTest);
    model.setRows(sampleRows());
    proxy.setKindFilter(kind < 0 ? std::nullopt : std::optional<NodeKind>(NodeKind(kind)));
    proxy.setTextFilter(text);
    QCOMPARE(visibleNames(proxy), expected);
    proxy.setKindFilter(std::nullopt);
    proxy.setTextFilter({});
    QCOMPARE(proxy.rowCount(), int(sampleRows().size()));
}

// The line edit and combo box drive the proxy.
void TestNodeTable::viewFilterWidgets()
{
    NodeTableView view;
    Tester proxyTester(view.proxy(), kQtTest);
    view.setRows(sampleRows());
    view.filterEdit()->setText(QStringLiteral("mary"));
    QCOMPARE(view.proxy()->rowCount(), 4);
    const int heads = view.kindCombo()->findData(int(NodeKind::AttnHead));
    QVERIFY(heads > 0);
    view.kindCombo()->setCurrentIndex(heads);
    QCOMPARE(visibleNames(*view.proxy()), QStringList{QStringLiteral("attn:3:7@7,2")});
    view.filterEdit()->clear();
    view.kindCombo()->setCurrentIndex(view.kindCombo()->findData(int(NodeKind::Embedding)));
    QCOMPARE(visibleNames(*view.proxy()), QStringList{QStringLiteral("emb@0")});
    view.kindCombo()->setCurrentIndex(0);
    QCOMPARE(view.proxy()->rowCount(), int(sampleRows().size()));
}

void TestNodeTable::selectingRowEmitsNode()
{
    NodeTableView view;
    view.resize(1000, 400);
    view.setRows(sampleRows());
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QSignalSpy spy(&view, &NodeTableView::nodeActivated);
    QTableView* table = view.tableView();

    // Default sort: total effect descending (10, 9.5, 4, 1, 0.5, -1, -3, absent).
    QCOMPARE(visibleNames(*view.proxy()).mid(0, 3),
             (QStringList{QStringLiteral("mlp:5:123@7"), QStringLiteral("attn_sae:2:9@4"), QStringLiteral("attn:3:7@7,2")}));

    const QRect rect = table->visualRect(view.proxy()->index(2, NodeTableModel::ActivationColumn));
    QTest::mouseClick(table->viewport(), Qt::LeftButton, {}, rect.center());
    QCOMPARE(spy.count(), 1);
    QCOMPARE(nodeOfSignal(spy, 0), ref(NodeKind::AttnHead, 3, 7, 7, 2));
    QCOMPARE(view.selectedNode(), std::optional<NodeRef>(ref(NodeKind::AttnHead, 3, 7, 7, 2)));

    // Clicking another cell of the same row changes nothing.
    const QRect same = table->visualRect(view.proxy()->index(2, NodeTableModel::NameColumn));
    QTest::mouseClick(table->viewport(), Qt::LeftButton, {}, same.center());
    QCOMPARE(spy.count(), 1);

    // Programmatic row selection (what the keyboard does) emits too.
    table->selectRow(0);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(nodeOfSignal(spy, 1), ref(NodeKind::MlpNeuron, 5, 123, 7));
}

void TestNodeTable::keyboardSelectionEmits()
{
    NodeTableView view;
    view.resize(1000, 400);
    view.setRows(sampleRows());
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QSignalSpy spy(&view, &NodeTableView::nodeActivated);
    view.tableView()->selectRow(0);
    QCOMPARE(spy.count(), 1);
    view.tableView()->setFocus();
    QTest::keyClick(view.tableView(), Qt::Key_Down);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(nodeOfSignal(spy, 1), view.model()->nodeAt(view.proxy()->mapToSource(view.proxy()->index(1, 0)).row()));
}

void TestNodeTable::sortFilterAndSnapshotsDoNotEmit()
{
    NodeTableView view;
    Tester proxyTester(view.proxy(), kQtTest);
    view.setRows(sampleRows());
    QSignalSpy spy(&view, &NodeTableView::nodeActivated);
    QTableView* table = view.tableView();
    const NodeRef mary = ref(NodeKind::MlpNeuron, 5, 123, 7);
    table->selectRow(view.proxy()->mapFromSource(view.model()->index(view.model()->rowOf(mary), 0)).row());
    QCOMPARE(spy.count(), 1);

    const auto selectedName = [&] {
        const QModelIndexList rows = table->selectionModel()->selectedRows(NodeTableModel::NameColumn);
        return rows.size() == 1 ? rows.first().data().toString() : QString();
    };

    // Re-sorting keeps the node selected and says nothing.
    table->sortByColumn(NodeTableModel::ActivationColumn, Qt::AscendingOrder);
    table->sortByColumn(NodeTableModel::NameColumn, Qt::DescendingOrder);
    QCOMPARE(selectedName(), nameOf(mary));
    QCOMPARE(spy.count(), 0 + 1);

    // Filtering the node out clears the row selection without telling anyone; clearing the filter
    // brings the selection back.
    view.filterEdit()->setText(QStringLiteral("London"));
    QCOMPARE(view.proxy()->rowCount(), 1);
    QCOMPARE(selectedName(), QString());
    QCOMPARE(spy.count(), 1);
    view.filterEdit()->clear();
    QCOMPARE(selectedName(), nameOf(mary));
    QCOMPARE(spy.count(), 1);

    // A new snapshot keeps the selection when the node is still there, silently.
    QVector<NodeRow> rows = sampleRows();
    std::reverse(rows.begin(), rows.end());
    view.setRows(rows);
    QCOMPARE(selectedName(), nameOf(mary));
    QCOMPARE(spy.count(), 1);
    // ... and shows none when it is gone.
    view.setRows(rows.mid(0, 2));
    QCOMPARE(selectedName(), QString());
    QCOMPARE(spy.count(), 1);
    view.setEffectsAvailable(false);
    view.setRows(sampleRows());
    QCOMPARE(selectedName(), nameOf(mary));
    QCOMPARE(spy.count(), 1);
}

void TestNodeTable::selectNodeSelectsSilently()
{
    NodeTableView view;
    view.setRows(sampleRows());
    QSignalSpy spy(&view, &NodeTableView::nodeActivated);
    QTableView* table = view.tableView();
    const NodeRef latent = ref(NodeKind::AttnSaeLatent, 2, 9, 4);

    view.selectNode(latent);
    QCOMPARE(spy.count(), 0);
    const QModelIndexList rows = table->selectionModel()->selectedRows();
    QCOMPARE(rows.size(), 1);
    QCOMPARE(view.model()->nodeAt(view.proxy()->mapToSource(rows.first()).row()), latent);
    QCOMPARE(view.proxy()->mapToSource(table->currentIndex()).row(), view.model()->rowOf(latent));

    // A node the table does not list: no row selected, still silent.
    view.selectNode(ref(NodeKind::MlpNeuron, 0, 1, 1));
    QCOMPARE(spy.count(), 0);
    QVERIFY(table->selectionModel()->selectedRows().isEmpty());

    // Selecting the same node again is a no-op.
    view.selectNode(latent);
    view.selectNode(latent);
    QCOMPARE(spy.count(), 0);
    QCOMPARE(table->selectionModel()->selectedRows().size(), 1);

    // After selectNode, the user picking another row is reported.
    table->selectRow(view.proxy()->mapFromSource(view.model()->index(0, 0)).row());
    QCOMPARE(spy.count(), 1);
    QCOMPARE(nodeOfSignal(spy, 0), view.model()->nodeAt(0));

    view.clearSelection();
    QVERIFY(table->selectionModel()->selectedRows().isEmpty());
    QCOMPARE(spy.count(), 1);
}

// Wired the way the main window wires it: nodeActivated → "select everywhere" → selectNode.
void TestNodeTable::noFeedbackLoop()
{
    NodeTableView view;
    view.setRows(sampleRows());
    QSignalSpy spy(&view, &NodeTableView::nodeActivated);
    int echoes = 0;
    connect(&view, &NodeTableView::nodeActivated, &view, [&](const NodeRef& node) {
        ++echoes;
        QVERIFY(echoes < 5);
        view.selectNode(node);
    });
    view.tableView()->selectRow(3);
    QCOMPARE(spy.count(), 1);
    QCOMPARE(echoes, 1);
    view.selectNode(view.model()->nodeAt(1));
    QCOMPARE(spy.count(), 1);
}

void TestNodeTable::effectColumnsHiddenWithoutTarget()
{
    NodeTableView view;
    view.setRows(sampleRows());
    QTableView* table = view.tableView();
    QVERIFY(!table->isColumnHidden(NodeTableModel::DirectEffectColumn));
    QCOMPARE(table->horizontalHeader()->sortIndicatorSection(), int(NodeTableModel::TotalEffectColumn));

    view.setEffectsAvailable(false);
    QVERIFY(table->isColumnHidden(NodeTableModel::DirectEffectColumn));
    QVERIFY(table->isColumnHidden(NodeTableModel::TotalEffectColumn));
    QVERIFY(!table->isColumnHidden(NodeTableModel::ActivationColumn));
    // The sort falls back to a visible column.
    QCOMPARE(table->horizontalHeader()->sortIndicatorSection(), int(NodeTableModel::WriteMagnitudeColumn));
    QCOMPARE(visibleNames(*view.proxy()).first(), QStringLiteral("emb@0"));

    view.setEffectsAvailable(true);
    QVERIFY(!table->isColumnHidden(NodeTableModel::TotalEffectColumn));
    QCOMPARE(table->horizontalHeader()->sortIndicatorSection(), int(NodeTableModel::TotalEffectColumn));
}

void TestNodeTable::csvExportMatchesView()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    NodeTableView view;
    view.setProvenance(QStringLiteral("gpt2 (/models/gpt2)"), QStringLiteral("When Mary and John went,\nJohn gave"));
    view.setRows(sampleRows());
    // "l" keeps the three mlp neurons (names), mlp_sae (name) and attn_sae (" London"); drops the rest.
    view.filterEdit()->setText(QStringLiteral("l"));
    view.tableView()->sortByColumn(NodeTableModel::ActivationColumn, Qt::DescendingOrder);

    const QString path = dir.filePath(QStringLiteral("table.csv"));
    QString error;
    QVERIFY2(view.exportCsv(path, &error), qPrintable(error));

    QFile file(path);
    QVERIFY(file.open(QIODevice::ReadOnly));
    std::vector<std::pair<std::string, std::string>> comments;
    const auto rows = parseCsv(file.readAll().toStdString(), &comments);

    const auto commentValue = [&](const std::string& key) {
        for (const auto& [k, v] : comments) {
            if (k == key)
                return v;
        }
        return std::string("<missing>");
    };
    QCOMPARE(commentValue("model"), std::string("gpt2 (/models/gpt2)"));
    QCOMPARE(commentValue("prompt"), std::string("When Mary and John went, John gave"));
    QCOMPARE(commentValue("metric"), std::string("node table"));
    QCOMPARE(commentValue("sort"), std::string("activation descending"));
    QVERIFY(commentValue("filter").find("\"l\"") != std::string::npos);

    const std::vector<std::string> header{"node", "kind", "layer", "tokens", "activation", "write_magnitude",
                                          "direct_effect", "total_effect", "top_write_tokens"};
    QVERIFY(!rows.empty());
    QCOMPARE(rows[0], header);

    // Exactly the rows on screen, in screen order, with raw values.
    const NodeTableProxy& proxy = *view.proxy();
    QCOMPARE(proxy.rowCount(), 5);
    QCOMPARE(int(rows.size()) - 1, proxy.rowCount());
    bool sawNasty = false, sawSpace = false;
    for (int r = 0; r < proxy.rowCount(); ++r) {
        const NodeRow& expected = view.model()->rowAt(proxy.mapToSource(proxy.index(r, 0)).row());
        const std::vector<std::string>& got = rows[r + 1];
        QCOMPARE(got.size(), header.size());
        QCOMPARE(QString::fromStdString(got[0]), expected.name);
        QCOMPARE(QString::fromStdString(got[1]), expected.kind);
        QCOMPARE(QString::fromStdString(got[2]), expected.layer >= 0 ? QString::number(expected.layer) : QString());
        QCOMPARE(QString::fromStdString(got[3]), expected.tokens);
        QCOMPARE(std::stod(got[4]), expected.activation);
        QCOMPARE(std::stod(got[5]), expected.writeMagnitude);
        if (expected.directEffect)
            QCOMPARE(std::stod(got[6]), *expected.directEffect);
        else
            QCOMPARE(got[6], std::string());
        if (expected.totalEffect)
            QCOMPARE(std::stod(got[7]), *expected.totalEffect);
        else
            QCOMPARE(got[7], std::string());
        QCOMPARE(QString::fromStdString(got[8]), expected.topWriteTokens);
        sawNasty = sawNasty || expected.tokens == kNastyToken;
        sawSpace = sawSpace || expected.tokens == QStringLiteral(" Mary");
    }
    QVERIFY(sawNasty);
    QVERIFY(sawSpace);
    // The order is the view's: activation descending (10, 3, 2, 0.5, -2).
    std::vector<std::string> order;
    for (std::size_t i = 1; i < rows.size(); ++i)
        order.push_back(rows[i][0]);
    QCOMPARE(order, (std::vector<std::string>{"mlp:5:123@7", "mlp:10:5@7", "mlp:9:5@7", "attn_sae:2:9@4", "mlp_sae:1:42@3"}));
    // Full precision, not the four digits on screen.
    QCOMPARE(rows[4][6], CsvWriter::number(1.0 / 3.0));
    QVERIFY(rows[4][6].size() > 10);
}

void TestNodeTable::csvExportWithoutTarget()
{
    QTemporaryDir dir;
    NodeTableView view;
    view.setRows(sampleRows());
    view.setEffectsAvailable(false);
    const QString path = dir.filePath(QStringLiteral("no-target.csv"));
    QString error;
    QVERIFY2(view.exportCsv(path, &error), qPrintable(error));
    QFile file(path);
    QVERIFY(file.open(QIODevice::ReadOnly));
    const auto rows = parseCsv(file.readAll().toStdString());
    QCOMPARE(rows.size(), std::size_t(sampleRows().size() + 1));
    // The hidden effect columns are not in the file (not written as zeros or blanks).
    QCOMPARE(rows[0], (std::vector<std::string>{"node", "kind", "layer", "tokens", "activation", "write_magnitude", "top_write_tokens"}));
    QCOMPARE(rows[1][0], std::string("emb@0")); // sorted by write magnitude
}

void TestNodeTable::csvExportUnwritable()
{
    QTemporaryDir dir;
    const QString blocker = dir.filePath(QStringLiteral("not-a-directory"));
    {
        QFile f(blocker);
        QVERIFY(f.open(QIODevice::WriteOnly));
    }
    NodeTableView view;
    view.setRows(sampleRows());
    const QString path = blocker + QStringLiteral("/table.csv");
    QString error;
    QVERIFY(!view.exportCsv(path, &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(error.contains(path));
    QVERIFY(!QFile::exists(path));
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot),
             QStringList{QStringLiteral("not-a-directory")});

    const QString missingDir = dir.filePath(QStringLiteral("missing/table.csv"));
    QVERIFY(!view.exportCsv(missingDir));
    QVERIFY(!QFile::exists(missingDir));
}

// Renders ~30 rows at 1200×500 (a smoke test of painting); with NODE_TABLE_GRAB=path the picture is
// saved for a human to look at.
void TestNodeTable::rendersThirtyRows()
{
    QVector<NodeRow> rows;
    const QStringList words{QStringLiteral(" Mary"), QStringLiteral(" John"), QStringLiteral(" went"), QStringLiteral(" to"),
                            QStringLiteral(" the"), QStringLiteral(" store"), QStringLiteral(","), QStringLiteral(" gave"),
                            QStringLiteral(" a"), QStringLiteral(" drink")};
    for (int i = 0; i < 30; ++i) {
        const NodeKind kind = NodeKind(i % 6);
        NodeRef node = ref(kind, i % 12, kind == NodeKind::AttnHead ? i % 12 : (i * 7919) % 24576, 3 + i % 10,
                           kind == NodeKind::AttnHead ? i % 3 : 0);
        if (kind == NodeKind::Embedding) {
            node.layer = 0;
            node.index = 0;
        }
        const QString tokens = kind == NodeKind::AttnHead ? words[i % 10] % QStringLiteral(" → ") % words[(i + 3) % 10]
                                                          : words[i % 10];
        const double sign = (i % 3 == 0) ? -1.0 : 1.0;
        rows.append(makeRow(node, tokens, sign * std::pow(1.7, i % 9) * 0.37, 0.05 * (i + 1) * 1.234567,
                            i % 7 == 0 ? std::nullopt : std::optional<double>(sign * 0.0123 * (30 - i)), sign * 0.031 * (30 - i),
                            words[(i + 1) % 10] % QStringLiteral(", ") % words[(i + 5) % 10] % QStringLiteral(", ") %
                                words[(i + 7) % 10]));
    }
    NodeTableView view;
    view.setProvenance(QStringLiteral("gpt2"), QStringLiteral("When Mary and John went to the store"));
    view.resize(1200, 500);
    view.setRows(rows);
    view.selectNode(rows[4].node);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    const QPixmap picture = view.grab();
    QCOMPARE(picture.size() / picture.devicePixelRatio(), QSize(1200, 500));
    const QString out = QString::fromLocal8Bit(qgetenv("NODE_TABLE_GRAB"));
    if (!out.isEmpty())
        QVERIFY(picture.save(out));

    // Without a target: the effect columns are gone and the table is sorted by write magnitude.
    view.setEffectsAvailable(false);
    view.setRows(rows);
    const QPixmap noTarget = view.grab();
    QCOMPARE(noTarget.size(), picture.size());
    if (!out.isEmpty())
        QVERIFY(noTarget.save(QString(out).replace(QStringLiteral(".png"), QStringLiteral("-no-target.png"))));
}

QTEST_MAIN(TestNodeTable)
#include "tst_node_table.moc"
