#pragma once
// circuitscope-cli without its process setup (app/cli_main.cpp), so that tests/tst_cli_options can run
// hundreds of command lines in forked copies of one process instead of starting the program for each:
// a start costs 0.5 s of CPU in the dynamic loader and libtorch's static initializers alone.

#include <QStringList>

namespace cs {

// Parses `arguments` (the program's name first), runs the command, prints its JSON document on standard
// output and any error as one line on standard error; returns the exit code: 0, 2 for bad input, 1 for
// an internal failure. Needs a QApplication (`figure` draws with the window's chart code).
int runCli(const QStringList& arguments);

// Drops Qt's own messages (platform and path warnings), which would break the one-line contract;
// CIRCUITSCOPE_DEBUG=1 keeps them.
void silenceQtMessages();

} // namespace cs
