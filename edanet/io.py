"""Atomic file writes: nothing half-written is ever left at the destination path.

Every file the library writes goes through ``atomic_write``: the data lands in a temporary
file in the same folder, is flushed to disk, then renamed over the destination (an atomic
replace on POSIX and Windows)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["atomic_write", "atomic_path", "write_eda_csv"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write text, bytes, or whatever ``data(tmp_path)`` writes, atomically to ``path``."""
    with atomic_path(path) as tmp:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_eda_csv(path: str | os.PathLike, values_us, sample_rate: float, *, fmt: str = "e4",
                  start_time: float = 0.0) -> Path:
    """Write EDA (µS) as an Empatica E4 ``EDA.csv`` (``fmt="e4"``: start Unix time, sample
    rate, then one value a row) or a ``time,eda`` CSV (``fmt="time"``: seconds from start)."""
    v = np.asarray(values_us, dtype=np.float64).reshape(-1)
    if fmt == "e4":
        body = f"{start_time:.6f}\n{float(sample_rate):.6f}\n" + "".join(f"{x:.6f}\n" for x in v)
    elif fmt == "time":
        t = start_time + np.arange(v.size) / float(sample_rate)
        body = "time,eda\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in zip(t, v))
    else:
        raise ValueError(f"unknown EDA CSV format {fmt!r}; use 'e4' or 'time'")
    return atomic_write(path, body)
