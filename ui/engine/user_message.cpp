#include "ui/engine/user_message.h"

#include "core/util/errors.h"

#include <c10/util/Exception.h>

namespace cs::ui {

QString userMessage(const std::exception& e)
{
    if (dynamic_cast<const InputError*>(&e))
        return QString::fromUtf8(oneLine(e.what()));
    if (const auto* torchError = dynamic_cast<const c10::Error*>(&e))
        return QStringLiteral("internal error: ") + QString::fromUtf8(oneLine(torchError->what_without_backtrace()));
    return QStringLiteral("internal error: ") + QString::fromUtf8(oneLine(e.what()));
}

} // namespace cs::ui
