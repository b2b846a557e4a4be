#include "core/model/gpt2_config.h"

#include "core/util/errors.h"
#include "core/util/files.h"

namespace cs {

namespace {

int requiredPositiveInt(const nlohmann::json& j, const char* field, const std::filesystem::path& source)
{
    if (!j.contains(field))
        throwInputError(source, std::string("missing field '") + field + "'");
    const auto& v = j.at(field);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > (1 << 30))
        throwInputError(source, std::string("field '") + field + "' must be a positive integer");
    return v.get<int>();
}

} // namespace

Gpt2Config Gpt2Config::fromJson(const nlohmann::json& j, const std::filesystem::path& source)
{
    if (!j.is_object())
        throwInputError(source, "not a JSON object");
    if (j.contains("model_type") && j["model_type"].is_string() && j["model_type"] != "gpt2")
        throwInputError(source, "model_type " + quoteForMessage(j["model_type"].get<std::string>()) + " is not gpt2");

    Gpt2Config c;
    c.nLayer = requiredPositiveInt(j, "n_layer", source);
    c.nHead = requiredPositiveInt(j, "n_head", source);
    c.dModel = requiredPositiveInt(j, "n_embd", source);
    c.nCtx = requiredPositiveInt(j, "n_positions", source);
    c.vocabSize = requiredPositiveInt(j, "vocab_size", source);
    if (c.dModel % c.nHead != 0)
        throwInputError(source, "n_embd " + std::to_string(c.dModel) + " is not divisible by n_head " +
                                    std::to_string(c.nHead));
    // 4·n_embd (and the tensor shapes built from it) must stay inside an int; files claiming more are
    // refused here rather than overflowing later.
    if (c.dModel > (1 << 28))
        throwInputError(source, "field 'n_embd' is " + std::to_string(c.dModel) + ", more than " + std::to_string(1 << 28));
    c.dMlp = 4 * c.dModel;
    if (j.contains("n_inner") && !j["n_inner"].is_null())
        c.dMlp = requiredPositiveInt(j, "n_inner", source);
    if (j.contains("layer_norm_epsilon")) {
        if (!j["layer_norm_epsilon"].is_number() || j["layer_norm_epsilon"].get<double>() <= 0)
            throwInputError(source, "field 'layer_norm_epsilon' must be a positive number");
        c.layerNormEps = j["layer_norm_epsilon"].get<double>();
    }
    if (j.contains("activation_function")) {
        if (!j["activation_function"].is_string())
            throwInputError(source, "field 'activation_function' must be a string");
        const std::string act = j["activation_function"];
        if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
            c.activation = MlpActivation::GeluNew;
        else if (act == "gelu")
            c.activation = MlpActivation::Gelu;
        else
            throwInputError(source, "field 'activation_function': " + quoteForMessage(act) + " is not supported (gelu_new, gelu)");
    }
    auto boolField = [&](const char* field, bool& out) {
        if (!j.contains(field) || j[field].is_null())
            return;
        if (!j[field].is_boolean())
            throwInputError(source, std::string("field '") + field + "' must be true or false");
        out = j[field].get<bool>();
    };
    boolField("scale_attn_weights", c.scaleAttnWeights);
    boolField("scale_attn_by_inverse_layer_idx", c.scaleAttnByInverseLayerIdx);
    boolField("tie_word_embeddings", c.tieWordEmbeddings);
    // reorder_and_upcast_attn only changes float16 numerics; we compute in float32 throughout.
    return c;
}

Gpt2Config Gpt2Config::fromFile(const std::filesystem::path& configJson)
{
    return fromJson(readJsonFile(configJson, kMaxConfigBytes), configJson);
}

nlohmann::json Gpt2Config::toJson() const
{
    return {
        {"model_type", "gpt2"},
        {"architectures", {"GPT2LMHeadModel"}},
        {"n_layer", nLayer},
        {"n_head", nHead},
        {"n_embd", dModel},
        {"n_inner", dMlp == 4 * dModel ? nlohmann::json(nullptr) : nlohmann::json(dMlp)},
        {"n_positions", nCtx},
        {"n_ctx", nCtx},
        {"vocab_size", vocabSize},
        {"layer_norm_epsilon", layerNormEps},
        {"activation_function", activation == MlpActivation::GeluNew ? "gelu_new" : "gelu"},
        {"scale_attn_weights", scaleAttnWeights},
        {"scale_attn_by_inverse_layer_idx", scaleAttnByInverseLayerIdx},
        {"tie_word_embeddings", tieWordEmbeddings},
        {"bos_token_id", vocabSize - 1},
        {"eos_token_id", vocabSize - 1},
    };
}

} // namespace cs
