#pragma once
// The one place ui/charts includes QCustomPlot. Its header still spells `signals:` and `foreach`,
// which this project switches off (QT_NO_KEYWORDS, QT_NO_FOREACH, see the top-level CMakeLists), so
// both are mapped to their modern forms for the length of the include only.

#include <QtGlobal>

#define signals Q_SIGNALS
#define foreach(variable, container) for (variable : container)
#include <qcustomplot.h>
#undef foreach
#undef signals
