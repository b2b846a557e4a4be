// Sparse autoencoders (math §3.1, decisions D2, D3, D5): the OpenAI .pt and SAELens directory loaders,
// encode/decode, the TopK input normalization, and gradients through it.
//
// Reference: tests/data/reference.safetensors (PyTorch 2.11, see shared/fixtures/README.md):
// `p0.sae.<location>.<kind>.1.{pre,latents}` are the fixture SAEs applied to `p0.<location>.1`.
// Tolerances: 1e-4 absolute against the references (float32), 1e-6 between two of our own encodings of
// the same weights, 1e-6 between autograd and central finite differences in double precision, and
// 1e-5·max|expected| + 1e-6 between float16/bfloat16 matrices kept as stored and the same converted
// (float32 products summed in another order, see halfPrecisionMatricesAreKeptAsStored).

#include "core/io/safetensors.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/sae/sparse_autoencoder.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"
#include "test_support.h"

#include <torch/csrc/autograd/autograd.h>
#include <caffe2/serialize/inline_container.h>

#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <variant>
#include <nlohmann/json.hpp>

using namespace cs;
using Json = nlohmann::json;

namespace {

constexpr double kRefTol = 1e-4;
constexpr double kSelfTol = 1e-6;

std::filesystem::path saeFile(const char* name)
{
    return test::dataDir() / "sae" / name;
}

std::vector<int> p0Ids()
{
    std::ifstream in(test::dataDir() / "reference.json");
    const auto j = Json::parse(in);
    return j["prompts"][0]["ids"].get<std::vector<int>>();
}

void writeText(const std::filesystem::path& p, const std::string& text)
{
    std::ofstream out(p, std::ios::binary);
    out << text;
}

// A SAELens directory holding the weights of `sae` (converted to `dtype`) and `cfg` as cfg.json.
// `edit` may change the tensor list before it is written.
std::filesystem::path writeSaeLensDir(
    const QTemporaryDir& tmp, const std::string& name, const SparseAutoencoder& sae, const Json& cfg,
    at::ScalarType dtype = at::kFloat,
    const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit = {})
{
    const std::filesystem::path dir = std::filesystem::path(tmp.path().toStdString()) / name;
    std::filesystem::create_directories(dir);
    std::vector<std::pair<std::string, at::Tensor>> tensors = {
        {"W_enc", sae.encoder.to(dtype)},
        {"W_dec", sae.decoder.to(dtype)},
        {"b_enc", sae.encoderBias.to(dtype)},
        {"b_dec", sae.preBias.to(dtype)},
    };
    if (sae.threshold.defined())
        tensors.emplace_back("threshold", sae.threshold.to(dtype));
    if (edit)
        edit(tensors);
    writeSafetensors(dir / "sae_weights.safetensors", tensors);
    writeText(dir / "cfg.json", cfg.dump(2));
    return dir;
}

// A torch.save-style checkpoint (zip with archive/data.pkl, archive/byteorder, archive/data/<n>) holding
// a dict of tensors, strings, ints and one level of nested dicts, pickled by hand (protocol 2, the
// opcodes torch.save uses). libtorch's own pickle_save tags typed dicts with a TorchScript global
// that a checkpoint reader rightly refuses, so it cannot stand in for Python's torch.save here.
using PtScalar = std::variant<std::string, std::int64_t>;
using PtSubDict = std::vector<std::pair<std::string, PtScalar>>;
using PtEntry = std::variant<at::Tensor, std::string, std::int64_t, PtSubDict>;
using PtDict = std::vector<std::pair<std::string, PtEntry>>;

void ptSet(PtDict& d, const std::string& key, PtEntry value)
{
    for (auto& [k, v] : d) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    d.emplace_back(key, std::move(value));
}

void ptErase(PtDict& d, const std::string& key)
{
    d.erase(std::remove_if(d.begin(), d.end(), [&](const auto& e) { return e.first == key; }), d.end());
}

class PtPickler {
public:
    std::string pickle(const PtDict& d)
    {
        m_out = "\x80\x02"; // PROTO 2
        dict(d);
        m_out += '.'; // STOP
        return m_out;
    }
    const std::map<std::string, std::string>& storages() const { return m_storages; }

private:
    void le32(std::uint32_t v)
    {
        for (int k = 0; k < 4; ++k)
            m_out += char((v >> (8 * k)) & 0xFF);
    }
    void str(const std::string& s)
    {
        m_out += 'X'; // BINUNICODE
        le32(std::uint32_t(s.size()));
        m_out += s;
    }
    void integer(std::int64_t v)
    {
        m_out += 'J'; // BININT (the values here are small)
        le32(std::uint32_t(std::int32_t(v)));
    }
    void global(const char* module, const char* name) { m_out += std::string("c") + module + "\n" + name + "\n"; }
    void intTuple(at::IntArrayRef values)
    {
        m_out += '(';
        for (auto v : values)
            integer(v);
        m_out += 't';
    }
    // Float16/bfloat16 tensors are written as HalfStorage/BFloat16Storage, everything else as float32.
    void tensor(const at::Tensor& t)
    {
        const bool half = t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
        const at::Tensor c = half ? t.contiguous() : t.to(at::kFloat).contiguous();
        const std::string key = std::to_string(m_storages.size());
        m_storages[key] = std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
        // torch._utils._rebuild_tensor_v2(persistent_load(('storage', torch.FloatStorage, key, 'cpu', numel)),
        //                                  0, size, stride, False, OrderedDict())
        global("torch._utils", "_rebuild_tensor_v2");
        m_out += '(';
        m_out += '(';
        str("storage");
        global("torch", c.scalar_type() == at::kHalf ? "HalfStorage" : c.scalar_type() == at::kBFloat16 ? "BFloat16Storage" : "FloatStorage");
        str(key);
        str("cpu");
        integer(c.numel());
        m_out += "tQ"; // TUPLE, BINPERSID
        integer(0);
        intTuple(c.sizes());
        intTuple(c.strides());
        m_out += '\x89'; // NEWFALSE
        global("collections", "OrderedDict");
        m_out += ")R"; // EMPTY_TUPLE, REDUCE
        m_out += "tR";
    }
    void scalar(const PtScalar& v)
    {
        if (const auto* s = std::get_if<std::string>(&v))
            str(*s);
        else
            integer(std::get<std::int64_t>(v));
    }
    template <typename Entries, typename F>
    void dictOf(const Entries& entries, F&& value)
    {
        m_out += "}("; // EMPTY_DICT, MARK
        for (const auto& [k, v] : entries) {
            str(k);
            value(v);
        }
        m_out += 'u'; // SETITEMS
    }
    void dict(const PtDict& d)
    {
        dictOf(d, [&](const PtEntry& v) {
            std::visit(
                [&](const auto& x) {
                    using T = std::decay_t<decltype(x)>;
                    if constexpr (std::is_same_v<T, at::Tensor>)
                        tensor(x);
                    else if constexpr (std::is_same_v<T, std::string>)
                        str(x);
                    else if constexpr (std::is_same_v<T, std::int64_t>)
                        integer(x);
                    else
                        dictOf(x, [&](const PtScalar& s) { scalar(s); });
                },
                v);
        });
    }

    std::string m_out;
    std::map<std::string, std::string> m_storages;
};

std::filesystem::path writeOpenAiPt(const QTemporaryDir& tmp, const std::string& name, const PtDict& dict)
{
    PtPickler pickler;
    const std::string pkl = pickler.pickle(dict);
    const std::filesystem::path p = std::filesystem::path(tmp.path().toStdString()) / name;
    std::ofstream out(p, std::ios::binary);
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
        out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
        return n;
    });
    writer.writeRecord("data.pkl", pkl.data(), pkl.size());
    writer.writeRecord("byteorder", "little", 6);
    for (const auto& [key, bytes] : pickler.storages())
        writer.writeRecord("data/" + key, bytes.data(), bytes.size());
    writer.writeEndOfFile();
    return p;
}

// The tensors of the OpenAI layout (encoder.weight [N, n_in], decoder.weight [n_in, N]) for `sae`.
PtDict openAiDict(const SparseAutoencoder& sae)
{
    return {{"pre_bias", sae.preBias},
            {"latent_bias", sae.encoderBias},
            {"encoder.weight", sae.encoder.t()},
            {"decoder.weight", sae.decoder.t()}};
}

SparseAutoencoder toDouble(SparseAutoencoder sae)
{
    for (at::Tensor* t : {&sae.encoder, &sae.encoderBias, &sae.decoder, &sae.preBias, &sae.threshold}) {
        if (t->defined())
            *t = t->to(at::kDouble);
    }
    return sae;
}

// cfg.json in the three generations of SAELens for a ReLU SAE at blocks.1.hook_attn_out, d_in 32, d_sae 64.
Json reluCfg(const std::string& generation)
{
    if (generation == "old") // SAELens 0.x–2.x
        return {{"model_name", "tiny-gpt2"},
                {"hook_point", "blocks.1.hook_attn_out"},
                {"hook_point_layer", 1},
                {"hook_point_head_index", nullptr},
                {"d_in", 32},
                {"d_sae", 64},
                {"dtype", "float32"},
                {"activation_fn_str", "relu"},
                {"normalize_activations", false},
                {"context_size", 128}};
    if (generation == "middle") // SAELens 3.x–5.x
        return {{"architecture", "standard"},
                {"model_name", "tiny-gpt2"},
                {"hook_name", "blocks.1.hook_attn_out"},
                {"hook_layer", 1},
                {"hook_head_index", nullptr},
                {"d_in", 32},
                {"d_sae", 64},
                {"dtype", "float32"},
                {"activation_fn_str", "relu"},
                {"activation_fn_kwargs", Json::object()},
                {"apply_b_dec_to_input", true},
                {"finetuning_scaling_factor", false},
                {"normalize_activations", "none"},
                {"sae_lens_training_version", "4.4.1"}};
    if (generation == "middle, layer only in hook_layer")
        return {{"architecture", "standard"}, {"hook_name", "hook_attn_out"}, {"hook_layer", 1},
                {"d_in", 32},                 {"d_sae", 64},                  {"activation_fn", "relu"}};
    // SAELens ≥ 6: where-it-belongs fields move into a nested object ("meta" in releases).
    const std::string nested = generation == "new (metadata)" ? "metadata" : "meta";
    return {{"architecture", "standard"},
            {"d_in", 32},
            {"d_sae", 64},
            {"dtype", "float32"},
            {"device", "cpu"},
            {"apply_b_dec_to_input", true},
            {"normalize_activations", "none"},
            {"reshape_activations", "none"},
            {nested,
             {{"model_name", "tiny-gpt2"},
              {"hook_name", "blocks.1.hook_attn_out"},
              {"hook_head_index", nullptr},
              {"prepend_bos", true},
              {"sae_lens_version", "6.5.1"},
              {"sae_lens_training_version", "6.5.1"}}}};
}

} // namespace

class TestSae : public QObject {
    Q_OBJECT

    std::optional<SafetensorsFile> m_ref;
    std::shared_ptr<const Gpt2Model> m_model;

    at::Tensor ref(const std::string& key) const
    {
        const SafetensorsEntry* e = m_ref->find(key);
        if (!e)
            throw std::runtime_error("reference tensor missing: " + key);
        return m_ref->toFloat32(*e);
    }

private Q_SLOTS:
    void initTestCase()
    {
        initializeRuntime();
        m_ref = SafetensorsFile::open(test::dataDir() / "reference.safetensors");
        m_model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
    }

    // ---------------------------------------------------------------------------------------------
    // OpenAI checkpoints

    void openAiFixtureLoadsWithItsShapeAndActivation_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<qint64>("inputWidth");
        QTest::addColumn<qint64>("latents");
        QTest::addColumn<int>("activation");
        QTest::addColumn<int>("k");
        QTest::addColumn<bool>("normalizes");
        QTest::newRow("mlp_post_act.relu.pt") << "mlp_post_act.relu.pt" << qint64(128) << qint64(256) << int(SaeActivation::ReLU) << 0 << false;
        QTest::newRow("mlp_post_act.ordereddict.pt") << "mlp_post_act.ordereddict.pt" << qint64(128) << qint64(256) << int(SaeActivation::ReLU) << 0 << false;
        QTest::newRow("resid_delta_attn.relu.pt") << "resid_delta_attn.relu.pt" << qint64(32) << qint64(64) << int(SaeActivation::ReLU) << 0 << false;
        QTest::newRow("resid_delta_attn.topk8.pt") << "resid_delta_attn.topk8.pt" << qint64(32) << qint64(64) << int(SaeActivation::TopK) << 8 << true;
    }
    void openAiFixtureLoadsWithItsShapeAndActivation()
    {
        QFETCH(QString, file);
        QFETCH(qint64, inputWidth);
        QFETCH(qint64, latents);
        QFETCH(int, activation);
        QFETCH(int, k);
        QFETCH(bool, normalizes);
        const SparseAutoencoder sae = loadSae(saeFile(file.toUtf8().constData()));
        QCOMPARE(sae.format, std::string("openai"));
        QCOMPARE(sae.inputWidth(), inputWidth);
        QCOMPARE(sae.latentCount(), latents);
        QCOMPARE(int(sae.activation), activation);
        QCOMPARE(sae.topK, k);
        QVERIFY(sae.topKPostReLU);
        QCOMPARE(sae.normalizeInput, normalizes);
        QVERIFY(sae.subtractPreBias);
        QVERIFY(!sae.declaredLocation && !sae.declaredLayer); // a .pt does not say where it belongs
        for (const at::Tensor* t : {&sae.encoder, &sae.encoderBias, &sae.decoder, &sae.preBias}) {
            QCOMPARE(t->scalar_type(), at::kFloat);
            QVERIFY(t->is_contiguous());
        }
        QCOMPARE(test::describeShape(sae.encoder), test::describeShape(at::empty({inputWidth, latents})));
        QCOMPARE(test::describeShape(sae.decoder), test::describeShape(at::empty({latents, inputWidth})));
        QCOMPARE(sae.encoderBias.size(0), latents);
        QCOMPARE(sae.preBias.size(0), inputWidth);
    }

    void plainDictAndOrderedDictGiveTheSameSae()
    {
        const SparseAutoencoder a = loadOpenAiSae(saeFile("mlp_post_act.relu.pt"));
        const SparseAutoencoder b = loadOpenAiSae(saeFile("mlp_post_act.ordereddict.pt"));
        QVERIFY(at::equal(a.encoder, b.encoder));
        QVERIFY(at::equal(a.encoderBias, b.encoderBias));
        QVERIFY(at::equal(a.decoder, b.decoder));
        QVERIFY(at::equal(a.preBias, b.preBias));
        QCOMPARE(int(a.activation), int(b.activation));
    }

    void reluEncodingMatchesReference_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("input");
        QTest::addColumn<QString>("prefix");
        QTest::newRow("mlp_post_act") << "mlp_post_act.relu.pt" << "p0.mlp_post_act.1" << "p0.sae.mlp_post_act.relu.1";
        QTest::newRow("resid_delta_attn") << "resid_delta_attn.relu.pt" << "p0.resid_delta_attn.1" << "p0.sae.resid_delta_attn.relu.1";
    }
    void reluEncodingMatchesReference()
    {
        QFETCH(QString, file);
        QFETCH(QString, input);
        QFETCH(QString, prefix);
        const SparseAutoencoder sae = loadSae(saeFile(file.toUtf8().constData()));
        const SaeEncoding e = encodeSae(sae, ref(input.toStdString()));
        CS_COMPARE_TENSORS(e.preActivation, ref(prefix.toStdString() + ".pre"), kRefTol);
        CS_COMPARE_TENSORS(e.latents, ref(prefix.toStdString() + ".latents"), kRefTol);
        // Without normalization the statistics are the identity.
        QVERIFY(at::equal(e.mean, at::zeros({e.latents.size(0), 1})));
        QVERIFY(at::equal(e.scale, at::ones({e.latents.size(0), 1})));
    }

    void topKWithNormalizationMatchesReference()
    {
        const SparseAutoencoder sae = loadSae(saeFile("resid_delta_attn.topk8.pt"));
        const SaeEncoding e = encodeSae(sae, ref("p0.resid_delta_attn.1"));
        CS_COMPARE_TENSORS(e.latents, ref("p0.sae.resid_delta_attn.topk8_normalized.1.latents"), kRefTol);
    }

    void topKWithoutNormalizationWouldDiffer()
    {
        // D2 matters: the same weights without the input normalization give other latents.
        SparseAutoencoder sae = loadSae(saeFile("resid_delta_attn.topk8.pt"));
        sae.normalizeInput = false;
        const SaeEncoding e = encodeSae(sae, ref("p0.resid_delta_attn.1"));
        const double d = test::maxAbsDiff(e.latents, ref("p0.sae.resid_delta_attn.topk8_normalized.1.latents"));
        QVERIFY2(d > 1e-2, qPrintable(QStringLiteral("max |difference| only %1").arg(d)));
    }

    void topKKeepsAtMostKLatentsPerRow()
    {
        const SparseAutoencoder sae = loadSae(saeFile("resid_delta_attn.topk8.pt"));
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        const SaeEncoding e = encodeSae(sae, x);
        const at::Tensor nonzero = (e.latents != 0).sum(1);
        QVERIFY(nonzero.le(8).all().item<bool>());
        QVERIFY(nonzero.gt(0).any().item<bool>());
        // The kept latents are the 8 largest pre-activations of the row, ReLU'd.
        const auto [values, indices] = e.preActivation.topk(8, -1);
        CS_COMPARE_TENSORS(e.latents.gather(1, indices), at::relu(values), 0.0);
        QCOMPARE(nonzero.sum().item<std::int64_t>(), (values > 0).sum().item<std::int64_t>());
    }

    void modelActivationsGiveReferenceLatents_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<bool>("mlp");
        QTest::addColumn<QString>("expected");
        QTest::newRow("mlp_post_act relu") << "mlp_post_act.relu.pt" << true << "p0.sae.mlp_post_act.relu.1.latents";
        QTest::newRow("resid_delta_attn relu") << "resid_delta_attn.relu.pt" << false << "p0.sae.resid_delta_attn.relu.1.latents";
        QTest::newRow("resid_delta_attn topk8") << "resid_delta_attn.topk8.pt" << false
                                                << "p0.sae.resid_delta_attn.topk8_normalized.1.latents";
    }
    void modelActivationsGiveReferenceLatents()
    {
        QFETCH(QString, file);
        QFETCH(bool, mlp);
        QFETCH(QString, expected);
        const ActivationRecord rec = runForward(*m_model, p0Ids());
        const at::Tensor x = mlp ? rec.layers[1].mlpPost : rec.layers[1].attnOut;
        const SparseAutoencoder sae = loadSae(saeFile(file.toUtf8().constData()));
        CS_COMPARE_TENSORS(encodeSae(sae, x).latents, ref(expected.toStdString()), kRefTol);
    }

    void normalizedDecodeUsesTheEncodingStatistics()
    {
        const SparseAutoencoder sae = loadSae(saeFile("resid_delta_attn.topk8.pt"));
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        const SaeEncoding e = encodeSae(sae, x);
        // μ and std+1e-5 per row, by hand.
        const at::Tensor mu = x.sum(1, true) / x.size(1);
        const at::Tensor var = (x - mu).pow(2).sum(1, true) / (x.size(1) - 1);
        CS_COMPARE_TENSORS(e.mean, mu, kSelfTol);
        CS_COMPARE_TENSORS(e.scale, var.sqrt() + 1e-5, kSelfTol);
        // x̂ = (α·D + p)·scale + μ.
        const at::Tensor byHand = (e.latents.matmul(sae.decoder) + sae.preBias) * e.scale + e.mean;
        CS_COMPARE_TENSORS(decodeSae(sae, e.latents, e), byHand, kSelfTol);
        // The statistics do matter: decoding with the identity statistics gives something else.
        SaeEncoding identity = e;
        identity.mean = at::zeros_like(e.mean);
        identity.scale = at::ones_like(e.scale);
        QVERIFY(test::maxAbsDiff(decodeSae(sae, e.latents, identity), byHand) > 1e-3);
    }

    void unnormalizedDecodeIsAffine()
    {
        const SparseAutoencoder sae = loadSae(saeFile("mlp_post_act.relu.pt"));
        const SaeEncoding e = encodeSae(sae, ref("p0.mlp_post_act.1"));
        CS_COMPARE_TENSORS(decodeSae(sae, e.latents, e), e.latents.matmul(sae.decoder) + sae.preBias, kSelfTol);
    }

    void encodingIsRowByRow_data()
    {
        QTest::addColumn<QString>("file");
        QTest::newRow("relu") << "resid_delta_attn.relu.pt";
        QTest::newRow("topk8 normalized") << "resid_delta_attn.topk8.pt";
    }
    void encodingIsRowByRow()
    {
        // D8: a batch gives what the rows give one at a time; any row count works, including 0 and 1.
        QFETCH(QString, file);
        const SparseAutoencoder sae = loadSae(saeFile(file.toUtf8().constData()));
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        const SaeEncoding all = encodeSae(sae, x);
        for (std::int64_t r = 0; r < x.size(0); ++r) {
            const SaeEncoding one = encodeSae(sae, x.slice(0, r, r + 1));
            CS_COMPARE_TENSORS(one.latents, all.latents.slice(0, r, r + 1), kSelfTol);
            CS_COMPARE_TENSORS(decodeSae(sae, one.latents, one), decodeSae(sae, all.latents, all).slice(0, r, r + 1), kSelfTol);
        }
        const SaeEncoding none = encodeSae(sae, x.slice(0, 0, 0));
        QCOMPARE(none.latents.size(0), std::int64_t(0));
        QCOMPARE(none.latents.size(1), sae.latentCount());
        // A double input is computed in the autoencoder's float32.
        CS_COMPARE_TENSORS(encodeSae(sae, x.to(at::kDouble)).latents, all.latents, 0.0);
    }

    void wrongInputWidthIsRefused()
    {
        const SparseAutoencoder sae = loadSae(saeFile("resid_delta_attn.relu.pt"));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, encodeSae(sae, at::zeros({3, 31})));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, encodeSae(sae, at::zeros({32})));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, decodeSae(sae, at::zeros({3, 63}), SaeEncoding{}));
    }

    void gradientThroughNormalizationMatchesFiniteDifferences()
    {
        // D2: the read of a latent is ∂z_l/∂x through the normalization, μ and std differentiated.
        const SparseAutoencoder sae = toDouble(loadSae(saeFile("resid_delta_attn.topk8.pt")));
        const at::Tensor x0 = ref("p0.resid_delta_attn.1").to(at::kDouble);
        const std::int64_t row = 3;
        const SaeEncoding e0 = encodeSae(sae, x0);
        const std::int64_t latent = e0.latents[row].argmax().item<std::int64_t>(); // an active latent
        QVERIFY(e0.latents[row][latent].item<double>() > 0);

        const at::Tensor x = x0.clone().requires_grad_(true);
        const SaeEncoding e = encodeSae(sae, x);
        const at::Tensor gz = torch::autograd::grad({e.preActivation[row][latent]}, {x}, {}, true)[0];
        const at::Tensor ga = torch::autograd::grad({e.latents[row][latent]}, {x})[0];

        const double h = 1e-6;
        at::Tensor fd = at::zeros({x0.size(1)}, at::kDouble);
        for (std::int64_t j = 0; j < x0.size(1); ++j) {
            at::Tensor xp = x0.clone(), xm = x0.clone();
            xp[row][j] += h;
            xm[row][j] -= h;
            const double zp = encodeSae(sae, xp).preActivation[row][latent].item<double>();
            const double zm = encodeSae(sae, xm).preActivation[row][latent].item<double>();
            fd[j] = (zp - zm) / (2 * h);
        }
        CS_COMPARE_TENSORS(gz[row], fd, 1e-6);
        // Only the latent's own row depends on x[row]; an active latent passes the gradient through.
        at::Tensor otherRows = gz.clone();
        otherRows[row].zero_();
        QCOMPARE(otherRows.abs().max().item<double>(), 0.0);
        CS_COMPARE_TENSORS(ga, gz, 1e-12);
        // Holding μ and std fixed would give Enc_l / scale instead, which is not the same.
        const at::Tensor detached = sae.encoder.select(1, latent) / e0.scale[row][0];
        QVERIFY(test::maxAbsDiff(detached, fd) > 1e-3);
    }

    // ---------------------------------------------------------------------------------------------
    // SAELens directories

    void saeLensGenerationsMatchOpenAi_data()
    {
        QTest::addColumn<QString>("generation");
        for (const char* g : {"old", "middle", "middle, layer only in hook_layer", "new (meta)", "new (metadata)"})
            QTest::newRow(g) << QString::fromLatin1(g);
    }
    void saeLensGenerationsMatchOpenAi()
    {
        QFETCH(QString, generation);
        QTemporaryDir tmp;
        const SparseAutoencoder openai = loadSae(saeFile("resid_delta_attn.relu.pt"));
        const auto dir = writeSaeLensDir(tmp, "sae", openai, reluCfg(generation.toStdString()));
        const SparseAutoencoder sae = loadSae(dir);
        QCOMPARE(sae.format, std::string("saelens"));
        QCOMPARE(sae.source, dir);
        QCOMPARE(int(sae.activation), int(SaeActivation::ReLU));
        QVERIFY(sae.subtractPreBias);
        QVERIFY(!sae.normalizeInput);
        QVERIFY(sae.declaredLocation == SaeLocation::ResidDeltaAttn);
        QVERIFY(sae.declaredLayer == 1);
        QVERIFY(at::equal(sae.encoder, openai.encoder));
        QVERIFY(at::equal(sae.decoder, openai.decoder));
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        const SaeEncoding e = encodeSae(sae, x);
        CS_COMPARE_TENSORS(e.latents, encodeSae(openai, x).latents, kSelfTol);
        CS_COMPARE_TENSORS(e.latents, ref("p0.sae.resid_delta_attn.relu.1.latents"), kRefTol);
        CS_COMPARE_TENSORS(e.preActivation, ref("p0.sae.resid_delta_attn.relu.1.pre"), kRefTol);
    }

    void saeLensHookNamesGiveLocationAndLayer_data()
    {
        QTest::addColumn<QString>("hook");
        QTest::addColumn<int>("location");
        QTest::addColumn<int>("layer");
        QTest::newRow("resid_pre") << "blocks.0.hook_resid_pre" << int(SaeLocation::ResidPre) << 0;
        QTest::newRow("resid_mid") << "blocks.1.hook_resid_mid" << int(SaeLocation::ResidMid) << 1;
        QTest::newRow("resid_post") << "blocks.11.hook_resid_post" << int(SaeLocation::ResidPost) << 11;
        QTest::newRow("mlp_out") << "blocks.3.hook_mlp_out" << int(SaeLocation::ResidDeltaMlp) << 3;
        QTest::newRow("attn_out") << "blocks.4.hook_attn_out" << int(SaeLocation::ResidDeltaAttn) << 4;
        QTest::newRow("attn.hook_z") << "blocks.5.attn.hook_z" << int(SaeLocation::AttnZ) << 5;
        QTest::newRow("mlp.hook_post") << "blocks.10.mlp.hook_post" << int(SaeLocation::MlpPostAct) << 10;
    }
    void saeLensHookNamesGiveLocationAndLayer()
    {
        QFETCH(QString, hook);
        QFETCH(int, location);
        QFETCH(int, layer);
        QTemporaryDir tmp;
        Json cfg = reluCfg("new (meta)");
        cfg["meta"]["hook_name"] = hook.toStdString();
        const auto dir = writeSaeLensDir(tmp, "sae", loadSae(saeFile("resid_delta_attn.relu.pt")), cfg);
        const SparseAutoencoder sae = loadSae(dir);
        QVERIFY(sae.declaredLocation);
        QCOMPARE(int(*sae.declaredLocation), location);
        QVERIFY(sae.declaredLayer);
        QCOMPARE(*sae.declaredLayer, layer);
    }

    void saeLensWithoutHookSaysNothing()
    {
        QTemporaryDir tmp;
        const auto dir = writeSaeLensDir(tmp, "sae", loadSae(saeFile("resid_delta_attn.relu.pt")), {{"d_in", 32}, {"d_sae", 64}});
        const SparseAutoencoder sae = loadSae(dir);
        QVERIFY(!sae.declaredLocation);
        QVERIFY(!sae.declaredLayer);
        QCOMPARE(int(sae.activation), int(SaeActivation::ReLU)); // the defaults of an old cfg
        QVERIFY(sae.subtractPreBias);
    }

    void saeLensJumpReluZeroesLatentsAtOrBelowThreshold()
    {
        QTemporaryDir tmp;
        SparseAutoencoder src = loadSae(saeFile("resid_delta_attn.relu.pt"));
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        const at::Tensor z = encodeSae(src, x).preActivation;
        // Thresholds exactly at row 0's pre-activations: "at the threshold" must give zero there.
        src.threshold = z[0].clone();
        Json cfg = reluCfg("new (meta)");
        cfg["architecture"] = "jumprelu";
        const SparseAutoencoder sae = loadSae(writeSaeLensDir(tmp, "jumprelu", src, cfg));
        QCOMPARE(int(sae.activation), int(SaeActivation::JumpReLU));
        QVERIFY(at::equal(sae.threshold, src.threshold));
        const SaeEncoding e = encodeSae(sae, x);
        QVERIFY(at::equal(e.preActivation, z)); // same weights, same arithmetic
        QVERIFY(at::equal(e.latents[0], at::zeros({64})));
        const at::Tensor above = z > sae.threshold;
        QVERIFY(at::equal(e.latents, at::where(above, at::relu(z), at::zeros_like(z)))); // ReLU, then the jump
        // Some latents survive and some positive ones are cut (else the test shows nothing).
        QVERIFY(above.any().item<bool>());
        QVERIFY(((z > 0) & ~above).any().item<bool>());
    }

    void saeLensLogThresholdIsExponentiated()
    {
        QTemporaryDir tmp;
        const SparseAutoencoder src = loadSae(saeFile("resid_delta_attn.relu.pt"));
        Json cfg = reluCfg("new (meta)");
        cfg["architecture"] = "jumprelu";
        const at::Tensor threshold = at::full({64}, 0.25f);
        const SparseAutoencoder sae = loadSae(writeSaeLensDir(tmp, "jumprelu", src, cfg, at::kFloat, [&](auto& tensors) {
            tensors.emplace_back("log_threshold", threshold.log());
        }));
        CS_COMPARE_TENSORS(sae.threshold, threshold, 1e-7);
    }

    void saeLensWithoutBDecSubtractionShiftsPreActivation()
    {
        QTemporaryDir tmp;
        const SparseAutoencoder src = loadSae(saeFile("resid_delta_attn.relu.pt"));
        Json cfg = reluCfg("middle");
        cfg["apply_b_dec_to_input"] = false;
        const SparseAutoencoder sae = loadSae(writeSaeLensDir(tmp, "sae", src, cfg));
        QVERIFY(!sae.subtractPreBias);
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        // z_without − z_with = b_dec · W_enc for every row.
        const at::Tensor shift = encodeSae(sae, x).preActivation - encodeSae(src, x).preActivation;
        const at::Tensor expected = sae.preBias.matmul(sae.encoder).expand_as(shift);
        CS_COMPARE_TENSORS(shift, expected, 1e-5);
        QVERIFY(expected.abs().max().item<double>() > 1e-3);
    }

    void saeLensLayerNormEqualsD2Normalization_data()
    {
        QTest::addColumn<QString>("generation");
        QTest::newRow("middle, standard + activation_fn_str topk") << "middle";
        QTest::newRow("new, architecture topk") << "new";
    }
    void saeLensLayerNormEqualsD2Normalization()
    {
        QFETCH(QString, generation);
        QTemporaryDir tmp;
        const SparseAutoencoder openai = loadSae(saeFile("resid_delta_attn.topk8.pt"));
        Json cfg;
        if (generation == QLatin1String("middle")) {
            cfg = reluCfg("middle");
            cfg["activation_fn_str"] = "topk";
            cfg["activation_fn_kwargs"] = {{"k", 8}};
        } else {
            cfg = reluCfg("new (meta)");
            cfg["architecture"] = "topk";
            cfg["k"] = 8;
        }
        cfg["normalize_activations"] = "layer_norm";
        const SparseAutoencoder sae = loadSae(writeSaeLensDir(tmp, "sae", openai, cfg));
        QCOMPARE(int(sae.activation), int(SaeActivation::TopK));
        QCOMPARE(sae.topK, 8);
        QVERIFY(sae.normalizeInput);
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        const SaeEncoding e = encodeSae(sae, x);
        const SaeEncoding o = encodeSae(openai, x);
        CS_COMPARE_TENSORS(e.latents, ref("p0.sae.resid_delta_attn.topk8_normalized.1.latents"), kRefTol);
        CS_COMPARE_TENSORS(e.latents, o.latents, kSelfTol);
        CS_COMPARE_TENSORS(e.scale, o.scale, 0.0);
        CS_COMPARE_TENSORS(decodeSae(sae, e.latents, e), decodeSae(openai, o.latents, o), kSelfTol);
    }

    void saeLensHalfPrecisionIsLoadedAsFloat32_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::newRow("F16") << int(at::kHalf);
        QTest::newRow("BF16") << int(at::kBFloat16);
    }
    void saeLensHalfPrecisionIsLoadedAsFloat32()
    {
        QFETCH(int, dtype);
        QTemporaryDir tmp;
        const SparseAutoencoder src = loadSae(saeFile("resid_delta_attn.relu.pt"));
        // Converted on request; the default keeps the matrices as stored (halfPrecisionMatricesAreKeptAsStored).
        const SparseAutoencoder sae = loadSae(writeSaeLensDir(tmp, "sae", src, reluCfg("middle"), at::ScalarType(dtype)), WeightStorage::Float32);
        for (const at::Tensor* t : {&sae.encoder, &sae.encoderBias, &sae.decoder, &sae.preBias}) {
            QCOMPARE(t->scalar_type(), at::kFloat);
            QVERIFY(t->is_contiguous());
        }
        CS_COMPARE_TENSORS(sae.encoder, src.encoder.to(at::ScalarType(dtype)).to(at::kFloat), 0.0);
        CS_COMPARE_TENSORS(sae.encoder, src.encoder, 1e-2); // rounding of the half formats
    }

    // Issue 15, memory per autoencoder: float16/bfloat16 encoder and decoder stay in memory as stored
    // (half the bytes of float32), the vectors become float32, and encode/decode compute in float32 from
    // the stored values (core/linalg/weight_product.h). So the results equal the same file loaded with
    // WeightStorage::Float32 up to the order of the float32 sums: |a − e| ≤ 1e-5·max|e| + 1e-6, for the
    // values and for the gradients w.r.t. the input and the latents. Every activation and both formats.
    void halfPrecisionMatricesAreKeptAsStored_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<QString>("kind");
        for (const auto& [dtype, name] : {std::pair{at::kHalf, "F16"}, std::pair{at::kBFloat16, "BF16"}})
            for (const char* kind : {"saelens relu", "saelens topk layer_norm", "saelens jumprelu", "openai relu", "openai topk"})
                QTest::addRow("%s %s", name, kind) << int(dtype) << QString::fromLatin1(kind);
    }
    void halfPrecisionMatricesAreKeptAsStored()
    {
        QFETCH(int, dtype);
        QFETCH(QString, kind);
        const at::ScalarType half = at::ScalarType(dtype);
        QTemporaryDir tmp;
        const bool topk = kind.contains(QLatin1String("topk"));
        SparseAutoencoder src = loadSae(saeFile(topk ? "resid_delta_attn.topk8.pt" : "resid_delta_attn.relu.pt"));
        const at::Tensor x = ref("p0.resid_delta_attn.1");
        std::filesystem::path path;
        if (kind.startsWith(QLatin1String("saelens"))) {
            Json cfg = reluCfg("new (meta)");
            if (topk) {
                cfg["architecture"] = "topk";
                cfg["k"] = 8;
                cfg["normalize_activations"] = "layer_norm";
            } else if (kind.contains(QLatin1String("jumprelu"))) {
                cfg["architecture"] = "jumprelu";
                src.threshold = at::linspace(0.1, 0.6, 64); // between pre-activations, none within 1e-6 of one
            }
            path = writeSaeLensDir(tmp, "sae", src, cfg, half); // every tensor in the half dtype
        } else {
            PtDict d = {{"pre_bias", src.preBias.to(half)},
                        {"latent_bias", src.encoderBias.to(half)},
                        {"encoder.weight", src.encoder.t().to(half)},
                        {"decoder.weight", src.decoder.t().to(half)}};
            if (topk) {
                ptSet(d, "activation", std::string("TopK"));
                ptSet(d, "activation_state_dict", PtSubDict{{"k", std::int64_t(8)}, {"postact_fn", std::string("ReLU")}});
            }
            path = writeOpenAiPt(tmp, "sae.pt", d);
        }
        const SparseAutoencoder stored = loadSae(path);
        const SparseAutoencoder converted = loadSae(path, WeightStorage::Float32);
        QCOMPARE(stored.activation, converted.activation);
        QCOMPARE(stored.normalizeInput, topk);

        // The two matrices as stored, contiguous, 2 bytes an entry; their values exactly the converted ones.
        for (const auto& [s, c] : {std::pair{&stored.encoder, &converted.encoder}, std::pair{&stored.decoder, &converted.decoder}}) {
            QCOMPARE(s->scalar_type(), half);
            QCOMPARE(s->element_size(), std::size_t(2));
            QVERIFY(s->is_contiguous());
            QCOMPARE(c->scalar_type(), at::kFloat);
            QVERIFY(at::equal(s->to(at::kFloat), *c));
        }
        QCOMPARE(stored.encoder.sizes().vec(), (std::vector<std::int64_t>{32, 64}));
        // The vectors float32 under both storages.
        for (const SparseAutoencoder* sae : {&stored, &converted})
            for (const at::Tensor* t : {&sae->encoderBias, &sae->preBias, &sae->threshold})
                QVERIFY(!t->defined() || t->scalar_type() == at::kFloat);
        QCOMPARE(stored.threshold.defined(), kind.contains(QLatin1String("jumprelu")));
        const std::int64_t matrixEntries = 2 * 32 * 64;
        QCOMPARE(converted.byteCount() - stored.byteCount(), matrixEntries * 2); // 4 → 2 bytes an entry
        QCOMPARE(stored.byteCount(), std::int64_t(stored.encoder.nbytes() + stored.decoder.nbytes() +
                                                  (64 + 32 + (stored.threshold.defined() ? 64 : 0)) * 4));

        const auto tolerance = [](const at::Tensor& expected) { return 1e-5 * expected.abs().max().item<double>() + 1e-6; };
        const SaeEncoding se = encodeSae(stored, x);
        const SaeEncoding ce = encodeSae(converted, x);
        QCOMPARE(se.preActivation.scalar_type(), at::kFloat);
        CS_COMPARE_TENSORS(se.preActivation, ce.preActivation, tolerance(ce.preActivation));
        CS_COMPARE_TENSORS(se.latents, ce.latents, tolerance(ce.preActivation));
        QVERIFY((ce.latents > 0).sum().item<std::int64_t>() >= x.size(0)); // latents fire: the test compares something
        const at::Tensor sd = decodeSae(stored, se.latents, se), cd = decodeSae(converted, ce.latents, ce);
        QCOMPARE(sd.scalar_type(), at::kFloat);
        CS_COMPARE_TENSORS(sd, cd, tolerance(cd));

        // Gradients: of a random projection of z w.r.t. x (through the normalization when there is one),
        // and of the decode w.r.t. the latents.
        at::manual_seed(3);
        const at::Tensor r = at::randn(ce.preActivation.sizes());
        const at::Tensor rd = at::randn(cd.sizes());
        at::Tensor grads[2][2];
        for (int i = 0; i < 2; ++i) {
            const SparseAutoencoder& sae = i == 0 ? stored : converted;
            const at::Tensor xg = x.clone().requires_grad_(true);
            const SaeEncoding e = encodeSae(sae, xg);
            (e.preActivation * r).sum().backward();
            grads[i][0] = xg.grad();
            const at::Tensor latents = e.latents.detach().requires_grad_(true);
            const SaeEncoding statistics{e.mean.detach(), e.scale.detach(), {}, {}};
            (decodeSae(sae, latents, statistics) * rd).sum().backward();
            grads[i][1] = latents.grad();
        }
        CS_COMPARE_TENSORS(grads[0][0], grads[1][0], tolerance(grads[1][0]));
        CS_COMPARE_TENSORS(grads[0][1], grads[1][1], tolerance(grads[1][1]));
    }

    void loadSaeAcceptsTheFilesOfADirectory()
    {
        QTemporaryDir tmp;
        const auto dir = writeSaeLensDir(tmp, "sae", loadSae(saeFile("resid_delta_attn.relu.pt")), reluCfg("middle"));
        for (const auto& p : {dir / "cfg.json", dir / "sae_weights.safetensors"}) {
            const SparseAutoencoder sae = loadSae(p);
            QCOMPARE(sae.format, std::string("saelens"));
            QCOMPARE(sae.source, dir);
        }
    }

    void topKWithIdentityPostActivationKeepsSignedValues()
    {
        // Also checks the writer the bad-input rows use: a TopK checkpoint with activation_state_dict.
        QTemporaryDir tmp;
        const SparseAutoencoder src = loadSae(saeFile("resid_delta_attn.topk8.pt"));
        PtDict d = openAiDict(src);
        ptSet(d, "activation", std::string("TopK"));
        ptSet(d, "activation_state_dict", PtSubDict{{"k", std::int64_t(5)}, {"postact_fn", std::string("Identity")}});
        const SparseAutoencoder sae = loadSae(writeOpenAiPt(tmp, "topk5.pt", d));
        QCOMPARE(int(sae.activation), int(SaeActivation::TopK));
        QCOMPARE(sae.topK, 5);
        QVERIFY(!sae.topKPostReLU);
        QVERIFY(sae.normalizeInput);
        QVERIFY(at::equal(sae.encoder, src.encoder));
        // Identity post-activation keeps the 5 largest pre-activations as they are, negative ones included.
        const SaeEncoding e = encodeSae(sae, ref("p0.resid_delta_attn.1"));
        const auto [values, indices] = e.preActivation.topk(5, -1);
        CS_COMPARE_TENSORS(e.latents.gather(1, indices), values, 0.0);
        QVERIFY(((e.latents != 0).sum(1) == 5).all().item<bool>());
    }

    // ---------------------------------------------------------------------------------------------
    // Bad input: every one an InputError that names the file and the field or tensor.

    void badInputIsAnInputErrorNamingFileAndField_data()
    {
        QTest::addColumn<QString>("name");
        for (const auto& c : badCases())
            QTest::newRow(c.name) << QString::fromLatin1(c.name);
    }
    void badInputIsAnInputErrorNamingFileAndField()
    {
        QFETCH(QString, name);
        const std::vector<BadCase> cases = badCases();
        const BadCase* bad = nullptr;
        for (const auto& c : cases)
            if (name == QLatin1String(c.name))
                bad = &c;
        QVERIFY(bad);
        QTemporaryDir tmp;
        const std::filesystem::path path = bad->build(tmp, loadSae(saeFile("resid_delta_attn.relu.pt")));
        try {
            loadSae(path);
            QFAIL("no error");
        } catch (const InputError& e) {
            const QString message = QString::fromUtf8(e.what());
            for (const char* part : {bad->file, bad->field}) {
                if (!message.contains(QLatin1String(part)))
                    QFAIL(qPrintable(QStringLiteral("'%1' does not name '%2'").arg(message, QLatin1String(part))));
            }
            QVERIFY2(!message.contains(QLatin1Char('\n')), qPrintable(message));
        }
    }

private:
    struct BadCase {
        const char* name;
        const char* file;  // what the message must name: the file...
        const char* field; // ...and the field or tensor
        std::function<std::filesystem::path(const QTemporaryDir&, const SparseAutoencoder&)> build;
    };

    static std::vector<BadCase> badCases()
    {
        using P = std::filesystem::path;
        using Src = const SparseAutoencoder&;
        const auto withCfg = [](std::function<void(Json&)> edit) {
            return [edit](const QTemporaryDir& tmp, Src src) {
                Json cfg = reluCfg("middle");
                edit(cfg);
                return writeSaeLensDir(tmp, "sae", src, cfg);
            };
        };
        const auto withTensors = [](std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)> edit) {
            return [edit](const QTemporaryDir& tmp, Src src) {
                return writeSaeLensDir(tmp, "sae", src, reluCfg("middle"), at::kFloat, edit);
            };
        };
        const auto eraseTensor = [](std::vector<std::pair<std::string, at::Tensor>>& ts, const std::string& name) {
            ts.erase(std::remove_if(ts.begin(), ts.end(), [&](const auto& p) { return p.first == name; }), ts.end());
        };
        const auto replaceTensor = [](std::vector<std::pair<std::string, at::Tensor>>& ts, const std::string& name, at::Tensor t) {
            for (auto& p : ts)
                if (p.first == name)
                    p.second = t;
        };
        const auto pt = [](std::function<void(PtDict&)> edit) {
            return [edit](const QTemporaryDir& tmp, Src src) {
                PtDict d = openAiDict(src);
                edit(d);
                return writeOpenAiPt(tmp, "bad.pt", d);
            };
        };
        return {
            {"missing cfg.json", "cfg.json", "missing",
             [](const QTemporaryDir& tmp, Src src) {
                 const P dir = writeSaeLensDir(tmp, "sae", src, reluCfg("middle"));
                 std::filesystem::remove(dir / "cfg.json");
                 return dir;
             }},
            {"cfg.json not JSON", "cfg.json", "not valid JSON",
             [](const QTemporaryDir& tmp, Src src) {
                 const P dir = writeSaeLensDir(tmp, "sae", src, reluCfg("middle"));
                 writeText(dir / "cfg.json", "{\"d_in\": 32, oops");
                 return dir;
             }},
            {"cfg.json an array", "cfg.json", "JSON object",
             [](const QTemporaryDir& tmp, Src src) {
                 const P dir = writeSaeLensDir(tmp, "sae", src, reluCfg("middle"));
                 writeText(dir / "cfg.json", "[1, 2]");
                 return dir;
             }},
            {"architecture gated", "cfg.json", "architecture", withCfg([](Json& c) { c["architecture"] = "gated"; })},
            {"normalize_activations expected_average_only_in", "cfg.json", "normalize_activations",
             withCfg([](Json& c) { c["normalize_activations"] = "expected_average_only_in"; })},
            {"normalize_activations constant_norm_rescale", "cfg.json", "normalize_activations",
             withCfg([](Json& c) { c["normalize_activations"] = "constant_norm_rescale"; })},
            {"normalize_activations true (old spelling)", "cfg.json", "normalize_activations",
             withCfg([](Json& c) { c["normalize_activations"] = true; })},
            {"activation_fn tanh-relu", "cfg.json", "activation_fn_str", withCfg([](Json& c) { c["activation_fn_str"] = "tanh-relu"; })},
            {"topk without k", "cfg.json", "'k'", withCfg([](Json& c) { c["activation_fn_str"] = "topk"; })},
            {"topk with k a string", "cfg.json", "activation_fn_kwargs.k",
             withCfg([](Json& c) { c["activation_fn_str"] = "topk"; c["activation_fn_kwargs"] = {{"k", "8"}}; })},
            {"topk with k above d_sae", "cfg.json", "'k'", withCfg([](Json& c) { c["architecture"] = "topk"; c["k"] = 65; })},
            {"apply_b_dec_to_input not a bool", "cfg.json", "apply_b_dec_to_input",
             withCfg([](Json& c) { c["apply_b_dec_to_input"] = "yes"; })},
            {"unknown hook name", "cfg.json", "hook_name", withCfg([](Json& c) { c["hook_name"] = "blocks.1.ln1.hook_normalized"; })},
            {"unknown hook name in meta", "cfg.json", "meta.hook_name",
             [](const QTemporaryDir& tmp, Src src) {
                 Json cfg = reluCfg("new (meta)");
                 cfg["meta"]["hook_name"] = "hook_embed";
                 return writeSaeLensDir(tmp, "sae", src, cfg);
             }},
            {"per-head hook_head_index", "cfg.json", "hook_head_index", withCfg([](Json& c) { c["hook_head_index"] = 3; })},
            {"finetuning_scaling_factor", "cfg.json", "finetuning_scaling_factor",
             withCfg([](Json& c) { c["finetuning_scaling_factor"] = true; })},
            {"d_in disagrees with W_enc", "cfg.json", "d_in", withCfg([](Json& c) { c["d_in"] = 768; })},
            {"d_sae disagrees with W_enc", "cfg.json", "d_sae", withCfg([](Json& c) { c["d_sae"] = 65; })},
            {"missing sae_weights.safetensors", "sae_weights.safetensors", "missing",
             [](const QTemporaryDir& tmp, Src src) {
                 const P dir = writeSaeLensDir(tmp, "sae", src, reluCfg("middle"));
                 std::filesystem::remove(dir / "sae_weights.safetensors");
                 return dir;
             }},
            {"missing W_enc", "sae_weights.safetensors", "W_enc", withTensors([=](auto& ts) { eraseTensor(ts, "W_enc"); })},
            {"missing b_dec", "sae_weights.safetensors", "b_dec", withTensors([=](auto& ts) { eraseTensor(ts, "b_dec"); })},
            {"W_enc inconsistent with W_dec", "sae_weights.safetensors", "W_dec",
             withTensors([=](auto& ts) { replaceTensor(ts, "W_dec", at::zeros({32, 64})); })},
            {"b_enc wrong length", "sae_weights.safetensors", "b_enc",
             withTensors([=](auto& ts) { replaceTensor(ts, "b_enc", at::zeros({63})); })},
            {"W_enc one-dimensional", "sae_weights.safetensors", "W_enc",
             withTensors([=](auto& ts) { replaceTensor(ts, "W_enc", at::zeros({32})); })},
            {"W_enc integer", "sae_weights.safetensors", "W_enc",
             withTensors([=](auto& ts) { replaceTensor(ts, "W_enc", at::zeros({32, 64}, at::kInt)); })},
            {"W_enc with NaN", "sae_weights.safetensors", "W_enc",
             withTensors([=](auto& ts) { replaceTensor(ts, "W_enc", at::full({32, 64}, NAN)); })},
            // One bad value among finite ones, in the last element and in half precision: the
            // finiteness scan looks at every value of every dtype.
            {"W_dec with one +inf", "sae_weights.safetensors", "W_dec", withTensors([=](auto& ts) {
                 at::Tensor w = at::zeros({64, 32});
                 w[63][31] = INFINITY;
                 replaceTensor(ts, "W_dec", w);
             })},
            {"b_enc with one -inf in float16", "sae_weights.safetensors", "b_enc", withTensors([=](auto& ts) {
                 at::Tensor b = at::zeros({64}, at::kHalf);
                 b[17] = -INFINITY;
                 replaceTensor(ts, "b_enc", b);
             })},
            // Matrices stored in half precision stay so: their scan reads the 16-bit words.
            {"W_dec with one NaN in float16", "sae_weights.safetensors", "W_dec", withTensors([=](auto& ts) {
                 at::Tensor w = at::zeros({64, 32}, at::kHalf);
                 w[63][31] = NAN;
                 replaceTensor(ts, "W_dec", w);
             })},
            {"W_enc with one +inf in bfloat16", "sae_weights.safetensors", "W_enc", withTensors([=](auto& ts) {
                 at::Tensor w = at::zeros({32, 64}, at::kBFloat16);
                 w[0][5] = INFINITY;
                 replaceTensor(ts, "W_enc", w);
             })},
            {"pt with one -inf in float16 encoder.weight", "bad.pt", "encoder.weight", pt([](PtDict& d) {
                 at::Tensor w = at::zeros({64, 32}, at::kHalf);
                 w[40][5] = -INFINITY;
                 ptSet(d, "encoder.weight", w);
             })},
            {"pt with one NaN in decoder.weight", "bad.pt", "decoder.weight", pt([](PtDict& d) {
                 at::Tensor w = at::zeros({32, 64});
                 w[5][40] = NAN;
                 ptSet(d, "decoder.weight", w);
             })},
            {"jumprelu without threshold", "sae_weights.safetensors", "threshold",
             withCfg([](Json& c) { c["architecture"] = "jumprelu"; })},
            {"scaling_factor not ones", "sae_weights.safetensors", "scaling_factor",
             withTensors([](auto& ts) { ts.emplace_back("scaling_factor", at::full({64}, 2.0f)); })},
            {"pt without encoder.weight", "bad.pt", "encoder.weight", pt([](PtDict& d) { ptErase(d, "encoder.weight"); })},
            {"pt with decoder.weight not transposed", "bad.pt", "decoder.weight",
             pt([](PtDict& d) { ptSet(d, "decoder.weight", at::zeros({64, 32})); })},
            {"pt with pre_bias wrong length", "bad.pt", "pre_bias", pt([](PtDict& d) { ptSet(d, "pre_bias", at::zeros({31})); })},
            {"pt with unknown activation", "bad.pt", "activation", pt([](PtDict& d) { ptSet(d, "activation", std::string("Swish")); })},
            {"pt with Identity activation", "bad.pt", "Identity", pt([](PtDict& d) { ptSet(d, "activation", std::string("Identity")); })},
            {"pt with activation not a string", "bad.pt", "activation", pt([](PtDict& d) { ptSet(d, "activation", std::int64_t(1)); })},
            {"pt TopK without activation_state_dict", "bad.pt", "activation_state_dict",
             pt([](PtDict& d) { ptSet(d, "activation", std::string("TopK")); })},
            {"pt TopK with k above N", "bad.pt", "activation_state_dict.k",
             pt([](PtDict& d) {
                 ptSet(d, "activation", std::string("TopK"));
                 ptSet(d, "activation_state_dict", PtSubDict{{"k", std::int64_t(65)}});
             })},
            {"pt TopK with unknown postact_fn", "bad.pt", "postact_fn",
             pt([](PtDict& d) {
                 ptSet(d, "activation", std::string("TopK"));
                 ptSet(d, "activation_state_dict", PtSubDict{{"k", std::int64_t(8)}, {"postact_fn", std::string("GELU")}});
             })},
            {"no such path", "nowhere.pt", "no such file",
             [](const QTemporaryDir& tmp, Src) { return P(tmp.path().toStdString()) / "nowhere.pt"; }},
        };
    }
};

QTEST_GUILESS_MAIN(TestSae)
#include "tst_sae.moc"
