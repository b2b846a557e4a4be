#pragma once
// What the app remembers between runs (QSettings), typed: every key is spelled once, here.

#include <QByteArray>
#include <QString>
#include <QStringList>

namespace cs::ui {

// A most-recent-first list of paths (recent models, recent sessions): one implementation for both.
class RecentList {
public:
    explicit RecentList(QString key, int max = 8) : m_key(std::move(key)), m_max(max) {}
    QStringList items() const;
    void remember(const QString& path);

private:
    QString m_key;
    int m_max;
};

struct LastPrompt {
    QString text;
    QStringList targets, distractors; // token texts, leading spaces kept
};

class Settings {
public:
    static RecentList recentModels();
    static RecentList recentSessions();

    static QByteArray windowGeometry();
    static QByteArray windowState();
    static void setWindow(const QByteArray& geometry, const QByteArray& state);

    // The prompt fields of the last run, filled in again at start-up.
    static LastPrompt lastPrompt();
    static void setLastPrompt(const LastPrompt& prompt);

    // Where the user found a session's missing model folder: used again without asking. Empty: unknown.
    static QString relocatedModel(const QString& missingPath);
    static void setRelocatedModel(const QString& missingPath, const QString& foundPath);
};

} // namespace cs::ui
