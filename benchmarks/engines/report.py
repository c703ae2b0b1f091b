"""Run the benchmark matrix on this machine and write a markdown table, a JSON file and a plot.

    python -m benchmarks.engines.report [--presets small base] [--batches 1 4 16] [--variants torch cuda:bf16 ...]
                                [--steps N] [--repeats 3] [--out benchmarks/results] [--no-plot]
    edanet bench [same arguments]
    python -m benchmarks.engines.report --render RESULT.json    # redraw the .md/.png of a saved (or partial) run

Every default variant whose backend is built here runs (``common.GPU_VARIANTS`` on a GPU:
torch eager in fp32, then torch with the step in a CUDA graph, both Triton variants and cuda,
each in fp32 and bf16; ``common.CPU_VARIANTS`` on a CPU; reference on both). Steps per timed
run are doubled until a run lasts ``--target-seconds`` (start-up negligible; ``reference``,
slow, runs 4 to 16 steps). A variant that fails is recorded and the rest go on.

For each case: EDA steps/s (sequences x steps / s), µs per step (one autoregressive step of the
whole batch), the floor (``common.floor_seconds``) and how far above it the step is, real-time
factor (seconds of EDA made per second, all sequences), FLOPs and bytes per step, achieved
FLOP/s as a fraction of the measured matmul peak of the engine's dtype, history-buffer bytes,
the memory a generation adds to a built engine (``benchmarks/engines/memory.py``), and the speed-up
over ``torch`` (and, on a GPU, over ``torch+graph`` of the same dtype) of the same run. Per
engine, the largest batch that fits, extrapolated from that memory. On a GPU the speed targets
of the Triton and CUDA backends are checked (``benchmarks/engines/targets.py``).
Results: ``<out>/<device>-<date>.{json,md,png}``.

A preset may override fields of its config (``common.parse_preset``): ``--presets base
base@quantization_bins=16`` measures ``base`` with Q = 256 and Q = 16 classes. Each batch of
such a preset runs right after the same batch of its base preset, and the report compares the
two (µs per step, and the share of the base step the override takes away: here the part of a
step that the downsampling and sampling over 240 more classes cost).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

from . import common, memory, targets

REFERENCE_STEPS = (4, 16)   # the reference is slow: short runs only (calibrated within)


def measure_peaks(device, variants) -> dict:
    """Matmul FLOP/s for each dtype measured, copy bytes/s, parallel units (SMs or threads)."""
    peaks = {dt: common.peak_matmul_flops(device, common.DTYPES[dt])
             for dt in dict.fromkeys(["fp32"] + [v.dtype_name for v in variants])}
    return {"matmul_flops": peaks, "copy_bytes_per_s": common.copy_bandwidth(device),
            "units": common.parallel_units(device)}


def measure(engine, spec, batch, device, steps, repeats, target_s, lo=32, hi=4096):
    """(steps, median seconds) of ``engine.generate`` on random inputs of ``batch`` sequences.
    ``steps`` (if given) is clamped to [lo, hi] too."""
    def gen(n):
        frames, uniforms = common.make_inputs(spec, batch, n, device)
        return lambda: engine.generate(frames, uniforms)

    n = min(hi, max(lo, steps)) if steps else common.calibrated_steps(lambda k: gen(k)(), device, target_s, lo, hi)
    return n, common.timed(gen(n), device, repeats=repeats)


def add_speedups(case_rows: list[dict]) -> None:
    """Speed-ups of one case's rows over its fp32 ``torch`` row and over ``torch+graph`` of the
    same dtype (None where that row was not measured)."""
    rate = {(r["backend"], r["dtype"]): r["eda_steps_per_s"] for r in case_rows}
    for r in case_rows:
        base, graph = rate.get(("torch", "fp32")), rate.get(("torch+graph", r["dtype"]))
        r["speedup_vs_torch"] = r["eda_steps_per_s"] / base if base else None
        r["speedup_vs_graph"] = r["eda_steps_per_s"] / graph if graph else None


def _row(v, preset, spec, batch, n, t, peak, bw, units):
    flops = spec.flops_per_step() * batch
    floor = common.floor_seconds(spec, batch, v.dtype, peak, bw, units)
    return {"preset": preset, "batch": batch, "backend": v.label, "dtype": v.dtype_name, "steps": n,
            "seconds": t, "eda_steps_per_s": batch * n / t, "us_per_step": 1e6 * t / n,
            "floor_us_per_step": 1e6 * floor, "x_floor": t / n / floor,
            "realtime_factor": batch * n / t / common_eda_rate(preset),
            "flops_per_step": flops, "bytes_per_step": common.bytes_per_step(spec, batch, v.dtype.itemsize),
            "bytes_per_step_weights_resident": common.bytes_per_step(spec, batch, v.dtype.itemsize,
                                                                     weights_resident=True),
            "achieved_flops": flops * n / t, "fraction_of_peak": flops * n / t / peak,
            "history_bytes": common.history_bytes(spec, batch, v.dtype.itemsize)}


def case_order(presets, batches) -> list[tuple[str, int]]:
    """(preset, batch) in the order measured: preset by preset, except that a preset with
    overrides runs each batch right after that batch of its base preset (when that preset is
    measured too), so a run cut short still holds whole pairs to compare."""
    base_of = {p: common.parse_preset(p)[0] for p in presets}
    paired = [p for p in presets if base_of[p] != p and base_of[p] in presets]
    cases = []
    for p in presets:
        if p in paired:
            continue
        for b in batches:
            cases += [(p, b)] + [(q, b) for q in paired if base_of[q] == p]
    return cases


def override_deltas(rows: list[dict]) -> list[dict]:
    """Each row of a preset with overrides against the row of its base preset with the same
    batch, backend and dtype: µs per step of both, and the share of the base step saved."""
    index = {(r["preset"], r["batch"], r["backend"], r["dtype"]): r for r in rows}
    out = []
    for r in rows:
        base = common.parse_preset(r["preset"])[0]
        b = index.get((base, r["batch"], r["backend"], r["dtype"]))
        if base == r["preset"] or b is None:
            continue
        out.append(dict(preset=r["preset"], base_preset=base, batch=r["batch"], backend=r["backend"],
                        dtype=r["dtype"], base_us_per_step=b["us_per_step"], us_per_step=r["us_per_step"],
                        saved_fraction=1 - r["us_per_step"] / b["us_per_step"]))
    return out


def run(presets, batches, variants, steps, repeats, device, target_s=0.25, progress=True, on_progress=None):
    """The matrix: one row per (preset, batch, variant) measured; a variant that fails (not
    built for this shape, a compile error) is recorded in ``failures`` and the rest go on.
    ``on_progress(result so far)`` is called after every variant, measured or failed (the
    report saves it: a run stopped by a timeout keeps every row it finished)."""
    from tqdm import tqdm
    peaks = measure_peaks(device, variants)
    bw = peaks["copy_bytes_per_s"]
    units = peaks["units"] if device.type == "cuda" else None
    result = {"peaks": peaks, "rows": [], "failures": []}
    cases = case_order(presets, batches)
    for preset, batch in (bar := tqdm(cases, desc="bench", disable=not progress)):
        spec, weights = common.spec_and_weights(preset)
        case_rows = []
        for v in variants:
            try:
                engine = v.create(spec, weights, device)
                # the first call pays any compilation (torch.compile, Triton's JIT): timed apart
                warm_s = time.perf_counter()
                measure(engine, spec, batch, device, 2, 1, target_s, lo=2, hi=2)
                warm_s = time.perf_counter() - warm_s
                n, t = measure(engine, spec, batch, device, steps, repeats, target_s,
                               *(REFERENCE_STEPS if v.backend == "reference" else ()))
                del engine
            except Exception as e:  # noqa: BLE001 - one engine's failure must not lose the run
                msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                result["failures"].append(dict(preset=preset, batch=batch, backend=v.label, dtype=v.dtype_name,
                                               error=msg))
                bar.write(f"{preset} batch {batch} {v.label} {v.dtype_name}: FAILED {msg}")
                if on_progress:
                    on_progress(result)
                continue
            row = _row(v, preset, spec, batch, n, t, peaks["matmul_flops"][v.dtype_name], bw, units)
            row["warmup_s"] = warm_s
            try:
                row["engine_memory_bytes"] = memory.engine_bytes(v.text, preset, batch, device)
            except Exception as e:  # noqa: BLE001 - the timing stands without it
                row["engine_memory_bytes"] = None
                bar.write(f"{preset} batch {batch} {v.text}: memory not measured ({type(e).__name__}: {e})")
            case_rows.append(row)
            result["rows"].append(row)
            add_speedups(case_rows)              # again with each row: the case's rows so far
            bar.write(f"{preset} batch {batch} {v.label} {v.dtype_name}: {row['eda_steps_per_s']:,.0f} EDA steps/s, "
                      f"{row['us_per_step']:,.1f} us/step ({n} steps), {row['x_floor']:,.1f}x floor")
            if on_progress:
                on_progress(result)
    result["override_deltas"] = override_deltas(result["rows"])
    capacity = memory.capacity_bytes(device)
    result["memory_capacity_bytes"] = capacity
    result["largest_batch_that_fits"] = {p: {v.text: memory.largest_batch(
        [(r["batch"], r["engine_memory_bytes"]) for r in result["rows"]
         if (r["preset"], r["backend"], r["dtype"]) == (p, v.label, v.dtype_name)], capacity) for v in variants}
        for p in presets}
    if device.type == "cuda":
        result["targets"] = targets.evaluate(result)
    return result


def common_eda_rate(preset: str) -> float:
    return common.config_of(preset).eda_sample_rate


def _fmt_peaks(result: dict) -> str:
    p = result["peaks"]
    flops = ", ".join(f"{dt} matmul {v / 1e12:.2f} TFLOP/s" for dt, v in p["matmul_flops"].items())
    units = f"{p['units']} SMs" if result["environment"]["device_type"] == "cuda" else f"{p['units']} threads"
    return f"Measured peaks: {flops}, copy {p['copy_bytes_per_s'] / 1e9:.1f} GB/s; {units}."


def _x(v):
    return f"{v:.1f}x" if v else "-"


def _cells(r: dict, gpu: bool) -> list[str]:
    mem = r.get("engine_memory_bytes")
    return ([r["preset"], str(r["batch"]), r["backend"], r["dtype"], f"{r['eda_steps_per_s']:,.0f}",
             f"{r['us_per_step']:,.1f}", f"{r['floor_us_per_step']:,.3f}",
             f"{r['x_floor']:,.1f}" if r["x_floor"] < 10 else f"{r['x_floor']:,.0f}",
             f"{r['realtime_factor']:,.0f}", f"{r['flops_per_step'] / 1e6:.2f}", f"{r['bytes_per_step'] / 1e3:.0f}",
             f"{100 * r['fraction_of_peak']:.1f}", f"{r['history_bytes'] / 2 ** 20:.1f}",
             "-" if mem is None else f"{mem / 2 ** 20:,.1f}", _x(r["speedup_vs_torch"])]
            + ([_x(r["speedup_vs_graph"])] if gpu else []))


def markdown(result: dict) -> str:
    """The table (and, where present, failures, memory fits and targets) of a whole or partial run."""
    env = result["environment"]
    gpu = env["device_type"] == "cuda"
    head = ["preset", "batch", "backend", "dtype", "EDA steps/s", "µs/step", "floor µs", "x floor", "real-time x",
            "MFLOP/step", "KB/step", "% of peak", "history MiB", "engine MiB", "vs torch"] \
        + (["vs graph"] if gpu else [])
    lines = [f"Device: {env['device']}; commit {env['commit']}; torch {env['torch']}; {env['date']}.",
             _fmt_peaks(result), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cells(r, gpu)) + " |" for r in result["rows"]]
    slow = [r for r in result["rows"] if r.get("warmup_s", 0) >= 1.0]
    if slow:    # compilation (torch.compile, Triton's JIT) is paid once per shape, before timing
        lines += ["", "First call (compilation, timed apart from the rows): " + "; ".join(
            f"{r['preset']} batch {r['batch']} {r['backend']} {r['dtype']} {r['warmup_s']:.1f} s" for r in slow) + "."]
    if result.get("failures"):
        lines += ["", "Failed:"] + [f"- {f['preset']} batch {f['batch']} {f['backend']} {f['dtype']}: {f['error']}"
                                    for f in result["failures"]]
    if "largest_batch_that_fits" in result:
        where = "torch's device allocations" if gpu else "the peak resident set of a fresh process"
        fits = "; ".join(f"{p}: " + ", ".join(f"{k} {'-' if n is None else f'{n:,}'}" for k, n in d.items())
                         for p, d in result["largest_batch_that_fits"].items())
        lines += ["", f"engine MiB: what a generation that fills every history ring adds to {where} for a built "
                  f"engine (history, working set; weights and inputs excluded). Largest batch that fits in "
                  f"{result['memory_capacity_bytes'] / 2 ** 30:.1f} GiB, extrapolated from the smallest and largest "
                  f"batch: {fits}."]
    deltas = override_deltas(result["rows"])
    if deltas:
        lines += ["", "Preset overrides against their base preset (rows of this run; \"saved\": the share of "
                  "the base preset's step that the override takes away):", "",
                  "| preset | batch | backend | dtype | base µs/step | µs/step | saved |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {d['preset']} | {d['batch']} | {d['backend']} | {d['dtype']} | {d['base_us_per_step']:,.1f} | "
                  f"{d['us_per_step']:,.1f} | {100 * d['saved_fraction']:.1f}% |" for d in deltas]
    if result.get("targets"):
        lines += ["", "Speed targets of the Triton and CUDA backends, measured in this run:", "", targets.markdown(result["targets"])]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """EDA steps/s against batch, one line per engine, log-log; dotted: the limit the fp32 floor sets."""
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
            ax.plot(*zip(*floor), ls=":", color="gray", label="fp32 limit (floor)")
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


def write(result: dict, out: Path, with_plot: bool = True) -> Path:
    """``<out>/<device>-<date>.{json,md,png}``, each written atomically; returns the stem."""
    from edanet.io import atomic_write
    slug = re.sub(r"[^A-Za-z0-9]+", "-", result["environment"]["device"]).strip("-").lower()[:60]
    stem = out / f"{slug}-{result['environment']['date']}"
    atomic_write(stem.with_suffix(".json"), json.dumps(result, indent=1))
    atomic_write(stem.with_suffix(".md"), markdown(result))
    if with_plot and result["rows"]:
        plot(result, stem.with_suffix(".png"))
    return stem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="edanet bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", nargs="+", default=["small", "base"],
                   help="edanet presets, each with config overrides if any: base@quantization_bins=16")
    p.add_argument("--batches", nargs="+", type=int)
    p.add_argument("--variants", "--backends", nargs="+", metavar="VARIANT",
                   help="backend[+graph][:dtype][@option=value,...], e.g. cuda:bf16, torch+graph:bf16, "
                        "triton:bf16@num_warps=4 (default: common.GPU_VARIANTS / CPU_VARIANTS, those available here)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed run (default: calibrated)")
    p.add_argument("--target-seconds", type=float, default=None,
                   help="calibrated length of one timed run (default 0.25 on GPU, 0.5 on CPU)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per case, median kept (default 3 on CPU, 7 on GPU)")
    p.add_argument("--out", default="benchmarks/results",
                   help="folder of the results (default: benchmarks/results under the current folder)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-plot", action="store_true",
                   help="write the .json and .md only (--render draws the plot later)")
    p.add_argument("--render", metavar="RESULT.json", help="only rewrite the .md and .png of a saved result")
    a = p.parse_args(argv)
    if a.render:
        res = json.loads(Path(a.render).read_text())
        stem = write(res, Path(a.render).parent)
        print(markdown(res))
        print(f"wrote {stem}.md, .png")
        return 0
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("edanet bench: --device cuda, but torch sees no CUDA GPU here (use --device cpu)")
    try:
        variants = [common.Variant.parse(t) for t in a.variants] if a.variants else common.default_variants(device)
        for preset in a.presets:      # a misspelt preset or field stops the run before it starts
            common.config_of(preset)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"edanet bench: {e}") from None
    batches = a.batches or (common.GPU_BATCHES if device.type == "cuda" else common.CPU_BATCHES)
    gpu = device.type == "cuda"
    env = common.environment(device)
    # after every row the results so far are saved, so a run cut short still leaves its rows
    result = run(a.presets, batches, variants, a.steps, a.repeats or (7 if gpu else 3), device,
                 target_s=a.target_seconds or (0.25 if gpu else 0.5), progress=not a.quiet,
                 on_progress=lambda r: write({**r, "environment": env}, Path(a.out), with_plot=False))
    result["environment"] = env
    stem = write(result, Path(a.out), with_plot=not a.no_plot)
    print(markdown(result))
    print(f"wrote {stem}.json, .md" + ("" if a.no_plot else ", .png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
