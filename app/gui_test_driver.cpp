#include "app/gui_test_driver.h"

#include "core/session/session.h"
#include "core/util/errors.h"
#include "core/util/files.h"
#include "ui/widgets/circuit_panel.h"
#include "ui/widgets/main_window.h"

#include <QAbstractButton>
#include <QApplication>
#include <QMessageBox>
#include <QPushButton>
#include <QTimer>

#include <iostream>

namespace cs::app {

namespace {

void say(const std::string& line)
{
    std::cout << "driver: " << line << std::endl; // flushed: the test reads it while the app runs
}

void perform(cs::ui::MainWindow& window, const nlohmann::json& action, const std::filesystem::path& file)
{
    const auto text = [&](const char* key) {
        if (!action.contains(key) || !action[key].is_string())
            throwInputError(file, std::string("action without a string '") + key + "'");
        return QString::fromStdString(action[key].get<std::string>());
    };
    if (action.contains("pin")) {
        const QString name = text("pin");
        if (!window.circuit()->isPinned(name))
            window.togglePin(NodeRef::parse(name.toStdString()));
        if (action.contains("note")) {
            // As the user edits the note cell.
            auto* pins = window.circuit()->model();
            pins->setData(pins->index(pins->indexOf(name), cs::ui::PinListModel::NoteColumn), text("note"));
        }
    } else if (action.contains("ablate")) {
        window.ablate(text("ablate"), action.value("value", 0.0));
    } else if (action.contains("trace")) {
        window.trace(NodeRef::parse(text("trace").toStdString()), action.contains("through") ? text("through") : QString());
    } else {
        throwInputError(file, "unknown action " + describeForMessage(action));
    }
}

} // namespace

void installTestDriver(cs::ui::MainWindow& window)
{
    const QByteArray variable = qgetenv("CIRCUITSCOPE_TEST_DRIVER");
    if (variable.isEmpty())
        return;
    const std::filesystem::path file = variable.toStdString();
    const nlohmann::json script = readJsonFile(file);
    say("autosave " + cs::ui::MainWindow::autosavePath().toStdString());
    if (script.value("accept_dialogs", false)) {
        auto* timer = new QTimer(&window);
        QObject::connect(timer, &QTimer::timeout, &window, [] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (!box || !box->defaultButton())
                return;
            say("dialog: " + box->text().toStdString());
            box->defaultButton()->click();
        });
        timer->start(50);
    }
    QObject::connect(&window, &cs::ui::MainWindow::sessionRestored, &window, [&window, script, file] {
        try {
            for (const auto& action : script.value("actions", nlohmann::json::array()))
                perform(window, action, file);
            if (script.contains("report"))
                cs::saveSession(script["report"].get<std::string>(), window.currentSession());
            say("ready");
        } catch (const std::exception& e) {
            say(std::string("failed: ") + e.what());
        }
    }, Qt::SingleShotConnection);
}

} // namespace cs::app
