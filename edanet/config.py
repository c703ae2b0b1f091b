"""``EDANetConfig``: every size of the model, the derived quantities, and named presets.

Derivation of the layers from the requested context:

- frame rate ``= audio_sample_rate / mfcc_hop_size`` frames per second;
  ``K = spectral_frames_per_eda_step = frame_rate / eda_sample_rate`` (must be an integer).
- target ``R = ceil(context_size_in_seconds * frame_rate)`` frames.
- a stack of ``L`` layers with dilations ``1, 2, ..., 2**(L-1)`` sees ``2**L - 1`` frames back;
  ``S`` stacks *add* their fields (they do not multiply), and the output conv over a group of
  K frames adds ``K - 1``: reached field ``= S * (2**L - 1) + 1 + (K - 1)`` frames.
- ``L`` is the smallest number of layers for which one stack reaches ``R``, capped at
  ``max_layers_per_stack``; ``S`` is then the fewest stacks that reach ``R``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field

__all__ = ["EDANetConfig", "PRESETS", "check_known_fields", "AUDIO_RATES", "EDA_RATES", "MAX_EDA_US",
           "COMPANDINGS", "REPRESENTATIONS", "FRAME_FEATURES"]

# Plausible ranges of the signals edanet reads, as (lowest, highest, kind). Audio: from 1 kHz
# (below telephone band, which is 8 kHz) to 384 kHz (the highest studio rate). EDA: from a slow
# logger's 0.5 Hz to a lab amplifier's 10 kHz. Outside them a rate is a damaged header or a
# wrong unit, and resampling from it would run for minutes or allocate without bound.
AUDIO_RATES = (1000.0, 384000.0, "audio")
EDA_RATES = (0.5, 10000.0, "EDA")
#: Skin conductance is about 0.01-100 µS; a value beyond this is no measurement in µS.
MAX_EDA_US = 1000.0

# Plausible ranges of the model's sizes, far above any useful model. Whether the engines can run
# a config is asked of them where a model is exported (edanet.generation.check_network).
MAX_MODEL_CHANNELS = 4096        # residual, hidden, skip, head and embedding channels
MAX_EDA_CLASSES = 65536          # quantization_bins: a categorical over 16-bit values at most
MAX_AUDIO_CHANNELS = 64          # in_channels: audio channels (16 for 3rd-order ambisonics)
MAX_MELS = 1024                  # num_mels, and so num_mfccs
MAX_WINDOW = 65536               # mfcc_window_size and mfcc_hop_size, samples
# fastgen's largest dilation is 2**20 frames; a stack's last layer has dilation 2**(L-1)
MAX_LAYERS_PER_STACK = 21
MAX_CONTEXT_SECONDS = 3600.0     # an hour: 30x the small preset's 120 s
MAX_C0_REF_DB = 200.0            # c0_ref_db in [-200, 200] dB (power_to_db's floor is -80 dB)
MAX_SUBJECT_DIM = 64             # subject_dim: a few numbers describe a person's electrodermal traits
MAX_SUBJECTS = 1_000_000         # subject_count: the people of a very large study

_INT_RANGES = {  # field -> (lowest, highest, what it is)
    "num_mfccs": (1, MAX_MELS, "MFCC coefficients"),
    "audio_sample_rate": (math.ceil(AUDIO_RATES[0]), math.floor(AUDIO_RATES[1]), "audio sample rate, Hz"),
    "eda_sample_rate": (math.ceil(EDA_RATES[0]), math.floor(EDA_RATES[1]), "EDA sample rate, Hz"),
    "mfcc_window_size": (1, MAX_WINDOW, "samples per MFCC window"),
    "mfcc_hop_size": (1, MAX_WINDOW, "samples between MFCC frames"),
    "in_channels": (1, MAX_AUDIO_CHANNELS, "audio channels"),
    "residual_channels": (1, MAX_MODEL_CHANNELS, "residual channels"),
    "hidden_channels": (1, MAX_MODEL_CHANNELS, "hidden channels"),
    "skip_channels": (1, MAX_MODEL_CHANNELS, "skip channels"),
    "out_channels": (1, MAX_MODEL_CHANNELS, "head channels"),
    "quantization_bins": (2, MAX_EDA_CLASSES, "EDA classes"),
    "max_layers_per_stack": (1, MAX_LAYERS_PER_STACK, "layers per stack"),
    "cond_channels": (1, MAX_MODEL_CHANNELS, "EDA class embedding width"),
    "num_mels": (1, MAX_MELS, "mel bands"),
    "subject_dim": (0, MAX_SUBJECT_DIM, "subject vector width (0: none)"),
    "subject_count": (0, MAX_SUBJECTS, "subjects in the subject table"),
}
_FLOAT_RANGES = {  # field -> (lowest, highest, what it is, whether None is allowed); "(" = lowest excluded
    "context_size_in_seconds": ("(", 0.0, MAX_CONTEXT_SECONDS, "s", False),
    "c0_ref_db": ("[", -MAX_C0_REF_DB, MAX_C0_REF_DB, "dB", False),
    "delta_range_us": ("(", 0.0, MAX_EDA_US, "µS", False),
    "initial_eda_us": ("[", 0.0, MAX_EDA_US, "µS", True),
    "subject_level_log_sd": ("[", 0.0, 5.0, "log-units", False),
}


def _shown(v, limit: int = 60) -> str:
    """``repr(v)`` cut to ``limit`` characters: a hostile value (an int of 5000 digits, a list
    nested 900 deep) must not make the error message itself fail or run on for pages."""
    try:
        text = repr(v)
    except (ValueError, RecursionError):
        return f"a {type(v).__name__} too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_int(name: str, v, lo: int, hi: int, what: str) -> None:
    """ValueError unless ``v`` is an int (not a bool) in ``[lo, hi]``."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        kind = "a positive integer" if lo == 1 else "an integer"
        raise ValueError(f"EDANetConfig.{name} ({what}) must be {kind} in [{lo}, {hi}], got {_shown(v)}")


def _check_float(name: str, v, bracket: str, lo: float, hi: float, unit: str, allow_none: bool) -> float:
    """``v`` as a float, or a ValueError unless it is a real number (not a bool) in the range
    (compared before converting: an int of 400 digits must not overflow float())."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v \
        and (lo < v if bracket == "(" else lo <= v) and v <= hi
    if not ok:
        none = ", or null" if allow_none else ""
        raise ValueError(f"EDANetConfig.{name} must be a finite number in {bracket}{lo:g}, {hi:g}] {unit}{none}, "
                         f"got {_shown(v)}")
    return float(v)


def check_known_fields(cls, d: dict) -> None:
    """ValueError naming any key of ``d`` that is not a field of dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(names)}")

COMPANDINGS = ("mu_law", "linear")
REPRESENTATIONS = ("delta", "normalized")
FRAME_FEATURES = ("loudness", "onset_strength")

# Fields added after configs were first saved, and the value a config saved before each
# existed meant: c0 had no reference level, so old models keep their features with 0.0; the
# classes were per-recording normalized levels (edanet.representation).
LEGACY_DEFAULTS = {"c0_ref_db": 0.0, "eda_representation": "normalized", "delta_range_us": 1.0,
                   "initial_eda_us": None, "audio_input": True, "frame_features": (),
                   "per_coefficient_input": False, "subject_dim": 0, "subject_count": 0,
                   "subject_level_log_sd": 0.0}


@dataclass(frozen=True)
class EDANetConfig:
    context_size_in_seconds: float = 16.0
    num_mfccs: int = 8
    audio_sample_rate: int = 16000
    eda_sample_rate: int = 4
    mfcc_window_size: int = 2048          # n_fft, samples
    mfcc_hop_size: int = 1000             # samples between frames
    in_channels: int = 1
    residual_channels: int = 16
    hidden_channels: int = 16
    skip_channels: int = 32
    out_channels: int = 32
    quantization_bins: int = 256
    companding: str = "mu_law"
    # how µS become classes (edanet.representation): "delta" = the change from the previous
    # value, mu-law over +-delta_range_us; "normalized" = legacy per-recording [-1, 1] levels
    eda_representation: str = "delta"
    delta_range_us: float = 1.0           # largest change one EDA step can make (µS)
    # level the first step starts from (µS); None until training sets it to the median first
    # value of the training recordings
    initial_eda_us: float | None = None
    # False: the model is given silence whatever the audio (the audio-agnostic baseline model)
    audio_input: bool = True
    # channels beside the MFCCs, each the same at every coefficient position (edanet.audio):
    # "loudness" (the frame's RMS level: no single MFCC carries it) and "onset_strength" (how
    # steeply the level rises within the frame, which 62.5 ms MFCC frames blur)
    frame_features: tuple[str, ...] = ()
    # an input projection of its own for every MFCC coefficient (else one shared by all)
    per_coefficient_input: bool = False
    max_layers_per_stack: int = 9
    cond_channels: int = 16               # width of the EDA class embedding
    num_mels: int = 40                    # mel bands the MFCCs are computed from
    # mean log-mel level (dB) that MFCC c0 reads as 0 (edanet.audio); configs saved before this
    # field existed were trained with c0 unshifted and load with 0.0 (see LEGACY_DEFAULTS)
    c0_ref_db: float = -40.0
    # "normalized" models only: the µS range their [-1, 1] output is mapped to by default
    default_eda_range_us: tuple[float, float] = field(default=(2.0, 8.0))
    # Who the EDA is of: a learned vector per training subject (``subject_dim`` wide, 0: none),
    # fed to the network beside the frames, constant over a sequence, so a generated sample
    # stays one person; training sets the table's size (``subject_count``) and the spread of a
    # subject's start levels between its recordings (``subject_level_log_sd``, log-units).
    subject_dim: int = 0
    subject_count: int = 0
    subject_level_log_sd: float = 0.0

    def __post_init__(self) -> None:
        """Refuse implausible values before anything is derived or built: each field against its
        range, then the frame ratio. (Whether the engines can run the network, and the memory
        of its parameters, is checked where a model is made ready to generate or train:
        ``edanet.generation.check_network``.)"""
        self._check_fields()
        self._check_frame_ratio()

    def _check_fields(self) -> None:
        """Every field's type and range (the ``_INT_RANGES`` / ``_FLOAT_RANGES`` tables)."""
        for name, (lo, hi, what) in _INT_RANGES.items():
            _check_int(name, getattr(self, name), lo, hi, what)
        for name, (bracket, lo, hi, unit, allow_none) in _FLOAT_RANGES.items():
            v = getattr(self, name)
            if v is None and allow_none:
                continue
            object.__setattr__(self, name, _check_float(name, v, bracket, lo, hi, unit, allow_none))
        self._check_choices()
        self._check_eda_range()
        if self.num_mfccs > self.num_mels:
            raise ValueError(f"num_mfccs ({self.num_mfccs}) cannot exceed num_mels ({self.num_mels})")
        if self.subject_count > 0 and self.subject_dim == 0:
            raise ValueError(f"subject_count ({self.subject_count}) needs subject_dim > 0: a table of subjects "
                             "needs vectors to hold")
        if self.mfcc_window_size < self.mfcc_hop_size:
            raise ValueError(f"mfcc_window_size ({self.mfcc_window_size}) must be >= mfcc_hop_size "
                             f"({self.mfcc_hop_size}) so that frames cover all the audio")

    def _check_choices(self) -> None:
        """The named options and the flags."""
        ff = self.frame_features
        if isinstance(ff, str) or not isinstance(ff, (tuple, list)) \
                or not all(isinstance(x, str) and x in FRAME_FEATURES for x in ff) or len(set(ff)) != len(ff):
            raise ValueError(f"EDANetConfig.frame_features must be a list of distinct names from {FRAME_FEATURES}, "
                             f"got {_shown(ff)}")
        object.__setattr__(self, "frame_features", tuple(ff))
        for name in ("audio_input", "per_coefficient_input"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"EDANetConfig.{name} must be true or false, got {_shown(getattr(self, name))}")
        for name, choices in (("eda_representation", REPRESENTATIONS), ("companding", COMPANDINGS)):
            v = getattr(self, name)
            if not isinstance(v, str) or v not in choices:
                raise ValueError(f"EDANetConfig.{name} must be one of {choices}, got {_shown(v)}")

    def _check_eda_range(self) -> None:
        """default_eda_range_us: two numbers 0 <= lo < hi <= MAX_EDA_US."""
        r = self.default_eda_range_us
        if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) != 2 \
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in r):
            raise ValueError(f"EDANetConfig.default_eda_range_us must be two numbers [lo, hi] in µS, got {_shown(r)}")
        lo, hi = r
        if not (0 <= lo < hi <= MAX_EDA_US):
            raise ValueError(f"default_eda_range_us must be (lo, hi) with 0 <= lo < hi <= {MAX_EDA_US:g} µS "
                             f"(skin conductance levels), got {_shown(tuple(r))}")
        object.__setattr__(self, "default_eda_range_us", (float(lo), float(hi)))

    def _check_frame_ratio(self) -> None:
        """Every EDA sample must span a whole number of MFCC frames."""
        step = self.eda_sample_rate * self.mfcc_hop_size
        if self.audio_sample_rate % step:
            valid = [h for h in range(1, self.audio_sample_rate // self.eda_sample_rate + 1)
                     if self.audio_sample_rate % (self.eda_sample_rate * h) == 0]
            near = sorted(valid, key=lambda h: abs(h - self.mfcc_hop_size))[:6]
            raise ValueError(
                f"audio_sample_rate / (eda_sample_rate * mfcc_hop_size) = {self.audio_sample_rate} / "
                f"({self.eda_sample_rate} * {self.mfcc_hop_size}) is not an integer: every EDA sample must "
                f"span a whole number of MFCC frames. Hop sizes that work near {self.mfcc_hop_size}: "
                f"{sorted(near)}")

    @property
    def parameter_counts(self) -> dict[str, int]:
        """Parameters of ``EDANet(config)`` by part (their sum is the model's parameter count),
        computed from the sizes alone."""
        C, Fn, Q, E = self.model_channels, self.num_mfccs, self.quantization_bins, self.cond_channels
        Cr, Ch, Cs, Co = self.residual_channels, self.hidden_channels, self.skip_channels, self.out_channels
        n = len(self.dilations)
        # per layer: tap_past (+bias), tap_now, cond (+bias), skip (+bias); all but the last: residual
        layer = 2 * Cr * 2 * Ch + 2 * Ch + E * 2 * Ch + 2 * Ch + Ch * Cs + Cs
        return {
            "input": (Fn if self.per_coefficient_input else 1) * (C * Cr + Cr),
            "embedding": (Q + 1) * E,
            "layers": n * layer + (n - 1) * (Ch * Cr + Cr),
            "head": Cs * Co + Co + Co * Co + Co,
            "output conv": self.spectral_frames_per_eda_step * Fn * Co * Q + Q,
            "subjects": max(1, self.subject_count) * self.subject_dim if self.subject_dim else 0,  # a row at least
        }

    # -- derived ------------------------------------------------------------------------------
    @property
    def spectral_frames_per_eda_step(self) -> int:
        """K: MFCC frames per EDA sample."""
        return self.audio_sample_rate // (self.eda_sample_rate * self.mfcc_hop_size)

    @property
    def feature_channels(self) -> int:
        """Channels of the model's input frames: the audio channels' MFCCs, then the frame features."""
        return self.in_channels + len(self.frame_features)

    @property
    def model_channels(self) -> int:
        """Channels the network reads per frame and position: the frames' (``feature_channels``),
        then the subject vector's (``subject_dim``), the same at every frame of a sequence."""
        return self.feature_channels + self.subject_dim

    @property
    def frame_rate(self) -> float:
        return self.audio_sample_rate / self.mfcc_hop_size

    @property
    def target_receptive_field_frames(self) -> int:
        return max(1, math.ceil(self.context_size_in_seconds * self.frame_rate - 1e-9))

    @property
    def layers_per_stack(self) -> int:
        R, K = self.target_receptive_field_frames, self.spectral_frames_per_eda_step
        L = 1
        while L < self.max_layers_per_stack and (2 ** L - 1) + K < R:
            L += 1
        return L

    @property
    def num_stacks(self) -> int:
        R, K, per = self.target_receptive_field_frames, self.spectral_frames_per_eda_step, 2 ** self.layers_per_stack - 1
        return max(1, math.ceil((R - K) / per))

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(2 ** i for _ in range(self.num_stacks) for i in range(self.layers_per_stack))

    @property
    def receptive_field_frames(self) -> int:
        return self.num_stacks * (2 ** self.layers_per_stack - 1) + 1 + self.spectral_frames_per_eda_step - 1

    @property
    def receptive_field_seconds(self) -> float:
        return self.receptive_field_frames / self.frame_rate

    @property
    def start_class(self) -> int:
        """Conditioning class of the first step (no previous EDA value): an extra embedding row."""
        return self.quantization_bins

    # -- presets and JSON ---------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "EDANetConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        check_known_fields(cls, overrides)      # a ValueError, not replace()'s TypeError
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["default_eda_range_us"] = list(self.default_eda_range_us)
        d["frame_features"] = list(self.frame_features)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "EDANetConfig":
        """A saved config: every field must be given. A default filled in for a missing field
        would silently change the model (e.g. mu_law instead of the linear companding it was
        trained with); only fields added after configs were first saved have a legacy value."""
        check_known_fields(cls, d)
        d = {**LEGACY_DEFAULTS, **d}
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(d))
        if missing:
            raise ValueError(f"config lacks fields {missing}: a saved config must give every field "
                             f"(edanet.save_model writes complete ones); add them with the values the model "
                             f"was trained with")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "EDANetConfig":
        try:
            d = json.loads(text)
        except RecursionError:
            # a file of a million "[": nesting no config has (its values are numbers, strings and
            # flat lists), which the JSON parser cannot follow
            raise ValueError("config is not an EDANet config: its JSON is nested too deeply") from None
        except ValueError as e:     # JSONDecodeError, or an integer of more than 4300 digits
            raise ValueError(f"config is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError("config JSON must be an object")
        return cls.from_dict(d)


PRESETS: dict[str, EDANetConfig] = {
    # Tests: 8 kHz audio, 16 frames/s, K=4, two stacks of 3 layers.
    "tiny": EDANetConfig(context_size_in_seconds=1.0, num_mfccs=5, audio_sample_rate=8000,
                         mfcc_window_size=512, mfcc_hop_size=500, residual_channels=8, hidden_channels=8,
                         skip_channels=8, out_channels=8, quantization_bins=16, max_layers_per_stack=3,
                         cond_channels=4, num_mels=20),
    # The bundled default model (trains on a 2-core CPU in under two hours). Its EDA classes are
    # changes (delta, mu-law over +-1 µS: under 0.001 µS near no change, 0.01 µS at 0.3 µS a step).
    # A 120 s context (one stack of 11 layers, 128 s) sees every sound of a 2-minute recording,
    # as habituation needs; a loudness and an onset-strength channel and an input projection per
    # coefficient carry what the response depends on (the README's table of what was tried); a
    # 4-number subject vector per training subject makes each generated sample one person.
    "small": EDANetConfig(context_size_in_seconds=120.0, num_mfccs=8, audio_sample_rate=16000,
                          mfcc_window_size=2048, mfcc_hop_size=1000, residual_channels=16, hidden_channels=16,
                          skip_channels=32, out_channels=32, quantization_bins=256, companding="mu_law",
                          eda_representation="delta", delta_range_us=1.0, max_layers_per_stack=11,
                          cond_channels=16, frame_features=("loudness", "onset_strength"),
                          per_coefficient_input=True, subject_dim=4),
    # A larger network for a GPU (and the GPU benchmarks' shape): 20 mfccs, 64 channels, 32 s
    # context (two stacks of 9 layers); MFCC input only.
    "base": EDANetConfig(context_size_in_seconds=32.0, num_mfccs=20, audio_sample_rate=16000,
                         mfcc_window_size=2048, mfcc_hop_size=500, residual_channels=64, hidden_channels=64,
                         skip_channels=128, out_channels=128, quantization_bins=256, max_layers_per_stack=9,
                         cond_channels=32, num_mels=64),
}
