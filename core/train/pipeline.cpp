#include "core/train/pipeline.h"

#include "core/model/gpt2_model.h"
#include "core/tokenizer/gpt2_tokenizer.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace cs::train {

namespace {

std::string readFile(const std::filesystem::path& path)
{
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throwInputError(path, "not found (run the earlier stage first)");
    return readRegularFile(path, kMaxDocumentBytes);
}

// The corpus as one token stream, documents separated by <|endoftext|>.
std::vector<int> tokenizeCorpus(const Gpt2Tokenizer& tok, const std::string& text, int* separator)
{
    const auto eot = tok.endOfTextId();
    if (!eot)
        throw InputError("the tokenizer has no <|endoftext|> token");
    *separator = *eot;
    std::vector<int> ids;
    std::size_t begin = 0;
    while (begin < text.size()) {
        std::size_t end = text.find('\n', begin);
        if (end == std::string::npos)
            end = text.size();
        const std::vector<int> doc = tok.encode(std::string_view(text).substr(begin, end - begin));
        ids.insert(ids.end(), doc.begin(), doc.end());
        ids.push_back(*eot);
        begin = end + 1;
    }
    return ids;
}

void log(const PipelineOptions& o, const std::string& line)
{
    if (o.log)
        o.log(line);
}

} // namespace

Stage stageFromName(const std::string& name)
{
    if (name == "corpus") return Stage::Corpus;
    if (name == "bpe") return Stage::Bpe;
    if (name == "model") return Stage::Model;
    if (name == "sae") return Stage::Sae;
    if (name == "eval") return Stage::Eval;
    if (name == "heldout") return Stage::HeldOut;
    if (name == "all") return Stage::All;
    throw InputError("unknown stage '" + name + "' (expected corpus, bpe, model, sae, eval, heldout or all)");
}

std::filesystem::path PipelineOptions::work() const
{
    if (!workDir.empty())
        return workDir;
    std::filesystem::path out = outDir.lexically_normal();
    if (out.filename().empty())
        out = out.parent_path();
    return out.parent_path() / (out.filename().string() + "-work");
}

PipelineOptions fullPreset()
{
    PipelineOptions o;
    o.corpus.documents = 80000;
    o.bpe.vocabSize = 4096;
    o.model.config.nLayer = 4;
    o.model.config.nHead = 4;
    o.model.config.dModel = 128;
    o.model.config.dMlp = 512;
    o.model.config.nCtx = 64;
    // Copying names and induction appear only after a plateau of a few million tokens; 12000 steps of
    // 2048 tokens (about 30 minutes on 2 cores) leave room past it.
    o.model.steps = 12000;
    o.model.batchSize = 32;
    o.model.warmupSteps = 300;
    o.model.learningRate = 3e-3;
    o.model.checkpointEvery = 100;
    o.sae.latentMultiplier = 2; // 1024 MLP latents: the bundle stays under 16 MB in F16
    o.sae.steps = 1500;
    // Swept on the demo model (0.01, 0.1, 0.3): 0.3 gave mean L0 11–38 but, on a later model, 78 % of the
    // variance at two attention layers; 0.2 keeps every layer above the 80 % bar.
    o.sae.l1Coefficient = 0.2;
    o.sae.batchSize = 256;
    o.sae.trainingTokens = 65536;
    o.sae.evalTokens = 4096;
    o.sae.resampleEvery = 300;
    o.eval.ioiPrompts = 300;
    o.eval.repeatSequences = 50;
    o.eval.heldOutTokens = 4096;
    o.heldOutDocuments = 7000; // 2.0 MB of text, 0.5 MB gzipped (the bundle has 2 MB for it)
    return o;
}

PipelineOptions toyPreset()
{
    PipelineOptions o;
    o.corpus.documents = 400;
    o.bpe.vocabSize = 600;
    o.model.config.nLayer = 2;
    o.model.config.nHead = 2;
    o.model.config.dModel = 32;
    o.model.config.dMlp = 64;
    o.model.config.nCtx = 32;
    o.model.steps = 30;
    o.model.batchSize = 8;
    o.model.warmupSteps = 5;
    o.model.learningRate = 5e-3;
    o.model.checkpointEvery = 10;
    o.sae.latentMultiplier = 2;
    o.sae.steps = 60;
    o.sae.learningRate = 1e-2;
    o.sae.batchSize = 128;
    o.sae.trainingTokens = 1024;
    o.sae.evalTokens = 512;
    o.sae.resampleEvery = 20;
    o.eval.ioiPrompts = 20;
    o.eval.repeatSequences = 5;
    o.eval.repeatLength = 6;
    o.eval.heldOutTokens = 512;
    o.heldOutDocuments = 50;
    o.storage = StorageDType::F32;
    return o;
}

void runStage(Stage stage, const PipelineOptions& o)
{
    if (o.outDir.empty())
        throw InputError("no output directory given (--out DIR)");
    const auto work = o.work();
    const auto corpusPath = work / "corpus.txt";
    if (stage == Stage::All) {
        for (Stage s : {Stage::Corpus, Stage::Bpe, Stage::Model, Stage::Sae, Stage::Eval, Stage::HeldOut})
            runStage(s, o);
        return;
    }
    std::filesystem::create_directories(o.outDir);
    std::filesystem::create_directories(work);
    switch (stage) {
    case Stage::Corpus: {
        CorpusOptions c = o.corpus;
        c.seed = o.seed;
        const std::string text = corpusText(generateCorpus(c));
        writeFileAtomically(corpusPath, text);
        log(o, "corpus: " + std::to_string(c.documents) + " documents, " + std::to_string(text.size()) + " bytes → " +
                   corpusPath.string());
        return;
    }
    case Stage::Bpe: {
        const BpeResult bpe = trainBpe(readFile(corpusPath), o.bpe);
        writeBpeFiles(bpe, o.outDir);
        log(o, "bpe: " + std::to_string(bpe.tokens.size()) + " tokens (" + std::to_string(bpe.merges.size()) +
                   " merges) → " + o.outDir.string());
        return;
    }
    case Stage::Model: {
        const Gpt2Tokenizer tok = Gpt2Tokenizer::fromFiles(o.outDir / "vocab.json", o.outDir / "merges.txt");
        int separator = 0;
        std::vector<int> tokens = tokenizeCorpus(tok, readFile(corpusPath), &separator);
        // The corpus' tail is held out for the evaluation and the autoencoders' report.
        const std::size_t heldOut = static_cast<std::size_t>(std::max(o.eval.heldOutTokens, o.sae.evalTokens));
        if (tokens.size() > 2 * heldOut)
            tokens.resize(tokens.size() - heldOut);
        ModelTrainOptions m = o.model;
        m.seed = o.seed;
        m.config.vocabSize = tok.vocabSize();
        if (m.checkpointDir.empty())
            m.checkpointDir = work / "checkpoint";
        log(o, "model: " + std::to_string(tokens.size()) + " training tokens, vocabulary " + std::to_string(m.config.vocabSize));
        const auto userProgress = m.progress;
        m.progress = [&](const TrainProgress& p) {
            if (userProgress)
                userProgress(p);
            if (p.step == 1 || p.step % 10 == 0 || p.step == p.steps) {
                char line[160];
                std::snprintf(line, sizeof line, "step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s", p.step, p.steps,
                              p.loss, p.learningRate, p.tokensPerSecond);
                log(o, line);
            }
        };
        const ModelTrainResult r = trainModel(tokens, separator, m, o.outDir, o.storage);
        if (r.resumedFrom > 0)
            log(o, "model: resumed from step " + std::to_string(r.resumedFrom));
        if (r.finished)
            log(o, "model: → " + o.outDir.string());
        return;
    }
    case Stage::Sae: {
        const auto model = loadHfGpt2(o.outDir);
        int separator = 0;
        const std::vector<int> tokens = tokenizeCorpus(*model->tokenizer, readFile(corpusPath), &separator);
        SaeTrainOptions s = o.sae;
        s.seed = o.seed;
        s.log = o.log;
        trainSaes(*model, tokens, s, o.outDir / "saes", o.storage);
        return;
    }
    case Stage::Eval: {
        const auto model = loadHfGpt2(o.outDir);
        int separator = 0;
        const std::vector<int> tokens = tokenizeCorpus(*model->tokenizer, readFile(corpusPath), &separator);
        EvalOptions e = o.eval;
        e.seed = o.seed;
        const EvalReport r = evaluateModel(*model, tokens, o.outDir / "saes", e);
        std::string notes = "Trained for " + std::to_string(o.model.steps) + " steps of " + std::to_string(o.model.batchSize) +
                            " × " + std::to_string(model->config.nCtx) + " tokens (AdamW, peak learning rate " +
                            std::to_string(o.model.learningRate) + ", " + std::to_string(o.model.warmupSteps) +
                            " warm-up steps, cosine decay) on " + std::to_string(tokens.size()) + " corpus tokens; seed " +
                            std::to_string(o.seed) + ". The whole bundle (corpus, tokenizer, model, autoencoders, this card) is "
                            "regenerated by `circuitscope-train all --out " + o.outDir.string() + " --work " + work.string() +
                            " --seed " + std::to_string(o.seed) + "`.";
        writeFileAtomically(o.outDir / "MODEL_CARD.md", modelCard(*model, r, o.command, notes));
        char line[512];
        std::snprintf(line, sizeof line,
                      "eval: IOI top-1 %.3f, beats other %.3f (held-out templates with training names %.3f, %.3f; training "
                      "distribution %.3f, %.3f); repeat loss %.3f → %.3f; induction %s %.3f; previous token %s %.3f",
                      r.ioi.top1, r.ioi.beatsOther, r.ioiHeldOutTemplates.top1, r.ioiHeldOutTemplates.beatsOther,
                      r.ioiTraining.top1, r.ioiTraining.beatsOther, r.repeatFirstLoss, r.repeatSecondLoss, r.bestInduction.name().c_str(),
                      r.bestInduction.score, r.bestPreviousToken.name().c_str(), r.bestPreviousToken.score);
        log(o, line);
        std::vector<IoiHeadStats> heads = r.ioiHeads;
        std::sort(heads.begin(), heads.end(), [](const auto& a, const auto& b) { return a.directEffect > b.directEffect; });
        for (std::size_t i = 0; i < std::min<std::size_t>(3, heads.size()); ++i) {
            std::snprintf(line, sizeof line, "eval: IOI head %s: direct effect %.3f, attention to answer %.3f, to repeated name %.3f",
                          heads[i].name().c_str(), heads[i].directEffect, heads[i].attentionToAnswer, heads[i].attentionToRepeated);
            log(o, line);
        }
        for (const auto& s : r.saes) {
            std::snprintf(line, sizeof line, "eval: autoencoder %s layer %d: variance explained %.3f, mean L0 %.1f, dead %.3f",
                          s.location.c_str(), s.layer, s.varianceExplained, s.meanL0, s.deadFraction);
            log(o, line);
        }
        return;
    }
    case Stage::HeldOut: {
        // The same seeded stream continued: its first documents are the training corpus, exactly.
        CorpusOptions c = o.corpus;
        c.seed = o.seed;
        c.documents = o.corpus.documents + o.heldOutDocuments;
        std::vector<CorpusDocument> docs = generateCorpus(c);
        docs.erase(docs.begin(), docs.begin() + std::min<std::ptrdiff_t>(o.corpus.documents, static_cast<std::ptrdiff_t>(docs.size())));
        const std::string text = corpusText(docs);
        writeFileAtomically(o.outDir / "heldout-corpus.txt", text);
        log(o, "heldout: " + std::to_string(docs.size()) + " documents, " + std::to_string(text.size()) + " bytes → " +
                   (o.outDir / "heldout-corpus.txt").string());
        return;
    }
    case Stage::All:
        break;
    }
}

} // namespace cs::train
