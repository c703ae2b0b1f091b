#!/usr/bin/env bash
# The GPU checks, in phases that each fit one device call (10 minutes at most; build outputs and
# Triton's cache stay on the machine between calls while it is warm):
#   bash benchmarks/gpu_check.sh build test        # first call: build with CUDA, GPU parity tests
#   bash benchmarks/gpu_check.sh sanitize bench    # second call: compute-sanitizer, benchmark matrix
#   bash benchmarks/gpu_check.sh                   # all four, where one call may take longer
# Any phase builds first if the CUDA extension is missing (a fresh machine). Everything goes to
# ONE log, $OUT/gpu_check.log (the device returns at most 8 files), beside build_info.json and
# the benchmark's <device>-<date>.{json,md,png}. $OUT defaults to benchmarks/results.
# Exit status: non-zero if any phase failed; the log says which.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(build test sanitize bench)
status=0
say() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
built() { python -c "import fastgen._cuda" 2>/dev/null; }

build() {
  say "build: FASTGEN_BUILD_CUDA=1 pip install --no-build-isolation --no-deps -e ."
  FASTGEN_BUILD_CUDA=1 python -m pip install -q --no-build-isolation --no-deps -e . >>"$LOG" 2>&1 || return 1
  python -c "import fastgen, json; print(json.dumps(fastgen.build_info(), indent=1))" | tee "$OUT/build_info.json" >>"$LOG"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv >>"$LOG" 2>&1
}

test_gpu() {
  say "test: GPU parity and the Triton compile prediction"
  python -m pytest -q -rs --durations=10 -p no:cacheprovider tests/test_cuda_backend.py tests/test_triton.py \
    tests/test_triton_compile.py tests/test_backends.py tests/test_cpu_backend.py >>"$LOG" 2>&1
}

sanitize() {
  command -v compute-sanitizer >/dev/null || { say "sanitize: compute-sanitizer not found"; return 1; }
  local rc=0
  for tool in memcheck racecheck synccheck; do
    say "sanitize: $tool"
    compute-sanitizer --tool "$tool" --error-exitcode 9 python benchmarks/cuda_sanitizer.py >>"$LOG" 2>&1 \
      && say "sanitizer $tool: clean" || { say "sanitizer $tool: FAILED"; rc=1; }
  done
  return $rc
}

bench() {
  say "bench: python -m benchmarks.report"
  python -m benchmarks.report --out "$OUT" --quiet >>"$LOG" 2>&1
}

for phase in "${phases[@]}"; do
  case "$phase" in
    build) build || { say "build FAILED"; exit 1; } ;;
    test|sanitize|bench)
      built || build || { say "build FAILED"; exit 1; }
      fn=$phase; [ "$phase" = test ] && fn=test_gpu
      $fn || { say "$phase FAILED"; status=1; } ;;
    *) echo "unknown phase $phase (build, test, sanitize, bench)" >&2; exit 2 ;;
  esac
done
say "done, status $status"
exit $status
