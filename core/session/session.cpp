#include "core/session/session.h"

#include "core/util/errors.h"

#include <fstream>

namespace cs {

nlohmann::ordered_json sessionToJson(const Session& s)
{
    nlohmann::ordered_json j;
    j["schema"] = "circuitscope-session";
    j["version"] = Session::kSchemaVersion;
    j["model"] = s.modelPath;
    j["autoencoders"] = nlohmann::ordered_json::array();
    for (const auto& a : s.autoencoders)
        j["autoencoders"].push_back({{"role", a.role}, {"spec", a.spec}});
    j["prompt"] = s.prompt;
    j["target"] = s.target;
    j["distractor"] = s.distractor;
    j["token_of_interest"] = s.tokenOfInterest;
    j["selected_node"] = s.selectedNode ? nlohmann::ordered_json(*s.selectedNode) : nlohmann::ordered_json(nullptr);
    j["pins"] = nlohmann::ordered_json::array();
    for (const auto& p : s.pins)
        j["pins"].push_back({{"node", p.node}, {"note", p.note}});
    j["view"] = {{"metric", s.view.metric},
                 {"top_n", s.view.topN},
                 {"top_k", s.view.topK},
                 {"per_unit_write", s.view.perUnitWrite},
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

    const nlohmann::json& array(const nlohmann::json& obj, const char* key) const
    {
        static const nlohmann::json empty = nlohmann::json::array();
        if (!obj.contains(key) || obj[key].is_null())
            return empty;
        if (!obj[key].is_array())
            fail(key, "must be a list");
        return obj[key];
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
        Session::Autoencoder ae{r.string(a, "role", "autoencoders."), r.string(a, "spec", "autoencoders.")};
        if (ae.role != "mlp" && ae.role != "attn" && ae.role != "resid")
            r.fail("autoencoders.role", "must be mlp, attn or resid");
        s.autoencoders.push_back(ae);
    }
    s.prompt = r.string(j, "prompt", "");
    s.target = r.string(j, "target", "");
    s.distractor = r.string(j, "distractor", "");
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
        s.view.metric = r.string(v, "metric", "view.", s.view.metric);
        s.view.topN = r.integer(v, "top_n", "view.", s.view.topN);
        s.view.topK = r.integer(v, "top_k", "view.", s.view.topK);
        s.view.perUnitWrite = r.boolean(v, "per_unit_write", "view.", s.view.perUnitWrite);
        s.view.inspectorTab = r.string(v, "inspector_tab", "view.", s.view.inspectorTab);
    }
    return s;
}

Session loadSession(const std::filesystem::path& file)
{
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throwInputError(file, "cannot open");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throwInputError(file, std::string("not valid JSON: ") + e.what());
    }
    Session session = sessionFromJson(j, file);
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
    const std::filesystem::path tmp = file.string() + ".saving";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        out.flush();
        if (!out) {
            std::error_code ec;
            std::filesystem::remove(tmp, ec);
            throwInputError(file, "cannot write");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec); // atomic on one filesystem
    if (ec) {
        std::filesystem::remove(tmp, ec);
        throwInputError(file, "cannot replace: " + ec.message());
    }
}

} // namespace cs
