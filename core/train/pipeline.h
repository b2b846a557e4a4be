#pragma once
// circuitscope-train's stages, each runnable alone: corpus → bpe → model → sae → eval. Files:
//   <work>/corpus.txt                         the generated corpus (one document per line)
//   <work>/checkpoint/                        model training checkpoint (resumed when present)
//   <out>/vocab.json, merges.txt              the tokenizer
//   <out>/config.json, model.safetensors      the model (Hugging Face GPT-2 directory)
//   <out>/saes/{mlp,attn}_<layer>/            the autoencoders (SAELens layout)
//   <out>/MODEL_CARD.md                       the measured figures and the command
//   <out>/heldout-corpus.txt                  held-out text for the Examples tab (issue 14): the documents
//                                             that the same seeded generator writes after the training ones

#include "core/model/random_model.h"
#include "core/train/bpe_trainer.h"
#include "core/train/corpus.h"
#include "core/train/evaluation.h"
#include "core/train/model_trainer.h"
#include "core/train/sae_trainer.h"

#include <filesystem>
#include <functional>
#include <string>

namespace cs::train {

enum class Stage { Corpus, Bpe, Model, Sae, Eval, HeldOut, All };

// "corpus", "bpe", "model", "sae", "eval", "heldout", "all"; InputError for anything else.
Stage stageFromName(const std::string& name);

struct PipelineOptions {
    std::filesystem::path outDir;
    std::filesystem::path workDir;   // empty: <out>-work next to the output directory
    std::uint64_t seed = 1;
    CorpusOptions corpus;
    BpeOptions bpe;
    ModelTrainOptions model;         // config.vocabSize is taken from the tokenizer
    SaeTrainOptions sae;
    EvalOptions eval;
    StorageDType storage = StorageDType::F16;
    // Documents of held-out text shipped with the bundle: the generator's documents after the
    // `corpus.documents` training ones (never trained on; the trainer's own held-out tail is only the
    // last few thousand tokens, too few for dataset examples).
    int heldOutDocuments = 0;
    std::string command;             // the command line, for the model card
    std::function<void(const std::string&)> log;

    std::filesystem::path work() const;
};

// The full-size preset (the bundled demo) and a toy preset that runs every stage in seconds.
PipelineOptions fullPreset();
PipelineOptions toyPreset();

// Runs one stage (or all in order). Errors are InputError with a one-line message.
void runStage(Stage stage, const PipelineOptions& options);

} // namespace cs::train
