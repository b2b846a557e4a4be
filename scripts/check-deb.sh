#!/usr/bin/env bash
# Makes the .deb from an already-built tree with CPack and checks it: dpkg-deb --info / --contents, the
# expected files, every directly linked library covered by Depends, the staged circuitscope-cli
# (dpkg-deb -x into a temporary folder) printing `info` JSON, and the desktop entry + AppStream
# metainfo validated where the tools exist. Used by scripts/package.sh and by the CTest "deb_package"
# (so CI builds and checks the package on every run).
# Usage: check-deb.sh BUILD_DIR OUT_DIR   (OUT_DIR is emptied first)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "$1" && pwd)"
out="$2"
say() { echo "check-deb: $*"; }
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
(cd "$build" && cpack --config CPackConfig.cmake -B "$out") >"$out/cpack.log" 2>&1 \
  || { cat "$out/cpack.log" >&2; fail "cpack"; }
deb="$(ls "$out"/circuitscope_*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] && [ -f "$deb" ] || { cat "$out/cpack.log" >&2; fail "cpack made no .deb in $out"; }
say "built $deb ($(du -h "$deb" | cut -f1))"

# ---- inspect -----------------------------------------------------------------------------------
dpkg-deb --info "$deb"
contents="$(dpkg-deb --contents "$deb")"
echo "$contents"
expect=(
  ./usr/bin/circuitscope
  ./usr/bin/circuitscope-cli
  ./usr/share/applications/circuitscope.desktop
  ./usr/share/metainfo/io.github.circuitscope.Circuitscope.metainfo.xml
  ./usr/share/icons/hicolor/scalable/apps/circuitscope.svg
  ./usr/share/mime/packages/circuitscope-session.xml
)
for size in 16 32 48 64 128 256; do
  expect+=("./usr/share/icons/hicolor/${size}x${size}/apps/circuitscope.png")
done
if [ -f "$root/resources/demo/config.json" ]; then
  expect+=(./usr/share/circuitscope/demo/config.json)
fi
for f in "${expect[@]}"; do
  awk '{print $NF}' <<<"$contents" | grep -qxF "$f" || fail "$f is not in the package"
done

depends="$(dpkg-deb --field "$deb" Depends)"
# The package names in Depends, one a line (alternatives included, version constraints dropped).
depends_names="$(tr ',|' '\n\n' <<<"$depends" | sed 's/(.*)//; s/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$')"
in_depends() { grep -qxF "$1" <<<"$depends_names"; }
for p in libtorch1.13 libqt6core6 libqt6gui6 libqt6widgets6 libqt6svg6 libqcustomplot2.1-qt6 libopenblas0-openmp; do
  in_depends "$p" || fail "Depends lacks $p: $depends"
done

# ---- stage -------------------------------------------------------------------------------------
stage="$(mktemp -d "${TMPDIR:-/tmp}/circuitscope-stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
dpkg-deb -x "$deb" "$stage"

# The package that ships a library file: dpkg knows one spelling of the path, and on merged-/usr
# systems ldd may print the other (/lib vs /usr/lib), or a symlink to the versioned file.
owner() {
  local real c found
  real="$(readlink -f "$1")"
  for c in "$1" "$real" "${1#/usr}" "/usr$1" "${real#/usr}" "/usr$real"; do
    if found="$(dpkg -S "$c" 2>/dev/null)"; then
      head -n1 <<<"$found" | cut -d: -f1
      return 0
    fi
  done
}

# Every library a binary links directly must come from a package named in Depends.
if command -v readelf >/dev/null; then
  for bin in "$stage/usr/bin/circuitscope" "$stage/usr/bin/circuitscope-cli"; do
    resolved="$(ldd "$bin")"
    while read -r lib; do
      # "libfoo.so.1 => /path (0x...)", or "/lib64/ld-linux-x86-64.so.2 (0x...)" for the loader.
      path="$(awk -v l="$lib" '!p && $1 == l && $2 == "=>" {p = $3} !p && $1 ~ "/" l "$" {p = $1} END {print p}' <<<"$resolved")"
      [ -n "$path" ] && [ -e "$path" ] || fail "$(basename "$bin"): $lib does not resolve"
      pkg="$(owner "$path")"
      [ -n "$pkg" ] || fail "$(basename "$bin"): no Debian package ships $path"
      in_depends "$pkg" || fail "$(basename "$bin") needs $lib from $pkg, not in Depends"
    done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  done
  say "every directly linked library is covered by Depends"
fi

info="$(QT_QPA_PLATFORM=offscreen "$stage/usr/bin/circuitscope-cli" info --model "$root/tests/data/tiny-gpt2")" \
  || fail "staged circuitscope-cli info failed"
echo "$info"
grep -q '"n_layer"' <<<"$info" || fail "staged circuitscope-cli info printed no n_layer"
if command -v python3 >/dev/null; then
  python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert "n_layer" in json.dumps(d)' <<<"$info" \
    || fail "staged circuitscope-cli info did not print valid JSON"
fi
say "staged circuitscope-cli info OK"
# With no --model the staged CLI finds the bundled demo next to itself (../share/circuitscope/demo).
if [ -f "$root/resources/demo/config.json" ]; then
  demo="$(QT_QPA_PLATFORM=offscreen "$stage/usr/bin/circuitscope-cli" info)" || fail "staged circuitscope-cli info (demo) failed"
  want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_layer"])' "$root/resources/demo/config.json" 2>/dev/null || true)"
  [ -z "$want" ] || grep -q "\"n_layer\":$want" <<<"$demo" || fail "staged circuitscope-cli did not open the bundled demo: $demo"
  say "staged circuitscope-cli opens the bundled demo: $demo"
fi

# ---- validate metadata -------------------------------------------------------------------------
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$stage/usr/share/applications/circuitscope.desktop" || fail "desktop-file-validate"
  say "desktop-file-validate OK"
else
  say "desktop-file-validate not available; skipped"
fi
if command -v appstreamcli >/dev/null; then
  appstreamcli validate --no-net "$stage/usr/share/metainfo/io.github.circuitscope.Circuitscope.metainfo.xml" \
    || fail "appstreamcli validate"
else
  say "appstreamcli not available; skipped"
fi

say "OK: $deb"
say "Depends: $depends"
say "Size: $(stat -c %s "$deb") bytes; Installed-Size: $(dpkg-deb --field "$deb" Installed-Size) KiB"
