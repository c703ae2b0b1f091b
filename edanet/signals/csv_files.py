"""EDA CSV files: the two single-recording forms and the subject table.

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

- **Subject table** (PMEmo's ``EDA/<id>_EDA.csv``): row 1 a header naming a time column and one
  column per subject (PMEmo: ``time(s)``, then the subjects' ids), then one row per sample.
  The time column is named ``time`` or ``t``, with an optional unit ``(s)``, ``[s]``, ``_s`` or
  ``(ms)`` (case-insensitive; seconds when none is given). The sample rate comes from it, with
  the checks of the ``time,eda`` form (:func:`rate_from_times`). Each subject column is one
  recording (:func:`read_subject_column`); its last rows may be empty (a subject recorded for
  less time), a gap before further values is refused. A header with an ``eda`` column is the
  single-recording ``time,eda`` form instead.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from ..config import EDA_RATES, MAX_EDA_US
from ..features.audio import check_sample_rate
from ..io import check_regular_file
from .recording import NOT_MICROSIEMENS, EDARecording, validate_eda

__all__ = ["read_eda_csv", "load_eda", "rate_from_times", "time_column", "header_cells", "has_eda_column",
           "subject_columns", "read_subject_column", "no_time_column"]

#: A time column may deviate from its median step by this fraction before it counts as irregular.
MAX_TIME_JITTER = 0.01


def _cells(line: str) -> list[str]:
    return [c.strip().strip('"').strip("'").strip() for c in line.split(",")]


# why a level above MAX_EDA_US is refused


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
        raise ValueError(f"{path}: row {row}: {what} {x:g} is above {maximum:g} µS; {NOT_MICROSIEMENS}")
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


# -- loading --------------------------------------------------------------------------------------

def load_eda(path: str | os.PathLike, target_rate: float | None) -> EDARecording:
    """Read an EDA CSV, validate it and resample it to ``target_rate`` Hz (None: keep the file's rate)."""
    rec = read_eda_csv(path)
    validate_eda(rec.values, name=str(path))
    return rec.at_rate(target_rate)


_TIME_NAME = re.compile(r"(?:time|t)\s*(?:[(\[]\s*(s|sec|secs|seconds|ms)\s*[)\]]|_(s|ms))?")
_TIME_NAMES_SHOWN = "time, time(s), time (ms), t"


def time_column(header: list[str]) -> tuple[int, float] | None:
    """``(index, seconds per unit)`` of the first cell of ``header`` that names a time column
    (see the module docstring), or None when none does."""
    for i, cell in enumerate(header):
        m = _TIME_NAME.fullmatch(cell.strip().lower())
        if m:
            unit = m.group(1) or m.group(2) or "s"
            return i, (1e-3 if unit == "ms" else 1.0)
    return None


def header_cells(path: Path) -> list[str] | None:
    """The cells of row 1 when it is a header (its first cell is not a number), else None (an
    E4 file, an empty or binary file, one that cannot be read). Reads row 1 only."""
    try:
        with open(path, "rb") as f:
            raw = f.readline(1 << 20)
    except OSError:
        return None
    if b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    cells = _cells(text.rstrip("\r\n"))
    if not any(cells):
        return None
    try:
        float(cells[0])
    except ValueError:
        return cells
    return None


def has_eda_column(header: list[str]) -> bool:
    return "eda" in (c.lower() for c in header)


def subject_columns(path: str | os.PathLike) -> list[str] | None:
    """The subject columns (names, in file order, each once) of a subject table, or None when
    ``path`` is not one (an E4 or ``time,eda`` file, a header without a time column, ...). Reads
    row 1 only: cheap enough to list the recordings of a whole folder."""
    header = header_cells(Path(path))
    if header is None or has_eda_column(header):
        return None
    tc = time_column(header)
    if tc is None:
        return None
    names = [c for i, c in enumerate(header) if i != tc[0] and c]
    return list(dict.fromkeys(names)) or None


def no_time_column(path: Path, header: list[str]) -> ValueError:
    shown = ", ".join(repr(c) for c in header[:6]) + (", ..." if len(header) > 6 else "")
    return ValueError(f"{path}: row 1 is a header ({shown}) without a time column: a CSV with one column per "
                      f"subject needs a time column named like {_TIME_NAMES_SHOWN} (seconds unless the unit "
                      f"says ms); one recording needs 'time' and 'eda' columns, or the Empatica E4 form (start "
                      f"time and sample rate in rows 1 and 2)")


def _column_index(path: Path, header: list[str], column: str) -> int:
    idx = [i for i, c in enumerate(header) if c == column]
    if not idx:
        shown = ", ".join(repr(c) for c in header[:8]) + (", ..." if len(header) > 8 else "")
        raise ValueError(f"{path}: no column {column!r} in row 1 (it has {shown})")
    if len(idx) > 1:
        raise ValueError(f"{path}: column {column!r} appears {len(idx)} times in row 1; subject columns need "
                         f"distinct names")
    return idx[0]


def read_subject_column(path: str | os.PathLike, column: str) -> EDARecording:
    """One column of a subject table as an :class:`EDARecording` (µS; the start time is the
    first time stamp, in seconds). ``ValueError`` naming the file (and the column and row, 1-based)
    for a missing time column or subject column, a time column that is not numeric, regular and
    increasing with a rate in :data:`edanet.config.EDA_RATES`, non-numeric, NaN, infinite, negative or
    implausibly high (above :data:`edanet.config.MAX_EDA_US`) values, or empty cells followed by values."""
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"{path}: the EDA file is empty")
    header = _cells(lines[0])
    tc = time_column(header)
    if tc is None:
        raise no_time_column(path, header)
    ti, scale = tc
    ci = _column_index(path, header, column)
    if len(lines) < 2:
        raise ValueError(f"{path}: no data rows after the header (row 1)")
    _check_blank(lines, path, 1)
    t = np.empty(len(lines) - 1)
    values, first_empty = [], None
    for r in range(1, len(lines)):
        cells, row = _cells(lines[r]), r + 1
        if len(cells) <= ti:
            raise ValueError(f"{path}: row {row} has {len(cells)} column(s) but the time column is column {ti + 1}")
        t[r - 1] = _number(cells[ti], path, row, "time", allow_negative=True) * scale
        cell = cells[ci] if ci < len(cells) else ""
        if not cell:
            first_empty = first_empty or row
            continue
        if first_empty is not None:
            raise ValueError(f"{path}: row {first_empty}: column {column!r} is empty (a missing value) but row {row} "
                             f"has a value; only a column's last rows may be empty (a shorter recording)")
        values.append(_number(cell, path, row, f"column {column!r} EDA value", maximum=MAX_EDA_US))
    if not values:
        raise ValueError(f"{path}: column {column!r} has no values")
    return EDARecording(np.array(values), rate_from_times(t, path), float(t[0]))
