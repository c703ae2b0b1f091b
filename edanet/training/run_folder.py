"""A training run's folder: the lock that keeps a second run out (``RunLock``), the
checkpoint folders (list, prune, name the earlier ones when one is damaged), ``log.csv`` (cut
back on resume), and the checkpoint state (tensors to safetensors, the rest to JSON: no pickle).
``edanet.train`` drives them; the folder's layout is described there."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import time
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..io import atomic_write, temp_destination
from .checkpoint import load_model, save_model
from .recipe import TrainConfig


# -- the run folder's lock ---------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run folder, held while a run trains in it: ``OUT/.lock``, locked
    with ``flock`` and holding the holder's pid, host and start time.

    The operating system drops a ``flock`` when its process dies, however it dies, so a lock
    file that can be locked but still names a holder was left by a killed run: it is taken
    over with a warning. Releasing removes the lock file (and the folder, when this lock
    created it and nothing else was written). Where ``fcntl`` is missing (Windows), no lock."""

    NAME = ".lock"
    #: The descriptors of the locks this process holds: a forked child (a DataLoader worker)
    #: shares their flock, and closes them (``close_in_child``) so that a killed run's folder
    #: is free as soon as the run dies, not when its workers notice.
    _held: set[int] = set()

    def __init__(self, run: str | Path):
        self.run = Path(run)
        self.path = self.run / self.NAME
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:             # pragma: no cover - not POSIX
            return self
        if self.run.exists() and not self.run.is_dir():
            raise FileExistsError(f"--out {self.run} is a file; give a folder for the run")
        self._created = not self.run.exists()
        self.run.mkdir(parents=True, exist_ok=True)
        for _ in range(100):            # the holder may remove the file between our open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._describe(os.pread(fd, 4096, 0))
                os.close(fd)
                self._remove_created_folder()
                raise FileExistsError(f"{self.run} is in use by another training run ({holder}); wait for it to "
                                      "finish, or train into another --out") from None
            if self._same_file(fd):
                break
            os.close(fd)
        else:                           # pragma: no cover - a livelock of lockers
            raise OSError(f"could not lock {self.path}: it keeps being replaced")
        self._fd = fd
        RunLock._held.add(fd)
        stale = os.pread(fd, 4096, 0)
        if stale.strip():
            warnings.warn(f"{self.run}: a training run that no longer runs left its lock ({self._describe(stale)}); "
                          "it was killed or crashed, its latest checkpoint is intact, and this run takes the "
                          "folder over", RuntimeWarning, stacklevel=2)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        os.fsync(fd)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:                            # removed while still locked: a waiting opener sees the change
            self.path.unlink()
        except FileNotFoundError:
            pass
        RunLock._held.discard(self._fd)
        os.close(self._fd)
        self._fd = None
        self._remove_created_folder()

    @classmethod
    def close_in_child(cls, *_) -> None:
        """In a forked child: close the descriptors of the parent's locks (see ``_held``)."""
        for fd in list(cls._held):
            try:
                os.close(fd)
            except OSError:
                pass
        cls._held.clear()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _remove_created_folder(self) -> None:
        # a refused run leaves no folder behind: only an empty one this lock created goes
        if self._created:
            try:
                self.run.rmdir()
            except OSError:
                pass

    @staticmethod
    def _describe(raw: bytes) -> str:
        try:
            d = json.loads(raw.decode())
            return f"pid {d['pid']} on host {d['host']}, started {d['started']}"
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return f"holder unknown: {RunLock.NAME} holds {raw[:80]!r}"


# -- what a run folder holds -----------------------------------------------------------------------
#: The files a run writes at the top of its folder (``edanet.train`` describes them).
RUN_FILES = ("config.json", "model.safetensors", "train.json", "log.csv", "summary.json", "latest.json")
#: The marker of a run folder: written when a run starts, before anything else of the run.
RUN_MARKER = "train.json"


def run_files(run: Path) -> list[Path]:
    """Every file a run writes: its top-level files and those of each checkpoint folder."""
    return [run / f for f in RUN_FILES] + [p / f for _, p in _checkpoints(run) for f in CKPT_FILES]


def check_run_folder(run: Path, resume: bool) -> None:
    """Refuse, before anything is written, a ``--out`` a new run must not write into: a folder
    holding a finished or running run (that is for ``--resume``), or one holding anything but
    a run's own files (a saved model, data, notes: training would overwrite or mix with them).
    A new run goes into a new or empty folder, or the folder of a run that stopped before its
    first checkpoint. ``--resume`` needs a run's checkpoint (checked when it is read)."""
    if resume or not run.is_dir():
        return
    if (run / "latest.json").exists():
        raise FileExistsError(f"{run} already holds a training run; pass --resume to continue it "
                              "or choose another --out")
    names = sorted(p.name for p in run.iterdir())
    ours = set(RUN_FILES) | {"checkpoints", RunLock.NAME}
    foreign = [n for n in names if n not in ours and temp_destination(n) not in RUN_FILES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"--out {run} holds files that are not a training run's ({shown}); a run writes "
                              "config.json, model.safetensors, log.csv and checkpoints there: train into a new or "
                              "empty folder")
    if RUN_MARKER not in names and (set(names) & set(RUN_FILES) or "checkpoints" in names):
        kept = ", ".join(n for n in names if n in RUN_FILES or n == "checkpoints")
        raise FileExistsError(f"--out {run} holds {kept} but no {RUN_MARKER}: a saved model or another program's "
                              "files, not a training run of edanet's, and training would overwrite them; train "
                              "into a new or empty folder")


# -- checkpoint folders ----------------------------------------------------------------------------
_CKPT_NAME = re.compile(r"step_(\d+)")
CKPT_FILES = ("config.json", "model.safetensors", "state.safetensors", "state.json")


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the run's checkpoint folders, oldest first."""
    found = []
    for p in (run / "checkpoints").glob("step_*"):
        m = _CKPT_NAME.fullmatch(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _earlier_checkpoints(run: Path, before: int | None) -> str:
    """What to say about the checkpoints a damaged one could be replaced with."""
    complete = [(s, p) for s, p in _checkpoints(run)
                if (before is None or s < before) and all((p / f).is_file() for f in CKPT_FILES)]
    if not complete:
        return ("no earlier complete checkpoint exists in this run (pruned by --keep-checkpoints, or this was "
                "the first); train into a new --out")
    names = ", ".join(p.name for _, p in complete)
    s, p = complete[-1]
    return (f"earlier checkpoints: {names}; to resume from one, write {{\"step\": {s}, \"path\": "
            f"\"checkpoints/{p.name}\"}} to {run / 'latest.json'}")


def prune_checkpoints(run: Path, keep: int | None, latest: int) -> None:
    """Delete all but the ``keep`` newest checkpoints up to ``latest`` (which stays)."""
    if not keep:
        return
    older = [p for s, p in _checkpoints(run) if s < latest]
    for p in older[:max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)


LOG_HEADER = "step,lr,loss,grad_norm,val_nll,seconds\n"


def truncate_log(log_path: Path, step: int) -> None:
    """Keep the log's rows up to ``step``: a resumed run logs the steps after it again."""
    lines = log_path.read_text().splitlines(keepends=True)
    kept = [LOG_HEADER]
    for line in lines[1:]:
        first = line.split(",", 1)[0]
        if first.isdigit() and int(first) <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        atomic_write(log_path, "".join(kept))


def append_log(log_path: Path, row: str) -> None:
    try:
        with open(log_path, "a") as f:
            f.write(row)
    except OSError as e:            # a full disk: name the file, not just the errno
        raise type(e)(e.errno, f"cannot write {log_path}: {e.strerror}") from None


# -- checkpoint state (no pickle: tensors to safetensors, the rest to JSON) ------------------------
def save_checkpoint(run: Path, step: int, model, opt, sched, sampler_states: list[torch.Tensor], tcfg) -> None:
    ck = run / "checkpoints" / f"step_{step:08d}"
    save_model(model, ck)
    osd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": v.detach().cpu().contiguous()
               for i, st in osd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    for r, s in enumerate(sampler_states):
        tensors[f"rng.sampler.{r}"] = s.cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    atomic_write(ck / "state.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    meta = {"step": step, "param_groups": osd["param_groups"], "scheduler": sched.state_dict(),
            "world_size": len(sampler_states), "train_config": dataclasses.asdict(tcfg)}
    atomic_write(ck / "state.json", json.dumps(meta, indent=1))
    # The run's top-level model, then the pointer: only now is this checkpoint "latest".
    save_model(model, run)
    atomic_write(run / "latest.json", json.dumps({"step": step, "path": str(ck.relative_to(run))}))


# TrainConfig fields a resumed run may change: they do not alter the weights it computes
# (``steps`` extends or shortens the run, which reshapes its cosine tail: the user's call).
RESUMABLE_CHANGES = ("steps", "val_every", "ckpt_every", "keep_checkpoints", "workers")


def load_checkpoint(run: Path, model, opt, sched, world: int, rank: int,
                     tcfg: TrainConfig) -> tuple[int, torch.Tensor | None]:
    latest = run / "latest.json"
    if not latest.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {run} (no latest.json); start without --resume")
    fix = (f'it should read {{"step": N, "path": "checkpoints/step_XXXXXXXX"}}, naming a complete folder in '
           f'{run / "checkpoints"}; fix it, or train into a new --out')
    try:
        pointer = json.loads(latest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--resume: {latest} is not valid JSON ({e}); {fix}") from None
    if not isinstance(pointer, dict) or not isinstance(pointer.get("path"), str):
        raise ValueError(f'--resume: {latest} does not name a checkpoint (no "path" entry); {fix}')
    ck = run / pointer["path"]
    m = _CKPT_NAME.fullmatch(ck.name)
    earlier = _earlier_checkpoints(run, int(m.group(1)) if m else None)
    try:
        saved = load_model(ck)
    except (ValueError, OSError) as e:
        raise ValueError(f"--resume: checkpoint {ck} cannot be loaded: {e}; {earlier}") from None
    if saved.config != model.config:
        raise ValueError(f"--resume: checkpoint {ck} was trained with another model config; "
                         f"use the same --preset/overrides or a new --out folder")
    meta = _read_state_json(ck / "state.json", earlier)
    step = meta["step"]
    folder_step = int(m.group(1)) if m else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 1 or step != (folder_step or step) \
            or pointer.get("step", step) != step:
        raise ValueError(f"--resume: {ck / 'state.json'} says step {step!r}, but a checkpoint is at a step >= 1 and "
                         f"this one is {ck.name} ({latest.name} says {pointer.get('step')!r}); it was edited or "
                         f"damaged, and resuming from it would overwrite good checkpoints; {earlier}")
    # fields missing from older checkpoints had their present defaults' meaning when written
    was = {**dataclasses.asdict(type(tcfg)()), **meta.get("train_config", {})}
    now = dataclasses.asdict(tcfg)
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and was.get(k) != now[k])
    if changed:
        raise ValueError("--resume: this run was trained with " +
                         ", ".join(f"{k}={was.get(k)!r}" for k in changed) + " but now gets " +
                         ", ".join(f"{k}={now[k]!r}" for k in changed) +
                         "; pass the same training options to continue it exactly, or use a new --out")
    model.load_state_dict(saved.state_dict())
    try:
        tensors = load_file(str(ck / "state.safetensors"))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"--resume: {ck / 'state.safetensors'} is damaged or missing ({e}); {earlier}") from None
    if "rng.torch" not in tensors:
        raise ValueError(f"--resume: {ck / 'state.safetensors'} lacks the RNG state 'rng.torch'; {earlier}")
    state = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    try:            # a hand-edited state.json may hold anything: torch's loaders must not see it unchecked
        groups = meta["param_groups"]
        if not (isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                 for g in groups) and isinstance(meta["scheduler"], dict)):
            raise ValueError("param_groups must be a list of groups with their 'params', scheduler an object")
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        opt.load_state_dict({"state": state, "param_groups": groups})
        sched.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
        raise ValueError(f"--resume: {ck / 'state.json'} or its state.safetensors does not fit this run's optimizer "
                         f"({type(e).__name__}: {e}); {earlier}") from None
    sampler = tensors.get(f"rng.sampler.{rank}") if meta.get("world_size", 1) == world else None
    return int(meta["step"]), sampler


def _read_state_json(path: Path, earlier: str) -> dict:
    """A checkpoint's state.json, or a ValueError naming it (a kill mid-write cannot damage it,
    atomic writes see to that; a full disk or a hand edit can)."""
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        for key in ("step", "param_groups", "scheduler"):
            if key not in meta:
                raise ValueError(f"no {key!r} entry")
        int(meta["step"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"--resume: {path} is damaged or missing ({e}); {earlier}") from None
    return meta


def check_resume_steps(step: int, tcfg: TrainConfig, run: Path) -> None:
    """A resumed run must have steps left: going back would train nothing and overwrite the
    finished run's summary with an empty one."""
    if step >= tcfg.steps:
        raise ValueError(f"--resume: the run in {run} has already trained {step} steps, and --steps {tcfg.steps} "
                         f"asks for no more; pass --steps above {step} to train further (its model and "
                         "summary.json are left as they are)")
