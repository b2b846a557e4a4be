// circuitscope-cli's process: the platform, Qt's messages and the QApplication; the rest is cs::runCli
// (app/cli_app.h).

#include "app/cli_app.h"

#include <QApplication>
#include <QCoreApplication>

int main(int argc, char** argv)
{
    // `figure` draws with the window's chart code, which needs a QApplication; the CLI never shows a
    // window, so it uses the offscreen platform unless told otherwise.
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    cs::silenceQtMessages();
    // The arguments as given: QGuiApplication consumes "--session VALUE" (X11 session management),
    // which is also our option's name, so the parser must see argv from before it.
    QStringList arguments;
    for (int i = 0; i < argc; ++i)
        arguments.append(QString::fromLocal8Bit(argv[i]));
    QApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("circuitscope-cli"));
    QCoreApplication::setApplicationVersion(QStringLiteral(CIRCUITSCOPE_VERSION));
    return cs::runCli(arguments);
}
