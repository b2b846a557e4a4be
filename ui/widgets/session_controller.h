#pragma once
// The window's session files (product.md §4): which file "Save" writes to, saving, loading (with a
// missing model folder relocated), the recent-sessions list and the autosave. What a session holds
// comes from the window (`snapshot`); applying a loaded one is the window's job too.

#include "core/session/session.h"

#include <QObject>
#include <QString>

#include <functional>
#include <optional>

class QTimer;
class QWidget;

namespace cs::ui {

class SessionController : public QObject {
    Q_OBJECT
public:
    // `snapshot` gives the current session, or nullopt when there is nothing worth saving yet.
    using Snapshot = std::function<std::optional<Session>()>;
    using ModelLocator = std::function<QString(const QString& missingPath)>;
    SessionController(Snapshot snapshot, QWidget* dialogParent);

    QString path() const { return m_path; }
    // Writes the session to `path` atomically; afterwards Save writes there. False with *error set.
    bool save(const QString& path, QString* error);
    // Reads a session. A missing model folder is looked up where the user found it before, else asked
    // for (the locator; a folder dialog by default). A template opens untitled (Save asks where).
    // nullopt with *error set when it cannot be opened; nothing changes then.
    std::optional<Session> open(const QString& path, bool asTemplate, QString* error);
    void setModelLocator(ModelLocator locator) { m_locator = std::move(locator); }

    static QStringList recentSessions();
    // The autosave (every 20 s while the session changes); removed on a clean exit.
    static QString autosavePath();
    bool autosaveNow();
    void removeAutosave();

private:
    Snapshot m_snapshot;
    QWidget* m_dialogParent;
    ModelLocator m_locator;
    QString m_path;
    std::string m_lastAutosaved;
    QTimer* m_autosave = nullptr;
};

} // namespace cs::ui
