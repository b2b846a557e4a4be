#pragma once
// A test hook of the desktop app, off unless CIRCUITSCOPE_TEST_DRIVER names a JSON file. It lets a test that
// starts the real program (tests/tst_recovery.cpp: kill it, start it again, recover) act like a user in a
// process it cannot click into:
//   {"accept_dialogs": true,                 click the default button of every message box (the recovery
//                                            offer), printing "driver: dialog: TEXT" first
//    "actions": [{"pin": NODE, "note": TEXT}, {"ablate": NODE, "value": V}, {"trace": NODE, "through": T}],
//                                            done through the window's own API once the first session
//                                            restore has finished (the demo's walkthrough, a recovery)
//    "report": PATH}                         then the window's session saved to PATH
// It prints "driver: autosave PATH" at start and "driver: ready" when the actions and report are done.

namespace cs::ui {
class MainWindow;
}

namespace cs::app {

// Installs the driver $CIRCUITSCOPE_TEST_DRIVER describes (nothing when unset). Throws InputError for a bad file.
void installTestDriver(cs::ui::MainWindow& window);

} // namespace cs::app
