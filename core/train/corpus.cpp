#include "core/train/corpus.h"

#include "core/train/rng.h"

#include <array>

namespace cs::train {

namespace {

using Words = std::vector<std::string>;

const Words kPlaces = {"store", "park", "school", "house", "garden", "station", "office", "market",
                       "library", "beach", "hospital", "restaurant", "river", "museum", "farm", "church"};
const Words kObjects = {"drink", "book", "ball", "letter", "pen", "cake", "bag", "ring", "flower",
                        "key", "hat", "box", "apple", "basket", "card", "gift"};
const Words kVerbs = {"gave", "handed", "passed", "brought", "sent", "offered", "sold", "showed", "threw"};
const Words kAdjectives = {"red", "small", "big", "old", "new", "green", "heavy", "bright", "quiet", "warm"};

// Subject/indirect-object sentence templates. {A} and {B} are introduced, {S} is the repeated subject,
// {IO} the other name; {P} place, {O} object, {V} verb. The indirect object ends each sentence.
const Words kTrainingIoiTemplates = {
    "When {A} and {B} went to the {P}, {S} {V} a {O} to {IO}.",
    "After {A} and {B} went to the {P}, {S} {V} a {O} to {IO}.",
    "Then, {A} and {B} had a long day at the {P}. {S} {V} a {O} to {IO}.",
    "{A} and {B} were working at the {P}. {S} decided to give a {O} to {IO}.",
    "While {A} and {B} were at the {P}, {S} {V} the {O} to {IO}.",
    "The {P} was busy when {A} and {B} arrived. {S} {V} a {O} to {IO}.",
    "Friends {A} and {B} found a {O} at the {P}. {S} {V} it to {IO}.",
};
const Words kHeldOutIoiTemplates = {
    "When {A} and {B} got to the {P}, {S} {V} a {O} to",
    "Afterwards, {A} and {B} strolled over to the {P}. {S} {V} a {O} to",
    "Once {A} and {B} reached the {P}, {S} {V} the {O} to",
};

const Words kTrainingNames = {"Mary", "John", "Tom", "Anna", "James", "Sarah", "David", "Laura", "Michael",
                              "Emma", "Robert", "Alice", "Peter", "Kate", "Paul", "Susan", "Mark", "Lucy",
                              "George", "Helen", "Frank", "Rose", "Jack", "Grace"};
const Words kHeldOutNames = {"Daniel", "Sophie", "Henry", "Julia", "Oscar", "Clara", "Victor", "Nina"};

const std::vector<std::array<const char*, 2>> kCapitals = {
    {"France", "Paris"}, {"Germany", "Berlin"}, {"Italy", "Rome"}, {"Spain", "Madrid"}, {"Japan", "Tokyo"},
    {"China", "Beijing"}, {"Russia", "Moscow"}, {"Egypt", "Cairo"}, {"Canada", "Ottawa"}, {"Peru", "Lima"},
    {"Greece", "Athens"}, {"Poland", "Warsaw"}, {"Norway", "Oslo"}, {"Kenya", "Nairobi"}, {"Cuba", "Havana"},
    {"Austria", "Vienna"}};
const std::vector<std::array<const char*, 2>> kOpposites = {
    {"hot", "cold"}, {"big", "small"}, {"up", "down"}, {"fast", "slow"}, {"old", "young"}, {"day", "night"},
    {"happy", "sad"}, {"open", "closed"}, {"light", "dark"}, {"early", "late"}, {"high", "low"}, {"wet", "dry"}};

const Words kRandomWords = {"apple", "river", "stone", "cloud", "music", "paper", "window", "forest", "engine",
                            "silver", "candle", "mirror", "tiger", "bridge", "orange", "pencil", "rocket",
                            "island", "garden", "violin", "planet", "button", "castle", "dragon", "jacket",
                            "lemon", "monkey", "needle", "ocean", "pepper", "rabbit", "saddle", "tunnel",
                            "wagon", "yellow", "zebra", "anchor", "bottle", "carpet", "desert", "falcon",
                            "hammer", "ladder", "marble", "nickel", "parrot", "quartz", "salmon"};

void replaceAll(std::string& s, const std::string& key, const std::string& value)
{
    for (std::size_t pos = s.find(key); pos != std::string::npos; pos = s.find(key, pos + value.size()))
        s.replace(pos, key.size(), value);
}

// Fills an IOI template; returns the sentence and the two names (io, subject).
std::string fillIoi(const std::string& tmpl, Rng& rng, const Words& names, std::string* io, std::string* subject)
{
    const std::size_t a = rng.below(names.size());
    std::size_t b = rng.below(names.size() - 1);
    if (b >= a)
        ++b;
    const bool subjectIsA = rng.below(2) == 0; // both orders: ABA and ABB
    const std::string& nameA = names[a];
    const std::string& nameB = names[b];
    *subject = subjectIsA ? nameA : nameB;
    *io = subjectIsA ? nameB : nameA;
    std::string s = tmpl;
    replaceAll(s, "{A}", nameA);
    replaceAll(s, "{B}", nameB);
    replaceAll(s, "{S}", *subject);
    replaceAll(s, "{IO}", *io);
    replaceAll(s, "{P}", rng.pick(kPlaces));
    replaceAll(s, "{O}", rng.pick(kObjects));
    replaceAll(s, "{V}", rng.pick(kVerbs));
    return s;
}

std::string allNames(Rng& rng)
{
    return rng.below(4) == 0 ? rng.pick(kHeldOutNames) : rng.pick(kTrainingNames);
}

std::string sentence(SentenceKind kind, Rng& rng)
{
    switch (kind) {
    case SentenceKind::IndirectObject: {
        std::string io, subject;
        return fillIoi(rng.pick(kTrainingIoiTemplates), rng, kTrainingNames, &io, &subject);
    }
    case SentenceKind::Induction: {
        const int n = 4 + static_cast<int>(rng.below(9));
        std::string seq;
        for (int i = 0; i < n; ++i)
            seq += (i ? " " : "") + rng.pick(kRandomWords);
        return seq + ". " + seq + ".";
    }
    case SentenceKind::Fact: {
        if (rng.below(2) == 0) {
            const auto& c = kCapitals[rng.below(kCapitals.size())];
            return rng.below(2) ? std::string("The capital of ") + c[0] + " is " + c[1] + "."
                                : std::string(c[1]) + " is the capital of " + c[0] + ".";
        }
        const auto& o = kOpposites[rng.below(kOpposites.size())];
        const bool flip = rng.below(2) == 0;
        return std::string("The opposite of ") + o[flip ? 1 : 0] + " is " + o[flip ? 0 : 1] + ".";
    }
    case SentenceKind::Closing: {
        const std::string name = allNames(rng);
        switch (rng.below(3)) {
        case 0:
            return name + " said \"the " + rng.pick(kObjects) + " is " + rng.pick(kAdjectives) + "\" and left.";
        case 1:
            return "The " + rng.pick(kObjects) + " (a " + rng.pick(kAdjectives) + " one) was at the " +
                   rng.pick(kPlaces) + ".";
        default:
            return "[" + rng.pick(kRandomWords) + " " + rng.pick(kRandomWords) + "] is what " + name + " wrote.";
        }
    }
    case SentenceKind::Filler:
        switch (rng.below(4)) {
        case 0:
            return allNames(rng) + " likes the " + rng.pick(kAdjectives) + " " + rng.pick(kObjects) + ".";
        case 1:
            return allNames(rng) + " walked to the " + rng.pick(kPlaces) + " in the morning.";
        case 2:
            return "The " + rng.pick(kObjects) + " at the " + rng.pick(kPlaces) + " is " + rng.pick(kAdjectives) + ".";
        default:
            return allNames(rng) + " and " + allNames(rng) + " live near the " + rng.pick(kPlaces) + ".";
        }
    }
    return {};
}

SentenceKind drawKind(Rng& rng)
{
    const auto r = rng.below(100);
    if (r < 35)
        return SentenceKind::IndirectObject;
    if (r < 55)
        return SentenceKind::Induction;
    if (r < 65)
        return SentenceKind::Fact;
    if (r < 75)
        return SentenceKind::Closing;
    return SentenceKind::Filler;
}

} // namespace

const char* sentenceKindName(SentenceKind kind)
{
    switch (kind) {
    case SentenceKind::IndirectObject: return "indirect_object";
    case SentenceKind::Induction: return "induction";
    case SentenceKind::Fact: return "fact";
    case SentenceKind::Closing: return "closing";
    case SentenceKind::Filler: return "filler";
    }
    return "?";
}

std::vector<CorpusDocument> generateCorpus(const CorpusOptions& options)
{
    Rng rng(options.seed);
    std::vector<CorpusDocument> docs;
    docs.reserve(static_cast<std::size_t>(std::max(0, options.documents)));
    for (int d = 0; d < options.documents; ++d) {
        CorpusDocument doc;
        const int n = 2 + static_cast<int>(rng.below(4));
        for (int i = 0; i < n; ++i) {
            // The first documents cycle through every kind so that even a tiny corpus holds each.
            const SentenceKind kind = d < 5 && i == 0 ? static_cast<SentenceKind>(d) : drawKind(rng);
            doc.kinds.push_back(kind);
            doc.text += (i ? " " : "") + sentence(kind, rng);
        }
        docs.push_back(std::move(doc));
    }
    return docs;
}

std::string corpusText(const std::vector<CorpusDocument>& documents)
{
    std::string text;
    for (const auto& d : documents)
        text += d.text + "\n";
    return text;
}

std::vector<IoiPrompt> heldOutIoiPrompts(std::uint64_t seed, int count)
{
    Rng rng(seed ^ 0x5eed'0f'e7a1ULL);
    std::vector<IoiPrompt> prompts;
    for (int i = 0; i < count; ++i) {
        IoiPrompt p;
        std::string io, subject;
        p.prompt = fillIoi(kHeldOutIoiTemplates[static_cast<std::size_t>(i) % kHeldOutIoiTemplates.size()], rng,
                           kHeldOutNames, &io, &subject);
        p.answer = " " + io;
        p.distractor = " " + subject;
        prompts.push_back(std::move(p));
    }
    return prompts;
}

const std::vector<std::string>& trainingNames() { return kTrainingNames; }
const std::vector<std::string>& heldOutNames() { return kHeldOutNames; }
const std::vector<std::string>& randomWords() { return kRandomWords; }

} // namespace cs::train
