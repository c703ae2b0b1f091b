"""Synthetic paired audio + EDA data with known ground truth (``edanet synth``).

Each pair is one simulated recording of ``seconds`` seconds:

* ``NAME.wav``  - float32 mono audio (default 16 kHz): a quiet background (coloured noise, sometimes
  mains hum) with procedural acoustic events every 6-20 s (onset to onset): noise bursts, tones,
  sweeps, speech-like babble, music-like chords and silence gaps (the background dips by 40 dB).
* ``NAME.csv``  - skin conductance in µS, Empatica E4 form (start time 0, rate, one value a row),
  default 4 Hz. Sample ``j`` is the conductance at time ``j / eda_sample_rate``.
* ``NAME.json`` - ground truth: every event (time, duration, kind, level_db, sharpness, attack) and
  every SCR (onset, amplitude, rise, half_recovery, kind ``"stimulus"`` with its ``event`` index or
  ``"spontaneous"``), the sample rates, the seeds, the config and the generator version.

Acoustic event descriptors
--------------------------
``level_db``  RMS level of the event's own signal over its duration, dBFS (20 log10 RMS, full scale
              = 1.0). Drawn in ``event_level_db`` (default -50..-10 dBFS); events are limited to a
              -1 dBFS peak, so the audio never clips. For a silence gap it is the RMS of the audio
              during the gap.
``sharpness`` onset sharpness in [0, 1] from the attack time ``a`` (raised-cosine fade-in):
              ``clip(log(0.5 s / a) / log(0.5 s / 0.002 s), 0, 1)`` - 1 for a 2 ms attack, 0 for
              500 ms or more; 0 for silence gaps.

The response model (``eda_from_events``)
-----------------------------------------
EDA = tonic + sum of SCRs + sensor noise, floored at ``min_eda_us``.

*Tonic level* (skin conductance level, SCL): ``L0 * exp(drift * t/60 + w(t))``, ``L0`` uniform in
``tonic_level_us`` (2-7 µS), ``drift`` uniform in ``tonic_drift_per_min`` (log-units a minute; the
slow downward drift of SCL over a resting session, Boucsein 2012 §2.3), ``w`` a natural cubic
spline through N(0, ``tonic_wander``) knots every ``tonic_wander_period_s`` seconds (slow
non-specific fluctuation). Multiplicative, so the tonic level stays positive in long runs.

*Stimulus-locked SCRs* (Dawson, Schell & Filion, "The electrodermal system", Handbook of
Psychophysiology, 2007/2017, Table 10.1: latency 1-3 s, rise time 1-3 s, half-recovery time
2-10 s, amplitude 0.2-1.0 µS; Boucsein, "Electrodermal Activity", 2nd ed. 2012). The eliciting
drive of event ``i`` grows with loudness and onset sharpness (the orienting response grows with
stimulus intensity and with the rate of change at onset - Boucsein 2012 §3.1.1; Dawson et al.):

    loud_i  = clip((level_db - loudness_floor_db) / (loudness_ceiling_db - loudness_floor_db), 0, 1)
    drive_i = loud_i * ((1 - sharpness_weight) + sharpness_weight * sharpness_i)

*Habituation* (Dawson et al.; Boucsein 2012 §3.1.1.2: response probability and amplitude fall with
repetition of the same stimulus, and partly recover with time): per event kind a repeat count
``n`` that decays with time since the last event of that kind, ``n <- n * exp(-dt /
habituation_recovery_s)``, then ``hab_i = max(habituation_floor, habituation_factor ** n)``;
``n <- n + 1`` after each event (whether it elicited an SCR or not). ``d_i = drive_i * hab_i``.

The event elicits an SCR with probability ``p_i = 1 / (1 + exp(-(d_i - response_threshold) /
response_slope))`` (defaults 0.45 and 0.1: a loud (-10 dBFS) sharp first event responds 99% of
the time, a -20 dBFS sharp one 95%, a -40 dBFS or a soft quiet one about 10%, a silence gap ~1%).
If it does:

    amplitude = clip(a_lo + (a_hi - a_lo) * d_i * J, a_lo, a_hi)      J ~ LogNormal(0, amplitude_jitter)
    latency   = lat_lo + (lat_hi - lat_lo) * clip(0.65 U + 0.35 (1 - d_i), 0, 1)   U ~ U(0, 1)
                (stronger stimuli answer sooner, Boucsein 2012; always within 1-3 s)
    rise      ~ U(rise_s),  half_recovery ~ U(half_recovery_s)
    onset     = event time + latency

*Spontaneous (non-specific) SCRs* (Dawson et al.: 1-3 a minute at rest): a rate ``r`` per minute
uniform in ``spontaneous_rate_per_min`` is drawn per recording; ``n = floor(r T/60)`` plus one
with probability of the remainder (so the count matches the rate); the recording is cut into
``n`` equal slots and one onset is drawn uniformly in each (stratified, so the realised rate stays
within the range). Amplitude ~ U(``spontaneous_amplitude_us``), rise and half-recovery as above.

*SCR shape* (``scr_shape``): a real-time-scale curve parameterized directly by rise time ``r``
and half-recovery time ``h`` in seconds (NOT NeuroKit2's ``eda_simulate`` shape, which is about
ten times too fast). Unit peak at ``t = r``, half the peak at ``t = r + h``:

    t < 0:       S = 0
    0 <= t <= r: S = u + u^2 - u^3,  u = t / r          (sigmoid rise: slope 1/r at onset, 0 at the peak)
    t > r:       S = exp(-k s^2 / (s + c)),  s = t - r,  c = r / 2,  k = ln 2 (h + c) / h^2

The decay leaves the peak with zero slope (C1 at the peak) and becomes an exponential recovery
with time constant ``h^2 / (ln 2 (h + c))`` - the bi-exponential recovery of Lim et al. 1997 and
the canonical SCR function of Bach, Flandin, Friston & Dolan 2010 (J. Neurosci. Methods 188:
Gaussian-smoothed onset, exponential recovery on a seconds scale) made exact in ``r`` and ``h``.
Overlapping SCRs add (superposition, as in Bach et al.'s linear time-invariant model).

*Sensor noise*: white Gaussian, ``noise_us`` (0.01 µS) standard deviation.

Determinism: ``synthesize_pair(seed)`` uses ``np.random.SeedSequence(seed)`` spawned into an audio
stream and an EDA stream (``meta["eda_seed"]``, so ``eda_from_events(pair.events, ..., eda_seed)``
reproduces ``pair.eda``). Pair ``i`` of a dataset made with ``seed`` uses ``pair_seed(seed, i)``
(the ``i``-th spawned child of ``SeedSequence(seed)``), independent of how many pairs are made.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import check_known_fields
from .io import atomic_path, atomic_write, write_eda_csv

__all__ = ["SynthConfig", "SynthPair", "KINDS", "GENERATOR_VERSION", "scr_shape", "response_drive",
           "eda_from_events", "synthesize_pair", "pair_seed", "write_pair", "write_dataset",
           "read_ground_truth"]

GENERATOR_VERSION = "edanet.synth/1.0"

KINDS = ("noise_burst", "tone", "sweep", "babble", "chord", "silence")

# Attack-time bounds of the sharpness scale (seconds).
SHARP_ATTACK_S = 0.002
SOFT_ATTACK_S = 0.5


def _pair(v, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"SynthConfig.{name} must be a (low, high) pair of numbers, got {v!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"SynthConfig.{name} must be finite with low <= high, got {(lo, hi)}")
    return lo, hi


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the synthetic data. Ranges are ``(low, high)``, drawn uniformly."""
    audio_sample_rate: int = 16000
    eda_sample_rate: int = 4
    seconds: float = 120.0
    # -- audio ------------------------------------------------------------------------------
    event_gap_s: tuple[float, float] = (6.0, 20.0)          # onset to onset
    first_event_s: tuple[float, float] = (3.0, 10.0)
    event_tail_s: float = 4.0                                 # no event starts in the last seconds
    event_level_db: tuple[float, float] = (-50.0, -10.0)     # RMS dBFS
    background_level_db: tuple[float, float] = (-66.0, -52.0)
    silence_depth_db: float = 40.0
    kinds: tuple[str, ...] = KINDS
    kind_weights: tuple[float, ...] = (0.2, 0.18, 0.16, 0.16, 0.16, 0.14)
    # -- stimulus-locked SCRs ----------------------------------------------------------------
    latency_s: tuple[float, float] = (1.0, 3.0)
    rise_s: tuple[float, float] = (1.0, 3.0)
    half_recovery_s: tuple[float, float] = (2.0, 10.0)
    amplitude_us: tuple[float, float] = (0.2, 1.0)
    amplitude_jitter: float = 0.15                            # log-normal sigma
    loudness_floor_db: float = -50.0
    loudness_ceiling_db: float = -10.0
    sharpness_weight: float = 0.4
    response_threshold: float = 0.45
    response_slope: float = 0.1
    habituation_factor: float = 0.85
    habituation_floor: float = 0.4
    habituation_recovery_s: float = 300.0                    # inf: no recovery
    # -- spontaneous SCRs --------------------------------------------------------------------
    spontaneous_rate_per_min: tuple[float, float] = (1.0, 3.0)
    spontaneous_amplitude_us: tuple[float, float] = (0.1, 0.4)
    # -- tonic level and noise ---------------------------------------------------------------
    tonic_level_us: tuple[float, float] = (2.0, 7.0)
    tonic_drift_per_min: tuple[float, float] = (-0.04, 0.02)  # log-units a minute
    tonic_wander: float = 0.04                                # log-units (std of spline knots)
    tonic_wander_period_s: float = 40.0
    noise_us: float = 0.01
    min_eda_us: float = 0.05

    def __post_init__(self) -> None:
        for name in ("audio_sample_rate", "eda_sample_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"SynthConfig.{name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"SynthConfig.seconds must be a positive number, got {self.seconds!r}")
        if round(self.seconds * self.eda_sample_rate) < 1:
            raise ValueError(f"SynthConfig.seconds={self.seconds} is shorter than one EDA sample")
        for f in dataclasses.fields(self):
            if f.name in ("kinds", "kind_weights"):
                continue
            if isinstance(getattr(self, f.name), (tuple, list)):
                object.__setattr__(self, f.name, _pair(getattr(self, f.name), f.name))
        for name in ("latency_s", "rise_s", "half_recovery_s", "event_gap_s"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"SynthConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("amplitude_us", "spontaneous_amplitude_us", "spontaneous_rate_per_min", "first_event_s"):
            if getattr(self, name)[0] < 0:
                raise ValueError(f"SynthConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.tonic_level_us[0] <= 0:
            raise ValueError(f"SynthConfig.tonic_level_us must be positive, got {self.tonic_level_us}")
        kinds = tuple(str(k) for k in self.kinds)
        weights = tuple(float(w) for w in self.kind_weights)
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"SynthConfig.kinds must be a non-empty subset of {KINDS}, got {kinds}")
        if len(weights) != len(kinds) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"SynthConfig.kind_weights must be {len(kinds)} non-negative weights "
                             f"(one per kind) with a positive sum, got {weights}")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "kind_weights", weights)
        for name in ("noise_us", "amplitude_jitter", "tonic_wander", "event_tail_s", "sharpness_weight",
                     "habituation_floor", "min_eda_us", "silence_depth_db"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"SynthConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.habituation_factor <= 1:
            raise ValueError(f"SynthConfig.habituation_factor must be in (0, 1], got {self.habituation_factor}")
        if not self.sharpness_weight <= 1:
            raise ValueError(f"SynthConfig.sharpness_weight must be in [0, 1], got {self.sharpness_weight}")
        for name in ("response_slope", "habituation_recovery_s", "tonic_wander_period_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SynthConfig.{name} must be positive, got {getattr(self, name)!r}")
        if not self.loudness_ceiling_db > self.loudness_floor_db:
            raise ValueError("SynthConfig.loudness_ceiling_db must exceed loudness_floor_db")

    @property
    def eda_samples(self) -> int:
        return int(round(self.seconds * self.eda_sample_rate))

    @property
    def duration(self) -> float:
        """Exact duration: a whole number of EDA samples (the audio covers the same time)."""
        return self.eda_samples / self.eda_sample_rate

    @property
    def audio_samples(self) -> int:
        return int(round(self.duration * self.audio_sample_rate))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
            elif isinstance(v, float) and math.isinf(v):
                d[k] = "inf" if v > 0 else "-inf"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SynthConfig":
        check_known_fields(cls, d)
        d = {k: (float(v) if v in ("inf", "-inf") else tuple(v) if isinstance(v, list) else v)
             for k, v in d.items()}
        return cls(**d)


@dataclass
class SynthPair:
    audio: np.ndarray            # float32 (n,)
    audio_sample_rate: int
    eda: np.ndarray              # float64 µS (m,)
    eda_sample_rate: int
    events: list[dict]
    scrs: list[dict]
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.eda) / self.eda_sample_rate


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


# =============================================================================================
# Audio
# =============================================================================================

_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410), (660, 1720, 2410), (640, 1190, 2390), (440, 1020, 2240))
_DURATION_S = {"noise_burst": (0.1, 1.5), "tone": (0.2, 2.0), "sweep": (0.3, 2.0), "babble": (1.0, 4.0),
               "chord": (0.8, 3.0), "silence": (1.0, 4.0)}
_ATTACK_S = {"noise_burst": (0.002, 0.05), "tone": (0.002, 0.5), "sweep": (0.004, 0.5),
             "babble": (0.02, 0.3), "chord": (0.003, 0.5)}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _db(x: float) -> float:
    return max(-120.0, 20.0 * math.log10(x)) if x > 0 else -120.0


def _colored_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f^beta."""
    white = rng.standard_normal(n)
    if beta == 0 or n < 4:
        return white
    from scipy import fft as sfft
    spec = sfft.rfft(white)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec *= f ** (-beta / 2.0)
    x = sfft.irfft(spec, n)
    return x / (_rms(x) or 1.0)


@functools.lru_cache(maxsize=32)
def _sos(kind: str, freq, sr: int, order: int = 2):
    from scipy.signal import butter
    return butter(order, freq, btype=kind, fs=sr, output="sos")


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _noise_burst(rng, n, sr):
    from scipy.signal import sosfilt
    style = rng.integers(4)
    if style == 0:
        return rng.standard_normal(n)
    if style == 1:
        return _colored_noise(rng, n, 1.0)
    if style == 2:
        return _colored_noise(rng, n, 2.0)
    lo = _loguniform(rng, 200.0, 0.3 * sr)
    hi = min(0.45 * sr, lo * _loguniform(rng, 1.5, 4.0))
    return sosfilt(_sos("bandpass", (round(lo), round(hi)), sr), rng.standard_normal(n))


def _harmonic(phase, n_harm, rolloff, rng):
    x = np.zeros_like(phase)
    for k in range(1, n_harm + 1):
        x += k ** (-rolloff) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return x


def _tone(rng, n, sr):
    t = np.arange(n) / sr
    f0 = _loguniform(rng, 150.0, 3000.0)
    f = np.full(n, f0)
    if rng.random() < 0.3:
        f *= 1 + rng.uniform(0.003, 0.01) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * np.cumsum(f) / sr
    n_harm = max(1, min(int(rng.integers(1, 6)), int(0.45 * sr / f0)))
    return _harmonic(phase, n_harm, rng.uniform(1.0, 2.0), rng)


def _sweep(rng, n, sr):
    T = n / sr
    while True:
        f1, f2 = _loguniform(rng, 150.0, 6000.0), _loguniform(rng, 150.0, 6000.0)
        if abs(math.log2(f2 / f1)) >= 1.0:
            break
    t = np.arange(n) / sr
    ratio = f2 / f1
    phase = 2 * np.pi * f1 * T / math.log(ratio) * (ratio ** (t / T) - 1.0)
    n_harm = 1 if max(f1, f2) * 2 > 0.45 * sr else int(rng.integers(1, 3))
    return _harmonic(phase, n_harm, 1.5, rng)


def _resonate(x, freq, bw, sr):
    from scipy.signal import lfilter
    r = math.exp(-math.pi * bw / sr)
    th = 2 * math.pi * freq / sr
    return lfilter([1.0 - r], [1.0, -2 * r * math.cos(th), r * r], x)


def _babble(rng, n, sr):
    """Speech-like babble: 1-3 voices, each a harmonic glottal source with a wandering F0 shaped by
    vowel formants that change syllable by syllable (3-6 Hz), with fricative noise at some onsets."""
    from scipy.signal import sosfilt
    out = np.zeros(n)
    t = np.arange(n) / sr
    T = n / sr
    hp = _sos("highpass", 2500, sr)
    for v in range(int(rng.integers(1, 4))):
        f0 = rng.uniform(90.0, 250.0)
        contour = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6.3)))
        contour *= 1 - 0.12 * t / T
        phase = 2 * np.pi * np.cumsum(contour) / sr
        n_harm = max(1, min(40, int(0.4 * sr / f0)))
        src = np.zeros(n)
        for k in range(1, n_harm + 1):
            src += np.sin(k * phase) / k
        voice = np.zeros(n)
        rate = rng.uniform(3.0, 6.0)
        pos = int(rng.uniform(0, 0.3) * sr) if v else 0
        while pos < n:
            length = int(rng.uniform(0.6, 1.4) / rate * sr)
            end = min(n, pos + length)
            seg_len = end - pos
            if seg_len < 16:
                break
            voiced = int(seg_len * rng.uniform(0.6, 0.9))
            seg = src[pos:pos + voiced]
            for F, B in zip(_VOWELS[rng.integers(len(_VOWELS))], (80, 100, 150)):
                seg = _resonate(seg, min(F * rng.uniform(0.9, 1.1), 0.45 * sr), B, sr)
            env = np.sin(np.pi * np.arange(voiced) / voiced) ** 0.7
            voice[pos:pos + voiced] += seg * env / (_rms(seg) or 1.0)
            if rng.random() < 0.5:
                m = min(seg_len, int(rng.uniform(0.02, 0.07) * sr))
                fric = sosfilt(hp, rng.standard_normal(m)) * np.hanning(m) * rng.uniform(0.2, 0.6)
                voice[pos:pos + m] += fric
            pos = end
        out += voice * rng.uniform(0.5, 1.0)
    return out


def _chord(rng, n, sr):
    """Music-like: 1-3 successive chords (triads/sevenths) of harmonic notes, piano-like decay or pad."""
    qualities = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 4, 7, 10), (0, 5, 7), (0, 3, 7, 10))
    n_chords = int(rng.integers(1, 4))
    piano = rng.random() < 0.6
    out = np.zeros(n)
    bounds = np.linspace(0, n, n_chords + 1).astype(int)
    root = int(rng.integers(45, 70))
    for c in range(n_chords):
        a, b = bounds[c], bounds[c + 1]
        tt = np.arange(b - a) / sr
        notes = qualities[rng.integers(len(qualities))]
        seg = np.zeros(b - a)
        for semi in notes:
            f = 440.0 * 2 ** ((root + semi - 69) / 12) * (1 + rng.normal(0, 0.001))
            n_harm = max(1, min(6, int(0.45 * sr / f)))
            seg += _harmonic(2 * np.pi * f * tt, n_harm, 1.5, rng)
        if piano:
            seg *= np.exp(-tt / rng.uniform(0.3, 1.2))
            ramp = min(len(seg), int(0.003 * sr))
            seg[:ramp] *= np.linspace(0, 1, ramp, endpoint=False)
        out[a:b] = seg
        root += int(rng.choice((-5, -3, 0, 2, 5, 7)))
    return out


_RENDER = {"noise_burst": _noise_burst, "tone": _tone, "sweep": _sweep, "babble": _babble, "chord": _chord}


def _sharpness(attack: float) -> float:
    return float(min(1.0, max(0.0, math.log(SOFT_ATTACK_S / attack) / math.log(SOFT_ATTACK_S / SHARP_ATTACK_S))))


def _raised_cosine(m: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / max(m, 1))


def _render_audio(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, list[dict]]:
    from scipy.signal import sosfilt
    sr = cfg.audio_sample_rate
    n = cfg.audio_samples
    T = n / sr
    # background: coloured noise (high-passed at 30 Hz), sometimes mains hum
    bg = sosfilt(_sos("highpass", 30, sr), _colored_noise(rng, n, rng.uniform(0.5, 2.0)))
    bg_db = rng.uniform(*cfg.background_level_db)
    bg *= 10 ** (bg_db / 20) / (_rms(bg) or 1.0)
    if rng.random() < 0.3:
        mains = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(n) / sr
        hum = sum(k ** -1.0 * np.sin(2 * np.pi * k * mains * tt + rng.uniform(0, 6.3)) for k in range(1, 5))
        bg += hum * 10 ** ((bg_db - rng.uniform(3, 12)) / 20) / (_rms(hum) or 1.0)
    audio = bg.copy()

    # event times
    weights = np.asarray(cfg.kind_weights) / sum(cfg.kind_weights)
    events: list[dict] = []
    t0 = rng.uniform(*cfg.first_event_s)
    peak_limit = 10 ** (-1 / 20)
    while t0 < T - cfg.event_tail_s:
        kind = cfg.kinds[int(rng.choice(len(cfg.kinds), p=weights))]
        dur = min(rng.uniform(*_DURATION_S[kind]), T - t0 - 0.05)
        a = int(round(t0 * sr))
        m = min(n - a, int(round(dur * sr)))
        if m < 16:
            break
        if kind == "silence":
            depth = 10 ** (-cfg.silence_depth_db / 20)
            ramp = min(m // 4, int(0.03 * sr))
            env = np.full(m, depth)
            env[:ramp] = 1 - (1 - depth) * _raised_cosine(ramp)
            env[m - ramp:] = depth + (1 - depth) * _raised_cosine(ramp)
            audio[a:a + m] *= env
            events.append({"time": a / sr, "duration": m / sr, "kind": kind,
                           "level_db": _db(_rms(audio[a:a + m])), "sharpness": 0.0, "attack": 0.0})
        else:
            x = _RENDER[kind](rng, m, sr)
            attack = min(_loguniform(rng, *_ATTACK_S[kind]), 0.4 * m / sr)
            attack = max(attack, 1.0 / sr)
            na = max(1, int(round(attack * sr)))
            nr = max(1, min(m // 4, int(rng.uniform(0.02, 0.2) * sr)))
            env = np.ones(m)
            env[:na] = _raised_cosine(na)
            env[m - nr:] *= _raised_cosine(nr)[::-1]
            x = x * env
            target = 10 ** (rng.uniform(*cfg.event_level_db) / 20)
            x *= target / (_rms(x) or 1.0)
            peak = float(np.max(np.abs(x)))
            if peak > peak_limit:
                x *= peak_limit / peak
            audio[a:a + m] += x
            events.append({"time": a / sr, "duration": m / sr, "kind": kind, "level_db": _db(_rms(x)),
                           "sharpness": _sharpness(na / sr), "attack": na / sr})
        t0 += rng.uniform(*cfg.event_gap_s)
        t0 = max(t0, events[-1]["time"] + events[-1]["duration"] + 1.0)

    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak >= 0.99:   # cannot happen with the defaults (events <= -1 dBFS, background ~ -50 dBFS)
        g = 0.98 / peak
        audio *= g
        for ev in events:
            ev["level_db"] = _db(10 ** (ev["level_db"] / 20) * g)
    return audio.astype(np.float32), events


# =============================================================================================
# Pairs and datasets
# =============================================================================================

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def pair_seed(seed: int, index: int) -> int:
    """Seed of pair ``index`` of a dataset made with ``seed``: the ``index``-th child of
    ``SeedSequence(seed)`` (independent of how many pairs are made)."""
    ss = np.random.SeedSequence(_check_seed(seed), spawn_key=(_check_seed(index),))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def synthesize_pair(seed: int, cfg: SynthConfig = SynthConfig()) -> SynthPair:
    """One synthetic recording: audio with events, and the EDA the response model gives for them."""
    seed = _check_seed(seed)
    audio_ss, eda_ss = np.random.SeedSequence(seed).spawn(2)
    eda_seed = int(eda_ss.generate_state(1, dtype=np.uint64)[0])
    audio, events = _render_audio(np.random.default_rng(audio_ss), cfg)
    eda, scrs = eda_from_events(events, cfg.duration, cfg, eda_seed)
    meta = {"seed": seed, "eda_seed": eda_seed, "config": cfg.to_dict(), "generator": GENERATOR_VERSION,
            "seconds": cfg.duration}
    return SynthPair(audio=audio, audio_sample_rate=cfg.audio_sample_rate, eda=eda,
                     eda_sample_rate=cfg.eda_sample_rate, events=events, scrs=scrs, meta=meta)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return round(x, 6)
    return x


def _clear_wav_peak_timestamp(path: Path) -> None:
    """Zero the time stamp libsndfile writes into a float WAV's PEAK chunk, so that the same
    pair gives the same bytes whenever it is written (walks the RIFF chunks up to ``data``)."""
    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8 or chunk[:4] == b"data":
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"PEAK" and size >= 8:      # version (4 bytes), then the time stamp
                f.seek(pos + 12)
                f.write(b"\0\0\0\0")
                return
            pos += 8 + size + (size & 1)


def write_pair(pair: SynthPair, out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """Write ``NAME.wav`` (float32), ``NAME.csv`` (E4 form, start time 0) and ``NAME.json`` (ground
    truth) atomically into ``out_dir``; returns ``{"audio", "eda", "json"}`` paths."""
    import soundfile as sf
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wav, csv, js = out / f"{name}.wav", out / f"{name}.csv", out / f"{name}.json"
    audio = np.asarray(pair.audio, dtype=np.float32).reshape(-1)
    with atomic_path(wav) as tmp:
        sf.write(str(tmp), audio, int(pair.audio_sample_rate), subtype="FLOAT", format="WAV")
        _clear_wav_peak_timestamp(tmp)
    write_eda_csv(csv, pair.eda, pair.eda_sample_rate, fmt="e4", start_time=0.0)
    drives = response_drive(pair.events, SynthConfig.from_dict(pair.meta["config"])) \
        if "config" in pair.meta else None
    truth = {
        "generator": pair.meta.get("generator", GENERATOR_VERSION),
        "name": name,
        "audio": wav.name,
        "eda": csv.name,
        "audio_sample_rate": int(pair.audio_sample_rate),
        "eda_sample_rate": int(pair.eda_sample_rate),
        "seconds": len(pair.eda) / pair.eda_sample_rate,
        "seed": pair.meta.get("seed"),
        "eda_seed": pair.meta.get("eda_seed"),
        **{k: v for k, v in pair.meta.items() if k not in ("seed", "eda_seed", "config", "generator", "seconds")},
        "config": pair.meta.get("config"),
        "events": pair.events,
        "responses": drives,
        "scrs": pair.scrs,
    }
    atomic_write(js, json.dumps(_jsonable(truth), indent=1) + "\n")
    return {"audio": wav, "eda": csv, "json": js}


def write_dataset(out_dir: str | os.PathLike, pairs: int, cfg: SynthConfig = SynthConfig(), seed: int = 0,
                  progress: bool = True) -> list[str]:
    """Make ``pairs`` pairs ``synth_00000 ...`` in ``out_dir`` (pair ``i`` from ``pair_seed(seed, i)``),
    each written atomically, then a ``dataset.json`` manifest. Returns the names."""
    from tqdm.auto import tqdm
    if isinstance(pairs, bool) or not isinstance(pairs, (int, np.integer)) or pairs < 0:
        raise ValueError(f"pairs must be a non-negative integer, got {pairs!r}")
    seed = _check_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(max(int(pairs) - 1, 0))))
    names, seeds = [], []
    for i in tqdm(range(int(pairs)), desc="synth", unit="pair", disable=not progress):
        name = f"synth_{i:0{width}d}"
        ps = pair_seed(seed, i)
        pair = synthesize_pair(ps, cfg)
        pair.meta.update({"dataset_seed": seed, "index": i})
        write_pair(pair, out, name)
        names.append(name)
        seeds.append(ps)
    manifest = {"generator": GENERATOR_VERSION, "seed": seed, "pairs": len(names),
                "audio_sample_rate": cfg.audio_sample_rate, "eda_sample_rate": cfg.eda_sample_rate,
                "seconds": cfg.duration, "eda_format": "e4", "config": cfg.to_dict(),
                "names": names, "pair_seeds": seeds}
    atomic_write(out / "dataset.json", json.dumps(_jsonable(manifest), indent=1) + "\n")
    return names


def read_ground_truth(json_path: str | os.PathLike) -> dict:
    """The ground truth written beside a pair: ``events``, ``scrs``, sample rates, seeds, config..."""
    p = Path(json_path)
    if p.suffix.lower() != ".json":
        p = p.with_suffix(".json")
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no ground truth at {p}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(d, dict) or "events" not in d or "scrs" not in d:
        raise ValueError(f"{p} is not an edanet synth ground-truth file (needs 'events' and 'scrs')")
    return d
