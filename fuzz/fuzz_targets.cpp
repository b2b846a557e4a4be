#include "fuzz/fuzz_targets.h"

#include "core/analysis/intervention.h"
#include "core/analysis/node.h"
#include "core/io/safetensors.h"
#include "core/io/torch_pickle.h"
#include "core/model/gpt2_config.h"
#include "core/model/gpt2_model.h"
#include "core/model/sae_set.h"
#include "core/sae/sparse_autoencoder.h"
#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace cs::fuzz {

namespace fs = std::filesystem;

namespace {

std::string_view bytesOf(const std::uint8_t* data, std::size_t size)
{
    return {reinterpret_cast<const char*>(data), size};
}

[[noreturn]] void bug(const std::string& what) { throw std::logic_error("fuzz: " + what); }

// A private scratch folder (in memory when /dev/shm exists: targets that need a path write each input).
const fs::path& scratch()
{
    static const fs::path dir = [] {
        std::error_code ec;
        const fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("circuitscope-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(d);
        return d;
    }();
    return dir;
}

// Plain write, not the atomic writer: fsync on every input would make fuzzing crawl.
void writeScratch(const fs::path& file, std::string_view bytes)
{
    std::FILE* f = std::fopen(file.c_str(), "wb");
    if (!f)
        throw std::runtime_error("fuzz: cannot write " + file.string());
    if (!bytes.empty())
        std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
}

template <class F>
void expectInputErrorOrSuccess(F&& f)
{
    try {
        f();
    } catch (const InputError&) {
    }
}

// A small GPT-2 shape the config and autoencoder targets check files against.
Gpt2Config smallConfig()
{
    Gpt2Config c;
    c.nLayer = 2;
    c.nHead = 2;
    c.dModel = 8;
    c.dMlp = 32;
    c.nCtx = 16;
    c.vocabSize = 300;
    return c;
}

// ---------------------------------------------------------------------------------------------------

void runSafetensors(const std::uint8_t* data, std::size_t size)
{
    const fs::path file = scratch() / "model.safetensors";
    writeScratch(file, bytesOf(data, size));
    expectInputErrorOrSuccess([&] {
        const SafetensorsFile st = SafetensorsFile::open(file);
        for (const auto& e : st.entries()) {
            const at::Tensor t = st.toTensor(e);
            if (static_cast<std::uint64_t>(t.numel()) * t.element_size() != e.end - e.begin)
                bug("tensor '" + e.name + "' does not cover its data span");
            if (t.numel() > 0 && t.is_floating_point())
                (void)st.toFloat32(e).sum().item<double>(); // reads every byte of the span
        }
    });
}

void runTorchPickle(const std::uint8_t* data, std::size_t size)
{
    const fs::path file = scratch() / "checkpoint.pt";
    writeScratch(file, bytesOf(data, size));
    expectInputErrorOrSuccess([&] {
        const TorchStateDict sd = loadTorchStateDict(file);
        for (const auto& [name, t] : sd.tensors)
            if (t.numel() > 0 && t.is_floating_point())
                (void)t.sum().item<double>();
    });
    expectInputErrorOrSuccess([&] { (void)loadOpenAiSae(file); }); // the SAE .pt reading of the same bytes
}

void runHfConfig(const std::uint8_t* data, std::size_t size)
{
    // The weights a config is checked against: the small shape's full state dict.
    static const std::vector<std::pair<std::string, at::Tensor>> tensors = [] {
        const Gpt2Config c = smallConfig();
        const std::int64_t d = c.dModel, f = c.dMlp;
        std::vector<std::pair<std::string, at::Tensor>> t = {
            {"wte.weight", at::zeros({c.vocabSize, d})}, {"wpe.weight", at::zeros({c.nCtx, d})},
            {"ln_f.weight", at::ones({d})},              {"ln_f.bias", at::zeros({d})}};
        for (int i = 0; i < c.nLayer; ++i) {
            const std::string p = "h." + std::to_string(i) + ".";
            for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
                     {"ln_1.weight", {d}},       {"ln_1.bias", {d}},           {"attn.c_attn.weight", {d, 3 * d}},
                     {"attn.c_attn.bias", {3 * d}}, {"attn.c_proj.weight", {d, d}}, {"attn.c_proj.bias", {d}},
                     {"ln_2.weight", {d}},       {"ln_2.bias", {d}},           {"mlp.c_fc.weight", {d, f}},
                     {"mlp.c_fc.bias", {f}},     {"mlp.c_proj.weight", {f, d}}, {"mlp.c_proj.bias", {d}}})
                t.emplace_back(p + name, at::zeros(shape));
        }
        return t;
    }();
    expectInputErrorOrSuccess([&] {
        const Gpt2Config c = Gpt2Config::fromJson(parseJsonText(bytesOf(data, size), "config.json"), "config.json");
        std::vector<std::string> warnings;
        const Gpt2Weights w = weightsFromStateDict(tensors, c, "model.safetensors", &warnings);
        if (static_cast<int>(w.layers.size()) != c.nLayer || w.tokenEmbedding.size(1) != c.dModel)
            bug("weights accepted for a config they do not match");
    });
}

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes for
// the code points 256, 257, ... in byte order.
std::string byteLevelToken(unsigned byte)
{
    const auto printable = [](unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); };
    unsigned cp = byte;
    if (!printable(byte)) {
        cp = 256;
        for (unsigned b = 0; b < byte; ++b)
            cp += !printable(b);
    }
    std::string out;
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return out;
}

// A 256-byte vocabulary plus a few merged tokens, as vocab.json, for the merges.txt input.
const std::string& smallVocabJson()
{
    static const std::string text = [] {
        nlohmann::json v = nlohmann::json::object();
        for (unsigned b = 0; b < 256; ++b)
            v[byteLevelToken(b)] = b;
        int id = 256;
        for (const char* t : {"\xc4\xa0t", "he", "\xc4\xa0the", "in", "er"})
            v[t] = id++;
        v["<|endoftext|>"] = id;
        return v.dump();
    }();
    return text;
}

const Gpt2Tokenizer& gpt2Tokenizer()
{
    static const Gpt2Tokenizer tok = Gpt2Tokenizer::fromDirectory(fs::path(FUZZ_DATA_DIR) / "gpt2-tokenizer");
    return tok;
}

// The first byte chooses what the rest is: vocab.json, merges.txt, tokenizer.json, or text to encode.
void runTokenizer(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
        return;
    const std::string_view payload = bytesOf(data + 1, size - 1);
    const fs::path vocab = scratch() / "vocab.json", merges = scratch() / "merges.txt", json = scratch() / "tokenizer.json";
    switch (data[0] % 4) {
    case 0:
        writeScratch(vocab, payload);
        writeScratch(merges, "#version: 0.2\n\xc4\xa0 t\nh e\n");
        expectInputErrorOrSuccess([&] { (void)Gpt2Tokenizer::fromFiles(vocab, merges).encode("the hint"); });
        return;
    case 1:
        writeScratch(vocab, smallVocabJson());
        writeScratch(merges, payload);
        expectInputErrorOrSuccess([&] { (void)Gpt2Tokenizer::fromFiles(vocab, merges).encode(" the inner"); });
        return;
    case 2:
        writeScratch(json, payload);
        expectInputErrorOrSuccess([&] { (void)Gpt2Tokenizer::fromTokenizerJson(json).encode("the hint"); });
        return;
    default: {
        const Gpt2Tokenizer& tok = gpt2Tokenizer();
        const std::vector<int> ids = tok.encode(payload);
        for (int id : ids)
            if (id < 0 || id >= tok.vocabSize())
                bug("encode produced id " + std::to_string(id));
        const std::string back = tok.decode(ids);
        bool replaced = false;
        const std::string clean = sanitizeUtf8(payload, &replaced);
        if (!replaced && back != payload)
            bug("decode(encode(s)) != s for valid UTF-8");
        if (replaced && back != clean)
            bug("decode(encode(s)) != sanitizeUtf8(s) for invalid UTF-8");
        return;
    }
    }
}

void runSaeLens(const std::uint8_t* data, std::size_t size)
{
    const fs::path dir = scratch() / "saelens";
    static const bool weightsWritten = [&] {
        fs::create_directories(dir);
        // d_in 8 (the small model's residual width), 16 latents.
        writeSafetensors(dir / "sae_weights.safetensors",
                         {{"W_enc", at::ones({8, 16})}, {"W_dec", at::ones({16, 8})}, {"b_enc", at::zeros({16})},
                          {"b_dec", at::zeros({8})}, {"threshold", at::zeros({16})}},
                         {});
        return true;
    }();
    (void)weightsWritten;
    writeScratch(dir / "cfg.json", bytesOf(data, size));
    expectInputErrorOrSuccess([&] {
        auto sae = std::make_shared<const SparseAutoencoder>(loadSaeLensSae(dir));
        const int layer = sae->declaredLayer.value_or(0);
        for (SaeRole role : {SaeRole::Resid, SaeRole::Mlp, SaeRole::Attn})
            expectInputErrorOrSuccess([&] { (void)bindSae(sae, smallConfig(), role, layer); });
        const SaeEncoding e = encodeSae(*sae, at::ones({2, sae->inputWidth()}));
        if (e.latents.size(1) != sae->latentCount())
            bug("encoding has the wrong latent count");
    });
}

void runSession(const std::uint8_t* data, std::size_t size)
{
    expectInputErrorOrSuccess([&] {
        const fs::path file = "/work/sessions/fuzz.circuitscope.json";
        Session s = sessionFromJson(parseJsonText(bytesOf(data, size), file), file);
        resolveRelativePaths(s, file);
        // What was read is written and read back unchanged (sessions round-trip through the window).
        const Session again = sessionFromJson(nlohmann::json::parse(sessionToJson(s).dump()), file);
        if (sessionToJson(again) != sessionToJson(s))
            bug("a session does not survive save + load");
    });
}

// Each line: a node name, an ablation spec and a trace ("NODE [through [downstream [through]]]").
void runSpecs(const std::uint8_t* data, std::size_t size)
{
    const std::string_view text = bytesOf(data, size);
    for (std::size_t start = 0; start <= text.size();) {
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos)
            end = text.size();
        const std::string_view line = text.substr(start, end - start);
        start = end + 1;
        expectInputErrorOrSuccess([&] {
            const NodeRef n = NodeRef::parse(line);
            if (!(NodeRef::parse(n.name()) == n))
                bug("node name does not round-trip: " + n.name());
        });
        expectInputErrorOrSuccess([&] {
            const AblationSpec a = AblationSpec::parse(line);
            if (!(AblationSpec::parse(a.spec()) == a))
                bug("ablation spec does not round-trip: " + a.spec());
        });
        expectInputErrorOrSuccess([&] {
            std::vector<std::string_view> parts;
            for (std::size_t p = 0; p <= line.size();) {
                std::size_t q = line.find(' ', p);
                if (q == std::string_view::npos)
                    q = line.size();
                parts.push_back(line.substr(p, q - p));
                p = q + 1;
            }
            TraceSpec t;
            t.node = NodeRef::parse(parts[0]);
            const auto through = [](std::string_view s) {
                const auto v = traceThroughFromName(s);
                if (!v)
                    throw InputError("not a trace direction");
                return *v;
            };
            if (parts.size() > 1)
                t.through = through(parts[1]);
            if (parts.size() > 2)
                t.downstream = NodeRef::parse(parts[2]);
            if (parts.size() > 3)
                t.downstreamThrough = through(parts[3]);
            t.validate();
        });
        if (end == text.size())
            break;
    }
}

} // namespace

const std::vector<Target>& targets()
{
    static const std::vector<Target> all = {
        {"safetensors", runSafetensors}, {"torch_pickle", runTorchPickle}, {"hf_config", runHfConfig},
        {"tokenizer", runTokenizer},     {"saelens", runSaeLens},          {"session", runSession},
        {"specs", runSpecs},
    };
    return all;
}

const Target* findTarget(std::string_view name)
{
    for (const Target& t : targets())
        if (name == t.name)
            return &t;
    return nullptr;
}

} // namespace cs::fuzz
