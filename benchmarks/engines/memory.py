"""Memory an engine needs, and the largest batch that fits.

``engine_bytes`` is what a generation long enough to fill every history ring adds to what a
built, warmed-up engine holds: its history buffers and working set, which grow with the batch
(the weights, ``common.weight_bytes``, and the caller's inputs are not counted). Pages not yet
written are not resident on a CPU, so a shorter run would undercount; and the warm-up runs one
sequence for one step and freed heap pages are then given back to the OS (``malloc_trim``),
so the measured run cannot reuse resident pages that it did not count.

- GPU: torch's allocator counts it exactly, in this process.
- CPU: in a fresh process (``python -m benchmarks.engines.memory``), as the rise of its peak resident
  set over the set held before the engine was built. In the benchmark's own process the peak
  would include memory that earlier cases freed but the C allocator kept.

``largest_batch`` extrapolates linearly from the smallest and largest batch measured.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from . import common


def probe_steps(spec) -> int:
    """Steps after which every layer's history ring (d + K frames) has been written."""
    K = spec.frames_per_step
    return -(-(max(spec.dilations) + K) // K) + 1


def proc_kib(field: str, path: str = "/proc/self/status") -> int | None:
    """A ``kB`` field of a /proc file (Linux), or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so a later allocation has to fault them in."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")     # resets VmHWM to the current resident set
        return True
    except OSError:
        return False


def _measure_here(variant: str, preset: str, batch: int, steps: int, device: torch.device) -> int | None:
    v = common.Variant.parse(variant)
    spec, weights = common.spec_and_weights(preset)
    engine = v.create(spec, weights, device)
    engine.generate(*common.make_inputs(spec, 1, 1, device))     # warm-up: compiles, first-call buffers
    frames, uniforms = common.make_inputs(spec, batch, steps, device)
    common.sync(device)
    if device.type == "cuda":
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _trim_heap()
        if not _reset_rss_peak():
            return None
        before = proc_kib("VmRSS") * 1024
    engine.generate(frames, uniforms)
    common.sync(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)) - before
    return proc_kib("VmHWM") * 1024 - before


def engine_bytes(variant: str, preset: str, batch: int, device: torch.device, steps: int | None = None) -> int | None:
    """Bytes ``variant`` (``common.Variant.text``) adds for ``batch`` sequences of
    ``preset`` over a generation of ``steps`` (default ``probe_steps``); None where it cannot
    be measured."""
    steps = steps or probe_steps(common.spec_and_weights(preset)[0])
    if device.type == "cuda":
        return _measure_here(variant, preset, batch, steps, device)
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
    r = subprocess.run([sys.executable, "-m", "benchmarks.engines.memory", variant, preset, str(batch), str(steps)],
                       capture_output=True, text=True, cwd=root, env=env, timeout=600)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise RuntimeError(f"memory probe failed: {last}")
    return json.loads(r.stdout.strip().splitlines()[-1])["bytes"]


def capacity_bytes(device: torch.device) -> int:
    """Memory an engine could take here: free device memory plus what torch holds (GPU), or
    available host memory (CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + int(torch.cuda.memory_allocated(device))
    return (proc_kib("MemAvailable", "/proc/meminfo") or 0) * 1024


def largest_batch(points: list[tuple[int, int]], capacity: int) -> int | None:
    """The batch whose memory reaches ``capacity``, extrapolated linearly from measured
    ``(batch, bytes)`` points (smallest and largest batch); None with fewer than two batches
    or no growth with batch."""
    pts = sorted(p for p in points if p[1] is not None)
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        return None
    (b0, m0), (b1, m1) = pts[0], pts[-1]
    per_seq = (m1 - m0) / (b1 - b0)
    if per_seq <= 0:
        return None
    return max(0, int(b1 + (capacity - m1) / per_seq))


if __name__ == "__main__":   # the CPU probe: VARIANT PRESET BATCH STEPS -> {"bytes": N}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    variant, preset, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps({"bytes": _measure_here(variant, preset, batch, steps, torch.device("cpu"))}))
