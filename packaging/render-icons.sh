#!/usr/bin/env bash
# Renders the app icon's PNG sizes from the SVGs in resources/icons (the PNGs are committed; run this
# after editing an SVG). 16 and 32 px come from the simplified circuitscope-small.svg, which is drawn
# on a 16 px grid; the larger sizes from circuitscope.svg. Needs rsvg-convert (librsvg2-bin).
set -euo pipefail
icons="$(cd "$(dirname "${BASH_SOURCE[0]}")/../resources/icons" && pwd)"
command -v rsvg-convert >/dev/null || { echo "render-icons: needs rsvg-convert (apt-get install librsvg2-bin)" >&2; exit 1; }
for size in 16 32 48 64 128 256; do
  src="$icons/circuitscope.svg"
  if [ "$size" -le 32 ]; then src="$icons/circuitscope-small.svg"; fi
  rsvg-convert --width "$size" --height "$size" "$src" --output "$icons/circuitscope-$size.png"
done
echo "render-icons: wrote $(ls "$icons"/circuitscope-*.png | wc -l) PNGs in $icons"
