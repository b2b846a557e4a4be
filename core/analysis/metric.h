#pragma once
// The four metrics of math §6.2 (product.md §3), as the grid, the node table, the exports and the
// sessions name them: one type across the core, the sessions and the window. Header only and without
// libtorch, so that the session library and the window's headers can use it.

#include <optional>
#include <string_view>

namespace cs {

enum class Metric { Activation = 0, WriteMagnitude = 1, DirectEffect = 2, TotalEffect = 3 };
inline constexpr int kMetricCount = 4;
inline constexpr Metric kMetrics[kMetricCount] = {Metric::Activation, Metric::WriteMagnitude, Metric::DirectEffect,
                                                  Metric::TotalEffect};

// Its name in files (CSV headers, JSON, sessions): "activation", "write_magnitude", "direct_effect",
// "total_effect".
constexpr const char* metricKey(Metric metric)
{
    switch (metric) {
    case Metric::Activation: return "activation";
    case Metric::WriteMagnitude: return "write_magnitude";
    case Metric::DirectEffect: return "direct_effect";
    case Metric::TotalEffect: return "total_effect";
    }
    return "activation";
}

constexpr std::optional<Metric> metricFromKey(std::string_view key)
{
    for (Metric metric : kMetrics) {
        if (key == metricKey(metric))
            return metric;
    }
    return std::nullopt;
}

// Direct and total effect exist only where the run has an objective.
constexpr bool metricNeedsObjective(Metric metric)
{
    return metric == Metric::DirectEffect || metric == Metric::TotalEffect;
}

} // namespace cs
