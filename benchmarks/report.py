"""Run the benchmark matrix on this machine and write a markdown table, a JSON file and a plot.

    python -m benchmarks.report [--presets small base] [--batches 1 4 16] [--variants torch cuda:bf16 ...]
                                [--steps N] [--repeats 3] [--out benchmarks/results]
    edanet bench [same arguments]

Every default variant whose backend is built here runs (``common.GPU_VARIANTS`` on a GPU:
torch eager, torch with the step in a CUDA graph, both Triton variants and cuda, each in fp32
and bf16; ``common.CPU_VARIANTS`` on a CPU). Steps per timed run are calibrated so that a run
lasts about ``--target-seconds`` (start-up negligible; ``reference``, slow, 4 to 16 steps).

For each case: EDA steps/s (sequences x steps / s), µs per step (one autoregressive step of the
whole batch), the floor (``common.floor_seconds``) and how far above it the step is, real-time
factor (seconds of EDA made per second, all sequences), FLOPs and bytes per step, achieved
FLOP/s as a fraction of the measured matmul peak of the engine's dtype, history-buffer bytes,
peak memory (torch's device allocations, or the process's resident set on a CPU), and the
speed-up over ``torch`` (and, on a GPU, over ``torch+graph`` of the same dtype) of the same run.
Per engine, the largest batch that fits, extrapolated from the measured peaks. On a GPU the
targets of issues #5 and #6 are checked (``benchmarks/targets.py``).
Results: ``<out>/<device>-<date>.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from . import common, targets

REFERENCE_STEPS = (4, 16)   # the reference is slow: short runs only (calibrated within)


def measure_peaks(device, variants) -> dict:
    """Matmul FLOP/s for each dtype measured, copy bytes/s, parallel units (SMs or threads)."""
    peaks = {dt: common.peak_matmul_flops(device, common.DTYPES[dt])
             for dt in dict.fromkeys(["fp32"] + [v.dtype_name for v in variants])}
    return {"matmul_flops": peaks, "copy_bytes_per_s": common.copy_bandwidth(device),
            "units": common.parallel_units(device)}


def measure(engine, spec, batch, device, steps, repeats, target_s, lo=32, hi=4096):
    """(steps, median seconds) of ``engine.generate`` on random inputs of ``batch`` sequences."""
    def gen(n):
        frames, uniforms = common.make_inputs(spec, batch, n, device)
        return lambda: engine.generate(frames, uniforms)

    n = steps or common.calibrated_steps(lambda k: gen(k)(), device, target_s, lo=lo, hi=hi)
    return n, common.timed(gen(n), device, repeats=repeats)


def run(presets, batches, variants, steps, repeats, device, target_s=0.25, progress=True):
    from tqdm import tqdm
    peaks = measure_peaks(device, variants)
    bw, units = peaks["copy_bytes_per_s"], peaks["units"]
    rows = []
    cases = [(p, b) for p in presets for b in batches]
    for preset, batch in tqdm(cases, desc="bench", disable=not progress):
        spec, weights = common.spec_and_weights(preset)
        torch_rate, graph_rate = None, {}
        for v in variants:
            common.reset_peak_memory(device)
            engine = v.create(spec, weights, device)
            n, t = measure(engine, spec, batch, device, steps, repeats, target_s,
                           *(REFERENCE_STEPS if v.backend == "reference" else ()))
            rate = batch * n / t
            flops = spec.flops_per_step() * batch
            peak = peaks["matmul_flops"][v.dtype_name]
            floor = common.floor_seconds(spec, batch, v.dtype, peak, bw, units if device.type == "cuda" else None)
            row = {"preset": preset, "batch": batch, "backend": v.label, "dtype": v.dtype_name, "steps": n,
                   "seconds": t, "eda_steps_per_s": rate, "us_per_step": 1e6 * t / n,
                   "floor_us_per_step": 1e6 * floor, "x_floor": t / n / floor,
                   "realtime_factor": rate / common_eda_rate(preset),
                   "flops_per_step": flops, "bytes_per_step": common.bytes_per_step(spec, batch, v.dtype.itemsize),
                   "bytes_per_step_weights_resident": common.bytes_per_step(spec, batch, v.dtype.itemsize,
                                                                            weights_resident=True),
                   "achieved_flops": flops * n / t, "fraction_of_peak": flops * n / t / peak,
                   "history_bytes": common.history_bytes(spec, batch, v.dtype.itemsize),
                   "peak_memory_bytes": common.peak_memory_bytes(device)}
            if v.label == "torch" and v.dtype_name == "fp32":
                torch_rate = rate
            if v.label == "torch+graph":
                graph_rate[v.dtype_name] = rate
            row["speedup_vs_torch"] = rate / torch_rate if torch_rate else None
            g = graph_rate.get(v.dtype_name)
            row["speedup_vs_graph"] = rate / g if g else None
            rows.append(row)
            del engine
    capacity = common.memory_capacity_bytes(device)
    fits = {p: {f"{v.label}:{v.dtype_name}": common.largest_batch(
        [(r["batch"], r["peak_memory_bytes"]) for r in rows
         if (r["preset"], r["backend"], r["dtype"]) == (p, v.label, v.dtype_name)], capacity) for v in variants}
        for p in presets}
    result = {"peaks": peaks, "memory_capacity_bytes": capacity, "largest_batch_that_fits": fits, "rows": rows}
    if device.type == "cuda":
        result["targets"] = targets.evaluate(result)
    return result


def common_eda_rate(preset: str) -> float:
    from edanet import EDANetConfig
    return EDANetConfig.from_preset(preset).eda_sample_rate


def _fmt_peaks(result: dict) -> str:
    p = result["peaks"]
    flops = ", ".join(f"{dt} matmul {v / 1e12:.2f} TFLOP/s" for dt, v in p["matmul_flops"].items())
    units = f"{p['units']} SMs" if result["environment"]["device_type"] == "cuda" else f"{p['units']} threads"
    return f"Measured peaks: {flops}, copy {p['copy_bytes_per_s'] / 1e9:.1f} GB/s; {units}."


def markdown(result: dict) -> str:
    env = result["environment"]
    gpu = env["device_type"] == "cuda"
    head = ["preset", "batch", "backend", "dtype", "EDA steps/s", "µs/step", "floor µs", "x floor", "real-time x",
            "MFLOP/step", "KB/step", "% of peak", "history MB", "peak MB", "vs torch"] + (["vs graph"] if gpu else [])
    lines = [f"Device: {env['device']}; commit {env['commit']}; torch {env['torch']}; {env['date']}.",
             _fmt_peaks(result), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def x(v):
        return f"{v:.1f}x" if v else "-"
    for r in result["rows"]:
        cells = [r["preset"], r["batch"], r["backend"], r["dtype"], f"{r['eda_steps_per_s']:,.0f}",
                 f"{r['us_per_step']:,.1f}", f"{r['floor_us_per_step']:,.3f}", f"{r['x_floor']:,.1f}" if r["x_floor"] < 10 else f"{r['x_floor']:,.0f}",
                 f"{r['realtime_factor']:,.0f}", f"{r['flops_per_step'] / 1e6:.2f}", f"{r['bytes_per_step'] / 1e3:.0f}",
                 f"{100 * r['fraction_of_peak']:.1f}", f"{r['history_bytes'] / 2 ** 20:.1f}",
                 "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2 ** 20:,.0f}",
                 x(r["speedup_vs_torch"])]
        if gpu:
            cells.append(x(r["speedup_vs_graph"]))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    where = "the most device memory torch had allocated" if gpu else "the process's peak resident set"
    lines += ["", f"peak MB: {where} during the case. Largest batch that fits in "
              f"{result['memory_capacity_bytes'] / 2 ** 30:.1f} GiB, extrapolated from the peaks at the smallest and "
              "largest batch: " + "; ".join(f"{p}: " + ", ".join(f"{k} {'-' if n is None else f'{n:,}'}" for k, n in d.items())
                                              for p, d in result["largest_batch_that_fits"].items())]
    if result.get("targets"):
        lines += ["", "Targets of issues #5 and #6, measured in this run:", "", targets.markdown(result["targets"])]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """EDA steps/s against batch, one line per engine, log-log; dotted: the fp32 floor."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edanet.io import atomic_write
    rows = result["rows"]
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        mine = [r for r in rows if r["preset"] == preset]
        for key in dict.fromkeys((r["backend"], r["dtype"]) for r in mine):
            pts = [(r["batch"], r["eda_steps_per_s"]) for r in mine if (r["backend"], r["dtype"]) == key]
            ax.plot(*zip(*pts), marker="o", label=" ".join(key))
        floor = sorted({(r["batch"], r["batch"] * 1e6 / r["floor_us_per_step"]) for r in mine if r["dtype"] == "fp32"})
        if floor:
            ax.plot(*zip(*floor), ls=":", color="gray", label="fp32 floor")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("EDA steps / s")
        ax.set_title(f"{preset} ({result['environment']['device']})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write(result: dict, out: Path) -> Path:
    """``<out>/<device>-<date>.{json,md,png}``, each written atomically; returns the stem."""
    from edanet.io import atomic_write
    slug = re.sub(r"[^A-Za-z0-9]+", "-", result["environment"]["device"]).strip("-").lower()[:60]
    stem = out / f"{slug}-{result['environment']['date']}"
    atomic_write(stem.with_suffix(".json"), json.dumps(result, indent=1))
    atomic_write(stem.with_suffix(".md"), markdown(result))
    plot(result, stem.with_suffix(".png"))
    return stem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="edanet bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", nargs="+", default=["small", "base"])
    p.add_argument("--batches", nargs="+", type=int)
    p.add_argument("--variants", "--backends", nargs="+", metavar="BACKEND[:DTYPE]",
                   help="default: common.GPU_VARIANTS / CPU_VARIANTS, those available here")
    p.add_argument("--steps", type=int, default=None, help="steps per timed run (default: calibrated)")
    p.add_argument("--target-seconds", type=float, default=None,
                   help="calibrated length of one timed run (default 0.25 on GPU, 0.5 on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case, median kept (default 3 on CPU, 7 on GPU)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("edanet bench: --device cuda, but torch sees no CUDA GPU here (use --device cpu)")
    try:
        variants = [common.Variant.parse(t) for t in a.variants] if a.variants else common.default_variants(device)
    except ValueError as e:
        raise SystemExit(f"edanet bench: {e}") from None
    batches = a.batches or (common.GPU_BATCHES if device.type == "cuda" else common.CPU_BATCHES)
    gpu = device.type == "cuda"
    result = run(a.presets, batches, variants, a.steps, a.repeats or (7 if gpu else 3), device,
                 target_s=a.target_seconds or (0.25 if gpu else 0.5), progress=not a.quiet)
    result["environment"] = common.environment(device)
    stem = write(result, Path(a.out))
    print(markdown(result))
    print(f"wrote {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
