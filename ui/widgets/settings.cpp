#include "ui/widgets/settings.h"

#include <QSettings>
#include <QUrl>

namespace cs::ui {

QStringList RecentList::items() const
{
    return QSettings().value(m_key).toStringList();
}

void RecentList::remember(const QString& path)
{
    QStringList recent = items();
    recent.removeAll(path);
    recent.prepend(path);
    while (recent.size() > m_max)
        recent.removeLast();
    QSettings().setValue(m_key, recent);
}

RecentList Settings::recentModels()
{
    return RecentList(QStringLiteral("models/recent"));
}

RecentList Settings::recentSessions()
{
    return RecentList(QStringLiteral("sessions/recent"));
}

QByteArray Settings::windowGeometry()
{
    return QSettings().value(QStringLiteral("window/geometry")).toByteArray();
}

QByteArray Settings::windowState()
{
    return QSettings().value(QStringLiteral("window/state")).toByteArray();
}

void Settings::setWindow(const QByteArray& geometry, const QByteArray& state)
{
    QSettings s;
    s.setValue(QStringLiteral("window/geometry"), geometry);
    s.setValue(QStringLiteral("window/state"), state);
}

LastPrompt Settings::lastPrompt()
{
    QSettings s;
    // A QSettings list: an older single token text reads back as a list of one.
    return {s.value(QStringLiteral("prompt/text")).toString(), s.value(QStringLiteral("prompt/target")).toStringList(),
            s.value(QStringLiteral("prompt/distractor")).toStringList()};
}

void Settings::setLastPrompt(const LastPrompt& prompt)
{
    QSettings s;
    s.setValue(QStringLiteral("prompt/text"), prompt.text);
    s.setValue(QStringLiteral("prompt/target"), prompt.targets);
    s.setValue(QStringLiteral("prompt/distractor"), prompt.distractors);
}

namespace {
// QSettings keys cannot hold '/' as data, so the missing path is percent-encoded.
QString relocationKey(const QString& missingPath)
{
    return QStringLiteral("sessions/relocated/") + QString::fromLatin1(QUrl::toPercentEncoding(missingPath));
}
} // namespace

QString Settings::relocatedModel(const QString& missingPath)
{
    return QSettings().value(relocationKey(missingPath)).toString();
}

void Settings::setRelocatedModel(const QString& missingPath, const QString& foundPath)
{
    QSettings().setValue(relocationKey(missingPath), foundPath);
}

} // namespace cs::ui
