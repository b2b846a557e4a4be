#include "ui/widgets/session_controller.h"

#include "ui/widgets/settings.h"

#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QStandardPaths>
#include <QTimer>

namespace cs::ui {

SessionController::SessionController(Snapshot snapshot, QWidget* dialogParent)
    : QObject(dialogParent), m_snapshot(std::move(snapshot)), m_dialogParent(dialogParent)
{
    m_autosave = new QTimer(this);
    m_autosave->setInterval(20000);
    connect(m_autosave, &QTimer::timeout, this, &SessionController::autosaveNow);
    m_autosave->start();
}

bool SessionController::save(const QString& path, QString* error)
{
    const std::optional<Session> s = m_snapshot();
    try {
        cs::saveSession(path.toStdString(), s.value_or(Session{}));
    } catch (const std::exception& e) {
        *error = QString::fromUtf8(e.what());
        return false;
    }
    m_path = QFileInfo(path).absoluteFilePath();
    Settings::recentSessions().remember(m_path);
    return true;
}

std::optional<Session> SessionController::open(const QString& path, bool asTemplate, QString* error)
{
    Session s;
    try {
        s = loadSession(path.toStdString());
    } catch (const std::exception& e) {
        *error = tr("Could not open session: %1").arg(QString::fromUtf8(e.what()));
        return std::nullopt;
    }
    const QString model = QString::fromStdString(s.modelPath);
    if (!QFileInfo::exists(model + QStringLiteral("/config.json"))) {
        QString relocated = Settings::relocatedModel(model);
        if (relocated.isEmpty() || !QFileInfo::exists(relocated + QStringLiteral("/config.json")))
            relocated = m_locator ? m_locator(model)
                                  : QFileDialog::getExistingDirectory(m_dialogParent, tr("The session's model %1 is missing: where is it now?").arg(model));
        if (relocated.isEmpty()) {
            *error = tr("Session not opened: its model folder %1 is missing.").arg(model);
            return std::nullopt;
        }
        Settings::setRelocatedModel(model, relocated);
        s.modelPath = relocated.toStdString();
    }
    m_path = asTemplate ? QString() : QFileInfo(path).absoluteFilePath();
    if (!asTemplate)
        Settings::recentSessions().remember(m_path);
    return s;
}

QStringList SessionController::recentSessions()
{
    return Settings::recentSessions().items();
}

QString SessionController::autosavePath()
{
    return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/autosave.circuitscope.json");
}

bool SessionController::autosaveNow()
{
    const std::optional<Session> s = m_snapshot();
    if (!s)
        return false;
    const std::string text = sessionToJson(*s).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text == m_lastAutosaved)
        return true;
    try {
        QDir().mkpath(QFileInfo(autosavePath()).absolutePath());
        cs::saveSession(autosavePath().toStdString(), *s);
        m_lastAutosaved = text;
        return true;
    } catch (const std::exception&) {
        return false; // autosave is best effort; the user's own saves report errors
    }
}

void SessionController::removeAutosave()
{
    QFile::remove(autosavePath());
}

} // namespace cs::ui
