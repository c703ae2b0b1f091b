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

__all__ = ["atomic_write", "atomic_path", "write_eda_csv", "EDACSVWriter", "remove_stale_temp_files"]

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


def _row(xs) -> str:
    return ",".join(f"{x:.6f}" for x in xs) + "\n"


class EDACSVWriter:
    """``write_eda_csv`` with the values appended as they are generated (``write``): a long
    generation keeps none of them in memory. The rows go to a temporary file beside ``path``,
    which replaces ``path`` when the ``with`` block ends without an error (else it is removed):
    nothing half-written is ever left at ``path``."""

    def __init__(self, path: str | os.PathLike, sample_rate: float, num_samples: int = 1, *, fmt: str = "e4",
                 start_time: float = 0.0):
        if fmt not in ("e4", "time"):
            raise ValueError(f"unknown EDA CSV format {fmt!r}; use 'e4' or 'time'")
        self.path, self.rate, self.S, self.fmt, self.start = path, float(sample_rate), int(num_samples), fmt, start_time
        self.rows = 0
        self._stack = self._file = None

    def __enter__(self) -> "EDACSVWriter":
        # the file closes before atomic_path's exit commits it (or removes it after an error)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
            S = self.S
            if self.fmt == "e4":
                self._put(_row([self.start] * S) + _row([self.rate] * S))
            elif S == 1:
                self._put("time,eda\n")
            else:
                self._put("time,eda," + ",".join(f"sample_{i}" for i in range(S)) + "\n")
            self._stack = stack.pop_all()
        return self

    def _put(self, text: str) -> None:
        try:
            self._file.write(text)
        except OSError as e:
            raise _os_error(e, self.path) from None

    def write(self, values_us) -> None:
        """Append the values ``(num_samples, k)`` (or ``(k,)`` for one sample) of the next k steps."""
        v = np.asarray(values_us, dtype=np.float64)
        v = v.reshape(1, -1) if v.ndim <= 1 else v
        if v.ndim != 2 or v.shape[0] != self.S:
            raise ValueError(f"EDA values must be ({self.S}, k) for this file, got shape {v.shape}")
        if self.fmt == "e4":
            body = "".join(_row(c) for c in v.T)
        else:
            t = self.start + (self.rows + np.arange(v.shape[1])) / self.rate
            if self.S == 1:
                body = "".join(_row((a, b)) for a, b in zip(t, v[0]))
            else:
                body = "".join(_row((a, m, *c)) for a, m, c in zip(t, np.median(v, axis=0), v.T))
        self._put(body)
        self.rows += v.shape[1]

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            stack.__exit__(*exc)
        except OSError as e:
            if e is exc[1]:
                raise
            raise (_os_error(e, self.path) or e) from None


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
    with EDACSVWriter(path, sample_rate, v.shape[0], fmt=fmt, start_time=start_time) as w:
        w.write(v)
    return Path(path)
