#pragma once
// Trains a GPT-2-architecture model from scratch on the CPU (libtorch autograd + AdamW with linear
// warm-up and cosine decay) and writes it as a Hugging Face directory that loadHfGpt2 opens.
//
// Deterministic: parameters are initialized from the seed and the batch of step s depends only on
// (seed, s), so a run interrupted after a checkpoint and resumed produces the same losses as an
// uninterrupted one.

#include "core/model/gpt2_config.h"
#include "core/model/random_model.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

namespace cs::train {

struct TrainProgress {
    int step = 0;              // steps done, 1-based
    int steps = 0;
    double loss = 0;
    double learningRate = 0;
    double tokensPerSecond = 0;
};

struct ModelTrainOptions {
    Gpt2Config config;          // vocabSize must cover every token id
    std::uint64_t seed = 1;
    int steps = 1000;
    int batchSize = 32;
    int warmupSteps = 100;
    double learningRate = 3e-3;
    double minLearningRateFraction = 0.1; // the cosine decays to this fraction of learningRate
    double weightDecay = 0.1;             // on matrices only
    // Checkpoints (parameters, optimizer state, losses) go here every `checkpointEvery` steps and at
    // the end; an existing checkpoint with the same config and seed is resumed. Empty: none.
    std::filesystem::path checkpointDir;
    int checkpointEvery = 100;
    int stopAfter = -1;         // test hook: stop (after checkpointing) once this many steps are done
    std::function<void(const TrainProgress&)> progress;
};

struct ModelTrainResult {
    std::vector<double> losses; // loss of every step done so far (resumed steps included)
    int resumedFrom = 0;        // the step the run resumed from (0: fresh)
    bool finished = false;      // all `steps` done (false when stopAfter stopped it)
};

// `tokens` is the tokenized corpus (documents separated by <|endoftext|>, id `documentSeparator`).
// When finished, writes config.json + model.safetensors into `outDir` (F16 or F32 storage).
ModelTrainResult trainModel(const std::vector<int>& tokens, int documentSeparator, const ModelTrainOptions& options,
                            const std::filesystem::path& outDir, StorageDType storage = StorageDType::F32);

} // namespace cs::train
