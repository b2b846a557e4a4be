#pragma once
// Building the inspector's NodeView from a cached analysis — shared by the engine (on its worker
// thread) and by `circuitscope-cli figure`, so that headless figures show exactly what the window shows.
// This header includes the core (libtorch); include it from .cpp files of the engine layer only.

#include "core/analysis/analysis.h"
#include "core/model/prompt.h"
#include "ui/engine/view_types.h"

#include <optional>

namespace cs::ui {

NodeView buildNodeView(const AnalysisInput& in, const Effects& effects, const NodeRef& node, const QStringList& tokens,
                       const QString& prompt, int topK);

// One-shot, synchronous: the query's analysis (analyzePrompt) and the node's view in its first prompt.
// InputError for bad input, as everywhere.
NodeView computeNodeView(const Gpt2Model& model, const SaeSet& saes, const AnalysisQuery& query, const NodeRef& node, int topK,
                         std::vector<std::string>* warnings);

// "ablated: mlp:1:5@3=0; traced: attn:2:0@-1,1 through q" — what a figure's title and CSV header say
// about the interventions it was made under (empty without any).
QString interventionSummary(const AnalysisQuery& query);

} // namespace cs::ui
