// One libFuzzer binary per target (FUZZ_TARGET names it); the work is in fuzz_targets.cpp.

#include "fuzz/fuzz_targets.h"

#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const cs::fuzz::Target* target = [] {
        const cs::fuzz::Target* t = cs::fuzz::findTarget(FUZZ_TARGET);
        if (!t) {
            std::fprintf(stderr, "unknown fuzz target %s\n", FUZZ_TARGET);
            std::abort();
        }
        return t;
    }();
    target->run(data, size); // an escaping exception terminates: libFuzzer records the input as a crash
    return 0;
}
