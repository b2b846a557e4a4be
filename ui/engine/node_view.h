#pragma once
// Building the inspector's NodeView from a cached analysis — shared by the engine (on its worker
// thread) and by `circuitscope-cli figure`, so that headless figures show exactly what the window shows.
// This header includes the core (libtorch); include it from .cpp files of the engine layer only.

#include "core/analysis/effects.h"
#include "core/model/prompt.h"
#include "ui/engine/view_types.h"

#include <optional>

namespace cs::ui {

// Token strings for display: a leading space becomes '·', a newline '⏎'.
QString displayToken(const std::string& token);
QStringList displayTokens(const std::vector<std::string>& tokens);

NodeView buildNodeView(const AnalysisInput& in, const Effects& effects, const NodeRef& node, const QStringList& tokens,
                       const QString& prompt, int topK);

// One-shot, synchronous: tokenize, run (with gradients when there is a target), compute effects and
// the node's view. InputError for bad input, as everywhere.
NodeView computeNodeView(const Gpt2Model& model, const SaeSet& saes, const std::string& prompt, const NodeRef& node,
                         const std::optional<std::string>& target, const std::optional<std::string>& distractor, int topK,
                         OverlongPrompt overlong, std::vector<std::string>* warnings);

} // namespace cs::ui
