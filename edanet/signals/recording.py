"""EDA recordings in memory: :class:`EDARecording` (µS at a rate, with a start time), their
checks (:func:`validate_eda`), resampling (:func:`resample_eda`) and the legacy per-recording
normalization (:class:`Normalization`: ``[lo, hi]`` µS maps affinely onto ``[-1, 1]``,
invertibly). Files are read by :mod:`edanet.signals.files`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..config import EDA_RATES, MAX_EDA_US
from ..features.audio import check_sample_rate

__all__ = ["EDARecording", "Normalization", "validate_eda", "resample_eda", "NOT_MICROSIEMENS"]

#: Why a value above the plausible range is refused.
NOT_MICROSIEMENS = "skin conductance is about 0.01-100 µS, so this is not µS (another unit, e.g. nS?)"


@dataclass
class EDARecording:
    """EDA values in µS (float64, 1-D) at ``sample_rate`` Hz; ``start_time`` in seconds (Unix
    time for E4 files, the first time stamp for time,eda files) or None when unknown."""
    values: np.ndarray
    sample_rate: float
    start_time: float | None = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        self.sample_rate = float(self.sample_rate)

    @property
    def duration(self) -> float:
        """Length in seconds: ``len(values) / sample_rate``."""
        return self.values.size / self.sample_rate

    def __len__(self) -> int:
        return int(self.values.size)

    def at_rate(self, target_rate: float | None) -> "EDARecording":
        """This recording resampled to ``target_rate`` Hz (:func:`resample_eda`; None, or the same
        rate: the values unchanged), with the same start time."""
        if target_rate is None:
            return self
        target = check_sample_rate(target_rate, "target_rate", EDA_RATES)
        if abs(self.sample_rate - target) <= 1e-9 * target:
            return EDARecording(self.values, target, self.start_time)
        return EDARecording(resample_eda(self.values, self.sample_rate, target), target, self.start_time)


def validate_eda(values: Any, name: str = "EDA") -> np.ndarray:
    """Check EDA values (µS) and return them as a float64 array: ``ValueError`` when empty,
    non-numeric, NaN, infinite, negative (skin conductance is >= 0 µS) or above
    :data:`edanet.config.MAX_EDA_US` (no skin conductance: another unit, or garbage)."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: values must be numbers (µS)") from None
    if v.size == 0:
        raise ValueError(f"{name} is empty: no EDA values")
    flat = v.reshape(-1)
    nan = np.isnan(flat)
    if nan.any():
        raise ValueError(f"{name} contains {int(nan.sum())} NaN value(s) (first at index {int(np.argmax(nan))})")
    inf = np.isinf(flat)
    if inf.any():
        raise ValueError(f"{name} contains {int(inf.sum())} infinite value(s) (first at index {int(np.argmax(inf))})")
    neg = flat < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise ValueError(f"{name} contains {int(neg.sum())} negative value(s) (first: {flat[i]:g} µS at index {i}); "
                         f"skin conductance is >= 0 µS")
    high = flat > MAX_EDA_US
    if high.any():
        i = int(np.argmax(high))
        raise ValueError(f"{name} contains {int(high.sum())} value(s) above {MAX_EDA_US:g} µS (first: {flat[i]:g} "
                         f"at index {i}); {NOT_MICROSIEMENS}")
    return v


# -- CSV reading ----------------------------------------------------------------------------------

# -- resampling -----------------------------------------------------------------------------------

def _rational(ratio: float, max_den: int = 1000) -> Fraction | None:
    f = Fraction(ratio).limit_denominator(max_den)
    if f.numerator > 0 and abs(float(f) - ratio) <= 1e-9 * ratio:
        return f
    return None


def resample_eda(values: Any, from_rate: float, to_rate: float) -> np.ndarray:
    """Resample EDA (µS, 1-D) from ``from_rate`` to ``to_rate`` Hz; float64, clipped at >= 0.

    When ``to_rate / from_rate`` is a ratio ``up/down`` with ``down <= 1000`` (to 1e-9), it uses
    ``scipy.signal.resample_poly(x, up, down, padtype="line")`` (polyphase anti-aliased FIR;
    the ``"line"`` padding extends the signal's end trend so the µS offset does not droop at the
    edges); otherwise linear interpolation at times ``k / to_rate``. Output length
    ``ceil(n * to_rate / from_rate)``; sample ``k`` is at time ``k / to_rate`` from the start.
    """
    a = check_sample_rate(from_rate, "from_rate", EDA_RATES)
    b = check_sample_rate(to_rate, "to_rate", EDA_RATES)
    v = validate_eda(values).reshape(-1)
    if a == b:
        return v.copy()
    n = v.size
    n_out = max(1, math.ceil(n * b / a - 1e-9))
    if n < 2:
        return np.full(n_out, v[0])
    f = _rational(b / a)
    if f is not None:
        from scipy.signal import resample_poly
        out = resample_poly(v, f.numerator, f.denominator, padtype="line")[:n_out]
    else:
        t_out = np.arange(n_out) / b
        out = np.interp(t_out, np.arange(n) / a, v)
    return np.clip(out, 0.0, None)


# -- normalization --------------------------------------------------------------------------------

@dataclass
class Normalization:
    """Per-recording, invertible affine map of µS onto ``[-1, 1]``: ``lo`` -> -1, ``hi`` -> +1.

    :meth:`fit` takes the recording's min/max widened by ``margin * span`` on each side (so
    generated values can go a little beyond what was seen), with a span of at least 0.1 µS
    (a constant recording) and ``lo >= 0``. :meth:`apply` clips to ``[-1, 1]``; :meth:`invert`
    maps back (clipping its input to ``[-1, 1]``, so results lie in ``[lo, hi]``).
    """
    lo: float
    hi: float

    MIN_SPAN_US = 0.1

    def __post_init__(self) -> None:
        self.lo, self.hi = float(self.lo), float(self.hi)
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"Normalization needs finite lo < hi (µS), got lo={self.lo!r}, hi={self.hi!r}")

    @classmethod
    def fit(cls, values: Any, margin: float = 0.05) -> "Normalization":
        try:
            ok = not isinstance(margin, bool) and math.isfinite(float(margin)) and float(margin) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        margin = float(margin)
        v = validate_eda(values)
        vmin, vmax = float(v.min()), float(v.max())
        span = vmax - vmin
        lo, hi = vmin - margin * span, vmax + margin * span
        if hi - lo < cls.MIN_SPAN_US:
            mid = 0.5 * (vmin + vmax)
            lo, hi = mid - 0.5 * cls.MIN_SPAN_US, mid + 0.5 * cls.MIN_SPAN_US
        if lo < 0:  # µS are >= 0: move lo up to 0, keeping a span of at least MIN_SPAN_US
            lo, hi = 0.0, max(hi, cls.MIN_SPAN_US)
        return cls(lo, hi)

    def apply(self, values_us: Any):
        """µS -> ``2 * (x - lo) / (hi - lo) - 1``, clipped to ``[-1, 1]`` (numpy float64 or torch)."""
        x = values_us if _is_tensor(values_us) else np.asarray(values_us, dtype=np.float64)
        y = 2.0 * (x - self.lo) / (self.hi - self.lo) - 1.0
        return y.clip(-1.0, 1.0) if _is_tensor(y) else np.clip(y, -1.0, 1.0)

    def invert(self, normalized: Any):
        """``[-1, 1]`` -> µS: ``lo + (y + 1) / 2 * (hi - lo)`` (input clipped to ``[-1, 1]``)."""
        y = normalized.clip(-1.0, 1.0) if _is_tensor(normalized) else np.clip(
            np.asarray(normalized, dtype=np.float64), -1.0, 1.0)
        return self.lo + (y + 1.0) * 0.5 * (self.hi - self.lo)

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(float(d["lo"]), float(d["hi"]))


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "clip")
