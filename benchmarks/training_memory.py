"""Training memory and throughput against the amount of data: ``edanet train`` on a folder and on
a folder with 4x the recordings, the same recipe, each in a fresh process.

    python -m benchmarks.training_memory DATA_1X DATA_4X [--steps 40] [--preset small] [--workers 2]
                                         [--out benchmarks/results/training-memory-DATE.md]

Memory is the peak, over the run, of the summed proportional set size (PSS: shared pages split
between the processes that map them) of the training process and its DataLoader workers,
sampled every 0.1 s from /proc; also the training process's own peak resident set (VmHWM).
Throughput, from the run's log: optimizer steps a second, and training windows (one recording's
crop each) a second. The frame cache is filled before the timed runs (a one-step run on each
folder), so both read their frames from disk.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.engines.memory import proc_kib

ROOT = Path(__file__).resolve().parents[1]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _pss_kib(pid: int) -> int:
    return proc_kib("Pss", f"/proc/{pid}/smaps_rollup") or 0


def _hwm_kib(pid: int) -> int:
    return proc_kib("VmHWM", f"/proc/{pid}/status") or 0


def run(data: Path, out: Path, args) -> dict:
    cmd = [sys.executable, "-m", "edanet.cli", "-q", "train", "--data", str(data), "--out", str(out),
           "--preset", args.preset, "--steps", str(args.steps), "--val-every", str(args.steps),
           "--ckpt-every", str(args.steps)]
    if not args.legacy:           # an edanet from before the frame cache has neither option
        cmd += ["--workers", str(args.workers), "--cache", str(args.cache)]
    t0 = time.perf_counter()
    err = open(out.parent / f"{out.name}.stderr", "w+")       # a file: a full pipe would stall the run
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
    peak_pss = hwm = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_pss = max(peak_pss, sum(_pss_kib(p) for p in pids))
        hwm = max(hwm, _hwm_kib(proc.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    if proc.returncode:
        err.seek(0)
        raise SystemExit(f"edanet train failed on {data}: {err.read()[-2000:]}")
    err.close()
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = max(1e-9, float(rows[-1]["seconds"]) - float(rows[0]["seconds"]))     # steps 2..n: past the start-up
    steps = len(rows) - 1
    summary = json.loads((out / "summary.json").read_text())
    n_rec = sum(1 for p in data.iterdir() if p.suffix == ".csv")
    return {"data": str(data), "recordings": n_rec, "peak_pss_mib": peak_pss / 1024, "main_hwm_mib": hwm / 1024,
            "steps_per_s": steps / seconds, "windows_per_s": steps * args.batch / seconds, "wall_s": wall,
            "val_nll": summary["val_nll"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_1x", type=Path)
    p.add_argument("data_4x", type=Path)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--preset", default="small")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="the preset's batch size (for windows/s)")
    p.add_argument("--cache", type=Path, default=None, help="frame cache folder (default: a temporary one)")
    p.add_argument("--legacy", action="store_true",
                   help="the edanet on PYTHONPATH predates the frame cache: no --workers/--cache")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"training-memory-{date.today()}.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.cache is None:
            args.cache = Path(tmp) / "frames"
        for name, data in (("warm-1x", args.data_1x), ("warm-4x", args.data_4x)):     # fill the frame cache
            if not args.legacy:
                run(data, Path(tmp) / name, argparse.Namespace(**{**vars(args), "steps": 1}))
        results = [run(d, Path(tmp) / n, args) for n, d in (("1x", args.data_1x), ("4x", args.data_4x))]
    one, four = results
    lines = [f"# Training memory against the data ({date.today()})", "",
             f"`python -m benchmarks.training_memory {args.data_1x} {args.data_4x} --steps {args.steps} "
             f"--preset {args.preset} --workers {args.workers}`; {os.cpu_count()} CPU cores.", "",
             "| data | recordings | peak PSS, process + workers (MiB) | training process peak RSS (MiB) | steps/s "
             "| windows/s | wall (s) |", "|---|---|---|---|---|---|---|"]
    for name, r in zip(("1x", "4x"), results):
        lines.append(f"| {name} | {r['recordings']} | {r['peak_pss_mib']:.0f} | {r['main_hwm_mib']:.0f} | "
                     f"{r['steps_per_s']:.2f} | {r['windows_per_s']:.1f} | {r['wall_s']:.1f} |")
    lines += ["", f"4x / 1x: peak PSS {four['peak_pss_mib'] / one['peak_pss_mib']:.2f}x, training process peak "
                  f"RSS {four['main_hwm_mib'] / one['main_hwm_mib']:.2f}x."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
