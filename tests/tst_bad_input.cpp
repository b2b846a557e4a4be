// Bad input never crashes and always gives one clear line naming the file or field (product.md §7).
// One data row per malformed case; the suite also runs under ASan/UBSan (-DCIRCUITSCOPE_SANITIZE=ON).

#include "core/io/safetensors.h"
#include "core/model/forward.h"
#include "core/model/gpt2_model.h"
#include "core/model/prompt.h"
#include "core/util/errors.h"
#include "test_support.h"

#include <caffe2/serialize/inline_container.h>

#include <QTemporaryDir>
#include <QTest>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

using namespace cs;
namespace fs = std::filesystem;

namespace {

void writeBytes(const fs::path& p, const std::string& bytes)
{
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(std::uint64_t v)
{
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i)
        s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

// A safetensors file with the given header text and `dataBytes` zero bytes of data.
std::string safetensorsBytes(const std::string& header, std::size_t dataBytes)
{
    return le64(header.size()) + header + std::string(dataBytes, '\0');
}

// A copy of the tiny fixture model whose state dict and config.json have been edited.
fs::path editedModel(const fs::path& dir,
                     const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& editTensors,
                     const std::function<void(nlohmann::json&)>& editConfig)
{
    const fs::path src = test::dataDir() / "tiny-gpt2";
    fs::create_directories(dir);
    for (const char* f : {"vocab.json", "merges.txt"})
        fs::copy_file(src / f, dir / f);
    std::ifstream in(src / "config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    if (editConfig)
        editConfig(config);
    std::ofstream(dir / "config.json") << config.dump(2);
    const auto st = SafetensorsFile::open(src / "model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& e : st.entries())
        tensors.emplace_back(e.name, st.toFloat32(e).clone());
    if (editTensors)
        editTensors(tensors);
    writeSafetensors(dir / "model.safetensors", tensors);
    return dir;
}

// pytorch_model.bin whose pickle calls os.system — must be refused without executing anything.
fs::path maliciousBin(const fs::path& dir)
{
    fs::create_directories(dir);
    const fs::path src = test::dataDir() / "tiny-gpt2";
    for (const char* f : {"config.json", "vocab.json", "merges.txt"})
        fs::copy_file(src / f, dir / f);
    const std::string pickle = std::string("\x80\x02", 2) + "cos\nsystem\n" + "X\x05\x00\x00\x00touch" +
                               std::string("\x85", 1) + "R.";
    caffe2::serialize::PyTorchStreamWriter writer((dir / "pytorch_model.bin").string());
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeEndOfFile();
    return dir;
}

} // namespace

class TestBadInput : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;

    fs::path tmp(const char* name) { return fs::path(m_tmp.path().toStdString()) / name; }

private Q_SLOTS:
    void badFilesGiveOneClearLine_data()
    {
        QTest::addColumn<QString>("scenario");
        QTest::addColumn<QString>("expectedFile");
        QTest::addColumn<QString>("expectedText");
        const auto row = [](const char* name, const char* file, const char* text) {
            QTest::newRow(name) << QString::fromLatin1(name) << QString::fromLatin1(file) << QString::fromLatin1(text);
        };
        row("truncated safetensors", "bad.safetensors", "truncated");
        row("header length past the end", "bad.safetensors", "runs past the end");
        row("header not JSON", "bad.safetensors", "not valid JSON");
        row("header not an object", "bad.safetensors", "not a JSON object");
        row("unknown dtype", "bad.safetensors", "unknown dtype \"F7\"");
        row("span outside the file", "bad.safetensors", "outside the data area");
        row("overlapping spans", "bad.safetensors", "overlapping");
        row("shape disagrees with byte span", "bad.safetensors", "data span is 12 bytes");
        row("negative dimension", "bad.safetensors", "negative");
        row("metadata not strings", "bad.safetensors", "__metadata__");
        row("missing tensor", "model.safetensors", "missing tensor 'h.1.mlp.c_fc.bias'");
        row("tensor shape disagrees with config", "model.safetensors", "h.0.mlp.c_fc.weight");
        row("config without n_layer", "config.json", "'n_layer'");
        row("config n_embd not divisible by n_head", "config.json", "not divisible");
        row("config not JSON", "config.json", "not valid JSON");
        row("unsupported activation", "config.json", "activation_function");
        row("pickle naming a forbidden global", "pytorch_model.bin", "os");
        row("not a model directory", "empty-dir", "config.json");
        row("no weights file", "no-weights", "model.safetensors");
        row("missing tokenizer", "no-tokenizer", "vocab.json");
    }

    void badFilesGiveOneClearLine()
    {
        QFETCH(QString, scenario);
        QFETCH(QString, expectedFile);
        QFETCH(QString, expectedText);
        const std::string s = scenario.toStdString();
        const fs::path dir = tmp(("case-" + std::to_string(qHash(scenario))).c_str());
        fs::create_directories(dir);
        const fs::path bad = dir / "bad.safetensors";
        std::function<void()> action;

        const auto openBad = [&](const std::string& bytes) {
            writeBytes(bad, bytes);
            action = [bad] { SafetensorsFile::open(bad); };
        };
        if (s == "truncated safetensors")
            openBad("\x05\x00\x00");
        else if (s == "header length past the end")
            openBad(le64(1000) + "{}");
        else if (s == "header not JSON")
            openBad(safetensorsBytes("{not json", 0));
        else if (s == "header not an object")
            openBad(safetensorsBytes("[1,2]", 0));
        else if (s == "unknown dtype")
            openBad(safetensorsBytes(R"({"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", 8));
        else if (s == "span outside the file")
            openBad(safetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8));
        else if (s == "overlapping spans")
            openBad(safetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
        else if (s == "shape disagrees with byte span")
            openBad(safetensorsBytes(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12));
        else if (s == "negative dimension")
            openBad(safetensorsBytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8));
        else if (s == "metadata not strings")
            openBad(safetensorsBytes(R"({"__metadata__":{"format":3}})", 0));
        else if (s == "missing tensor") {
            const fs::path m = editedModel(dir / "m", [](auto& t) {
                std::erase_if(t, [](const auto& p) { return p.first == "transformer.h.1.mlp.c_fc.bias"; });
            }, nullptr);
            action = [m] { loadHfGpt2(m); };
        } else if (s == "tensor shape disagrees with config") {
            const fs::path m = editedModel(dir / "m", nullptr, [](nlohmann::json& c) { c["n_inner"] = 64; });
            action = [m] { loadHfGpt2(m); };
        } else if (s == "config without n_layer") {
            const fs::path m = editedModel(dir / "m", nullptr, [](nlohmann::json& c) { c.erase("n_layer"); });
            action = [m] { loadHfGpt2(m); };
        } else if (s == "config n_embd not divisible by n_head") {
            const fs::path m = editedModel(dir / "m", nullptr, [](nlohmann::json& c) { c["n_head"] = 5; });
            action = [m] { loadHfGpt2(m); };
        } else if (s == "config not JSON") {
            const fs::path m = editedModel(dir / "m", nullptr, nullptr);
            writeBytes(m / "config.json", "{\"n_layer\": 2,");
            action = [m] { loadHfGpt2(m); };
        } else if (s == "unsupported activation") {
            const fs::path m = editedModel(dir / "m", nullptr, [](nlohmann::json& c) { c["activation_function"] = "swish"; });
            action = [m] { loadHfGpt2(m); };
        } else if (s == "pickle naming a forbidden global") {
            const fs::path m = maliciousBin(dir / "m");
            action = [m] { loadHfGpt2(m); };
        } else if (s == "not a model directory") {
            const fs::path m = dir / "empty-dir";
            fs::create_directories(m);
            action = [m] { loadHfGpt2(m); };
        } else if (s == "no weights file") {
            const fs::path m = editedModel(dir / "no-weights", nullptr, nullptr);
            fs::remove(m / "model.safetensors");
            action = [m] { loadHfGpt2(m); };
        } else if (s == "missing tokenizer") {
            const fs::path m = editedModel(dir / "no-tokenizer", nullptr, nullptr);
            fs::remove(m / "vocab.json");
            fs::remove(m / "merges.txt");
            action = [m] { loadHfGpt2(m); };
        } else {
            QFAIL("unknown scenario");
        }

        try {
            action();
            QFAIL("no error for bad input");
        } catch (const InputError& e) {
            const QString message = QString::fromUtf8(e.what());
            QVERIFY2(message.contains(expectedFile), qPrintable(message));
            QVERIFY2(message.contains(expectedText), qPrintable(message));
            QVERIFY2(!message.contains(u'\n'), qPrintable(message));
        }
        QVERIFY(!fs::exists(dir / "m" / "touch")); // the malicious pickle ran nothing
    }

    void badPromptsGiveOneClearLine_data()
    {
        QTest::addColumn<QString>("prompt");
        QTest::addColumn<QString>("expectedText");
        QTest::newRow("empty prompt") << QString() << QStringLiteral("prompt: empty");
        QTest::newRow("prompt longer than n_positions") << QStringLiteral(" a").repeated(65)
                                                        << QStringLiteral("prompt: 65 tokens, longer than the model's context of 64");
    }
    void badPromptsGiveOneClearLine()
    {
        QFETCH(QString, prompt);
        QFETCH(QString, expectedText);
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        try {
            tokenizePrompt(*model, prompt.toStdString());
            QFAIL("no error for a bad prompt");
        } catch (const InputError& e) {
            QVERIFY2(QString::fromUtf8(e.what()).startsWith(expectedText), e.what());
        }
    }

    void overlongPromptCanBeTruncated()
    {
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        const auto p = tokenizePrompt(*model, QStringLiteral(" a").repeated(70).toStdString() + " end", OverlongPrompt::KeepLast);
        QCOMPARE(p.ids.size(), std::size_t(64));
        QCOMPARE(p.tokens.back(), std::string(" end"));
        QCOMPARE(p.warnings.size(), std::size_t(1));
        QVERIFY(runForward(*model, p.ids).logits.size(0) == 64);
    }

    void invalidUtf8IsReplacedWithAWarning()
    {
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        const auto p = tokenizePrompt(*model, std::string("caf\xc3 ok"));
        QCOMPARE(p.warnings.size(), std::size_t(1));
        QVERIFY(model->tokenizer->decode(p.ids) == "caf\xEF\xBF\xBD ok");
    }

    void multiTokenTargetIsRefusedWithItsTokenization()
    {
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        QCOMPARE(singleTokenId(*model, " Mary", "target"), 5335);
        try {
            singleTokenId(*model, " Mary and", "target");
            QFAIL("multi-token target accepted");
        } catch (const InputError& e) {
            QCOMPARE(QString::fromUtf8(e.what()), QStringLiteral("target: ' Mary and' is 2 tokens [' Mary', ' and']; a single token is needed"));
        }
    }

    void tokenIdsOutsideTheModelAreRefused()
    {
        const auto model = loadHfGpt2(test::dataDir() / "tiny-gpt2");
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, runForward(*model, {50257}));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, runForward(*model, {}));
    }
};

QTEST_GUILESS_MAIN(TestBadInput)
#include "tst_bad_input.moc"
