#pragma once
// Small helpers shared by the test suites (header-only: tests link libraries, never sources).

#include "core/model/gpt2_weights.h"

#include <ATen/ATen.h>

#include <QSignalSpy>
#include <QString>
#include <QTest>

#include <filesystem>
#include <string>

namespace cs::test {

inline std::filesystem::path dataDir()
{
    return std::filesystem::path(TEST_DATA_DIR);
}

// The tiny fixture model's folder, and the indirect-object prompt the window and engine tests use.
inline QString tinyModel()
{
    return QString::fromStdString((dataDir() / "tiny-gpt2").string());
}

inline const QString kPrompt = QStringLiteral("When Mary and John went to the store, John gave a drink to");

inline double maxAbsDiff(const at::Tensor& a, const at::Tensor& b)
{
    return (a.detach().to(at::kDouble) - b.detach().to(at::kDouble)).abs().max().item<double>();
}

inline QByteArray describeShape(const at::Tensor& t)
{
    std::string s;
    for (auto d : t.sizes())
        s += std::to_string(d) + " ";
    return QByteArray::fromStdString(s);
}

// QSignalSpy::wait() waits for a *new* emission: a signal emitted from another thread before wait()
// starts is recorded (direct connection) but does not end the wait. Use this after creating a fresh spy.
inline bool waitForSignal(QSignalSpy& spy, int timeoutMs)
{
    return !spy.isEmpty() || spy.wait(timeoutMs);
}

// Every weight tensor of two models equal, bit for bit.
inline bool sameWeights(const Gpt2Weights& a, const Gpt2Weights& b)
{
    if (!at::equal(a.tokenEmbedding, b.tokenEmbedding) || !at::equal(a.positionEmbedding, b.positionEmbedding) ||
        !at::equal(a.unembedding, b.unembedding) || !at::equal(a.lnFinalGain, b.lnFinalGain) ||
        !at::equal(a.lnFinalBias, b.lnFinalBias) || a.layers.size() != b.layers.size())
        return false;
    for (std::size_t i = 0; i < a.layers.size(); ++i) {
        const auto& x = a.layers[i];
        const auto& y = b.layers[i];
        for (auto [p, q] : {std::pair{&x.ln1Gain, &y.ln1Gain}, {&x.ln1Bias, &y.ln1Bias}, {&x.attnQkvWeight, &y.attnQkvWeight},
                            {&x.attnQkvBias, &y.attnQkvBias}, {&x.attnOutWeight, &y.attnOutWeight}, {&x.attnOutBias, &y.attnOutBias},
                            {&x.ln2Gain, &y.ln2Gain}, {&x.ln2Bias, &y.ln2Bias}, {&x.mlpInWeight, &y.mlpInWeight},
                            {&x.mlpInBias, &y.mlpInBias}, {&x.mlpOutWeight, &y.mlpOutWeight}, {&x.mlpOutBias, &y.mlpOutBias}})
            if (!at::equal(*p, *q))
                return false;
    }
    return true;
}

} // namespace cs::test

// Compares two tensors' shapes and values within an absolute tolerance, printing the worst difference.
#define CS_COMPARE_TENSORS(actual, expected, tolerance)                                                              \
    do {                                                                                                             \
        const at::Tensor a_ = (actual);                                                                              \
        const at::Tensor e_ = (expected);                                                                            \
        QCOMPARE(cs::test::describeShape(a_), cs::test::describeShape(e_));                                          \
        const double d_ = cs::test::maxAbsDiff(a_, e_);                                                              \
        if (!(d_ <= (tolerance)))                                                                                    \
            QFAIL(qPrintable(QStringLiteral("max |difference| %1 exceeds %2").arg(d_).arg(double(tolerance))));      \
    } while (false)
