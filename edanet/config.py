"""``EDANetConfig``: every size of the model, the derived quantities, and named presets.

Derivation of the layers from the requested context (SPEC §2):

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

__all__ = ["EDANetConfig", "PRESETS", "check_known_fields"]


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
                   "per_coefficient_input": False}


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

    def __post_init__(self) -> None:
        r = self.default_eda_range_us
        if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) != 2 \
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in r):
            raise ValueError(f"EDANetConfig.default_eda_range_us must be two numbers [lo, hi] in µS, got {r!r}")
        object.__setattr__(self, "default_eda_range_us", tuple(float(v) for v in r))
        ints = ("num_mfccs", "audio_sample_rate", "eda_sample_rate", "mfcc_window_size", "mfcc_hop_size",
                "in_channels", "residual_channels", "hidden_channels", "skip_channels", "out_channels",
                "quantization_bins", "max_layers_per_stack", "cond_channels", "num_mels")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"EDANetConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.context_size_in_seconds, (int, float)) and self.context_size_in_seconds > 0
                and math.isfinite(self.context_size_in_seconds)):
            raise ValueError(f"EDANetConfig.context_size_in_seconds must be a positive number, "
                             f"got {self.context_size_in_seconds!r}")
        if isinstance(self.c0_ref_db, bool) or not isinstance(self.c0_ref_db, (int, float)) \
                or not math.isfinite(self.c0_ref_db):
            raise ValueError(f"EDANetConfig.c0_ref_db must be a finite number (dB), got {self.c0_ref_db!r}")
        object.__setattr__(self, "c0_ref_db", float(self.c0_ref_db))
        ff = self.frame_features
        if isinstance(ff, str) or not isinstance(ff, (tuple, list)) or not set(ff) <= set(FRAME_FEATURES) \
                or len(set(ff)) != len(ff):
            raise ValueError(f"EDANetConfig.frame_features must be a list of distinct names from {FRAME_FEATURES}, "
                             f"got {ff!r}")
        object.__setattr__(self, "frame_features", tuple(ff))
        for name in ("audio_input", "per_coefficient_input"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"EDANetConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.eda_representation not in REPRESENTATIONS:
            raise ValueError(f"EDANetConfig.eda_representation must be one of {REPRESENTATIONS}, "
                             f"got {self.eda_representation!r}")
        for name, allow_none in (("delta_range_us", False), ("initial_eda_us", True)):
            v = getattr(self, name)
            if v is None and allow_none:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0) \
                    or (name == "delta_range_us" and v == 0):
                raise ValueError(f"EDANetConfig.{name} must be a finite number of µS "
                                 f"({'> 0' if name == 'delta_range_us' else '>= 0, or None'}), got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.companding not in COMPANDINGS:
            raise ValueError(f"EDANetConfig.companding must be one of {COMPANDINGS}, got {self.companding!r}")
        if self.quantization_bins < 2:
            raise ValueError(f"EDANetConfig.quantization_bins must be >= 2, got {self.quantization_bins}")
        if self.num_mfccs > self.num_mels:
            raise ValueError(f"num_mfccs ({self.num_mfccs}) cannot exceed num_mels ({self.num_mels})")
        if self.mfcc_window_size < self.mfcc_hop_size:
            raise ValueError(f"mfcc_window_size ({self.mfcc_window_size}) must be >= mfcc_hop_size "
                             f"({self.mfcc_hop_size}) so that frames cover all the audio")
        lo, hi = self.default_eda_range_us
        if not (0 <= lo < hi):
            raise ValueError(f"default_eda_range_us must be (lo, hi) with 0 <= lo < hi µS, got {(lo, hi)}")
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
    def audio_time_steps_per_spectral_frame(self) -> int:
        return self.mfcc_hop_size

    @property
    def frame_rate(self) -> float:
        return self.audio_sample_rate / self.mfcc_hop_size

    @property
    def upsampling_factor(self) -> int:
        """Each EDA value is held for K frames (conditioning)."""
        return self.spectral_frames_per_eda_step

    @property
    def downsampling_factor(self) -> int:
        """The output conv turns each group of K frames into one EDA step."""
        return self.spectral_frames_per_eda_step

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
        except json.JSONDecodeError as e:
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
    # coefficient carry what the response depends on (the README's table of what was tried).
    "small": EDANetConfig(context_size_in_seconds=120.0, num_mfccs=8, audio_sample_rate=16000,
                          mfcc_window_size=2048, mfcc_hop_size=1000, residual_channels=16, hidden_channels=16,
                          skip_channels=32, out_channels=32, quantization_bins=256, companding="mu_law",
                          eda_representation="delta", delta_range_us=1.0, max_layers_per_stack=11,
                          cond_channels=16, frame_features=("loudness", "onset_strength"),
                          per_coefficient_input=True),
    # A larger network for a GPU (and the GPU benchmarks' shape): 20 mfccs, 64 channels, 32 s
    # context (two stacks of 9 layers); MFCC input only.
    "base": EDANetConfig(context_size_in_seconds=32.0, num_mfccs=20, audio_sample_rate=16000,
                         mfcc_window_size=2048, mfcc_hop_size=500, residual_channels=64, hidden_channels=64,
                         skip_channels=128, out_channels=128, quantization_bins=256, max_layers_per_stack=9,
                         cond_channels=32, num_mels=64),
}
