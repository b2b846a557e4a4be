#include "ui/widgets/color_scale.h"

#include <algorithm>
#include <cmath>

namespace cs::ui {

QColor divergingColor(double value, double maxAbs)
{
    if (!(maxAbs > 0) || !std::isfinite(value))
        return QColor(255, 255, 255);
    const double t = std::clamp(value / maxAbs, -1.0, 1.0);
    // Endpoints chosen for contrast on white and for color-blind readability (blue vs. red-orange).
    const QColor neg(33, 102, 172), pos(178, 24, 43), mid(247, 247, 247);
    const QColor& end = t < 0 ? neg : pos;
    const double a = std::abs(t);
    return QColor::fromRgbF(static_cast<float>(mid.redF() + (end.redF() - mid.redF()) * a),
                            static_cast<float>(mid.greenF() + (end.greenF() - mid.greenF()) * a),
                            static_cast<float>(mid.blueF() + (end.blueF() - mid.blueF()) * a));
}

QColor textColorOn(const QColor& background)
{
    const double luminance = 0.299 * background.redF() + 0.587 * background.greenF() + 0.114 * background.blueF();
    return luminance > 0.55 ? QColor(20, 20, 20) : QColor(255, 255, 255);
}

} // namespace cs::ui
