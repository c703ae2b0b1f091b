"""Any EDA file the library reads, one recording at a time: :func:`read_eda_file` picks the
reader (an E4 or ``time,eda`` CSV or a subject table: :mod:`edanet.signals.csv_files`; an
Empatica EmbracePlus session file: :func:`read_eda_avro`; a BIDS physio ``.tsv.gz`` with its
JSON sidecar: :func:`read_bids_physio`), :func:`load_eda_file` also validates and resamples it.

- **EmbracePlus** session file (``.avro``, one record, read with ``fastavro``): the EDA is
  ``rawData.eda``: ``timestampStart`` (µs, Unix time), ``samplingFrequency`` (Hz) and
  ``values`` (µS).
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from ..config import EDA_RATES
from ..extras import require
from ..features.audio import check_sample_rate
from ..io import check_regular_file, sidecar_path
from .csv_files import (has_eda_column, header_cells, no_time_column, read_eda_csv, read_subject_column,
                        subject_columns, time_column)
from .recording import EDARecording, validate_eda

__all__ = ["read_eda_avro", "read_bids_physio", "read_eda_file", "load_eda_file"]


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


def read_bids_physio(path: str | os.PathLike, column: str | None = None) -> EDARecording:
    """One column of a BIDS physio file (``X.tsv.gz`` and its sidecar ``X.json``: SamplingFrequency,
    Columns, StartTime): ``column``, else ``eda`` (or the only column). ValueError naming the
    file for a missing sidecar or field, an unknown column, or values that are not EDA in µS."""
    import gzip
    import json
    path = Path(path)
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        rate, columns = meta["SamplingFrequency"], list(meta["Columns"])
    except FileNotFoundError:
        raise ValueError(f"{path}: its BIDS sidecar {side.name} is missing (it names the columns and the rate)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{side}: not a BIDS physio sidecar with SamplingFrequency and Columns ({e})") from None
    if column is None:
        column = "eda" if "eda" in columns else columns[0] if len(columns) == 1 else None
    if column not in columns:
        raise ValueError(f"{path}: no column {column!r} among {columns} (give one: column=...)")
    check_regular_file(path, "EDA file")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        values = [float(r[columns.index(column)]) for r in rows]
    except (OSError, EOFError, ValueError, IndexError) as e:
        raise ValueError(f"{path}: not a readable BIDS physio file ({e})") from None
    check_sample_rate(rate, f"{side}: SamplingFrequency", EDA_RATES)
    # BIDS StartTime is an offset from the acquisition's start, not a clock time: only this
    # library's start_time_unix (written with --start-time) says when the recording began
    start = meta.get("start_time_unix")
    return EDARecording(validate_eda(values, name=f"{path}: column {column!r}"), float(rate),
                        float(start) if isinstance(start, (int, float)) else None)


def read_eda_file(path: str | os.PathLike, column: str | None = None) -> EDARecording:
    """Read one EDA recording from any supported file: ``.avro`` (:func:`read_eda_avro`), a
    subject table (``column`` names the subject; :func:`read_subject_column`), or an E4 or
    ``time,eda`` CSV (:func:`edanet.signals.csv_files.read_eda_csv`; ``column`` is not used). A header with
    an ``eda`` column and a time column spelled otherwise than ``time`` reads that column.
    ``ValueError`` naming the file for what cannot be read (a header without a time column, a
    subject table without ``column``, ...)."""
    path = Path(path)
    if path.suffix.lower() == ".avro":
        return read_eda_avro(path)
    if path.name.lower().endswith(".tsv.gz"):
        return read_bids_physio(path, column)
    header = header_cells(path) if path.is_file() else None
    if header is None or ("time" in (c.lower() for c in header) and has_eda_column(header)):
        return read_eda_csv(path)
    if time_column(header) is None:
        raise no_time_column(path, header)
    if has_eda_column(header):
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
