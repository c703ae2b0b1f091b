"""EDA files beyond one recording a CSV: subject tables and Empatica EmbracePlus ``.avro``.

- **Subject table** (PMEmo's ``EDA/<id>_EDA.csv``): row 1 a header naming a time column and one
  column per subject (PMEmo: ``time(s)``, then the subjects' ids), then one row per sample.
  The time column is named ``time`` or ``t``, with an optional unit ``(s)``, ``[s]``, ``_s`` or
  ``(ms)`` (case-insensitive; seconds when none is given). The sample rate comes from it, with
  the checks of the ``time,eda`` form (:func:`edanet.eda.rate_from_times`). Each subject column
  is one recording; its last rows may be empty (a subject recorded for less time), a gap
  before further values is refused. A header with an ``eda`` column is the single-recording
  ``time,eda`` form instead.
- **EmbracePlus** session file (``.avro``, one record, read with ``fastavro``): the EDA is
  ``rawData.eda``: ``timestampStart`` (µs, Unix time), ``samplingFrequency`` (Hz) and
  ``values`` (µS).

:func:`read_eda_file` reads any EDA file (these and :func:`edanet.eda.read_eda_csv`'s forms);
:func:`load_eda_file` also validates and resamples it, like :func:`edanet.eda.load_eda`.
"""
from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

import numpy as np

from .audio import check_sample_rate
from .extras import require
from .io import check_regular_file
from .config import EDA_RATES, MAX_EDA_US
from .eda import (EDARecording, _cells, _check_blank, _number, _read_lines, rate_from_times, read_eda_csv,
                  validate_eda)

__all__ = ["time_column", "subject_columns", "read_subject_column", "read_eda_avro",
           "read_eda_file", "load_eda_file"]

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


def _header(path: Path) -> list[str] | None:
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


def _has_eda_column(header: list[str]) -> bool:
    return "eda" in (c.lower() for c in header)


def subject_columns(path: str | os.PathLike) -> list[str] | None:
    """The subject columns (names, in file order, each once) of a subject table, or None when
    ``path`` is not one (an E4 or ``time,eda`` file, a header without a time column, ...). Reads
    row 1 only: cheap enough to list the recordings of a whole folder."""
    header = _header(Path(path))
    if header is None or _has_eda_column(header):
        return None
    tc = time_column(header)
    if tc is None:
        return None
    names = [c for i, c in enumerate(header) if i != tc[0] and c]
    return list(dict.fromkeys(names)) or None


def _no_time_column(path: Path, header: list[str]) -> ValueError:
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
        raise _no_time_column(path, header)
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


def _import_fastavro(path: Path):
    # an environment problem, not a bad file: an ImportError (MissingExtra), which skip_bad does not skip
    return require("fastavro", "avro", f"reading {path} (an Empatica EmbracePlus .avro file)")


def _avro_records(path: Path) -> list:
    fastavro = _import_fastavro(path)
    check_regular_file(path, "EDA file")
    if not path.exists():
        raise FileNotFoundError(f"EDA file not found: {str(path)!r}")
    try:
        with open(path, "rb") as f:
            return list(fastavro.reader(f))
    except OSError:
        raise
    except Exception as e:      # fastavro raises many kinds for a file that is not Avro
        raise ValueError(f"{path}: not a readable .avro file ({type(e).__name__}: {e})") from None


def _positive_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def read_eda_avro(path: str | os.PathLike) -> EDARecording:
    """The EDA of an Empatica EmbracePlus session file (``rawData.eda``) as an
    :class:`EDARecording` (µS; start time in Unix seconds). Needs ``fastavro`` (``ImportError``
    saying how to install it). ``ValueError`` naming the file for an unreadable or empty file,
    a file of several records, no ``rawData.eda``, no samples, a sampling frequency outside
    :data:`edanet.config.EDA_RATES`, or NaN, infinite, negative or implausibly high values."""
    path = Path(path)
    records = _avro_records(path)
    if not records:
        raise ValueError(f"{path}: the .avro file holds no records (an empty session file)")
    if len(records) > 1:
        raise ValueError(f"{path}: holds {len(records)} records; an EmbracePlus session file holds one")
    raw = records[0].get("rawData") if isinstance(records[0], dict) else None
    eda = raw.get("eda") if isinstance(raw, dict) else None
    if not isinstance(eda, dict):
        raise ValueError(f"{path}: no rawData.eda in its record; expected an Empatica EmbracePlus session file")
    values, rate, start = eda.get("values"), eda.get("samplingFrequency"), eda.get("timestampStart")
    if not values:
        raise ValueError(f"{path}: rawData.eda.values is empty: no EDA samples in this session")
    if not _positive_number(rate):
        raise ValueError(f"{path}: rawData.eda.samplingFrequency {rate!r} must be a positive number (Hz)")
    check_sample_rate(rate, f"{path}: rawData.eda.samplingFrequency", EDA_RATES)
    v = validate_eda(values, name=f"{path}: rawData.eda.values")
    start_s = float(start) / 1e6 if isinstance(start, numbers.Real) and not isinstance(start, bool) else None
    return EDARecording(v, float(rate), start_s)


def read_eda_file(path: str | os.PathLike, column: str | None = None) -> EDARecording:
    """Read one EDA recording from any supported file: ``.avro`` (:func:`read_eda_avro`), a
    subject table (``column`` names the subject; :func:`read_subject_column`), or an E4 or
    ``time,eda`` CSV (:func:`edanet.eda.read_eda_csv`; ``column`` is not used). A header with
    an ``eda`` column and a time column spelled otherwise than ``time`` reads that column.
    ``ValueError`` naming the file for what cannot be read (a header without a time column, a
    subject table without ``column``, ...)."""
    path = Path(path)
    if path.suffix.lower() == ".avro":
        return read_eda_avro(path)
    header = _header(path) if path.is_file() else None
    if header is None or ("time" in (c.lower() for c in header) and _has_eda_column(header)):
        return read_eda_csv(path)
    if time_column(header) is None:
        raise _no_time_column(path, header)
    if _has_eda_column(header):
        return read_subject_column(path, next(c for c in header if c.lower() == "eda"))
    subjects = subject_columns(path)
    if not subjects:
        raise ValueError(f"{path}: row 1 names a time column but no EDA column")
    if column is None:
        shown = ", ".join(repr(c) for c in subjects[:5]) + (", ..." if len(subjects) > 5 else "")
        raise ValueError(f"{path}: holds {len(subjects)} subject column(s) ({shown}): each is one recording, "
                         f"read with column=<subject> (data folders name them NAME/<subject>)")
    return read_subject_column(path, column)


def load_eda_file(path: str | os.PathLike, target_rate: float | None, *, column: str | None = None) -> EDARecording:
    """:func:`read_eda_file`, validated and resampled to ``target_rate`` Hz (None: the file's rate)."""
    rec = read_eda_file(path, column)
    validate_eda(rec.values, name=str(path))
    return rec.at_rate(target_rate)
