// Nothing the user made is lost when the app is killed (issue 13): the real program (`circuitscope`,
// offscreen) opens the demo's walkthrough session, a user pins and annotates nodes, adds ablations and a
// trace; the autosave timer writes them; the process is killed with SIGKILL; started again, it offers the
// recovery, which is accepted, and the window then holds exactly the pins, notes, ablations and trace of
// before. The app is driven through its test hook (app/gui_test_driver.h), with a private HOME and XDG
// folders so the user's own autosave and settings are never touched.

#include "test_support.h"

#include "core/session/session.h"
#include "core/util/files.h"

#include <QElapsedTimer>
#include <QProcess>
#include <QProcessEnvironment>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include <csignal>
#include <optional>

namespace fs = std::filesystem;

namespace {

// The app, started with a driver script; its "driver: ..." lines collected as they come.
class App {
public:
    App(const QString& home, const nlohmann::json& driver, const QString& name)
    {
        const QString script = home + u'/' + name + QStringLiteral(".json");
        cs::writeFileAtomically(script.toStdString(), driver.dump());
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
        env.insert(QStringLiteral("HOME"), home);
        env.insert(QStringLiteral("XDG_DATA_HOME"), home + QStringLiteral("/data"));
        env.insert(QStringLiteral("XDG_CONFIG_HOME"), home + QStringLiteral("/config"));
        env.insert(QStringLiteral("XDG_CACHE_HOME"), home + QStringLiteral("/cache"));
        env.insert(QStringLiteral("CIRCUITSCOPE_TEST_DRIVER"), script);
        m_process.setProcessEnvironment(env);
        m_process.setProcessChannelMode(QProcess::SeparateChannels);
        m_process.start(QStringLiteral(APP_PATH), QStringList{});
        if (!m_process.waitForStarted(30000))
            qFatal("circuitscope did not start");
    }
    ~App()
    {
        if (m_process.state() != QProcess::NotRunning) {
            m_process.kill();
            m_process.waitForFinished(10000);
        }
    }

    // Waits for a line "driver: PREFIX..." and returns what follows PREFIX (nullopt after timeoutMs).
    std::optional<QString> waitForLine(const QString& prefix, int timeoutMs)
    {
        QElapsedTimer timer;
        timer.start();
        for (;;) {
            for (const QString& line : std::as_const(m_lines))
                if (line.startsWith(QStringLiteral("driver: ") + prefix))
                    return line.mid(8 + prefix.size());
            if (timer.elapsed() > timeoutMs || m_process.state() == QProcess::NotRunning)
                return std::nullopt;
            m_process.waitForReadyRead(200);
            m_buffer += m_process.readAllStandardOutput();
            while (m_buffer.contains('\n')) {
                const qsizetype n = m_buffer.indexOf('\n');
                m_lines << QString::fromUtf8(m_buffer.left(n));
                m_buffer.remove(0, n + 1);
            }
        }
    }

    QStringList lines() const { return m_lines; }
    QString errors() { return QString::fromUtf8(m_process.readAllStandardError()); }
    void killHard()
    {
        ::kill(static_cast<pid_t>(m_process.processId()), SIGKILL);
        m_process.waitForFinished(10000);
    }
    const QProcess& process() const { return m_process; }

private:
    QProcess m_process;
    QByteArray m_buffer;
    QStringList m_lines;
};

// The session in `file`, or nullopt while it does not exist or cannot be read.
std::optional<cs::Session> readSession(const fs::path& file)
{
    try {
        if (fs::exists(file))
            return cs::loadSession(file);
    } catch (const std::exception&) {
    }
    return std::nullopt;
}

QString describe(const std::optional<cs::Session::Trace>& t)
{
    if (!t)
        return QStringLiteral("no trace");
    return QString::fromStdString("trace " + t->node + " through '" + t->through + "' downstream '" + t->downstream +
                                  "' through '" + t->downstreamThrough + "'");
}

} // namespace

class TestRecovery : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void killedAppRestoresPinsNotesAblationsAndTrace()
    {
        QTemporaryDir home;
        QVERIFY(home.isValid());
        const fs::path walkthroughFile = fs::path(CIRCUITSCOPE_SOURCE_DIR) / "resources/demo/ioi-walkthrough.circuitscope.json";
        if (!fs::exists(walkthroughFile))
            QSKIP("the demo bundle (resources/demo) is not in this checkout");
        const cs::Session walkthrough = cs::loadSession(walkthroughFile);

        // What the user does: a new pin with a note, a note on a pin the walkthrough has, two ablations
        // (one value, one at every token) and a trace of a head through its key.
        const std::string newPin = "mlp:3:17@13", newNote = "Reads the indirect object — ü ✓, 2nd line\nkept";
        const std::string oldPin = walkthrough.pins.at(0).node, oldNote = "Name mover (checked by ablating L1H0)";
        const nlohmann::json actions = nlohmann::json::array({
            {{"pin", newPin}, {"note", newNote}},
            {{"pin", oldPin}, {"note", oldNote}},
            {{"ablate", "attn:1:0@13"}, {"value", 0.25}},
            {{"ablate", "mlp:2:5@*"}, {"value", 0}},
            {{"trace", "attn:2:0@13,1"}, {"through", "k"}},
        });
        std::vector<cs::Session::Pin> expectedPins = walkthrough.pins;
        expectedPins.at(0).note = oldNote;
        expectedPins.push_back({newPin, newNote});
        // The window names a trace at the last token (13 of 14) "@-1", so that it follows the prompt.
        const cs::Session::Trace expectedTrace{"attn:2:0@-1,1", "k", "", ""};

        fs::path autosave;
        cs::Session saved;
        {
            App app(home.path(), {{"actions", actions}}, QStringLiteral("driver-edit"));
            const auto path = app.waitForLine(QStringLiteral("autosave "), 60000);
            QVERIFY2(path, qPrintable(app.errors()));
            autosave = path->toStdString();
            QVERIFY2(autosave.string().starts_with(home.path().toStdString()), autosave.c_str());
            QVERIFY2(app.waitForLine(QStringLiteral("ready"), 180000), qPrintable(app.lines().join(u'\n') + app.errors()));
            QVERIFY2(!app.waitForLine(QStringLiteral("failed"), 0), qPrintable(app.lines().join(u'\n')));
            // The autosave timer (every 20 s) writes the edited session; kill the app once it has.
            QElapsedTimer timer;
            timer.start();
            std::optional<cs::Session> s;
            while (timer.elapsed() < 90000) {
                s = readSession(autosave);
                if (s && s->pins.size() == expectedPins.size() && s->trace && s->ablations.size() == 2)
                    break;
                QTest::qWait(200);
            }
            QVERIFY2(s, "no autosave within 90 s");
            QCOMPARE(s->pins, expectedPins);
            QCOMPARE(s->ablations, (std::vector<std::string>{"attn:1:0@13=0.25", "mlp:2:5@*=0"}));
            QVERIFY2(s->trace == expectedTrace, qPrintable(describe(s->trace)));
            saved = *s;
            app.killHard();
            QCOMPARE(app.process().exitStatus(), QProcess::CrashExit);
        }
        QVERIFY2(fs::exists(autosave), "the autosave must survive a kill");

        // Started again: the recovery offer is accepted; the restored window is saved to report.json.
        const fs::path report = fs::path(home.path().toStdString()) / "report.circuitscope.json";
        App app(home.path(), {{"accept_dialogs", true}, {"report", report.string()}}, QStringLiteral("driver-recover"));
        QVERIFY2(app.waitForLine(QStringLiteral("ready"), 180000), qPrintable(app.lines().join(u'\n') + app.errors()));
        const auto dialog = app.waitForLine(QStringLiteral("dialog: "), 0);
        QVERIFY2(dialog && dialog->contains(QStringLiteral("Restore the unsaved session?")), qPrintable(app.lines().join(u'\n')));
        const std::optional<cs::Session> restored = readSession(report);
        QVERIFY(restored);
        QCOMPARE(restored->pins, expectedPins);
        QCOMPARE(restored->ablations, saved.ablations);
        QVERIFY2(restored->trace == expectedTrace, qPrintable(describe(restored->trace)));
        // Everything else the session holds comes back as well.
        QCOMPARE(restored->prompt, saved.prompt);
        QVERIFY(restored->objective == saved.objective);
        QVERIFY(restored->autoencoders == saved.autoencoders);
        QCOMPARE(restored->selectedNode, saved.selectedNode);
        QCOMPARE(restored->tokenOfInterest, saved.tokenOfInterest);
        QVERIFY(restored->view == saved.view);
        QCOMPARE(restored->modelPath, saved.modelPath);
    }
};

QTEST_GUILESS_MAIN(TestRecovery)
#include "tst_recovery.moc"
