#pragma once
// The Ablations list (product.md §3): every ablation of the run, with its value (editable) and a
// remove button. Ablations are kept as the CLI writes them, "NODE=VALUE" (core/analysis/intervention.h
// parses and checks them on the worker thread, so a wrong one fails there with one message).

#include <QAbstractTableModel>
#include <QWidget>

class QLabel;
class QTableView;

namespace cs::ui {

class AblationListModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { NodeColumn, ValueColumn, RemoveColumn, ColumnCount }; // RemoveColumn holds the × button
    explicit AblationListModel(QObject* parent = nullptr);

    struct Entry {
        QString node;   // "mlp:1:5@3", "attn:0:2@*"
        double value = 0;
        bool operator==(const Entry&) const = default;
    };
    // "NODE=VALUE" (VALUE may be missing: 0) → an entry; the split is at the last '=' (node names have none).
    static Entry parse(const QString& spec);
    static QString spec(const Entry& entry);

    void setSpecs(const QStringList& specs);   // one model reset
    QStringList specs() const;
    const QVector<Entry>& entries() const { return m_entries; }
    int rowOfNode(const QString& node) const;  // -1 when not ablated

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
    bool removeRows(int row, int count, const QModelIndex& parent = {}) override;

Q_SIGNALS:
    // The user changed a value or removed a row (not emitted by setSpecs).
    void edited();

private:
    QVector<Entry> m_entries;
};

class AblationsPanel : public QWidget {
    Q_OBJECT
public:
    explicit AblationsPanel(QWidget* parent = nullptr);

    void setAblations(const QStringList& specs);
    QStringList ablations() const { return m_model->specs(); }
    AblationListModel* model() const { return m_model; }
    QTableView* view() const { return m_view; }
    // Removes one ablation, as its row's × button does.
    void removeAt(int row);

Q_SIGNALS:
    void ablationsEdited(const QStringList& specs);

private:
    void rebuildButtons();

    AblationListModel* m_model;
    QTableView* m_view;
    QLabel* m_empty;
};

} // namespace cs::ui
