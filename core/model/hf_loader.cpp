#include "core/model/gpt2_model.h"

#include "core/io/safetensors.h"
#include "core/io/torch_pickle.h"
#include "core/linalg/weight_product.h"
#include "core/util/errors.h"

#include <map>
#include <set>
#include <regex>

namespace cs {

namespace {

std::string shapeString(at::IntArrayRef shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Keys of the HF state dict with `transformer.` stripped, mapped to their tensors.
class KeyedTensors {
public:
    KeyedTensors(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::filesystem::path& source,
                 WeightStorage storage)
        : m_source(source), m_storage(storage)
    {
        for (const auto& [key, t] : tensors) {
            std::string k = key;
            if (k.rfind("transformer.", 0) == 0)
                k.erase(0, std::string("transformer.").size());
            m_byKey[k] = {key, t};
        }
    }

    bool has(const std::string& key) const { return m_byKey.count(key) != 0; }

    // The tensor as float32 (vectors, the position embedding).
    at::Tensor take(const std::string& key, std::vector<std::int64_t> shape) { return checked(key, shape, false); }
    // A large matrix: as stored when that is float16/bfloat16 and the storage is AsStored, else float32.
    at::Tensor takeMatrix(const std::string& key, std::vector<std::int64_t> shape) { return checked(key, shape, true); }

    std::vector<std::string> unusedKeys() const
    {
        static const std::regex maskBuffer(R"(h\.\d+\.attn\.(bias|masked_bias))");
        std::vector<std::string> out;
        for (const auto& [k, v] : m_byKey) {
            if (!m_used.count(k) && !std::regex_match(k, maskBuffer) && k != "lm_head.weight")
                out.push_back(v.first);
        }
        return out;
    }

private:
    at::Tensor checked(const std::string& key, const std::vector<std::int64_t>& shape, bool matrix)
    {
        const auto it = m_byKey.find(key);
        if (it == m_byKey.end())
            throwInputError(m_source, "missing tensor '" + key + "' (or 'transformer." + key + "')");
        const auto& [fullKey, t] = it->second;
        if (t.sizes().vec() != shape)
            throwInputError(m_source, "tensor '" + fullKey + "' has shape " + shapeString(t.sizes()) +
                                          " but config.json implies " + shapeString(shape));
        if (!t.is_floating_point())
            throwInputError(m_source, "tensor '" + fullKey + "' is not a floating-point tensor");
        m_used.insert(key);
        if (matrix && m_storage == WeightStorage::AsStored && isHalfStorage(t))
            return t.contiguous();
        return t.scalar_type() == at::kFloat ? t.contiguous() : t.to(at::kFloat).contiguous();
    }

    std::filesystem::path m_source;
    WeightStorage m_storage;
    std::map<std::string, std::pair<std::string, at::Tensor>> m_byKey;
    std::set<std::string> m_used;
};

} // namespace

Gpt2Weights weightsFromStateDict(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                 const Gpt2Config& c, const std::filesystem::path& source,
                                 std::vector<std::string>* warnings, WeightStorage storage)
{
    KeyedTensors keyed(tensors, source, storage);
    const std::int64_t d = c.dModel, f = c.dMlp, v = c.vocabSize;
    Gpt2Weights w;
    w.tokenEmbedding = keyed.takeMatrix("wte.weight", {v, d});
    w.positionEmbedding = keyed.take("wpe.weight", {c.nCtx, d});
    w.lnFinalGain = keyed.take("ln_f.weight", {d});
    w.lnFinalBias = keyed.take("ln_f.bias", {d});
    for (int i = 0; i < c.nLayer; ++i) {
        const std::string p = "h." + std::to_string(i) + ".";
        Gpt2LayerWeights l;
        l.ln1Gain = keyed.take(p + "ln_1.weight", {d});
        l.ln1Bias = keyed.take(p + "ln_1.bias", {d});
        l.attnQkvWeight = keyed.takeMatrix(p + "attn.c_attn.weight", {d, 3 * d});
        l.attnQkvBias = keyed.take(p + "attn.c_attn.bias", {3 * d});
        l.attnOutWeight = keyed.takeMatrix(p + "attn.c_proj.weight", {d, d});
        l.attnOutBias = keyed.take(p + "attn.c_proj.bias", {d});
        l.ln2Gain = keyed.take(p + "ln_2.weight", {d});
        l.ln2Bias = keyed.take(p + "ln_2.bias", {d});
        l.mlpInWeight = keyed.takeMatrix(p + "mlp.c_fc.weight", {d, f});
        l.mlpInBias = keyed.take(p + "mlp.c_fc.bias", {f});
        l.mlpOutWeight = keyed.takeMatrix(p + "mlp.c_proj.weight", {f, d});
        l.mlpOutBias = keyed.take(p + "mlp.c_proj.bias", {d});
        w.layers.push_back(std::move(l));
    }
    // HF ties lm_head to wte unless the config says otherwise, whatever the file holds.
    if (c.tieWordEmbeddings || !keyed.has("lm_head.weight"))
        w.unembedding = w.tokenEmbedding;
    else
        w.unembedding = keyed.takeMatrix("lm_head.weight", {v, d});
    if (!c.tieWordEmbeddings && !keyed.has("lm_head.weight") && warnings)
        warnings->push_back(source.string() + ": tie_word_embeddings is false but there is no lm_head.weight; using wte");

    if (warnings) {
        for (const auto& k : keyed.unusedKeys())
            warnings->push_back(source.string() + ": ignored unknown tensor '" + k + "'");
    }
    return w;
}

std::shared_ptr<const Gpt2Model> loadHfGpt2(const std::filesystem::path& dir, WeightStorage storage)
{
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throwInputError(dir, "not a directory");
    const auto configPath = dir / "config.json";
    if (!std::filesystem::exists(configPath, ec))
        throwInputError(dir, "not a Hugging Face model directory: no config.json");

    auto model = std::make_shared<Gpt2Model>();
    model->directory = dir;
    model->config = Gpt2Config::fromFile(configPath);

    const auto safetensorsPath = dir / "model.safetensors";
    const auto binPath = dir / "pytorch_model.bin";
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    if (std::filesystem::exists(safetensorsPath, ec)) {
        model->weightsFile = safetensorsPath;
        const auto st = SafetensorsFile::open(safetensorsPath);
        tensors.reserve(st.entries().size());
        for (const auto& e : st.entries()) {
            // F16/BF16 are read as stored (weightsFromStateDict decides what becomes float32); F64 now.
            if (e.dtype == StDType::F64)
                tensors.emplace_back(e.name, st.toFloat32(e));
            else
                tensors.emplace_back(e.name, st.toTensor(e));
        }
    } else if (std::filesystem::exists(binPath, ec)) {
        model->weightsFile = binPath;
        auto sd = loadTorchStateDict(binPath);
        tensors = std::move(sd.tensors);
    } else {
        throwInputError(dir, "no model.safetensors or pytorch_model.bin");
    }
    model->weights = weightsFromStateDict(tensors, model->config, model->weightsFile, &model->warnings, storage);
    tensors.clear(); // the state dict's copies of tensors that became float32
    model->tokenizer = std::make_shared<const Gpt2Tokenizer>(Gpt2Tokenizer::fromDirectory(dir));
    if (model->tokenizer->vocabSize() > model->config.vocabSize)
        throwInputError(dir, "tokenizer has " + std::to_string(model->tokenizer->vocabSize()) +
                                 " tokens but config.json vocab_size is " + std::to_string(model->config.vocabSize));
    const Gpt2Weights& w = model->weights;
    model->embeddingRanker = std::make_shared<const VocabRanker>(w.tokenEmbedding);
    const bool tied = w.unembedding.data_ptr() == w.tokenEmbedding.data_ptr() && w.unembedding.sizes() == w.tokenEmbedding.sizes();
    model->unembeddingRanker = tied ? model->embeddingRanker : std::make_shared<const VocabRanker>(w.unembedding);
    return model;
}

} // namespace cs
