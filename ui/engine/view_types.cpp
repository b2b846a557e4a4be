#include "ui/engine/view_types.h"

namespace cs::ui {

// Queued signals copy their arguments through the meta-type system; register once per process.
void registerViewTypes()
{
    qRegisterMetaType<TopTokenList>();
    qRegisterMetaType<Heatmap>();
    qRegisterMetaType<NodeView>();
    qRegisterMetaType<NodeRow>();
}

} // namespace cs::ui
