#pragma once
// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
// u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then data.
//
// The reader validates the whole header before any tensor is created, so a corrupt or hostile file can
// never make us allocate or read outside the file. Tensor bytes are read into memory the tensor owns
// (InputFile, core/util/files.h), not mapped, so a file truncated or rewritten while open or after loading
// gives an InputError or nothing at all, never a SIGBUS.

#include "core/util/files.h"

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
    // Opens and validates: header length vs file size, header is a JSON object, known dtypes,
    // shape × dtype size = byte span, spans inside the data area and non-overlapping, and
    // `__metadata__` a map of strings. Throws InputError naming the file and the problem.
    static SafetensorsFile open(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return m_file->path(); }
    const std::vector<SafetensorsEntry>& entries() const { return m_entries; }
    const std::map<std::string, std::string>& metadata() const { return m_metadata; }
    const SafetensorsEntry* find(const std::string& name) const;

    // The tensor as float32, read from the file now. F16/BF16/F64 are converted; integer dtypes are refused
    // (InputError). A file that became shorter since open() gives InputError naming it.
    at::Tensor toFloat32(const SafetensorsEntry& entry) const;
    // The tensor in its stored dtype, read from the file now into memory it owns.
    at::Tensor toTensor(const SafetensorsEntry& entry) const;

private:
    std::shared_ptr<const InputFile> m_file; // shared: SafetensorsFile is copyable
    std::uint64_t m_dataOffset = 0;          // file offset of the data area
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
