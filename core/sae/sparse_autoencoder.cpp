// Loaders for OpenAI `sparse_autoencoder` checkpoints and SAELens directories, and the encode/decode
// math of math §3.1 with the TopK input normalization of decision D2.

#include "core/sae/sparse_autoencoder.h"

#include "core/io/safetensors.h"
#include "core/io/torch_pickle.h"
#include "core/linalg/weight_product.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace cs {

namespace {

constexpr double kNormEpsilon = 1e-5; // D2: x̃ = (x − μ) / (std_unbiased + 1e-5)

std::string shapeString(at::IntArrayRef shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

// A contiguous tensor of `dtype` that owns its memory (not a view into a pickle's storage), made with
// at most one copy: to() and contiguous() return their input when it already has the dtype and is
// contiguous, and copy otherwise (a transposed weight, a float16 one converted); only a result still
// sharing the input's storage is cloned. A 32k-latent autoencoder's 100 MB matrices are never copied twice.
at::Tensor owned(const at::Tensor& t, at::ScalarType dtype)
{
    at::Tensor out = t.to(dtype).contiguous();
    if (out.is_alias_of(t))
        out = out.clone();
    return out;
}

// What an encoder or decoder matrix is kept as: its stored float16/bfloat16 under AsStored (half the
// memory; the products compute in float32, core/linalg/weight_product.h), else float32. Vectors
// (biases, threshold) are always float32: they are small, and the element-wise math reads them directly.
at::ScalarType matrixDtype(at::ScalarType stored, WeightStorage storage)
{
    return storage == WeightStorage::AsStored && (stored == at::kHalf || stored == at::kBFloat16) ? stored : at::kFloat;
}

void requireShape(const std::filesystem::path& file, const std::string& name, const at::Tensor& t,
                  std::vector<std::int64_t> shape, const std::string& why)
{
    if (t.sizes().vec() != shape)
        throwInputError(file, "tensor '" + name + "' has shape " + shapeString(t.sizes()) + " but " + why + " needs " +
                                  shapeString(shape));
}

// Whether any value's exponent bits (`exponent`, a mask of the word) are all ones: NaN or ±inf.
template <typename Word>
bool anyExponentAllOnes(const at::Tensor& c, Word exponent)
{
    const auto* bits = static_cast<const Word*>(c.data_ptr());
    const std::int64_t n = c.numel();
    Word nonFinite = 0;
    for (std::int64_t i = 0; i < n; ++i)
        nonFinite |= static_cast<Word>((bits[i] & exponent) == exponent);
    return nonFinite != 0;
}

// A scan of the values' bits in their own dtype allocates nothing: at::isfinite builds |t| and two
// boolean masks, a transient 1.25 × the matrix (120 MB for a 32k-latent decoder), which was the
// autoencoder load's peak, and a float32 copy of a half-precision matrix would be 2 × it.
void requireFinite(const std::filesystem::path& file, const std::string& name, const at::Tensor& t)
{
    const at::Tensor c = t.contiguous();
    bool nonFinite = false;
    switch (c.scalar_type()) {
    case at::kFloat: nonFinite = anyExponentAllOnes<std::uint32_t>(c, 0x7f800000u); break;
    case at::kHalf: nonFinite = anyExponentAllOnes<std::uint16_t>(c, 0x7c00u); break;
    case at::kBFloat16: nonFinite = anyExponentAllOnes<std::uint16_t>(c, 0x7f80u); break;
    default: nonFinite = !at::isfinite(c).all().item<bool>(); break; // not made by the loaders
    }
    if (nonFinite)
        throwInputError(file, "tensor '" + name + "' contains NaN or infinite values");
}

// ---------------------------------------------------------------------------------------------------
// OpenAI checkpoints

// The error accessors of TorchValue do not know the file; prefix it and the entry's name.
template <typename F>
auto fromExtra(const std::filesystem::path& file, const std::string& what, F&& read) -> decltype(read())
{
    try {
        return read();
    } catch (const InputError& e) {
        throwInputError(file, what + ": " + e.what());
    }
}

} // namespace

SparseAutoencoder loadOpenAiSae(const std::filesystem::path& file, WeightStorage storage)
{
    const TorchStateDict sd = loadTorchStateDict(file);

    const auto tensor = [&](const std::string& key) {
        const at::Tensor* t = sd.find(key);
        if (!t)
            throwInputError(file, "missing tensor '" + key +
                                      "' (an OpenAI sparse_autoencoder checkpoint holds pre_bias, latent_bias, "
                                      "encoder.weight and decoder.weight)");
        if (!t->is_floating_point())
            throwInputError(file, "tensor '" + key + "' is not a floating-point tensor");
        return *t;
    };

    const at::Tensor encoderWeight = tensor("encoder.weight");
    if (encoderWeight.dim() != 2 || encoderWeight.size(0) == 0 || encoderWeight.size(1) == 0)
        throwInputError(file, "tensor 'encoder.weight' has shape " + shapeString(encoderWeight.sizes()) +
                                  " where [latents, input width] is expected");
    const std::int64_t latents = encoderWeight.size(0);
    const std::int64_t width = encoderWeight.size(1);
    const std::string why = "'encoder.weight' " + shapeString(encoderWeight.sizes());
    const at::Tensor decoderWeight = tensor("decoder.weight");
    requireShape(file, "decoder.weight", decoderWeight, {width, latents}, why);
    const at::Tensor preBias = tensor("pre_bias");
    requireShape(file, "pre_bias", preBias, {width}, why);
    const at::Tensor latentBias = tensor("latent_bias");
    requireShape(file, "latent_bias", latentBias, {latents}, why);

    SparseAutoencoder sae;
    sae.source = file;
    sae.format = "openai";
    sae.encoder = owned(encoderWeight.t(), matrixDtype(encoderWeight.scalar_type(), storage));
    sae.encoderBias = owned(latentBias, at::kFloat);
    sae.decoder = owned(decoderWeight.t(), matrixDtype(decoderWeight.scalar_type(), storage));
    sae.preBias = owned(preBias, at::kFloat);
    sae.subtractPreBias = true;
    for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"encoder.weight", &sae.encoder},
                                  {"decoder.weight", &sae.decoder},
                                  {"pre_bias", &sae.preBias},
                                  {"latent_bias", &sae.encoderBias}})
        requireFinite(file, name, *t);

    // Non-tensor entries: `activation` (class name) and `activation_state_dict`.
    std::string activation = "ReLU";
    if (const auto it = sd.extras.find("activation"); it != sd.extras.end())
        activation = fromExtra(file, "entry 'activation'", [&] { return it->second.asString(); });

    if (activation == "ReLU") {
        sae.activation = SaeActivation::ReLU;
    } else if (activation == "TopK") {
        const auto it = sd.extras.find("activation_state_dict");
        if (it == sd.extras.end() || !it->second.isDict())
            throwInputError(file, "activation 'TopK' without an 'activation_state_dict' entry holding k");
        const TorchValue& state = it->second;
        const TorchValue* k = state.find("k");
        if (!k)
            throwInputError(file, "entry 'activation_state_dict' has no 'k'");
        const std::int64_t kValue = fromExtra(file, "entry 'activation_state_dict.k'", [&] { return k->asInt(); });
        if (kValue < 1 || kValue > latents)
            throwInputError(file, "entry 'activation_state_dict.k' is " + std::to_string(kValue) +
                                      "; it must be between 1 and the number of latents (" + std::to_string(latents) + ")");
        std::string postact = "ReLU";
        if (const TorchValue* p = state.find("postact_fn"))
            postact = fromExtra(file, "entry 'activation_state_dict.postact_fn'", [&] { return p->asString(); });
        if (postact == "ReLU")
            sae.topKPostReLU = true;
        else if (postact == "Identity")
            sae.topKPostReLU = false;
        else
            throwInputError(file, "entry 'activation_state_dict.postact_fn' is '" + postact +
                                      "'; supported: 'ReLU', 'Identity'");
        sae.activation = SaeActivation::TopK;
        sae.topK = static_cast<int>(kValue);
        sae.normalizeInput = true; // D2: OpenAI's TopK (v5) autoencoders were trained on normalized inputs
    } else if (activation == "Identity") {
        throwInputError(file, "entry 'activation' is 'Identity': a dense, signed code is not a sparse autoencoder the "
                              "analysis can use (supported: 'ReLU', 'TopK')");
    } else {
        throwInputError(file, "entry 'activation' is '" + activation + "'; supported: 'ReLU', 'TopK'");
    }
    return sae;
}

// ---------------------------------------------------------------------------------------------------
// SAELens directories

namespace {

using Json = nlohmann::json;

const char* jsonTypeName(const Json& j)
{
    return j.type_name();
}

// Reads cfg.json fields across the three generations of SAELens: top-level fields (all versions),
// then the nested metadata object of SAELens ≥ 6 ("meta" in released 6.x files, "metadata" in some
// pre-releases and third-party writers).
class CfgReader {
public:
    CfgReader(const std::filesystem::path& file, const Json& root) : m_file(file), m_root(root) {}

    const std::filesystem::path& file() const { return m_file; }

    // The field, or nullptr when absent or null. `where` receives its dotted name for messages.
    const Json* find(const std::string& name, std::string* where = nullptr) const
    {
        if (const auto it = m_root.find(name); it != m_root.end() && !it->is_null()) {
            if (where)
                *where = name;
            return &*it;
        }
        for (const char* nested : {"meta", "metadata"}) {
            const auto n = m_root.find(nested);
            if (n == m_root.end() || !n->is_object())
                continue;
            if (const auto it = n->find(name); it != n->end() && !it->is_null()) {
                if (where)
                    *where = std::string(nested) + "." + name;
                return &*it;
            }
        }
        return nullptr;
    }

    std::optional<std::string> string(const std::string& name, std::string* where = nullptr) const
    {
        std::string w;
        const Json* j = find(name, &w);
        if (!j)
            return std::nullopt;
        if (!j->is_string())
            fail(w, std::string("must be a string, found ") + jsonTypeName(*j));
        if (where)
            *where = w;
        return j->get<std::string>();
    }

    std::optional<std::int64_t> integer(const std::string& name, std::string* where = nullptr) const
    {
        std::string w;
        const Json* j = find(name, &w);
        if (!j)
            return std::nullopt;
        if (!j->is_number_integer())
            fail(w, std::string("must be an integer, found ") + jsonTypeName(*j));
        if (where)
            *where = w;
        return j->get<std::int64_t>();
    }

    std::optional<bool> boolean(const std::string& name) const
    {
        std::string w;
        const Json* j = find(name, &w);
        if (!j)
            return std::nullopt;
        if (!j->is_boolean())
            fail(w, std::string("must be true or false, found ") + jsonTypeName(*j));
        return j->get<bool>();
    }

    [[noreturn]] void fail(const std::string& field, const std::string& message) const
    {
        throwInputError(m_file, "field '" + field + "' " + message);
    }

private:
    std::filesystem::path m_file;
    const Json& m_root;
};

Json readJsonObject(const std::filesystem::path& file)
{
    const Json root = readJsonFile(file, kMaxConfigBytes);
    if (!root.is_object())
        throwInputError(file, std::string("must hold a JSON object, found ") + jsonTypeName(root));
    return root;
}

// "blocks.12.hook_resid_pre" -> 12.
std::optional<int> layerFromHookName(const std::string& hook)
{
    const std::string prefix = "blocks.";
    if (hook.rfind(prefix, 0) != 0)
        return std::nullopt;
    std::size_t i = prefix.size();
    int layer = 0;
    std::size_t digits = 0;
    while (i < hook.size() && std::isdigit(static_cast<unsigned char>(hook[i])) && digits < 6) {
        layer = layer * 10 + (hook[i] - '0');
        ++i;
        ++digits;
    }
    if (digits == 0 || i >= hook.size() || hook[i] != '.')
        return std::nullopt;
    return layer;
}

} // namespace

SparseAutoencoder loadSaeLensSae(const std::filesystem::path& dir, WeightStorage storage)
{
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throwInputError(dir, "is not a directory (a SAELens autoencoder is a directory holding cfg.json and "
                             "sae_weights.safetensors)");
    const std::filesystem::path cfgPath = dir / "cfg.json";
    const std::filesystem::path weightsPath = dir / "sae_weights.safetensors";
    if (!std::filesystem::exists(cfgPath, ec))
        throwInputError(cfgPath, "missing (a SAELens autoencoder directory holds cfg.json and sae_weights.safetensors)");
    const Json root = readJsonObject(cfgPath);
    const CfgReader cfg(cfgPath, root);

    SparseAutoencoder sae;
    sae.source = dir;
    sae.format = "saelens";

    // --- Architecture and activation.
    // Old/middle cfgs: architecture "standard" (or absent) + activation_fn[_str] "relu" | "topk" with
    // activation_fn_kwargs.k. SAELens ≥ 6: architecture "standard" | "topk" (k top-level) | "jumprelu".
    std::string archField = "architecture";
    const std::string architectureRaw = cfg.string("architecture", &archField).value_or("standard");
    const std::string architecture = lower(architectureRaw);
    std::string actField = "activation_fn";
    std::optional<std::string> activationFn = cfg.string("activation_fn", &actField);
    if (!activationFn) {
        actField = "activation_fn_str";
        activationFn = cfg.string("activation_fn_str", &actField);
    }
    const std::string activation = lower(activationFn.value_or(architecture == "topk" ? "topk" : "relu"));

    std::string kField = "k";
    const auto readK = [&]() -> std::int64_t {
        std::string& where = kField;
        std::optional<std::int64_t> k = cfg.integer("k", &where);
        if (!k) {
            if (const Json* kwargs = cfg.find("activation_fn_kwargs", &where); kwargs && kwargs->is_object()) {
                if (const auto it = kwargs->find("k"); it != kwargs->end() && !it->is_null()) {
                    where += ".k";
                    if (!it->is_number_integer())
                        cfg.fail(where, std::string("must be an integer, found ") + jsonTypeName(*it));
                    k = it->get<std::int64_t>();
                }
            }
        }
        if (!k)
            throwInputError(cfgPath, "a TopK autoencoder needs field 'k' (or 'activation_fn_kwargs.k')");
        if (*k < 1)
            cfg.fail(where, "is " + std::to_string(*k) + "; it must be at least 1");
        return *k;
    };

    std::int64_t topK = 0;
    if (architecture == "standard") {
        if (activation == "relu") {
            sae.activation = SaeActivation::ReLU;
        } else if (activation == "topk") {
            sae.activation = SaeActivation::TopK;
            topK = readK();
        } else {
            cfg.fail(actField, "is '" + *activationFn + "'; supported: 'relu', 'topk'");
        }
    } else if (architecture == "topk") {
        if (activation != "topk" && activation != "relu")
            cfg.fail(actField, "is '" + *activationFn + "' for a topk architecture; expected 'topk'");
        sae.activation = SaeActivation::TopK;
        topK = readK();
    } else if (architecture == "jumprelu") {
        if (activation != "relu")
            cfg.fail(actField, "is '" + *activationFn + "' for a jumprelu architecture; expected 'relu'");
        sae.activation = SaeActivation::JumpReLU;
    } else {
        cfg.fail(archField, "is '" + architectureRaw +
                                "', which is not supported (supported: 'standard', 'topk', 'jumprelu')");
    }
    sae.topKPostReLU = true; // SAELens' TopK applies ReLU to the kept values

    // --- Input handling.
    sae.subtractPreBias = cfg.boolean("apply_b_dec_to_input").value_or(true);
    {
        std::string where = "normalize_activations";
        const Json* norm = cfg.find("normalize_activations", &where);
        std::string mode = "none";
        if (norm) {
            if (norm->is_boolean()) // old cfgs: true meant what later became expected_average_only_in
                mode = norm->get<bool>() ? "true' (the old spelling of 'expected_average_only_in')" : "none";
            else if (norm->is_string())
                mode = norm->get<std::string>();
            else
                cfg.fail(where, std::string("must be a string, found ") + jsonTypeName(*norm));
        }
        if (mode == "layer_norm")
            sae.normalizeInput = true;
        else if (mode != "none")
            cfg.fail(where, "is '" + (mode.back() == ')' ? mode : mode + "'") +
                                ", which is not supported (supported: 'none', 'layer_norm'; fold a dataset-wide "
                                "scaling factor into the weights and set it to 'none')");
    }
    if (cfg.boolean("finetuning_scaling_factor").value_or(false))
        cfg.fail("finetuning_scaling_factor", "is true, which is not supported");
    if (const Json* head = cfg.find("hook_head_index"))
        cfg.fail("hook_head_index", "is " + describeForMessage(*head) + "; autoencoders on a single attention head are not supported");

    // --- Where it belongs.
    std::string hookField = "hook_name";
    std::optional<std::string> hook = cfg.string("hook_name", &hookField);
    if (!hook) {
        hookField = "hook_point";
        hook = cfg.string("hook_point", &hookField);
    }
    if (hook) {
        sae.declaredLocation = saeLocationFromName(*hook);
        if (!sae.declaredLocation)
            cfg.fail(hookField, "is '" + *hook +
                                    "', which is not a supported autoencoder location (supported: blocks.L.hook_resid_pre, "
                                    "hook_resid_mid, hook_resid_post, hook_mlp_out, hook_attn_out, mlp.hook_post, "
                                    "attn.hook_z)");
        sae.declaredLayer = layerFromHookName(*hook);
    }
    if (!sae.declaredLayer) {
        std::string where = "hook_layer";
        std::optional<std::int64_t> layer = cfg.integer("hook_layer", &where);
        if (!layer) {
            where = "hook_point_layer";
            layer = cfg.integer("hook_point_layer", &where);
        }
        if (layer) {
            if (*layer < 0 || *layer > 100000)
                cfg.fail(where, "is " + std::to_string(*layer) + ", not a layer index");
            sae.declaredLayer = static_cast<int>(*layer);
        }
    }
    // (When both say a layer, the hook name wins: it is what SAELens hooks.)

    // --- Weights.
    if (!std::filesystem::exists(weightsPath, ec))
        throwInputError(weightsPath, "missing (a SAELens autoencoder directory holds cfg.json and sae_weights.safetensors)");
    const SafetensorsFile weights = SafetensorsFile::open(weightsPath);
    // toTensor and toFloat32 read into a contiguous tensor of its own; a copy would hold each of a
    // 32k-latent autoencoder's 100 MB matrices twice while it is made. A matrix stored in float16/
    // bfloat16 is read as stored under AsStored (matrixDtype).
    const auto tensor = [&](const std::string& name, bool matrix = false) -> std::optional<at::Tensor> {
        const SafetensorsEntry* e = weights.find(name);
        if (!e)
            return std::nullopt;
        const bool half = e->dtype == StDType::F16 || e->dtype == StDType::BF16;
        at::Tensor t = matrix && half && storage == WeightStorage::AsStored ? weights.toTensor(*e) : weights.toFloat32(*e);
        requireFinite(weightsPath, name, t);
        return t;
    };
    const auto required = [&](const std::string& name, bool matrix = false) {
        std::optional<at::Tensor> t = tensor(name, matrix);
        if (!t)
            throwInputError(weightsPath, "missing tensor '" + name + "' (a SAELens autoencoder holds W_enc, W_dec, b_enc, b_dec)");
        return *t;
    };

    const at::Tensor wEnc = required("W_enc", /*matrix=*/true);
    if (wEnc.dim() != 2 || wEnc.size(0) == 0 || wEnc.size(1) == 0)
        throwInputError(weightsPath, "tensor 'W_enc' has shape " + shapeString(wEnc.sizes()) + " where [d_in, d_sae] is expected");
    const std::int64_t dIn = wEnc.size(0);
    const std::int64_t dSae = wEnc.size(1);
    const at::Tensor wDec = required("W_dec", /*matrix=*/true);
    if (wDec.sizes().vec() != std::vector<std::int64_t>{dSae, dIn})
        throwInputError(weightsPath, "tensor 'W_dec' has shape " + shapeString(wDec.sizes()) + ", inconsistent with 'W_enc' " +
                                         shapeString(wEnc.sizes()) + " (W_dec must be [d_sae, d_in] = " +
                                         shapeString({dSae, dIn}) + ")");
    const std::string why = "'W_enc' " + shapeString(wEnc.sizes());
    const at::Tensor bEnc = required("b_enc");
    requireShape(weightsPath, "b_enc", bEnc, {dSae}, why);
    const at::Tensor bDec = required("b_dec");
    requireShape(weightsPath, "b_dec", bDec, {dIn}, why);

    std::string field;
    if (const auto d = cfg.integer("d_in", &field); d && *d != dIn)
        throwInputError(cfgPath, "field '" + field + "' is " + std::to_string(*d) + " but tensor 'W_enc' in " +
                                     weightsPath.filename().string() + " has shape " + shapeString(wEnc.sizes()));
    if (const auto d = cfg.integer("d_sae", &field); d && *d != dSae)
        throwInputError(cfgPath, "field '" + field + "' is " + std::to_string(*d) + " but tensor 'W_enc' in " +
                                     weightsPath.filename().string() + " has shape " + shapeString(wEnc.sizes()));

    if (sae.activation == SaeActivation::TopK) {
        if (topK > dSae)
            cfg.fail(kField, "is " + std::to_string(topK) + ", more than the " + std::to_string(dSae) + " latents");
        sae.topK = static_cast<int>(topK);
    }
    if (sae.activation == SaeActivation::JumpReLU) {
        if (std::optional<at::Tensor> t = tensor("threshold")) {
            requireShape(weightsPath, "threshold", *t, {dSae}, why);
            sae.threshold = *t;
        } else if (std::optional<at::Tensor> logT = tensor("log_threshold")) {
            requireShape(weightsPath, "log_threshold", *logT, {dSae}, why);
            sae.threshold = logT->exp().contiguous();
        } else {
            throwInputError(weightsPath, "missing tensor 'threshold' (the cfg.json says architecture 'jumprelu')");
        }
    }
    if (std::optional<at::Tensor> s = tensor("scaling_factor")) {
        if (!at::allclose(*s, at::ones_like(*s)))
            throwInputError(weightsPath, "tensor 'scaling_factor' is not all ones; fine-tuning scaling factors are not supported");
    }

    sae.encoder = wEnc;      // SAELens already stores [d_in, d_sae] = [n_in, N]
    sae.encoderBias = bEnc;
    sae.decoder = wDec;      // [d_sae, d_in] = [N, n_in]
    sae.preBias = bDec;
    return sae;
}

SparseAutoencoder loadSae(const std::filesystem::path& path, WeightStorage storage)
{
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        return loadSaeLensSae(path, storage);
    if (!std::filesystem::exists(path, ec))
        throwInputError(path, "no such file or directory");
    // One of a SAELens directory's files: load the directory.
    if (path.filename() == "cfg.json" || path.extension() == ".safetensors") {
        const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
        return loadSaeLensSae(parent, storage);
    }
    return loadOpenAiSae(path, storage);
}

std::int64_t SparseAutoencoder::byteCount() const
{
    std::int64_t bytes = 0;
    for (const at::Tensor* t : {&encoder, &encoderBias, &decoder, &preBias, &threshold})
        bytes += t->defined() ? static_cast<std::int64_t>(t->nbytes()) : 0;
    return bytes;
}

const char* saeActivationName(SaeActivation activation)
{
    switch (activation) {
    case SaeActivation::ReLU: return "relu";
    case SaeActivation::TopK: return "topk";
    case SaeActivation::JumpReLU: return "jumprelu";
    }
    return "relu";
}

// ---------------------------------------------------------------------------------------------------
// Encode / decode

SaeEncoding encodeSae(const SparseAutoencoder& sae, const at::Tensor& input)
{
    if (!sae.encoder.defined())
        throw std::invalid_argument("encodeSae: the autoencoder is empty");
    if (input.dim() != 2 || input.size(1) != sae.inputWidth())
        throw std::invalid_argument("encodeSae: input of shape " + shapeString(input.sizes()) + " for an autoencoder of input width " +
                                    std::to_string(sae.inputWidth()));

    // Computed in float32 (for float16/bfloat16 matrices too, block by block: linear()); a test may
    // convert everything to double, and then it is double.
    at::Tensor x = input.to(computeDtype(sae.encoder));
    const std::int64_t n = x.size(0);

    SaeEncoding out;
    if (sae.normalizeInput) {
        // D2: μ and std stay in the autograd graph (the read direction differentiates through them).
        out.mean = x.mean({-1}, /*keepdim=*/true);
        out.scale = x.std({-1}, /*unbiased=*/true, /*keepdim=*/true) + kNormEpsilon;
        x = (x - out.mean) / out.scale;
    } else {
        out.mean = at::zeros({n, 1}, x.options());
        out.scale = at::ones({n, 1}, x.options());
    }
    if (sae.subtractPreBias)
        x = x - sae.preBias;
    out.preActivation = linear(sae.encoderBias, x, sae.encoder);

    const at::Tensor& z = out.preActivation;
    switch (sae.activation) {
    case SaeActivation::ReLU:
        out.latents = at::relu(z);
        break;
    case SaeActivation::TopK: {
        const std::int64_t k = std::min<std::int64_t>(sae.topK, z.size(1));
        auto [values, indices] = z.topk(k, /*dim=*/-1);
        if (sae.topKPostReLU)
            values = at::relu(values);
        out.latents = at::zeros_like(z).scatter(-1, indices, values);
        break;
    }
    case SaeActivation::JumpReLU:
        out.latents = at::relu(z) * (z > sae.threshold).to(z.scalar_type());
        break;
    }
    return out;
}

at::Tensor decodeSae(const SparseAutoencoder& sae, const at::Tensor& latents, const SaeEncoding& encoding)
{
    if (latents.dim() != 2 || latents.size(1) != sae.latentCount())
        throw std::invalid_argument("decodeSae: latents of shape " + shapeString(latents.sizes()) + " for an autoencoder with " +
                                    std::to_string(sae.latentCount()) + " latents");
    at::Tensor out = linear(sae.preBias, latents.to(computeDtype(sae.decoder)), sae.decoder);
    if (sae.normalizeInput) {
        if (!encoding.scale.defined() || !encoding.mean.defined() || encoding.scale.size(0) != latents.size(0))
            throw std::invalid_argument("decodeSae: normalizing autoencoder needs the encoding's mean and scale for each row");
        out = out * encoding.scale + encoding.mean;
    }
    return out;
}

} // namespace cs
