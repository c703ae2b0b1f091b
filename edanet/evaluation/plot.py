"""Plots people would rather see than read: audio over time above the generated EDA; the
evaluation's event-locked average EDA and its sample traces beside the data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..extras import require
from ..io import atomic_write

__all__ = ["plot_generation", "plot_format", "plot_event_locked", "plot_traces", "plot_population"]


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files, no display), or MissingExtra."""
    matplotlib = require("matplotlib", "plot", "drawing plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_format(path) -> str:
    """The image format for ``path``, from its suffix (png, pdf, svg, jpg, ... as matplotlib
    writes them); ValueError for a suffix it cannot write, MissingExtra without matplotlib."""
    require("matplotlib", "plot", f"writing the plot {path}")
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


def plot_generation(audio, result, path, *, sample_rate=None) -> Path:
    """Waveform envelope (top) and every generated EDA sample with their median (bottom), with
    the acoustic events of a ground-truth ``NAME.json`` beside the audio marked on both."""
    plt = _pyplot()

    from ..features import load_audio

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


#: Colours of the event-locked curves by label (others take the default cycle).
_CURVE_STYLE = {"data": ("black", "-"), "data redrawn": ("0.55", "--"), "model": ("tab:red", "-"),
                "no-audio model": ("tab:blue", "-"), "baseline model": ("tab:blue", "-")}


def plot_event_locked(t, curves: dict, path, *, title: str = "event-locked EDA", rule_latency_s: float | None = 2.0,
                      before_s: float = 2.0, after_s: tuple = (1.0, 7.0)) -> Path:
    """Average EDA around acoustic event onsets: one curve per label of ``curves`` (``label ->
    (mean, ci95)``, µS relative to the ``before_s`` before the event, over times ``t`` in s) with
    its 95% CI band; the baseline and response windows shaded, the onset rule's SCR onset dashed."""
    plt = _pyplot()

    fmt = plot_format(path)
    t = np.asarray(t, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.axvspan(-before_s, 0, color="0.92", lw=0, label=f"baseline ({before_s:g} s before)")
    ax.axvspan(*after_s, color="#fff3d6", lw=0, label=f"response window ({after_s[0]:g}-{after_s[1]:g} s)")
    ax.axvline(0, color="0.3", lw=0.8)
    ax.axhline(0, color="0.3", lw=0.5)
    if rule_latency_s is not None:
        ax.axvline(rule_latency_s, color="tab:green", lw=1, ls=":", label=f"onset rule's SCR ({rule_latency_s:g} s)")
    for label, (mean, ci) in curves.items():
        mean, ci = np.asarray(mean, np.float64), np.asarray(ci, np.float64)
        if mean.size != t.size:
            continue
        color, ls = _CURVE_STYLE.get(label, (None, "-"))
        z = 3 if label == "data" else 2      # the reference on top
        line, = ax.plot(t, mean, color=color, ls=ls, lw=1.8, label=label, zorder=z)
        band = np.where(np.isfinite(ci), ci, 0.0)
        ax.fill_between(t, mean - band, mean + band, color=line.get_color(), alpha=0.18, lw=0)
    ax.set_xlim(t[0] if t.size else -5, t[-1] if t.size else 15)
    ax.set_xlabel("time from acoustic event onset (s)")
    ax.set_ylabel("EDA change (µS)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
    plt.close(fig)
    return Path(path)


#: Event markers of the trace plot by true response probability: (lowest p, colour, label).
_EVENT_CLASSES = ((0.7, "tab:green", "event, p >= 0.7"), (0.2, "tab:orange", "event, 0.2 <= p < 0.7"),
                  (0.0, "0.6", "event, p < 0.2"))


def plot_traces(traces: list, path, *, labels: dict | None = None) -> Path:
    """One panel per recording of ``traces`` (``edanet.evaluate``'s report): the recorded EDA, the
    samples of the model and of a baseline model, and the acoustic events coloured by their true
    probability of eliciting an SCR."""
    plt = _pyplot()

    fmt = plot_format(path)
    labels = labels or {}
    fig, axes = plt.subplots(len(traces), 1, figsize=(11, 2.6 * len(traces)), squeeze=False)
    for ax, tr in zip(axes[:, 0], traces):
        rate = float(tr["rate"])
        for name, color in (("baseline_model", "tab:blue"), ("model", "tab:red")):
            for j, v in enumerate(tr.get(name, [])):
                ax.plot(np.arange(len(v)) / rate, v, color=color, lw=0.8, alpha=0.6,
                        label=f"{labels.get(name, name)} samples" if j == 0 else None)
        data = np.asarray(tr["data"])
        ax.plot(np.arange(len(data)) / rate, data, color="black", lw=1.6, label="data", zorder=3)
        shown = set()
        for time, p in zip(tr["events"], tr["p_response"]):
            lo, color, label = next(c for c in _EVENT_CLASSES if p >= c[0])
            ax.axvline(time, color=color, lw=0.9, alpha=0.8, label=None if label in shown else label, zorder=1)
            shown.add(label)
        ax.set_xlim(0, len(data) / rate)
        ax.set_ylabel("EDA (µS)")
        ax.set_title(tr["name"], fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format=fmt))
    plt.close(fig)
    return Path(path)


def plot_population(levels: tuple, rates: tuple, path) -> Path:
    """The population evaluation's distributions, generated beside recorded: each person's median
    level (log scale) and response rate after strong events, as empirical CDFs. ``levels`` and
    ``rates``: ``(generated, recorded)`` arrays of the per-person figures."""
    plt = _pyplot()
    fmt = plot_format(path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (gen, rec), xlabel, log in ((axes[0], levels, "median skin conductance level (µS)", True),
                                        (axes[1], rates, "response rate after strong events", False)):
        for values, label, color in ((rec, "recorded: {} recordings", "black"), (gen, "generated: {} samples",
                                                                                 "tab:red")):
            v = np.sort(np.asarray(values, float)[np.isfinite(np.asarray(values, float))])
            if v.size:
                ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", color=color, lw=1.8,
                        label=label.format(v.size))
        if log:
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
            ax.set_xscale("log")
            # labels at 1-2-5 only (every minor tick labelled overlaps below 1 µS), as 0.5, not 5e-1
            lo, hi = ax.get_xlim()
            ticks = [m * 10.0 ** e for e in range(-3, 4) for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction at or below")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    fig.suptitle("who the model generates: its people against the recorded cohort", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
    plt.close(fig)
    return Path(path)
