"""Plots people would rather see than read: audio over time above the generated EDA."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["plot_generation", "plot_format"]


def plot_format(path) -> str:
    """The image format for ``path``, from its suffix (png, pdf, svg, jpg, ... as matplotlib
    writes them); ValueError for a suffix it cannot write."""
    from matplotlib.figure import Figure
    supported = Figure().canvas.get_supported_filetypes()
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in supported:
        raise ValueError(f"cannot write a plot to {path}: give it one of the suffixes "
                         f"{', '.join('.' + s for s in sorted(supported))} (e.g. .png)")
    return fmt


def _ground_truth_events(audio) -> list[dict]:
    if not isinstance(audio, (str, Path)):
        return []
    gt = Path(audio).with_suffix(".json")
    if not gt.is_file():
        return []
    try:
        return list(json.loads(gt.read_text()).get("events", []))
    except (ValueError, AttributeError):
        return []


def plot_generation(audio, result, path, *, model=None, sample_rate=None) -> Path:
    """Waveform envelope (top) and every generated EDA sample with their median (bottom), with
    the acoustic events of a ground-truth ``NAME.json`` beside the audio marked on both."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .audio import load_audio

    fmt = plot_format(path)
    rate = 4000
    wav = load_audio(audio, sample_rate, target_rate=rate, channels=1)[0]
    hop = max(1, rate // 50)
    n = len(wav) // hop
    env = np.abs(wav[: n * hop]).reshape(n, hop).max(axis=1) if n else np.zeros(0)
    t_env = np.arange(n) * hop / rate
    fig, (ax_a, ax_e) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    ax_a.fill_between(t_env, -env, env, color="0.35", lw=0)
    ax_a.set_ylabel("audio")
    ax_a.set_yticks([])
    t = result.times
    for i, v in enumerate(result.values):
        ax_e.plot(t, v, lw=0.7, alpha=0.35, color="tab:blue", label="samples" if i == 0 else None)
    ax_e.plot(t, result.median, lw=1.8, color="tab:red", label="median")
    for k, ev in enumerate(_ground_truth_events(audio)):
        for ax in (ax_a, ax_e):
            ax.axvline(float(ev["time"]), color="tab:green", lw=0.8, alpha=0.7,
                       label="acoustic event" if (k == 0 and ax is ax_e) else None)
    ax_e.set_xlabel("time (s)")
    ax_e.set_ylabel("EDA (µS)")
    ax_e.legend(loc="upper right", fontsize=8)
    ax_a.set_title(f"generated EDA ({result.values.shape[0]} sample(s), backend {result.backend}, seed {result.seed})")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
    plt.close(fig)
    return Path(path)
