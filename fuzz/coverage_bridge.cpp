// Coverage feedback for libFuzzer from a GCC build.
//
// clang (14 and 16 from Debian) cannot compile libtorch 1.13's headers in C++20 mode (it instantiates
// std::vector<c10::IValue>'s constexpr destructor while IValue is still incomplete), so the fuzz build
// uses g++ with -fsanitize-coverage=trace-pc,trace-cmp and links libFuzzer from clang's compiler-rt.
// g++ emits a call to __sanitizer_cov_trace_pc() in every basic block, a hook libFuzzer no longer
// accepts; here each call bumps one of 64 Ki inline 8-bit counters chosen by a hash of the caller's
// address, registered with libFuzzer like clang's -fsanitize-coverage=inline-8bit-counters would.
// (trace-cmp's __sanitizer_cov_trace_cmp* hooks have the same ABI in both compilers and go straight to
// libFuzzer.) The fuzz binaries link with --allow-multiple-definition so this definition, which comes
// first, replaces libFuzzer's refusing one.

#include <cstddef>
#include <cstdint>

namespace {

constexpr std::size_t kCounters = std::size_t(1) << 16;
alignas(64) std::uint8_t counters[kCounters];
// libFuzzer's PC table: (pc, flags) per counter. The "pc" is the counter's index + 1: libFuzzer only
// counts distinct entries for its cov: figure.
std::uintptr_t pcTable[2 * kCounters];

} // namespace

extern "C" void __sanitizer_cov_8bit_counters_init(std::uint8_t* begin, std::uint8_t* end);
extern "C" void __sanitizer_cov_pcs_init(const std::uintptr_t* begin, const std::uintptr_t* end);

__attribute__((constructor, no_sanitize_coverage)) static void registerCounters()
{
    for (std::size_t i = 0; i < kCounters; ++i)
        pcTable[2 * i] = i + 1;
    __sanitizer_cov_8bit_counters_init(counters, counters + kCounters);
    __sanitizer_cov_pcs_init(pcTable, pcTable + 2 * kCounters);
}

extern "C" __attribute__((no_sanitize_coverage, no_sanitize_address)) void __sanitizer_cov_trace_pc()
{
    std::uintptr_t pc = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
    pc = (pc ^ (pc >> 17)) * 0x9E3779B97F4A7C15ull; // spread nearby addresses over the table
    ++counters[(pc >> 48) & (kCounters - 1)];
}

// g++'s trace-cmp also reports floating-point comparisons, which libFuzzer has no hook for (its
// mutations cannot aim at a float's bits anyway): accepted and ignored.
extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_cmpd(double, double) {}
