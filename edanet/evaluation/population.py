"""Evaluation of a population: does the model generate people, as many and as different as a
cohort's, and does a prime tell it who to be?

On a multi-subject folder (``edanet synth --subjects K``: every subject hears every clip), each
recording (a subject on a clip) and each generated sample (a person the model draws for a clip)
is reduced to per-person figures by the same code:

- ``level``: the median skin conductance over the clip (µS);
- ``response rate``: the fraction of the clip's strong events (response probability >= 0.7 for
  the population's typical person) followed by an SCR 0.5-4.5 s later (``metrics.responded``);
- ``responsiveness``: the fraction of all the clip's events (weak ones too) followed by an SCR: it
  ranks responders, whose rate after strong events is near 1 for most;
- ``lability``: non-specific SCRs a minute (SCRs starting outside every event's response window);
- ``non-responder``: answering fewer than 20% of the strong events.

The population figures compare generated with recorded: the level and response-rate
quantiles and their Wasserstein distances, the non-responder fraction, the lability-level and
lability-response rank correlations, and the split-half consistency (the correlation between a
person's response rate in the first and the second half of a clip). With ``prime_s``, each
recording's first ``prime_s`` seconds prime a generation of the rest, and the generated
response rate and level over the rest are compared with the recorded ones per subject (each
subject's recordings averaged) and per recording (Spearman correlation, relative level error),
against unprimed generation and against the data's own split-half (how well a person's first
part predicts their rest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import metrics

__all__ = ["PersonFigures", "person_figures", "population_summary", "primed_summary", "STRONG_P",
           "NON_RESPONDER_RATE", "QUANTILES"]

#: Events at least this likely to respond (for the population's typical person) are "strong".
STRONG_P = 0.7
#: A person answering fewer than this fraction of the strong events is a non-responder.
NON_RESPONDER_RATE = 0.2
QUANTILES = (0.1, 0.5, 0.9)


@dataclass
class PersonFigures:
    """Per-person figures of S rows (samples or recordings) over steps ``[a, b)`` of one clip."""
    level: np.ndarray            # (S,) median µS
    rate: np.ndarray             # (S,) response rate after strong events (NaN: none in the span)
    rate_halves: np.ndarray      # (S, 2) the same in the span's first and second halves
    responsiveness: np.ndarray   # (S,) response rate after every event, weak ones included
    responsiveness_halves: np.ndarray  # (S, 2) the same in the span's first and second halves
    lability: np.ndarray         # (S,) non-specific SCRs a minute


def person_figures(values: np.ndarray, rate_hz: float, event_times: np.ndarray, strong: np.ndarray,
                   span: tuple[int, int] | None = None) -> PersonFigures:
    """:class:`PersonFigures` of EDA ``values`` ``(S, N)`` µS at ``rate_hz`` over steps ``span``
    (default all), for events at ``event_times`` (s, from the clip's start) of which ``strong``
    (bool) are the strong ones."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    a, b = span if span is not None else (0, v.shape[1])
    part = v[:, a:b]
    t0, t1 = a / rate_hz, b / rate_hz
    times = np.asarray(event_times, dtype=np.float64) - t0          # event times within the span's clock
    scrs = metrics.find_scrs_rows(part, rate_hz)
    onsets = [s["onset"] for s in scrs]
    inside = (times >= 0) & (times + metrics.RESPONSE_WINDOW_S[1] <= t1 - t0)
    strong_in = np.asarray(strong, bool) & inside
    resp = metrics.responded(onsets, times[strong_in]) if strong_in.any() else np.zeros((v.shape[0], 0), bool)
    resp_all = metrics.responded(onsets, times[inside]) if inside.any() else np.zeros((v.shape[0], 0), bool)
    every = resp_all.mean(axis=1) if resp_all.shape[1] else np.full(v.shape[0], np.nan)
    half = (t1 - t0) / 2
    st = times[strong_in]
    halves, halves_all = np.full((v.shape[0], 2), np.nan), np.full((v.shape[0], 2), np.nan)
    for h, sel in enumerate((st < half, st >= half)):
        if sel.any():
            halves[:, h] = resp[:, sel].mean(axis=1)
    at = times[inside]
    for h, sel in enumerate((at < half, at >= half)):
        if sel.any():
            halves_all[:, h] = resp_all[:, sel].mean(axis=1)
    # an SCR within any event's response window is specific; the rest are non-specific
    minutes = (t1 - t0) / 60.0
    lab = np.array([_nonspecific(o, times) for o in onsets], dtype=np.float64) / max(minutes, 1e-9)
    return PersonFigures(level=np.median(part, axis=1), rate=resp.mean(axis=1) if resp.shape[1] else
                         np.full(v.shape[0], np.nan), rate_halves=halves, responsiveness=every,
                         responsiveness_halves=halves_all, lability=lab)


def _nonspecific(onsets: np.ndarray, event_times: np.ndarray) -> int:
    """How many of ``onsets`` fall outside every event's response window."""
    on = np.asarray(onsets, dtype=np.float64)
    if on.size == 0:
        return 0
    if event_times.size == 0:
        return int(on.size)
    d = on[:, None] - event_times[None, :]
    lo, hi = metrics.RESPONSE_WINDOW_S
    return int((~((d >= lo) & (d <= hi)).any(axis=1)).sum())


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def _pearson(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _quantiles(x) -> list[float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return [float(np.quantile(x, q)) for q in QUANTILES] if x.size else [math.nan] * len(QUANTILES)


def _side(figs: list[PersonFigures]) -> dict:
    level = np.concatenate([f.level for f in figs])
    rate = np.concatenate([f.rate for f in figs])
    halves = np.concatenate([f.rate_halves for f in figs])
    halves_all = np.concatenate([f.responsiveness_halves for f in figs])
    lab = np.concatenate([f.lability for f in figs])
    return {"persons": int(level.size), "level_quantiles_us": _quantiles(level),
            "rate_quantiles": _quantiles(rate),
            "non_responder_fraction": float(np.mean(rate[np.isfinite(rate)] < NON_RESPONDER_RATE))
            if np.isfinite(rate).any() else math.nan,
            "split_half_consistency": _pearson(halves[:, 0], halves[:, 1]),
            "split_half_responsiveness": _pearson(halves_all[:, 0], halves_all[:, 1]),
            "lability_level_spearman": _spearman(lab, level), "lability_rate_spearman": _spearman(lab, rate),
            "lability_median_per_min": float(np.median(lab)) if lab.size else math.nan,
            "_level": level, "_rate": rate}


def population_summary(generated: list[PersonFigures], recorded: list[PersonFigures]) -> dict:
    """Generated against recorded persons: each side's figures, the Wasserstein distances of the
    level (µS) and response-rate distributions, and the ratios the goals are stated in."""
    g, d = _side(generated), _side(recorded)
    out = {"generated": {k: v for k, v in g.items() if not k.startswith("_")},
           "recorded": {k: v for k, v in d.items() if not k.startswith("_")},
           "level_wasserstein_us": metrics.wasserstein(g["_level"], d["_level"]),
           "rate_wasserstein": metrics.wasserstein(g["_rate"], d["_rate"])}
    out["level_quantile_ratios"] = [gq / dq if dq else math.nan for gq, dq in
                                    zip(g["level_quantiles_us"], d["level_quantiles_us"])]
    out["non_responder_difference"] = g["non_responder_fraction"] - d["non_responder_fraction"]
    out["split_half_ratio"] = g["split_half_consistency"] / d["split_half_consistency"] \
        if d["split_half_consistency"] else math.nan
    out["split_half_responsiveness_ratio"] = g["split_half_responsiveness"] / d["split_half_responsiveness"] \
        if d["split_half_responsiveness"] else math.nan
    out["_levels"] = (g["_level"], d["_level"])
    out["_rates"] = (g["_rate"], d["_rate"])
    return out


def primed_summary(primed: list[PersonFigures], unprimed: list[PersonFigures], recorded_rest: list[PersonFigures],
                   recorded_first: list[PersonFigures], subjects: list[str] | None = None) -> dict:
    """The generated (mean over its samples) response rate and level over the rest of each clip
    after a prime, without one, and the recorded; the Spearman correlations of the rates and
    levels, the median relative level error, and the data's own first-part/rest correlation.
    Per subject (``subjects``: the subject of each recording; its recordings' figures averaged:
    who a person is shows over several clips) and per recording."""
    def mean_rows(figs, attr):
        return np.array([np.nanmean(getattr(f, attr)) if np.isfinite(getattr(f, attr)).any() else np.nan
                         for f in figs])

    def figures(key):
        rec_rate, rec_level = key(mean_rows(recorded_rest, "rate")), key(mean_rows(recorded_rest, "level"))
        rec_resp = key(mean_rows(recorded_rest, "responsiveness"))
        out = {}
        for name, figs in (("primed", primed), ("unprimed", unprimed)):
            rate, level = key(mean_rows(figs, "rate")), key(mean_rows(figs, "level"))
            err = np.abs(level - rec_level) / rec_level
            out[name] = {"rate_spearman": _spearman(rate, rec_rate),
                         "responsiveness_spearman": _spearman(key(mean_rows(figs, "responsiveness")), rec_resp),
                         "level_error_median": float(np.nanmedian(err)) if np.isfinite(err).any() else math.nan,
                         "level_spearman": _spearman(level, rec_level)}
        out["data_first_vs_rest"] = {"rate_spearman": _spearman(key(mean_rows(recorded_first, "rate")), rec_rate),
                                     "responsiveness_spearman": _spearman(
                                         key(mean_rows(recorded_first, "responsiveness")), rec_resp),
                                     "level_spearman": _spearman(key(mean_rows(recorded_first, "level")), rec_level)}
        return out

    out = {"recordings": len(recorded_rest), "per_recording": figures(lambda x: x)}
    if subjects is not None:
        names = sorted(set(subjects))
        index = np.array([names.index(s) for s in subjects])

        def per_subject(x):
            return np.array([np.nanmean(x[index == k]) if np.isfinite(x[index == k]).any() else np.nan
                             for k in range(len(names))])
        out["subjects"] = len(names)
        out["per_subject"] = figures(per_subject)
    return out
