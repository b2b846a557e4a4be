#!/usr/bin/env bash
# The first quick-start command: install what is missing, build, and launch the app. With no
# arguments it opens the bundled demo model (or, in a checkout without it, the tiny test model) with an
# indirect-object prompt, target and distractor filled in, and runs it. Arguments go to `circuitscope`
# (e.g. --model DIR --prompt TEXT --target " Mary").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
exec "$build/app/circuitscope" "$@"
