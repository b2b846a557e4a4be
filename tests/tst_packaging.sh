#!/usr/bin/env bash
# CTest "packaging": installs an already-built tree into a temporary prefix and checks the layout that
# packaging/CMakeLists.txt promises, validates the desktop entry and AppStream metainfo, and runs the
# installed circuitscope-cli. Usage: tst_packaging.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
src="$2"
prefix="$(mktemp -d "${TMPDIR:-/tmp}/circuitscope-install.XXXXXX")"
trap 'rm -rf "$prefix"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null

expect=(
  bin/circuitscope
  bin/circuitscope-cli
  share/applications/circuitscope.desktop
  share/metainfo/io.github.circuitscope.Circuitscope.metainfo.xml
  share/icons/hicolor/scalable/apps/circuitscope.svg
  share/mime/packages/circuitscope-session.xml
)
for size in 16 32 48 64 128 256; do
  expect+=("share/icons/hicolor/${size}x${size}/apps/circuitscope.png")
done
if [ -f "$src/resources/demo/config.json" ]; then
  expect+=(share/circuitscope/demo/config.json)
fi
for f in "${expect[@]}"; do
  [ -f "$prefix/$f" ] || fail "missing $f in the installed tree"
done
for size in 16 32 48 64 128 256; do
  png="$prefix/share/icons/hicolor/${size}x${size}/apps/circuitscope.png"
  # A PNG's IHDR holds width and height as big-endian 32-bit integers at bytes 16..23.
  dims="$(od -An -tu1 -j16 -N8 "$png" | tr -s ' ' | sed 's/^ //')"
  read -r w0 w1 w2 w3 h0 h1 h2 h3 <<<"$dims"
  w=$(( (w0 << 24) | (w1 << 16) | (w2 << 8) | w3 ))
  h=$(( (h0 << 24) | (h1 << 16) | (h2 << 8) | h3 ))
  [ "$w" = "$size" ] && [ "$h" = "$size" ] || fail "$png is ${w}x${h}, not ${size}x${size}"
done

desktop-file-validate "$prefix/share/applications/circuitscope.desktop"
appstreamcli validate --no-net "$prefix/share/metainfo/io.github.circuitscope.Circuitscope.metainfo.xml" >/dev/null \
  || fail "appstreamcli validate"

out="$(QT_QPA_PLATFORM=offscreen "$prefix/bin/circuitscope-cli" info --model "$src/tests/data/tiny-gpt2")"
grep -q '"n_layer"' <<<"$out" || fail "installed circuitscope-cli info printed no n_layer: $out"
echo "packaging: install layout, desktop entry, metainfo and installed CLI OK"
