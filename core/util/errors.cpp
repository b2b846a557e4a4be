#include "core/util/errors.h"

#include "core/util/files.h"

namespace cs {

std::string oneLine(std::string text)
{
    for (char& c : text) {
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
    }
    return text;
}

void throwInputError(const std::filesystem::path& file, const std::string& message)
{
    // Both parts can come from a file (a path inside a session, a value quoted by a loader): each is
    // bounded so that the message stays one short line however long they are.
    const std::string path = file.string();
    const std::string shownPath = path.size() <= 300 ? path : quoteForMessage(path, 300);
    const std::string shownMessage = message.size() <= 400 ? message : quoteForMessage(message, 400);
    throw InputError(oneLine(shownPath + ": " + shownMessage));
}

} // namespace cs
