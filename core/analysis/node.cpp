#include "core/analysis/node.h"

#include "core/util/errors.h"

#include <charconv>
#include <vector>

namespace cs {

namespace {

struct KindName {
    NodeKind kind;
    const char* name;
};
constexpr KindName kKinds[] = {
    {NodeKind::MlpNeuron, "mlp"},          {NodeKind::AttnHead, "attn"},          {NodeKind::MlpSaeLatent, "mlp_sae"},
    {NodeKind::AttnSaeLatent, "attn_sae"}, {NodeKind::ResidSaeLatent, "resid_sae"}, {NodeKind::Embedding, "emb"},
};

[[noreturn]] void bad(std::string_view name, const std::string& why)
{
    throw InputError("node '" + std::string(name) + "': " + why);
}

int parseInt(std::string_view full, std::string_view text, const char* what, bool allowNegative)
{
    int value = 0;
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(begin, end, value);
    if (text.empty() || ec != std::errc() || ptr != end)
        bad(full, std::string(what) + " '" + std::string(text) + "' is not an integer");
    if (!allowNegative && value < 0)
        bad(full, std::string(what) + " must not be negative");
    return value;
}

std::vector<std::string_view> split(std::string_view s, char sep)
{
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        const auto pos = s.find(sep, start);
        parts.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
        if (pos == std::string_view::npos)
            break;
        start = pos + 1;
    }
    return parts;
}

} // namespace

const char* nodeKindName(NodeKind kind)
{
    for (const auto& k : kKinds) {
        if (k.kind == kind)
            return k.name;
    }
    return "?";
}

std::optional<NodeKind> nodeKindFromName(std::string_view name)
{
    for (const auto& k : kKinds) {
        if (name == k.name)
            return k.kind;
    }
    return std::nullopt;
}

bool isSaeLatent(NodeKind kind)
{
    return kind == NodeKind::MlpSaeLatent || kind == NodeKind::AttnSaeLatent || kind == NodeKind::ResidSaeLatent;
}

NodeHead parseNodeHead(std::string_view head, std::string_view full)
{
    const auto parts = split(head, ':');
    const auto kind = nodeKindFromName(parts[0]);
    if (!kind)
        bad(full, "unknown kind '" + std::string(parts[0]) + "' (mlp, attn, mlp_sae, attn_sae, resid_sae, emb)");
    NodeHead h;
    h.kind = *kind;
    if (h.kind == NodeKind::Embedding) {
        if (parts.size() != 1)
            bad(full, "an embedding node has no layer or index: emb@<token>");
        return h;
    }
    if (parts.size() != 3)
        bad(full, "expected <kind>:<layer>:<index>@<token>");
    h.layer = parseInt(full, parts[1], "layer", false);
    h.index = parseInt(full, parts[2], "index", false);
    return h;
}

int parseTokenIndex(std::string_view text, std::string_view full, const char* what)
{
    return parseInt(full, text, what, true);
}

NodeRef NodeRef::parse(std::string_view name)
{
    const auto at = name.find('@');
    if (at == std::string_view::npos)
        bad(name, "missing '@token' (e.g. mlp:5:123@7, attn:5:3@7,2, emb@3)");
    const NodeHead head = parseNodeHead(name.substr(0, at), name);
    const std::string_view tokens = name.substr(at + 1);
    NodeRef node;
    node.kind = head.kind;
    node.layer = head.layer;
    node.index = head.index;
    const auto tokenParts = split(tokens, ',');
    if (node.kind == NodeKind::AttnHead) {
        if (tokenParts.size() != 2)
            bad(name, "an attention head needs a query and a key token: attn:<layer>:<head>@<q>,<k>");
        node.token = parseInt(name, tokenParts[0], "query token", true);
        node.keyToken = parseInt(name, tokenParts[1], "key token", true);
    } else {
        if (tokenParts.size() != 1)
            bad(name, "only attention heads take two tokens");
        node.token = parseInt(name, tokenParts[0], "token", true);
    }
    return node;
}

std::string NodeRef::name() const
{
    std::string s = nodeKindName(kind);
    if (kind != NodeKind::Embedding)
        s += ":" + std::to_string(layer) + ":" + std::to_string(index);
    s += "@" + std::to_string(token);
    if (kind == NodeKind::AttnHead)
        s += "," + std::to_string(keyToken);
    return s;
}

NodeRef NodeRef::resolved(int n) const
{
    NodeRef r = *this;
    auto fix = [&](int t, const char* what) {
        const int abs = t < 0 ? t + n : t;
        if (abs < 0 || abs >= n)
            bad(name(), std::string(what) + " " + std::to_string(t) + " is outside the prompt's " + std::to_string(n) +
                            " tokens");
        return abs;
    };
    r.token = fix(token, "token");
    if (kind == NodeKind::AttnHead) {
        r.keyToken = fix(keyToken, "key token");
        if (r.keyToken > r.token)
            bad(name(), "key token " + std::to_string(r.keyToken) + " comes after query token " + std::to_string(r.token) +
                            " (attention is causal)");
    }
    return r;
}

} // namespace cs
