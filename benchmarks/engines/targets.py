"""The GPU speed targets of the fused backends (Triton, CUDA), checked against a benchmark result.

Triton: at batch 1 the persistent kernel at least 3x torch with CUDA graphs (fp32 and bf16), and
at batch 256 at least 40% of the tensor-core peak. CUDA: at batch 1 at least 1.5x the best
Triton variant and within 3x of the floor (``common.floor_seconds``),
and at batch 256 at least 50% of the tensor-core peak.

Each check compares rows of one run (same device, same commit), so no figure from another
machine enters it. A target whose rows were not measured (no GPU, a backend not built) is
reported as "not measured", never as met.
"""
from __future__ import annotations

TRITON = ("triton", "triton_persistent")
LOWP = ("bf16", "fp16")


def _find(rows, preset, batch, label, dtype):
    for r in rows:
        if (r["preset"], r["batch"], r["backend"], r["dtype"]) == (preset, batch, label, dtype):
            return r
    return None


def _ratio_check(rows, preset, batch, label, others, dtype, need, what, backend):
    mine = _find(rows, preset, batch, label, dtype)
    theirs = [r for r in (_find(rows, preset, batch, o, dtype) for o in others) if r]
    if mine is None or not theirs:
        return dict(backend=backend, preset=preset, target=what, measured=None, met=None)
    best = max(theirs, key=lambda r: r["eda_steps_per_s"])
    x = mine["eda_steps_per_s"] / best["eda_steps_per_s"]
    return dict(backend=backend, preset=preset, target=what, measured=f"{x:.2f}x {best['backend']}", met=x >= need)


def _peak_check(rows, preset, batch, labels, need, what, backend):
    cand = [r for r in rows if r["preset"] == preset and r["batch"] == batch and r["backend"] in labels
            and r["dtype"] in LOWP]
    if not cand:
        return dict(backend=backend, preset=preset, target=what, measured=None, met=None)
    best = max(cand, key=lambda r: r["fraction_of_peak"])
    f = best["fraction_of_peak"]
    return dict(backend=backend, preset=preset, target=what,
                measured=f"{100 * f:.1f}% ({best['backend']} {best['dtype']})", met=f >= need)


def evaluate(result: dict) -> list[dict]:
    """One dict per target and preset: backend (triton or cuda), preset, target, measured (text or
    None), met (bool or None)."""
    rows = result["rows"]
    out = []
    # the targets are for the presets as shipped, not for ablations that override their config
    for preset in dict.fromkeys(r["preset"] for r in rows if "@" not in r["preset"]):
        for dt in ("fp32", "bf16"):
            out.append(_ratio_check(rows, preset, 1, "triton_persistent", ["torch+graph"], dt, 3.0,
                                    f"batch 1, {dt}: triton_persistent >= 3x torch+graph", "triton"))
        out.append(_peak_check(rows, preset, 256, TRITON, 0.40, "batch 256: Triton >= 40% of the tensor-core peak", "triton"))
        for dt in ("fp32", "bf16"):
            out.append(_ratio_check(rows, preset, 1, "cuda", TRITON, dt, 1.5,
                                    f"batch 1, {dt}: cuda >= 1.5x the best Triton variant", "cuda"))
            r = _find(rows, preset, 1, "cuda", dt)
            out.append(dict(backend="cuda", preset=preset, target=f"batch 1, {dt}: cuda within 3x of the floor",
                            measured=None if r is None else f"{r['x_floor']:.1f}x floor",
                            met=None if r is None else r["x_floor"] <= 3.0))
        out.append(_peak_check(rows, preset, 256, ("cuda",), 0.50, "batch 256: cuda >= 50% of the tensor-core peak", "cuda"))
    return out


def markdown(checks: list[dict]) -> str:
    lines = ["| backend | preset | target | measured | met |", "|---|---|---|---|---|"]
    for c in checks:
        met = "not measured" if c["met"] is None else ("yes" if c["met"] else "**no**")
        lines.append(f"| {c['backend']} | {c['preset']} | {c['target']} | {c['measured'] or '-'} | {met} |")
    return "\n".join(lines) + "\n"
