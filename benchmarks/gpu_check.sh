#!/usr/bin/env bash
# One call on a GPU machine (device time is short): build with CUDA, run the GPU parity tests,
# compute-sanitizer on a small run, then the benchmark matrix. Results land in $OUT (or
# benchmarks/results) with the device, commit and numbers.
#   bash benchmarks/gpu_check.sh            # everything
#   SKIP_BENCH=1 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
FASTGEN_BUILD_CUDA=1 python -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -20 || exit 1
python -c "import fastgen, json; print(json.dumps(fastgen.build_info(), indent=1))" | tee "$OUT/build_info.json"
status=0
python -m pytest -q tests/test_cuda_backend.py tests/test_triton.py tests/test_triton_compile.py tests/test_backends.py \
    tests/test_cpu_backend.py \
    -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" || status=1
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 python benchmarks/cuda_sanitizer.py \
      > "$OUT/sanitizer_$tool.log" 2>&1 && echo "sanitizer $tool: clean" || { echo "sanitizer $tool: FAILED"; status=1; }
  done
fi
if [ -z "${SKIP_BENCH:-}" ]; then
  python -m benchmarks.report --out "$OUT" --quiet 2>&1 | tee "$OUT/bench.log" || status=1
fi
exit $status
