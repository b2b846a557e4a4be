// circuitscope: the desktop app. Argument parsing only; the window lives in ui/widgets.
//
//   circuitscope [--model DIR] [--prompt TEXT] [--target TOK] [--distractor TOK] [--run]
//
// Without --model it opens the bundled demo model (resources/demo) with an indirect-object prompt,
// target and distractor filled in, and runs it, so a first look shows a circuit within seconds.

#include "app/gui_test_driver.h"
#include "core/model/demo_model.h"
#include "core/util/errors.h"
#include "core/util/runtime.h"
#include "ui/widgets/layer_grid.h"
#include "ui/widgets/main_window.h"

#include <QApplication>
#include <QScreen>
#include <QCommandLineParser>
#include <QDir>
#include <QIcon>
#include <QFile>
#include <QMessageBox>

#include <cstdlib>
#include <iostream>

namespace {

// The bundled demo ships its autoencoders as SAELens folders saes/mlp_L and saes/attn_L; they are
// opened with the model so the demo's latents are in the grid from the start.
QVector<QPair<cs::SaeRole, QString>> demoAutoencoders(const QString& demoDir)
{
    QVector<QPair<cs::SaeRole, QString>> specs;
    const QDir saes(demoDir + QStringLiteral("/saes"));
    const QStringList dirs = saes.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name);
    for (const QString& name : dirs) {
        // Folders named ROLE_LAYER: mlp_0, attn_3.
        const std::optional<cs::SaeRole> role = cs::saeRoleFromName(name.left(name.indexOf(u'_')).toStdString());
        bool ok = false;
        const int layer = name.mid(name.indexOf(u'_') + 1).toInt(&ok);
        if (role && ok && QFile::exists(saes.filePath(name + QStringLiteral("/cfg.json"))))
            specs.push_back({*role, QString::number(layer) + u'=' + saes.filePath(name)});
    }
    return specs;
}

// 1600 × 1000, or the screen's available area when that is smaller (a laptop at 1280 × 800).
void fitToScreen(QWidget& window)
{
    const QSize wanted(1600, 1000);
    const QScreen* screen = QGuiApplication::primaryScreen();
    window.resize(screen ? wanted.boundedTo(screen->availableGeometry().size()) : wanted);
}

} // namespace

int main(int argc, char** argv)
{
    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("Circuitscope"));
    QApplication::setOrganizationName(QStringLiteral("Circuitscope"));
    QApplication::setApplicationVersion(QStringLiteral(CIRCUITSCOPE_VERSION));
    cs::initializeRuntime();
    QIcon icon;
    for (int size : {16, 32, 48, 64, 128, 256})
        icon.addFile(QStringLiteral(":/icons/circuitscope-%1.png").arg(size), QSize(size, size));
    QApplication::setWindowIcon(QIcon::fromTheme(QStringLiteral("circuitscope"), icon));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Point-and-click interpretability for GPT-2 models and sparse autoencoders."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption model(QStringLiteral("model"), QStringLiteral("Hugging Face GPT-2 folder."), QStringLiteral("DIR"));
    const QCommandLineOption prompt(QStringLiteral("prompt"), QStringLiteral("Prompt to fill in."), QStringLiteral("TEXT"));
    const QCommandLineOption target(QStringLiteral("target"), QStringLiteral("Target token (repeat for several)."), QStringLiteral("TOK"));
    const QCommandLineOption distractor(QStringLiteral("distractor"), QStringLiteral("Distractor token (repeat for several)."), QStringLiteral("TOK"));
    const QCommandLineOption mlpSae(QStringLiteral("mlp-sae"), QStringLiteral("MLP autoencoder L=PATH (repeatable)."), QStringLiteral("L=PATH"));
    const QCommandLineOption attnSae(QStringLiteral("attn-sae"), QStringLiteral("Attention autoencoder L=PATH (repeatable)."), QStringLiteral("L=PATH"));
    const QCommandLineOption residSae(QStringLiteral("resid-sae"), QStringLiteral("Residual autoencoder L:location=PATH (repeatable)."), QStringLiteral("L=PATH"));
    const QCommandLineOption run(QStringLiteral("run"), QStringLiteral("Run the prompt once the model is open."));
    const QCommandLineOption node(QStringLiteral("node"), QStringLiteral("Select this node after the run (e.g. attn:1:2@-1,3)."),
                                  QStringLiteral("NAME"));
    parser.addOptions({model, prompt, target, distractor, mlpSae, attnSae, residSae, run, node});
    parser.addPositionalArgument(QStringLiteral("session"), QStringLiteral("A .circuitscope.json session to open."), QStringLiteral("[session]"));
    parser.process(app);
    // Off unless CIRCUITSCOPE_TEST_DRIVER is set (app/gui_test_driver.h).
    const auto installTestDriver = [](cs::ui::MainWindow& window) {
        try {
            cs::app::installTestDriver(window);
        } catch (const cs::InputError& e) {
            std::cerr << "circuitscope: CIRCUITSCOPE_TEST_DRIVER: " << e.what() << '\n';
            std::exit(2);
        }
    };
    if (!parser.positionalArguments().isEmpty()) {
        cs::ui::MainWindow window;
        installTestDriver(window);
        fitToScreen(window);
        window.show();
        window.openSession(parser.positionalArguments().first());
        return app.exec();
    }

    cs::ui::MainWindow window;
    installTestDriver(window);
    fitToScreen(window);
    // A session autosaved by a run that crashed or was killed: offer it back.
    if (QFile::exists(cs::ui::MainWindow::autosavePath())) {
        window.show();
        const auto answer = QMessageBox::question(&window, QObject::tr("Recover session"),
                                                  QObject::tr("Circuitscope did not close normally last time. Restore the unsaved session?"),
                                                  QMessageBox::Yes | QMessageBox::No, QMessageBox::Yes);
        if (answer == QMessageBox::Yes) {
            window.openSession(cs::ui::MainWindow::autosavePath(), /*asTemplate=*/true);
            return app.exec();
        }
        QFile::remove(cs::ui::MainWindow::autosavePath());
    }
    QString modelDir = parser.value(model);
    bool demo = false;
    if (modelDir.isEmpty()) {
        if (const auto found = cs::findBundledDemoModel(QApplication::applicationDirPath().toStdString())) {
            modelDir = QString::fromStdString(found->string());
            demo = true;
        } else {
            // The tiny test model stands in until the demo bundle exists in this checkout.
            const QDir source(QStringLiteral(CIRCUITSCOPE_SOURCE_DIR));
            if (source.exists(QStringLiteral("tests/data/tiny-gpt2/config.json"))) {
                modelDir = source.filePath(QStringLiteral("tests/data/tiny-gpt2"));
                demo = true;
            }
        }
    }
    // The demo bundle's walkthrough session (pinned circuit with notes) is the first thing a new user
    // sees, unless the command line asks for something else.
    const bool plainDemo = demo && !parser.isSet(prompt) && !parser.isSet(node) && parser.values(mlpSae).isEmpty() &&
                           parser.values(attnSae).isEmpty() && parser.values(residSae).isEmpty();
    const QString walkthrough = QDir(modelDir).filePath(QStringLiteral("ioi-walkthrough.circuitscope.json"));
    if (plainDemo && QFile::exists(walkthrough)) {
        window.show();
        window.openSession(walkthrough, /*asTemplate=*/true);
        return app.exec();
    }
    if (demo && !parser.isSet(prompt))
        window.setPrompt(QStringLiteral("When Mary and John went to the store, John gave a drink to"), {QStringLiteral(" Mary")},
                         {QStringLiteral(" John")});
    if (parser.isSet(prompt))
        window.setPrompt(parser.value(prompt), parser.values(target), parser.values(distractor));
    const bool runWhenReady = parser.isSet(run) || demo;
    if (!modelDir.isEmpty()) {
        QObject::connect(&window, &cs::ui::MainWindow::modelReady, &window, [&] {
            if (demo) {
                for (const auto& [role, spec] : demoAutoencoders(modelDir))
                    window.addAutoencoder(role, spec);
            }
            for (const QString& s : parser.values(mlpSae))
                window.addAutoencoder(cs::SaeRole::Mlp, s);
            for (const QString& s : parser.values(attnSae))
                window.addAutoencoder(cs::SaeRole::Attn, s);
            for (const QString& s : parser.values(residSae))
                window.addAutoencoder(cs::SaeRole::Resid, s);
            if (runWhenReady)
                window.run();
        }, Qt::SingleShotConnection);
        window.openModel(modelDir);
    }
    if (parser.isSet(node)) {
        QObject::connect(&window, &cs::ui::MainWindow::runReady, &window, [&] {
            const auto n = cs::ui::parseGoToNode(parser.value(node), 0);
            if (!n || !window.lastRun())
                return;
            try {
                window.selectNode(n->resolved(static_cast<int>(window.lastRun()->tokens.size())));
            } catch (const std::exception& e) {
                qWarning("--node: %s", e.what());
            }
        }, Qt::SingleShotConnection);
    }
    window.show();
    return app.exec();
}
