"""Simulated people: each subject's electrodermal traits, drawn from a population, and the
response model's knobs for that subject (``SubjectTraits.config``).

What people differ in, and by how much (the numbers are the population's defaults, fields of
``PopulationConfig``):

- **Skin conductance level** differs far more between people than within one: resting levels
  span about 1-20 µS between healthy adults and cluster at a few µS (Dawson, Schell & Filion,
  "The electrodermal system", Handbook of Psychophysiology, 4th ed. 2017, Table 10.1: SCL 2-20
  µS; Boucsein, "Electrodermal Activity", 2nd ed. 2012, §2.3: a skewed, roughly log-normal
  distribution). A log-normal with median 2.5 µS and log-sd 0.9 puts 90% of people between 0.6
  and 11 µS and about one in a hundred above 20.
- **Non-responders**: about one person in ten gives no appreciable SCR to ordinary stimuli
  (Venables & Mitchell 1996, Biological Psychology 43: 87-101, report electrodermal
  non-responding in roughly 10-20% of large samples; Dawson et al. 2017). A non-responder here
  answers no stimulus, and has few spontaneous SCRs.
- **Lability** (the rate of non-specific SCRs at rest, 0 to 10 or more a minute; Dawson et al.
  2017: 1-3 a minute is typical) is a stable trait with moderate to high retest reliability
  (Crider 2008, Applied Psychophysiology and Biofeedback 33: 141-150; Boucsein 2012 §3.1.1.2).
  Labiles have higher levels, larger and faster orienting responses and habituate more slowly
  than stabiles (Crider 2008; Boucsein 2012 §3.1.1.2; Dawson et al. 2017). One latent lability
  factor per subject carries these correlations: the spontaneous rate is its log-linear
  function (median 1.5 a minute, log-sd 0.8: 90% between 0.4 and 5.6 a minute), and the
  level, the response size, the response speed, the habituation and the response threshold
  each load on it (``lability_loading``, 0.5) beside their own independent parts.

A subject keeps its traits for every recording it is in (a cohort hears the same clips); what
varies between its recordings is what the response model draws per recording (which events
respond, the SCR shapes, the tonic drift, the noise).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..config import check_known_fields
from .config import SynthConfig

__all__ = ["PopulationConfig", "SubjectTraits", "draw_subjects", "subject_id"]


@dataclass(frozen=True)
class PopulationConfig:
    """The population subjects are drawn from (module docstring: the sources)."""
    level_median_us: float = 2.5
    level_log_sd: float = 0.9
    level_range_us: tuple[float, float] = (0.3, 40.0)
    non_responder_fraction: float = 0.1
    spontaneous_median_per_min: float = 1.5
    spontaneous_log_sd: float = 0.8
    spontaneous_max_per_min: float = 12.0
    non_responder_spontaneous_factor: float = 0.1      # non-responders: few spontaneous SCRs too
    lability_loading: float = 0.5                      # correlation of each trait with lability
    amplitude_log_sd: float = 0.35                     # response size: log of its gain
    speed_log_sd: float = 0.15                         # latency, rise and recovery: log of their scale
    habituation_log_sd: float = 0.4                    # log of (1 - habituation factor)
    threshold_sd: float = 0.05                         # the drive an event needs to elicit an SCR

    def __post_init__(self) -> None:
        lo, hi = (float(x) for x in self.level_range_us)
        object.__setattr__(self, "level_range_us", (lo, hi))
        if not (0 < lo < hi and self.level_median_us > 0 and self.spontaneous_median_per_min >= 0):
            raise ValueError(f"PopulationConfig: levels and rates must be positive, got {self}")
        if not 0 <= self.non_responder_fraction <= 1 or not 0 <= self.lability_loading <= 1:
            raise ValueError("PopulationConfig: non_responder_fraction and lability_loading must lie in [0, 1]")
        for f in ("level_log_sd", "spontaneous_log_sd", "amplitude_log_sd", "speed_log_sd", "habituation_log_sd",
                  "threshold_sd", "non_responder_spontaneous_factor"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"PopulationConfig.{f} must be >= 0, got {getattr(self, f)!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["level_range_us"] = list(self.level_range_us)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PopulationConfig":
        check_known_fields(cls, d)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class SubjectTraits:
    """One simulated person: ``id``; ``responder``; ``lability`` (the latent factor, N(0, 1));
    ``level_us`` (its resting tonic level); ``spontaneous_per_min``; ``response_gain`` (SCR
    amplitudes times this); ``speed`` (latency, rise and recovery times divided by this);
    ``habituation_factor`` (per repetition of a kind of sound, as ``SynthConfig``'s);
    ``response_threshold`` (the drive that responds half the time; ``inf`` for a non-responder)."""
    id: str
    responder: bool
    lability: float
    level_us: float
    spontaneous_per_min: float
    response_gain: float
    speed: float
    habituation_factor: float
    response_threshold: float

    def config(self, cfg: SynthConfig) -> SynthConfig:
        """``cfg`` with this subject's traits in place of the population-wide ranges: the response
        model (``eda_from_events``) draws the same random numbers in the same order for any
        subject, so a subject changes what they mean, not which are drawn."""
        g, s = self.response_gain, self.speed
        threshold = self.response_threshold if self.responder else NON_RESPONDER_THRESHOLD
        return dataclasses.replace(
            cfg, tonic_level_us=(self.level_us, self.level_us),
            spontaneous_rate_per_min=(self.spontaneous_per_min, self.spontaneous_per_min),
            amplitude_us=(cfg.amplitude_us[0] * g, cfg.amplitude_us[1] * g),
            spontaneous_amplitude_us=(cfg.spontaneous_amplitude_us[0] * g, cfg.spontaneous_amplitude_us[1] * g),
            latency_s=(cfg.latency_s[0] / s, cfg.latency_s[1] / s), rise_s=(cfg.rise_s[0] / s, cfg.rise_s[1] / s),
            half_recovery_s=(cfg.half_recovery_s[0] / s, cfg.half_recovery_s[1] / s),
            habituation_factor=self.habituation_factor, response_threshold=threshold)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not math.isfinite(d["response_threshold"]):
            d["response_threshold"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SubjectTraits":
        check_known_fields(cls, d)
        d = dict(d)
        if d.get("response_threshold") is None:
            d["response_threshold"] = math.inf
        return cls(**d)


#: A non-responder's threshold: above any drive (drives lie in [0, 1]), so no stimulus responds.
NON_RESPONDER_THRESHOLD = 10.0


def subject_id(cohort_seed: int, k: int) -> str:
    """The id of subject ``k`` of the cohort drawn with ``cohort_seed``: unique across cohorts,
    so cohorts of several seeds can share one training folder."""
    return f"s{int(cohort_seed)}-{int(k):03d}"


def draw_subjects(n: int, seed: int, cfg: SynthConfig = SynthConfig(),
                  population: PopulationConfig = PopulationConfig()) -> list[SubjectTraits]:
    """``n`` subjects of the cohort ``seed`` (subject ``k`` from its own random stream, so the
    first subjects are the same whatever ``n`` is)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"the number of subjects must be a non-negative integer, got {n!r}")
    p, rho = population, population.lability_loading
    own = math.sqrt(1.0 - rho * rho)
    out = []
    for k in range(int(n)):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1, k)))
        lab, z_level, z_amp, z_speed, z_hab, z_thr = rng.standard_normal(6)
        responder = bool(rng.random() >= p.non_responder_fraction)

        def loaded(z: float) -> float:          # a trait's standard score: lability's share, then its own
            return rho * lab + own * z

        level = p.level_median_us * math.exp(p.level_log_sd * loaded(z_level))
        rate = min(p.spontaneous_max_per_min, p.spontaneous_median_per_min * math.exp(p.spontaneous_log_sd * lab))
        if not responder:
            rate *= p.non_responder_spontaneous_factor
        # labiles habituate more slowly: a smaller 1 - factor
        hab = 1.0 - (1.0 - cfg.habituation_factor) * math.exp(-p.habituation_log_sd * loaded(z_hab))
        out.append(SubjectTraits(
            id=subject_id(seed, k), responder=responder, lability=float(lab),
            level_us=float(min(max(level, p.level_range_us[0]), p.level_range_us[1])),
            spontaneous_per_min=float(rate), response_gain=float(math.exp(p.amplitude_log_sd * loaded(z_amp))),
            speed=float(math.exp(p.speed_log_sd * loaded(z_speed))), habituation_factor=float(min(1.0, hab)),
            response_threshold=float(cfg.response_threshold - p.threshold_sd * loaded(z_thr)) if responder
            else math.inf))
    return out
