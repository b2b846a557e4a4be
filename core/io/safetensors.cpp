#include "core/io/safetensors.h"

#include "core/util/errors.h"
#include "core/util/files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace cs {

namespace {

// Headers of real models are a few hundred KB; anything far larger is corrupt or hostile.
constexpr std::uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

struct DTypeInfo {
    StDType dtype;
    const char* name;
    std::size_t size;
    at::ScalarType scalar;
};

constexpr DTypeInfo kDTypes[] = {
    {StDType::F64, "F64", 8, at::kDouble},   {StDType::F32, "F32", 4, at::kFloat},
    {StDType::F16, "F16", 2, at::kHalf},     {StDType::BF16, "BF16", 2, at::kBFloat16},
    {StDType::I64, "I64", 8, at::kLong},     {StDType::I32, "I32", 4, at::kInt},
    {StDType::I16, "I16", 2, at::kShort},    {StDType::I8, "I8", 1, at::kChar},
    {StDType::U8, "U8", 1, at::kByte},       {StDType::Bool, "BOOL", 1, at::kBool},
};

const DTypeInfo& info(StDType dtype)
{
    for (const auto& d : kDTypes) {
        if (d.dtype == dtype)
            return d;
    }
    throw std::logic_error("unknown StDType");
}

std::optional<StDType> dtypeOfScalar(at::ScalarType s)
{
    for (const auto& d : kDTypes) {
        if (d.scalar == s)
            return d.dtype;
    }
    return std::nullopt;
}

} // namespace

const char* dtypeName(StDType dtype) { return info(dtype).name; }
std::size_t dtypeSize(StDType dtype) { return info(dtype).size; }

std::optional<StDType> dtypeFromName(const std::string& name)
{
    for (const auto& d : kDTypes) {
        if (name == d.name)
            return d.dtype;
    }
    return std::nullopt;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path)
{
    SafetensorsFile st;
    st.m_file = std::make_shared<const InputFile>(path);
    const std::uint64_t fileSize = st.m_file->size();
    auto fail = [&](const std::string& msg) { throwInputError(path, msg); };

    if (fileSize < 8)
        fail("truncated: " + std::to_string(fileSize) + " bytes, a safetensors file starts with an 8-byte header length");
    std::uint8_t lengthBytes[8];
    st.m_file->readAt(0, lengthBytes, 8);
    std::uint64_t headerLen = 0;
    for (int i = 7; i >= 0; --i)
        headerLen = (headerLen << 8) | lengthBytes[i];
    if (headerLen > fileSize - 8)
        fail("header length " + std::to_string(headerLen) + " runs past the end of the file (" +
             std::to_string(fileSize) + " bytes)");
    if (headerLen > kMaxHeaderBytes)
        fail("header length " + std::to_string(headerLen) + " is implausibly large");

    // Positions in messages count within the header (it starts at byte 8 of the file).
    std::string headerText(static_cast<std::size_t>(headerLen), '\0');
    st.m_file->readAt(8, headerText.data(), headerLen);
    const nlohmann::json header = parseJsonText(headerText, path.string() + " (header)");
    if (!header.is_object())
        fail("header is not a JSON object");

    st.m_dataOffset = 8 + headerLen;
    const std::uint64_t dataSize = fileSize - 8 - headerLen;

    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const nlohmann::json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object())
                fail("__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    fail("__metadata__ value of " + quoteForMessage(m.key()) + " is not a string");
                st.m_metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        auto failT = [&](const std::string& msg) { fail("tensor " + quoteForMessage(name) + ": " + msg); };
        if (!v.is_object())
            failT("entry is not an object");
        if (!v.contains("dtype") || !v["dtype"].is_string())
            failT("missing dtype");
        const std::string dtypeStr = v["dtype"].get<std::string>();
        const auto dtype = dtypeFromName(dtypeStr);
        if (!dtype)
            failT("unknown dtype " + quoteForMessage(dtypeStr));
        if (!v.contains("shape") || !v["shape"].is_array())
            failT("missing shape");
        if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
            !v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned())
            failT("data_offsets must be two non-negative integers");

        SafetensorsEntry e;
        e.name = name;
        e.dtype = *dtype;
        std::uint64_t elements = 1;
        for (const auto& dim : v["shape"]) {
            if (!dim.is_number_unsigned())
                failT("shape has a negative or non-integer dimension");
            const std::uint64_t d = dim.get<std::uint64_t>();
            if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
                (d != 0 && elements > std::numeric_limits<std::uint64_t>::max() / d))
                failT("shape overflows");
            elements *= d;
            e.shape.push_back(static_cast<std::int64_t>(d));
        }
        e.begin = v["data_offsets"][0].get<std::uint64_t>();
        e.end = v["data_offsets"][1].get<std::uint64_t>();
        if (e.begin > e.end)
            failT("data_offsets begin " + std::to_string(e.begin) + " is after end " + std::to_string(e.end));
        if (e.end > dataSize)
            failT("data span [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                  ") lies outside the data area (" + std::to_string(dataSize) + " bytes)");
        const std::size_t itemSize = dtypeSize(e.dtype);
        if (elements > std::numeric_limits<std::uint64_t>::max() / itemSize || elements * itemSize != e.end - e.begin)
            failT("shape × dtype size = " + std::to_string(elements * itemSize) + " bytes but its data span is " +
                  std::to_string(e.end - e.begin) + " bytes");
        st.m_index[name] = st.m_entries.size();
        st.m_entries.push_back(std::move(e));
    }

    // Overlapping spans would let two tensors alias each other's bytes; the format forbids it.
    std::vector<const SafetensorsEntry*> byOffset;
    for (const auto& e : st.m_entries) {
        if (e.end > e.begin)
            byOffset.push_back(&e);
    }
    std::sort(byOffset.begin(), byOffset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < byOffset.size(); ++i) {
        if (byOffset[i]->begin < byOffset[i - 1]->end)
            fail("tensors '" + byOffset[i - 1]->name + "' and '" + byOffset[i]->name + "' have overlapping data spans");
    }
    return st;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const
{
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_entries[it->second];
}

at::Tensor SafetensorsFile::toTensor(const SafetensorsEntry& e) const
{
    // Read straight into the tensor's own memory (see InputFile for why the file is not mapped); open()
    // checked that shape × dtype size is exactly the span, so the read fills the tensor.
    at::Tensor out = at::empty(e.shape, at::TensorOptions().dtype(info(e.dtype).scalar));
    if (e.end > e.begin)
        m_file->readAt(m_dataOffset + e.begin, out.data_ptr(), e.end - e.begin);
    return out;
}

at::Tensor SafetensorsFile::toFloat32(const SafetensorsEntry& e) const
{
    switch (e.dtype) {
    case StDType::F32:
        return toTensor(e);
    case StDType::F16:
    case StDType::BF16:
    case StDType::F64:
        return toTensor(e).to(at::kFloat);
    default:
        throwInputError(path(), "tensor '" + e.name + "': dtype " + dtypeName(e.dtype) + " where a float tensor is expected");
    }
}

void writeSafetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata)
{
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty())
        header["__metadata__"] = metadata;
    std::vector<at::Tensor> contiguous;
    std::uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        const auto dtype = dtypeOfScalar(t.scalar_type());
        if (!dtype)
            throw std::invalid_argument("writeSafetensors: unsupported dtype for " + name);
        at::Tensor c = t.detach().contiguous().cpu();
        const std::uint64_t bytes = static_cast<std::uint64_t>(c.numel()) * c.element_size();
        header[name] = {{"dtype", dtypeName(*dtype)}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        contiguous.push_back(std::move(c));
    }
    std::string headerText = header.dump();
    headerText.append((8 - headerText.size() % 8) % 8, ' ');

    AtomicFileWriter out(path);
    const std::uint64_t len = headerText.size();
    char lenBytes[8];
    for (int i = 0; i < 8; ++i)
        lenBytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    out.write(lenBytes, 8);
    out.write(headerText);
    for (const auto& c : contiguous)
        out.write(c.data_ptr(), static_cast<std::size_t>(c.numel() * c.element_size()));
    out.commit(); // a reader never sees a half-written file
}

} // namespace cs
