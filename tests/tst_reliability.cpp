// Hostile and unusual files (issue 13, product.md §7): the one reader, JSON reader and atomic writer in
// core/util, each loader that uses them, and the command line's contract for them (exit code 2, one
// short line on stderr, no hang, no crash, no allocation sized by the file).

#include "test_support.h"

#include "core/io/safetensors.h"
#include "core/io/torch_pickle.h"
#include "core/model/forward.h"
#include "core/model/gpt2_config.h"
#include "core/model/gpt2_model.h"
#include "core/sae/sparse_autoencoder.h"
#include "core/session/session.h"
#include "core/tokenizer/gpt2_tokenizer.h"
#include "core/util/errors.h"
#include "core/util/files.h"

#include <QCoreApplication>
#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sys/resource.h>
#include <chrono>
#include <thread>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

// Test fixtures are written with plain streams on purpose: the writer under test must not write its own inputs.
void writeRaw(const fs::path& file, const std::string& bytes)
{
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << bytes;
    out.close();
    if (!out)
        qFatal("cannot write test fixture %s", file.c_str());
}

std::string readRaw(const fs::path& file)
{
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// The message of the InputError `f` throws ("" when it throws none: the caller's QVERIFY then fails).
template <class F>
std::string inputErrorOf(F&& f)
{
    try {
        f();
    } catch (const cs::InputError& e) {
        return e.what();
    }
    return {};
}

#define CS_VERIFY_INPUT_ERROR(expr, needle)                                                                         \
    do {                                                                                                            \
        const std::string m_ = inputErrorOf([&] { (void)(expr); });                                                 \
        QVERIFY2(!m_.empty(), "no InputError");                                                                     \
        QVERIFY2(m_.find(needle) != std::string::npos, m_.c_str());                                                 \
        QVERIFY2(m_.size() < 600, "message too long");                                                              \
        QVERIFY2(m_.find('\n') == std::string::npos, "message is not one line");                                    \
    } while (false)

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Files in the folder other than `keep` (a failed or finished write must leave no temporary file).
std::vector<std::string> otherFiles(const fs::path& dir, const std::string& keep)
{
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename() != keep)
            out.push_back(e.path().filename().string());
    return out;
}

// A copy of the tiny model whose big files are symbolic links (config.json is a real copy to edit).
fs::path tinyModelCopy(const fs::path& dir)
{
    fs::create_directories(dir);
    const fs::path src = cs::test::dataDir() / "tiny-gpt2";
    for (const char* name : {"model.safetensors", "vocab.json", "merges.txt"})
        fs::create_symlink(src / name, dir / name);
    fs::copy_file(src / "config.json", dir / "config.json");
    return dir;
}

// Cuts `file` to `size` bytes through a descriptor of its own, as another program would (`cp` over a
// model opens it with O_TRUNC; a restarted download truncates it in place).
void truncateFrom(const fs::path& file, std::uint64_t size)
{
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0)
        qFatal("cannot truncate %s", file.c_str());
    ::close(fd);
}

// Every weight of two models bit for bit.

struct CliResult {
    int exitCode = -1;
    QProcess::ExitStatus status = QProcess::CrashExit;
    std::string out;
    std::string err;
    qint64 ms = 0;
};

// Runs the CLI; `stdinBytes` (if any) is written to its standard input. Address space limited to 4 GB
// (ulimit -v 4000000) when `limitMemory`: an allocation sized by a hostile file would fail the run.
CliResult runCli(const QStringList& args, const std::optional<QByteArray>& stdinBytes = std::nullopt, bool limitMemory = false)
{
    QProcess p;
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer reserves terabytes of address space for its shadow memory at start, which an
    // address-space limit refuses; its own cap on one allocation keeps the check (an allocation sized
    // by the file aborts the run, and the test sees a crash).
    if (limitMemory) {
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        const QString options = env.value(QStringLiteral("ASAN_OPTIONS"));
        env.insert(QStringLiteral("ASAN_OPTIONS"), options + (options.isEmpty() ? QString() : QStringLiteral(":")) +
                                                       QStringLiteral("max_allocation_size_mb=4000"));
        p.setProcessEnvironment(env);
    }
#else
    if (limitMemory)
        p.setChildProcessModifier([] {
            const rlimit limit{4000000ull * 1024, 4000000ull * 1024};
            ::setrlimit(RLIMIT_AS, &limit);
        });
#endif
    QElapsedTimer timer;
    timer.start();
    p.start(QStringLiteral(CLI_PATH), args);
    if (!p.waitForStarted(30000))
        qFatal("circuitscope-cli did not start");
    if (stdinBytes)
        p.write(*stdinBytes);
    p.closeWriteChannel();
    if (!p.waitForFinished(60000)) {
        p.kill();
        p.waitForFinished();
        return {-2, QProcess::CrashExit, {}, "did not finish within 60 s", timer.elapsed()};
    }
    return {p.exitCode(), p.exitStatus(), p.readAllStandardOutput().toStdString(), p.readAllStandardError().toStdString(),
            timer.elapsed()};
}

QString q(const fs::path& p) { return QString::fromStdString(p.string()); }

// Exit code 2 with exactly one short line on stderr that contains `needle`.
#define CS_VERIFY_CLI_BAD_INPUT(result, needle)                                                                     \
    do {                                                                                                            \
        const CliResult& r_ = (result);                                                                             \
        QVERIFY2(r_.status == QProcess::NormalExit, r_.err.c_str());                                                \
        QVERIFY2(r_.exitCode == 2, (std::to_string(r_.exitCode) + ": " + r_.err).c_str());                          \
        QVERIFY2(r_.err.size() < 700, ("stderr is " + std::to_string(r_.err.size()) + " bytes").c_str());           \
        QVERIFY2(std::count(r_.err.begin(), r_.err.end(), '\n') == 1, r_.err.c_str());                              \
        QVERIFY2(r_.err.find(needle) != std::string::npos, r_.err.c_str());                                         \
    } while (false)

// The two sessions the kill test's writer saves in turn: large notes make each write take a while,
// so that many kills land in the middle of one.
cs::Session killTestSession(int which)
{
    cs::Session s;
    s.modelPath = "/models/gpt2";
    s.prompt = which == 0 ? "When Mary and John went to the store" : "When John and Mary went to the park";
    for (int i = 0; i < 8; ++i)
        s.pins.push_back({"mlp:1:" + std::to_string(i) + "@3", std::string(100000, which == 0 ? 'a' : 'b')});
    s.ablations = {which == 0 ? "mlp:0:1@2=0" : "attn:1:2@*=0.5"};
    return s;
}

// Writer mode (the test starts its own binary with CS_RELIABILITY_WRITER=FILE): saves the two sessions
// in turn until killed.
[[noreturn]] void runWriter(const char* file)
{
    // Tells the test that start-up (loading libtorch's libraries: seconds on a loaded machine) is over.
    std::fputs("writing\n", stdout);
    std::fflush(stdout);
    for (int i = 0;; ++i)
        cs::saveSession(file, killTestSession(i % 2));
}

} // namespace

class TestReliability : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        // A write past RLIMIT_FSIZE raises SIGXFSZ; ignored, write() fails with EFBIG instead.
        std::signal(SIGXFSZ, SIG_IGN);
        QVERIFY(m_tmp.isValid());
    }

    // --- The regular-file reader -------------------------------------------------------------------------

    void readerReadsAWholeFileWithinItsLimit()
    {
        const fs::path f = dir() / "bytes.bin";
        std::string bytes;
        for (int i = 0; i < 200000; ++i)
            bytes += static_cast<char>(i * 7 % 256); // NUL bytes included
        writeRaw(f, bytes);
        QVERIFY(cs::readRegularFile(f, bytes.size()) == bytes);
        CS_VERIFY_INPUT_ERROR(cs::readRegularFile(f, bytes.size() - 1), "more than the 199999 bytes");
        writeRaw(f, "");
        QVERIFY(cs::readRegularFile(f, 10).empty());
    }

    void readerRefusesWhatIsNotARegularFile()
    {
        CS_VERIFY_INPUT_ERROR(cs::readRegularFile(dir(), 1000), "is a directory, expected a file");
        CS_VERIFY_INPUT_ERROR(cs::readRegularFile(dir() / "missing.json", 1000), "file not found");
        CS_VERIFY_INPUT_ERROR(cs::readRegularFile("/dev/zero", 1000), "is not a regular file (a device)");
        const fs::path fifo = dir() / "fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        QElapsedTimer t;
        t.start();
        CS_VERIFY_INPUT_ERROR(cs::readRegularFile(fifo, 1000), "is not a regular file (a pipe)");
        QVERIFY(t.elapsed() < 5000); // opening never waits for a writer
        // A regular file whose size says 0 but that cannot be read from offset 0.
        CS_VERIFY_INPUT_ERROR(cs::readRegularFile("/proc/self/mem", 1000), "cannot read");
    }

    // --- The JSON reader ---------------------------------------------------------------------------------

    void jsonReaderReportsFileLineAndColumn()
    {
        const fs::path f = dir() / "bad.json";
        // The 'x' is on line 3, column 8 (1-based, in bytes).
        writeRaw(f, "{\n  \"a\": 1,\n  \"b\": x\n}\n");
        CS_VERIFY_INPUT_ERROR(cs::readJsonFile(f), f.string() + ":3:8: not valid JSON");
    }

    void jsonReaderRefusesTrailingBytesAndNul()
    {
        const fs::path f = dir() / "trailing.json";
        writeRaw(f, std::string("{\"a\": 1}\0garbage", 16));
        CS_VERIFY_INPUT_ERROR(cs::readJsonFile(f), f.string() + ":1:9: NUL byte");
        writeRaw(f, "{\"a\": 1} {\"b\": 2}");
        CS_VERIFY_INPUT_ERROR(cs::readJsonFile(f), f.string() + ":1:10: not valid JSON");
        writeRaw(f, "{\"a\": 1}\n\n  \t\n");
        QCOMPARE(cs::readJsonFile(f)["a"].get<int>(), 1);
        writeRaw(f, "");
        CS_VERIFY_INPUT_ERROR(cs::readJsonFile(f), "not valid JSON");
    }

    void jsonReaderBoundsDepth()
    {
        const fs::path f = dir() / "deep.json";
        writeRaw(f, nested(500000));
        CS_VERIFY_INPUT_ERROR(cs::readJsonFile(f), f.string() + ":1:129: nested deeper than 128 levels");
        // Brackets inside strings are text, not nesting.
        writeRaw(f, "{\"s\": \"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"}");
        QCOMPARE(cs::readJsonFile(f)["s"].get<std::string>().size(), std::size_t(2001));
        writeRaw(f, nested(128));
        QVERIFY(cs::readJsonFile(f).is_array());
    }

    void jsonErrorsQuoteShortly()
    {
        const fs::path f = dir() / "long.json";
        // A 4 MB string ending in a control character: nlohmann quotes all of it as "last read".
        writeRaw(f, "{\"a\": \"" + std::string(4 << 20, 'z') + "\x01\"}");
        CS_VERIFY_INPUT_ERROR(cs::readJsonFile(f), "…");
        const std::string s = cs::quoteForMessage(std::string(1000, 'x'));
        QCOMPARE(s, "\"" + std::string(80, 'x') + "…\"");
        // Cut at a character boundary: 40 × "é" (2 bytes) fill 80 bytes exactly, the 41st is dropped.
        std::string accents;
        for (int i = 0; i < 41; ++i)
            accents += "\xc3\xa9";
        QCOMPARE(cs::quoteForMessage(accents), "\"" + accents.substr(0, 80) + "…\"");
        QCOMPARE(cs::quoteForMessage("a\nb\xff"), std::string("\"a b?\""));
    }

    // --- The atomic writer -------------------------------------------------------------------------------

    void writerReplacesAtomicallyAndKeepsPermissions()
    {
        const fs::path d = dir() / "write";
        fs::create_directories(d);
        const fs::path f = d / "out.json";
        cs::writeFileAtomically(f, "first");
        QCOMPARE(readRaw(f), std::string("first"));
        QCOMPARE(::chmod(f.c_str(), 0640), 0);
        cs::writeFileAtomically(f, std::string("second\0x", 8));
        QCOMPARE(readRaw(f), std::string("second\0x", 8));
        struct stat st {};
        QCOMPARE(::stat(f.c_str(), &st), 0);
        QCOMPARE(int(st.st_mode & 0777), 0640);
        QVERIFY(otherFiles(d, "out.json").empty());
        {
            cs::AtomicFileWriter w(f); // abandoned before commit: nothing changes
            w.write("third");
        }
        QCOMPARE(readRaw(f), std::string("second\0x", 8));
        QVERIFY(otherFiles(d, "out.json").empty());
    }

    void failedWriteLeavesTheOldFile()
    {
        const fs::path d = dir() / "full";
        fs::create_directories(d);
        const fs::path f = d / "session.json";
        writeRaw(f, "old content");
        // A disk that fills up in the middle of the write: the file-size limit makes write() fail (EFBIG).
        rlimit old{};
        ::getrlimit(RLIMIT_FSIZE, &old);
        rlimit small = old;
        small.rlim_cur = 4096;
        QCOMPARE(::setrlimit(RLIMIT_FSIZE, &small), 0);
        const std::string m = inputErrorOf([&] { cs::writeFileAtomically(f, std::string(100000, 'n')); });
        ::setrlimit(RLIMIT_FSIZE, &old);
        QVERIFY2(m.find(f.string() + ": cannot write: File too large") == 0, m.c_str());
        QCOMPARE(readRaw(f), std::string("old content"));
        QVERIFY(otherFiles(d, "session.json").empty());

        // /dev/full as the target: never replaced by a regular file, and the reason given.
        CS_VERIFY_INPUT_ERROR(cs::writeFileAtomically("/dev/full", "x"), "/dev/full: cannot write: is not a regular file");
        struct stat st {};
        QCOMPARE(::stat("/dev/full", &st), 0);
        QVERIFY(S_ISCHR(st.st_mode));
        CS_VERIFY_INPUT_ERROR(cs::writeFileAtomically(d, "x"), "is a directory");
    }

    void writeToAReadOnlyFolderFails()
    {
        // sysfs refuses new files for everyone, root included.
        CS_VERIFY_INPUT_ERROR(cs::writeFileAtomically("/sys/circuitscope-test.json", "x"), "/sys/circuitscope-test.json: cannot write: ");
        if (::geteuid() == 0)
            return; // root ignores folder permissions; the sysfs case above covers it
        const fs::path d = dir() / "readonly";
        fs::create_directories(d);
        writeRaw(d / "a.json", "old");
        QCOMPARE(::chmod(d.c_str(), 0555), 0);
        const std::string m = inputErrorOf([&] { cs::writeFileAtomically(d / "a.json", "new"); });
        ::chmod(d.c_str(), 0755);
        QVERIFY2(m.find("cannot write: Permission denied") != std::string::npos, m.c_str());
        QCOMPARE(readRaw(d / "a.json"), std::string("old"));
    }

    void savedSessionSurvivesAFailedSave()
    {
        const fs::path d = dir() / "sessions";
        fs::create_directories(d);
        const fs::path f = d / "a.circuitscope.json";
        cs::Session s;
        s.modelPath = "/models/gpt2";
        s.prompt = "When Mary and John";
        s.pins.push_back({"mlp:1:5@3", "a note"});
        cs::saveSession(f, s);
        const std::string saved = readRaw(f);
        cs::Session bigger = s;
        bigger.pins.push_back({"attn:0:1@2,1", std::string(200000, 'n')});
        rlimit old{};
        ::getrlimit(RLIMIT_FSIZE, &old);
        rlimit small = old;
        small.rlim_cur = saved.size() + 100;
        QCOMPARE(::setrlimit(RLIMIT_FSIZE, &small), 0);
        const std::string m = inputErrorOf([&] { cs::saveSession(f, bigger); });
        ::setrlimit(RLIMIT_FSIZE, &old);
        QVERIFY2(m.find("File too large") != std::string::npos, m.c_str());
        QCOMPARE(readRaw(f), saved);
        QCOMPARE(cs::loadSession(f).pins.size(), std::size_t(1));
        QVERIFY(otherFiles(d, "a.circuitscope.json").empty());
    }

    void killedWriterNeverLeavesAHalfWrittenSession()
    {
        const fs::path d = dir() / "killed";
        fs::create_directories(d);
        const fs::path f = d / "autosave.circuitscope.json";
        cs::saveSession(f, killTestSession(0));
        const auto pinsOf = [](const cs::Session& s) {
            std::string all;
            for (const auto& p : s.pins)
                all += p.node + '=' + p.note + ';';
            return all;
        };
        const std::string expected[2] = {pinsOf(killTestSession(0)), pinsOf(killTestSession(1))};
        std::srand(13);
        int seen[2] = {0, 0};
        int abandoned = 0;
        for (int iteration = 0; iteration < 25; ++iteration) {
            QProcess writer;
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.insert(QStringLiteral("CS_RELIABILITY_WRITER"), q(f));
            writer.setProcessEnvironment(env);
            writer.start(QCoreApplication::applicationFilePath(), {});
            QVERIFY(writer.waitForStarted(30000));
            // Past start-up (the writer says when), then a random point within a few writes. A fixed delay
            // from the process start would land before the first write whenever the machine is busy.
            while (!writer.readAllStandardOutput().contains("writing"))
                QVERIFY2(writer.waitForReadyRead(30000), "the writer did not start writing");
            QTest::qWait(std::rand() % 300);
            ::kill(static_cast<pid_t>(writer.processId()), SIGKILL);
            QVERIFY(writer.waitForFinished(30000));
            QCOMPARE(writer.exitStatus(), QProcess::CrashExit);
            const cs::Session loaded = cs::loadSession(f); // throws on a half-written file
            const std::string pins = pinsOf(loaded);
            QVERIFY2(pins == expected[0] || pins == expected[1], "the session holds neither version");
            const int which = pins == expected[0] ? 0 : 1;
            ++seen[which];
            QCOMPARE(loaded.prompt, killTestSession(which).prompt);
            QCOMPARE(loaded.ablations, killTestSession(which).ablations);
            abandoned += int(otherFiles(d, f.filename().string()).size());
        }
        qInfo("after 25 kills: %d times the first version, %d the second, %d abandoned temporary files seen", seen[0],
              seen[1], abandoned);
        QVERIFY(seen[0] > 0 && seen[1] > 0); // the kills did land at different points of the writing
        // The next write of the file clears what killed writers left (how many kills land inside a write
        // depends on the disk; one is made here for certain, named by a process that has exited).
        QProcess exited;
        exited.start(QCoreApplication::applicationFilePath(), {QStringLiteral("-functions")});
        QVERIFY(exited.waitForStarted(30000));
        const qint64 exitedPid = exited.processId(); // 0 once it has finished
        QVERIFY(exited.waitForFinished(30000));
        const fs::path litter = d / ("." + f.filename().string() + ".tmp-" + std::to_string(exitedPid) + "-0");
        writeRaw(litter, "{\"half\": ");
        const fs::path foreign = d / ".other.json.tmp-1-0"; // another file's: left alone
        writeRaw(foreign, "x");
        cs::saveSession(f, killTestSession(0));
        QVERIFY(!fs::exists(litter));
        QVERIFY(fs::exists(foreign));
        fs::remove(foreign);
        QVERIFY(otherFiles(d, f.filename().string()).empty());
    }

    // --- The loaders through the readers -----------------------------------------------------------------

    void configLoaderRefusesHostileFiles()
    {
        const fs::path d = dir() / "configs";
        fs::create_directories(d / "config-dir.json");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Config::fromFile(d / "config-dir.json"), "is a directory, expected a file");
        writeRaw(d / "trailing.json", readRaw(cs::test::dataDir() / "tiny-gpt2/config.json") + std::string("\0\x01garbage", 9));
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Config::fromFile(d / "trailing.json"), "NUL byte");
        writeRaw(d / "long.json", "{\"model_type\": \"" + std::string(4 << 20, 'g') + "\"}");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Config::fromFile(d / "long.json"), "…\" is not gpt2");
        nlohmann::json c = nlohmann::json::parse(readRaw(cs::test::dataDir() / "tiny-gpt2/config.json"));
        c["n_embd"] = 1000000000;
        writeRaw(d / "huge.json", c.dump());
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Config::fromFile(d / "huge.json"), "field 'n_embd' is 1000000000, more than 268435456");
    }

    void modelWithOversizedConfigIsRefusedBeforeAllocating()
    {
        const fs::path d = tinyModelCopy(dir() / "model-n-embd");
        nlohmann::json c = nlohmann::json::parse(readRaw(d / "config.json"));
        c["n_embd"] = 1 << 20; // plausible on its own, inconsistent with the 6.5 MB of weights
        c["n_head"] = 1;
        writeRaw(d / "config.json", c.dump());
        CS_VERIFY_INPUT_ERROR(cs::loadHfGpt2(d), "has shape [50257, 32] but config.json implies [50257, 1048576]");
    }

    void safetensorsTruncatedWhileOpenGivesAnInputError()
    {
        // Opened (header validated), then cut in half by another descriptor, then its tensors read: those
        // wholly before the cut read as before, every other one is one InputError naming the file. When the
        // reader mapped the file, the first of those reads killed the process with SIGBUS.
        const fs::path d = dir() / "truncated-open";
        fs::create_directories(d);
        const fs::path original = cs::test::dataDir() / "tiny-gpt2" / "model.safetensors";
        const fs::path f = d / "model.safetensors";
        fs::copy_file(original, f);
        const std::uint64_t size = fs::file_size(f);
        const auto reference = cs::SafetensorsFile::open(original);
        const auto st = cs::SafetensorsFile::open(f);
        std::uint64_t dataSize = 0;
        for (const auto& e : st.entries())
            dataSize = std::max(dataSize, e.end);
        const std::uint64_t dataOffset = size - dataSize; // the writer leaves no bytes after the last tensor
        const std::uint64_t cut = size / 2;
        truncateFrom(f, cut);
        int intact = 0, refused = 0;
        for (const auto& e : st.entries()) {
            if (e.end == e.begin)
                continue;
            if (dataOffset + e.end <= cut) {
                QVERIFY(at::equal(st.toFloat32(e), reference.toFloat32(*reference.find(e.name))));
                ++intact;
            } else {
                CS_VERIFY_INPUT_ERROR(st.toFloat32(e), f.string() + ": file changed while being read: it was " +
                                                           std::to_string(size) + " bytes when opened and is now " +
                                                           std::to_string(cut) + " bytes");
                ++refused;
            }
        }
        QVERIFY(intact > 0);
        QVERIFY(refused > 0);
        truncateFrom(f, 0);
        CS_VERIFY_INPUT_ERROR(st.toTensor(st.entries().front()), f.string() + ": file changed while being read");
    }

    void largeReadsSplitOverThreadsReadTheWholeSpanOrFail()
    {
        // A read of more than 16 MB is cut into one span per thread (InputFile::readAt): the spans
        // together are exactly the file's bytes, at any offset; a file cut short under the later spans is
        // one InputError, never a partial buffer taken as read.
        const fs::path f = dir() / "large-read.bin";
        const std::uint64_t size = (std::uint64_t(40) << 20) + 12345;
        std::string bytes(size, '\0');
        std::uint64_t state = 88172645463325252ull; // xorshift: every span differs from every other
        for (std::uint64_t i = 0; i < size; i += 8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            std::memcpy(bytes.data() + i, &state, std::min<std::uint64_t>(8, size - i));
        }
        writeRaw(f, bytes);
        const cs::InputFile in(f);
        std::string back(size, '\0');
        in.readAt(0, back.data(), size);
        QVERIFY(back == bytes);
        const std::uint64_t offset = 777, n = size - 2 * offset;
        std::string middle(n, '\0');
        in.readAt(offset, middle.data(), n);
        QVERIFY(middle == bytes.substr(offset, n));
        truncateFrom(f, size / 3);
        CS_VERIFY_INPUT_ERROR(in.readAt(0, back.data(), size), f.string() + ": file changed while being read: it was " +
                                                                   std::to_string(size) + " bytes when opened and is now " +
                                                                   std::to_string(size / 3) + " bytes");
    }

    void loadedModelIsASnapshotOfItsFile()
    {
        // After loading, the weights are the model's own memory: rewriting the file in place (a mapping
        // would show the new bytes) or truncating it (a mapping would raise SIGBUS at the next forward pass)
        // changes nothing, and the model still runs.
        const fs::path src = cs::test::dataDir() / "tiny-gpt2";
        const fs::path d = dir() / "snapshot";
        fs::create_directories(d);
        for (const char* name : {"model.safetensors", "vocab.json", "merges.txt", "config.json"})
            fs::copy_file(src / name, d / name);
        const auto model = cs::loadHfGpt2(d);
        const auto reference = cs::loadHfGpt2(src);
        const std::uint64_t size = fs::file_size(d / "model.safetensors");
        {
            std::fstream out(d / "model.safetensors", std::ios::binary | std::ios::in | std::ios::out);
            const std::string garbage(size, '\xff');
            out.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
            QVERIFY(out.good());
        }
        QVERIFY(cs::test::sameWeights(model->weights, reference->weights));
        truncateFrom(d / "model.safetensors", 0);
        QVERIFY(cs::test::sameWeights(model->weights, reference->weights));
        const std::vector<int> ids{464, 3290, 318, 257};
        QVERIFY(at::equal(cs::logitsAt(*model, cs::runForward(*model, ids), 3),
                          cs::logitsAt(*reference, cs::runForward(*reference, ids), 3)));
        CS_VERIFY_INPUT_ERROR(cs::loadHfGpt2(d), (d / "model.safetensors").string() + ": truncated: 0 bytes");
    }

    void weightsTruncatedWhileReadLoadOrGiveAnInputError_data()
    {
        QTest::addColumn<QString>("weights");
        QTest::newRow("safetensors") << QStringLiteral("tiny-gpt2/model.safetensors");
        QTest::newRow("pytorch_model.bin") << QStringLiteral("tiny-gpt2-bin/pytorch_model.bin");
    }
    void weightsTruncatedWhileReadLoadOrGiveAnInputError()
    {
        // Another thread cuts the weights file in half at a random moment while it is read (uniform over
        // one read's duration): each read either finishes (the cut came after the last byte was read) or
        // ends in one InputError naming the file; neither format's reader may crash.
        QFETCH(QString, weights);
        const fs::path src = cs::test::dataDir() / weights.toStdString();
        const fs::path file = dir() / ("truncated-read-" + src.filename().string());
        const bool bin = weights.endsWith(QStringLiteral(".bin"));
        const auto readAll = [&](const fs::path& f) {
            if (bin) {
                for (const auto& [name, t] : cs::loadTorchStateDict(f).tensors)
                    (void)t.sum().item<double>();
            } else {
                const auto st = cs::SafetensorsFile::open(f);
                for (const auto& e : st.entries())
                    (void)st.toTensor(e).sum().item<double>();
            }
        };
        QElapsedTimer timer;
        timer.start();
        readAll(src);
        const qint64 readMicros = std::max<qint64>(1, timer.nsecsElapsed() / 1000);
        std::srand(7);
        int loaded = 0, refused = 0;
        std::string sample;
        for (int i = 0; i < 40; ++i) {
            fs::copy_file(src, file, fs::copy_options::overwrite_existing);
            const std::uint64_t size = fs::file_size(file);
            const int delay = std::rand() % int(readMicros);
            std::thread cutter([&] {
                std::this_thread::sleep_for(std::chrono::microseconds(delay));
                truncateFrom(file, size / 2);
            });
            std::string message;
            try {
                readAll(file);
                ++loaded;
            } catch (const cs::InputError& e) {
                message = e.what();
                ++refused;
            }
            cutter.join();
            if (!message.empty()) {
                sample = message;
                QVERIFY2(message.find(file.string()) != std::string::npos, message.c_str());
                QVERIFY2(message.find('\n') == std::string::npos && message.size() < 600, message.c_str());
            }
        }
        qInfo("one read takes %lld µs; of 40 reads cut at random moments %d finished, %d gave an InputError (e.g. %s)", readMicros,
              loaded, refused, sample.c_str());
        // Where the random cuts land depends on the machine; a cut before the read starts is certain.
        fs::copy_file(src, file, fs::copy_options::overwrite_existing);
        truncateFrom(file, fs::file_size(file) / 2);
        CS_VERIFY_INPUT_ERROR(readAll(file), file.string());
    }

    void tokenizerLoaderRefusesHostileFiles()
    {
        const fs::path d = dir() / "tok";
        fs::create_directories(d);
        const fs::path merges = cs::test::dataDir() / "gpt2-tokenizer/merges.txt";
        writeRaw(d / "vocab.json", "{\"a\": " + nested(300000) + "}");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromFiles(d / "vocab.json", merges), "nested deeper than 128 levels");
        writeRaw(d / "vocab.json", "{\"a\": " + nested(100) + "}");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromFiles(d / "vocab.json", merges), "id must be an integer, got an array of 1");
        writeRaw(d / "tokenizer.json", "{\"model\": {\"type\": " + nested(400000) + "}}");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromTokenizerJson(d / "tokenizer.json"), "nested deeper than 128 levels");
        writeRaw(d / "tokenizer.json", "{\"model\": {\"type\": \"" + std::string(1 << 20, 'W') + "\"}}");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromTokenizerJson(d / "tokenizer.json"), "only BPE tokenizers");
        const fs::path vocab = cs::test::dataDir() / "gpt2-tokenizer/vocab.json";
        fs::create_symlink("/dev/zero", d / "merges-zero.txt");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromFiles(vocab, d / "merges-zero.txt"), "is not a regular file (a device)");
        fs::create_directories(d / "merges-dir.txt");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromFiles(vocab, d / "merges-dir.txt"), "is a directory");
        // Merges lost: GPT-2's 50,257 tokens with no merge rule would tokenize every text byte by byte.
        writeRaw(d / "merges-empty.txt", "");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromFiles(vocab, d / "merges-empty.txt"),
                              "the file is empty: it holds no merge rules, but the vocabulary has 50257 tokens");
        writeRaw(d / "merges-header.txt", "#version: 0.2\n\n");
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromFiles(vocab, d / "merges-header.txt"), "holds no merge rules");
        nlohmann::json doc = {{"model", {{"type", "BPE"}, {"vocab", nlohmann::json::parse(readRaw(vocab))}, {"merges", nlohmann::json::array()}}}};
        writeRaw(d / "no-merges-tokenizer.json", doc.dump());
        CS_VERIFY_INPUT_ERROR(cs::Gpt2Tokenizer::fromTokenizerJson(d / "no-merges-tokenizer.json"), "model.merges holds no merge rules");
        // A vocabulary of the 256 bytes alone needs none (a byte-level model).
        const nlohmann::json fullVocab = nlohmann::json::parse(readRaw(vocab));
        nlohmann::json bytesOnly = nlohmann::json::object();
        for (const auto& [token, id] : fullVocab.items())
            if (id.get<int>() < 256)
                bytesOnly[token] = id;
        writeRaw(d / "bytes-vocab.json", bytesOnly.dump());
        QCOMPARE(cs::Gpt2Tokenizer::fromFiles(d / "bytes-vocab.json", d / "merges-empty.txt").encode("Hi!").size(), std::size_t(3));
    }

    void saeLensCfgRefusesHostileFiles()
    {
        const fs::path d = dir() / "saelens";
        fs::create_directories(d);
        writeRaw(d / "cfg.json", "{\"d_in\": " + nested(300000) + "}");
        CS_VERIFY_INPUT_ERROR(cs::loadSaeLensSae(d), "nested deeper than 128 levels");
        fs::remove(d / "cfg.json");
        fs::create_symlink("/dev/zero", d / "cfg.json");
        CS_VERIFY_INPUT_ERROR(cs::loadSaeLensSae(d), "is not a regular file (a device)");
    }

    void sessionReaderRefusesHostileFiles()
    {
        const fs::path d = dir() / "bad-sessions";
        fs::create_directories(d / "dir.circuitscope.json");
        CS_VERIFY_INPUT_ERROR(cs::loadSession(d / "dir.circuitscope.json"), "is a directory, expected a file");
        writeRaw(d / "t.circuitscope.json", std::string("{\"schema\": \"circuitscope-session\", \"version\": 1}") + std::string("\0zz", 3));
        CS_VERIFY_INPUT_ERROR(cs::loadSession(d / "t.circuitscope.json"), "NUL byte");
        writeRaw(d / "deep.circuitscope.json", "{\"schema\": \"circuitscope-session\", \"pins\": " + nested(200000) + "}");
        CS_VERIFY_INPUT_ERROR(cs::loadSession(d / "deep.circuitscope.json"), "nested deeper than 128 levels");
    }

    // --- The command line --------------------------------------------------------------------------------

    void cliGivesOneLineAndExitTwoForHostileFiles()
    {
        const fs::path base = dir() / "cli";
        {
            const fs::path m = tinyModelCopy(base / "dir-config");
            fs::remove(m / "config.json");
            fs::create_directories(m / "config.json");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "is a directory, expected a file");
        }
        {
            const fs::path m = tinyModelCopy(base / "proc-mem");
            fs::remove(m / "config.json");
            fs::create_symlink("/proc/self/mem", m / "config.json");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "cannot read");
        }
        {
            const fs::path m = tinyModelCopy(base / "fifo");
            fs::remove(m / "config.json");
            QCOMPARE(::mkfifo((m / "config.json").c_str(), 0600), 0);
            const CliResult r = runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)});
            CS_VERIFY_CLI_BAD_INPUT(r, "is not a regular file (a pipe)");
        }
        {
            const fs::path m = tinyModelCopy(base / "trailing");
            writeRaw(m / "config.json", readRaw(m / "config.json") + std::string("\0garbage", 8));
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "NUL byte");
        }
        {
            const fs::path m = tinyModelCopy(base / "deep-vocab");
            fs::remove(m / "vocab.json");
            writeRaw(m / "vocab.json", "{\"a\": " + nested(500000) + "}");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "nested deeper than 128 levels");
        }
        {
            const fs::path m = tinyModelCopy(base / "zero-merges");
            fs::remove(m / "merges.txt");
            fs::create_symlink("/dev/zero", m / "merges.txt");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "merges.txt: is not a regular file");
        }
        {
            const fs::path m = tinyModelCopy(base / "empty-merges");
            fs::remove(m / "merges.txt"); // a link to the fixture
            writeRaw(m / "merges.txt", "");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "merges.txt: the file is empty");
        }
        {
            const fs::path m = tinyModelCopy(base / "long-string");
            writeRaw(m / "config.json", "{\"model_type\": \"" + std::string(4 << 20, 'x') + "\"}");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}), "is not gpt2");
        }
        {
            // Under a 4 GB address-space limit: a loader that allocated by the config would be killed.
            const fs::path m = tinyModelCopy(base / "huge-embd");
            nlohmann::json c = nlohmann::json::parse(readRaw(m / "config.json"));
            c["n_embd"] = 1 << 28;
            c["n_head"] = 1;
            writeRaw(m / "config.json", c.dump());
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--model"), q(m)}, std::nullopt, true),
                                    "but config.json implies [50257, 268435456]");
        }
        {
            const fs::path sae = base / "zero-sae";
            fs::create_directories(sae);
            fs::create_symlink("/dev/zero", sae / "cfg.json");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("forward"), QStringLiteral("--model"), cs::test::tinyModel(),
                                            QStringLiteral("--prompt"), QStringLiteral("Hello"), QStringLiteral("--mlp-sae"),
                                            QStringLiteral("0=") + q(sae)},
                                           std::nullopt, true),
                                    "cfg.json: is not a regular file (a device)");
        }
        {
            const fs::path sae = base / "deep-sae";
            fs::create_directories(sae);
            writeRaw(sae / "cfg.json", "{\"d_sae\": " + nested(500000) + "}");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("forward"), QStringLiteral("--model"), cs::test::tinyModel(),
                                            QStringLiteral("--prompt"), QStringLiteral("Hello"), QStringLiteral("--mlp-sae"),
                                            QStringLiteral("0=") + q(sae)}),
                                    "nested deeper than 128 levels");
        }
        {
            fs::create_directories(base / "session-dir.circuitscope.json");
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--session"), q(base / "session-dir.circuitscope.json")}),
                                    "is a directory, expected a file");
            // A session naming a 100,000-character model path: the message quotes a bounded part of it.
            const nlohmann::json s = {{"schema", "circuitscope-session"}, {"version", 1}, {"model", "/" + std::string(100000, 'p')}};
            writeRaw(base / "long.circuitscope.json", s.dump());
            CS_VERIFY_CLI_BAD_INPUT(runCli({QStringLiteral("info"), QStringLiteral("--session"), q(base / "long.circuitscope.json")}),
                                    "pppp…");
        }
    }

    // --- Text from files and standard input ------------------------------------------------------------

    void cliTakesTextFromFilesAndStandardInput()
    {
        const fs::path d = dir() / "texts";
        fs::create_directories(d);
        // Expected ids looked up in vocab.json: GPT-2 pre-tokenizes "a\0b\nline two" into "a", "\0", "b",
        // "\n", "line", " two", and its byte alphabet writes NUL as "Ā" and the newline as "Ċ".
        const nlohmann::json vocab = nlohmann::json::parse(readRaw(cs::test::dataDir() / "tiny-gpt2/vocab.json"));
        std::vector<int> expected;
        for (const char* t : {"a", "\xc4\x80", "b", "\xc4\x8a", "line", "\xc4\xa0two"})
            expected.push_back(vocab.at(t).get<int>());
        const std::string bytes("a\0b\nline two", 12);
        writeRaw(d / "nul.txt", bytes);
        const QStringList model = {QStringLiteral("--model"), cs::test::tinyModel()};
        const auto ids = [](const CliResult& r) { return nlohmann::json::parse(r.out).at("ids").get<std::vector<int>>(); };

        const CliResult fromFile = runCli(QStringList{QStringLiteral("tokenize"), QStringLiteral("--text-file"), q(d / "nul.txt")} + model);
        QVERIFY2(fromFile.exitCode == 0, fromFile.err.c_str());
        QCOMPARE(ids(fromFile), expected);
        QVERIFY(fromFile.err.empty());
        const CliResult fromStdin = runCli(QStringList{QStringLiteral("tokenize"), QStringLiteral("--text-file"), QStringLiteral("-")} + model,
                                           QByteArray(bytes.data(), qsizetype(bytes.size())));
        QVERIFY2(fromStdin.exitCode == 0, fromStdin.err.c_str());
        QCOMPARE(ids(fromStdin), expected);

        // Invalid UTF-8 is replaced by U+FFFD, as typed text with U+FFFD would be, and a warning says so.
        writeRaw(d / "invalid.txt", "ab\xff" "cd");
        const CliResult invalid = runCli(QStringList{QStringLiteral("tokenize"), QStringLiteral("--text-file"), q(d / "invalid.txt")} + model);
        QVERIFY2(invalid.exitCode == 0, invalid.err.c_str());
        QCOMPARE(invalid.err, std::string("warning: text: invalid UTF-8 replaced by U+FFFD\n"));
        const CliResult typed = runCli(QStringList{QStringLiteral("tokenize"), QStringLiteral("--text"), QStringLiteral("ab\uFFFDcd")} + model);
        QCOMPARE(ids(invalid), ids(typed));

        // A multi-line prompt from a file runs exactly as the same prompt given as an argument.
        const std::string prompt = "When Mary and John went to the store,\nJohn gave a drink to";
        writeRaw(d / "prompt.txt", prompt);
        const CliResult forwardFile = runCli(QStringList{QStringLiteral("forward"), QStringLiteral("--prompt-file"), q(d / "prompt.txt")} + model);
        const CliResult forwardArg = runCli(QStringList{QStringLiteral("forward"), QStringLiteral("--prompt"), QString::fromStdString(prompt)} + model);
        QVERIFY2(forwardFile.exitCode == 0, forwardFile.err.c_str());
        QCOMPARE(forwardFile.out, forwardArg.out);
        const CliResult forwardNul = runCli(QStringList{QStringLiteral("forward"), QStringLiteral("--prompt-file"), QStringLiteral("-")} + model,
                                            QByteArray(bytes.data(), qsizetype(bytes.size())));
        QVERIFY2(forwardNul.exitCode == 0, forwardNul.err.c_str());
        QCOMPARE(ids(forwardNul), expected);
        const CliResult second = runCli(QStringList{QStringLiteral("nodes"), QStringLiteral("--prompt-file"), q(d / "prompt.txt"),
                                                    QStringLiteral("--prompt2-file"), QStringLiteral("-"), QStringLiteral("--target"),
                                                    QStringLiteral(" Mary"), QStringLiteral("--distractor"), QStringLiteral(" John"),
                                                    QStringLiteral("--top"), QStringLiteral("3")} + model,
                                        QByteArray("When John and Mary went to the store,\nMary gave a drink to"));
        QVERIFY2(second.exitCode == 0, second.err.c_str());
        QVERIFY(nlohmann::json::parse(second.out).contains("right"));

        // Misuse: one line, exit 2.
        CS_VERIFY_CLI_BAD_INPUT(runCli(QStringList{QStringLiteral("forward"), QStringLiteral("--prompt"), QStringLiteral("x"),
                                                   QStringLiteral("--prompt-file"), q(d / "prompt.txt")} + model),
                                "--prompt and --prompt-file: give one of them");
        CS_VERIFY_CLI_BAD_INPUT(runCli(QStringList{QStringLiteral("forward"), QStringLiteral("--prompt-file"), q(d / "missing.txt")} + model),
                                "missing.txt: file not found");
        CS_VERIFY_CLI_BAD_INPUT(runCli(QStringList{QStringLiteral("tokenize"), QStringLiteral("--text-file"), q(d)} + model),
                                "is a directory, expected a file");
        CS_VERIFY_CLI_BAD_INPUT(runCli(QStringList{QStringLiteral("nodes"), QStringLiteral("--prompt-file"), QStringLiteral("-"),
                                                   QStringLiteral("--prompt2-file"), QStringLiteral("-"), QStringLiteral("--target"),
                                                   QStringLiteral(" Mary")} + model,
                                       QByteArray("text")),
                                "standard input is already read");
        CS_VERIFY_CLI_BAD_INPUT(runCli(QStringList{QStringLiteral("forward"), QStringLiteral("--prompt-file"), QStringLiteral("/dev/zero")} + model),
                                "is not a regular file (a device)");
    }

private:
    fs::path dir() const { return fs::path(m_tmp.path().toStdString()); }

    QTemporaryDir m_tmp;
};

int main(int argc, char** argv)
{
    if (const char* file = std::getenv("CS_RELIABILITY_WRITER"))
        runWriter(file);
    QCoreApplication app(argc, argv);
    TestReliability test;
    return QTest::qExec(&test, argc, argv);
}
#include "tst_reliability.moc"
