#pragma once
// The four metrics of math §6.2 (product.md §3), as the grid, the node table and the exports name
// them. No libtorch here: the window's headers use this type too.

namespace cs {

enum class Metric { Activation = 0, WriteMagnitude = 1, DirectEffect = 2, TotalEffect = 3 };
inline constexpr int kMetricCount = 4;
const char* metricKey(Metric metric); // "activation", "write_magnitude", "direct_effect", "total_effect"
// Direct and total effect exist only where the run has an objective.
bool metricNeedsObjective(Metric metric);

} // namespace cs
