#pragma once
// The one way an exception becomes what the user reads (the window's error line, a pin's error, the
// Examples tab): an InputError's one line as it is, anything else as "internal error: …", libtorch's
// errors without their backtrace.

#include <QString>

#include <exception>

namespace cs::ui {

QString userMessage(const std::exception& e);

} // namespace cs::ui
