#pragma once
// A node of the model that the user can click: an MLP neuron, an attention head (at a token pair), an
// autoencoder latent, or a token's embedding. Names follow product.md §5:
//   mlp:5:123@7   attn:5:3@7,2   mlp_sae:1:42@-1   attn_sae:1:42@-1   resid_sae:0:9@3   emb@3
// Token indices count from 0; negative ones count from the end and are resolved against a prompt.

#include <optional>
#include <string>
#include <string_view>
#include <tuple>

namespace cs {

enum class NodeKind {
    MlpNeuron,     // "mlp"
    AttnHead,      // "attn"
    MlpSaeLatent,  // "mlp_sae"
    AttnSaeLatent, // "attn_sae"
    ResidSaeLatent,// "resid_sae"
    Embedding,     // "emb"
};

const char* nodeKindName(NodeKind kind);
std::optional<NodeKind> nodeKindFromName(std::string_view name);
bool isSaeLatent(NodeKind kind);

// The "<kind>:<layer>:<index>" part of a node name (just "emb" for embeddings). `full` is the whole
// name as the user wrote it, quoted in the InputError ("node 'mlp:x:1@2': layer 'x' is not an integer").
struct NodeHead {
    NodeKind kind = NodeKind::MlpNeuron;
    int layer = 0;
    int index = 0;
};
NodeHead parseNodeHead(std::string_view head, std::string_view full);
// A token index (negative counts from the end), `what` naming it in the error.
int parseTokenIndex(std::string_view text, std::string_view full, const char* what);

struct NodeRef {
    NodeKind kind = NodeKind::MlpNeuron;
    int layer = 0;     // unused for embeddings
    int index = 0;     // neuron, head or latent index; unused for embeddings
    int token = 0;     // the token (query token for heads)
    int keyToken = 0;  // heads only: the attended-to token

    // Parses a node name; InputError ("node 'x': ...") says what is wrong.
    static NodeRef parse(std::string_view name);
    std::string name() const;

    // Negative token indices counted from the end of an n-token prompt; InputError when out of range
    // (or a head's key token comes after its query token).
    NodeRef resolved(int tokenCount) const;

    bool operator==(const NodeRef&) const = default;
    // Spelled out rather than <=>: moc cannot parse <compare>, and tests include this header.
    bool operator<(const NodeRef& o) const
    {
        return std::tie(kind, layer, index, token, keyToken) < std::tie(o.kind, o.layer, o.index, o.token, o.keyToken);
    }
};

} // namespace cs
