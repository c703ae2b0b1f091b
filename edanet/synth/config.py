"""The knobs of the synthetic data (SynthConfig) and one synthetic recording (SynthPair)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..config import check_known_fields

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
