#pragma once
// The shape and hyper-parameters of a GPT-2 model, read from a Hugging Face config.json.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

namespace cs {

enum class MlpActivation {
    GeluNew, // tanh approximation (HF "gelu_new", "gelu_pytorch_tanh", TDB's gelu)
    Gelu,    // exact erf form (HF "gelu")
};

struct Gpt2Config {
    int nLayer = 0;
    int nHead = 0;
    int dModel = 0;
    int dMlp = 0;      // n_inner, or 4·n_embd when null/absent
    int nCtx = 0;      // n_positions
    int vocabSize = 0;
    double layerNormEps = 1e-5;
    MlpActivation activation = MlpActivation::GeluNew;
    bool scaleAttnWeights = true;              // divide scores by sqrt(d_head)
    bool scaleAttnByInverseLayerIdx = false;   // also divide by (layer + 1)
    bool tieWordEmbeddings = true;

    int dHead() const { return dModel / nHead; }

    // Validates field presence, types and consistency; errors name config.json and the field.
    static Gpt2Config fromJson(const nlohmann::json& json, const std::filesystem::path& source);
    static Gpt2Config fromFile(const std::filesystem::path& configJson);
    nlohmann::json toJson() const;

    bool operator==(const Gpt2Config&) const = default;
};

} // namespace cs
