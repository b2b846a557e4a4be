// Every intervention option of circuitscope-cli (product.md §5.1) on every command, one bad value at a
// time and in pairs: each run must end with exactly one line on stderr naming the option at fault, exit
// code 2 and nothing on stdout — never "internal error", a crash, a libtorch backtrace or a second line.
// Valid values of the same options on the same command lines succeed, so every refusal below is caused by
// the bad value and not by the rest of the command line. tst_cli checks the exact messages of a few cases;
// this suite checks the contract over the whole grid.

#include "test_support.h"

#include "app/cli_app.h"

#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QSet>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

struct Run {
    QString label;
    QStringList args;
    QStringList needles; // the one stderr line must contain one of them (the option at fault)
    QByteArray stdinBytes;
    bool expectOk = false;
    // Results.
    int exitCode = -1;
    QProcess::ExitStatus status = QProcess::CrashExit;
    QByteArray out, err;
};

// Reads a whole file (the captured output of a run).
QByteArray readAll(const QString& file)
{
    QFile f(file);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// Runs all of them, a few at a time, each in a forked copy of this process calling cs::runCli, the
// program's whole code after its process setup (app/cli_app.h), with standard input, output and error
// on files of its own. Starting the program instead costs 0.5 s of CPU per command line in the dynamic
// loader and libtorch's static initializers, most of the time of a bad-value run; a fork shares them.
// A crash is still a crash (the child dies of a signal: CrashExit). This process runs no libtorch code
// itself, so no thread pool is forked. theProgramGivesTheSameResults checks a sample against the program.
void runAll(std::vector<Run>& runs, const QString& scratch)
{
    constexpr std::size_t kParallel = 3;
    std::size_t next = 0;
    std::map<pid_t, std::size_t> active;
    std::map<pid_t, QElapsedTimer> started;
    const auto file = [&](std::size_t i, const char* what) { return QStringLiteral("%1/run-%2.%3").arg(scratch).arg(i).arg(QLatin1String(what)); };
    while (next < runs.size() || !active.empty()) {
        while (next < runs.size() && active.size() < kParallel) {
            const std::size_t i = next++;
            {
                QFile in(file(i, "in"));
                if (!in.open(QIODevice::WriteOnly) || in.write(runs[i].stdinBytes) != runs[i].stdinBytes.size())
                    qFatal("cannot write %s", qPrintable(in.fileName()));
            }
            const QByteArray in = file(i, "in").toLocal8Bit(), out = file(i, "out").toLocal8Bit(), err = file(i, "err").toLocal8Bit();
            std::fflush(nullptr);
            const pid_t pid = ::fork();
            if (pid < 0)
                qFatal("fork failed");
            if (pid == 0) {
                // The child: the program's streams on the run's files, then exactly what main() does.
                const int fds[3] = {::open(in.constData(), O_RDONLY), ::open(out.constData(), O_WRONLY | O_CREAT | O_TRUNC, 0600),
                                    ::open(err.constData(), O_WRONLY | O_CREAT | O_TRUNC, 0600)};
                for (int fd = 0; fd < 3; ++fd)
                    if (fds[fd] < 0 || ::dup2(fds[fd], fd) < 0)
                        ::_exit(121);
                cs::silenceQtMessages();
                const int code = cs::runCli(QStringList{QStringLiteral("circuitscope-cli")} + runs[i].args);
                std::cout.flush();
                std::cerr.flush();
                std::fflush(nullptr);
                ::_exit(code);
            }
            active[pid] = i;
            started[pid].start();
        }
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid == 0) {
            for (const auto& [p, timer] : started)
                if (timer.elapsed() > 120000)
                    qFatal("circuitscope-cli did not finish within 120 s: %s", qPrintable(runs[active[p]].args.join(u' ')));
            QThread::msleep(2);
            continue;
        }
        if (pid < 0)
            qFatal("waitpid failed");
        const std::size_t i = active[pid];
        active.erase(pid);
        started.erase(pid);
        Run& r = runs[i];
        r.status = WIFEXITED(status) ? QProcess::NormalExit : QProcess::CrashExit;
        r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = readAll(file(i, "out"));
        r.err = readAll(file(i, "err"));
        for (const char* what : {"in", "out", "err"})
            QFile::remove(file(i, what));
    }
}

// The same command lines through the program itself (QProcess), for theProgramGivesTheSameResults.
void runProgram(std::vector<Run>& runs)
{
    for (Run& r : runs) {
        QProcess p;
        p.start(QStringLiteral(CLI_PATH), r.args);
        if (!p.waitForStarted(30000))
            qFatal("circuitscope-cli did not start");
        p.write(r.stdinBytes);
        p.closeWriteChannel();
        if (!p.waitForFinished(120000))
            qFatal("circuitscope-cli did not finish within 120 s: %s", qPrintable(r.args.join(u' ')));
        r.exitCode = p.exitCode();
        r.status = p.exitStatus();
        r.out = p.readAllStandardOutput();
        r.err = p.readAllStandardError();
    }
}

// What is wrong with a bad-input run's result ("" when it keeps the contract).
QString contractViolation(const Run& r)
{
    const QString err = QString::fromUtf8(r.err);
    if (r.status != QProcess::NormalExit)
        return QStringLiteral("crashed");
    if (r.exitCode != 2)
        return QStringLiteral("exit code %1").arg(r.exitCode);
    if (!r.out.isEmpty())
        return QStringLiteral("printed on stdout");
    if (r.err.count('\n') != 1 || !r.err.endsWith('\n'))
        return QStringLiteral("%1 lines on stderr").arg(r.err.count('\n'));
    if (!err.startsWith(QStringLiteral("circuitscope-cli: ")))
        return QStringLiteral("message does not start with the program's name");
    for (const char* bad : {"internal error", "Exception raised from", "terminate called", "frame #", "what():"})
        if (err.contains(QLatin1String(bad)))
            return QStringLiteral("message contains '%1'").arg(QLatin1String(bad));
    if (err.size() > 400)
        return QStringLiteral("message is %1 characters").arg(err.size());
    if (!std::any_of(r.needles.begin(), r.needles.end(), [&](const QString& n) { return err.contains(n); }))
        return QStringLiteral("message names none of '%1'").arg(r.needles.join(QStringLiteral("', '")));
    return {};
}

QString describe(const Run& r)
{
    return r.label + QStringLiteral(" [") + r.args.mid(1).join(u' ') + QStringLiteral("] -> ") + QString::fromUtf8(r.err).trimmed();
}

// One option's value: the option (without its dashes), the value, extra options it needs to be valid
// (or to be bad in the intended way), and what the error line must mention.
struct Value {
    QString option;
    QString value;
    QStringList extra;
    QStringList needles;
};

enum Command { Forward, Node, Nodes, Figure };
const char* kCommandNames[] = {"forward", "node", "nodes", "figure"};

// The commands that take each option (product.md §5.1: ablation for all four; objective and trace for
// the three that compute effects; a second prompt for nodes only).
std::set<Command> commandsTaking(const QString& option)
{
    if (option == u"ablate" || option == u"prompt-file" || option == u"top")
        return {Forward, Node, Nodes, Figure};
    if (option == u"prompt2" || option == u"prompt2-file" || option == u"target2" || option == u"distractor2")
        return {Nodes};
    return {Node, Nodes, Figure}; // target, distractor, objective, trace, through, downstream, downstream-through
}

} // namespace

class TestCliOptions : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        QVERIFY(m_tmp.isValid());
        writeFile(QStringLiteral("prompt.txt"), cs::test::kPrompt.toUtf8());
        writeFile(QStringLiteral("prompt2.txt"), QByteArrayLiteral("When Mary and John went out, John gave it to"));
        writeFile(QStringLiteral("empty.txt"), QByteArray());
        QDir(m_tmp.path()).mkdir(QStringLiteral("folder"));
    }

    void validValuesSucceed()
    {
        // Each valid value alone on each command that takes it, plus a few valid combinations: the
        // base command lines below are sound, so a refusal in the bad-value grid is the bad value's.
        std::vector<Run> runs;
        for (const Value& v : validValues())
            for (Command c : commandsTaking(v.option))
                runs.push_back(run(c, QStringLiteral("valid --%1 %2").arg(v.option, v.value), {{v}}, true));
        runs.push_back(run(Nodes, QStringLiteral("valid combination"),
                           {{valid(u"ablate"), valid(u"trace"), valid(u"target2"), valid(u"top")}}, true));
        runs.push_back(run(Nodes, QStringLiteral("valid V trace"),
                           {{{QStringLiteral("trace"), QStringLiteral("attn:0:1@-1,2"),
                              {QStringLiteral("--through"), QStringLiteral("v"), QStringLiteral("--downstream"), QStringLiteral("mlp:1:3@-1"),
                               QStringLiteral("--ablate"), QStringLiteral("attn:1:0@*=0.25")},
                              {}}}},
                           true));
        runAll(runs, m_tmp.path());
        for (const Run& r : runs) {
            QVERIFY2(r.status == QProcess::NormalExit && r.exitCode == 0, qPrintable(describe(r)));
            QVERIFY2(r.out.startsWith('{') && r.out.endsWith("}\n"), qPrintable(describe(r)));
        }
        qInfo("%zu valid command lines succeeded", runs.size());
    }

    // The forked runs stand for the program: a sample of valid and bad command lines of every command
    // (and one reading standard input) gives the same exit code, standard output and standard error,
    // byte for byte, through the program itself.
    void theProgramGivesTheSameResults()
    {
        std::vector<Run> sample;
        for (Command c : {Forward, Node, Nodes, Figure}) {
            sample.push_back(run(c, QStringLiteral("valid"), {}, true));
            sample.push_back(run(c, QStringLiteral("valid --ablate"), {{valid(u"ablate")}}, true));
            int bad = 0;
            for (const Value& v : badValues())
                if (commandsTaking(v.option).count(c) && bad++ % 12 == 0)
                    sample.push_back(run(c, QStringLiteral("bad --%1 '%2'").arg(v.option, v.value), {{v}}));
        }
        sample.push_back(run(Nodes, QStringLiteral("prompt from standard input"),
                             {{{QStringLiteral("prompt-file"), QStringLiteral("-"), {}, {}}}}, true, QByteArrayLiteral("When Mary and John went to")));
        sample.push_back(run(Forward, QStringLiteral("an option no command takes"), {{{QStringLiteral("bogus-option"), QStringLiteral("1"), {}, {}}}}));
        std::vector<Run> program = sample;
        runAll(sample, m_tmp.path());
        runProgram(program);
        for (std::size_t i = 0; i < sample.size(); ++i) {
            const Run &f = sample[i], &p = program[i];
            QVERIFY2(f.status == QProcess::NormalExit && p.status == QProcess::NormalExit, qPrintable(describe(p)));
            QVERIFY2(f.exitCode == p.exitCode, qPrintable(QStringLiteral("%1 vs %2: ").arg(f.exitCode).arg(p.exitCode) + describe(p)));
            QVERIFY2(f.err == p.err, qPrintable(describe(f) + QStringLiteral(" vs ") + QString::fromUtf8(p.err)));
            QVERIFY2(f.out == p.out, qPrintable(describe(p)));
            QVERIFY2(p.expectOk == (p.exitCode == 0), qPrintable(describe(p)));
        }
        qInfo("%zu command lines gave the same results forked and through the program", sample.size());
    }

    void everyBadValueOnEveryCommandIsOneLineAndExitTwo_data()
    {
        QTest::addColumn<int>("command");
        for (Command c : {Forward, Node, Nodes, Figure})
            QTest::newRow(kCommandNames[c]) << int(c);
    }
    void everyBadValueOnEveryCommandIsOneLineAndExitTwo()
    {
        QFETCH(int, command);
        const Command c = Command(command);
        std::vector<Run> runs;
        for (const Value& v : badValues())
            if (commandsTaking(v.option).count(c))
                runs.push_back(run(c, QStringLiteral("bad --%1 '%2'").arg(v.option, v.value), {{v}}));
        // A valid value on a command that does not take the option is refused too (it would be ignored).
        for (const Value& v : validValues()) {
            {
                if (commandsTaking(v.option).count(c))
                    continue;
                Value named = v;
                // The first option the command does not take is named: this one or one it needs.
                named.needles.clear();
                for (const QString& o : optionsOf(v))
                    named.needles << QStringLiteral("--") + o + QStringLiteral(":");
                if (v.option == u"prompt2-file")
                    named.needles << QStringLiteral("--prompt2:"); // node: "--prompt2: only the nodes command compares two prompts"
                runs.push_back(run(c, QStringLiteral("--%1 on %2").arg(v.option, QLatin1String(kCommandNames[c])), {{named}}));
            }
        }
        check(runs);
    }

    void pairsOfBadValuesAreOneLineAndExitTwo()
    {
        // One bad value of each of two different options (the first bad value of each option, on nodes,
        // which takes them all): whichever is found first, one line names one of the two.
        std::vector<Value> firstBad;
        std::set<QString> seen;
        for (const Value& v : badValues())
            if (seen.insert(v.option).second)
                firstBad.push_back(v);
        std::vector<Run> runs;
        for (std::size_t i = 0; i < firstBad.size(); ++i)
            for (std::size_t j = i + 1; j < firstBad.size(); ++j) {
                Value a = firstBad[i], b = firstBad[j];
                if (usesStandardInput(a) && usesStandardInput(b))
                    continue; // a conflict of its own, below
                if (!(optionsOf(a) & optionsOf(b)).isEmpty())
                    continue; // the same option twice: a conflict of its own, below
                runs.push_back(run(Nodes, QStringLiteral("pair --%1 '%2' + --%3 '%4'").arg(a.option, a.value, b.option, b.value), {{a, b}}));
            }
        check(runs);
    }

    void conflictingOptionsAreOneLineAndExitTwo()
    {
        // Options that are each valid but contradict each other.
        const QString p1 = path(QStringLiteral("prompt.txt")), p2 = path(QStringLiteral("prompt2.txt"));
        const auto v = [](const char* option, QString value, QStringList extra, QStringList needles) {
            return Value{QString::fromLatin1(option), std::move(value), std::move(extra), std::move(needles)};
        };
        const std::vector<std::pair<QString, std::vector<Value>>> conflicts = {
            {QStringLiteral("--prompt and --prompt-file"), {v("prompt-file", p1, {QStringLiteral("--prompt"), QStringLiteral("Mary went")}, {QStringLiteral("--prompt-file")})}},
            {QStringLiteral("--prompt2 and --prompt2-file"),
             {v("prompt2", QStringLiteral("Mary went"), {QStringLiteral("--prompt2-file"), p2}, {QStringLiteral("--prompt2-file")})}},
            {QStringLiteral("both prompts from standard input"),
             {v("prompt-file", QStringLiteral("-"), {QStringLiteral("--prompt2-file"), QStringLiteral("-")}, {QStringLiteral("standard input")})}},
            {QStringLiteral("one node ablated to two values"),
             {v("ablate", QStringLiteral("mlp:0:1@3=1"), {QStringLiteral("--ablate"), QStringLiteral("mlp:0:1@3=2")}, {QStringLiteral("--ablate")})}},
            {QStringLiteral("a pair and its whole row ablated to two values"),
             {v("ablate", QStringLiteral("attn:0:1@5,2=0.5"), {QStringLiteral("--ablate"), QStringLiteral("attn:0:1@5=0")}, {QStringLiteral("--ablate")})}},
            {QStringLiteral("@* and one token to two values"),
             {v("ablate", QStringLiteral("mlp:0:1@*=1"), {QStringLiteral("--ablate"), QStringLiteral("mlp:0:1@-1=0")}, {QStringLiteral("--ablate")})}},
            {QStringLiteral("prob with a distractor"),
             {v("objective", QStringLiteral("prob"), {QStringLiteral("--distractor"), QStringLiteral(" John")}, {QStringLiteral("--objective")})}},
            {QStringLiteral("logit_minus_mean with a distractor"),
             {v("objective", QStringLiteral("logit_minus_mean"), {QStringLiteral("--distractor"), QStringLiteral(" John")}, {QStringLiteral("--objective")})}},
            {QStringLiteral("--through on a traced neuron"),
             {v("trace", QStringLiteral("mlp:1:3@-1"), {QStringLiteral("--through"), QStringLiteral("k")}, {QStringLiteral("--through")})}},
            {QStringLiteral("--downstream without --through v"),
             {v("trace", QStringLiteral("attn:0:1@-1,2"), {QStringLiteral("--downstream"), QStringLiteral("mlp:1:3@-1")}, {QStringLiteral("--downstream")})}},
            {QStringLiteral("--downstream upstream of the head"),
             {v("trace", QStringLiteral("attn:1:1@-1,2"),
                {QStringLiteral("--through"), QStringLiteral("v"), QStringLiteral("--downstream"), QStringLiteral("attn:0:1@-1,2")},
                {QStringLiteral("--downstream")})}},
            {QStringLiteral("--downstream-through v"),
             {v("trace", QStringLiteral("attn:0:1@-1,2"),
                {QStringLiteral("--through"), QStringLiteral("v"), QStringLiteral("--downstream"), QStringLiteral("attn:1:1@-1,3"),
                 QStringLiteral("--downstream-through"), QStringLiteral("v")},
                {QStringLiteral("--downstream-through")})}},
            {QStringLiteral("--downstream-through on a downstream neuron"),
             {v("trace", QStringLiteral("attn:0:1@-1,2"),
                {QStringLiteral("--through"), QStringLiteral("v"), QStringLiteral("--downstream"), QStringLiteral("mlp:1:3@-1"),
                 QStringLiteral("--downstream-through"), QStringLiteral("q")},
                {QStringLiteral("--downstream-through")})}},
            {QStringLiteral("--trace token beyond the second prompt"),
             {v("trace", QStringLiteral("mlp:1:3@12"), {QStringLiteral("--prompt2"), QStringLiteral("Mary went")}, {QStringLiteral("--trace")})}},
            {QStringLiteral("--ablate token beyond the second prompt"),
             {v("ablate", QStringLiteral("attn:0:1@12,3"), {QStringLiteral("--prompt2"), QStringLiteral("Mary went")}, {QStringLiteral("--ablate")})}},
            {QStringLiteral("--distractor2 without a target"),
             {v("prompt2", QStringLiteral("Mary went"), {QStringLiteral("--distractor2"), QStringLiteral(" John")}, {QStringLiteral("--distractor2")})}},
            {QStringLiteral("--target2 of two tokens"),
             {v("prompt2", QStringLiteral("Mary went"), {QStringLiteral("--target2"), QStringLiteral(" Mary and")}, {QStringLiteral("target2")})}},
            {QStringLiteral("--prompt twice"), {v("prompt", QStringLiteral("Mary went"), {}, {QStringLiteral("--prompt")})}},
            {QStringLiteral("--trace twice"),
             {v("trace", QStringLiteral("mlp:1:3@-1"), {QStringLiteral("--trace"), QStringLiteral("mlp:1:4@-1")}, {QStringLiteral("--trace")})}},
            {QStringLiteral("--objective twice"),
             {v("objective", QStringLiteral("prob"), {QStringLiteral("--objective"), QStringLiteral("logit_diff")}, {QStringLiteral("--objective")})}},
            {QStringLiteral("--top twice"), {v("top", QStringLiteral("3"), {QStringLiteral("--top"), QStringLiteral("4")}, {QStringLiteral("--top")})}},
            {QStringLiteral("--through twice"),
             {v("trace", QStringLiteral("attn:1:1@-1,2"), {QStringLiteral("--through"), QStringLiteral("q"), QStringLiteral("--through"), QStringLiteral("k")},
                {QStringLiteral("--through")})}},
            {QStringLiteral("--prompt2 over the context"),
             {v("prompt2", QStringLiteral(" a").repeated(80), {}, {QStringLiteral("second prompt")})}},
        };
        std::vector<Run> runs;
        for (const auto& [label, values] : conflicts)
            runs.push_back(run(Nodes, label, values, false,
                               label == u"both prompts from standard input" ? QByteArrayLiteral("text") : QByteArray()));
        check(runs);
    }

private:
    void writeFile(const QString& name, const QByteArray& bytes)
    {
        QFile f(path(name));
        QVERIFY(f.open(QIODevice::WriteOnly));
        QCOMPARE(f.write(bytes), bytes.size());
    }

    QString path(const QString& name) const { return m_tmp.filePath(name); }

    // The options a value sets (its own and those in `extra`).
    static QSet<QString> optionsOf(const Value& v)
    {
        QSet<QString> out{v.option};
        for (const QString& e : v.extra)
            if (e.startsWith(QStringLiteral("--")))
                out.insert(e.mid(2));
        return out;
    }

    static bool usesStandardInput(const Value& v) { return v.value == u"-" || v.extra.contains(QStringLiteral("-")); }

    std::vector<Value> validValues() const
    {
        const auto v = [](const char* option, QString value, QStringList extra = {}) {
            return Value{QString::fromLatin1(option), std::move(value), std::move(extra), {}};
        };
        return {
            v("ablate", QStringLiteral("mlp:0:1@3=0.5")),
            v("ablate", QStringLiteral("attn:1:2@*")),
            v("prompt-file", path(QStringLiteral("prompt.txt"))),
            v("top", QStringLiteral("3")),
            v("target", QStringLiteral(" drink")),
            v("distractor", QStringLiteral(" John")),
            v("objective", QStringLiteral("logit_minus_mean")),
            v("trace", QStringLiteral("mlp:1:3@-1")),
            v("through", QStringLiteral("q"), {QStringLiteral("--trace"), QStringLiteral("attn:1:1@-1,2")}),
            v("downstream", QStringLiteral("attn:1:1@-1,3"), {QStringLiteral("--trace"), QStringLiteral("attn:0:1@-1,2"), QStringLiteral("--through"), QStringLiteral("v")}),
            v("downstream-through", QStringLiteral("k"),
              {QStringLiteral("--trace"), QStringLiteral("attn:0:1@-1,2"), QStringLiteral("--through"), QStringLiteral("v"),
               QStringLiteral("--downstream"), QStringLiteral("attn:1:1@-1,3")}),
            v("prompt2", QStringLiteral("When Mary and John went out, John gave it to")),
            v("prompt2-file", path(QStringLiteral("prompt2.txt"))),
            v("target2", QStringLiteral(" John"), {QStringLiteral("--prompt2"), QStringLiteral("When John and Mary went out, Mary gave it to")}),
            v("distractor2", QStringLiteral(" Mary"),
              {QStringLiteral("--prompt2"), QStringLiteral("When John and Mary went out, Mary gave it to"), QStringLiteral("--target2"), QStringLiteral(" John")}),
        };
    }

    Value valid(char16_t const* option) const
    {
        for (const Value& v : validValues())
            if (v.option == QStringView(option))
                return v;
        qFatal("no valid value for an option");
    }

    std::vector<Value> badValues() const
    {
        // needles: the flag; node-name errors are prefixed by the flag that carried the name.
        const auto v = [](const char* option, QString value, QStringList extra = {}) {
            return Value{QString::fromLatin1(option), std::move(value), std::move(extra), {QStringLiteral("--") + QString::fromLatin1(option)}};
        };
        const QString dir = path(QStringLiteral("folder")), empty = path(QStringLiteral("empty.txt")),
                      missing = path(QStringLiteral("missing.txt"));
        const QString sae = QString::fromStdString((cs::test::dataDir() / "sae" / "mlp_post_act.relu.pt").string());
        std::vector<Value> out;
        for (const char* a : {"", "=1", "bogus", "mlp", "mlp:0:1", "mlp:0:1@", "mlp:0:1@x", "mlp:0:1@99", "mlp:0:1@-99",
                              "mlp:0:1@99999999999", "mlp:9:1@0", "mlp:-1:1@0", "mlp:0:99999@0", "mlp:0:-1@0", "attn:0:9@0",
                              "attn:0:1@3,5", "attn:0:1@3,99", "attn:0:1@*,2", "attn:0:1@3,", "mlp:0:1@0,1", "emb@0",
                              "mlp_sae:0:1@0", "attn_sae:0:1@0", "resid_sae:0:1@0", "neuron:0:1@0", "mlp:0:1@0=", "mlp:0:1@0=abc",
                              "mlp:0:1@0=nan", "mlp:0:1@0=inf", "mlp:0:1@0=-inf", "mlp:0:1@0=1e999", "mlp:0:1@0==1", "mlp:0:1@0=1 2",
                              "mlp:0:1@0=0x10", "mlp:0:1@ 0", "mlp:0:1.5@0"})
            out.push_back(v("ablate", QString::fromLatin1(a)));
        out.push_back(v("ablate", QStringLiteral("mlp_sae:0:99999@0"), {QStringLiteral("--mlp-sae"), QStringLiteral("0=") + sae}));
        for (const QString& f : {missing, dir, QStringLiteral("/dev/zero"), empty})
            out.push_back(v("prompt-file", f));
        for (const char* t : {"0", "-1", "x", "99999999999", "1.5", ""})
            out.push_back(v("top", QString::fromLatin1(t)));
        for (const char* t : {"", " Mary and", "Maryqqzzxxyyqqzz"})
            out.push_back(v("target", QString::fromLatin1(t)));
        for (const char* t : {"", " Mary and"})
            out.push_back(v("distractor", QString::fromLatin1(t)));
        out.push_back(v("distractor", QStringLiteral(" John"), {QStringLiteral("--objective"), QStringLiteral("prob")}));
        for (const char* o : {"bogus", "", "activation", "attention_score", "value_write", "LOGIT_DIFF"})
            out.push_back(v("objective", QString::fromLatin1(o)));
        for (const char* t : {"", "bogus", "mlp:9:1@0", "mlp:0:1@99", "mlp:0:1@*", "attn:0:1@-1", "attn:0:1@3,5", "attn:0:1@*,2",
                              "emb@0", "mlp_sae:0:1@0", "mlp:0:99999@-1"})
            out.push_back(v("trace", QString::fromLatin1(t)));
        for (const char* t : {"", "x", "V", "qkv"})
            out.push_back(v("through", QString::fromLatin1(t), {QStringLiteral("--trace"), QStringLiteral("attn:1:1@-1,2")}));
        out.push_back(v("through", QStringLiteral("q"))); // without --trace
        out.push_back(v("through", QStringLiteral("v"), {QStringLiteral("--trace"), QStringLiteral("attn:1:1@-1,2")})); // nodes: no target
        for (const char* d : {"", "bogus", "mlp:9:1@0", "emb@0", "mlp:1:3@99"})
            out.push_back(v("downstream", QString::fromLatin1(d),
                            {QStringLiteral("--trace"), QStringLiteral("attn:0:1@-1,2"), QStringLiteral("--through"), QStringLiteral("v")}));
        out.push_back(v("downstream", QStringLiteral("mlp:1:3@-1"))); // without --trace
        for (const char* d : {"", "x", "v"})
            out.push_back(v("downstream-through", QString::fromLatin1(d),
                            {QStringLiteral("--trace"), QStringLiteral("attn:0:1@-1,2"), QStringLiteral("--through"), QStringLiteral("v"),
                             QStringLiteral("--downstream"), QStringLiteral("attn:1:1@-1,3")}));
        out.push_back(v("downstream-through", QStringLiteral("q"),
                        {QStringLiteral("--trace"), QStringLiteral("attn:0:1@-1,2"), QStringLiteral("--through"), QStringLiteral("v")}));
        out.push_back(v("prompt2", QString()));
        out.push_back(v("prompt2", QStringLiteral(" a").repeated(80)));
        for (const QString& f : {missing, dir, QStringLiteral("/dev/zero"), empty})
            out.push_back(v("prompt2-file", f));
        out.push_back(v("target2", QStringLiteral(" John"))); // without --prompt2
        out.push_back(v("target2", QStringLiteral(" Mary and"), {QStringLiteral("--prompt2"), QStringLiteral("Mary went")}));
        out.push_back(v("distractor2", QStringLiteral(" John"))); // without --prompt2
        out.push_back(v("distractor2", QStringLiteral(""), {QStringLiteral("--prompt2"), QStringLiteral("Mary went"), QStringLiteral("--target2"), QStringLiteral(" John")}));
        // Messages quote what was wrong: accept the flag's name without dashes where the core words it so
        // ("target: ' Mary and' is 2 tokens", "second prompt: empty").
        for (Value& b : out) {
            if (b.option == u"target" || b.option == u"distractor" || b.option == u"target2" || b.option == u"distractor2")
                b.needles << b.option + QStringLiteral(":") << QStringLiteral("--") + b.option;
            if (b.option == u"prompt2" || b.option == u"prompt2-file")
                b.needles << QStringLiteral("second prompt");
            if (b.option.endsWith(QStringLiteral("-file")))
                b.needles << b.value; // file errors name the file
            if (b.option == u"prompt-file")
                b.needles << QStringLiteral("prompt:"); // "prompt: empty": whatever it came from
        }
        return out;
    }

    // The command's base command line (valid on its own) with the values added.
    Run run(Command c, const QString& label, const std::vector<Value>& values, bool expectOk = false, const QByteArray& stdinBytes = {})
    {
        Run r;
        r.label = QStringLiteral("%1: %2").arg(QLatin1String(kCommandNames[c]), label);
        r.expectOk = expectOk;
        r.stdinBytes = stdinBytes;
        r.args << QString::fromLatin1(kCommandNames[c]) << QStringLiteral("--model") << cs::test::tinyModel();
        const bool promptFromFile = std::any_of(values.begin(), values.end(), [](const Value& v) { return v.option == u"prompt-file"; });
        const bool objectiveGiven = std::any_of(values.begin(), values.end(), [](const Value& v) {
            return v.option == u"target" || v.option == u"trace" || v.extra.contains(QStringLiteral("--trace"));
        });
        if (!promptFromFile)
            r.args << QStringLiteral("--prompt") << cs::test::kPrompt;
        if (c == Node || c == Figure)
            r.args << QStringLiteral("--node") << QStringLiteral("mlp:0:5@-1");
        if (c == Figure)
            r.args << QStringLiteral("--view") << QStringLiteral("activation") << QStringLiteral("--out") << path(QStringLiteral("figure.csv"));
        if ((c == Node || c == Nodes || c == Figure) && !objectiveGiven)
            r.args << QStringLiteral("--target") << QStringLiteral(" Mary");
        for (const Value& v : values) {
            r.args << QStringLiteral("--") + v.option << v.value << v.extra;
            r.needles << v.needles;
        }
        return r;
    }

    void check(std::vector<Run>& runs)
    {
        runAll(runs, m_tmp.path());
        int failures = 0;
        for (const Run& r : runs) {
            const QString problem = contractViolation(r);
            if (!problem.isEmpty()) {
                ++failures;
                qWarning("%s: %s", qPrintable(problem), qPrintable(describe(r)));
            }
        }
        qInfo("%zu bad command lines, %d broke the contract", runs.size(), failures);
        QCOMPARE(failures, 0);
    }

    QTemporaryDir m_tmp;
};

int main(int argc, char** argv)
{
    // A few hundred command lines, each loading the model: minutes on a busy machine, more than QtTest's
    // default 5 minutes per test function.
    if (qEnvironmentVariableIsEmpty("QTEST_FUNCTION_TIMEOUT"))
        qputenv("QTEST_FUNCTION_TIMEOUT", "1200000");
    // The forked runs call cs::runCli, which needs what the program's main() makes: a QApplication on the
    // offscreen platform (figure draws its charts).
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    QApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("circuitscope-cli"));
    TestCliOptions test;
    return QTest::qExec(&test, argc, argv);
}
#include "tst_cli_options.moc"
