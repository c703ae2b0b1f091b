#!/usr/bin/env bash
# The GPU checks in ONE call of this script, at most 8 minutes (480 s) on a GPU machine with a
# fresh checkout of this repository (nothing built), build included,
# the most important facts first:
#
#   bash benchmarks/device_check.sh             # on the GPU machine, from the repository root
#   bash benchmarks/device_check.sh --plan      # the phases and their time budgets, then exit
#   bash benchmarks/device_check.sh --dry-run   # every GPU command a stub: the control flow, on a CPU
#   bash benchmarks/device_check.sh --list-tests  # the test files the GPU phases run
#
# Phases, in order; each runs under its own `timeout`:
#   preflight   nvidia-smi; python3, torch, triton and nvcc versions; pip offline; free disk
#   build       pip install -e . with the CUDA extension for this GPU's arch only, in the
#   triton      background, while the Triton parity tests run (they need no CUDA extension)
#   cuda_tests  a smoke run of the cuda backend, then the tests marked gpu that need it
#   memcheck    compute-sanitizer memcheck of a small cuda-backend generation
#   bench       the headline rows: small and base, batch 1 and 256, cuda, triton_persistent
#               and torch+graph in fp32 and bf16
#   ablation    base with Q = 16 classes against Q = 256: how much of a step the downsampling
#               and sampling take
#   racecheck   compute-sanitizer racecheck, only with RACECHECK_NEEDS s or more left; it
#               may take all the time the earlier phases left
# A phase gets min(its budget, the time left of the call) and none starts with under
# MIN_START s left, so the call ends within CALL_BUDGET s (plus a few seconds per phase to kill
# one that overran). A phase that fails or runs out of time is recorded and the next one
# starts; those that need the CUDA extension are skipped when the build failed (the benchmark
# still runs: its cuda rows are listed as failed).
#
# Results, saved as they come (under $OUT, else benchmarks/results/device-check; 7 files, few
# enough to copy back in one go): device_check.log (every phase's output but the build's),
# build.log, device_check.json (each phase's status, exit code, seconds, budget and timeout,
# and what preflight and the build found; rewritten after every phase, every phase "pending"
# from the start), bench/ and ablation/ (benchmarks.engines.report's .json and .md, written after every
# row; `python -m benchmarks.engines.report --render FILE.json` draws the plot). Exit status 0 when
# every phase passed (racecheck may be skipped for time).
#
# For testing the control flow (with --dry-run, or DEVICE_CHECK_DRY_RUN=1):
# DEVICE_CHECK_FAIL / DEVICE_CHECK_HANG name phases (space-separated) whose stub fails / hangs
# until its timeout; DEVICE_CHECK_BUDGETS="phase=s,..." overrides budgets;
# DEVICE_CHECK_SPENT=s counts seconds as already gone from the call; DEVICE_CHECK_STUB_SECONDS
# is how long each stub takes (default 0).
set -uo pipefail
cd "$(dirname "$0")/.."
SELF="$PWD/benchmarks/device_check.sh"

# -- the plan -----------------------------------------------------------------------------------
CALL_BUDGET=480
PHASES=(preflight build triton cuda_tests memcheck bench ablation racecheck)
# Not yet timed on a GPU: the build (five translation units, sm_90a only) is the unknown, so
# it has the most; the benchmark saves after every row, so a cut-short run keeps what it did.
declare -A BUDGET=([preflight]=15 [build]=185 [triton]=185 [cuda_tests]=50 [memcheck]=45 [bench]=105
                   [ablation]=45 [racecheck]=35)
declare -A BESIDE=([triton]=build)                         # runs at the same time as that phase
declare -A NEEDS_CUDA_EXT=([cuda_tests]=1 [memcheck]=1 [racecheck]=1)
MIN_START=10            # under this many seconds left a phase cannot do anything useful
RACECHECK_NEEDS=30      # racecheck is slow: it runs only with this much left, and takes all of it

# What the phases run (also read by tests/fastgen/test_device_check.py through --list-tests).
TRITON_TESTS=(tests/fastgen/test_triton.py tests/fastgen/test_triton_compile.py::test_prediction_matches_the_launched_kernel)
CUDA_TESTS=(tests/fastgen/test_cuda_backend.py tests/fastgen/test_cuda_ops.py)
HEADLINE_VARIANTS=(cuda cuda:bf16 triton_persistent triton_persistent:bf16 torch+graph torch+graph:bf16)
ABLATION_PRESETS=(base base@quantization_bins=16)
ABLATION_VARIANTS=(cuda:bf16 triton_persistent:bf16 torch+graph:bf16)
# Short timed runs: the calibrated steps still last 0.1 s each, five of them per row.
BENCH_TIMING=(--target-seconds 0.1 --repeats 5)

PY="${PYTHON:-python3}"
DRY_RUN="${DEVICE_CHECK_DRY_RUN:-0}"      # --dry-run sets (and exports) it for the phases too

apply_budget_overrides() {
  local item items=${DEVICE_CHECK_BUDGETS:-}
  for item in ${items//,/ }; do
    [[ "$item" =~ ^([a-z_]+)=([0-9]+)$ && -n "${BUDGET[${BASH_REMATCH[1]}]+x}" ]] \
      || { echo "DEVICE_CHECK_BUDGETS: bad item '$item' (phase=seconds)" >&2; exit 2; }
    BUDGET[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  done
}

# Seconds from a phase's start to the next one's: its budget, or that of a phase beside it.
slot_budget() {
  local b=${BUDGET[$1]} q
  for q in "${!BESIDE[@]}"; do
    if [ "${BESIDE[$q]}" = "$1" ] && (( BUDGET[$q] > b )); then b=${BUDGET[$q]}; fi
  done
  echo "$b"
}

plan_total() {
  local p total=0
  for p in "${PHASES[@]}"; do
    [ -n "${BESIDE[$p]+x}" ] || total=$(( total + $(slot_budget "$p") ))
  done
  echo "$total"
}

print_plan() {
  local p at=0 note
  local -A start
  echo "device_check plan: one call of at most $CALL_BUDGET s, build included"
  printf '%-11s %8s  %s\n' phase budget_s starts
  for p in "${PHASES[@]}"; do
    if [ -n "${BESIDE[$p]+x}" ]; then
      note="at ${start[${BESIDE[$p]}]} s, beside ${BESIDE[$p]}"
    else
      start[$p]=$at
      note="at $at s"
      at=$(( at + $(slot_budget "$p") ))
    fi
    [ "$p" = build ] && note="$note, in the background"
    [ "$p" = racecheck ] && note="$note, only with $RACECHECK_NEEDS s or more left, then all of it"
    printf '%-11s %8d  %s\n' "$p" "${BUDGET[$p]}" "$note"
  done
  printf '%-11s %8d  %s\n' total "$(plan_total)" "of $CALL_BUDGET s (phases side by side counted once)"
}

# -- GPU commands, or their stubs -------------------------------------------------------------
stub() {
  echo "[dry-run] $PHASE: $*"
  case " ${DEVICE_CHECK_HANG:-} " in *" $PHASE "*) echo "[dry-run] $PHASE: hanging"; sleep 3600 ;; esac
  case " ${DEVICE_CHECK_FAIL:-} " in *" $PHASE "*) echo "[dry-run] $PHASE: failing"; return 1 ;; esac
  sleep "${DEVICE_CHECK_STUB_SECONDS:-0}"
}

gpu() {   # a command that needs the GPU machine
  if [ "$DRY_RUN" = 1 ]; then stub "$@"; else "$@"; fi
}

# TORCH_CUDA_ARCH_LIST for this GPU alone ("9.0a" on an H100/H200: sm_90a has wgmma).
cuda_arch() {
  if [ "$DRY_RUN" = 1 ]; then echo 9.0a; return; fi
  "$PY" -c "import torch; M, m = torch.cuda.get_device_capability(); print(f'{M}.{m}' + ('a' if M == 9 else ''))"
}

find_tool() {   # on PATH, else in CUDA_HOME/bin or /usr/local/cuda/bin
  local t
  t=$(command -v "$1") || t="${CUDA_HOME:-/usr/local/cuda}/bin/$1"
  [ -x "$t" ] || { [ "$DRY_RUN" = 1 ] && t=$1 || return 1; }
  echo "$t"
}

pytest_run() {
  # -p no:cacheprovider: nothing written to the tree; -rfE: say what failed, in the log
  gpu "$PY" -m pytest -q -rfE -p no:cacheprovider --durations=5 "$@"
}

# -- the phases (each runs as `bash device_check.sh --phase NAME` under its timeout) -----------
phase_preflight() {
  local rc=0 nvcc
  gpu nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv || rc=1
  echo "python3: $(gpu "$PY" --version 2>&1)"
  if nvcc=$(find_tool nvcc); then gpu "$nvcc" --version | tail -n 2; else echo "nvcc: not found"; rc=1; fi
  # What the summary records of the machine (device_check.json "facts").
  gpu "$PY" - >"$STATE/facts.json.tmp" <<'PY' || rc=1
import json, platform, torch
facts = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
         "gpu": torch.cuda.get_device_name(0), "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
         "sms": torch.cuda.get_device_properties(0).multi_processor_count}
try:
    import triton
    facts["triton"] = triton.__version__
except ImportError as e:
    facts["triton"] = f"missing ({e})"
print(json.dumps(facts))
PY
  [ "$DRY_RUN" = 1 ] || { cat "$STATE/facts.json.tmp" && mv "$STATE/facts.json.tmp" "$STATE/facts.json"; }
  # pip must build with no registry: it runs, and what the build needs is installed
  gpu "$PY" -m pip --version || rc=1
  gpu "$PY" -c "import setuptools, wheel, pybind11; print('build requirements: setuptools, wheel, pybind11')" \
    || rc=1
  gpu ninja --version || { echo "ninja: not found"; rc=1; }
  df -h . /tmp
  return $rc
}

phase_build() {
  local arch
  arch=$(cuda_arch) || { echo "cannot read the GPU's compute capability"; return 1; }
  echo "TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$(nproc)"
  gpu env TORCH_CUDA_ARCH_LIST="$arch" FASTGEN_BUILD_CUDA=1 MAX_JOBS="$(nproc)" \
    "$PY" -m pip install -v --no-index --no-build-isolation --no-deps -e . || return 1
  gpu "$PY" -c "import json, fastgen, fastgen._cuda; print(json.dumps(fastgen.build_info()))" \
    >"$STATE/build_info.json.tmp" || return 1
  [ "$DRY_RUN" = 1 ] || { cat "$STATE/build_info.json.tmp" \
                           && mv "$STATE/build_info.json.tmp" "$STATE/build_info.json"; }
}

phase_triton() {
  # xdist where installed: the Triton compiles are single-threaded, and the build uses few cores
  local par=()
  "$PY" -c "import xdist" 2>/dev/null && par=(-n 4)
  pytest_run "${par[@]}" "${TRITON_TESTS[@]}"
}

# A kernel trap loses the process's CUDA context and every later test would fail the same way:
# the plugin stops the run there (exit 3) and the tests not yet run go on in a fresh process,
# at most CONTEXT_RESTARTS times. A test kernel that waits 10 s for another block is hung.
CONTEXT_RESTARTS=3
TEST_SPIN_TIMEOUT_S=10

cuda_pytest() {
  local log="$STATE/cuda_tests.tsv" tries=0 rc id
  local -a skip
  : >"$log"
  while :; do
    skip=()
    while IFS=$'\t' read -r _ id; do skip+=(--deselect "$id"); done <"$log"
    rc=0
    FASTGEN_TEST_LOG="$log" FASTGEN_CUDA_SPIN_TIMEOUT_S=$TEST_SPIN_TIMEOUT_S \
      pytest_run -p benchmarks.pytest_cuda_context "$@" "${skip[@]}" || rc=$?
    if [ "$rc" != 3 ] || (( ++tries > CONTEXT_RESTARTS )); then return "$rc"; fi
    echo "cuda_tests: the CUDA context was lost; $(wc -l <"$log") test(s) done, the rest in a fresh process"
  done
}

phase_cuda_tests() {
  # smoke first (the extension loads, one generation matches float64: the plainest failure
  # message), then the parity tests; --maxfail rather than -x: one call should show several
  # ways it fails, within reason
  local rc=0
  FASTGEN_CUDA_SPIN_TIMEOUT_S=$TEST_SPIN_TIMEOUT_S gpu "$PY" benchmarks/cuda_sanitizer.py --quick || rc=1
  cuda_pytest --maxfail=5 -m gpu "${CUDA_TESTS[@]}" || rc=1
  return $rc
}

sanitize() {
  local cs
  cs=$(find_tool compute-sanitizer) || { echo "compute-sanitizer not found (PATH, \$CUDA_HOME/bin)"; return 1; }
  # without torch's caching allocator every buffer is its own allocation, so memcheck sees an
  # overrun from one tensor into the next; the kernel's blocks, 100x slower under the tool,
  # may wait 10 minutes for each other
  gpu env PYTORCH_NO_CUDA_MEMORY_CACHING=1 FASTGEN_CUDA_SPIN_TIMEOUT_S=600 "$cs" --tool "$1" --error-exitcode 9 \
    --print-limit 20 \
    "$PY" benchmarks/cuda_sanitizer.py --quick
}

phase_memcheck() { sanitize memcheck; }

phase_racecheck() { sanitize racecheck; }

phase_bench() {
  gpu "$PY" -m benchmarks.engines.report --presets small base --batches 1 256 --variants "${HEADLINE_VARIANTS[@]}" \
    "${BENCH_TIMING[@]}" --no-plot --quiet --out "$OUT/bench"
}

phase_ablation() {
  gpu "$PY" -m benchmarks.engines.report --presets "${ABLATION_PRESETS[@]}" --batches 1 256 \
    --variants "${ABLATION_VARIANTS[@]}" "${BENCH_TIMING[@]}" --no-plot --quiet --out "$OUT/ablation"
}

# -- bookkeeping --------------------------------------------------------------------------------
now_ms() { date +%s%3N; }
left() { echo $(( CALL_BUDGET - SPENT - ($(now_ms) - START_MS) / 1000 )); }
say() { echo "== [$(date -u +%H:%M:%S) +$(( ($(now_ms) - START_MS) / 1000 ))s] $*" | tee -a "$LOG"; }

# record PHASE STATUS EXIT_CODE SECONDS TIMEOUT NOTE: the phase's line of the summary
record() { printf '%s|%s|%s|%s|%s\n' "$2" "$3" "$4" "$5" "$6" >"$STATE/$1.rec"; }

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

json_file() { [ -s "$1" ] && cat "$1" || echo null; }

write_summary() {
  local p status rc secs timeout note sep="" tmp="$SUMMARY.$BASHPID.tmp"   # the build's job writes too
  {
    printf '{"script": "benchmarks/device_check.sh", "dry_run": %s, "call_budget_s": %d, ' \
      "$([ "$DRY_RUN" = 1 ] && echo true || echo false)" "$CALL_BUDGET"
    printf '"elapsed_s": %d, "started_utc": %s,\n' "$(( ($(now_ms) - START_MS) / 1000 + SPENT ))" \
      "$(json_str "$STARTED")"
    printf ' "facts": %s,\n "build_info": %s,\n "phases": [' "$(json_file "$STATE/facts.json")" \
      "$(json_file "$STATE/build_info.json")"
    for p in "${PHASES[@]}"; do
      status=pending rc="" secs="" timeout="" note=""
      [ -f "$STATE/$p.rec" ] && IFS='|' read -r status rc secs timeout note <"$STATE/$p.rec"
      printf '%s\n  {"name": "%s", "status": "%s", "exit_code": %s, "seconds": %s, "budget_s": %d, ' "$sep" "$p" \
        "$status" "${rc:-null}" "${secs:-null}" "${BUDGET[$p]}"
      printf '"timeout_s": %s, "note": %s}' "${timeout:-null}" "$(json_str "$note")"
      sep=,
    done
    printf '\n ]\n}\n'
  } >"$tmp" && mv "$tmp" "$SUMMARY"
}

status_of() { local s=pending; [ -f "$STATE/$1.rec" ] && IFS='|' read -r s _ <"$STATE/$1.rec"; echo "$s"; }

# run_phase NAME [LOG]: run one phase under its timeout and record how it went
run_phase() {
  local name=$1 log=${2:-$LOG} budget=${BUDGET[$1]} need=$MIN_START t rc t0 secs status note="" from
  [ "$name" = racecheck ] && need=$RACECHECK_NEEDS
  (( need > budget )) && need=$budget
  local left_s; left_s=$(left)
  if (( left_s < need )); then
    record "$name" skipped "" 0 "" "out of time: ${left_s} s left of the call, ${need} s needed"
    say "$name: skipped, ${left_s} s left"
    return 0
  fi
  if [ -n "${NEEDS_CUDA_EXT[$name]+x}" ] && [ "$(status_of build)" != ok ]; then
    record "$name" skipped "" 0 "" "needs the CUDA extension: build $(status_of build)"
    say "$name: skipped, the build did not succeed"
    return 0
  fi
  t=$(( budget < left_s ? budget : left_s ))
  [ "$name" = racecheck ] && t=$left_s      # the last phase: what the others left is its own
  record "$name" running "" "" "$t" ""
  write_summary       # a call cut off from outside still says which phase was running
  say "$name: start, timeout ${t} s (budget ${budget} s)"
  from=$(( $(stat -c %s "$log" 2>/dev/null || echo 0) + 1 ))
  t0=$(now_ms)
  PHASE=$name timeout -k 5 "$t" bash "$SELF" --phase "$name" >>"$log" 2>&1
  rc=$?
  secs=$(( $(now_ms) - t0 ))
  secs="$(( secs / 1000 )).$(printf '%03d' $(( secs % 1000 )))"
  case $rc in
    0) status=ok ;;
    124|137) status=timeout; note="stopped after its ${t} s" ;;
    *) status=failed; note="exit $rc" ;;
  esac
  record "$name" "$status" "$rc" "$secs" "$t" "$note"
  local why=""     # a caller that keeps only the end of the output still sees why a phase failed
  [ "$status" = ok ] || why=$(tail -c +"$from" "$log" | tail -n 15 | sed "s/^/   $name| /")
  say "$name: $status (${secs} s)"
  [ -z "$why" ] || echo "$why"
}

main() {
  OUT="${OUT:-$PWD/benchmarks/results/device-check}"
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  LOG="$OUT/device_check.log"
  SUMMARY="$OUT/device_check.json"
  STATE=$(mktemp -d)
  SPENT="${DEVICE_CHECK_SPENT:-0}"
  START_MS=$(now_ms)
  STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  export OUT STATE PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
  : >"$LOG"
  : >"$OUT/build.log"
  rm -rf "$OUT/bench" "$OUT/ablation"       # an earlier run's tables are not this one's
  write_summary
  local mode=""
  [ "$DRY_RUN" = 1 ] && mode=", DRY RUN (GPU commands stubbed)"
  say "device_check: $(plan_total) s planned of $CALL_BUDGET$mode"

  run_phase preflight; write_summary
  run_phase build "$OUT/build.log" &
  local build_pid=$!
  sleep 0.2     # the build records "running" first, so the triton line below follows it
  run_phase triton; write_summary
  wait "$build_pid"; write_summary
  local p
  for p in cuda_tests memcheck bench ablation racecheck; do
    run_phase "$p"; write_summary
  done

  echo
  report_tables
  print_summary
  local rc=0
  for p in "${PHASES[@]}"; do
    case "$(status_of "$p")" in ok) ;; skipped) [ "$p" = racecheck ] || rc=1 ;; *) rc=1 ;; esac
  done
  rm -rf "$STATE"
  return $rc
}

# The benchmark's rows, short: preset, batch, backend, dtype, µs/step, x floor, vs graph.
report_tables() {
  local md
  for md in "$OUT"/bench/*.md "$OUT"/ablation/*.md; do
    [ -f "$md" ] || continue
    echo "-- ${md#"$OUT"/}"
    awk -F'|' '/^\| (preset|[a-z])/ && NF > 10 {
      printf "%-28s %5s %-22s %-5s %11s %9s %9s\n", $2, $3, $4, $5, $7, $9, $(NF-1)}' "$md"
    awk '/^Preset overrides/ {on = 1} on && /^\|/ {print; seen = 1; next} seen {exit}' "$md"
  done
}

print_summary() {
  local p status rc secs timeout note
  echo "-- phases ($SUMMARY)"
  for p in "${PHASES[@]}"; do
    status=pending rc="" secs="" timeout="" note=""
    [ -f "$STATE/$p.rec" ] && IFS='|' read -r status rc secs timeout note <"$STATE/$p.rec"
    printf '%-11s %-8s %8s s  %s\n' "$p" "$status" "${secs:--}" "$note"
  done
}

apply_budget_overrides
case "${1:-}" in
  --plan) print_plan; (( $(plan_total) <= CALL_BUDGET )); exit $? ;;
  --list-tests) printf '%s\n' "${TRITON_TESTS[@]}" "${CUDA_TESTS[@]}"; exit 0 ;;
  --phase) "phase_$2"; exit $? ;;
  --cuda-pytest) shift; STATE=$(mktemp -d); cuda_pytest "$@"; rc=$?; rm -rf "$STATE"; exit $rc ;;  # for its test
  --dry-run) export DEVICE_CHECK_DRY_RUN=1; DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: bash benchmarks/device_check.sh [--plan | --dry-run | --list-tests]" >&2; exit 2 ;;
esac
if (( $(plan_total) > CALL_BUDGET )); then
  echo "the phases' budgets add to $(plan_total) s, over the call's $CALL_BUDGET s" >&2
  exit 2
fi
main
