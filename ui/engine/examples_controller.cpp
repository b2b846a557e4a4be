#include "ui/engine/examples_controller.h"
#include "ui/engine/user_message.h"

#include "core/examples/example_index.h"
#include "core/model/forward.h"
#include "core/model/sae_set.h"
#include "core/util/errors.h"

#include <QElapsedTimer>
#include <QPointer>

#include <chrono>

namespace cs::ui {

// Lives on the controller's thread; one job at a time, in the order they were posted.
class ExamplesWorker : public QObject {
public:
    explicit ExamplesWorker(ExamplesController* controller, std::shared_ptr<std::atomic<quint64>> cancelUpTo)
        : m_controller(controller), m_cancelUpTo(std::move(cancelUpTo))
    {
    }

    void build(quint64 job, const ExamplesSource& source, const QString& corpus)
    {
        QElapsedTimer timer;
        timer.start();
        const auto cancelled = [this, job] { return job <= m_cancelUpTo->load(); };
        std::shared_ptr<const ExampleIndex> index;
        QString error;
        bool wasCancelled = false, reused = false;
        try {
            if (cancelled())
                throw Cancelled();
            if (!m_model || m_modelDir != source.modelDir) {
                m_model.reset();
                m_model = loadHfGpt2(source.modelDir.toStdString());
                m_modelDir = source.modelDir;
            }
            SaeSet saes;
            for (const auto& [role, spec] : source.saes)
                saes.add(loadAndBindSae(spec.toStdString(), m_model->config, role));
            IndexOptions o;
            o.cancelled = cancelled;
            o.message = [this](const std::string& m) { post([m](ExamplesController* c) { Q_EMIT c->message(QString::fromStdString(m)); }); };
            auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
            o.progress = [this, last](const IndexProgress& p) mutable {
                const auto now = std::chrono::steady_clock::now();
                if (p.windowsDone != p.windows && now - last < std::chrono::milliseconds(200))
                    return; // a few updates a second: no flood of queued events
                last = now;
                const ExamplesProgress v{p.tokensDone, p.tokens, p.tokensPerSecond, p.etaSeconds};
                post([v](ExamplesController* c) { Q_EMIT c->progress(v); });
            };
            const IndexResult r = ensureExampleIndex(*m_model, saes, corpus.toStdString(), o);
            index = r.index;
            reused = r.reused;
        } catch (const Cancelled&) {
            wasCancelled = true;
        } catch (const std::exception& e) {
            error = userMessage(e);
        }
        const auto tokenizer = m_model ? m_model->tokenizer : nullptr;
        const double seconds = timer.elapsed() / 1000.0;
        post([=](ExamplesController* c) { c->onFinished(job, index, tokenizer, reused, seconds, error, wasCancelled); });
    }

private:
    template <typename F>
    void post(F&& f)
    {
        QPointer<ExamplesController> c = m_controller;
        QMetaObject::invokeMethod(m_controller, [c, f = std::forward<F>(f)] {
            if (c)
                f(c.data());
        }, Qt::QueuedConnection);
    }

    ExamplesController* m_controller;
    std::shared_ptr<std::atomic<quint64>> m_cancelUpTo;
    std::shared_ptr<const Gpt2Model> m_model;
    QString m_modelDir;
};

ExamplesController::ExamplesController(QObject* parent) : QObject(parent)
{
    qRegisterMetaType<ExamplesProgress>();
    m_worker = new ExamplesWorker(this, m_cancelUpTo);
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    m_thread.setObjectName(QStringLiteral("examples-index"));
    m_thread.start(QThread::LowPriority);
}

ExamplesController::~ExamplesController()
{
    m_cancelUpTo->store(m_job);
    m_thread.quit();
    m_thread.wait();
}

void ExamplesController::setSource(const ExamplesSource& source)
{
    if (source == m_source)
        return;
    m_source = source;
    m_index.reset();
    if (m_busy)
        start(); // the job in progress indexes the old model; it is saved and a new one starts
}

void ExamplesController::setCorpus(const QString& path)
{
    if (path == m_corpus)
        return;
    m_corpus = path;
    m_index.reset();
}

void ExamplesController::start()
{
    if (m_source.modelDir.isEmpty() || m_corpus.isEmpty())
        return;
    m_cancelUpTo->store(m_job); // a newer job supersedes the one in progress
    const quint64 job = ++m_job;
    const ExamplesSource source = m_source;
    const QString corpus = m_corpus;
    ExamplesWorker* worker = m_worker;
    if (!m_busy) {
        m_busy = true;
        Q_EMIT busyChanged(true);
    }
    QMetaObject::invokeMethod(worker, [worker, job, source, corpus] { worker->build(job, source, corpus); }, Qt::QueuedConnection);
}

void ExamplesController::cancel()
{
    m_cancelUpTo->store(m_job);
}

void ExamplesController::onFinished(quint64 job, std::shared_ptr<const ExampleIndex> index, std::shared_ptr<const Gpt2Tokenizer> tokenizer,
                                    bool reused, double seconds, const QString& error, bool wasCancelled)
{
    if (job != m_job)
        return; // superseded: the newer job reports
    m_busy = false;
    Q_EMIT busyChanged(false);
    if (wasCancelled) {
        Q_EMIT cancelled();
        return;
    }
    if (!error.isEmpty()) {
        Q_EMIT failed(error);
        return;
    }
    m_index = std::move(index);
    m_tokenizer = std::move(tokenizer);
    Q_EMIT indexReady(m_index->tokenCount(), reused, seconds);
}

qint64 ExamplesController::indexedTokens() const
{
    return m_index ? m_index->tokenCount() : 0;
}

namespace {

std::optional<ExampleNodeId> exampleNode(const NodeRef& node)
{
    if (node.kind == NodeKind::Embedding)
        return std::nullopt;
    return ExampleNodeId{node.kind, node.layer, node.index};
}

} // namespace

double ExamplesController::corpusMax(const NodeRef& node) const
{
    const auto id = exampleNode(node);
    return m_index && id ? m_index->corpusMax(*id) : 0.0;
}

ExamplesSnapshot ExamplesController::examples(const NodeRef& node) const
{
    QElapsedTimer timer;
    timer.start();
    ExamplesSnapshot s;
    const auto id = exampleNode(node);
    if (!id) {
        s.message = tr("Token embeddings have no dataset examples.");
        return s;
    }
    s.node = QString::fromStdString(id->name());
    if (!m_index) {
        s.message = m_busy ? tr("Indexing the corpus…") : tr("Open a corpus (Open model ▾ → Corpus…) to see where this node fires.");
        return s;
    }
    if (!m_index->covers(*id)) {
        s.message = tr("%1 is not in the index (its autoencoder was not loaded when the corpus was indexed).").arg(s.node);
        return s;
    }
    NodeExamples x;
    try {
        x = m_index->examples(*id);
    } catch (const InputError& e) {
        s.message = QString::fromStdString(oneLine(e.what()));
        return s;
    }
    const Gpt2Tokenizer& tok = *m_tokenizer;
    const auto& stream = m_index->tokens();
    const auto convert = [&](const Example& e) {
        ExampleItem item;
        for (int id : e.tokenIds)
            item.tokens.push_back(QString::fromStdString(tok.tokenString(id)));
        item.activations = QVector<float>(e.activations.begin(), e.activations.end());
        item.maxIndex = e.maxIndex;
        item.max = e.max;
        item.doc = e.doc;
        item.position = e.position;
        if (e.keyPosition >= e.shownStart && e.keyPosition < e.shownStart + std::int64_t(e.tokenIds.size()))
            item.keyIndex = static_cast<int>(e.keyPosition - e.shownStart);
        // The prompt is the forward window from its start, so that running it gives the indexed value.
        const std::vector<int> ids(stream.begin() + e.windowStart, stream.begin() + e.shownStart + std::int64_t(e.tokenIds.size()));
        item.prompt = QString::fromStdString(tok.decode(ids));
        item.promptToken = static_cast<int>(e.position - e.windowStart);
        item.promptKeyToken = e.keyPosition >= 0 ? static_cast<int>(e.keyPosition - e.windowStart) : item.promptToken;
        return item;
    };
    s.corpusMax = x.corpusMax;
    s.activeWindows = x.activeWindows;
    s.windows = m_index->windows();
    for (const auto& e : x.top)
        s.top.push_back(convert(e));
    for (const auto& b : x.bands) {
        ExampleBandItem band{b.lo, b.hi, {}};
        for (const auto& e : b.examples)
            band.examples.push_back(convert(e));
        s.bands.push_back(band);
    }
    s.milliseconds = timer.nsecsElapsed() / 1e6;
    return s;
}

} // namespace cs::ui
