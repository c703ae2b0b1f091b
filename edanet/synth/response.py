"""The EDA side of the synthetic data: the SCR shape, each event's probability of eliciting an
SCR (the response model), and the EDA an event list gives (tonic level, SCRs, noise)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .config import SynthConfig


# =============================================================================================
# The SCR shape and the response model
# =============================================================================================

def scr_shape(t, rise: float, half_recovery: float) -> np.ndarray:
    """Unit-peak skin conductance response at times ``t`` (s) after its onset.

    Zero before the onset; ``u + u^2 - u^3`` (``u = t / rise``) up to the peak at ``t = rise``;
    then ``exp(-k s^2 / (s + c))`` with ``s = t - rise``, ``c = rise / 2`` and
    ``k = ln 2 (half_recovery + c) / half_recovery^2``, which is exactly 1/2 at
    ``t = rise + half_recovery``. Monotone rise, monotone decay, continuous slope at the peak;
    the recovery tail is exponential. See the module docstring for the sources."""
    r, h = float(rise), float(half_recovery)
    if not (r > 0 and h > 0 and math.isfinite(r) and math.isfinite(h)):
        raise ValueError(f"scr_shape needs positive finite rise and half_recovery, got {rise}, {half_recovery}")
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(t.shape, dtype=np.float64)
    up = (t >= 0) & (t <= r)
    u = t[up] / r
    out[up] = u + u * u - u * u * u
    down = t > r
    s = t[down] - r
    c = 0.5 * r
    k = math.log(2.0) * (h + c) / (h * h)
    out[down] = np.exp(-k * s * s / (s + c))
    return out


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def response_drive(events: Sequence[dict], cfg: SynthConfig = SynthConfig()) -> list[dict]:
    """Deterministic part of the stimulus response, per event (in the given order): ``loudness``,
    ``drive`` (loudness x sharpness term), ``habituation``, ``effective`` (= drive x habituation)
    and ``p_response`` (probability that the event elicits an SCR)."""
    order = sorted(range(len(events)), key=lambda i: float(events[i]["time"]))
    state: dict[str, tuple[float, float]] = {}
    out: list[dict] = [{} for _ in events]
    span = cfg.loudness_ceiling_db - cfg.loudness_floor_db
    for i in order:
        ev = events[i]
        t = float(ev["time"])
        level = float(ev["level_db"])
        sharp = min(1.0, max(0.0, float(ev.get("sharpness", 0.0))))
        loud = min(1.0, max(0.0, (level - cfg.loudness_floor_db) / span)) if math.isfinite(level) else 0.0
        drive = loud * ((1.0 - cfg.sharpness_weight) + cfg.sharpness_weight * sharp)
        n, t_last = state.get(ev["kind"], (0.0, t))
        n *= math.exp(-max(0.0, t - t_last) / cfg.habituation_recovery_s)
        hab = max(cfg.habituation_floor, cfg.habituation_factor ** n) if n > 0 else 1.0
        state[ev["kind"]] = (n + 1.0, t)
        eff = drive * hab
        p = _logistic((eff - cfg.response_threshold) / cfg.response_slope)
        out[i] = {"loudness": loud, "drive": drive, "habituation": hab, "effective": eff, "p_response": p}
    return out


def _tonic(rng: np.random.Generator, t: np.ndarray, seconds: float, cfg: SynthConfig) -> np.ndarray:
    level = rng.uniform(*cfg.tonic_level_us)
    drift = rng.uniform(*cfg.tonic_drift_per_min)
    period = cfg.tonic_wander_period_s
    n_knots = int(math.ceil(seconds / period)) + 2
    knots = rng.normal(0.0, 1.0, n_knots) * cfg.tonic_wander
    log_tonic = drift * t / 60.0
    if cfg.tonic_wander > 0:
        from scipy.interpolate import CubicSpline
        kt = np.arange(n_knots) * period
        log_tonic = log_tonic + CubicSpline(kt, knots, bc_type="natural")(t)
    return level * np.exp(log_tonic)


def eda_from_events(events: Sequence[dict], seconds: float, cfg: SynthConfig = SynthConfig(),
                    seed: int | np.random.SeedSequence | None = 0) -> tuple[np.ndarray, list[dict]]:
    """The physiological response model alone: EDA (µS at ``cfg.eda_sample_rate``, sample ``j`` at
    ``j / rate`` s) for ``events`` (dicts with ``time``, ``kind``, ``level_db``, ``sharpness``) over
    ``seconds``, and its SCRs (sorted by onset; only those whose onset lies inside the recording).
    Another ``seed`` redraws everything random (tonic, which events respond, latencies, shapes,
    spontaneous SCRs, noise) for the same events: the data's own ceiling."""
    rng = np.random.default_rng(seed)
    fs = cfg.eda_sample_rate
    m = int(round(float(seconds) * fs))
    if m < 1:
        raise ValueError(f"seconds={seconds} gives no EDA sample at {fs} Hz")
    T = m / fs
    t = np.arange(m, dtype=np.float64) / fs
    eda = _tonic(rng, t, T, cfg)

    scrs: list[dict] = []
    drives = response_drive(events, cfg)
    lat_lo, lat_hi = cfg.latency_s
    a_lo, a_hi = cfg.amplitude_us
    for i in sorted(range(len(events)), key=lambda i: float(events[i]["time"])):
        d = drives[i]
        # fixed number of draws per event, so one event's outcome never shifts another's
        u_resp, u_lat, u_rise, u_half = rng.random(4)
        jitter = math.exp(cfg.amplitude_jitter * rng.standard_normal())
        if u_resp >= d["p_response"]:
            continue
        eff = d["effective"]
        latency = lat_lo + (lat_hi - lat_lo) * min(1.0, max(0.0, 0.65 * u_lat + 0.35 * (1.0 - eff)))
        onset = float(events[i]["time"]) + latency
        if onset >= T:
            continue
        scrs.append({"onset": onset, "amplitude": min(a_hi, max(a_lo, a_lo + (a_hi - a_lo) * eff * jitter)),
                     "rise": cfg.rise_s[0] + (cfg.rise_s[1] - cfg.rise_s[0]) * u_rise,
                     "half_recovery": cfg.half_recovery_s[0] + (cfg.half_recovery_s[1] - cfg.half_recovery_s[0]) * u_half,
                     "kind": "stimulus", "event": int(i), "latency": latency,
                     "p_response": d["p_response"], "habituation": d["habituation"]})

    rate = rng.uniform(*cfg.spontaneous_rate_per_min)
    expected = rate * T / 60.0
    n_sp = int(math.floor(expected)) + int(rng.random() < expected - math.floor(expected))
    if n_sp:
        slot = T / n_sp
        onsets = (np.arange(n_sp) + rng.random(n_sp)) * slot
        amps = rng.uniform(*cfg.spontaneous_amplitude_us, n_sp)
        rises = rng.uniform(*cfg.rise_s, n_sp)
        halves = rng.uniform(*cfg.half_recovery_s, n_sp)
        for k in range(n_sp):
            scrs.append({"onset": float(onsets[k]), "amplitude": float(amps[k]), "rise": float(rises[k]),
                         "half_recovery": float(halves[k]), "kind": "spontaneous"})

    for s in scrs:
        eda += s["amplitude"] * scr_shape(t - s["onset"], s["rise"], s["half_recovery"])
    if cfg.noise_us > 0:
        eda += rng.normal(0.0, cfg.noise_us, m)
    np.maximum(eda, cfg.min_eda_us, out=eda)
    scrs.sort(key=lambda s: s["onset"])
    for s in scrs:
        s["peak_time"] = s["onset"] + s["rise"]
        for k, v in s.items():
            if isinstance(v, (float, np.floating)):
                s[k] = float(v)
    return eda, scrs
