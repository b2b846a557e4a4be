#!/usr/bin/env bash
# The first quick-start command: install what is missing, build, and launch on the bundled model.
# (Until the desktop window lands, this runs the headless CLI on the tiny test model with an
# indirect-object prompt and prints the model's next-token predictions.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
model="$root/tests/data/tiny-gpt2"
"$build/app/circuitscope-cli" info --model "$model"
exec "$build/app/circuitscope-cli" forward --model "$model" \
  --prompt "When Mary and John went to the store, John gave a drink to" --top 5
