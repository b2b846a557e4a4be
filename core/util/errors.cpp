#include "core/util/errors.h"

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
    throw InputError(oneLine(file.string() + ": " + message));
}

} // namespace cs
