"""Atomic file writes: nothing half-written is ever left at the destination path.

Every file the library writes goes through ``atomic_write``: the data lands in a temporary
file in the same folder, is flushed to disk, then renamed over the destination (an atomic
replace on POSIX and Windows)."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["atomic_write", "atomic_path", "write_eda_csv", "remove_stale_temp_files"]

# The temporary names atomic_path gives: ".NAME." + mkstemp's 8 random characters + ".tmp" + the
# destination's suffix. A process killed mid-write (kill -9 runs no cleanup) leaves one behind.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^.]*)?")
# How safetensors' (Rust) writer reports an OS error such as a full disk: "... (os error 28)"
# (or "Os { code: 28, ... }" in older versions)
_WRAPPED_ERRNO = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    A symlink is followed (its target is replaced, the link stays); a path that exists and is
    not a regular file (``/dev/stdout``, a pipe) is written directly, as there is nothing to
    replace. Failures raise ``OSError`` naming ``path``, not the temporary file."""
    given = path
    if os.path.isdir(given):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {given}: it is a folder; give a file name")
    if os.path.exists(given) and not os.path.isfile(given):
        yield Path(given)
        return
    path = Path(os.path.realpath(given))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write {given}: {e.strerror} (folder {path.parent})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, path)
        except OSError as e:
            raise type(e)(e.errno, f"cannot write {given}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _os_error(e: BaseException, path) -> OSError | None:
    """``e`` as an OSError naming ``path`` (the destination, not the temporary file), when it
    is one or wraps one (safetensors reports a full disk as a SafetensorError); else None."""
    if isinstance(e, OSError):
        code = e.errno
    else:
        m = _WRAPPED_ERRNO.search(str(e))
        code = int(m.group(1) or m.group(2)) if m else None
    if code is None:
        return None
    cls = OSError if not isinstance(e, OSError) else type(e)
    return cls(code, f"cannot write {path}: {os.strerror(code)}")


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write text, bytes, or whatever ``data(tmp_path)`` writes, atomically to ``path``."""
    with atomic_path(path) as tmp:
        try:
            if callable(data):
                data(tmp)
            else:
                tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        except Exception as e:      # noqa: BLE001 - only OS errors are rewritten, the rest re-raised
            err = _os_error(e, path)
            if err is None:
                raise
            raise err from None
    return Path(path)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left in ``folder`` and below when its process
    was killed mid-write; returns them. Call it only while no other process writes there (a
    training run does so under its run lock)."""
    removed = []
    for p in sorted(Path(folder).rglob(".*")):
        if _TEMP_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return removed


def write_eda_csv(path: str | os.PathLike, values_us, sample_rate: float, *, fmt: str = "e4",
                  start_time: float = 0.0) -> Path:
    """Write EDA (µS) as an Empatica E4 ``EDA.csv`` (``fmt="e4"``: start Unix time, sample
    rate, then one value a row) or a ``time,eda`` CSV (``fmt="time"``: seconds from start).

    ``values_us`` of shape ``(S, N)`` (several samples) writes S columns: in E4 form the two
    header rows repeat per column (as E4's multi-column files do), in ``time`` form the
    column ``eda`` holds the median and ``sample_0 ... sample_{S-1}`` follow."""
    v = np.asarray(values_us, dtype=np.float64)
    v = v.reshape(1, -1) if v.ndim <= 1 else v
    if v.ndim != 2:
        raise ValueError(f"EDA values must be 1-D or (samples, N), got shape {v.shape}")
    S = v.shape[0]

    def row(xs):
        return ",".join(f"{x:.6f}" for x in xs) + "\n"

    if fmt == "e4":
        body = row([start_time] * S) + row([float(sample_rate)] * S) + "".join(row(c) for c in v.T)
    elif fmt == "time":
        t = start_time + np.arange(v.shape[1]) / float(sample_rate)
        if S == 1:
            body = "time,eda\n" + "".join(row((a, b)) for a, b in zip(t, v[0]))
        else:
            med = np.median(v, axis=0)
            body = ("time,eda," + ",".join(f"sample_{i}" for i in range(S)) + "\n"
                    + "".join(row((a, m, *c)) for a, m, c in zip(t, med, v.T)))
    else:
        raise ValueError(f"unknown EDA CSV format {fmt!r}; use 'e4' or 'time'")
    return atomic_write(path, body)
