#pragma once
// Error types shared by the whole core.
//
// InputError: the user's input is wrong (a corrupt file, a missing field, a bad prompt or node name).
// Its message is one line that names the file or field and the problem; the CLI maps it to exit code 2
// and the GUI shows it in the window. Anything else that escapes is an internal failure (exit 1).

#include <filesystem>
#include <stdexcept>
#include <string>

namespace cs {

class InputError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// "path: message" as one line (newlines in the message become spaces).
[[noreturn]] void throwInputError(const std::filesystem::path& file, const std::string& message);

// Replaces newlines and other control characters so a message stays one line.
std::string oneLine(std::string text);

} // namespace cs
