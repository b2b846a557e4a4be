#pragma once
// The diverging color map of the layer grid and token strip: blue (negative) – white (0) – red
// (positive), symmetric around zero so that zero is always white.

#include <QColor>

namespace cs::ui {

// `value` scaled by `maxAbs` (> 0) into the map; values beyond ±maxAbs saturate.
QColor divergingColor(double value, double maxAbs);

// Black or white, whichever reads better on `background`.
QColor textColorOn(const QColor& background);

} // namespace cs::ui
