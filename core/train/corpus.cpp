#include "core/train/corpus.h"

#include "core/train/rng.h"

#include <array>

namespace cs::train {

namespace {

using Words = std::vector<std::string>;

const Words kPlaces = {"store", "park", "school", "house", "garden", "station", "office", "market", "library",
                       "beach", "hospital", "restaurant", "river", "museum", "farm", "church", "cinema", "bakery",
                       "harbor", "airport", "theater", "castle", "village", "kitchen", "hotel", "lake", "forest",
                       "bank", "zoo", "gym", "cafe", "bridge"};
const Words kObjects = {"drink", "book", "ball", "letter", "pen", "cake", "bag", "ring", "flower", "key", "hat",
                        "box", "apple", "basket", "card", "gift", "coin", "map", "lamp", "cup", "kite", "toy",
                        "shirt", "watch", "note", "bottle", "sandwich", "ticket", "phone", "candle", "photo", "scarf"};
const Words kVerbs = {"gave", "handed", "passed", "brought", "sent", "offered", "sold", "showed", "threw", "lent", "mailed", "tossed"};
const Words kAdjectives = {"red", "small", "big", "old", "new", "green", "heavy", "bright", "quiet", "warm", "blue",
                           "soft", "tall", "short", "clean", "strange", "lovely", "round", "cheap", "rare"};

// Subject/indirect-object sentence templates. {A} and {B} are introduced, {S} is the repeated subject,
// {IO} the other name; {P} place, {O} object, {V} verb. The indirect object ends each sentence.
const Words kTrainingIoiTemplates = {
    "When {A} and {B} went to the {P}, {S} {V} a {O} to {IO}.",
    "After {A} and {B} went to the {P}, {S} {V} a {O} to {IO}.",
    "{OP}, {A} and {B} had a long day at the {P}. {S} {V} a {O} to {IO}.",
    "{A} and {B} were working at the {P}. {S} decided to give a {O} to {IO}.",
    "While {A} and {B} were at the {P}, {S} {V} the {O} to {IO}.",
    "The {P} was busy when {A} and {B} arrived. {S} {V} a {O} to {IO}.",
    "Friends {A} and {B} found a {O} at the {P}. {S} {V} it to {IO}.",
    "When {A} and {B} met at the {P}, {S} {V} a {O} to {IO}.",
    "{A} and {B} walked to the {P} together. {OP}, {S} {V} a {O} to {IO}.",
    "Yesterday {A} and {B} visited the {P}, and {S} {V} a {O} to {IO}.",
    "At the {P}, {A} and {B} talked for hours. {S} {V} the {O} to {IO}.",
    "Since {A} and {B} were at the {P}, {S} {V} a {O} to {IO}.",
    // Predicates and sentence breaks in many combinations, so that what the model learns is "the name
    // that is not repeated", wherever the two names and the repeat stand. {OP} is an opener drawn
    // anew each time, and openers stand before the introduced pair as often as before the giver: a
    // model that saw one opener only before the giver took the name after it for the giver (an
    // earlier corpus; held-out names after "Soon," or "Afterwards," were then answered wrongly).
    "{OP}, {A} and {B} sat in the {P}. {S} {V} a {O} to {IO}.",
    "{OP}, {A} and {B} stopped by the {P}. {S} {V} the {O} to {IO}.",
    "In the {P}, {A} and {B} waited for a while. {OP}, {S} {V} a {O} to {IO}.",
    "{A} met {B} at the {P}, and {S} {V} a {O} to {IO}.",
    "{A} and {B} left the {P}. {OP}, {S} {V} a {O} to {IO}.",
    "{OP}, {A} and {B} cleaned the {P}. {S} {V} a {O} to {IO}.",
    "Both {A} and {B} liked the {P}. {S} {V} a {O} to {IO}.",
    "{A} and {B} spent the day at the {P}, where {S} {V} a {O} to {IO}.",
    "As {A} and {B} left the {P}, {S} {V} the {O} to {IO}.",
    "Once {A} and {B} reached the {P}, {S} {V} a {O} to {IO}.",
    "{OP}, {A} and {B} painted the {P}. {OP}, {S} {V} a {O} to {IO}.",
    "{A} and {B} stood outside the {P}. {S} smiled and {V} a {O} to {IO}.",
};
// Held out: sentence shapes never used in training, built from words the corpus knows (a word the
// tokenizer never saw would measure byte fallback, not the circuit).
const Words kHeldOutIoiTemplates = {
    "When {A} and {B} arrived at the {P}, {S} {V} a {O} to",
    "Later, {A} and {B} were at the {P}. {S} {V} a {O} to",
    "{A} and {B} went to the {P} together, and {S} {V} the {O} to",
};

// Sentence openers for the {OP} slots ("Later" is kept for filler: it opens a held-out shape).
const Words kOpeners = {"Then", "Soon", "Afterwards", "After a while", "One morning", "That evening", "On Monday",
                        "After lunch", "Early that day", "Meanwhile", "At noon", "Once again"};

const Words kTrainingNames = {
    "Mary", "John", "Tom", "Anna", "James", "Sarah", "David", "Laura", "Michael", "Emma", "Robert", "Alice",
    "Peter", "Kate", "Paul", "Susan", "Mark", "Lucy", "George", "Helen", "Frank", "Rose", "Jack", "Grace",
    "Adam", "Beth", "Carl", "Diana", "Edward", "Fiona", "Gary", "Hannah", "Ian", "Jane", "Kevin", "Linda",
    "Martin", "Nora", "Owen", "Paula", "Ralph", "Sally", "Steve", "Tina", "Walter", "Wendy", "Arthur", "Betty",
    "Chris", "Donna", "Eric", "Ellen", "Fred", "Gina", "Harry", "Irene", "Jason", "Karen", "Leo", "Maria",
    "Neil", "Olivia", "Roger", "Ruth", "Albert", "Angela", "Barry", "Bella", "Bruce", "Carol", "Colin", "Cindy",
    "Dennis", "Doris", "Derek", "Edith", "Felix", "Flora", "Gordon", "Gloria", "Howard", "Hazel", "Isaac", "Ivy",
    "Jerry", "Joan", "Keith", "Kim", "Lewis", "Lily", "Morris", "Molly", "Nathan", "Nancy", "Oliver", "Pam",
    "Philip", "Penny", "Quentin", "Rita", "Russell", "Sheila", "Stuart", "Tara", "Trevor", "Ursula", "Vernon",
    "Vera", "Wayne", "Xavier", "Yvonne", "Zach", "Dylan", "Megan", "Scott", "Holly", "Glen", "Joyce", "Craig",
    "Lisa"};
const Words kHeldOutNames = {"Daniel", "Sophie", "Henry", "Julia", "Oscar", "Clara", "Victor", "Nina",
                             "Simon", "Alan", "Brian", "Amy", "Rachel", "Tony", "Eva", "Luke"};

const std::vector<std::array<const char*, 2>> kCapitals = {
    {"France", "Paris"}, {"Germany", "Berlin"}, {"Italy", "Rome"}, {"Spain", "Madrid"}, {"Japan", "Tokyo"},
    {"China", "Beijing"}, {"Russia", "Moscow"}, {"Egypt", "Cairo"}, {"Canada", "Ottawa"}, {"Peru", "Lima"},
    {"Greece", "Athens"}, {"Poland", "Warsaw"}, {"Norway", "Oslo"}, {"Kenya", "Nairobi"}, {"Cuba", "Havana"},
    {"Austria", "Vienna"}, {"Sweden", "Stockholm"}, {"Ireland", "Dublin"}, {"Chile", "Santiago"},
    {"Turkey", "Ankara"}, {"India", "Delhi"}, {"Mexico", "Mexico City"}, {"Portugal", "Lisbon"},
    {"Hungary", "Budapest"}};
const std::vector<std::array<const char*, 2>> kOpposites = {
    {"hot", "cold"}, {"big", "small"}, {"up", "down"}, {"fast", "slow"}, {"old", "young"}, {"day", "night"},
    {"happy", "sad"}, {"open", "closed"}, {"light", "dark"}, {"early", "late"}, {"high", "low"}, {"wet", "dry"},
    {"hard", "soft"}, {"rich", "poor"}, {"full", "empty"}, {"strong", "weak"}, {"loud", "quiet"}, {"near", "far"}};

// Words for the repeated random sequences (induction) and for filler: many, so that the model can
// only predict a repetition by looking back, and so that the tokenizer has a few thousand tokens.
const Words kRandomWords = {
    "apple", "river", "stone", "cloud", "music", "paper", "window", "forest", "engine", "silver", "candle",
    "mirror", "tiger", "bridge", "orange", "pencil", "rocket", "island", "garden", "violin", "planet", "button",
    "castle", "dragon", "jacket", "lemon", "monkey", "needle", "ocean", "pepper", "rabbit", "saddle", "tunnel",
    "wagon", "yellow", "zebra", "anchor", "bottle", "carpet", "desert", "falcon", "hammer", "ladder", "marble",
    "nickel", "parrot", "quartz", "salmon", "acorn", "almond", "arrow", "autumn", "badge", "bamboo", "banana",
    "barrel", "beacon", "beetle", "blanket", "bonnet", "branch", "breeze", "brick", "bucket", "butter", "cabin",
    "cactus", "camel", "canoe", "canvas", "carrot", "cedar", "cherry", "chimney", "cinnamon", "circus", "clover",
    "cobalt", "coconut", "comet", "copper", "coral", "cotton", "cradle", "crystal", "cushion", "daisy", "dolphin",
    "donkey", "dragonfly", "eagle", "elbow", "ember", "emerald", "fabric", "feather", "fiddle", "flannel",
    "fossil", "fountain", "galaxy", "garlic", "ginger", "glacier", "goblet", "granite", "grape", "gravel",
    "guitar", "hazel", "helmet", "honey", "horizon", "iceberg", "igloo", "indigo", "ivory", "jasmine", "jelly",
    "jungle", "kettle", "kitten", "koala", "lantern", "lava", "leopard", "lettuce", "lily", "lizard", "lobster",
    "magnet", "mango", "maple", "meadow", "melon", "meteor", "mitten", "mosaic", "muffin", "mustard", "nectar",
    "noodle", "nutmeg", "oak", "olive", "onion", "orchid", "otter", "owl", "paddle", "palace", "panda", "papaya",
    "peach", "peanut", "pearl", "pebble", "pelican", "penguin", "pickle", "pigeon", "pillow", "pine", "pirate",
    "pizza", "plum", "pocket", "pony", "poppy", "potato", "puddle", "pumpkin", "puppet", "quilt", "raccoon",
    "radish", "raisin", "raven", "ribbon", "robot", "rooster", "ruby", "saffron", "sapphire", "satin", "scooter",
    "seashell", "shadow", "sheep", "shovel", "skate", "sled", "snail", "sparrow", "spider", "spinach", "sponge",
    "squirrel", "starfish", "statue", "sugar", "summer", "sunset", "swan", "sweater", "tablet", "teapot",
    "thimble", "thunder", "timber", "tomato", "topaz", "tractor", "trumpet", "tulip", "turnip", "turtle",
    "umbrella", "unicorn", "valley", "vanilla", "velvet", "village", "vinegar", "volcano", "waffle", "walnut",
    "walrus", "weasel", "whale", "whistle", "willow", "winter", "wizard", "wolf", "wool", "yogurt", "basil",
    "bison", "blossom", "cargo", "cello", "cricket", "dune", "flute", "gecko", "harp", "jade", "kayak", "lagoon",
    "llama", "moth", "nugget", "oyster", "parsley", "quiver", "reef", "scarlet", "tundra", "vapor", "wren",
    "alpine", "apron", "atlas", "ballet", "banjo", "biscuit", "bolt", "cannon", "cavern", "chalk", "compass",
    "cookie", "crane", "crown", "dagger", "dial", "drum", "fern", "fig", "frost", "goose", "harbor", "hive",
    "ink", "jar", "kernel", "knot", "lens", "loom", "mast", "mint", "moss", "nest", "orbit", "pail", "prism",
    "quill", "rake", "sail", "scroll", "shrub", "slate", "spoon", "stool", "thorn", "torch", "tray", "vase",
    "wheel", "yarn"};

// Plain filler: subjects, verbs and endings that make ordinary sentences with a wide vocabulary.
const Words kFillerVerbs = {"likes", "found", "painted", "bought", "lost", "cleaned", "carried", "wanted",
                            "borrowed", "noticed", "repaired", "hid", "described", "ordered", "packed", "watched"};
const Words kTimes = {"in the morning", "at noon", "in the evening", "on Monday", "on Friday", "last week",
                      "after lunch", "before dinner", "every day", "at night", "in spring", "in winter"};
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
    for (auto at = s.find("{OP}"); at != std::string::npos; at = s.find("{OP}", at))
        s.replace(at, 4, rng.pick(kOpeners));
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
        // A third of them put random words in the name slots: the answer is then whichever word is not
        // repeated, which no memory of names seen as indirect objects can supply. That copying is what
        // carries over to held-out names.
        const Words& names = rng.below(3) == 0 ? kRandomWords : kTrainingNames;
        return fillIoi(rng.pick(kTrainingIoiTemplates), rng, names, &io, &subject);
    }
    case SentenceKind::Induction: {
        const int n = 3 + static_cast<int>(rng.below(14));
        std::string seq;
        // A quarter of the words are names, held-out names included: the copying that induction
        // learns then covers every name, which the indirect-object circuit can build on.
        for (int i = 0; i < n; ++i)
            seq += (i ? " " : "") + (rng.below(4) == 0 ? allNames(rng) : rng.pick(kRandomWords));
        // Half the repetitions follow a full stop, half follow directly: induction must not wait
        // for a sentence boundary (the evaluation repeats with no separator).
        return seq + (rng.below(2) == 0 ? ". " : " ") + seq + ".";
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
        switch (rng.below(8)) {
        case 7:
            // "Later," shares its contexts with the other openers, and no indirect-object sentence ties
            // it to a role (an earlier corpus had it only before the giver, and the model answered the
            // held-out "Later, A and B …" shape by position: 45 % top-1 against 99–100 % on the others).
            return rng.below(2) == 0
                       ? (rng.below(3) == 0 ? std::string("Later") : rng.pick(kOpeners)) + ", " + allNames(rng) + " " +
                             rng.pick(kFillerVerbs) + " the " + rng.pick(kObjects) + "."
                       : "Later, the " + rng.pick(kObjects) + " was given to " + rng.pick(kTrainingNames) + ".";
        case 6: {
            // One name, repeated: copying a name with no second name to tell apart (not IOI).
            const std::string name = allNames(rng);
            return name + " came to the " + rng.pick(kPlaces) + ", and everyone was glad to see " + name + ".";
        }
        case 0:
            return allNames(rng) + " likes the " + rng.pick(kAdjectives) + " " + rng.pick(kObjects) + ".";
        case 1:
            return allNames(rng) + " walked to the " + rng.pick(kPlaces) + " " + rng.pick(kTimes) + ".";
        case 2:
            return "The " + rng.pick(kObjects) + " at the " + rng.pick(kPlaces) + " is " + rng.pick(kAdjectives) + ".";
        case 3:
            return allNames(rng) + " and " + allNames(rng) + " live near the " + rng.pick(kPlaces) + ".";
        case 4:
            return allNames(rng) + " " + rng.pick(kFillerVerbs) + " a " + rng.pick(kAdjectives) + " " +
                   rng.pick(kRandomWords) + " " + rng.pick(kTimes) + ".";
        default:
            return "A " + rng.pick(kRandomWords) + " and a " + rng.pick(kRandomWords) + " were near the " +
                   rng.pick(kPlaces) + ".";
        }
    }
    return {};
}

SentenceKind drawKind(Rng& rng)
{
    const auto r = rng.below(100);
    if (r < 45)
        return SentenceKind::IndirectObject;
    if (r < 75)
        return SentenceKind::Induction;
    if (r < 82)
        return SentenceKind::Fact;
    if (r < 88)
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
        p.shape = static_cast<int>(static_cast<std::size_t>(i) % kHeldOutIoiTemplates.size());
        p.answer = " " + io;
        p.distractor = " " + subject;
        prompts.push_back(std::move(p));
    }
    return prompts;
}

std::vector<IoiPrompt> heldOutTemplatePrompts(std::uint64_t seed, int count)
{
    Rng rng(seed ^ 0x7e3'9a1e'5ULL);
    std::vector<IoiPrompt> prompts;
    for (int i = 0; i < count; ++i) {
        IoiPrompt p;
        std::string io, subject;
        p.prompt = fillIoi(kHeldOutIoiTemplates[static_cast<std::size_t>(i) % kHeldOutIoiTemplates.size()], rng,
                           kTrainingNames, &io, &subject);
        p.shape = static_cast<int>(static_cast<std::size_t>(i) % kHeldOutIoiTemplates.size());
        p.answer = " " + io;
        p.distractor = " " + subject;
        prompts.push_back(std::move(p));
    }
    return prompts;
}

std::vector<IoiPrompt> trainingIoiPrompts(std::uint64_t seed, int count)
{
    Rng rng(seed ^ 0x7a1'11'0e5ULL);
    std::vector<IoiPrompt> prompts;
    for (int i = 0; i < count; ++i) {
        IoiPrompt p;
        std::string io, subject;
        const std::string sentence =
            fillIoi(kTrainingIoiTemplates[static_cast<std::size_t>(i) % kTrainingIoiTemplates.size()], rng,
                    kTrainingNames, &io, &subject);
        // Every training template ends with " {IO}."; the prompt stops before the name.
        p.prompt = sentence.substr(0, sentence.size() - io.size() - 2);
        p.answer = " " + io;
        p.distractor = " " + subject;
        p.shape = static_cast<int>(static_cast<std::size_t>(i) % kTrainingIoiTemplates.size());
        prompts.push_back(std::move(p));
    }
    return prompts;
}

const std::vector<std::string>& heldOutIoiShapes() { return kHeldOutIoiTemplates; }
const std::vector<std::string>& trainingNames() { return kTrainingNames; }
const std::vector<std::string>& heldOutNames() { return kHeldOutNames; }
const std::vector<std::string>& randomWords() { return kRandomWords; }

} // namespace cs::train
