#pragma once
// A saved investigation (`.circuitscope.json`, product.md §4, issue "Sessions"): model and autoencoder
// paths, prompt, objective (targets, distractors, kind), ablations, trace, second prompt, token of
// interest, selected node, pinned nodes with notes in order, and view settings, under a schema version.
// Version 1 files (one target and one distractor, no interventions) still open.
// Interventions are kept as the text the CLI takes (node names, "q|k|qk|v"); they are checked when the
// session is applied to a model, like the node names of pins. Written atomically and deterministically (same session →
// same bytes), so a resave of an unchanged session is byte-identical.

#include "core/analysis/metric.h"
#include "core/model/sae_role.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cs {

struct Session {
    static constexpr int kSchemaVersion = 2;

    struct Autoencoder {
        SaeRole role = SaeRole::Mlp; // "mlp", "attn" or "resid" in the file
        std::string spec;   // "L=PATH" or "L:location=PATH" as on the command line
        bool operator==(const Autoencoder&) const = default;
    };
    struct Pin {
        std::string node;   // node name, e.g. "attn:5:3@-1,2"
        std::string note;
        bool operator==(const Pin&) const = default;
    };
    struct View {
        Metric metric = Metric::Activation; // grid metric; its metricKey in the file
        int topN = 16;                      // neurons/latents per grid row
        int topK = 20;                      // tokens per list
        int tableTopK = 15;                 // node table: nodes per metric
        bool perUnitWrite = false;          // D6 switch
        bool gridDelta = false;             // the grid colored by Δ (with ablations or two prompts)
        std::string inspectorTab = "write"; // write | read | pairs | activation
        bool operator==(const View&) const = default;
    };

    struct Objective {
        std::string kind = "logit_diff";    // logit_diff | logit_minus_mean | prob
        std::vector<std::string> targets;   // token texts, leading spaces kept
        std::vector<std::string> distractors;
        bool operator==(const Objective&) const = default;
    };
    struct Trace {
        std::string node;                   // e.g. "mlp:1:5@-1", "attn:2:0@-1,1"
        std::string through;                // "" (default) | q | k | qk | v
        std::string downstream;             // "" when none
        std::string downstreamThrough;      // "" (default) | q | k | qk
        bool operator==(const Trace&) const = default;
    };
    struct SecondPrompt {
        std::string prompt;
        std::vector<std::string> targets;   // empty: the first prompt's
        std::vector<std::string> distractors;
        bool operator==(const SecondPrompt&) const = default;
    };

    std::string modelPath;
    std::vector<Autoencoder> autoencoders;
    std::string prompt;
    Objective objective;
    std::vector<std::string> ablations;     // "NODE=VALUE" as --ablate takes them
    std::optional<Trace> trace;
    std::optional<SecondPrompt> secondPrompt;
    int tokenOfInterest = -1;               // -1: the last token
    std::optional<std::string> selectedNode;
    std::vector<Pin> pins;
    View view;

    bool operator==(const Session&) const = default;
};

nlohmann::ordered_json sessionToJson(const Session& session);
// InputError naming `source` and the field for a wrong type, a missing schema version, or a schema
// newer than this program understands.
Session sessionFromJson(const nlohmann::json& json, const std::filesystem::path& source);

// Relative model and autoencoder paths are resolved against the session file's folder, so that a
// session shipped next to its model (the demo's) opens wherever it is installed.
Session loadSession(const std::filesystem::path& file);
void resolveRelativePaths(Session& session, const std::filesystem::path& sessionFile);
// Atomic: the old file stays intact unless the new one is complete (temporary file + rename).
void saveSession(const std::filesystem::path& file, const Session& session);

} // namespace cs
