#pragma once
// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
// u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then data.
//
// The reader maps the file and validates the whole header before any tensor is created, so a corrupt
// or hostile file can never make us allocate or read outside the file.

#include "core/io/mapped_file.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cs {

enum class StDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

const char* dtypeName(StDType dtype);
std::optional<StDType> dtypeFromName(const std::string& name);
std::size_t dtypeSize(StDType dtype);

struct SafetensorsEntry {
    std::string name;
    StDType dtype = StDType::F32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0; // byte offsets relative to the start of the data area
    std::uint64_t end = 0;
};

class SafetensorsFile {
public:
    // Maps and validates: header length vs file size, header is a JSON object, known dtypes,
    // shape × dtype size = byte span, spans inside the data area and non-overlapping, and
    // `__metadata__` a map of strings. Throws InputError naming the file and the problem.
    static SafetensorsFile open(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return m_file->path(); }
    const std::vector<SafetensorsEntry>& entries() const { return m_entries; }
    const std::map<std::string, std::string>& metadata() const { return m_metadata; }
    const SafetensorsEntry* find(const std::string& name) const;

    // The tensor as float32. Aligned F32 data is not copied: the tensor views the mapping and keeps
    // it alive. F16/BF16/F64 are converted; integer dtypes are refused (InputError).
    at::Tensor toFloat32(const SafetensorsEntry& entry) const;
    // The tensor in its stored dtype (always a copy-free view when aligned, else a copy).
    at::Tensor toTensor(const SafetensorsEntry& entry) const;

private:
    std::shared_ptr<const MappedFile> m_file;
    const std::uint8_t* m_dataStart = nullptr;
    std::vector<SafetensorsEntry> m_entries;
    std::map<std::string, std::size_t> m_index;
    std::map<std::string, std::string> m_metadata;
};

// Writes tensors (any supported dtype, made contiguous) with optional metadata. The header is padded
// with spaces to a multiple of 8 bytes so every tensor in the file is 8-byte aligned.
void writeSafetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

} // namespace cs
