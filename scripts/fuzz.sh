#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with ASan, UBSan and coverage hooks in build-fuzz (or $BUILD_DIR) and runs
# each for SECONDS (default 60), one after another. New inputs that add coverage land in
# fuzz/corpus/<target>/ (libFuzzer merges them there; commit the small ones), a crashing input in
# fuzz/crashes/<target>/ (commit it with the fix: CTest fuzz_replay replays both).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   e.g. scripts/fuzz.sh 600 tokenizer session
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-fuzz}"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors torch_pickle hf_config tokenizer saelens session specs)

"$root/scripts/install-deps.sh" --fuzz
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCIRCUITSCOPE_FUZZ=ON -DCIRCUITSCOPE_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" ${FUZZ_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" --parallel "${JOBS:-2}" --target $(printf 'fuzz_%s ' "${targets[@]}")

# libtorch and Qt keep static state alive at exit; the leak checker would report it on every input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# The targets run libtorch on tiny tensors: one thread, no pool start-up per process.
export OMP_NUM_THREADS=1 CIRCUITSCOPE_THREADS=1

for t in "${targets[@]}"; do
  corpus="$root/fuzz/corpus/$t"
  crashes="$root/fuzz/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  dict=()
  [ -f "$root/fuzz/dict/$t.dict" ] && dict=(-dict="$root/fuzz/dict/$t.dict")
  echo "== fuzz_$t for ${seconds}s"
  # New corpus entries go to a scratch folder first; -merge=1 keeps only those that add coverage.
  scratch="$(mktemp -d)"
  status=0
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" "$scratch" "$corpus" 2>&1 |
    tee "$build/fuzz_$t.log" | grep -E '^#[0-9]+ +(INITED|DONE|pulse)|^stat::|ERROR|SUMMARY' || true
  status=${PIPESTATUS[0]}
  "$build/fuzz/fuzz_$t" -merge=1 "$corpus" "$scratch" >/dev/null 2>&1 || true
  rm -rf "$scratch"
  [ "$status" -eq 0 ] || { echo "fuzz_$t: found a failure (exit $status), reproducer in $crashes"; exit 1; }
done
