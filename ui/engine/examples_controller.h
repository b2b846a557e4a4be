#pragma once
// The Examples tab's engine (issue 14): indexes a corpus for the open model and autoencoders in the
// background and answers "where does this node fire?" from the saved index.
//
// Indexing runs on a worker thread of its own, not interleaved with the engine's jobs: it takes
// minutes, while the engine's one-slot mailbox must answer a click in milliseconds, and an interleaved
// job would either hold clicks up for a window at a time or need the engine to know about corpora.
// The worker opens its own copy of the model (read-only weights, memory-mapped where the file allows),
// so no model state crosses threads; the GUI receives progress as plain values and reads the finished
// index (an immutable, checksummed file) directly — a node's examples take well under a millisecond.
// No libtorch in this header.

#include "core/analysis/node.h"

#include <QObject>
#include <QPair>
#include <QString>
#include <QStringList>
#include <QThread>
#include <QVector>

#include <atomic>
#include <memory>

#include "core/model/sae_role.h"

namespace cs {
class ExampleIndex;
class Gpt2Tokenizer;
}

namespace cs::ui {

// What to index: the model folder and the autoencoders as the window added them (role, "L=PATH").
struct ExamplesSource {
    QString modelDir;
    QVector<QPair<SaeRole, QString>> saes;
    bool operator==(const ExamplesSource&) const = default;
};

struct ExampleItem {
    QStringList tokens;            // the shown tokens (display strings, leading spaces kept)
    QVector<float> activations;    // the node's activation at each
    int maxIndex = 0;              // the maximum among them
    int keyIndex = -1;             // heads: the most-attended key from the maximum's query, or -1 (off screen / not a head)
    float max = 0;
    int doc = 0;
    qint64 position = 0;           // stream index of the maximum
    QString prompt;                // the forward window's text up to the last shown token
    int promptToken = 0;           // the maximum's token index when `prompt` runs
    int promptKeyToken = 0;        // heads: the key's token index
};

struct ExampleBandItem {
    float lo = 0, hi = 0;
    QVector<ExampleItem> examples;
};

struct ExamplesSnapshot {
    QString node;                  // e.g. "mlp:1:5"
    QString message;               // why there is nothing to show (empty when there is)
    float corpusMax = 0;
    qint64 activeWindows = 0;
    qint64 windows = 0;
    QVector<ExampleItem> top;
    QVector<ExampleBandItem> bands;
    double milliseconds = 0;       // reading and converting them
};

struct ExamplesProgress {
    qint64 tokensDone = 0, tokens = 0;
    double tokensPerSecond = 0, etaSeconds = 0;
};

class ExamplesWorker;

class ExamplesController : public QObject {
    Q_OBJECT
public:
    explicit ExamplesController(QObject* parent = nullptr);
    ~ExamplesController() override; // cancels the job in progress (its work is saved), joins the thread

    void setSource(const ExamplesSource& source); // the index is reopened (or rebuilt) when it changes
    const ExamplesSource& source() const { return m_source; }
    void setCorpus(const QString& path);
    QString corpus() const { return m_corpus; }
    // Opens the saved index or builds it in the background (progress, then ready / failed / cancelled).
    void start();
    void cancel();
    bool busy() const { return m_busy; }
    bool ready() const { return m_index != nullptr; }
    qint64 indexedTokens() const;
    // Read from the finished index on the calling thread.
    ExamplesSnapshot examples(const NodeRef& node) const;
    double corpusMax(const NodeRef& node) const; // 0 when unknown

Q_SIGNALS:
    void progress(const cs::ui::ExamplesProgress& progress);
    void indexReady(qint64 tokens, bool reused, double seconds);
    void failed(const QString& message);
    void cancelled();
    void message(const QString& message); // "the saved index is stale …; rebuilding it"
    void busyChanged(bool busy);

private:
    void onFinished(quint64 job, std::shared_ptr<const cs::ExampleIndex> index, std::shared_ptr<const cs::Gpt2Tokenizer> tokenizer,
                    bool reused, double seconds, const QString& error, bool wasCancelled);

    QThread m_thread;
    ExamplesWorker* m_worker = nullptr;
    ExamplesSource m_source;
    QString m_corpus;
    quint64 m_job = 0;
    std::shared_ptr<std::atomic<quint64>> m_cancelUpTo = std::make_shared<std::atomic<quint64>>(0);
    bool m_busy = false;
    std::shared_ptr<const cs::ExampleIndex> m_index;
    std::shared_ptr<const cs::Gpt2Tokenizer> m_tokenizer;
    friend class ExamplesWorker;
};

} // namespace cs::ui

Q_DECLARE_METATYPE(cs::ui::ExamplesProgress)
