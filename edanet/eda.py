"""EDA (skin conductance, µS) reading, validation, resampling and normalization.

CSV formats read by :func:`read_eda_csv` (the two that :func:`edanet.io.write_eda_csv` writes):

- **Empatica E4** ``EDA.csv``: row 1 the start Unix time, row 2 the sample rate in Hz, then one
  value (µS) a row. Rows with several comma-separated columns (multi-column E4 exports) are
  accepted; the first column is used.
- **time,eda**: a header row naming a ``time`` column (seconds) and an ``eda`` column (µS), in
  any order, other columns ignored (names are case-insensitive). The sample rate is inferred
  from the time steps: the steps must be regular (every step within 1% of the median step,
  otherwise resample the data to a constant rate first) and the rate is
  ``(n - 1) / (t[-1] - t[0])`` (the mean step, which equals the median step within that 1%),
  snapped to the nearest integer when within 1e-4 of it (undoing the rounding of written times).

More layouts (a CSV with one column per subject, Empatica EmbracePlus ``.avro``) are read by
:mod:`edanet.eda_formats`.

Normalization (:class:`Normalization`) is per recording and invertible: ``[lo, hi]`` µS maps
affinely onto ``[-1, 1]``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .audio import check_sample_rate
from .config import EDA_RATES, MAX_EDA_US
from .io import check_regular_file

__all__ = ["EDARecording", "Normalization", "read_eda_csv", "rate_from_times", "validate_eda", "resample_eda",
           "load_eda"]

#: A time column may deviate from its median step by this fraction before it counts as irregular.
MAX_TIME_JITTER = 0.01


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
                         f"at index {i}); {_NOT_US}")
    return v


# -- CSV reading ----------------------------------------------------------------------------------

def _cells(line: str) -> list[str]:
    return [c.strip().strip('"').strip("'").strip() for c in line.split(",")]


# why a level above MAX_EDA_US is refused
_NOT_US = "skin conductance is about 0.01-100 µS, so this is not µS (another unit, e.g. nS?)"


def _number(text: str, path: str, row: int, what: str, *, allow_negative: bool = False,
            maximum: float | None = None) -> float:
    """The number in cell ``text`` of CSV row ``row``: ValueError naming the file, the row and
    ``what`` unless it is finite, >= 0 (unless ``allow_negative``) and <= ``maximum`` (if given)."""
    try:
        x = float(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"{path}: row {row}: {what} {shown!r} is not a number") from None
    if math.isnan(x):
        raise ValueError(f"{path}: row {row}: {what} is NaN")
    if math.isinf(x):
        raise ValueError(f"{path}: row {row}: {what} is infinite")
    if x < 0 and not allow_negative:
        raise ValueError(f"{path}: row {row}: {what} {x:g} is negative; skin conductance is >= 0 µS")
    if maximum is not None and x > maximum:
        raise ValueError(f"{path}: row {row}: {what} {x:g} is above {maximum:g} µS; {_NOT_US}")
    return x


def _read_lines(path: Path) -> list[str]:
    check_regular_file(path, "EDA file")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise ValueError(f"{path}: is not a text CSV file (binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are fine
        lines.pop()
    return lines


def _check_blank(lines: list[str], path: Path, start: int) -> None:
    for i in range(start, len(lines)):
        if not lines[i].strip():
            raise ValueError(f"{path}: row {i + 1} is empty (a missing value)")


def _read_e4(lines: list[str], path: Path) -> EDARecording:
    if len(lines) < 3:
        raise ValueError(f"{path}: an Empatica E4 EDA file needs at least 3 rows (start Unix time, sample rate "
                         f"in Hz, then one µS value a row); found {len(lines)} row(s)")
    _check_blank(lines, path, 0)
    start = _number(_cells(lines[0])[0], path, 1, "start time", allow_negative=True)
    rate = _number(_cells(lines[1])[0], path, 2, "sample rate", allow_negative=True)
    if rate <= 0:
        raise ValueError(f"{path}: row 2: sample rate {rate:g} Hz must be > 0")
    check_sample_rate(rate, f"{path}: row 2: sample rate", EDA_RATES)
    values = np.array([_number(_cells(lines[i])[0], path, i + 1, "EDA value", maximum=MAX_EDA_US)
                       for i in range(2, len(lines))], dtype=np.float64)
    return EDARecording(values, rate, start)


def _read_time_eda(lines: list[str], path: Path, header: list[str]) -> EDARecording:
    names = [h.lower() for h in header]
    ti, ei = names.index("time"), names.index("eda")
    need = max(ti, ei) + 1
    _check_blank(lines, path, 1)
    if len(lines) < 2:
        raise ValueError(f"{path}: no data rows after the header (row 1)")
    t = np.empty(len(lines) - 1)
    v = np.empty(len(lines) - 1)
    for i in range(1, len(lines)):
        cells = _cells(lines[i])
        if len(cells) < need:
            raise ValueError(f"{path}: row {i + 1} has {len(cells)} column(s) but the header names {need} "
                             f"(time is column {ti + 1}, eda column {ei + 1})")
        t[i - 1] = _number(cells[ti], path, i + 1, "time", allow_negative=True)
        v[i - 1] = _number(cells[ei], path, i + 1, "EDA value", maximum=MAX_EDA_US)
    return EDARecording(v, rate_from_times(t, path), float(t[0]))


def rate_from_times(t: np.ndarray, path: str | os.PathLike, first_row: int = 2) -> float:
    """The sample rate (Hz) of a time column ``t`` (seconds; its first value in CSV row
    ``first_row``, 1-based): ``ValueError`` naming ``path`` and the row when it has fewer than 2
    values, does not strictly increase or is irregular (a step more than ``MAX_TIME_JITTER`` off
    the median), or gives a rate outside :data:`edanet.config.EDA_RATES`. A rate within 1e-4 of an
    integer is snapped to it (times written with few decimals)."""
    if t.size < 2:
        raise ValueError(f"{path}: only one data row; at least 2 are needed to infer the sample rate from the "
                         f"time column")
    with np.errstate(over="ignore"):        # times of +-1e308: refused below, without a warning
        dt = np.diff(t)
    if not np.isfinite(dt).all() or not math.isfinite(float(t[-1]) - float(t[0])):
        raise ValueError(f"{path}: the time column spans {t[0]:g} to {t[-1]:g} s: its steps are too large to be "
                         f"a sample rate")
    nonpos = dt <= 0
    if nonpos.any():
        i = int(np.argmax(nonpos))
        raise ValueError(f"{path}: row {i + first_row + 1}: time {t[i + 1]:g} s does not increase after {t[i]:g} s "
                         f"(the time column must be strictly increasing)")
    med = float(np.median(dt))
    dev = np.abs(dt - med)
    if (dev > MAX_TIME_JITTER * med).any():
        i = int(np.argmax(dev))
        raise ValueError(f"{path}: irregular timestamps: the step before row {i + first_row + 1} is {dt[i]:g} s "
                         f"but the median step is {med:g} s (more than {MAX_TIME_JITTER:.0%} off); resample the "
                         f"EDA to a constant sample rate first")
    rate = (t.size - 1) / float(t[-1] - t[0])
    check_sample_rate(rate, f"{path}: the time column's sample rate", EDA_RATES)
    if abs(rate - round(rate)) <= 1e-4 * rate and round(rate) > 0:
        rate = float(round(rate))
    return rate


def read_eda_csv(path: str | os.PathLike, *, sample_rate: float | None = None) -> EDARecording:
    """Read an EDA CSV (Empatica E4 or ``time,eda``; detected from the first row) into an
    :class:`EDARecording` (µS, float64).

    ``sample_rate`` (optional): the rate the caller expects; if the file's rate (E4 row 2, or
    the rate implied by the time column) disagrees by more than 1%, ``ValueError``.

    Errors: ``FileNotFoundError`` for a missing file; ``ValueError`` naming the file (and the
    row, 1-based, where there is one) for an empty file, an unrecognized first row, an E4 file
    with fewer than 3 rows, non-numeric, NaN, infinite or negative values or values above
    :data:`edanet.config.MAX_EDA_US`, a sample rate (row 2, or the time column's) outside
    :data:`edanet.config.EDA_RATES`, a non-increasing or irregular time column, a time column that
    disagrees with ``sample_rate``, or no data rows.
    """
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"{path}: the EDA file is empty")
    first = _cells(lines[0])
    names = [c.lower() for c in first]
    if "time" in names and "eda" in names:
        rec = _read_time_eda(lines, path, first)
        kind = "time column"
    else:
        try:
            float(first[0])
        except ValueError:
            raise ValueError(f"{path}: row 1 {lines[0][:60]!r} is neither an Empatica E4 start time nor a header "
                             f"with 'time' and 'eda' columns") from None
        rec = _read_e4(lines, path)
        kind = "sample rate in row 2"
    if rec.values.size == 0:
        raise ValueError(f"{path}: no data rows")
    if sample_rate is not None:
        want = check_sample_rate(sample_rate, "sample_rate", EDA_RATES)
        if abs(rec.sample_rate - want) > 0.01 * want:
            raise ValueError(f"{path}: the {kind} gives {rec.sample_rate:g} Hz but a sample rate of {want:g} Hz "
                             f"was given")
    return rec


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


# -- loading --------------------------------------------------------------------------------------

def load_eda(path: str | os.PathLike, target_rate: float | None) -> EDARecording:
    """Read an EDA CSV, validate it and resample it to ``target_rate`` Hz (None: keep the file's rate)."""
    rec = read_eda_csv(path)
    validate_eda(rec.values, name=str(path))
    return rec.at_rate(target_rate)
