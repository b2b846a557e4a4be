#include "core/io/torch_pickle.h"

#include "core/util/errors.h"
#include "core/util/files.h"

#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace cs {

// ---------------------------------------------------------------------------------------------------
// TorchValue

namespace {

[[noreturn]] void typeMismatch(const char* wanted, const TorchValue& v)
{
    throw InputError(std::string("expected ") + wanted + ", found " + v.typeName());
}

} // namespace

bool TorchValue::asBool() const
{
    if (auto p = std::get_if<bool>(&value))
        return *p;
    typeMismatch("a bool", *this);
}

int64_t TorchValue::asInt() const
{
    if (auto p = std::get_if<int64_t>(&value))
        return *p;
    typeMismatch("an int", *this);
}

double TorchValue::asDouble() const
{
    if (auto p = std::get_if<double>(&value))
        return *p;
    if (auto p = std::get_if<int64_t>(&value))
        return static_cast<double>(*p);
    typeMismatch("a float", *this);
}

const std::string& TorchValue::asString() const
{
    if (auto p = std::get_if<std::string>(&value))
        return *p;
    typeMismatch("a string", *this);
}

const at::Tensor& TorchValue::asTensor() const
{
    if (auto p = std::get_if<at::Tensor>(&value))
        return *p;
    typeMismatch("a tensor", *this);
}

const TorchValue::List& TorchValue::asList() const
{
    if (auto p = std::get_if<List>(&value))
        return *p;
    typeMismatch("a list", *this);
}

const TorchValue::Dict& TorchValue::asDict() const
{
    if (auto p = std::get_if<Dict>(&value))
        return *p;
    typeMismatch("a dict", *this);
}

const TorchValue* TorchValue::find(std::string_view key) const
{
    const auto* dict = std::get_if<Dict>(&value);
    if (!dict)
        return nullptr;
    for (const auto& [k, v] : *dict) {
        if (const auto* s = std::get_if<std::string>(&k.value); s && *s == key)
            return &v;
    }
    return nullptr;
}

const char* TorchValue::typeName() const
{
    static constexpr const char* names[] = {"None", "bool", "int", "float", "str", "tensor", "list", "dict"};
    return names[value.index()];
}

const at::Tensor* TorchStateDict::find(std::string_view key) const
{
    for (const auto& [name, tensor] : tensors) {
        if (name == key)
            return &tensor;
    }
    return nullptr;
}

namespace {

// ---------------------------------------------------------------------------------------------------
// Limits. A checkpoint pickle is small and shallow (GPT-2 XL's is ~100 KB, nesting < 10), so these are
// far above anything legitimate and exist only to turn hostile input into an error instead of memory
// exhaustion or a stack overflow.

constexpr uint64_t kMaxPickleBytes = 64ull << 20;
constexpr size_t kMaxStack = size_t{1} << 20;
constexpr size_t kMaxMarkDepth = 1000;
constexpr size_t kMaxMemo = size_t{1} << 22;
constexpr size_t kMaxObjects = size_t{1} << 22;
constexpr int kMaxNesting = 200;            // containers within containers in the result
constexpr size_t kMaxDims = 64;
constexpr size_t kMaxGlobalPart = 256;      // characters in a GLOBAL module or name
constexpr size_t kMaxKeyEncoding = 1 << 20; // bytes of a dict key's canonical form
constexpr uint64_t kMaxCentralDirectory = 256ull << 20;
constexpr uint64_t kMaxSmallRecord = 4096;  // byteorder and similar one-word records

// Raised inside the reader; loadTorchFile prefixes the file name and turns it into an InputError.
class FileProblem : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

std::string firstLine(const std::string& text)
{
    const auto end = text.find('\n');
    return end == std::string::npos ? text : text.substr(0, end);
}

uint16_t le16(const unsigned char* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) { return uint32_t(le16(p)) | (uint32_t(le16(p + 2)) << 16); }
uint64_t le64(const unsigned char* p) { return uint64_t(le32(p)) | (uint64_t(le32(p + 4)) << 32); }

// ---------------------------------------------------------------------------------------------------
// Zip central directory. PyTorchStreamReader allocates whatever size a record's header claims before
// reading it, so every record's size is checked here against the bytes the file really has first.

struct ZipEntry {
    uint16_t method = 0;
    uint64_t size = 0;      // uncompressed
    uint64_t dataStart = 0; // file offset of the (compressed) bytes
};

struct ZipIndex {
    std::vector<std::string> names; // central-directory order
    std::unordered_map<std::string, ZipEntry> entries;
};

// The zip container's own structures, read through InputFile (bounds checked against the size at open,
// a file that shrinks meanwhile is an InputError naming it). Records are read by libtorch's stream reader.
class RawFile {
public:
    explicit RawFile(const std::filesystem::path& path) : file_(path) {}

    void read(uint64_t pos, void* buffer, uint64_t n, const char* what)
    {
        if (pos > size() || n > size() - pos)
            throw FileProblem(std::string("corrupt zip archive: ") + what + " lies outside the file");
        file_.readAt(pos, buffer, n);
    }

    uint64_t size() const { return file_.size(); }

private:
    InputFile file_;
};

ZipIndex scanZip(RawFile& file)
{
    constexpr uint32_t kEocdSig = 0x06054b50, kLocatorSig = 0x07064b50, kEocd64Sig = 0x06064b50;
    constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
    const uint64_t size = file.size();

    const uint64_t tailSize = std::min<uint64_t>(size, 22 + 0xFFFF + 20);
    std::vector<unsigned char> tail(tailSize);
    file.read(size - tailSize, tail.data(), tailSize, "end of archive");
    std::optional<size_t> eocd;
    for (size_t i = tailSize >= 22 ? tailSize - 22 + 1 : 0; i-- > 0;) {
        if (le32(&tail[i]) == kEocdSig && i + 22 + le16(&tail[i + 20]) <= tailSize) {
            eocd = i;
            break;
        }
    }
    if (!eocd)
        throw FileProblem("not a zip archive (no end-of-central-directory record)");

    const unsigned char* e = &tail[*eocd];
    uint64_t count = le16(e + 10), cdSize = le32(e + 12), cdOffset = le32(e + 16);
    if (*eocd >= 20 && le32(&tail[*eocd - 20]) == kLocatorSig) {
        std::array<unsigned char, 56> z64{};
        file.read(le64(&tail[*eocd - 20 + 8]), z64.data(), z64.size(), "zip64 end-of-central-directory record");
        if (le32(z64.data()) != kEocd64Sig)
            throw FileProblem("corrupt zip archive: bad zip64 end-of-central-directory record");
        count = le64(&z64[32]);
        cdSize = le64(&z64[40]);
        cdOffset = le64(&z64[48]);
    } else if (count == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF) {
        throw FileProblem("corrupt zip archive: zip64 record missing");
    }
    if (cdSize > kMaxCentralDirectory)
        throw FileProblem("corrupt zip archive: central directory too large");
    if (count > cdSize / 46)
        throw FileProblem("corrupt zip archive: entry count does not fit the central directory");

    std::vector<unsigned char> cd(cdSize);
    file.read(cdOffset, cd.data(), cdSize, "central directory");

    ZipIndex index;
    size_t pos = 0;
    for (uint64_t n = 0; n < count; ++n) {
        if (cdSize - pos < 46 || le32(&cd[pos]) != kCentralSig)
            throw FileProblem("corrupt zip archive: bad central directory entry");
        const unsigned char* c = &cd[pos];
        const uint16_t flags = le16(c + 8), method = le16(c + 10);
        uint64_t compressed = le32(c + 20), uncompressed = le32(c + 24), localOffset = le32(c + 42);
        const size_t nameLen = le16(c + 28), extraLen = le16(c + 30), commentLen = le16(c + 32);
        if (cdSize - pos - 46 < nameLen + extraLen + commentLen)
            throw FileProblem("corrupt zip archive: central directory entry overruns the directory");
        std::string name(reinterpret_cast<const char*>(c + 46), nameLen);

        // The zip64 extra field holds, in this order, only those sizes whose 32-bit slot is saturated.
        const unsigned char* x = c + 46 + nameLen;
        for (size_t off = 0; off + 4 <= extraLen;) {
            const uint16_t id = le16(x + off), len = le16(x + off + 2);
            if (off + 4 + len > extraLen)
                break;
            if (id == 0x0001) {
                const unsigned char* f = x + off + 4;
                size_t left = len;
                for (uint64_t* field : {&uncompressed, &compressed, &localOffset}) {
                    if (*field != 0xFFFFFFFF)
                        continue;
                    if (left < 8)
                        throw FileProblem("corrupt zip archive: short zip64 extra field for " + name);
                    *field = le64(f);
                    f += 8;
                    left -= 8;
                }
            }
            off += 4 + len;
        }
        pos += 46 + nameLen + extraLen + commentLen;

        if (flags & 1)
            throw FileProblem("encrypted zip entry " + name);
        if (method == 0) {
            if (compressed != uncompressed)
                throw FileProblem("corrupt zip archive: stored entry " + name + " has inconsistent sizes");
        } else if (method == 8) {
            // Deflate cannot expand more than ~1032:1; a larger claim is a lie meant to force an allocation.
            if (compressed > size || uncompressed / 1032 > compressed + 1)
                throw FileProblem("corrupt zip archive: impossible size for compressed entry " + name);
        } else {
            throw FileProblem("zip entry " + name + " uses unsupported compression method " + std::to_string(method));
        }

        std::array<unsigned char, 30> local{};
        file.read(localOffset, local.data(), local.size(), "local file header");
        if (le32(local.data()) != kLocalSig)
            throw FileProblem("corrupt zip archive: bad local header for " + name);
        const uint64_t dataStart = localOffset + 30 + le16(&local[26]) + le16(&local[28]);
        if (dataStart > size || compressed > size - dataStart)
            throw FileProblem("corrupt zip archive: data of " + name + " extends past the end of the file");

        if (!index.entries.emplace(name, ZipEntry{method, uncompressed, dataStart}).second)
            throw FileProblem("corrupt zip archive: duplicate entry " + name);
        index.names.push_back(std::move(name));
    }
    return index;
}

// The archive folder is named after the file torch.save wrote (pytorch_model/, archive/, ...).
std::string archivePrefix(const ZipIndex& zip)
{
    std::string prefix;
    for (const std::string& name : zip.names) {
        const auto slash = name.find('/');
        if (slash != std::string::npos && slash > 0 && name.substr(slash) == "/data.pkl") {
            if (!prefix.empty())
                throw FileProblem("archive holds more than one data.pkl");
            prefix = name.substr(0, slash);
        }
    }
    if (prefix.empty())
        throw FileProblem("zip archive holds no <folder>/data.pkl; not a torch.save checkpoint");
    for (const std::string& name : zip.names) {
        if (name.compare(0, prefix.size() + 1, prefix + "/") != 0)
            throw FileProblem("archive entry " + name + " is outside the archive folder " + prefix + "/");
    }
    return prefix;
}

// PyTorchStreamReader's constructor checks the version record itself, but when that check fails it
// throws without releasing its zip state (a leak per bad file in libtorch 1.13) and a non-numeric
// version escapes as std::invalid_argument; so the record is checked here first.
void checkVersionRecord(RawFile& file, const ZipIndex& zip, const std::string& prefix)
{
    const ZipEntry* version = nullptr;
    for (const char* name : {"/.data/version", "/version"}) {
        auto it = zip.entries.find(prefix + name);
        if (it != zip.entries.end()) {
            version = &it->second;
            break;
        }
    }
    if (!version)
        throw FileProblem("archive has no version record; not a torch.save checkpoint");
    if (version->method != 0)
        return; // compressed by some zip tool: the reader's own check has to do
    if (version->size == 0 || version->size > 32)
        throw FileProblem("archive version record is malformed");
    std::string text(version->size, '\0');
    file.read(version->dataStart, text.data(), text.size(), "version record");
    uint64_t value = 0;
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        value = value * 10 + uint64_t(text[digits++] - '0');
    const bool onlySpaceAfter = std::all_of(text.begin() + static_cast<std::ptrdiff_t>(digits), text.end(),
                                            [](char c) { return c == '\n' || c == '\r' || c == ' '; });
    if (digits == 0 || digits > 6 || !onlySpaceAfter)
        throw FileProblem("archive version record is malformed");
    if (value < caffe2::serialize::kMinSupportedFileFormatVersion ||
        value > caffe2::serialize::kMaxSupportedFileFormatVersion)
        throw FileProblem("archive format version " + std::to_string(value) + " is not supported by libtorch " +
                          "1.13 (supported: " + std::to_string(caffe2::serialize::kMinSupportedFileFormatVersion) +
                          " to " + std::to_string(caffe2::serialize::kMaxSupportedFileFormatVersion) + ")");
}

// ---------------------------------------------------------------------------------------------------
// Records

struct Record {
    at::DataPtr data;
    uint64_t size = 0;
};

class Archive {
public:
    Archive(const std::filesystem::path& path, const ZipIndex& zip, std::string prefix)
        : zip_(zip), prefix_(std::move(prefix)), reader_(path.string())
    {
    }

    bool has(const std::string& name) const { return zip_.entries.count(prefix_ + "/" + name) > 0; }

    const ZipEntry* entry(const std::string& name) const
    {
        auto it = zip_.entries.find(prefix_ + "/" + name);
        return it == zip_.entries.end() ? nullptr : &it->second;
    }

    Record read(const std::string& name, uint64_t maxSize)
    {
        const ZipEntry* e = entry(name);
        if (!e)
            throw FileProblem("archive has no record " + prefix_ + "/" + name);
        if (e->size > maxSize)
            throw FileProblem("record " + prefix_ + "/" + name + " is implausibly large (" + std::to_string(e->size) +
                              " bytes)");
        auto [data, size] = reader_.getRecord(name);
        if (size != e->size)
            throw FileProblem("record " + prefix_ + "/" + name + " has an inconsistent size");
        return Record{std::move(data), size};
    }

    const std::string& prefix() const { return prefix_; }

private:
    const ZipIndex& zip_;
    std::string prefix_;
    caffe2::serialize::PyTorchStreamReader reader_;
};

// ---------------------------------------------------------------------------------------------------
// The pickle machine. Objects live in one flat arena and refer to each other by index, so that shared
// and even self-referencing containers (which a pickle can express) neither leak nor recurse when freed;
// the result is copied out into TorchValues with a nesting and size bound.

enum class Kind : uint8_t { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };

enum class Callable : uint8_t { OrderedDict, RebuildTensorV2, RebuildTensor, RebuildParameter, StorageClass };

struct Obj {
    Kind kind = Kind::None;
    int64_t i = 0;                    // Int, Bool; Global: Callable; Storage: index into storages
    double f = 0;                     // Float
    std::string s;                    // String; Global: dotted name for messages
    std::vector<uint32_t> items;      // Tuple and List elements; Dict keys and values alternating
    at::Tensor tensor;                // Tensor
    at::ScalarType dtype = at::ScalarType::Undefined; // Global StorageClass
    std::unique_ptr<std::unordered_map<std::string, size_t>> keys; // Dict: key's canonical form -> position
};

struct StorageRef {
    at::Storage storage;
    at::ScalarType dtype;
    int64_t numel; // elements of dtype the pickle declares
};

struct LoadedStorage {
    at::Storage storage;
    uint64_t bytes;
};

using StorageLoader = std::function<const LoadedStorage&(const std::string& key)>;

std::optional<at::ScalarType> storageClassDtype(const std::string& name)
{
    static const std::unordered_map<std::string, at::ScalarType> classes = {
        {"FloatStorage", at::kFloat},   {"HalfStorage", at::kHalf},   {"BFloat16Storage", at::kBFloat16},
        {"DoubleStorage", at::kDouble}, {"LongStorage", at::kLong},   {"IntStorage", at::kInt},
        {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},   {"ByteStorage", at::kByte},
        {"BoolStorage", at::kBool},
    };
    auto it = classes.find(name);
    return it == classes.end() ? std::nullopt : std::optional(it->second);
}

bool isDtypeName(const std::string& name)
{
    static const std::unordered_set<std::string> dtypes = {
        "float32", "float", "float16", "half",  "bfloat16", "float64", "double", "int64",
        "long",    "int32", "int",     "int16", "short",    "int8",    "uint8",  "bool",
    };
    return dtypes.count(name) > 0;
}

class Unpickler {
public:
    Unpickler(const unsigned char* data, size_t size, StorageLoader loader)
        : data_(data), size_(size), loader_(std::move(loader))
    {
    }

    uint32_t run();
    TorchValue convert(uint32_t id);

private:
    [[noreturn]] void fail(const std::string& message) const
    {
        if (converting_)
            throw FileProblem("data.pkl: " + message);
        throw FileProblem("data.pkl: " + message + " (opcode at byte " + std::to_string(opStart_) + ")");
    }

    // -- input
    const unsigned char* take(size_t n)
    {
        if (n > size_ - pos_)
            fail("truncated pickle: needs " + std::to_string(n) + " more bytes, " + std::to_string(size_ - pos_) +
                 " left");
        const unsigned char* p = data_ + pos_;
        pos_ += n;
        return p;
    }
    uint8_t u8() { return *take(1); }
    std::string bytes(uint64_t n)
    {
        // Checked against the data present before anything is allocated.
        if (n > size_ - pos_)
            fail("truncated pickle: string of " + std::to_string(n) + " bytes, only " + std::to_string(size_ - pos_) +
                 " left");
        const unsigned char* p = take(static_cast<size_t>(n));
        return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    std::string line()
    {
        const size_t limit = std::min(size_ - pos_, kMaxGlobalPart + 1);
        const void* nl = std::memchr(data_ + pos_, '\n', limit);
        if (!nl)
            fail("GLOBAL name missing its newline or longer than " + std::to_string(kMaxGlobalPart) + " characters");
        const size_t n = static_cast<const unsigned char*>(nl) - (data_ + pos_);
        std::string s = bytes(n);
        pos_ += 1;
        return s;
    }

    // -- objects and stack
    uint32_t make(Kind kind)
    {
        if (objects_.size() >= kMaxObjects)
            fail("too many objects in pickle");
        objects_.emplace_back();
        objects_.back().kind = kind;
        return static_cast<uint32_t>(objects_.size() - 1);
    }
    uint32_t makeInt(int64_t v)
    {
        const uint32_t id = make(Kind::Int);
        objects_[id].i = v;
        return id;
    }
    uint32_t makeString(std::string s)
    {
        const uint32_t id = make(Kind::String);
        objects_[id].s = std::move(s);
        return id;
    }
    void push(uint32_t id)
    {
        if (stack_.size() >= kMaxStack)
            fail("pickle stack deeper than " + std::to_string(kMaxStack));
        stack_.push_back(id);
    }
    uint32_t pop()
    {
        if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
            fail("pickle stack underflow");
        const uint32_t id = stack_.back();
        stack_.pop_back();
        return id;
    }
    uint32_t top()
    {
        if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
            fail("pickle stack underflow");
        return stack_.back();
    }
    size_t popMark()
    {
        if (marks_.empty())
            fail("pickle pops a MARK that was never set");
        const size_t m = marks_.back();
        marks_.pop_back();
        return m;
    }
    // The items above the latest MARK, removed from the stack.
    std::vector<uint32_t> popToMark()
    {
        const size_t m = popMark();
        std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
        stack_.resize(m);
        return items;
    }
    uint32_t makeTuple(std::vector<uint32_t> items)
    {
        const uint32_t id = make(Kind::Tuple);
        objects_[id].items = std::move(items);
        return id;
    }

    // -- operations
    void global(const std::string& module, const std::string& name);
    void setItem(uint32_t dict, uint32_t key, uint32_t value);
    void appendCanonicalKey(uint32_t id, std::string& out, int depth);
    void persistentLoad();
    void reduce();
    void build();
    uint32_t rebuildTensor(const std::vector<uint32_t>& args);
    int64_t intArg(uint32_t id, const char* what);
    std::vector<int64_t> intTuple(uint32_t id, const char* what);
    TorchValue convert(uint32_t id, int depth);

    const unsigned char* data_;
    size_t size_;
    size_t pos_ = 0;
    size_t opStart_ = 0;
    StorageLoader loader_;
    std::vector<Obj> objects_;
    std::vector<uint32_t> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, uint32_t> memo_;
    std::vector<StorageRef> storages_;
    uint64_t convertBudget_ = 0;
    bool converting_ = false;
};

uint32_t Unpickler::run()
{
    while (pos_ < size_) {
        opStart_ = pos_;
        const uint8_t op = u8();
        switch (op) {
        case 0x80: { // PROTO
            const uint8_t version = u8();
            if (version > 5)
                fail("unsupported pickle protocol " + std::to_string(version));
            break;
        }
        case 0x95: { // FRAME: framing is only a hint to buffered readers
            const uint64_t n = le64(take(8));
            if (n > size_ - pos_)
                fail("truncated pickle: frame longer than the data");
            break;
        }
        case '.': // STOP
            return pop();
        case '(': // MARK
            if (marks_.size() >= kMaxMarkDepth)
                fail("MARKs nested deeper than " + std::to_string(kMaxMarkDepth));
            marks_.push_back(stack_.size());
            break;
        case '0': // POP
            pop();
            break;
        case '1': // POP_MARK
            stack_.resize(popMark());
            break;
        case '2': // DUP
            push(top());
            break;
        case 'N':
            push(make(Kind::None));
            break;
        case 0x88: // NEWTRUE
        case 0x89: { // NEWFALSE
            const uint32_t id = make(Kind::Bool);
            objects_[id].i = op == 0x88;
            push(id);
            break;
        }
        case 'J': // BININT
            push(makeInt(static_cast<int32_t>(le32(take(4)))));
            break;
        case 'K': // BININT1
            push(makeInt(u8()));
            break;
        case 'M': // BININT2
            push(makeInt(le16(take(2))));
            break;
        case 0x8a:   // LONG1
        case 0x8b: { // LONG4
            const int64_t n = op == 0x8a ? u8() : static_cast<int32_t>(le32(take(4)));
            if (n < 0 || n > 8)
                fail("integer wider than 64 bits");
            const unsigned char* p = take(static_cast<size_t>(n));
            uint64_t v = 0;
            for (int64_t k = 0; k < n; ++k)
                v |= uint64_t(p[k]) << (8 * k);
            if (n > 0 && n < 8 && (p[n - 1] & 0x80))
                v |= ~uint64_t(0) << (8 * n); // two's complement sign extension
            push(makeInt(static_cast<int64_t>(v)));
            break;
        }
        case 'G': { // BINFLOAT, big-endian
            const unsigned char* p = take(8);
            uint64_t bits = 0;
            for (int k = 0; k < 8; ++k)
                bits = (bits << 8) | p[k];
            const uint32_t id = make(Kind::Float);
            std::memcpy(&objects_[id].f, &bits, sizeof bits);
            push(id);
            break;
        }
        case 'X': // BINUNICODE
        case 'B': // BINBYTES
        case 'T': // BINSTRING
            push(makeString(bytes(le32(take(4)))));
            break;
        case 0x8c: // SHORT_BINUNICODE
        case 'C':  // SHORT_BINBYTES
        case 'U':  // SHORT_BINSTRING
            push(makeString(bytes(u8())));
            break;
        case 0x8d: // BINUNICODE8
        case 0x8e: // BINBYTES8
            push(makeString(bytes(le64(take(8)))));
            break;
        case ')': // EMPTY_TUPLE
            push(makeTuple({}));
            break;
        case 't': // TUPLE
            push(makeTuple(popToMark()));
            break;
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: { // TUPLE3
            std::vector<uint32_t> items(size_t(op - 0x84));
            for (size_t k = items.size(); k-- > 0;)
                items[k] = pop();
            push(makeTuple(std::move(items)));
            break;
        }
        case ']': // EMPTY_LIST
            push(make(Kind::List));
            break;
        case 'l': { // LIST
            auto items = popToMark();
            const uint32_t id = make(Kind::List);
            objects_[id].items = std::move(items);
            push(id);
            break;
        }
        case 'a': { // APPEND
            const uint32_t item = pop();
            const uint32_t list = top();
            if (objects_[list].kind != Kind::List)
                fail("APPEND to something that is not a list");
            objects_[list].items.push_back(item);
            break;
        }
        case 'e': { // APPENDS
            auto items = popToMark();
            const uint32_t list = top();
            if (objects_[list].kind != Kind::List)
                fail("APPENDS to something that is not a list");
            auto& dst = objects_[list].items;
            dst.insert(dst.end(), items.begin(), items.end());
            break;
        }
        case '}': // EMPTY_DICT
            push(make(Kind::Dict));
            break;
        case 'd': { // DICT
            auto items = popToMark();
            if (items.size() % 2)
                fail("DICT with an odd number of items");
            const uint32_t dict = make(Kind::Dict);
            for (size_t k = 0; k < items.size(); k += 2)
                setItem(dict, items[k], items[k + 1]);
            push(dict);
            break;
        }
        case 's': { // SETITEM
            const uint32_t value = pop();
            const uint32_t key = pop();
            setItem(top(), key, value);
            break;
        }
        case 'u': { // SETITEMS
            auto items = popToMark();
            if (items.size() % 2)
                fail("SETITEMS with an odd number of items");
            const uint32_t dict = top();
            for (size_t k = 0; k < items.size(); k += 2)
                setItem(dict, items[k], items[k + 1]);
            break;
        }
        case 'c': { // GLOBAL
            std::string module = line();
            std::string name = line();
            global(module, name);
            break;
        }
        case 0x93: { // STACK_GLOBAL
            const uint32_t name = pop();
            const uint32_t module = pop();
            if (objects_[name].kind != Kind::String || objects_[module].kind != Kind::String)
                fail("STACK_GLOBAL needs two strings");
            if (objects_[module].s.size() > kMaxGlobalPart || objects_[name].s.size() > kMaxGlobalPart)
                fail("STACK_GLOBAL name too long");
            // Copies: global() appends to objects_, which may reallocate under references into it.
            const std::string moduleName = objects_[module].s, globalName = objects_[name].s;
            global(moduleName, globalName);
            break;
        }
        case 'Q': // BINPERSID
            persistentLoad();
            break;
        case 'R': // REDUCE
            reduce();
            break;
        case 'b': // BUILD
            build();
            break;
        case 'q':   // BINPUT
        case 'r':   // LONG_BINPUT
        case 0x94: { // MEMOIZE
            const uint64_t key = op == 'q' ? u8() : op == 'r' ? le32(take(4)) : memo_.size();
            if (memo_.size() >= kMaxMemo && !memo_.count(key))
                fail("pickle memo larger than " + std::to_string(kMaxMemo) + " entries");
            memo_[key] = top();
            break;
        }
        case 'h':   // BINGET
        case 'j': { // LONG_BINGET
            const uint64_t key = op == 'h' ? u8() : le32(take(4));
            auto it = memo_.find(key);
            if (it == memo_.end())
                fail("memo entry " + std::to_string(key) + " used before it was stored");
            push(it->second);
            break;
        }
        default: {
            static const char* hex = "0123456789abcdef";
            fail(std::string("unsupported pickle opcode 0x") + hex[op >> 4] + hex[op & 15] +
                 " (only what torch.save writes is understood)");
        }
        }
    }
    opStart_ = pos_;
    fail("truncated pickle: no STOP opcode");
}

void Unpickler::global(const std::string& module, const std::string& name)
{
    const uint32_t id = make(Kind::Global);
    Obj& g = objects_[id];
    g.s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
        g.i = int64_t(Callable::OrderedDict);
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
        g.i = int64_t(Callable::RebuildTensorV2);
    } else if (module == "torch._utils" && name == "_rebuild_tensor") {
        g.i = int64_t(Callable::RebuildTensor);
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
        g.i = int64_t(Callable::RebuildParameter);
    } else if (module == "torch" && storageClassDtype(name)) {
        g.i = int64_t(Callable::StorageClass);
        g.dtype = *storageClassDtype(name);
    } else if (module == "torch" && isDtypeName(name)) {
        // A dtype is a plain value in a checkpoint (e.g. a config's torch_dtype); keep it as its name.
        g.kind = Kind::String;
        g.s = "torch." + name;
    } else {
        std::string hint;
        if (module.rfind("__torch__", 0) == 0 || module.rfind("torch.jit", 0) == 0)
            hint = " (this looks like a TorchScript archive; save a state_dict with torch.save instead)";
        fail("refused global " + module + "." + name +
             ": only tensor rebuilders, torch storage classes and collections.OrderedDict are allowed, and nothing "
             "in the file is executed" +
             hint);
    }
    push(id);
}

// Python dicts collapse equal keys (and 1 == 1.0 == True); mirror that for the hashable kinds.
void Unpickler::appendCanonicalKey(uint32_t id, std::string& out, int depth)
{
    if (depth > 16 || out.size() > kMaxKeyEncoding)
        fail("dict key too large or too deeply nested");
    const Obj& o = objects_[id];
    switch (o.kind) {
    case Kind::None:
        out += 'n';
        return;
    case Kind::Bool:
    case Kind::Int:
        out += 'i' + std::to_string(o.i) + ';';
        return;
    case Kind::Float:
        if (o.f == o.f && o.f >= -9.2e18 && o.f <= 9.2e18 && o.f == double(int64_t(o.f))) {
            out += 'i' + std::to_string(int64_t(o.f)) + ';';
        } else {
            char raw[sizeof(double)];
            std::memcpy(raw, &o.f, sizeof raw);
            out += 'f';
            out.append(raw, sizeof raw);
        }
        return;
    case Kind::String:
        if (o.s.size() > kMaxKeyEncoding)
            fail("dict key too large");
        out += 's' + std::to_string(o.s.size()) + ':';
        out += o.s;
        return;
    case Kind::Tuple:
        out += 't' + std::to_string(o.items.size()) + ':';
        for (uint32_t item : o.items)
            appendCanonicalKey(item, out, depth + 1);
        return;
    default:
        fail("unsupported dict key type (only None, bool, int, float, str and tuples of these)");
    }
}

void Unpickler::setItem(uint32_t dict, uint32_t key, uint32_t value)
{
    if (objects_[dict].kind != Kind::Dict)
        fail("SETITEM on something that is not a dict");
    std::string canonical;
    appendCanonicalKey(key, canonical, 0);
    Obj& d = objects_[dict];
    if (!d.keys)
        d.keys = std::make_unique<std::unordered_map<std::string, size_t>>();
    auto [it, inserted] = d.keys->emplace(std::move(canonical), d.items.size());
    if (inserted) {
        d.items.push_back(key);
        d.items.push_back(value);
    } else {
        d.items[it->second + 1] = value; // Python keeps the first key and its position
    }
}

int64_t Unpickler::intArg(uint32_t id, const char* what)
{
    const Obj& o = objects_[id];
    if (o.kind != Kind::Int)
        fail(std::string(what) + " is not an int");
    return o.i;
}

std::vector<int64_t> Unpickler::intTuple(uint32_t id, const char* what)
{
    const Obj& o = objects_[id];
    if (o.kind != Kind::Tuple && o.kind != Kind::List)
        fail(std::string(what) + " is not a tuple");
    if (o.items.size() > kMaxDims)
        fail(std::string(what) + " has more than " + std::to_string(kMaxDims) + " dimensions");
    std::vector<int64_t> out;
    for (uint32_t item : o.items)
        out.push_back(intArg(item, what));
    return out;
}

// Persistent ids are ('storage', StorageClass, key, location, numel): a typed view of archive/data/<key>.
void Unpickler::persistentLoad()
{
    const uint32_t pidId = pop();
    const Obj& pid = objects_[pidId];
    if (pid.kind != Kind::Tuple || pid.items.size() != 5 || objects_[pid.items[0]].kind != Kind::String ||
        objects_[pid.items[0]].s != "storage")
        fail("persistent id is not a ('storage', class, key, location, numel) tuple");
    const Obj& cls = objects_[pid.items[1]];
    if (cls.kind != Kind::Global || Callable(cls.i) != Callable::StorageClass)
        fail("persistent id names no torch storage class");
    const Obj& key = objects_[pid.items[2]];
    if (key.kind != Kind::String || key.s.empty() || key.s.size() > 256)
        fail("persistent id has a bad storage key");
    if (objects_[pid.items[3]].kind != Kind::String)
        fail("persistent id has a bad storage location");
    const int64_t numel = intArg(pid.items[4], "storage size");
    const at::ScalarType dtype = cls.dtype;
    const std::string keyName = key.s;

    const LoadedStorage& loaded = loader_(keyName);
    const uint64_t itemSize = c10::elementSize(dtype);
    if (numel < 0 || uint64_t(numel) > loaded.bytes / itemSize)
        fail("storage '" + keyName + "' declares " + std::to_string(numel) + " elements of " +
             std::to_string(itemSize) + " bytes but its record holds " + std::to_string(loaded.bytes) + " bytes");

    storages_.push_back(StorageRef{loaded.storage, dtype, numel});
    const uint32_t id = make(Kind::Storage);
    objects_[id].i = int64_t(storages_.size() - 1);
    push(id);
}

uint32_t Unpickler::rebuildTensor(const std::vector<uint32_t>& args)
{
    const Obj& st = objects_[args[0]];
    if (st.kind != Kind::Storage)
        fail("tensor rebuilt from something that is not a storage");
    const StorageRef& storage = storages_[size_t(st.i)];
    const int64_t offset = intArg(args[1], "storage offset");
    const std::vector<int64_t> sizes = intTuple(args[2], "tensor size");
    const std::vector<int64_t> strides = intTuple(args[3], "tensor stride");
    if (sizes.size() != strides.size())
        fail("tensor size and stride differ in length");
    if (offset < 0)
        fail("negative storage offset");

    // Largest element index the view touches; every product and sum is overflow-checked.
    bool empty = false;
    int64_t last = offset;
    for (size_t d = 0; d < sizes.size(); ++d) {
        if (sizes[d] < 0 || strides[d] < 0)
            fail("negative tensor size or stride");
        if (sizes[d] == 0)
            empty = true;
    }
    if (!empty) {
        for (size_t d = 0; d < sizes.size(); ++d) {
            int64_t span = 0;
            if (__builtin_mul_overflow(sizes[d] - 1, strides[d], &span) || __builtin_add_overflow(last, span, &last))
                fail("tensor size and stride overflow");
        }
    }
    if (empty ? offset > storage.numel : last >= storage.numel)
        fail("tensor of size " + c10::str(at::IntArrayRef(sizes)) + ", stride " + c10::str(at::IntArrayRef(strides)) +
             " at offset " + std::to_string(offset) + " exceeds its storage of " + std::to_string(storage.numel) +
             " elements");

    at::Tensor t = at::empty({0}, at::TensorOptions().dtype(storage.dtype).device(at::kCPU));
    t.set_(storage.storage, offset, sizes, strides);
    const uint32_t id = make(Kind::Tensor);
    objects_[id].tensor = std::move(t);
    return id;
}

void Unpickler::reduce()
{
    const uint32_t argsId = pop();
    const uint32_t fnId = pop();
    const Obj& fn = objects_[fnId];
    if (fn.kind != Kind::Global)
        fail("REDUCE on something that is not a global");
    if (objects_[argsId].kind != Kind::Tuple)
        fail("REDUCE arguments are not a tuple");
    const std::vector<uint32_t> args = objects_[argsId].items;
    const std::string name = fn.s; // a copy: make() may move the arena
    const auto arity = [&](size_t lo, size_t hi) {
        if (args.size() < lo || args.size() > hi)
            fail(name + " called with " + std::to_string(args.size()) + " arguments");
    };
    switch (Callable(fn.i)) {
    case Callable::OrderedDict:
        // Items arrive afterwards through SETITEMS, as pickle's __reduce__ protocol for dicts does.
        arity(0, 0);
        push(make(Kind::Dict));
        return;
    case Callable::RebuildTensorV2:
        // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata]); hooks and metadata
        // are Python-side state with no meaning for inference, requires_grad likewise.
        arity(6, 7);
        push(rebuildTensor(args));
        return;
    case Callable::RebuildTensor:
        arity(4, 4);
        push(rebuildTensor(args));
        return;
    case Callable::RebuildParameter: {
        // (data, requires_grad, backward_hooks): a Parameter is its data.
        arity(3, 3);
        if (objects_[args[0]].kind != Kind::Tensor)
            fail("_rebuild_parameter of something that is not a tensor");
        at::Tensor data = objects_[args[0]].tensor;
        const uint32_t id = make(Kind::Tensor);
        objects_[id].tensor = std::move(data);
        push(id);
        return;
    }
    case Callable::StorageClass:
        fail("calling " + name + " is not supported");
    }
    fail("REDUCE on an unknown global");
}

void Unpickler::build()
{
    pop(); // the state
    const Obj& target = objects_[top()];
    // OrderedDict.__reduce__ hands its instance __dict__ (state_dict()'s _metadata) to BUILD. Attributes
    // are dropped: they carry module versions, nothing a reader of tensors needs.
    if (target.kind != Kind::Dict && target.kind != Kind::Tensor)
        fail("BUILD on an object that has no settable state");
}

TorchValue Unpickler::convert(uint32_t id)
{
    // Shared sub-objects expand on conversion; a pickle of a few KB could otherwise reference one big
    // subtree millions of times.
    convertBudget_ = (uint64_t(1) << 20) + 4 * uint64_t(size_);
    converting_ = true;
    return convert(id, 0);
}

TorchValue Unpickler::convert(uint32_t id, int depth)
{
    if (depth > kMaxNesting)
        fail("containers nested deeper than " + std::to_string(kMaxNesting) + " levels (or a container holds itself)");
    if (convertBudget_-- == 0)
        fail("pickle expands to too many values (shared sub-objects referenced too often)");
    const Obj& o = objects_[id];
    TorchValue v;
    switch (o.kind) {
    case Kind::None:
        break;
    case Kind::Bool:
        v.value = o.i != 0;
        break;
    case Kind::Int:
        v.value = o.i;
        break;
    case Kind::Float:
        v.value = o.f;
        break;
    case Kind::String:
        v.value = o.s;
        break;
    case Kind::Tensor:
        v.value = o.tensor;
        break;
    case Kind::Storage: {
        // A bare storage (torch.save(t.untyped_storage())) reads as the 1-D tensor it holds.
        const StorageRef& s = storages_[size_t(o.i)];
        at::Tensor t = at::empty({0}, at::TensorOptions().dtype(s.dtype));
        t.set_(s.storage, 0, {s.numel}, {1});
        v.value = std::move(t);
        break;
    }
    case Kind::Tuple:
    case Kind::List: {
        TorchValue::List list;
        list.reserve(o.items.size());
        for (uint32_t item : o.items)
            list.push_back(convert(item, depth + 1));
        v.value = std::move(list);
        break;
    }
    case Kind::Dict: {
        TorchValue::Dict dict;
        dict.reserve(o.items.size() / 2);
        for (size_t k = 0; k + 1 < o.items.size(); k += 2)
            dict.emplace_back(convert(o.items[k], depth + 1), convert(o.items[k + 1], depth + 1));
        v.value = std::move(dict);
        break;
    }
    case Kind::Global:
        fail("pickle result holds the bare global " + o.s + ", not a value");
    }
    return v;
}

// ---------------------------------------------------------------------------------------------------

TorchValue loadChecked(const std::filesystem::path& path)
{
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        throw FileProblem("file not found");
    if (!std::filesystem::is_regular_file(status))
        throw FileProblem("not a regular file");
    RawFile file(path);
    const uint64_t size = file.size();
    if (size == 0)
        throw FileProblem("empty file (0 bytes), not a PyTorch checkpoint");

    unsigned char magic[8] = {};
    file.read(0, magic, std::min<uint64_t>(size, sizeof magic), "file header");
    const bool isZip = size >= 4 && magic[0] == 'P' && magic[1] == 'K' &&
                     ((magic[2] == 3 && magic[3] == 4) || (magic[2] == 5 && magic[3] == 6));
    if (!isZip) {
        // Pre-1.6 torch.save wrote a bare pickle stream starting with the protocol opcode.
        if (magic[0] == 0x80)
            throw FileProblem("legacy torch.save format not supported; re-save with torch>=1.6");
        if (size >= 8 && std::memcmp(magic, "PYTORCH1", 8) == 0)
            throw FileProblem("PyTorch preview-release archive format not supported; re-save with torch>=1.6");
        throw FileProblem("not a PyTorch checkpoint (expected the zip archive torch.save writes)");
    }

    const ZipIndex zip = scanZip(file);
    std::string prefix = archivePrefix(zip);
    checkVersionRecord(file, zip, prefix);
    Archive archive(path, zip, std::move(prefix));

    if (archive.has("byteorder")) {
        Record r = archive.read("byteorder", kMaxSmallRecord);
        const std::string order(static_cast<const char*>(r.data.get()), r.size);
        if (order != "little")
            throw FileProblem("archive byte order is '" + firstLine(order) + "'; only little-endian is supported");
    }

    const Record pickle = archive.read("data.pkl", kMaxPickleBytes);

    // Storages are loaded once per key so tensors that share one in the file (tied embeddings) share it here.
    std::unordered_map<std::string, LoadedStorage> storages;
    const StorageLoader loader = [&](const std::string& key) -> const LoadedStorage& {
        auto it = storages.find(key);
        if (it != storages.end())
            return it->second;
        const std::string name = "data/" + key;
        if (!archive.has(name))
            throw FileProblem("storage '" + key + "' has no record " + archive.prefix() + "/" + name);
        Record r = archive.read(name, std::numeric_limits<uint64_t>::max()); // sizes were checked by scanZip
        at::Storage storage(at::Storage::use_byte_size_t(), r.size, std::move(r.data), nullptr, false);
        return storages.emplace(key, LoadedStorage{std::move(storage), r.size}).first->second;
    };

    Unpickler unpickler(static_cast<const unsigned char*>(pickle.data.get()), pickle.size, loader);
    const uint32_t root = unpickler.run();
    return unpickler.convert(root);
}

std::string keyName(const std::filesystem::path& path, const TorchValue& key)
{
    if (key.isString())
        return key.asString();
    if (key.isInt())
        return std::to_string(key.asInt()); // optimizer states use parameter indices
    throwInputError(path, std::string("state dict key of type ") + key.typeName() + "; expected str or int");
}

bool containsTensor(const TorchValue& v)
{
    if (v.isTensor())
        return true;
    if (v.isDict()) {
        for (const auto& [k, x] : v.asDict()) {
            if (containsTensor(x))
                return true;
        }
    }
    return false;
}

// Moves the tensors of a (nested) dict out under dotted names and leaves the non-tensor remainder in
// `rest`, with sub-dicts that only held tensors left out.
void flattenInto(const std::filesystem::path& path, const std::string& prefix, const TorchValue::Dict& dict,
                 TorchStateDict& out, std::unordered_set<std::string>& seen, TorchValue::Dict& rest)
{
    for (const auto& [k, v] : dict) {
        const std::string name = prefix + keyName(path, k);
        if (v.isTensor()) {
            if (!seen.insert(name).second)
                throwInputError(path, "tensor name " + name + " occurs twice");
            out.tensors.emplace_back(name, v.asTensor());
        } else if (v.isDict() && containsTensor(v)) {
            TorchValue::Dict subRest;
            flattenInto(path, name + ".", v.asDict(), out, seen, subRest);
            if (!subRest.empty()) {
                TorchValue r;
                r.value = std::move(subRest);
                rest.emplace_back(k, std::move(r));
            }
        } else {
            rest.emplace_back(k, v);
        }
    }
}

} // namespace

TorchValue loadTorchFile(const std::filesystem::path& path)
{
    try {
        return loadChecked(path);
    } catch (const InputError&) {
        throw;
    } catch (const FileProblem& e) {
        throwInputError(path, e.what());
    } catch (const c10::Error& e) {
        throwInputError(path, "PyTorch archive reader: " + firstLine(e.what_without_backtrace()));
    } catch (const std::bad_alloc&) {
        throwInputError(path, "not enough memory to load the checkpoint");
    } catch (const std::exception& e) {
        // Only libtorch's archive reader can end up here (e.g. std::invalid_argument from its parsing);
        // whatever it is, it was caused by the file's content.
        throwInputError(path, std::string("cannot read archive: ") + e.what());
    }
}

TorchStateDict loadTorchStateDict(const std::filesystem::path& path)
{
    TorchValue root = loadTorchFile(path);
    if (!root.isDict())
        throwInputError(path, std::string("root object is a ") + root.typeName() + ", expected a dict of tensors");

    TorchStateDict out;
    std::unordered_set<std::string> seen;
    TorchValue::Dict rest;
    flattenInto(path, "", root.asDict(), out, seen, rest);
    for (auto& [k, v] : rest)
        out.extras[keyName(path, k)] = std::move(v);
    return out;
}

} // namespace cs
