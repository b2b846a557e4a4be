#!/usr/bin/env bash
# Builds a Release tree, then makes the .deb with CPack and checks it (scripts/check-deb.sh: dpkg-deb
#   --info / --contents, the expected files, every directly linked library covered by Depends, the
#   staged circuitscope-cli printing `info` JSON, desktop entry + AppStream metainfo validated).
# Safe to run twice (old packages in the output folder are replaced). Installs what it needs with
# apt-get (as root, or through sudo).
# Environment: BUILD_DIR (default ./build-pkg), PACKAGE_DIR (default $BUILD_DIR/packages).
# Extra arguments go to CMake's configure step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-pkg}"
out="${PACKAGE_DIR:-$build/packages}"
say() { echo "package.sh: $*"; }
fail() { echo "package.sh: FAIL: $*" >&2; exit 1; }

# ---- tools -------------------------------------------------------------------------------------
"$root/scripts/install-deps.sh"
need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v desktop-file-validate >/dev/null || need+=(desktop-file-utils)
command -v appstreamcli >/dev/null || need+=(appstream)
command -v readelf >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Validators are nice to have; a host without them (or without network) still gets a package.
  { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"; } \
    || say "warning: could not install ${need[*]}; continuing with what is there"
fi

# ---- build and package -------------------------------------------------------------------------
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target circuitscope circuitscope-cli
"$root/scripts/check-deb.sh" "$build" "$out"
