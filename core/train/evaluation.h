#pragma once
// The demo model's bar (issue 5), measured: indirect-object accuracy on held-out prompts, loss on
// repeated random word sequences, induction and previous-token head scores, autoencoder quality.

#include "core/model/gpt2_model.h"
#include "core/train/corpus.h"
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

struct IoiScore {
    int prompts = 0;
    double top1 = 0;          // fraction where the answer's first token is the top next token
    double beatsOther = 0;    // fraction where its logit beats the repeated name's
    double meanLogitDiff = 0; // mean logit(answer) − logit(repeated name)
};

// How one attention head behaves on indirect-object prompts (averages over prompts):
// its direct effect on logit(answer) − logit(repeated name) at the last token (math §6.2, the app's
// "direct effect"), the last token's attention to the answer's name and to the repeated name, and
// the second occurrence of the repeated name's attention to its first occurrence (a duplicate-token
// head's signature).
struct IoiHeadStats {
    int layer = 0, head = 0;
    double directEffect = 0;
    double attentionToAnswer = 0, attentionToRepeated = 0;
    double duplicateAttention = 0;
    std::string name() const { return "L" + std::to_string(layer) + "H" + std::to_string(head); }
};

struct EvalReport {
    IoiScore ioi;             // held-out templates and names: the bar
    IoiScore ioiTraining;     // training templates and names
    IoiScore ioiHeldOutTemplates; // held-out templates, training names
    std::vector<IoiScore> ioiByShape; // the bar's prompts split by held-out shape (heldOutIoiShapes() order)
    std::vector<IoiHeadStats> ioiHeads; // every head, on held-out templates with training names
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
    int circuitPrompts = 100;   // held-out IOI prompts for the per-head circuit statistics
};

// The per-head statistics above, over `prompts` (those whose names are single, clean tokens).
std::vector<IoiHeadStats> ioiHeadStats(const Gpt2Model& model, const std::vector<IoiPrompt>& prompts);

// `tokens`: the corpus' token stream (its last heldOutTokens serve as held-out text); `saeDir`: where
// trainSaes wrote (skipped when it holds none).
EvalReport evaluateModel(const Gpt2Model& model, const std::vector<int>& tokens, const std::filesystem::path& saeDir,
                         const EvalOptions& options);

// The Markdown model card; `command` is the exact command line that produced the bundle.
std::string modelCard(const Gpt2Model& model, const EvalReport& report, const std::string& command,
                      const std::string& trainingNotes);

} // namespace cs::train
