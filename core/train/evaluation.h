#pragma once
// The demo model's bar (issue 5), measured: indirect-object accuracy on held-out prompts, loss on
// repeated random word sequences, induction and previous-token head scores, autoencoder quality.

#include "core/model/gpt2_model.h"
#include "core/train/sae_trainer.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cs::train {

struct HeadScore {
    int layer = -1;
    int head = -1;
    double score = 0;
    std::string name() const { return "L" + std::to_string(layer) + "H" + std::to_string(head); }
};

struct EvalReport {
    int ioiPrompts = 0;
    double ioiTop1 = 0;          // fraction where the answer's first token is the top next token
    double ioiBeatsOther = 0;    // fraction where its logit beats the repeated name's
    int repeatSequences = 0;
    double repeatFirstLoss = 0;  // mean loss on the first repetition (tokens 2..k)
    double repeatSecondLoss = 0; // the same positions of the second repetition
    // Induction score: attention from a token to the token after its previous occurrence, averaged
    // over the second repetition. Previous-token score: attention to the preceding token, averaged
    // over all positions ≥ 1 of the same texts.
    HeadScore bestInduction, bestPreviousToken;
    std::vector<HeadScore> inductionScores, previousTokenScores; // every head
    std::vector<SaeReport> saes;
    double heldOutLoss = 0;      // mean next-token loss on held-out corpus text
};

struct EvalOptions {
    std::uint64_t seed = 1;
    int ioiPrompts = 200;
    int repeatSequences = 50;
    int repeatLength = 15;      // words per repetition
    int heldOutTokens = 4096;   // for the held-out loss and the autoencoders
};

// `tokens`: the corpus' token stream (its last heldOutTokens serve as held-out text); `saeDir`: where
// trainSaes wrote (skipped when it holds none).
EvalReport evaluateModel(const Gpt2Model& model, const std::vector<int>& tokens, const std::filesystem::path& saeDir,
                         const EvalOptions& options);

// The Markdown model card; `command` is the exact command line that produced the bundle.
std::string modelCard(const Gpt2Model& model, const EvalReport& report, const std::string& command,
                      const std::string& trainingNotes);

} // namespace cs::train
