"""Atomic file writes: nothing half-written is ever left at the destination path.

Every file the library writes goes through ``atomic_write``: the data lands in a temporary
file in the same folder, is flushed to disk, then renamed over the destination (an atomic
replace on POSIX and Windows)."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

__all__ = ["atomic_write", "atomic_path", "write_eda_csv", "EDACSVWriter", "remove_temp_files_of", "eda_csv_text",
           "EDA_FORMATS", "MEDIAN_COLUMN", "eda_columns", "eda_rows_text", "sidecar_path", "is_edanet_sidecar", "sidecar_fields",
           "temp_destination",
           "check_regular_file"]

# The temporary names atomic_path gives: ".NAME." + mkstemp's 8 random characters + ".tmp" + the
# destination's suffix. A process killed mid-write (kill -9 runs no cleanup) leaves one behind.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]*)?")
# How safetensors' (Rust) writer reports an OS error such as a full disk: "... (os error 28)"
# (or "Os { code: 28, ... }" in older versions)
_WRAPPED_ERRNO = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")


def check_regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` (symlinks followed), checked to be a regular file before it is opened: a FIFO
    or a device would block the open or the read forever. ``FileNotFoundError`` when missing,
    ``ValueError`` for a folder or anything else that is not a file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} not found: {str(path)!r}") from None
    except OSError as e:
        raise ValueError(f"{what} {str(path)!r} cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{what} {str(path)!r} is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ValueError(f"{what} {str(path)!r} is {kind}, not a regular file: reading it could wait forever; "
                         "give a file")
    return path


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


def temp_destination(name: str) -> str | None:
    """The destination file name whose temporary file ``atomic_path`` names ``name``, or None
    when ``name`` is not such a temporary name."""
    m = _TEMP_NAME.fullmatch(name)
    if not m or (m["suffix"] or "") != Path(m["name"]).suffix:
        return None
    return m["name"]


def remove_temp_files_of(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left beside each of ``paths`` (destinations
    this program writes) when its process was killed mid-write; returns them. Only those
    destinations' temporary names are touched, never another program's files; one listing per
    folder. Call it only while no other process of this program writes them (a training run
    holds its run lock, a corpus run owns its outputs)."""
    by_folder: dict[Path, set[str]] = {}
    for p in paths:
        p = Path(p)
        by_folder.setdefault(p.parent, set()).add(p.name)
    removed = []
    for folder, names in by_folder.items():
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if temp_destination(e.name) not in names:
                continue
            if e.is_file(follow_symlinks=False):
                try:
                    os.unlink(e.path)
                except FileNotFoundError:
                    continue
                removed.append(Path(e.path))
    return removed


def _row(xs) -> str:
    return ",".join(f"{x:.6f}" for x in xs) + "\n"


#: The forms generated EDA is written in: Empatica E4's ``EDA.csv``, a ``time,...`` CSV, and a
#: BIDS physio ``.tsv.gz`` (no header: its JSON sidecar names the columns).
EDA_FORMATS = ("e4", "time", "bids")
#: The column of the per-step median across samples (``summary=True``): named so that nobody
#: takes it for a recording.
MEDIAN_COLUMN = "median_of_samples"


def _check_fmt(fmt: str) -> None:
    if fmt not in EDA_FORMATS:
        raise ValueError(f"unknown EDA format {fmt!r}; use one of {', '.join(EDA_FORMATS)}")


def eda_columns(num_samples: int, summary: bool = False) -> list[str]:
    """The value columns of generated EDA (after ``time`` in the time form): ``eda`` for one sample,
    ``sample_0 ... sample_{S-1}`` for several, then :data:`MEDIAN_COLUMN` when asked for."""
    cols = ["eda"] if num_samples == 1 else [f"sample_{i}" for i in range(num_samples)]
    return cols + ([MEDIAN_COLUMN] if summary and num_samples > 1 else [])


def _header_text(fmt: str, num_samples: int, rate: float, start: float, summary: bool) -> str:
    """An EDA file's header rows (see :func:`write_eda_csv`)."""
    if fmt == "e4":
        n = num_samples + (1 if summary and num_samples > 1 else 0)
        return _row([start] * n) + _row([rate] * n)
    if fmt == "bids":
        return ""
    return "time," + ",".join(eda_columns(num_samples, summary)) + "\n"


def eda_rows_text(v: np.ndarray, fmt: str, rate: float, start: float, first_row: int, summary: bool) -> str:
    """The rows of values ``(S, k)`` that start at row ``first_row`` of an EDA file (a stream
    writes the lines of ``fmt="time"`` as its steps complete)."""
    if summary and v.shape[0] > 1:
        v = np.concatenate([v, np.median(v, axis=0, keepdims=True)])
    if fmt == "e4":
        return "".join(_row(c) for c in v.T)
    if fmt == "bids":
        return "".join(_row(c).replace(",", "\t") for c in v.T)
    t = start + (first_row + np.arange(v.shape[1])) / rate
    return "".join(_row((a, *c)) for a, c in zip(t, v.T))


def _as_rows(values_us) -> np.ndarray:
    v = np.asarray(values_us, dtype=np.float64)
    v = v.reshape(1, -1) if v.ndim <= 1 else v
    if v.ndim != 2:
        raise ValueError(f"EDA values must be 1-D or (samples, N), got shape {v.shape}")
    return v


def eda_csv_text(values_us, sample_rate: float, *, fmt: str = "e4", start_time: float = 0.0,
                 summary: bool = False) -> str:
    """The text :func:`write_eda_csv` writes (to hash it or write it with the file's record)."""
    _check_fmt(fmt)
    v = _as_rows(values_us)
    return (_header_text(fmt, v.shape[0], float(sample_rate), start_time, summary)
            + eda_rows_text(v, fmt, float(sample_rate), start_time, 0, summary))


class EDACSVWriter:
    """``write_eda_csv`` with the values appended as they are generated (``write``): a long
    generation keeps none of them in memory. The rows go to a temporary file beside ``path``,
    which replaces ``path`` when the ``with`` block ends without an error (else it is removed):
    nothing half-written is ever left at ``path``. ``fmt="bids"`` writes gzip."""

    def __init__(self, path: str | os.PathLike, sample_rate: float, num_samples: int = 1, *, fmt: str = "e4",
                 start_time: float = 0.0, summary: bool = False):
        _check_fmt(fmt)
        self.path, self.rate, self.S, self.fmt, self.start = path, float(sample_rate), int(num_samples), fmt, start_time
        self.summary = bool(summary)
        self.rows = 0
        self._stack = self._file = None

    def __enter__(self) -> "EDACSVWriter":
        # the file closes before atomic_path's exit commits it (or removes it after an error)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            if self.fmt == "bids":
                import gzip
                # mtime 0: the same values give the same bytes whenever they are written
                raw = stack.enter_context(open(tmp, "wb"))
                gz = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename=""))
                self._file = stack.enter_context(io.TextIOWrapper(gz, encoding="utf-8", newline=""))
            else:
                self._file = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
            self._put(_header_text(self.fmt, self.S, self.rate, self.start, self.summary))
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
        self._put(eda_rows_text(v, self.fmt, self.rate, self.start, self.rows, self.summary))
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
                  start_time: float = 0.0, summary: bool = False) -> Path:
    """Write EDA (µS) as an Empatica E4 ``EDA.csv`` (``fmt="e4"``: start Unix time, sample
    rate, then one value a row), a ``time,eda`` CSV (``fmt="time"``: seconds from start), or the
    data of a BIDS physio file (``fmt="bids"``: gzip TSV, no header; its JSON sidecar, at
    :func:`sidecar_path`, names the columns: :func:`sidecar_fields`).

    ``values_us`` of shape ``(S, N)`` (several samples) writes S columns, each sample a
    recording of its own (in E4 form the two header rows repeat per column, as E4's multi-column
    files do; in ``time`` form ``sample_0 ... sample_{S-1}``). ``summary``: also the per-step
    median across the samples, in a last column named ``median_of_samples``: a summary, not a
    recording (the samples' SCRs fall at different times, so their median flattens them)."""
    v = _as_rows(values_us)
    with EDACSVWriter(path, sample_rate, v.shape[0], fmt=fmt, start_time=start_time, summary=summary) as w:
        w.write(v)
    return Path(path)


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar beside a written EDA file: ``X.json`` for ``X.csv`` and ``X.tsv.gz``."""
    p = Path(path)
    stem = p.name[:-len(".tsv.gz")] if p.name.lower().endswith(".tsv.gz") else p.stem
    return p.with_name(stem + ".json")


def is_edanet_sidecar(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a JSON file this library wrote beside an output (its provenance)."""
    import json
    try:
        if os.stat(path).st_size > 1 << 20:
            return False
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and str(d.get("generated_by", "")).startswith("edanet ")


def sidecar_fields(fmt: str, num_samples: int, sample_rate: float, summary: bool = False,
                   start_time: float = 0.0) -> dict:
    """What a sidecar says about the file's layout: BIDS physio's required fields
    (SamplingFrequency, StartTime, Columns) and each column's units and meaning."""
    cols = eda_columns(num_samples, summary)
    meaning = {c: {"Units": "uS", "Description": "skin conductance, one generated person" if c != MEDIAN_COLUMN
                   else "the per-step median across the generated samples: a summary, not a recording"}
               for c in cols}
    out = {"SamplingFrequency": float(sample_rate), "StartTime": 0.0, "Columns": cols, **meaning,
           "format": fmt}
    if start_time:
        import datetime
        out["start_time_unix"] = float(start_time)
        out["start_time_iso"] = datetime.datetime.fromtimestamp(float(start_time), datetime.timezone.utc).isoformat()
    return out
