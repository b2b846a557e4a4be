#pragma once
// A read-only view of a whole file through mmap. Shared ownership lets zero-copy tensors keep the
// mapping alive after the loader that created them is gone.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace cs {

class MappedFile {
public:
    // Throws InputError naming the file when it cannot be opened or mapped.
    static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);

    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::uint8_t* data() const { return m_data; }
    std::size_t size() const { return m_size; }
    const std::filesystem::path& path() const { return m_path; }

private:
    MappedFile() = default;
    std::filesystem::path m_path;
    std::uint8_t* m_data = nullptr;
    std::size_t m_size = 0;
};

} // namespace cs
