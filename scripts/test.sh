#!/usr/bin/env bash
# The second quick-start command (and what CI runs): install what is missing, build, run every test
# through CTest. Extra arguments go to CMake (e.g. -DCIRCUITSCOPE_SANITIZE=ON with BUILD_DIR=build-asan).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
# In CI the build carries no debug information: with libtorch's headers, -g doubles each translation
# unit's compile time (28 s -> 13 s measured for core/io/safetensors.cpp), and CI never debugs.
if [ "${CI:-}" = "true" ]; then
  set -- -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" "$@"
fi
"$root/scripts/build.sh" "$@"
cd "$build"
ctest --output-on-failure --parallel "$(nproc)" --timeout 900
