#pragma once
// The demo model's training text: sentences built from templates that elicit known circuits
// (indirect objects, induction on repeated random words, facts, bracket and quote closing) mixed
// with plain filler. Deterministic per seed. Some names and templates are held out of the training
// text so that the evaluation measures a mechanism, not memorized sentences.

#include <cstdint>
#include <string>
#include <vector>

namespace cs::train {

enum class SentenceKind { IndirectObject, Induction, Fact, Closing, Filler };

const char* sentenceKindName(SentenceKind kind);

struct CorpusOptions {
    std::uint64_t seed = 1;
    int documents = 1000;     // each document is a few sentences on one line
};

struct CorpusDocument {
    std::vector<SentenceKind> kinds; // the kind of each sentence, in order
    std::string text;
};

std::vector<CorpusDocument> generateCorpus(const CorpusOptions& options);

// The documents joined by newlines (what corpus.txt holds, one document per line).
std::string corpusText(const std::vector<CorpusDocument>& documents);

// An indirect-object prompt: the next token after `prompt` should be `answer` (e.g. " Mary"), not
// `distractor` (the repeated subject).
struct IoiPrompt {
    std::string prompt;
    std::string answer;
    std::string distractor;
    int shape = -1; // index of the template it was built from (heldOutIoiShapes() for the held-out kinds)
    bool operator==(const IoiPrompt&) const = default;
};

// Prompts from the held-out templates with held-out names (never in IOI training sentences), both
// name orders. Deterministic per seed.
std::vector<IoiPrompt> heldOutIoiPrompts(std::uint64_t seed, int count);
// Prompts from the training templates with training names: the in-distribution comparison that
// tells a mechanism that does not generalize from one that was never learned.
std::vector<IoiPrompt> trainingIoiPrompts(std::uint64_t seed, int count);
// Held-out templates with training names: separates new sentence shapes from new names.
std::vector<IoiPrompt> heldOutTemplatePrompts(std::uint64_t seed, int count);

// The held-out sentence shapes ({A} {B} names, {S} repeated subject, {P} place, {O} object, {V} verb),
// each ending where the indirect object would follow.
const std::vector<std::string>& heldOutIoiShapes();

// Names that appear as indirect objects in training, and those kept for evaluation (the latter still
// occur in filler sentences so that the tokenizer and embeddings know them).
const std::vector<std::string>& trainingNames();
const std::vector<std::string>& heldOutNames();
// Words used for the repeated random sequences.
const std::vector<std::string>& randomWords();

} // namespace cs::train
