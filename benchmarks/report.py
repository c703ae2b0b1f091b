"""Run the benchmark matrix on this machine and write a markdown table, a JSON file and a plot.

    python -m benchmarks.report [--presets small base] [--batches 1 4 16] [--backends ...]
                                [--steps 64] [--repeats 3] [--out benchmarks/results]
    edanet bench [same arguments]

Every backend built here runs (``reference`` on a few steps only). For each case: EDA steps/s
(sequences x steps / s), µs per step (one autoregressive step of the whole batch), real-time
factor (seconds of EDA made per second, all sequences), FLOPs and bytes per step, achieved
FLOP/s as a fraction of the measured matmul peak, history-buffer memory, and the speed-up over
the ``torch`` backend of the same run. Results: ``<out>/<device>-<date>.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import torch

import fastgen

from . import common

REFERENCE_STEPS = 4


def _engines(spec, weights, device, names):
    for name in names:
        if name == "torch+graph":
            yield name, fastgen.create("torch", spec, weights, device=device, cuda_graph=True)
        else:
            yield name, fastgen.create(name, spec, weights, device=device)


def _mem_available(device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(presets, batches, backends, steps, repeats, device, progress=True):
    from tqdm import tqdm
    peak = common.peak_matmul_flops(device)
    peak_lowp = common.peak_matmul_flops(device, torch.bfloat16) if device.type == "cuda" else None
    bw = common.copy_bandwidth(device)
    rows = []
    cases = [(p, b) for p in presets for b in batches]
    for preset, batch in tqdm(cases, desc="bench", disable=not progress):
        spec, weights = common.spec_and_weights(preset)
        base_rate = None
        for name, engine in _engines(spec, weights, device, backends):
            n = REFERENCE_STEPS if name == "reference" else steps
            frames, uniforms = common.make_inputs(spec, batch, n, device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = common.timed(lambda: engine.generate(frames, uniforms), device, repeats=repeats)
            rate = batch * n / t
            flops = spec.flops_per_step() * batch
            row = {"preset": preset, "batch": batch, "backend": name, "steps": n, "seconds": t,
                   "eda_steps_per_s": rate, "us_per_step": 1e6 * t / n,
                   "realtime_factor": rate / common_eda_rate(preset),
                   "flops_per_step": flops, "bytes_per_step": common.bytes_per_step(spec, batch),
                   "bytes_per_step_weights_resident": common.bytes_per_step(spec, batch, weights_resident=True),
                   "achieved_flops": flops * n / t, "fraction_of_peak": flops * n / t / peak,
                   "history_bytes": common.history_bytes(spec, batch)}
            if device.type == "cuda":
                row["peak_device_bytes"] = torch.cuda.max_memory_allocated(device)
            if name == "torch":
                base_rate = rate
            row["speedup_vs_torch"] = rate / base_rate if base_rate else None
            rows.append(row)
    # the largest batch whose history buffers (plus a 4x margin for the rest) fit in free memory
    free = _mem_available(device)
    fits = {p: int(free // max(1, 4 * common.history_bytes(common.spec_and_weights(p)[0], 1))) for p in presets}
    return {"peak_matmul_flops_fp32": peak, "peak_matmul_flops_bf16": peak_lowp, "copy_bytes_per_s": bw,
            "free_memory_bytes": free, "largest_batch_that_fits": fits, "rows": rows}


def common_eda_rate(preset: str) -> float:
    from edanet import EDANetConfig
    return EDANetConfig.from_preset(preset).eda_sample_rate


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"Device: {env['device']}; commit {env['commit']}; torch {env['torch']}; {env['date']}.",
             f"Measured peaks: fp32 matmul {result['peak_matmul_flops_fp32'] / 1e9:.1f} GFLOP/s"
             + (f", bf16 matmul {result['peak_matmul_flops_bf16'] / 1e12:.1f} TFLOP/s" if result["peak_matmul_flops_bf16"] else "")
             + f", copy {result['copy_bytes_per_s'] / 1e9:.1f} GB/s.", "",
             "| preset | batch | backend | EDA steps/s | µs/step | real-time x | MFLOP/step | KB/step | % of fp32 peak | vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        sp = f"{r['speedup_vs_torch']:.1f}x" if r["speedup_vs_torch"] else "-"
        lines.append(f"| {r['preset']} | {r['batch']} | {r['backend']} | {r['eda_steps_per_s']:,.0f} | "
                     f"{r['us_per_step']:,.1f} | {r['realtime_factor']:,.0f} | {r['flops_per_step'] / 1e6:.2f} | "
                     f"{r['bytes_per_step'] / 1e3:.0f} | {100 * r['fraction_of_peak']:.1f} | {sp} |")
    lines.append("")
    lines.append("Largest batch whose history buffers fit (4x margin): " +
                 ", ".join(f"{p}: {n:,}" for p, n in result["largest_batch_that_fits"].items()))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edanet.io import atomic_write
    presets = sorted({r["preset"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        for name in dict.fromkeys(r["backend"] for r in result["rows"]):
            pts = [(r["batch"], r["eda_steps_per_s"]) for r in result["rows"] if r["preset"] == preset and r["backend"] == name]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("EDA steps / s")
        ax.set_title(f"{preset} ({result['environment']['device']})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="edanet bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", nargs="+", default=["small", "base"])
    p.add_argument("--batches", nargs="+", type=int)
    p.add_argument("--backends", nargs="+", help="default: every backend available here")
    p.add_argument("--steps", type=int, default=None, help="steps per timed run (default 64 on CPU, 1024 on GPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case, median kept (default 3 on CPU, 10 on GPU)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    batches = a.batches or (common.GPU_BATCHES if device.type == "cuda" else common.CPU_BATCHES)
    backends = a.backends or [b for b in fastgen.available(device) if not b.startswith("triton") or device.type == "cuda"]
    if device.type == "cuda" and "torch" in backends and "torch+graph" not in backends:
        backends.insert(backends.index("torch") + 1, "torch+graph")
    if "torch" in backends:      # the baseline first, so every row has its speed-up
        backends.remove("torch")
        backends.insert(0, "torch")
    steps = a.steps or (1024 if device.type == "cuda" else 64)
    repeats = a.repeats or (10 if device.type == "cuda" else 3)
    result = run(a.presets, batches, backends, steps, repeats, device, progress=not a.quiet)
    result["environment"] = common.environment(device)
    out = Path(a.out)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", result["environment"]["device"]).strip("-").lower()[:60]
    stem = out / f"{slug}-{result['environment']['date']}"
    from edanet.io import atomic_write
    text = markdown(result)
    atomic_write(stem.with_suffix(".json"), json.dumps(result, indent=1))
    atomic_write(stem.with_suffix(".md"), text)
    plot(result, stem.with_suffix(".png"))
    print(text)
    print(f"wrote {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
