#include "core/session/session.h"

#include "core/util/errors.h"
#include "core/util/files.h"


namespace cs {

nlohmann::ordered_json sessionToJson(const Session& s)
{
    nlohmann::ordered_json j;
    j["schema"] = "circuitscope-session";
    j["version"] = Session::kSchemaVersion;
    j["model"] = s.modelPath;
    j["autoencoders"] = nlohmann::ordered_json::array();
    for (const auto& a : s.autoencoders)
        j["autoencoders"].push_back({{"role", saeRoleName(a.role)}, {"spec", a.spec}});
    j["prompt"] = s.prompt;
    j["objective"] = {{"kind", s.objective.kind}, {"targets", s.objective.targets}, {"distractors", s.objective.distractors}};
    j["ablations"] = s.ablations;
    const auto orNull = [](const std::string& v) { return v.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v); };
    j["trace"] = nullptr;
    if (s.trace)
        j["trace"] = {{"node", s.trace->node},
                      {"through", orNull(s.trace->through)},
                      {"downstream", orNull(s.trace->downstream)},
                      {"downstream_through", orNull(s.trace->downstreamThrough)}};
    j["second_prompt"] = nullptr;
    if (s.secondPrompt)
        j["second_prompt"] = {{"prompt", s.secondPrompt->prompt},
                              {"targets", s.secondPrompt->targets},
                              {"distractors", s.secondPrompt->distractors}};
    j["token_of_interest"] = s.tokenOfInterest;
    j["selected_node"] = s.selectedNode ? nlohmann::ordered_json(*s.selectedNode) : nlohmann::ordered_json(nullptr);
    j["pins"] = nlohmann::ordered_json::array();
    for (const auto& p : s.pins)
        j["pins"].push_back({{"node", p.node}, {"note", p.note}});
    j["view"] = {{"metric", metricKey(s.view.metric)},
                 {"top_n", s.view.topN},
                 {"top_k", s.view.topK},
                 {"table_top_k", s.view.tableTopK},
                 {"per_unit_write", s.view.perUnitWrite},
                 {"grid_delta", s.view.gridDelta},
                 {"inspector_tab", s.view.inspectorTab}};
    return j;
}

namespace {

class Reader {
public:
    Reader(const nlohmann::json& j, std::filesystem::path source) : m_j(j), m_source(std::move(source)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& what) const
    {
        throwInputError(m_source, "field '" + field + "' " + what);
    }

    std::string string(const nlohmann::json& obj, const char* key, const std::string& path, std::string fallback = {}) const
    {
        if (!obj.contains(key) || obj[key].is_null())
            return fallback;
        if (!obj[key].is_string())
            fail(path + key, "must be a string");
        return obj[key].get<std::string>();
    }

    int integer(const nlohmann::json& obj, const char* key, const std::string& path, int fallback) const
    {
        if (!obj.contains(key) || obj[key].is_null())
            return fallback;
        if (!obj[key].is_number_integer())
            fail(path + key, "must be an integer");
        return obj[key].get<int>();
    }

    bool boolean(const nlohmann::json& obj, const char* key, const std::string& path, bool fallback) const
    {
        if (!obj.contains(key) || obj[key].is_null())
            return fallback;
        if (!obj[key].is_boolean())
            fail(path + key, "must be true or false");
        return obj[key].get<bool>();
    }

    const nlohmann::json& array(const nlohmann::json& obj, const char* key, const std::string& path = {}) const
    {
        static const nlohmann::json empty = nlohmann::json::array();
        if (!obj.contains(key) || obj[key].is_null())
            return empty;
        if (!obj[key].is_array())
            fail(path + key, "must be a list");
        return obj[key];
    }

    std::vector<std::string> strings(const nlohmann::json& obj, const char* key, const std::string& path) const
    {
        std::vector<std::string> out;
        for (const auto& v : array(obj, key, path)) {
            if (!v.is_string())
                fail(path + key, "must be a list of strings");
            out.push_back(v.get<std::string>());
        }
        return out;
    }

    const nlohmann::json* object(const nlohmann::json& obj, const char* key) const
    {
        if (!obj.contains(key) || obj[key].is_null())
            return nullptr;
        if (!obj[key].is_object())
            fail(key, "must be an object");
        return &obj[key];
    }

private:
    const nlohmann::json& m_j;
    std::filesystem::path m_source;
};

} // namespace

Session sessionFromJson(const nlohmann::json& j, const std::filesystem::path& source)
{
    if (!j.is_object())
        throwInputError(source, "not a Circuitscope session (not a JSON object)");
    if (!j.contains("schema") || j["schema"] != "circuitscope-session")
        throwInputError(source, "not a Circuitscope session (field 'schema' is not \"circuitscope-session\")");
    if (!j.contains("version") || !j["version"].is_number_integer())
        throwInputError(source, "field 'version' is missing or not an integer");
    const int version = j["version"].get<int>();
    if (version > Session::kSchemaVersion)
        throwInputError(source, "session version " + std::to_string(version) + " is newer than this Circuitscope understands (" +
                                    std::to_string(Session::kSchemaVersion) + "); update Circuitscope to open it");
    if (version < 1)
        throwInputError(source, "field 'version' must be at least 1");

    const Reader r(j, source);
    Session s;
    s.modelPath = r.string(j, "model", "");
    for (const auto& a : r.array(j, "autoencoders")) {
        if (!a.is_object())
            r.fail("autoencoders", "must hold objects {role, spec}");
        const std::optional<SaeRole> role = saeRoleFromName(r.string(a, "role", "autoencoders."));
        if (!role)
            r.fail("autoencoders.role", "must be mlp, attn or resid");
        s.autoencoders.push_back({*role, r.string(a, "spec", "autoencoders.")});
    }
    s.prompt = r.string(j, "prompt", "");
    if (version == 1) {
        // Version 1: one target and one distractor, no interventions.
        if (const std::string t = r.string(j, "target", ""); !t.empty())
            s.objective.targets.push_back(t);
        if (const std::string d = r.string(j, "distractor", ""); !d.empty())
            s.objective.distractors.push_back(d);
    } else {
        if (const nlohmann::json* o = r.object(j, "objective")) {
            s.objective.kind = r.string(*o, "kind", "objective.", s.objective.kind);
            if (s.objective.kind != "logit_diff" && s.objective.kind != "logit_minus_mean" && s.objective.kind != "prob")
                r.fail("objective.kind", "must be logit_diff, logit_minus_mean or prob");
            s.objective.targets = r.strings(*o, "targets", "objective.");
            s.objective.distractors = r.strings(*o, "distractors", "objective.");
        }
        s.ablations = r.strings(j, "ablations", "");
        if (const nlohmann::json* t = r.object(j, "trace")) {
            Session::Trace trace;
            trace.node = r.string(*t, "node", "trace.");
            if (trace.node.empty())
                r.fail("trace.node", "must name the traced node");
            trace.through = r.string(*t, "through", "trace.");
            trace.downstream = r.string(*t, "downstream", "trace.");
            trace.downstreamThrough = r.string(*t, "downstream_through", "trace.");
            s.trace = trace;
        }
        if (const nlohmann::json* p = r.object(j, "second_prompt")) {
            Session::SecondPrompt second;
            second.prompt = r.string(*p, "prompt", "second_prompt.");
            second.targets = r.strings(*p, "targets", "second_prompt.");
            second.distractors = r.strings(*p, "distractors", "second_prompt.");
            s.secondPrompt = second;
        }
    }
    s.tokenOfInterest = r.integer(j, "token_of_interest", "", -1);
    if (j.contains("selected_node") && !j["selected_node"].is_null())
        s.selectedNode = r.string(j, "selected_node", "");
    for (const auto& p : r.array(j, "pins")) {
        if (!p.is_object())
            r.fail("pins", "must hold objects {node, note}");
        s.pins.push_back({r.string(p, "node", "pins."), r.string(p, "note", "pins.")});
    }
    if (j.contains("view") && !j["view"].is_null()) {
        const auto& v = j["view"];
        if (!v.is_object())
            r.fail("view", "must be an object");
        const std::string metric = r.string(v, "metric", "view.", metricKey(s.view.metric));
        const std::optional<Metric> m = metricFromKey(metric);
        if (!m)
            r.fail("view.metric", "must be activation, write_magnitude, direct_effect or total_effect");
        s.view.metric = *m;
        s.view.topN = r.integer(v, "top_n", "view.", s.view.topN);
        s.view.topK = r.integer(v, "top_k", "view.", s.view.topK);
        s.view.tableTopK = r.integer(v, "table_top_k", "view.", s.view.tableTopK);
        s.view.perUnitWrite = r.boolean(v, "per_unit_write", "view.", s.view.perUnitWrite);
        s.view.gridDelta = r.boolean(v, "grid_delta", "view.", s.view.gridDelta);
        s.view.inspectorTab = r.string(v, "inspector_tab", "view.", s.view.inspectorTab);
    }
    return s;
}

Session loadSession(const std::filesystem::path& file)
{
    Session session = sessionFromJson(readJsonFile(file, kMaxDocumentBytes), file);
    resolveRelativePaths(session, file);
    return session;
}

void resolveRelativePaths(Session& session, const std::filesystem::path& sessionFile)
{
    const std::filesystem::path base = std::filesystem::absolute(sessionFile).parent_path();
    const auto resolve = [&](const std::string& path) {
        const std::filesystem::path p(path);
        if (path.empty() || p.is_absolute())
            return path;
        std::filesystem::path r = (base / p).lexically_normal();
        if (r.filename().empty() && r.has_parent_path()) // "model/." → "model/" → "model"
            r = r.parent_path();
        return r.string();
    };
    session.modelPath = resolve(session.modelPath);
    for (Session::Autoencoder& a : session.autoencoders) {
        const std::size_t eq = a.spec.find('=');
        if (eq != std::string::npos)
            a.spec = a.spec.substr(0, eq + 1) + resolve(a.spec.substr(eq + 1));
    }
}

void saveSession(const std::filesystem::path& file, const Session& session)
{
    // Serialize completely before touching the disk: a failure here (e.g. invalid UTF-8 in a note)
    // leaves the old file as it was.
    std::string text;
    try {
        text = sessionToJson(session).dump(2) + "\n";
    } catch (const nlohmann::json::exception& e) {
        throwInputError(file, std::string("cannot save: ") + e.what());
    }
    writeFileAtomically(file, text);
}

} // namespace cs
