"""The evaluation report (``edanet.evaluate``): every number (JSON), a markdown page that says in
one sentence what each figure means, and the event-locked plot. Written atomically."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..io import atomic_write
from . import metrics
from .plot import plot_event_locked, plot_traces

#: The systems scored, in the report's column order (``edanet.evaluation.evaluate`` says what each is).
SYSTEMS = ("model", "baseline_model", "onset_rule", "random_onsets", "data_redrawn", "data")

__all__ = ["build_report", "write_report", "render_markdown", "LABELS"]

#: Column names of the systems (:data:`SYSTEMS`).
LABELS = {"model": "model", "baseline_model": "baseline model", "onset_rule": "onset rule",
          "random_onsets": "random onsets", "data_redrawn": "data redrawn", "data": "data"}


def over_seeds(summaries: list):
    """Mean and sd (ddof 1; NaN for one seed) over seeds of every number in a list of equally
    shaped summaries: the same nesting, with ``{"mean": ..., "sd": ...}`` at the leaves."""
    first = summaries[0]
    if isinstance(first, dict):
        return {k: over_seeds([s[k] for s in summaries]) for k in first}
    if isinstance(first, list):
        return [over_seeds([s[j] for s in summaries]) for j in range(len(first))]
    x = np.asarray(summaries, float)
    ok = x[np.isfinite(x)]
    if ok.size < 2:
        return {"mean": float(ok.mean()) if ok.size else math.nan, "sd": math.nan}
    # a figure that does not depend on the seed has sd 0, not the rounding noise of its mean
    return {"mean": float(ok.mean()), "sd": float(ok.std(ddof=1)) if np.ptp(ok) > 0 else 0.0}



def _labels(settings: dict) -> dict:
    labels = dict(LABELS)
    base = settings.get("baseline_model")
    if base and not base["audio_input"]:
        labels["baseline_model"] = "no-audio model"
    return labels


def _event_locked(tallies: list, rate: float, span: tuple) -> dict:
    """Event-locked average of each system with EDA: per event the mean over samples and seeds,
    then mean and 95% CI over events at every time point."""
    curves = {}
    for name in SYSTEMS:
        if name not in tallies[0] or not tallies[0][name].has_eda:
            continue
        stack = np.stack([t[name].events("curves") for t in tallies])      # (seeds, E, T)
        with warnings.catch_warnings():       # events whose span leaves the recording are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_event = np.nanmean(stack, axis=0)
        per_event = per_event[np.isfinite(per_event).all(axis=1)]
        m, ci = metrics.mean_ci_columns(per_event)
        curves[name] = {"mean": m.tolist(), "ci95": ci.tolist(), "events": int(per_event.shape[0])}
    n = len(next(iter(curves.values()))["mean"]) if curves else 0
    return {"t": (span[0] + np.arange(n) / rate).tolist(), **curves}


def build_report(tallies: list, nll: dict, per_recording: list, *, recordings: int, settings: dict) -> dict:
    """The report dict: per system the figures of each seed (``per_seed``) and their mean and sd
    over seeds (``figures``), the likelihoods, the calibration bins, the event-locked curves,
    and the markdown (``markdown``)."""
    # without ground truth only the likelihood can be scored
    present = [s for s in SYSTEMS if s in tallies[0]] if per_recording else []
    per_seed = {s: [t[s].summary(t["data"]) for t in tallies] for s in present}
    figures = {s: over_seeds(v) for s, v in per_seed.items()}
    data = tallies[0]["data"]
    bins = [{k: b[k] for k in ("lo", "hi", "events", "p_mean")}
            for b in metrics.calibration(data.events("rate"), data.events("p"))] if per_recording else []

    def f1(s):
        return figures[s]["f1"]["f1"]["mean"] if s in figures else math.nan

    report = {
        "data": settings["data"], "recordings": recordings, "scored_recordings": len(per_recording),
        "events": int(sum(r["events"] for r in per_recording)),
        "true_onsets": int(sum(r["true_onsets"] for r in per_recording)),
        # the headline figures, under the names earlier reports used
        "nll_nats_per_step": nll["model"]["nats_per_step"], "nll_bits_per_step": nll["model"]["bits_per_step"],
        "nll_nats_per_step_us": nll["model"]["nats_per_step_us"],
        "f1_model": f1("model"), "f1_audio_agnostic_baseline": f1("random_onsets"), "f1_ceiling": f1("data_redrawn"),
        **{k: settings[k] for k in ("num_samples", "seeds", "backend", "temperature", "tolerance_s")},
        "settings": settings, "likelihood": nll, "calibration_bins": bins, "figures": figures,
        "event_locked": _event_locked(tallies, settings["eda_sample_rate"], settings["span_s"])
        if per_recording else {"t": []},
        "per_seed": per_seed, "per_recording": per_recording,
    }
    try:
        import torch
        report["torch"] = torch.__version__
    except ImportError:          # pragma: no cover - torch is a dependency
        pass
    report["markdown"] = render_markdown(report)
    return report


# -- markdown ---------------------------------------------------------------------------------
def _num(x, digits: int) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}f}"


def _cell(leaf, digits: int = 3) -> str:
    """``mean ± sd`` over seeds (the sd left out where it is 0 or undefined)."""
    if leaf is None:
        return ""
    m, sd = leaf["mean"], leaf["sd"]
    if not math.isfinite(m):
        return "-"
    return _num(m, digits) + (f" ± {_num(sd, digits)}" if math.isfinite(sd) and sd > 0 else "")


def _get(fig: dict, path: str):
    for part in path.split("."):
        if fig is None:
            return None
        fig = fig.get(part) if isinstance(fig, dict) else None
    return fig


def _table(report: dict, rows: list, systems: list) -> list[str]:
    """Rows ``(label, path in figures, digits)``; a column per system that has the figure."""
    figs, labels = report["figures"], _labels(report["settings"])
    cols = [s for s in systems if s in figs and any(_get(figs[s], p) is not None for _, p, _ in rows)]
    out = ["| | " + " | ".join(labels[s] for s in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, path, digits in rows:
        out.append(f"| {label} | " + " | ".join(_cell(_get(figs[s], path), digits) for s in cols) + " |")
    return out


def _header(report: dict) -> list[str]:
    st = report["settings"]
    model, base = st["model"], st["baseline_model"]
    lines = ["# edanet evaluate", "",
             f"Data: {report['recordings']} recordings in {st['data']}, {report['scored_recordings']} with ground "
             f"truth ({report['events']} acoustic events, {report['true_onsets']} stimulus-locked SCRs). Model: "
             f"{model['source']} ({model['eda_representation']}); {st['num_samples']} samples per recording "
             f"and seed, temperature {st['temperature']:g}, backend {st['backend']}.",
             f"Figures are mean ± sd over {st['seeds']} evaluation seeds "
             f"({st['seed']}..{st['seed'] + st['seeds'] - 1}; a seed is another set of sampling uniforms and "
             f"data redraws); data and onset-rule figures do not depend on the seed."]
    if model["eda_representation"] == "normalized":
        lines.append("This legacy 'normalized' model gets each recording's own µS range (min and max of the "
                     "data): its µS scale is given, not generated.")
    lines += ["", "Baselines, scored by the same code: **onset rule** (an SCR 2 s after every acoustic onset "
              "louder than -30 dBFS; onsets only, no EDA), **random onsets** (as many SCR onsets as the model "
              f"shows, at uniformly random times, {st['random_draws']} draws per sample), **data redrawn** (the "
              f"ground-truth generator run again on the same events with {st['redraws']} other seeds per recording, "
              "the data's own variability: what a perfect generative model scores)"
              + (f", **{_labels(st)['baseline_model']}** ({base['source']})" if base else "") + "."]
    return lines


def _summary(report: dict) -> list[str]:
    fig = report["figures"]
    ratio = _get(fig, "model.response.ratio_to_data")
    return ["", "## Summary", "", "| metric | value |", "|---|---|",
            f"| NLL (nats / step) | {_num(report['nll_nats_per_step'], 4)} |",
            f"| NLL (bits / step) | {_num(report['nll_bits_per_step'], 4)} |",
            f"| NLL of the µS value (nats / step) | {_num(report['nll_nats_per_step_us'], 4)} |",
            f"| event-locked response, model / data | {_cell(ratio, 2)} |",
            f"| SCR F1, model (+-{report['tolerance_s']:g} s) | {_cell(_get(fig, 'model.f1.f1'))} |",
            f"| SCR F1, random-onset baseline | {_cell(_get(fig, 'random_onsets.f1.f1'))} |",
            f"| SCR F1, data redrawn (ceiling) | {_cell(_get(fig, 'data_redrawn.f1.f1'))} |"]


def _likelihood(report: dict) -> list[str]:
    labels = _labels(report["settings"])
    lik = report["likelihood"]
    names = [s for s in ("model", "baseline_model") if s in lik]
    rows = [("NLL (nats / step)", "nats_per_step", 4), ("NLL (bits / step)", "bits_per_step", 4),
            ("NLL of the µS value (nats / step)", "nats_per_step_us", 4), ("scored steps", "steps", 0)]
    out = ["", "## Likelihood", "", "| | " + " | ".join(labels[s] for s in names) + " |",
           "|---" * (len(names) + 1) + "|"]
    out += [f"| {lab} | " + " | ".join(_num(lik[s][k], d) for s in names) + " |" for lab, k, d in rows]
    legacy = [s for s in names if report["settings"][s]["eda_representation"] == "normalized"]
    note = (" For a legacy 'normalized' model the widths come from each recording's own µS range." if legacy else "")
    return out + ["", "- *NLL per step*: the mean negative log-probability of the true next EDA class, "
                  "teacher-forced over every step; only comparable between models with the same classes.",
                  "- *NLL of the µS value*: the NLL per step plus the mean log width (µS) of the true class, "
                  "i.e. the NLL of a density over µS when each class spreads its probability evenly over its "
                  "bin; comparable across output representations and class counts (lower is better)." + note]


def _event_section(report: dict, png_name: str | None) -> list[str]:
    n = report["event_locked"].get("data", {}).get("events", 0)
    out = ["", "## Event-locked response", ""]
    if png_name:
        out += [f"![event-locked average]({png_name})", ""]
    out += _table(report, [("response (µS)", "response.us", 3), ("95% CI over events (±µS)", "response.ci95", 3),
                           ("ratio to data", "response.ratio_to_data", 2)], list(SYSTEMS))
    return out + ["", "- *Response*: mean EDA 1-7 s after an acoustic event minus the mean over the 2 s before "
                  "it, averaged over samples, then over events (with its 95% CI over events): how much the "
                  "EDA rises after a sound.",
                  f"- *Ratio to data*: the response over the data's; 1 is as responsive as the data. The plot "
                  f"shows the average EDA around the {n} events whose -5..15 s lie inside their recording, "
                  "relative to the 2 s before the event, with 95% CI bands."]


def _calibration_section(report: dict) -> list[str]:
    figs, labels = report["figures"], _labels(report["settings"])
    cols = [s for s in SYSTEMS if s in figs]
    out = ["", "## Response rate by true response probability", "",
           "| true p | events | mean p | " + " | ".join(labels[s] for s in cols) + " |",
           "|---" * (len(cols) + 3) + "|"]
    for j, b in enumerate(report["calibration_bins"]):
        close = "]" if j == len(report["calibration_bins"]) - 1 else ")"
        out.append(f"| [{b['lo']:g}, {b['hi']:g}{close} | {b['events']} | {_num(b['p_mean'], 2)} | "
                   + " | ".join(_cell(figs[s]["rate"]["bins"][j], 2) for s in cols) + " |")
    out.append(f"| all | {report['events']} | | " + " | ".join(_cell(figs[s]["rate"]["all"], 2) for s in cols) + " |")
    return out + ["", "- Share of events followed by an SCR (onset 0.5-4.5 s after the event, at least "
                  f"{metrics.MIN_SCR_US:g} µS), by the event's true probability of eliciting one; the data sit "
                  "near the mean p (plus spontaneous SCRs that fall in the window), and a system that hears "
                  "as the data do follows the data's column."]


def _scr_section(report: dict) -> list[str]:
    rows = [("SCRs per minute", "scrs.per_minute", 2),
            ("amplitude median (µS)", "scrs.amplitude_median", 3),
            ("amplitude W1 to data (µS)", "scrs.amplitude_w1", 3),
            ("rise median (s)", "scrs.rise_median", 2), ("rise W1 to data (s)", "scrs.rise_w1", 2),
            ("half-recovery median (s)", "scrs.half_recovery_median", 2),
            ("half-recovery W1 to data (s)", "scrs.half_recovery_w1", 2),
            ("share with a half-recovery", "scrs.recovered_share", 2)]
    return ["", "## SCRs", ""] + _table(report, rows, list(SYSTEMS)) + [
        "", "- SCRs as NeuroKit2 finds them in the high-passed (0.05 Hz) EDA, at least "
        f"{metrics.MIN_SCR_US:g} µS high: how often they come, their median amplitude, rise time "
        "(onset to peak) and half-recovery time (peak to half the amplitude, where it recovers that far "
        "before the next SCR).",
        "- *W1 to data*: the 1-Wasserstein distance between the system's SCR values (pooled over "
        "recordings and samples) and the data's, in their unit; 0 is the same distribution, and the data "
        "redrawn column is the floor that finite samples set."]


def _texture_section(report: dict) -> list[str]:
    rows = [("distinct values per minute", "texture.distinct_per_minute", 1),
            ("flat-step fraction", "texture.flat_fraction", 3), ("largest jump (µS)", "texture.max_jump_us", 3),
            ("median peak-to-peak (µS)", "texture.peak_to_peak_us", 3)]
    return ["", "## Texture", ""] + _table(report, rows, list(SYSTEMS)) + [
        "", "- Does it look like skin conductance: distinct values per minute (a few coarse classes show "
        "few), the share of steps with no change at all, the largest change between two samples, and the "
        "median range a recording covers."]


def _f1_section(report: dict) -> list[str]:
    rows = [("F1", "f1.f1", 3), ("precision", "f1.precision", 3), ("recall", "f1.recall", 3),
            ("samples scored", "f1.rows_scored", 0), ("samples excluded", "f1.rows_excluded", 0)]
    return ["", f"## SCR F1 (+-{report['tolerance_s']:g} s)", ""] + _table(report, rows, list(SYSTEMS)) + [
        "", "- *F1*: SCR onsets found in each sample matched one-to-one to the true stimulus-locked onsets "
        f"within ±{report['tolerance_s']:g} s, mean over samples; precision and recall pooled over all of them.",
        "- *Excluded*: samples with no SCR on a recording with no stimulus-locked SCR: nothing to score, "
        "so they count neither as F1 = 1 nor as 0.",
        "- The data redrawn column is what a perfect generative model scores (it draws which events respond, "
        "as the data do); the onset rule, which predicts an SCR after every loud onset, can score above it."]


def _traces_section(report: dict, png_name: str | None) -> list[str]:
    if not png_name:
        return []
    return ["", "## Sample traces", "", f"![data and samples]({png_name})", "",
            f"- The first {len(report['traces'])} recordings: the recorded EDA (black) and the first samples of "
            "the model (and of the baseline model, if any) from the first evaluation seed, generated from the "
            "model's default start level as a user would; acoustic events are marked by their true probability of "
            "eliciting an SCR."]


def render_markdown(report: dict, png_name: str | None = None, traces_name: str | None = None) -> str:
    """The markdown page of a report."""
    parts = _header(report) + _summary(report) + _likelihood(report)
    if report["figures"]:
        parts += (_event_section(report, png_name) + _traces_section(report, traces_name)
                  + _calibration_section(report) + _scr_section(report) + _texture_section(report)
                  + _f1_section(report))
    else:
        parts += ["", "No recording has ground truth (NAME.json beside the pair, as `edanet synth` writes "
                  "it): only the likelihood is scored."]
    return "\n".join(parts) + "\n"


# -- files ------------------------------------------------------------------------------------
def _strict(x):
    """JSON has no NaN: non-finite numbers become null."""
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_report(report: dict, out) -> dict:
    """Write ``OUT.md``, ``OUT.json``, ``OUT_event_locked.png`` and ``OUT_traces.png`` (each
    atomically); the markdown links the plots. Returns the paths."""
    out = str(out)
    paths = {"md": Path(f"{out}.md"), "json": Path(f"{out}.json"), "png": Path(f"{out}_event_locked.png"),
             "traces": Path(f"{out}_traces.png")}
    if report.get("traces"):
        plot_traces(report["traces"], paths["traces"], labels=_labels(report["settings"]))
    else:
        del paths["traces"]
    labels = _labels(report["settings"])
    el = report["event_locked"]
    curves = {labels[s]: (np.asarray(el[s]["mean"]), np.asarray(el[s]["ci95"])) for s in el if s != "t"}
    if curves:
        plot_event_locked(np.asarray(el["t"]), curves, paths["png"],
                          title=f"event-locked EDA ({el.get('data', {}).get('events', 0)} events, "
                                f"{report['settings']['seeds']} seed(s))")
    else:
        del paths["png"]
    report["markdown"] = render_markdown(report, paths["png"].name if "png" in paths else None,
                                         paths["traces"].name if "traces" in paths else None)
    atomic_write(paths["json"], json.dumps(_strict(report), indent=1))
    atomic_write(paths["md"], report["markdown"])
    return paths
