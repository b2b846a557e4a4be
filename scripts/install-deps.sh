#!/usr/bin/env bash
# Installs every Debian package Circuitscope needs to build, test and run (dpkg-dev, desktop-file-utils
# and appstream: the test suite builds the .deb and validates its desktop entry and metainfo).
# Safe to run twice: apt-get skips what is already installed.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config
  qt6-base-dev qt6-svg-dev
  libtorch-dev libopenblas0-openmp libdnnl-dev
  libqcustomplot-dev libqcustomplot2.1-qt6
  nlohmann-json3-dev
  dpkg-dev desktop-file-utils appstream
)
# scripts/fuzz.sh only (not CI): libFuzzer from clang's compiler-rt (the targets themselves build with g++).
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
