#include "core/util/files.h"

#include "core/util/errors.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace cs {

namespace fs = std::filesystem;

namespace {

std::string errnoText(int err) { return std::strerror(err); }

// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not one.
std::size_t utf8SequenceLength(std::string_view text, std::size_t i)
{
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char c = byte(i);
    if (c < 0x80)
        return 1;
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > text.size())
        return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

// 1-based line and column (in bytes) of byte offset `offset` in text.
std::pair<std::size_t, std::size_t> lineAndColumn(std::string_view text, std::size_t offset)
{
    offset = std::min(offset, text.size());
    std::size_t line = 1, lineStart = 0;
    for (std::size_t i = 0; i < offset; ++i) {
        if (text[i] == '\n') {
            ++line;
            lineStart = i + 1;
        }
    }
    return {line, offset - lineStart + 1};
}

[[noreturn]] void throwAt(const fs::path& source, std::string_view text, std::size_t offset, std::size_t firstLine,
                          const std::string& message)
{
    auto [line, column] = lineAndColumn(text, offset);
    line += firstLine - 1;
    throw InputError(oneLine(source.string() + ':' + std::to_string(line) + ':' + std::to_string(column) + ": " + message));
}

// nlohmann's parse_error::what() is "[json.exception.parse_error.101] parse error at line 1, column 5:
// syntax error while parsing value - invalid literal; last read: '<token>'". We report the position
// ourselves and the token (which can be a whole multi-megabyte string) only shortened.
std::string parseErrorReason(const std::string& what)
{
    std::string reason = what;
    if (const auto p = reason.find(": "); reason.starts_with('[') && p != std::string::npos &&
                                          reason.find("parse error") < p)
        reason.erase(0, p + 2);
    if (const auto p = reason.find("; last read: '"); p != std::string::npos) {
        std::string token = reason.substr(p + 14);
        if (token.ends_with('\''))
            token.pop_back();
        reason = reason.substr(0, p) + "; last read: " + quoteForMessage(token);
    }
    return reason;
}

// A process killed while writing leaves its temporary file behind ("." NAME ".tmp-PID-N"); the next
// write of the same file removes those whose process is gone, so crashes do not accumulate litter.
void removeAbandonedTemporaries(const fs::path& dir, const std::string& prefix) noexcept
{
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!name.starts_with(prefix))
            continue;
        const std::string rest = name.substr(prefix.size());
        const std::size_t dash = rest.find('-');
        if (dash == 0 || dash == std::string::npos || rest.find_first_not_of("0123456789-") != std::string::npos)
            continue;
        const long pid = std::strtol(rest.substr(0, dash).c_str(), nullptr, 10);
        if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            std::error_code removeError;
            fs::remove(it->path(), removeError);
        }
    }
}

} // namespace

std::string quoteForMessage(std::string_view text, std::size_t maxBytes)
{
    std::string out = "\"";
    std::size_t i = 0;
    while (i < text.size()) {
        const std::size_t n = utf8SequenceLength(text, i);
        if (n == 0) {
            if (out.size() + 1 > maxBytes + 1)
                break;
            out += '?'; // invalid UTF-8 byte
            ++i;
            continue;
        }
        if (out.size() - 1 + n > maxBytes)
            break;
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (n == 1 && (c < 0x20 || c == 0x7F))
            out += ' ';
        else
            out.append(text.substr(i, n));
        i += n;
    }
    if (i < text.size())
        out += "…";
    out += '"';
    return out;
}

std::string describeForMessage(const nlohmann::json& value)
{
    if (value.is_string())
        return quoteForMessage(value.get_ref<const std::string&>());
    if (value.is_array())
        return "an array of " + std::to_string(value.size());
    if (value.is_object())
        return "an object with " + std::to_string(value.size()) + " fields";
    return value.dump(); // a number, true, false or null: short
}

namespace {

// Opens `file` for reading if it is a regular file; fills `st`. The caller closes the descriptor.
int openRegularFile(const fs::path& file, struct stat& st)
{
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It does nothing
    // for regular files, the only kind read past fstat.
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT)
            throwInputError(file, "file not found");
        throwInputError(file, "cannot open: " + errnoText(err));
    }
    const auto refuse = [&](const std::string& message) {
        ::close(fd);
        throwInputError(file, message);
    };
    if (::fstat(fd, &st) != 0)
        refuse("cannot read: " + errnoText(errno));
    if (S_ISDIR(st.st_mode))
        refuse("is a directory, expected a file");
    if (!S_ISREG(st.st_mode))
        refuse(std::string("is not a regular file (") +
               (S_ISFIFO(st.st_mode) ? "a pipe" : S_ISSOCK(st.st_mode) ? "a socket" : "a device") + "), expected a file");
    return fd;
}

} // namespace

std::string readRegularFile(const fs::path& file, std::uint64_t maxBytes)
{
    struct stat st {};
    const int fd = openRegularFile(file, st);
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    const auto tooLarge = [&](std::uint64_t size) {
        throwInputError(file, "is " + std::to_string(size) + " bytes or more, more than the " + std::to_string(maxBytes) +
                                  " bytes accepted here");
    };
    if (static_cast<std::uint64_t>(st.st_size) > maxBytes)
        tooLarge(static_cast<std::uint64_t>(st.st_size));
    // st_size is only a hint (files in /proc report 0, a file may grow while read): read until the end,
    // never past maxBytes.
    std::string content;
    content.reserve(static_cast<std::size_t>(st.st_size));
    char buffer[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throwInputError(file, "cannot read: " + errnoText(errno));
        }
        if (n == 0)
            break;
        if (content.size() + static_cast<std::uint64_t>(n) > maxBytes)
            tooLarge(content.size() + static_cast<std::uint64_t>(n));
        content.append(buffer, static_cast<std::size_t>(n));
    }
    return content;
}

InputFile::InputFile(const fs::path& file) : m_path(file)
{
    struct stat st {};
    m_fd = openRegularFile(file, st);
    m_size = static_cast<std::uint64_t>(st.st_size);
}

InputFile::~InputFile() { ::close(m_fd); }

void InputFile::readAt(std::uint64_t offset, void* buffer, std::uint64_t n) const
{
    if (offset > m_size || n > m_size - offset)
        throwInputError(m_path, "read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                                    " runs past the end of the file (" + std::to_string(m_size) + " bytes)");
    // A large read goes to fresh memory (a model's weights), where what costs is not the copy but the
    // kernel's page faults on the destination: each 4 KB page is mapped and zeroed on first touch. Those
    // run in parallel, so the read is cut into one span per thread: reading GPT-2 XL's 6.2 GB float32
    // file (page cache warm) took 3.7–9.6 s on one thread and 1.3–2.1 s on two (2-core VM, 2026-12-04).
    constexpr std::uint64_t kMinSpan = std::uint64_t(8) << 20;
    const std::uint64_t cores = std::clamp<std::uint64_t>(std::thread::hardware_concurrency(), 1, 8);
    const std::uint64_t spans = std::min(cores, n / kMinSpan);
    if (spans < 2) {
        readSpan(offset, buffer, n);
        return;
    }
    auto* out = static_cast<char*>(buffer);
    std::vector<std::exception_ptr> errors(spans);
    std::vector<std::thread> readers;
    readers.reserve(spans - 1);
    const auto readPart = [&](std::uint64_t i) {
        const std::uint64_t begin = n * i / spans, end = n * (i + 1) / spans;
        try {
            readSpan(offset + begin, out + begin, end - begin);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    };
    for (std::uint64_t i = 1; i < spans; ++i)
        readers.emplace_back(readPart, i);
    readPart(0);
    for (std::thread& t : readers)
        t.join();
    for (const std::exception_ptr& e : errors) {
        if (e)
            std::rethrow_exception(e);
    }
}

void InputFile::readSpan(std::uint64_t offset, void* buffer, std::uint64_t n) const
{
    auto* out = static_cast<char*>(buffer);
    std::uint64_t done = 0;
    while (done < n) {
        // pread moves at most ~2 GB per call on Linux; loop until all is read.
        const ssize_t got = ::pread(m_fd, out + done, static_cast<std::size_t>(std::min<std::uint64_t>(n - done, 1u << 30)),
                                    static_cast<off_t>(offset + done));
        if (got < 0) {
            if (errno == EINTR)
                continue;
            throwInputError(m_path, "cannot read: " + errnoText(errno));
        }
        if (got == 0) {
            // The file was shorter than fstat said when it was opened: someone truncated or rewrote it.
            struct stat now {};
            const std::string nowSize =
                ::fstat(m_fd, &now) == 0 ? std::to_string(static_cast<std::uint64_t>(now.st_size)) + " bytes" : "smaller";
            throwInputError(m_path, "file changed while being read: it was " + std::to_string(m_size) +
                                        " bytes when opened and is now " + nowSize + " (truncated or rewritten?)");
        }
        done += static_cast<std::uint64_t>(got);
    }
}

nlohmann::json parseJsonText(std::string_view text, const fs::path& source, int maxDepth, std::size_t firstLine)
{
    // Pre-scan: nlohmann stops at a NUL byte as if the input ended there (so "{}\0garbage" would pass),
    // and it parses arbitrarily deep documents that its recursive destructor and dump() then overflow on.
    int depth = 0;
    bool inString = false, escaped = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\0')
            throwAt(source, text, i, firstLine, "NUL byte (JSON text cannot contain one)");
        if (inString) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                inString = false;
            continue;
        }
        if (c == '"') {
            inString = true;
        } else if (c == '[' || c == '{') {
            if (++depth > maxDepth)
                throwAt(source, text, i, firstLine, "nested deeper than " + std::to_string(maxDepth) + " levels");
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    try {
        return nlohmann::json::parse(text.begin(), text.end()); // strict: trailing bytes are an error
    } catch (const nlohmann::json::parse_error& e) {
        // e.byte counts from 1 and points at the last byte read.
        throwAt(source, text, e.byte > 0 ? e.byte - 1 : 0, firstLine, "not valid JSON: " + parseErrorReason(e.what()));
    } catch (const nlohmann::json::exception& e) {
        throw InputError(oneLine(source.string() + ": not valid JSON: " + parseErrorReason(e.what())));
    }
}

nlohmann::json readJsonFile(const fs::path& file, std::uint64_t maxBytes, int maxDepth)
{
    return parseJsonText(readRegularFile(file, maxBytes), file, maxDepth);
}

// --- Writing ---------------------------------------------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(const fs::path& target) : m_target(target)
{
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(m_target, ec))) {
        // Replace the file the link points to, not the link.
        const fs::path resolved = fs::weakly_canonical(m_target, ec);
        if (!ec)
            m_target = resolved;
    }
    mode_t mode = 0666; // before the umask, as for any new file
    struct stat st {};
    if (::stat(m_target.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode))
            throwInputError(m_target, "cannot write: is a directory");
        if (!S_ISREG(st.st_mode))
            throwInputError(m_target, "cannot write: is not a regular file (a device, pipe or socket); not replaced");
        mode = st.st_mode & 07777; // keep the replaced file's permissions
    }
    const fs::path dir = m_target.parent_path().empty() ? fs::path(".") : m_target.parent_path();
    // Hidden, unique within the folder; the name is cut so that it stays under NAME_MAX.
    static std::atomic<unsigned> counter{0};
    const std::string base = m_target.filename().string().substr(0, 180);
    removeAbandonedTemporaries(dir, "." + base + ".tmp-");
    for (int attempt = 0; attempt < 100; ++attempt) {
        m_temp = dir / ("." + base + ".tmp-" + std::to_string(::getpid()) + '-' + std::to_string(counter++));
        m_fd = ::open(m_temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (m_fd >= 0)
            break;
        if (errno != EEXIST)
            throwInputError(m_target, "cannot write: " + errnoText(errno));
    }
    if (m_fd < 0)
        throwInputError(m_target, "cannot write: no free temporary file name");
    if (mode != 0666)
        ::fchmod(m_fd, mode); // open() applied the umask to the copied mode
}

AtomicFileWriter::~AtomicFileWriter() { discard(); }

void AtomicFileWriter::discard() noexcept
{
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
        ::unlink(m_temp.c_str());
    }
}

void AtomicFileWriter::fail(const std::string& what, int err)
{
    discard();
    throwInputError(m_target, what + ": " + errnoText(err) + " (the previous file, if any, is unchanged)");
}

void AtomicFileWriter::write(const void* data, std::size_t size)
{
    if (m_fd < 0)
        throw std::logic_error("AtomicFileWriter::write after commit or failure");
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(m_fd, p, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("cannot write", errno);
        }
        if (n == 0)
            fail("cannot write", EIO);
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

void AtomicFileWriter::commit()
{
    if (m_fd < 0)
        throw std::logic_error("AtomicFileWriter::commit after commit or failure");
    // fsync before rename: otherwise a crash just after the rename can leave an empty file under the
    // target's name (the rename reaches the disk before the data on some filesystems).
    if (::fsync(m_fd) != 0)
        fail("cannot write", errno);
    if (::close(m_fd) != 0) {
        m_fd = -1;
        const int err = errno;
        ::unlink(m_temp.c_str());
        throwInputError(m_target, "cannot write: " + errnoText(err) + " (the previous file, if any, is unchanged)");
    }
    m_fd = -1;
    if (::rename(m_temp.c_str(), m_target.c_str()) != 0) {
        const int err = errno;
        ::unlink(m_temp.c_str());
        throwInputError(m_target, "cannot replace: " + errnoText(err) + " (the previous file, if any, is unchanged)");
    }
    // Make the rename itself durable. Failure here is not reported: the new file is in place.
    const fs::path dir = m_target.parent_path().empty() ? fs::path(".") : m_target.parent_path();
    if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

void writeFileAtomically(const fs::path& file, std::string_view content)
{
    AtomicFileWriter out(file);
    out.write(content);
    out.commit();
}

} // namespace cs
