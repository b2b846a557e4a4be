#include "core/model/random_model.h"

#include "core/io/safetensors.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <fstream>

namespace cs {

void writeRandomHfModel(const std::filesystem::path& dir, const RandomModelOptions& options)
{
    const Gpt2Config& c = options.config;
    if (c.nLayer < 1 || c.nHead < 1 || c.dModel < 1 || c.dModel % c.nHead != 0 || c.dMlp < 1 || c.nCtx < 1 ||
        c.vocabSize < 1)
        throw InputError("random model: inconsistent shape (n_embd must be a positive multiple of n_head)");

    std::filesystem::create_directories(dir);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    auto normal = [&](std::vector<std::int64_t> shape, double std) {
        return at::normal(0.0, std, shape, gen);
    };
    // GPT-2's initialization, with layer-norm gains and all biases moved away from 1 and 0 so that a
    // loader that drops one of them produces visibly different outputs.
    const double projStd = 0.02 / std::sqrt(2.0 * c.nLayer);
    const std::int64_t d = c.dModel, f = c.dMlp;
    const std::string prefix = options.prefixTransformer ? "transformer." : "";
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    auto add = [&](const std::string& key, at::Tensor t) { tensors.emplace_back(prefix + key, std::move(t)); };
    auto gain = [&] { return 1.0 + normal({d}, 0.1); };

    const at::Tensor wte = normal({c.vocabSize, d}, 0.02);
    add("wte.weight", wte);
    add("wpe.weight", normal({c.nCtx, d}, 0.01));
    for (int i = 0; i < c.nLayer; ++i) {
        const std::string p = "h." + std::to_string(i) + ".";
        add(p + "ln_1.weight", gain());
        add(p + "ln_1.bias", normal({d}, 0.02));
        add(p + "attn.c_attn.weight", normal({d, 3 * d}, 0.02));
        add(p + "attn.c_attn.bias", normal({3 * d}, 0.02));
        add(p + "attn.c_proj.weight", normal({d, d}, projStd));
        add(p + "attn.c_proj.bias", normal({d}, 0.02));
        add(p + "ln_2.weight", gain());
        add(p + "ln_2.bias", normal({d}, 0.02));
        add(p + "mlp.c_fc.weight", normal({d, f}, 0.02));
        add(p + "mlp.c_fc.bias", normal({f}, 0.02));
        add(p + "mlp.c_proj.weight", normal({f, d}, projStd));
        add(p + "mlp.c_proj.bias", normal({d}, 0.02));
    }
    add("ln_f.weight", gain());
    add("ln_f.bias", normal({d}, 0.02));
    if (options.writeLmHead || !c.tieWordEmbeddings)
        tensors.emplace_back("lm_head.weight", c.tieWordEmbeddings ? wte : normal({c.vocabSize, d}, 0.02));

    const at::ScalarType storage = options.dtype == StorageDType::F16    ? at::kHalf
                                   : options.dtype == StorageDType::BF16 ? at::kBFloat16
                                                                         : at::kFloat;
    for (auto& [key, t] : tensors)
        t = t.to(storage);
    writeSafetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});

    writeFileAtomically(dir / "config.json", c.toJson().dump(2) + '\n');

    if (!options.tokenizerDir.empty()) {
        const auto copyOpts = std::filesystem::copy_options::overwrite_existing;
        bool copied = false;
        for (const char* name : {"vocab.json", "merges.txt", "tokenizer.json"}) {
            const auto src = options.tokenizerDir / name;
            if (std::filesystem::exists(src)) {
                std::filesystem::copy_file(src, dir / name, copyOpts);
                copied = true;
            }
        }
        if (!copied)
            throwInputError(options.tokenizerDir, "no vocab.json, merges.txt or tokenizer.json to copy");
    }
}

} // namespace cs
