"""What generated EDA is measured by, against recorded EDA of the same audio (numpy in, numbers out).

Every function takes EDA in µS as ``(S, N)`` arrays (S samples or recordings of N steps at
``rate`` Hz; a 1-D array is one row) and event times in seconds, so the model, the data and
any baseline are scored by the same code.

- :func:`texture`: does it look like skin conductance at all (distinct values, flat steps,
  the largest step, the range a clip covers)?
- :func:`event_locked`: how much EDA rises after a sound (mean 1-7 s after minus 2 s before).
- :func:`responded`: whether an SCR starts 0.5-4.5 s after a sound (SCRs found by
  :func:`find_scrs`, at least ``MIN_SCR_US`` high), for the response rate by the event's true
  response probability.
- :func:`find_scrs`: SCRs (onset, amplitude, rise, half-recovery) as NeuroKit2 finds them in
  the high-passed phasic component (its algorithm in numpy: the same numbers, far faster).
- :func:`match_f1`: onsets matched one-to-one within a tolerance.
- :func:`calibration`: response rate by the event's true response probability.
- :func:`nll_per_us`: a class NLL turned into the NLL of the µS value (comparable across
  output representations).
- :func:`mean_ci`, :func:`wasserstein`: summaries.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["MIN_SCR_US", "RESPONSE_WINDOW_S", "P_BINS", "texture", "event_locked", "event_locked_average",
           "phasic", "find_scrs", "find_scrs_rows", "responded", "match_f1", "mean_ci", "mean_ci_columns",
           "calibration", "nll_per_us", "wasserstein", "acoustic_onset_rule"]

#: An SCR counts when its amplitude (onset to peak of the phasic component) reaches this (µS):
#: the usual minimum in EDA scoring, about 5x the synthetic data's sensor noise.
MIN_SCR_US = 0.05
#: An SCR "follows" a sound when it starts this many seconds after it (latency 1-3 s, +-0.5 s).
RESPONSE_WINDOW_S = (0.5, 4.5)
#: Event-locked response: mean EDA over ``AFTER_S`` after the event minus the mean over
#: ``BEFORE_S`` before it.
BEFORE_S = 2.0
AFTER_S = (1.0, 7.0)


def _rows(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2:
        raise ValueError(f"EDA must be (samples, steps) or (steps,), got shape {v.shape}")
    return v


def texture(values, rate: float) -> dict:
    """Texture of EDA rows ``(S, N)``: ``distinct_per_minute`` (distinct values in a row, per
    minute, mean over rows), ``flat_fraction`` (steps with no change at all), ``max_jump_us``
    (the largest change between two samples), ``peak_to_peak_us`` (median over rows)."""
    v = _rows(values)
    minutes = v.shape[1] / rate / 60.0
    d = np.abs(np.diff(v, axis=1))
    return {"distinct_per_minute": float(np.mean([np.unique(r).size for r in v]) / minutes),
            "flat_fraction": float(np.mean(d == 0)) if d.size else float("nan"),
            "max_jump_us": float(d.max()) if d.size else 0.0,
            "peak_to_peak_us": float(np.median(np.ptp(v, axis=1)))}


def event_locked(values, rate: float, times, before: float = BEFORE_S, after: tuple = AFTER_S) -> np.ndarray:
    """Response size ``(S, E)`` of each row to each event: mean EDA over ``[t + after[0], t +
    after[1])`` minus the mean over ``[t - before, t)``; NaN where a window leaves the row."""
    v = _rows(values)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    out = np.full((v.shape[0], times.size), np.nan)
    for k, t in enumerate(times):
        a, b = int(math.ceil((t - before) * rate)), int(math.ceil(t * rate))
        c, d = int(math.ceil((t + after[0]) * rate)), int(math.ceil((t + after[1]) * rate))
        if a >= 0 and d <= v.shape[1] and b > a and d > c:
            out[:, k] = v[:, c:d].mean(axis=1) - v[:, a:b].mean(axis=1)
    return out


def event_locked_average(values, rate: float, times, span: tuple = (-5.0, 15.0)) -> tuple[np.ndarray, np.ndarray]:
    """``(t, curves)``: EDA around each event relative to its mean over the ``BEFORE_S`` before
    it, averaged over the rows: ``curves`` is ``(E, len(t))``, a row of NaN for an event whose
    span (or baseline) leaves the recording. ``t`` runs over ``[span[0], span[1])`` s."""
    v = _rows(values)
    lo, hi = int(round(span[0] * rate)), int(round(span[1] * rate))
    nb = max(1, int(round(BEFORE_S * rate)))
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    curves = np.full((times.size, hi - lo), np.nan)
    for k, t in enumerate(times):
        j = int(math.ceil(t * rate))
        if j + lo >= 0 and j + hi <= v.shape[1] and j - nb >= 0:
            seg = v[:, j + lo:j + hi] - v[:, j - nb:j].mean(axis=1, keepdims=True)
            curves[k] = seg.mean(axis=0)
    return np.arange(lo, hi) / rate, curves


#: NeuroKit2's ``eda_phasic(method="highpass")``: a 2nd-order Butterworth high-pass at this
#: cutoff, run forward and backward (``sosfiltfilt``).
HIGHPASS_HZ = 0.05
#: NeuroKit2's ``eda_findpeaks(method="neurokit")`` keeps peaks whose prominence is at least this
#: fraction of the largest one; this module asks it for all of them (the µS floor decides).
_NK_RELATIVE_MIN = 1e-6
_EMPTY_KEYS = ("onset", "amplitude", "rise", "half_recovery")


def phasic(values, rate: float) -> np.ndarray:
    """The phasic component ``(S, N)`` of EDA rows, exactly as NeuroKit2's ``eda_phasic(x,
    sampling_rate, method="highpass")`` computes it for each row (one batched filter call)."""
    from scipy.signal import butter, sosfiltfilt
    v = _rows(values)
    sos = butter(2, HIGHPASS_HZ, btype="highpass", output="sos", fs=rate)
    return sosfiltfilt(sos, v, axis=1)


def _half_recovery(p: np.ndarray, peaks: np.ndarray, onsets: np.ndarray, amp: np.ndarray,
                   rate: float) -> np.ndarray:
    """Half-recovery time (s) of each peak as NeuroKit2's ``eda_peaks`` defines it: in the
    stretch from the peak to the next peak, cut at that stretch's minimum, the first sample
    at the value nearest below onset + amplitude / 2; NaN when nothing lies below it (or only
    the last sample of the cut stretch does: NeuroKit2 asks for the minimum to lie below)."""
    out = np.full(peaks.size, np.nan)
    for i, pk in enumerate(peaks):
        seg = p[pk: peaks[i + 1]] if i + 1 < peaks.size else p[pk:]
        seg = seg[: int(np.argmin(seg))] if seg.size else seg
        below = seg[seg <= p[onsets[i]] + 0.5 * amp[i]]
        if below.size and seg.min() < below.max():
            out[i] = int(np.flatnonzero(seg == below.max())[0]) / rate
    return out


def _scrs_of_phasic(p: np.ndarray, rate: float, min_amplitude_us: float) -> dict:
    """NeuroKit2's ``eda_peaks(p, method="neurokit")`` on one phasic row, in numpy (NeuroKit2
    looks up every onset and recovery through pandas, a hundred times slower): peaks are the
    local maxima; an SCR's onset is the last local minimum before its peak (peaks with none are
    dropped); amplitude = phasic at the peak minus at the onset; rise = peak - onset."""
    from scipy.signal import find_peaks, peak_prominences
    peaks = find_peaks(p)[0]
    if peaks.size == 0:
        return {k: np.zeros(0) for k in _EMPTY_KEYS}
    prom = peak_prominences(p, peaks)[0]
    if prom.max() > 0:
        peaks = peaks[prom / prom.max() >= _NK_RELATIVE_MIN]
    troughs = find_peaks(-p)[0]
    k = np.searchsorted(troughs, peaks, side="left") - 1      # the last trough strictly before
    peaks, onsets = peaks[k >= 0], troughs[k[k >= 0]]
    amp = p[peaks] - p[onsets]
    # Small SCRs are dropped before the recovery search, so that a noise ripple after a
    # response does not end its recovery stretch (NeuroKit2 keeps every ripple as a peak).
    ok = amp >= min_amplitude_us
    peaks, onsets, amp = peaks[ok], onsets[ok], amp[ok]
    return {"onset": onsets / rate, "amplitude": amp, "rise": (peaks - onsets) / rate,
            "half_recovery": _half_recovery(p, peaks, onsets, amp, rate)}


def find_scrs_rows(values, rate: float, min_amplitude_us: float = MIN_SCR_US) -> list[dict]:
    """:func:`find_scrs` of every row of ``values`` ``(S, N)`` (the high-pass in one call)."""
    v = _rows(values)
    if v.shape[1] < int(8 * rate):        # too short to high-pass at 0.05 Hz
        return [{k: np.zeros(0) for k in _EMPTY_KEYS} for _ in v]
    ph = phasic(v, rate)
    return [_scrs_of_phasic(ph[s], rate, min_amplitude_us) if np.ptp(v[s]) >= min_amplitude_us
            else {k: np.zeros(0) for k in _EMPTY_KEYS} for s in range(v.shape[0])]


def find_scrs(eda_us, rate: float, min_amplitude_us: float = MIN_SCR_US) -> dict:
    """SCRs of one row: ``onset`` (s), ``amplitude`` (µS), ``rise`` (s) and ``half_recovery``
    (s, NaN where it does not recover by half before the next SCR or the end). NeuroKit2's
    definitions (high-pass phasic component, ``eda_peaks(method="neurokit")``), computed in
    numpy; only SCRs whose amplitude reaches ``min_amplitude_us`` are kept, and the recovery of
    one is searched up to the next kept one. With ``min_amplitude_us=0`` the result equals
    NeuroKit2's ``eda_peaks`` (``amplitude_min=1e-6``) on ``eda_phasic(eda_us)``."""
    return find_scrs_rows(np.asarray(eda_us, dtype=np.float64).reshape(1, -1), rate, min_amplitude_us)[0]


def responded(onsets_per_row: list[np.ndarray], times, window: tuple = RESPONSE_WINDOW_S) -> np.ndarray:
    """Bool ``(S, E)``: whether row s has an SCR onset in ``[t + window[0], t + window[1]]``
    after event time t (``onsets_per_row``: the ``find_scrs(...)["onset"]`` of each row)."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    out = np.zeros((len(onsets_per_row), times.size), bool)
    for s, on in enumerate(onsets_per_row):
        on = np.asarray(on, dtype=np.float64)
        if on.size:
            d = on[None, :] - times[:, None]
            out[s] = ((d >= window[0]) & (d <= window[1])).any(axis=1)
    return out


def match_f1(found, true, tol: float = 1.0) -> tuple[float, int]:
    """F1 of ``found`` onsets against ``true`` ones, one-to-one within ``tol`` s (closest pairs
    first). Returns (F1, matches); F1 is NaN when both are empty (nothing to score)."""
    found, true = np.sort(np.asarray(found, float)), np.sort(np.asarray(true, float))
    if found.size == 0 and true.size == 0:
        return float("nan"), 0
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(true) if abs(f - t) <= tol)
    used_f, used_t, tp = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            tp += 1
    return 2 * tp / (found.size + true.size), tp


def mean_ci(x, z: float = 1.96) -> tuple[float, float]:
    """Mean of the finite values of ``x`` and the half-width of its normal 95% interval."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(z * x.std(ddof=1) / math.sqrt(x.size))


def mean_ci_columns(rows, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mean_ci` of each column of ``rows`` ``(E, T)`` over its finite values (an event-locked
    curve and its band): ``(mean (T,), half-width (T,))``."""
    r = np.asarray(rows, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rows must be (events, times), got shape {r.shape}")
    pairs = [mean_ci(r[:, j], z) for j in range(r.shape[1])]
    return np.array([m for m, _ in pairs]), np.array([c for _, c in pairs])


#: Bins of the true response probability for the response-rate calibration table.
P_BINS = (0.0, 0.2, 0.5, 0.7, 0.9, 1.0)


def calibration(rate_per_event, p_response, bins=P_BINS) -> list[dict]:
    """Response rate by the event's true response probability: for each bin ``[lo, hi)`` (the
    last one closed), ``events`` (how many), ``p_mean`` (their mean true probability, what a
    perfect responder's rate would be) and ``rate`` (mean of ``rate_per_event``, the share of
    rows with an SCR after each event; NaN for an empty bin)."""
    r = np.asarray(rate_per_event, dtype=np.float64).reshape(-1)
    p = np.asarray(p_response, dtype=np.float64).reshape(-1)
    if r.shape != p.shape:
        raise ValueError(f"one rate per event: got {r.size} rates for {p.size} events")
    out = []
    for k, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
        last = k == len(bins) - 2
        inside = (p >= lo) & ((p <= hi) if last else (p < hi))
        out.append({"lo": float(lo), "hi": float(hi), "events": int(inside.sum()),
                    "p_mean": float(p[inside].mean()) if inside.any() else float("nan"),
                    "rate": float(np.nanmean(r[inside])) if inside.any() and np.isfinite(r[inside]).any()
                    else float("nan")})
    return out


def nll_per_us(nll_nats, widths_us) -> float:
    """NLL of the µS value (nats per step), comparable across output representations.

    A class stands for every value in its bin; spreading its probability evenly over the bin
    (uniform dequantization) gives the value the density ``P(class) / width_us(class)``, so
    ``-log density = nll + log(width_us)``. ``nll_nats`` and ``widths_us`` (the width of each
    scored step's true class) are per step; the result is ``mean(nll) + mean(log(width))``:
    lower is better, and it is negative when the classes are narrower than 1 µS."""
    n = np.asarray(nll_nats, dtype=np.float64).reshape(-1)
    w = np.asarray(widths_us, dtype=np.float64).reshape(-1)
    if n.shape != w.shape or n.size == 0:
        raise ValueError(f"one width per scored step: got {n.size} NLLs and {w.size} widths")
    if not (w > 0).all():
        raise ValueError("class widths must be positive µS")
    return float(n.mean() + np.log(w).mean())


def wasserstein(a, b) -> float:
    """1-Wasserstein distance between two samples (NaN-free parts; NaN if either is empty)."""
    from scipy.stats import wasserstein_distance
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(wasserstein_distance(a, b)) if a.size and b.size else float("nan")


def acoustic_onset_rule(audio, sample_rate: float, *, min_level_dbfs: float = -30.0, latency_s: float = 2.0,
                        rise_db: float = 5.0) -> np.ndarray:
    """A rule with no learning: an SCR onset ``latency_s`` after every acoustic onset louder than
    ``min_level_dbfs`` (the RMS of the 0.5 s after it). Acoustic onsets: the 20 ms RMS level rises
    ``rise_db`` above its minimum over the previous 0.5 s (first frame of each rise)."""
    a = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = max(1, int(round(0.02 * sample_rate)))
    n = a.size // hop
    if n < 2:
        return np.zeros(0)
    level = 10 * np.log10(np.mean(a[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    w = 25
    past = np.lib.stride_tricks.sliding_window_view(np.pad(level, (w, 0), mode="edge"), w + 1).min(axis=1)
    above = level - past >= rise_db
    starts = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    out = []
    for s in starts:
        seg = a[s * hop: s * hop + int(0.5 * sample_rate)]
        if seg.size and 10 * np.log10(np.mean(seg ** 2) + 1e-12) >= min_level_dbfs:
            out.append(s * hop / sample_rate + latency_s)
    out = np.asarray(out)
    # one onset per sound: drop onsets within 1 s of the previous kept one
    keep = []
    for t in out:
        if not keep or t - keep[-1] > 1.0:
            keep.append(t)
    return np.asarray(keep)
