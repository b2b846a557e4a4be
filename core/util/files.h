#pragma once
// The one way Circuitscope reads and writes files (issue 13).
//
// Reading: only regular files are opened (a directory, FIFO, device or socket is refused with one line,
// and opening never blocks), and at most a caller-given number of bytes is read, so /dev/zero or a huge
// file cannot exhaust memory. JSON documents are checked for NUL bytes and nesting depth before parsing
// (nlohmann's value destructor and dump() recurse, so a document nested a million levels deep would
// overflow the stack), and any bytes after the document are an error. Errors read
// "FILE:LINE:COL: message" and quote at most ~80 characters of the file.
//
// Writing: AtomicFileWriter writes to a temporary file in the target's folder, flushes, fsyncs and
// renames it over the target, so a reader (or a crash) only ever sees the old file or the complete new one.
// A failure at any step leaves the old file intact and throws InputError naming the file and the reason.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace cs {

// Limits callers pass to the readers. Real files are far below them; they only stop hostile input.
inline constexpr std::uint64_t kMaxConfigBytes = 16ull << 20;   // config.json, cfg.json, state files
inline constexpr std::uint64_t kMaxDocumentBytes = 512ull << 20; // tokenizers, sessions, corpora
inline constexpr int kMaxJsonDepth = 128;

// The whole content of a regular file of at most maxBytes bytes. Throws InputError
// ("FILE: is a directory, expected a file", "FILE: is N bytes, more than the M accepted", ...).
std::string readRegularFile(const std::filesystem::path& file, std::uint64_t maxBytes);

// A regular file opened for reads at given offsets: the checkpoint readers (safetensors, the torch zip
// container) read headers and tensor bytes through it. Bytes are copied out with pread, never mapped: a
// mapped file that another program truncates (`cp` over a model, a download restarted in place) makes the
// next access to a page past the new end raise SIGBUS, which would kill the process at some arbitrary later
// point, inside any tensor kernel; and a mapping of a file rewritten in place silently changes the loaded
// weights. A copy is a snapshot: a short read is one InputError naming the file, and whatever happens to
// the file after loading cannot affect the model. Opening refuses what readRegularFile refuses.
class InputFile {
public:
    explicit InputFile(const std::filesystem::path& file);
    ~InputFile();
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    const std::filesystem::path& path() const { return m_path; }
    // The size when the file was opened; reads are checked against it.
    std::uint64_t size() const { return m_size; }
    // Exactly n bytes at offset into buffer, or InputError: outside the file's size, a read error, or the
    // file became shorter since it was opened.
    // Large reads are split over threads (see files.cpp).
    void readAt(std::uint64_t offset, void* buffer, std::uint64_t n) const;

private:
    // readAt's work for a span already checked against the size.
    void readSpan(std::uint64_t offset, void* buffer, std::uint64_t n) const;

    std::filesystem::path m_path;
    int m_fd = -1;
    std::uint64_t m_size = 0;
};

// Parses one JSON document. `source` names the text in messages ("FILE:LINE:COL: ..."). Rejects NUL bytes,
// nesting deeper than maxDepth and trailing bytes after the document (whitespace aside). firstLine is the
// line number of the text's first line in `source` (a JSON Lines file passes each line on its own).
nlohmann::json parseJsonText(std::string_view text, const std::filesystem::path& source, int maxDepth = kMaxJsonDepth,
                             std::size_t firstLine = 1);

// readRegularFile + parseJsonText.
nlohmann::json readJsonFile(const std::filesystem::path& file, std::uint64_t maxBytes = kMaxConfigBytes,
                            int maxDepth = kMaxJsonDepth);

// `text` for an error message: at most maxBytes bytes (cut at a character boundary, "…" appended),
// control characters and invalid UTF-8 replaced, in double quotes.
std::string quoteForMessage(std::string_view text, std::size_t maxBytes = 80);

// A JSON value for an error message without serializing it recursively: strings and numbers quoted
// (shortened), arrays and objects only by their kind and size.
std::string describeForMessage(const nlohmann::json& value);

// Writes a file atomically (see above). Either commit() or destruction without commit() (which removes
// the temporary file and leaves the target untouched).
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(const std::filesystem::path& target);
    ~AtomicFileWriter();
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(const void* data, std::size_t size);
    void write(std::string_view text) { write(text.data(), text.size()); }
    // fsync + rename over the target + fsync of the folder. After it the writer is finished.
    void commit();

    const std::filesystem::path& target() const { return m_target; }

private:
    [[noreturn]] void fail(const std::string& what, int err);
    void discard() noexcept;

    std::filesystem::path m_target; // the file replaced (symbolic links resolved)
    std::filesystem::path m_temp;
    int m_fd = -1;
};

// One-shot form of AtomicFileWriter.
void writeFileAtomically(const std::filesystem::path& file, std::string_view content);

} // namespace cs
