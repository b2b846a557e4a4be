#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan (or $BUILD_DIR)
# and runs it. Leak checking stays off: libtorch's and Qt's static initializers hold memory until exit.
#
#   scripts/sanitize.sh [--gui] [ctest args]
#
# By default it builds and runs the core half of the suite (target circuitscope_core_tests, CTest label
# "core"): core/, the CLI and every test but those of ui/widgets and the desktop app, which take most
# of a full build's time. --gui builds everything and runs every test. Extra arguments go to ctest
# (e.g. -R reliability).
#
# What keeps it tractable without weakening it: -O1 (ASan's recommended level: no inlining hides a
# frame, and every check stays), -g1 (line tables only: reports keep FILE:LINE, the translation unit
# no longer carries libtorch's full debug information, which doubles its compile time), ccache when
# present, and a build folder of its own so a normal build never invalidates it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-asan}"
gui=0
if [ "${1:-}" = "--gui" ]; then
  gui=1
  shift
fi
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCIRCUITSCOPE_SANITIZE=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" "${launcher[@]}" ${SANITIZE_CMAKE_ARGS:-} >/dev/null
if [ "$gui" = 1 ]; then
  cmake --build "$build" --parallel "${JOBS:-2}"
else
  cmake --build "$build" --parallel "${JOBS:-2}" --target circuitscope_core_tests
fi
# detect_leaks=0: see above.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$build"
if [ "$gui" = 1 ]; then
  ctest --output-on-failure "$@"
else
  ctest --output-on-failure -L core "$@"
fi
