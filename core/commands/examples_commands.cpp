#include "core/commands/examples_commands.h"

#include "core/util/errors.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ostream>

namespace cs {

nlohmann::json exampleJson(const Example& e, const Gpt2Tokenizer& tokenizer)
{
    nlohmann::json tokens = nlohmann::json::array();
    for (int id : e.tokenIds)
        tokens.push_back(tokenizer.tokenString(id));
    return {{"doc", e.doc},           {"position", e.position},       {"max", e.max},
            {"tokens", tokens},       {"activations", e.activations}, {"max_index", e.maxIndex}};
}

nlohmann::json nodeExamplesJson(const NodeExamples& x, const Gpt2Tokenizer& tokenizer)
{
    nlohmann::json top = nlohmann::json::array();
    for (const auto& e : x.top)
        top.push_back(exampleJson(e, tokenizer));
    nlohmann::json bands = nlohmann::json::array();
    for (const auto& b : x.bands) {
        nlohmann::json examples = nlohmann::json::array();
        for (const auto& e : b.examples)
            examples.push_back(exampleJson(e, tokenizer));
        bands.push_back({{"band", {b.lo, b.hi}}, {"examples", examples}});
    }
    return {{"node", x.node.name()}, {"top", top}, {"quantiles", bands}};
}

namespace {

IndexOptions cliOptions(std::ostream& log)
{
    IndexOptions o;
    if (const char* dir = std::getenv("CIRCUITSCOPE_CACHE_DIR"); dir && *dir)
        o.cacheDir = dir;
    // One worker: on the busy 2-core machine two workers (a pass each) measured 0.7× as fast as one for
    // neurons and heads and 1.2× with the demo's autoencoders (bench/bench_examples.cpp, DEVELOPERS.md),
    // the join waiting for whichever thread another process held up; one leaves a core to the others.
    o.workers = 1;
    o.message = [&log](const std::string& m) { log << m << '\n'; };
    // One progress line a second at most: enough to watch, few enough for a log file.
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    o.progress = [&log, last](const IndexProgress& p) {
        const auto now = std::chrono::steady_clock::now();
        if (p.windowsDone != p.windows && now - *last < std::chrono::seconds(1))
            return;
        *last = now;
        char line[200];
        std::snprintf(line, sizeof line, "indexing: %lld/%lld tokens, %.0f tokens/s, ETA %.0f s",
                      static_cast<long long>(p.tokensDone), static_cast<long long>(p.tokens), p.tokensPerSecond, p.etaSeconds);
        log << line << '\n';
    };
    return o;
}

} // namespace

nlohmann::json indexCommandJson(const Gpt2Model& model, const SaeFlags& flags, const std::string& corpus,
                                std::optional<std::int64_t> tokenLimit, std::ostream& log)
{
    const SaeSet saes = loadSaeFlags(model, flags);
    IndexOptions o = cliOptions(log);
    o.tokenLimit = tokenLimit;
    const IndexResult r = ensureExampleIndex(model, saes, corpus, o);
    return {{"tokens", r.tokens}, {"windows", r.windows}, {"seconds", r.seconds}, {"cache_path", r.index->file().string()}};
}

nlohmann::json examplesCommandJson(const Gpt2Model& model, const SaeFlags& flags, const std::string& corpus,
                                   const std::string& node, int topK, std::ostream& log)
{
    const ExampleNodeId id = ExampleNodeId::parse(node);
    if (topK < 1 || topK > kExampleTop)
        throw InputError("--top: must be 1.." + std::to_string(kExampleTop) + " (the index keeps the top " +
                         std::to_string(kExampleTop) + ")");
    const SaeSet saes = loadSaeFlags(model, flags);
    IndexOptions o = cliOptions(log);
    o.anyTokenLimit = true;
    IndexResult r = ensureExampleIndex(model, saes, corpus, o);
    if (!r.index->covers(id))
        throw InputError("node '" + node + "': not in the index (no such neuron, head or latent with the autoencoders given)");
    try {
        return nodeExamplesJson(r.index->examples(id, topK), *model.tokenizer);
    } catch (const InputError& e) {
        // A node block that fails its checksum: the index is never trusted; build it again.
        if (std::string(e.what()).find("fails its checksum") == std::string::npos)
            throw;
        log << "the saved examples index is unusable (" << e.what() << "); rebuilding it\n";
        std::filesystem::remove(r.index->file());
        r = ensureExampleIndex(model, saes, corpus, o);
        return nodeExamplesJson(r.index->examples(id, topK), *model.tokenizer);
    }
}

} // namespace cs
