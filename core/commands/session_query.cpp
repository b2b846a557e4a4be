#include "core/commands/session_query.h"

#include "core/util/errors.h"

namespace cs {

namespace {

TraceThrough throughOf(const std::string& text, const char* field)
{
    const auto t = traceThroughFromName(text);
    if (!t)
        throw InputError(std::string(field) + ": '" + text + "' is not q, k, qk or v");
    return *t;
}

NodeRef nodeOf(const std::string& text, const char* field)
{
    try {
        return NodeRef::parse(text);
    } catch (const InputError& e) {
        throw InputError(std::string(field) + ": " + e.what());
    }
}

} // namespace

AnalysisQuery analysisQueryOf(const std::string& prompt, const Session::Objective& objective, const std::vector<std::string>& ablations,
                              const std::optional<Session::Trace>& trace, const std::optional<Session::SecondPrompt>& secondPrompt)
{
    AnalysisQuery q;
    q.prompt = prompt;
    const auto kind = logitObjectiveFromName(objective.kind);
    if (!kind)
        throw InputError("objective: '" + objective.kind + "' is not logit_diff, logit_minus_mean or prob");
    q.objective.kind = *kind;
    q.objective.targets = objective.targets;
    q.objective.distractors = objective.distractors;
    for (const auto& a : ablations)
        q.ablations.push_back(AblationSpec::parse(a));
    if (trace) {
        TraceSpec t;
        t.node = nodeOf(trace->node, "trace");
        if (!trace->through.empty())
            t.through = throughOf(trace->through, "trace: through");
        if (!trace->downstream.empty())
            t.downstream = nodeOf(trace->downstream, "trace: downstream");
        if (!trace->downstreamThrough.empty())
            t.downstreamThrough = throughOf(trace->downstreamThrough, "trace: downstream through");
        t.validate();
        q.trace = t;
    }
    if (secondPrompt)
        q.second = AnalysisQuery::SecondPrompt{secondPrompt->prompt, secondPrompt->targets, secondPrompt->distractors};
    return q;
}

} // namespace cs
