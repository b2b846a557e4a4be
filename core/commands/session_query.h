#pragma once
// The analysis that the text of an investigation describes (what a session file and the window hold:
// token texts, node names, "q|k|qk|v"), parsed into the core's query. One place for these rules, so a
// session replayed by `circuitscope-cli --session` and by the window run the same analysis.

#include "core/analysis/analysis.h"
#include "core/session/session.h"

namespace cs {

// InputError naming the field (an ablation, the trace, its through mode) when the text does not parse.
AnalysisQuery analysisQueryOf(const std::string& prompt, const Session::Objective& objective, const std::vector<std::string>& ablations,
                              const std::optional<Session::Trace>& trace, const std::optional<Session::SecondPrompt>& secondPrompt);

} // namespace cs
