// Tests for the PyTorch zip checkpoint reader: real torch.save files written by PyTorch 2.11, synthetic
// archives that exercise layouts and dtypes, and corrupt or hostile archives that must end in a clean
// cs::InputError naming the file.

#include "core/io/torch_pickle.h"
#include "core/util/errors.h"

#include <caffe2/serialize/inline_container.h>
#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest>

#include <cstring>
#include <fstream>
#include <map>
#include <random>

using namespace cs;

namespace {

std::filesystem::path dataFile(const char* relative)
{
    return std::filesystem::path(TEST_DATA_DIR) / relative;
}

// Builds pickle protocol-2 byte streams opcode by opcode, the way torch.save lays them out.
class Pickle {
public:
    Pickle() { bytes_ += "\x80\x02"; }

    Pickle& raw(std::string_view b) { bytes_ += b; return *this; }
    Pickle& op(char c) { bytes_ += c; return *this; }
    Pickle& mark() { return op('('); }
    Pickle& tuple() { return op('t'); }
    Pickle& emptyTuple() { return op(')'); }
    Pickle& emptyDict() { return op('}'); }
    Pickle& emptyList() { return op(']'); }
    Pickle& setItem() { return op('s'); }
    Pickle& setItems() { return op('u'); }
    Pickle& append() { return op('a'); }
    Pickle& reduce() { return op('R'); }
    Pickle& build() { return op('b'); }
    Pickle& none() { return op('N'); }
    Pickle& newFalse() { return op('\x89'); }
    Pickle& stop() { return op('.'); }
    Pickle& put(uint8_t i) { op('q'); bytes_ += char(i); return *this; }
    Pickle& get(uint8_t i) { op('h'); bytes_ += char(i); return *this; }
    Pickle& global(std::string_view module, std::string_view name)
    {
        op('c');
        bytes_ += module;
        bytes_ += '\n';
        bytes_ += name;
        bytes_ += '\n';
        return *this;
    }
    Pickle& str(std::string_view s)
    {
        op('X');
        le(uint32_t(s.size()), 4);
        bytes_ += s;
        return *this;
    }
    Pickle& integer(int64_t v)
    {
        if (v >= INT32_MIN && v <= INT32_MAX) {
            op('J');
            le(uint64_t(v), 4);
        } else {
            op('\x8a'); // LONG1
            bytes_ += char(8);
            le(uint64_t(v), 8);
        }
        return *this;
    }
    Pickle& intTuple(const std::vector<int64_t>& values)
    {
        mark();
        for (int64_t v : values)
            integer(v);
        return tuple();
    }
    Pickle& orderedDict() { return global("collections", "OrderedDict").emptyTuple().reduce(); }

    // torch._utils._rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride,
    // False, OrderedDict())
    Pickle& tensor(std::string_view storageClass, std::string_view key, int64_t numel, int64_t offset,
                   const std::vector<int64_t>& size, const std::vector<int64_t>& stride)
    {
        global("torch._utils", "_rebuild_tensor_v2").mark();
        mark().str("storage").global("torch", storageClass).str(key).str("cpu").integer(numel).tuple().op('Q');
        integer(offset).intTuple(size).intTuple(stride).newFalse().orderedDict();
        return tuple().reduce();
    }

    const std::string& bytes() const { return bytes_; }

private:
    void le(uint64_t v, int n)
    {
        for (int k = 0; k < n; ++k)
            bytes_ += char((v >> (8 * k)) & 0xFF);
    }
    std::string bytes_;
};

using Records = std::map<std::string, std::string>;

// A torch.save-style zip (archive/data.pkl, archive/byteorder, archive/data/<key>) built in memory with
// libtorch's own writer.
std::string zipArchive(const std::string& pickle, const Records& storages = {})
{
    std::string out;
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
        out.append(static_cast<const char*>(data), n);
        return n;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeRecord("byteorder", "little", 6);
    for (const auto& [key, bytes] : storages)
        writer.writeRecord("data/" + key, bytes.data(), bytes.size());
    writer.writeEndOfFile();
    return out;
}

template <typename T>
std::string rawBytes(const std::vector<T>& values)
{
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string floats(int n)
{
    std::vector<float> v(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k)
        v[size_t(k)] = float(k);
    return rawBytes(v);
}

QByteArray qbytes(const std::string& s)
{
    return QByteArray(s.data(), qsizetype(s.size()));
}

// Overwrites the start of a stored record's bytes in a zip (CRCs are not checked by the reader).
QByteArray patchRecord(QByteArray zip, const QByteArray& name, const QByteArray& bytes)
{
    for (qsizetype at = 0; (at = zip.indexOf("PK\x03\x04", at)) >= 0; ++at) {
        const auto u16 = [&](qsizetype off) {
            return int(uchar(zip[at + off])) | (int(uchar(zip[at + off + 1])) << 8);
        };
        if (zip.mid(at + 30, u16(26)) == name) {
            zip.replace(at + 30 + u16(26) + u16(28), bytes.size(), bytes);
            return zip;
        }
    }
    throw std::runtime_error("record not found");
}

std::filesystem::path writeFile(const QTemporaryDir& dir, const QString& name, const QByteArray& bytes)
{
    const std::filesystem::path path = std::filesystem::path(dir.path().toStdString()) / name.toStdString();
    std::ofstream(path, std::ios::binary).write(bytes.constData(), bytes.size());
    return path;
}

// safetensors: u64 header length, JSON header, raw little-endian data. Parsed here directly so this test
// does not depend on the project's safetensors reader.
std::map<std::string, at::Tensor> readSafetensorsF32(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t headerLen = 0;
    std::memcpy(&headerLen, bytes.data(), 8);
    const auto header = nlohmann::json::parse(bytes.substr(8, headerLen));
    const char* base = bytes.data() + 8 + headerLen;
    std::map<std::string, at::Tensor> out;
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__" || info.at("dtype") != "F32")
            continue;
        const std::vector<int64_t> shape = info.at("shape");
        const size_t begin = info.at("data_offsets")[0], end = info.at("data_offsets")[1];
        at::Tensor t = at::empty(shape, at::kFloat);
        if (size_t(t.nbytes()) != end - begin)
            throw std::runtime_error("bad safetensors fixture");
        std::memcpy(t.data_ptr(), base + begin, end - begin);
        out.emplace(name, t);
    }
    return out;
}

std::vector<int64_t> shapeOf(const QString& text)
{
    std::vector<int64_t> shape;
    for (const QString& part : text.split(QLatin1Char(','), Qt::SkipEmptyParts))
        shape.push_back(part.toLongLong());
    return shape;
}

} // namespace

Q_DECLARE_METATYPE(at::ScalarType)

class TestTorchPickle : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void realFileTensors_data();
    void realFileTensors();
    void gpt2BinMatchesSafetensors();
    void tiedEmbeddingSharesStorage();
    void orderedDictFileMatchesPlainDict();
    void saeExtras();
    void topkExtras();
    void tensorLayoutAndSharedStorage();
    void dtypes_data();
    void dtypes();
    void dictShapesLibtorchCannotRead();
    void rejectsBadFiles_data();
    void rejectsBadFiles();
    void missingFile();
    void randomCorruptionGivesInputError_data();
    void randomCorruptionGivesInputError();
};

void TestTorchPickle::realFileTensors_data()
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("shape");
    QTest::addColumn<at::ScalarType>("dtype");

    const QString bin = QStringLiteral("tiny-gpt2-bin/pytorch_model.bin");
    QTest::newRow("bin c_attn.weight") << bin << "transformer.h.0.attn.c_attn.weight" << "32,96" << at::kFloat;
    QTest::newRow("bin c_attn.bias") << bin << "transformer.h.1.attn.c_attn.bias" << "96" << at::kFloat;
    QTest::newRow("bin mlp.c_proj.weight") << bin << "transformer.h.1.mlp.c_proj.weight" << "128,32" << at::kFloat;
    QTest::newRow("bin wte") << bin << "transformer.wte.weight" << "50257,32" << at::kFloat;
    QTest::newRow("bin wpe") << bin << "transformer.wpe.weight" << "64,32" << at::kFloat;
    QTest::newRow("bin ln_f.bias") << bin << "transformer.ln_f.bias" << "32" << at::kFloat;
    QTest::newRow("bin lm_head") << bin << "lm_head.weight" << "50257,32" << at::kFloat;

    for (const char* f : {"sae/mlp_post_act.relu.pt", "sae/mlp_post_act.ordereddict.pt"}) {
        const QString file = QString::fromLatin1(f);
        const QByteArray tag = QByteArray(f).mid(4) + ' ';
        QTest::newRow(QByteArray(tag + "pre_bias").constData()) << file << "pre_bias" << "128" << at::kFloat;
        QTest::newRow(QByteArray(tag + "latent_bias").constData()) << file << "latent_bias" << "256" << at::kFloat;
        QTest::newRow(QByteArray(tag + "encoder").constData()) << file << "encoder.weight" << "256,128" << at::kFloat;
        QTest::newRow(QByteArray(tag + "decoder").constData()) << file << "decoder.weight" << "128,256" << at::kFloat;
        QTest::newRow(QByteArray(tag + "stats").constData()) << file << "stats_last_nonzero" << "256" << at::kLong;
        QTest::newRow(QByteArray(tag + "frequency").constData())
            << file << "latents_activation_frequency" << "256" << at::kFloat;
        QTest::newRow(QByteArray(tag + "mean_square").constData())
            << file << "latents_mean_square" << "256" << at::kFloat;
    }
    for (const char* f : {"sae/resid_delta_attn.relu.pt", "sae/resid_delta_attn.topk8.pt"}) {
        const QString file = QString::fromLatin1(f);
        const QByteArray tag = QByteArray(f).mid(4) + ' ';
        QTest::newRow(QByteArray(tag + "pre_bias").constData()) << file << "pre_bias" << "32" << at::kFloat;
        QTest::newRow(QByteArray(tag + "encoder").constData()) << file << "encoder.weight" << "64,32" << at::kFloat;
        QTest::newRow(QByteArray(tag + "decoder").constData()) << file << "decoder.weight" << "32,64" << at::kFloat;
        QTest::newRow(QByteArray(tag + "stats").constData()) << file << "stats_last_nonzero" << "64" << at::kLong;
    }
}

void TestTorchPickle::realFileTensors()
{
    QFETCH(QString, file);
    QFETCH(QString, key);
    QFETCH(QString, shape);
    QFETCH(at::ScalarType, dtype);

    const TorchStateDict sd = loadTorchStateDict(dataFile(file.toUtf8().constData()));
    const at::Tensor* t = sd.find(key.toStdString());
    QVERIFY2(t, qPrintable(key));
    QCOMPARE(t->sizes().vec(), shapeOf(shape));
    QCOMPARE(t->scalar_type(), dtype);
    QVERIFY(t->is_contiguous());
    if (at::isFloatingType(dtype))
        QVERIFY(at::isfinite(*t).all().item<bool>());
}

void TestTorchPickle::gpt2BinMatchesSafetensors()
{
    const TorchStateDict sd = loadTorchStateDict(dataFile("tiny-gpt2-bin/pytorch_model.bin"));
    QCOMPARE(sd.tensors.size(), size_t(29)); // 2 layers x 12, wte, wpe, ln_f x 2, lm_head
    QVERIFY(sd.extras.empty());
    QCOMPARE(sd.tensors.front().first, std::string("transformer.wte.weight")); // file order is kept

    const auto reference = readSafetensorsF32(dataFile("tiny-gpt2/model.safetensors"));
    QCOMPARE(reference.size(), size_t(28));
    for (const auto& [name, expected] : reference) {
        const at::Tensor* t = sd.find(name);
        QVERIFY2(t, name.c_str());
        QVERIFY2(at::equal(*t, expected), name.c_str());
    }
}

void TestTorchPickle::tiedEmbeddingSharesStorage()
{
    const TorchStateDict sd = loadTorchStateDict(dataFile("tiny-gpt2-bin/pytorch_model.bin"));
    const at::Tensor* wte = sd.find("transformer.wte.weight");
    const at::Tensor* head = sd.find("lm_head.weight");
    QVERIFY(wte && head);
    QCOMPARE(head->data_ptr(), wte->data_ptr());
    QVERIFY(head->storage().is_alias_of(wte->storage()));
    QVERIFY(at::equal(*head, *wte));
    // Untied tensors live in their own storages.
    QVERIFY(sd.find("transformer.wpe.weight")->data_ptr() != wte->data_ptr());
}

void TestTorchPickle::orderedDictFileMatchesPlainDict()
{
    const TorchStateDict plain = loadTorchStateDict(dataFile("sae/mlp_post_act.relu.pt"));
    const TorchStateDict ordered = loadTorchStateDict(dataFile("sae/mlp_post_act.ordereddict.pt"));
    QCOMPARE(plain.tensors.size(), size_t(7));
    QCOMPARE(ordered.tensors.size(), plain.tensors.size());
    for (size_t k = 0; k < plain.tensors.size(); ++k) {
        QCOMPARE(ordered.tensors[k].first, plain.tensors[k].first);
        QVERIFY2(at::equal(ordered.tensors[k].second, plain.tensors[k].second), plain.tensors[k].first.c_str());
    }
    // The OrderedDict's _metadata attribute (set through BUILD) is not an entry.
    QVERIFY(ordered.extras.empty());

    const TorchValue root = loadTorchFile(dataFile("sae/mlp_post_act.ordereddict.pt"));
    QVERIFY(root.isDict());
    QCOMPARE(root.asDict().size(), size_t(7));
    QVERIFY(root.find("_metadata") == nullptr);
}

void TestTorchPickle::saeExtras()
{
    const TorchStateDict sd = loadTorchStateDict(dataFile("sae/mlp_post_act.relu.pt"));
    QCOMPARE(sd.extras.size(), size_t(1));
    QCOMPARE(sd.extras.at("activation").asString(), std::string("ReLU"));
    QCOMPARE(sd.find("stats_last_nonzero")->scalar_type(), at::kLong);
}

void TestTorchPickle::topkExtras()
{
    const TorchStateDict sd = loadTorchStateDict(dataFile("sae/resid_delta_attn.topk8.pt"));
    QCOMPARE(sd.tensors.size(), size_t(7));
    QCOMPARE(sd.extras.at("activation").asString(), std::string("TopK"));
    const TorchValue& state = sd.extras.at("activation_state_dict");
    QVERIFY(state.isDict());
    QVERIFY(state.find("k") && state.find("postact_fn"));
    QCOMPARE(state.find("k")->asInt(), int64_t(8));
    QCOMPARE(state.find("postact_fn")->asString(), std::string("ReLU"));
    QVERIFY_THROWS_EXCEPTION(InputError, state.find("k")->asString());

    const TorchValue root = loadTorchFile(dataFile("sae/resid_delta_attn.topk8.pt"));
    QVERIFY(root.find("pre_bias") && root.find("pre_bias")->isTensor());
}

void TestTorchPickle::tensorLayoutAndSharedStorage()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    // {"t": strided view of storage 0 at offset 1, "all": the whole of storage 0, "p": a Parameter}
    Pickle p;
    p.emptyDict().mark();
    p.str("t").tensor("FloatStorage", "0", 12, 1, {2, 3}, {1, 4});
    p.str("all").tensor("FloatStorage", "0", 12, 0, {12}, {1});
    p.str("p").global("torch._utils", "_rebuild_parameter").mark();
    p.tensor("FloatStorage", "0", 12, 0, {3}, {1}).newFalse().orderedDict().tuple().reduce();
    p.setItems().stop();
    const auto path = writeFile(dir, QStringLiteral("layout.pt"), qbytes(zipArchive(p.bytes(), {{"0", floats(12)}})));

    const TorchStateDict sd = loadTorchStateDict(path);
    QCOMPARE(sd.tensors.size(), size_t(3));
    const at::Tensor t = *sd.find("t");
    QCOMPARE(t.sizes().vec(), (std::vector<int64_t>{2, 3}));
    QCOMPARE(t.strides().vec(), (std::vector<int64_t>{1, 4}));
    QCOMPARE(t.storage_offset(), int64_t(1));
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            QCOMPARE(t[i][j].item<float>(), float(1 + i + 4 * j));
    const at::Tensor all = *sd.find("all");
    QVERIFY(t.storage().is_alias_of(all.storage()));
    QCOMPARE(static_cast<float*>(t.data_ptr()), static_cast<float*>(all.data_ptr()) + 1);
    QVERIFY(sd.find("p")->storage().is_alias_of(all.storage()));
}

void TestTorchPickle::dtypes_data()
{
    QTest::addColumn<QString>("storageClass");
    QTest::addColumn<at::ScalarType>("dtype");
    QTest::addColumn<QByteArray>("bytes");  // two elements
    QTest::addColumn<double>("first");
    QTest::addColumn<double>("second");

    QTest::newRow("float32") << "FloatStorage" << at::kFloat << qbytes(rawBytes<float>({1.5f, -2.f})) << 1.5 << -2.0;
    QTest::newRow("float16") << "HalfStorage" << at::kHalf << qbytes(rawBytes<uint16_t>({0x3E00, 0xC000})) << 1.5
                             << -2.0;
    QTest::newRow("bfloat16") << "BFloat16Storage" << at::kBFloat16 << qbytes(rawBytes<uint16_t>({0x3FC0, 0xC000}))
                              << 1.5 << -2.0;
    QTest::newRow("float64") << "DoubleStorage" << at::kDouble << qbytes(rawBytes<double>({1.5, -2.0})) << 1.5 << -2.0;
    QTest::newRow("int64") << "LongStorage" << at::kLong << qbytes(rawBytes<int64_t>({7, -3})) << 7.0 << -3.0;
    QTest::newRow("int32") << "IntStorage" << at::kInt << qbytes(rawBytes<int32_t>({7, -3})) << 7.0 << -3.0;
    QTest::newRow("int16") << "ShortStorage" << at::kShort << qbytes(rawBytes<int16_t>({7, -3})) << 7.0 << -3.0;
    QTest::newRow("int8") << "CharStorage" << at::kChar << qbytes(rawBytes<int8_t>({7, -3})) << 7.0 << -3.0;
    QTest::newRow("uint8") << "ByteStorage" << at::kByte << qbytes(rawBytes<uint8_t>({7, 253})) << 7.0 << 253.0;
    QTest::newRow("bool") << "BoolStorage" << at::kBool << qbytes(rawBytes<uint8_t>({1, 0})) << 1.0 << 0.0;
}

void TestTorchPickle::dtypes()
{
    QFETCH(QString, storageClass);
    QFETCH(at::ScalarType, dtype);
    QFETCH(QByteArray, bytes);
    QFETCH(double, first);
    QFETCH(double, second);

    QTemporaryDir dir;
    Pickle p;
    p.orderedDict().str("x").tensor(storageClass.toStdString(), "0", 2, 0, {2}, {1}).setItem().stop();
    const auto path =
        writeFile(dir, QStringLiteral("dtype.pt"), qbytes(zipArchive(p.bytes(), {{"0", bytes.toStdString()}})));
    const at::Tensor t = loadTorchStateDict(path).tensors.at(0).second;
    QCOMPARE(t.scalar_type(), dtype);
    const at::Tensor d = t.to(at::kDouble);
    QCOMPARE(d[0].item<double>(), first);
    QCOMPARE(d[1].item<double>(), second);
}

// One-entry dicts, nested dicts, int keys, repeated keys, OrderedDict with BUILD state: the shapes
// torch::pickle_load in libtorch 1.13 cannot read.
void TestTorchPickle::dictShapesLibtorchCannotRead()
{
    QTemporaryDir dir;
    Pickle p;
    p.orderedDict().put(0).mark();
    p.str("a").emptyDict().str("b").emptyDict().str("c").tensor("FloatStorage", "0", 4, 0, {4}, {1});
    p.setItem().setItem();
    p.str("n").integer(3);
    p.str("cfg").emptyDict().mark().str("lr").op('G').raw(std::string("\x3f\xe0\0\0\0\0\0\0", 8));
    p.str("w").tensor("FloatStorage", "0", 4, 2, {2}, {1}).str("dtype").global("torch", "bfloat16").setItems();
    p.integer(5).tensor("FloatStorage", "1", 1, 0, {}, {});
    p.str("n").integer(4); // a repeated key replaces the value in place, as in Python
    p.str("big").integer(int64_t(1) << 40).str("none").none().str("list").emptyList().str("s").append();
    p.setItems();
    p.emptyDict().str("_metadata").emptyDict().setItem().build().stop();
    const auto path = writeFile(dir, QStringLiteral("nested.pt"),
                                qbytes(zipArchive(p.bytes(), {{"0", floats(4)}, {"1", floats(1)}})));

    const TorchValue root = loadTorchFile(path);
    QVERIFY(root.isDict());
    QCOMPARE(root.asDict().size(), size_t(7));
    QCOMPARE(root.asDict()[1].first.asString(), std::string("n"));
    QCOMPARE(root.find("n")->asInt(), int64_t(4));

    const TorchStateDict sd = loadTorchStateDict(path);
    QCOMPARE(sd.tensors.size(), size_t(3));
    QCOMPARE(sd.tensors[0].first, std::string("a.b.c"));
    QCOMPARE(sd.tensors[1].first, std::string("cfg.w"));
    QCOMPARE(sd.tensors[2].first, std::string("5"));
    QCOMPARE(sd.tensors[1].second[1].item<float>(), 3.f);
    QCOMPARE(sd.tensors[2].second.dim(), int64_t(0));
    QVERIFY(sd.tensors[0].second.storage().is_alias_of(sd.tensors[1].second.storage()));

    QCOMPARE(sd.extras.size(), size_t(5)); // n, cfg (what is left of it), big, none, list
    QCOMPARE(sd.extras.at("n").asInt(), int64_t(4));
    QCOMPARE(sd.extras.at("big").asInt(), int64_t(1) << 40);
    QVERIFY(sd.extras.at("none").isNone());
    QCOMPARE(sd.extras.at("list").asList().size(), size_t(1));
    const TorchValue& cfg = sd.extras.at("cfg");
    QCOMPARE(cfg.asDict().size(), size_t(2));
    QCOMPARE(cfg.find("lr")->asDouble(), 0.5);
    QCOMPARE(cfg.find("dtype")->asString(), std::string("torch.bfloat16"));
}

void TestTorchPickle::rejectsBadFiles_data()
{
    QTest::addColumn<QByteArray>("file");
    QTest::addColumn<bool>("asStateDict");
    QTest::addColumn<QString>("expected"); // a fragment of the message

    const auto archive = [](const Pickle& p, const Records& r = {}) { return qbytes(zipArchive(p.bytes(), r)); };
    const std::string storage6 = floats(6);

    // Code execution attempts: refused when the global is named, before anything could call it.
    QTest::newRow("os.system")
        << archive(Pickle().global("os", "system").str("touch /tmp/pwned").op('\x85').reduce().stop()) << false
        << "refused global os.system";
    QTest::newRow("builtins.eval") << archive(Pickle().global("builtins", "eval").str("1+1").op('\x85').reduce().stop())
                                   << false << "builtins.eval";
    QTest::newRow("posix.system") << archive(Pickle().global("posix", "system").str("id").op('\x85').reduce().stop())
                                  << false << "posix.system";
    QTest::newRow("__builtin__.getattr")
        << archive(Pickle().global("__builtin__", "getattr").mark().orderedDict().str("x").tuple().reduce().stop())
        << false << "__builtin__.getattr";
    QTest::newRow("STACK_GLOBAL os.system")
        << archive(Pickle().str("os").str("system").op('\x93').str("id").op('\x85').reduce().stop()) << false
        << "refused global os.system";
    QTest::newRow("hidden in a tensor's hooks")
        << archive(Pickle()
                       .global("torch._utils", "_rebuild_tensor_v2")
                       .mark()
                       .mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(6)
                       .tuple().op('Q')
                       .integer(0).intTuple({6}).intTuple({1}).newFalse()
                       .global("subprocess", "Popen").str("id").op('\x85').reduce()
                       .tuple().reduce().stop(),
                   {{"0", storage6}})
        << false << "subprocess.Popen";
    QTest::newRow("NEWOBJ") << archive(Pickle().orderedDict().emptyTuple().op('\x81').stop()) << false
                            << "unsupported pickle opcode 0x81";
    QTest::newRow("INST") << archive(Pickle().mark().raw("ios\nsystem\n").stop()) << false
                          << "unsupported pickle opcode 0x69";
    QTest::newRow("calling a storage class")
        << archive(Pickle().global("torch", "FloatStorage").emptyTuple().reduce().stop()) << false
        << "calling torch.FloatStorage";

    // Storage and tensor bounds.
    QTest::newRow("storage without record")
        << archive(Pickle().emptyDict().str("w").tensor("FloatStorage", "7", 6, 0, {6}, {1}).setItem().stop(),
                   {{"0", storage6}})
        << false << "storage '7' has no record archive/data/7";
    QTest::newRow("size x stride exceeds storage")
        << archive(Pickle().emptyDict().str("w").tensor("FloatStorage", "0", 6, 0, {2, 4}, {4, 1}).setItem().stop(),
                   {{"0", storage6}})
        << false << "exceeds its storage";
    QTest::newRow("offset past storage")
        << archive(Pickle().emptyDict().str("w").tensor("FloatStorage", "0", 6, 5, {2}, {1}).setItem().stop(),
                   {{"0", storage6}})
        << false << "exceeds its storage";
    QTest::newRow("stride overflow")
        << archive(Pickle()
                       .emptyDict().str("w")
                       .tensor("FloatStorage", "0", 6, 0, {3, 3}, {int64_t(1) << 62, int64_t(1) << 62})
                       .setItem().stop(),
                   {{"0", storage6}})
        << false << "overflow";
    QTest::newRow("negative size")
        << archive(Pickle().emptyDict().str("w").tensor("FloatStorage", "0", 6, 0, {-2}, {1}).setItem().stop(),
                   {{"0", storage6}})
        << false << "negative";
    QTest::newRow("numel larger than record")
        << archive(Pickle().emptyDict().str("w").tensor("DoubleStorage", "0", 6, 0, {6}, {1}).setItem().stop(),
                   {{"0", storage6}})
        << false << "storage '0' declares 6 elements of 8 bytes but its record holds 24 bytes";
    QTest::newRow("size and stride ranks differ")
        << archive(Pickle().emptyDict().str("w").tensor("FloatStorage", "0", 6, 0, {2, 3}, {1}).setItem().stop(),
                   {{"0", storage6}})
        << false << "differ in length";

    // Malformed pickles.
    QTest::newRow("truncated pickle (no STOP)")
        << archive(Pickle().emptyDict().str("a").integer(1).setItem()) << false << "no STOP";
    QTest::newRow("string longer than data")
        << archive(Pickle().raw(std::string("X\xff\xff\xff\x7f" "abc", 8))) << false << "truncated pickle";
    QTest::newRow("BINUNICODE8 length 2^62")
        << archive(Pickle().raw(std::string("\x8d\0\0\0\0\0\0\0\x40", 9)).stop()) << false << "truncated pickle";
    QTest::newRow("memo entry never stored") << archive(Pickle().get(9).stop()) << false << "memo entry 9";
    QTest::newRow("stack underflow") << archive(Pickle().reduce().stop()) << false << "underflow";
    QTest::newRow("setitem on a list")
        << archive(Pickle().emptyList().str("a").integer(1).setItem().stop()) << false << "not a dict";
    QTest::newRow("unhashable key")
        << archive(Pickle().emptyDict().emptyList().integer(1).setItem().stop()) << false << "dict key";
    QTest::newRow("bare global as value")
        << archive(Pickle().global("collections", "OrderedDict").stop()) << false << "bare global";
    QTest::newRow("integer wider than 64 bits")
        << archive(Pickle().raw(std::string("\x8a\x09" "123456789", 11)).stop()) << false << "wider than 64 bits";
    QTest::newRow("future protocol") << archive(Pickle().raw("\x80\x09").none().stop()) << false << "protocol 9";

    // Resource bombs.
    QTest::newRow("MARK bomb") << archive(Pickle().raw(std::string(100000, '(')).stop()) << false << "MARK";
    {
        Pickle p;
        p.raw(std::string(100000, ']')).raw(std::string(99999, 'a')).stop();
        QTest::newRow("nested-list bomb") << archive(p) << false << "nested deeper";
    }
    QTest::newRow("list holding itself") << archive(Pickle().emptyList().put(0).get(0).append().stop()) << false
                                         << "nested deeper";
    {
        // Each level is a list holding the previous level twice: 2^60 values from a few hundred bytes.
        Pickle p;
        p.emptyList().put(0);
        for (int level = 1; level < 60; ++level)
            p.emptyList().get(uint8_t(level - 1)).append().get(uint8_t(level - 1)).append().put(uint8_t(level));
        p.stop();
        QTest::newRow("shared-subtree bomb") << archive(p) << false << "too many values";
    }

    // Wrong kinds of file.
    QTest::newRow("root is a list")
        << archive(Pickle().emptyList().tensor("FloatStorage", "0", 6, 0, {6}, {1}).append().stop(),
                   {{"0", storage6}})
        << true << "root object is a list";
    QTest::newRow("root is a string") << archive(Pickle().str("hello").stop()) << true << "root object is a str";
    QTest::newRow("non-zip file") << QByteArray("just some text\n") << false << "not a PyTorch checkpoint";
    QTest::newRow("legacy torch.save")
        << QByteArray("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15) << false
        << "legacy torch.save format not supported; re-save with torch>=1.6";
    QTest::newRow("zero-length file") << QByteArray() << false << "empty file";
    QTest::newRow("zip without data.pkl") << qbytes([] {
        std::string out;
        caffe2::serialize::PyTorchStreamWriter w([&](const void* d, size_t n) {
            out.append(static_cast<const char*>(d), n);
            return n;
        });
        w.writeRecord("other.txt", "x", 1);
        w.writeEndOfFile();
        return out;
    }()) << false << "no <folder>/data.pkl";
    {
        const QByteArray whole = archive(Pickle().emptyDict().stop());
        QTest::newRow("truncated zip") << whole.left(whole.size() / 2) << false << "not a zip archive";
        QTest::newRow("zip header only") << whole.left(4) << false << "not a zip archive";
    }
    {
        const QByteArray ok = archive(Pickle().emptyDict().stop());
        QTest::newRow("version record not a number") << patchRecord(ok, "archive/version", "x") << false
                                                     << "version record is malformed";
        QTest::newRow("version record 0") << patchRecord(ok, "archive/version", "0") << false
                                          << "format version 0 is not supported";
        QTest::newRow("big-endian archive") << patchRecord(ok, "archive/byteorder", "bigxxx") << false
                                            << "only little-endian";
    }
    {
        // A central directory that claims data.pkl holds ~2 GB: must be caught before anything allocates it.
        QByteArray lie = archive(Pickle().emptyDict().stop());
        const QByteArray name = "archive/data.pkl";
        qsizetype at = -1;
        for (qsizetype from = 0; (from = lie.indexOf("PK\x01\x02", from)) >= 0; ++from) {
            if (lie.mid(from + 46, name.size()) == name)
                at = from;
        }
        QVERIFY(at >= 0);
        for (int field : {20, 24})
            std::memcpy(lie.data() + at + field, "\xf0\xff\xff\x7f", 4);
        QTest::newRow("record size lie") << lie << false << "extends past the end of the file";
    }
}

void TestTorchPickle::rejectsBadFiles()
{
    QFETCH(QByteArray, file);
    QFETCH(bool, asStateDict);
    QFETCH(QString, expected);

    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const auto path = writeFile(dir, QStringLiteral("bad-input.pt"), file);
    try {
        if (asStateDict)
            loadTorchStateDict(path);
        else
            loadTorchFile(path);
        QFAIL("no InputError");
    } catch (const InputError& e) {
        const QString message = QString::fromStdString(e.what());
        QVERIFY2(message.contains(QLatin1String("bad-input.pt")), qPrintable(message));
        QVERIFY2(message.contains(expected), qPrintable(message));
        QVERIFY2(!message.contains(QLatin1Char('\n')), qPrintable(message));
    }
}

void TestTorchPickle::missingFile()
{
    QVERIFY_THROWS_EXCEPTION(InputError, loadTorchFile(dataFile("sae/no-such-file.pt")));
    QVERIFY_THROWS_EXCEPTION(InputError, loadTorchFile(dataFile("sae")));
}

void TestTorchPickle::randomCorruptionGivesInputError_data()
{
    QTest::addColumn<QString>("mode");
    QTest::newRow("file bytes") << "file";
    QTest::newRow("pickle bytes") << "pickle";
}

// Seeded mutations of a real checkpoint: every outcome must be a load or an InputError, never another
// exception or a crash. "file" damages the zip itself (CRCs, headers, truncation); "pickle" rebuilds a
// valid zip around a damaged data.pkl so the interpreter sees the damage.
void TestTorchPickle::randomCorruptionGivesInputError()
{
    QFETCH(QString, mode);
    const auto source = dataFile("sae/resid_delta_attn.topk8.pt");
    std::ifstream in(source, std::ios::binary);
    const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

    std::string pickle;
    Records storages;
    {
        caffe2::serialize::PyTorchStreamReader reader(source.string());
        for (const std::string& name : reader.getAllRecords()) {
            auto [data, size] = reader.getRecord(name);
            std::string bytes(static_cast<const char*>(data.get()), size);
            if (name == "data.pkl")
                pickle = bytes;
            else if (name.rfind("data/", 0) == 0)
                storages.emplace(name.substr(5), bytes);
        }
    }
    QVERIFY(!pickle.empty());
    QCOMPARE(storages.size(), size_t(7));

    QTemporaryDir dir;
    std::mt19937 rng(mode == QLatin1String("file") ? 1234 : 5678);
    const auto below = [&](size_t n) { return size_t(std::uniform_int_distribution<size_t>(0, n - 1)(rng)); };
    int loaded = 0, refused = 0;
    for (int round = 0; round < 300; ++round) {
        std::string bytes = mode == QLatin1String("file") ? original : pickle;
        switch (round % 4) {
        case 0: // flip a few bytes
            for (int k = 0, n = 1 + int(below(4)); k < n; ++k)
                bytes[below(bytes.size())] ^= char(1 + below(255));
            break;
        case 1: // truncate
            bytes.resize(below(bytes.size()));
            break;
        case 2: { // cut out a span
            const size_t at = below(bytes.size());
            bytes.erase(at, 1 + below(std::min<size_t>(64, bytes.size() - at)));
            break;
        }
        default: // overwrite with small integers, which are sizes and opcodes alike
            bytes[below(bytes.size())] = char(below(3) == 0 ? 0xff : below(0x96));
            break;
        }
        if (mode == QLatin1String("pickle"))
            bytes = zipArchive(bytes, storages);
        const auto path = writeFile(dir, QStringLiteral("fuzz-%1.pt").arg(round), qbytes(bytes));
        try {
            loadTorchFile(path);
            ++loaded;
        } catch (const InputError& e) {
            ++refused;
            QVERIFY2(std::string(e.what()).find("fuzz-") != std::string::npos, e.what());
        }
    }
    qInfo("%d loaded, %d refused", loaded, refused);
    QVERIFY(refused > 0);
}

QTEST_GUILESS_MAIN(TestTorchPickle)
#include "tst_torch_pickle.moc"
