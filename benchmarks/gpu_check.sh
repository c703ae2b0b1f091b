#!/usr/bin/env bash
# The GPU checks, in phases that each fit one device call (10 minutes at most; build outputs and
# Triton's cache stay on the machine between calls while it is warm):
#   bash benchmarks/gpu_check.sh build test     # call 1: build with CUDA, GPU parity tests
#   bash benchmarks/gpu_check.sh bench          # call 2: the benchmark matrix (benchmarks.report)
#   bash benchmarks/gpu_check.sh sanitize       # call 3: compute-sanitizer memcheck/racecheck/synccheck
#   bash benchmarks/gpu_check.sh                # all four, where one call may take longer
# A phase (re)builds first if the CUDA extension is missing or csrc/ or setup.py changed since
# it was built. Everything goes to ONE log, $OUT/gpu_check.log (the device returns at most 8
# files), beside build_info.json and the benchmark's <device>-<date>.{json,md,png}, which are
# saved after every case. $OUT defaults to benchmarks/results. The whole call, build included,
# stops after CALL_TIMEOUT seconds (default 560, under the device's 600): a phase gets the time
# left, and one that would start with under a minute left is not started (the log says so; run
# it in the next call). BENCH_ARGS passes arguments to benchmarks.report (BENCH_ARGS="--presets small").
# Exit status: non-zero if any phase failed; the log says which.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT" build
LOG="$OUT/gpu_check.log"
STAMP=build/gpu_check.stamp
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
CALL_TIMEOUT="${CALL_TIMEOUT:-560}"
START=$(date +%s)
left() { echo $(( CALL_TIMEOUT - ($(date +%s) - START) )); }
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(build test bench sanitize)
for phase in "${phases[@]}"; do
  case "$phase" in build|test|sanitize|bench) ;; *) echo "unknown phase $phase (build, test, bench, sanitize)" >&2; exit 2 ;; esac
done
status=0
say() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
sources_hash() { cat setup.py $(git ls-files csrc 2>/dev/null || find csrc -type f | sort) | sha1sum | cut -c1-16; }
built() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sources_hash)" ] && python -c "import fastgen._cuda" 2>/dev/null; }

build() {
  [ "$(left)" -lt 60 ] && { say "build NOT RUN: under a minute left of this call"; return 1; }
  say "build: FASTGEN_BUILD_CUDA=1 pip install --no-build-isolation --no-deps -e ."
  rm -f "$STAMP"
  FASTGEN_BUILD_CUDA=1 timeout "$(left)" python -m pip install -q --no-build-isolation --no-deps -e . >>"$LOG" 2>&1 \
    || return 1
  sources_hash > "$STAMP"
  python -c "import fastgen, json; print(json.dumps(fastgen.build_info(), indent=1))" | tee "$OUT/build_info.json" >>"$LOG"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv >>"$LOG" 2>&1 || true
}

# The tests that need the GPU: those marked gpu (cuda parity, the Triton resource prediction
# against the driver), and the files whose tests run on the GPU when there is one. CPU-only
# tests (the kernel emulator, Triton's ahead-of-time compiles) are CI's.
test_gpu() {
  local rc=0
  python -m pytest -q -rs --durations=10 -p no:cacheprovider -m gpu tests/test_cuda_backend.py \
    tests/test_triton_compile.py || rc=1
  python -m pytest -q -rs --durations=10 -p no:cacheprovider tests/test_triton.py tests/test_backends.py \
    tests/test_generate.py || rc=1
  return $rc
}

sanitize() {
  local cs rc=0
  cs=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
  [ -x "$cs" ] || { echo "compute-sanitizer not found (PATH, \$CUDA_HOME/bin)"; return 1; }
  for tool in memcheck racecheck synccheck; do
    echo "-- $tool"
    # without torch's caching allocator every buffer is its own allocation, so memcheck sees an
    # overrun from one tensor into the next
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$cs" --tool "$tool" --error-exitcode 9 python benchmarks/cuda_sanitizer.py \
      && echo "sanitizer $tool: clean" \
      || { echo "sanitizer $tool: FAILED"; rc=1; }
  done
  return $rc
}

bench() {
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of words
  python -m benchmarks.report --out "$OUT" --quiet ${BENCH_ARGS:-}
}

export -f test_gpu sanitize bench
export OUT
for phase in "${phases[@]}"; do
  if [ "$phase" = build ]; then
    build || { say "build FAILED"; exit 1; }
    continue
  fi
  built || build || { say "build FAILED"; exit 1; }
  fn=$phase; [ "$phase" = test ] && fn=test_gpu
  budget=$(left)
  if [ "$budget" -lt 60 ]; then say "$phase NOT RUN: ${budget} s left of this call's $CALL_TIMEOUT; run it in the next call"
    status=1; continue; fi
  say "$phase (${budget} s left)"
  timeout "$budget" bash -c "$fn" >>"$LOG" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then say "$phase: ok"
  else say "$phase FAILED (exit $rc$([ $rc -eq 124 ] && echo ', stopped: out of time for this call'))"; status=1; fi
done
say "done, status $status"
exit $status
