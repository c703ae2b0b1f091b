"""benchmarks/device_check.sh, the GPU checks in one device call, tested on the CPU: its plan
(phases in order, budgets within the call's 480 s) and its control flow in a dry run (every GPU
command a stub): each phase's status in the summary JSON, rewritten after every phase; a phase
that fails or runs out of time is reported and the later ones still run; what needs the CUDA
extension is skipped when the build failed; nothing starts once the call's time is spent. Also:
the test files the device runs collect without the packages the GPU machine lacks."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
PHASES = ["preflight", "build", "triton", "cuda_tests", "memcheck", "bench", "ablation", "racecheck"]
CALL_BUDGET = 480
# Packages the GPU machine does not have (it has no network to install them).
MISSING_ON_DEVICE = ("librosa", "soundfile", "neurokit2")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_CHECK_") and k != "OUT"}
    return dict(env, OUT=str(tmp_path / "out"), PYTHON=sys.executable, **extra)


def _run(tmp_path, *args, **extra):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(tmp_path, **extra), timeout=120)


def _dry_run(tmp_path, **extra):
    r = _run(tmp_path, "--dry-run", **extra)
    summary = json.loads((tmp_path / "out" / "device_check.json").read_text())
    return r, summary, {p["name"]: p for p in summary["phases"]}


def _plan(tmp_path, **extra):
    r = _run(tmp_path, "--plan", **extra)
    rows = [m.groups() for m in re.finditer(r"^(\w+)\s+(\d+)\s+(.*)$", r.stdout, re.M)]
    return r, rows


def test_plan_lists_the_phases_in_order_within_the_call(tmp_path):
    r, rows = _plan(tmp_path)
    assert r.returncode == 0, r.stderr
    *phases, (total_name, total, _) = rows
    assert [p for p, _, _ in phases] == PHASES and total_name == "total"
    budget = {p: int(b) for p, b, _ in phases}
    beside = {p: re.search(r"beside (\w+)", note).group(1) for p, _, note in phases if "beside" in note}
    assert beside == {"triton": "build"}                  # the Triton tests run while the build does
    # one after another, a phase run beside another counted once
    wall = sum(max([budget[p]] + [budget[q] for q, b in beside.items() if b == p]) for p in budget if p not in beside)
    assert int(total) == wall <= CALL_BUDGET
    start = {p: int(re.match(r"at (\d+) s", note).group(1)) for p, _, note in phases}
    assert all(start[p] + budget[p] <= CALL_BUDGET for p in PHASES)
    assert [start[p] for p in PHASES if p not in beside] == sorted(start[p] for p in PHASES if p not in beside)


def test_budgets_over_the_call_are_refused(tmp_path):
    r, _ = _plan(tmp_path, DEVICE_CHECK_BUDGETS="bench=400")
    assert r.returncode != 0
    r = _run(tmp_path, "--dry-run", DEVICE_CHECK_BUDGETS="bench=400")
    assert r.returncode == 2 and "over the call" in r.stderr
    assert _run(tmp_path, "--plan", DEVICE_CHECK_BUDGETS="nope=3").returncode == 2


def test_dry_run_runs_every_phase_and_writes_the_summary(tmp_path):
    r, summary, phase = _dry_run(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary["dry_run"] is True and summary["call_budget_s"] == CALL_BUDGET
    assert [p["name"] for p in summary["phases"]] == PHASES
    for p in summary["phases"]:
        assert p["status"] == "ok" and p["exit_code"] == 0, p
        assert 0 <= p["seconds"] < 30
        if p["name"] == "racecheck":        # the last phase: the whole rest of the call
            assert p["budget_s"] < p["timeout_s"] <= CALL_BUDGET
        else:
            assert p["timeout_s"] == p["budget_s"]
    out = tmp_path / "out"
    assert {f.name for f in out.iterdir()} == {"device_check.json", "device_check.log", "build.log"}
    log = (out / "device_check.log").read_text()
    # every GPU command was a stub, and the phases ran what they should
    assert "[dry-run] triton:" in log and "tests/fastgen/test_triton.py" in log
    assert "-m gpu tests/fastgen/test_cuda_backend.py" in log
    assert "--tool memcheck" in log and "--tool racecheck" in log
    assert "--presets small base --batches 1 256" in log
    assert "--presets base base@quantization_bins=16 --batches 1 256" in log
    assert "TORCH_CUDA_ARCH_LIST=9.0a" in (out / "build.log").read_text()
    assert "-- phases" in r.stdout                      # the short table the device's reply ends with


def test_a_failing_and_a_hanging_phase_do_not_stop_the_later_ones(tmp_path):
    t0 = time.monotonic()
    r, _, phase = _dry_run(tmp_path, DEVICE_CHECK_FAIL="cuda_tests", DEVICE_CHECK_HANG="bench",
                           DEVICE_CHECK_BUDGETS="bench=2")
    assert r.returncode == 1
    assert phase["cuda_tests"]["status"] == "failed" and phase["cuda_tests"]["exit_code"] == 1
    assert phase["bench"]["status"] == "timeout" and phase["bench"]["timeout_s"] == 2
    assert 2 <= phase["bench"]["seconds"] < 10 and time.monotonic() - t0 < 60
    for p in ("memcheck", "ablation", "racecheck"):
        assert phase[p]["status"] == "ok", phase[p]
    assert "cuda_tests| [dry-run] cuda_tests: failing" in r.stdout     # why, in the reply's tail


def test_a_failed_build_skips_only_what_needs_the_cuda_extension(tmp_path):
    r, _, phase = _dry_run(tmp_path, DEVICE_CHECK_FAIL="build")
    assert r.returncode == 1 and phase["build"]["status"] == "failed"
    for p in ("cuda_tests", "memcheck", "racecheck"):
        assert phase[p]["status"] == "skipped" and "build failed" in phase[p]["note"], phase[p]
    for p in ("preflight", "triton", "bench", "ablation"):
        assert phase[p]["status"] == "ok", phase[p]


def test_no_phase_starts_once_the_call_is_spent(tmp_path):
    # 12 s of the call left: preflight's timeout is cut to what is left, the Triton tests hang
    # for their 3 s, and then no phase has its 10 s any more
    r, summary, phase = _dry_run(tmp_path, DEVICE_CHECK_SPENT="468", DEVICE_CHECK_HANG="triton",
                                 DEVICE_CHECK_BUDGETS="triton=3")
    assert r.returncode == 1
    assert phase["preflight"]["status"] == "ok" and phase["preflight"]["timeout_s"] <= 12
    assert phase["triton"]["status"] == "timeout"
    for p in ("cuda_tests", "memcheck", "bench", "ablation", "racecheck"):
        assert phase[p]["status"] == "skipped" and "out of time" in phase[p]["note"], phase[p]
    assert summary["elapsed_s"] <= CALL_BUDGET


def test_the_summary_is_rewritten_after_every_phase(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=_env(tmp_path, DEVICE_CHECK_HANG="bench", DEVICE_CHECK_BUDGETS="bench=4"))
    try:
        status, deadline = {}, time.monotonic() + 30
        while status.get("bench") != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                status = {p["name"]: p["status"] for p in json.loads((out / "device_check.json").read_text())["phases"]}
            except (OSError, ValueError):
                continue
        # mid-run: what ran is recorded, the running phase says so, the rest are pending
        assert status == dict(preflight="ok", build="ok", triton="ok", cuda_tests="ok", memcheck="ok",
                              bench="running", ablation="pending", racecheck="pending")
    finally:
        proc.wait(timeout=60)
    final = {p["name"]: p["status"] for p in json.loads((out / "device_check.json").read_text())["phases"]}
    assert final["bench"] == "timeout" and final["racecheck"] == "ok"


# -- what the device runs must not need what the device lacks ------------------------------------
def _device_test_targets():
    r = subprocess.run(["bash", str(SCRIPT), "--list-tests"], capture_output=True, text=True, cwd=ROOT, check=True)
    return r.stdout.split()


def test_every_gpu_marked_test_file_runs_on_the_device():
    files = {t.split("::")[0] for t in _device_test_targets()}
    assert all((ROOT / f).is_file() for f in files)
    gpu_mark = re.compile(r"^\s*(@pytest\.mark\.gpu\b|pytestmark\b.*\bmark\.gpu\b)", re.M)
    marked = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py")
              if gpu_mark.search(p.read_text())}
    assert marked <= files, f"tests marked gpu that no device phase runs: {sorted(marked - files)}"


BLOCKER = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {missing!r}:
            raise ImportError(name + " is not installed on the GPU machine")
sys.meta_path.insert(0, Missing())
"""


def test_device_tests_and_benchmarks_need_no_audio_packages():
    code = BLOCKER.format(missing=MISSING_ON_DEVICE) + f"""
import pytest
rc = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *{_device_test_targets()!r}])
assert rc == 0, f"collecting the device's tests failed (exit {{rc}})"
from benchmarks import cuda_sanitizer   # the sanitizer phase
from benchmarks.engines import common, report   # the benchmark phase
common.spec_and_weights("small@quantization_bins=16")
print("IMPORTED-OK")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0 and "IMPORTED-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert "test_gpu_parity" in r.stdout and "test_prediction_matches_the_launched_kernel" in r.stdout


def test_the_old_multi_call_script_is_gone():
    assert not (ROOT / "benchmarks" / "gpu_check.sh").exists()
    for f in [ROOT / "README.md", *(ROOT / "benchmarks").glob("*.py")]:
        assert "gpu_check" not in f.read_text(), f
    assert "bash benchmarks/device_check.sh" in (ROOT / "README.md").read_text()


# A stand-in for a kernel trap: once test_b "traps", every later test in the process fails with
# the sticky error, as CUDA calls do after a lost context.
LOST_CONTEXT_TESTS = '''
import pytest
LOST = []

def _cuda():
    if LOST:
        raise RuntimeError("CUDA error: unspecified launch failure")

def test_a():
    _cuda()

def test_b():
    LOST.append(1)
    _cuda()

def test_c():
    _cuda()

def test_d():
    assert False, "an ordinary failure"
'''


def test_a_lost_cuda_context_does_not_fail_the_tests_after_it(tmp_path):
    (tmp_path / "test_fake_gpu.py").write_text(LOST_CONTEXT_TESTS)
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    r = subprocess.run(["bash", str(SCRIPT), "--cuda-pytest", "-p", "no:randomly", str(tmp_path / "test_fake_gpu.py")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    out = r.stdout + r.stderr
    # b fails (it trapped); c runs in a fresh process and passes; d's own failure is reported
    assert "the CUDA context was lost; 2 test(s) done" in out, out
    assert r.returncode == 1, out
    assert "FAILED" in out and "test_fake_gpu.py::test_b" in out and "test_fake_gpu.py::test_d" in out
    assert "test_fake_gpu.py::test_c" not in out.split("short test summary")[-1], out
