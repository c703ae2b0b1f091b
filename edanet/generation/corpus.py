"""Generation over a corpus: many clips, batched across clips, in input order.

``generate_many`` takes files, folders (searched recursively for audio) and glob patterns.
Each clip gets its own seed from the corpus seed and the clip's relative path
(:func:`clip_seed`), so its output is exactly ``edanet.generate(clip, seed=clip_seed(...))``
whatever batch it lands in, the order, or how many processes share the corpus.

How the work is arranged: features are computed in worker threads a window of clips ahead
of the engine; the clips of a window are sorted by length and cut into batches of
``batch_size`` rows (clips x ``num_samples``); each batch is padded at the end to its longest
clip (the network is causal, so a clip's steps never see the padding) and generated in one
engine call; results come back in input order."""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..features import file_features
from .core import GeneratedEDA, generator_for, initial_levels, output_scale
from .export import engine_frames
from .people import draw_people, start_levels
from .provenance import provenance
from .sampling import check_sampling, check_seed, draw_uniforms

__all__ = ["Clip", "find_clips", "clip_seed", "shard_of", "generate_many", "default_batch_size", "AUDIO_SUFFIXES"]

#: What a folder search picks up: the formats libsndfile (soundfile) reads.
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                            ".snd", ".caf", ".w64", ".rf64", ".wv", ".voc", ".sd2", ".mat", ".htk", ".sf"})


@dataclass(frozen=True)
class Clip:
    """One input: ``path`` (the file) and ``rel``, its path relative to the folder or glob
    root it was found under (a lone file: its name), which names its output and seeds it."""
    path: Path
    rel: str

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:i]) if i else Path(".")
    return Path(pattern).parent


def _walk(root: Path, depth: int | None = None) -> list[tuple[str, Path]]:
    """``(relative posix path, path)`` of every regular file below ``root`` (at most ``depth``
    names deep), sorted, symlinks followed: each folder and each file is taken once however
    many links lead to it (a symlink loop ends there), by its own path where it has one below
    ``root`` (the real tree is walked first, then what only links reach)."""
    real_dirs: set[tuple[int, int]] = set()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    found: list[tuple[str, Path]] = []

    def visit(folder: Path, rel: str, left: int | None, follow: bool) -> None:
        if left == 0:
            return
        try:
            st = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:              # unreadable or vanished: nothing of it to take
            return
        key = (st.st_dev, st.st_ino)
        if key in (seen_dirs if follow else real_dirs):
            return
        (seen_dirs if follow else real_dirs).add(key)
        for e in entries:
            try:
                link = e.is_symlink()
                est = os.stat(e.path)
            except OSError:          # a dangling link
                continue
            if link and not follow:
                continue
            sub = f"{rel}{e.name}"
            if stat.S_ISDIR(est.st_mode):
                if not (link and (est.st_dev, est.st_ino) in real_dirs):     # the real tree has it
                    visit(Path(e.path), sub + "/", None if left is None else left - 1, follow)
            elif stat.S_ISREG(est.st_mode) and (est.st_dev, est.st_ino) not in seen_files:
                seen_files.add((est.st_dev, est.st_ino))
                found.append((sub, Path(e.path)))

    visit(root, "", depth, follow=False)
    visit(root, "", depth, follow=True)
    return sorted(found, key=lambda f: f[0].split("/"))


def _matches(rel_parts: list[str], pattern_parts: list[str]) -> bool:
    """Whether a path's parts match a glob's (``**`` any number of folders, hidden names only
    where the pattern's part starts with a dot, as ``glob`` does)."""
    if not pattern_parts:
        return not rel_parts
    head, rest = pattern_parts[0], pattern_parts[1:]
    if head == "**":
        return any(_matches(rel_parts[i:], rest) for i in range(len(rel_parts) + 1)
                   if not any(p.startswith(".") for p in rel_parts[:i]))
    if not rel_parts or (rel_parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(rel_parts[0], head) and _matches(rel_parts[1:], rest)


def _glob(pattern: str) -> tuple[Path, list[tuple[str, Path]]]:
    """The files a glob pattern names, found by :func:`_walk` from the pattern's root (each once,
    whatever the symlinks): ``(root, [(path relative to root, path)])``."""
    root = _glob_root(pattern)
    parts = list(Path(pattern).parts[len(root.parts):])
    depth = None if "**" in parts else len(parts)          # no deeper than the pattern reaches
    return root, [(rel, p) for rel, p in _walk(root, depth) if _matches(rel.split("/"), parts)]


def find_clips(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Clip]:
    """The clips named by ``inputs`` (files, folders searched recursively for
    :data:`AUDIO_SUFFIXES`, glob patterns, ``**`` recursive), in the order given (a folder's
    and a pattern's files sorted). Symlinks are followed, each folder and file once (a link
    loop is no trap); only regular files are taken (a FIFO would hang the read).
    ``FileNotFoundError`` for an input that names nothing, ``ValueError`` when two clips would
    share a relative path (and so an output)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    clips: list[Clip] = []
    for given in inputs:
        if isinstance(given, Clip):
            clips.append(given)
            continue
        p = Path(given).expanduser()
        if p.is_dir():
            clips += [Clip(f, rel) for rel, f in _walk(p) if f.suffix.lower() in AUDIO_SUFFIXES]
        elif p.is_file():
            clips.append(Clip(p, p.name))
        elif glob.has_magic(str(given)):
            root, found = _glob(os.path.expanduser(str(given)))
            if not found:
                raise FileNotFoundError(f"no files match {str(given)!r}")
            clips += [Clip(f, rel) for rel, f in found]
        elif p.exists():
            raise ValueError(f"{str(given)!r} is not a regular file or a folder (a FIFO or a device?): give audio "
                             "files or folders of them")
        else:
            raise FileNotFoundError(f"no such file or folder: {str(given)!r}")
    seen: dict[str, Path] = {}
    for c in clips:
        if c.rel in seen and seen[c.rel] != c.path:
            raise ValueError(f"{seen[c.rel]} and {c.path} would both write {c.rel!r}: give them in different "
                             "folders (outputs keep each input's path relative to the folder or pattern given)")
        seen[c.rel] = c.path
    return clips


def _hash(text: str) -> int:
    # surrogateescape: a name that is not UTF-8 hashes as its bytes (any other name as its UTF-8)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()[:8], "little")


def clip_seed(seed: int, rel: str) -> int:
    """The seed of the clip at relative path ``rel`` in a corpus generated with ``seed``."""
    return _hash(f"edanet-corpus:{int(seed)}:{rel}") % 2 ** 63


def shard_of(rel: str, world_size: int) -> int:
    """The process (of ``world_size``) that generates the clip at ``rel``: a stable hash."""
    return _hash(f"edanet-shard:{rel}") % world_size


def default_batch_size(device: torch.device) -> int:
    """Engine rows per call: 256 fill a GPU's kernels; on a CPU 16 already run at full speed
    and keep the padding of mixed lengths small."""
    return 256 if device.type == "cuda" else 16


#: EDA steps per engine call (a minute at 4 Hz): the engine's inputs, which the per-coefficient
#: input projection makes about ten times the features, are never made for a whole long clip.
#: Continued generation gives the classes of one call, so the outputs do not depend on it.
CHUNK_STEPS = 240


@dataclass
class _Ready:
    clip: Clip
    seed: int
    frames: np.ndarray | None = None
    n: int = 0
    error: BaseException | None = None


def _featurize(clip: Clip, seed: int, cfg) -> _Ready:
    try:            # block by block: a worker holds a block of audio and the clip's frames, never the clip
        frames, n = file_features(clip.path, cfg)
        return _Ready(clip, seed, frames, n)
    except (ValueError, OSError, MemoryError) as e:     # the clip's fault: recorded, the rest go on
        return _Ready(clip, seed, error=e)


def generate_many(inputs, *, model=None, backend: str = "auto", batch_size: int | None = None, seed: int = 0,
                  num_samples: int = 1, temperature: float = 1.0, initial_eda_us=None, device=None,
                  dtype=torch.float32, on_error: str = "raise",
                  feature_workers: int | None = None) -> Iterator[tuple[Clip, GeneratedEDA | BaseException]]:
    """Generate EDA for every clip of ``inputs`` (see :func:`find_clips`; a list of ``Clip`` is
    taken as is); yields ``(clip, GeneratedEDA)`` in input order. A ``Clip`` is a path-like
    (``clip.path``; ``clip.rel`` its relative path). Clip ``c`` is sampled with the seed
    ``clip_seed(seed, c.rel)``, whatever batch it lands in. ``batch_size``: engine rows per
    call (clips x ``num_samples``; default :func:`default_batch_size`). ``on_error``: ``"raise"``
    stops at the first clip that cannot be read, ``"yield"`` yields the exception in its place
    and goes on. ``feature_workers``: threads computing features ahead of the engine (default:
    the CPU count, at most 4; the FFTs and file reads release the GIL). Other arguments as
    ``edanet.generate``."""
    if on_error not in ("raise", "yield"):
        raise ValueError(f"on_error must be 'raise' or 'yield', got {on_error!r}")
    check_sampling(num_samples, temperature)
    check_seed(seed)
    if seed is None:
        raise ValueError("generate_many needs a corpus seed (an integer): each clip's seed is derived from it")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer (engine rows per call), got {batch_size!r}")
    if feature_workers is None:
        feature_workers = max(1, min(4, os.cpu_count() or 1))
    if isinstance(feature_workers, bool) or not isinstance(feature_workers, int) or feature_workers < 1:
        raise ValueError(f"feature_workers must be a positive integer, got {feature_workers!r}")
    gen = generator_for(model, backend, device, dtype)        # the device and dtype checked here, once
    if batch_size is None:
        batch_size = default_batch_size(gen.engine.device)
    clips = find_clips(inputs)
    cfg = gen.config
    codec, scale = output_scale(cfg, int(num_samples), initial_eda_us, None)
    per_batch = max(1, batch_size // num_samples)
    gen.check_memory(per_batch * int(num_samples))   # an engine call's rows, before any clip is read
    window = 4 * per_batch           # clips sorted by length together: more, less padding

    with ThreadPoolExecutor(max_workers=feature_workers, thread_name_prefix="edanet-features") as pool:
        def submit(lo: int) -> list[Future]:
            return [pool.submit(_featurize, c, clip_seed(seed, c.rel), cfg) for c in clips[lo:lo + window]]

        pending = submit(0)
        try:
            for lo in range(0, len(clips), window):
                ready = [f.result() for f in pending]
                pending = submit(lo + window)        # the next window's features, while this one runs
                results = _generate_window(ready, gen, codec, scale, per_batch, int(num_samples), float(temperature),
                                           initial_eda_us)
                for r in ready:
                    out = results.get(id(r), r.error)
                    if isinstance(out, BaseException) and on_error == "raise":
                        raise out
                    yield r.clip, out
        finally:                                     # an error, or the caller stopped early
            for f in pending:
                f.cancel()


def _generate_window(ready: list[_Ready], gen, codec, scale, per_batch: int, num_samples: int,
                     temperature: float, initial_eda_us=None) -> dict[int, GeneratedEDA]:
    """The clips of ``ready`` generated in batches of ``per_batch`` clips (each ``num_samples``
    rows, with the people ``edanet.generate`` gives them for their seeds)."""
    engine, cfg, model = gen.engine, gen.config, gen.model
    good = sorted((r for r in ready if r.error is None), key=lambda r: r.n, reverse=True)
    out: dict[int, GeneratedEDA] = {}
    for b0 in range(0, len(good), per_batch):
        batch = good[b0:b0 + per_batch]
        n_max = batch[0].n
        C, _, F = batch[0].frames.shape
        K = cfg.spectral_frames_per_eda_step
        frames = torch.zeros(len(batch), C, n_max * K, F)
        uniforms = torch.zeros(len(batch), num_samples, n_max)     # padding steps: any value in [0, 1]
        people = [draw_people(model, num_samples, r.seed) for r in batch]
        for i, r in enumerate(batch):
            frames[i, :, : r.n * K] = torch.from_numpy(r.frames)
            uniforms[i, :, : r.n] = draw_uniforms(r.seed, num_samples, r.n)
        z = torch.cat([p.z for p in people]) if people[0] is not None else None
        uniforms = uniforms.reshape(-1, n_max)
        classes = np.empty((len(batch) * num_samples, n_max), dtype=np.int64)
        state = engine.start(classes.shape[0])
        for j0 in range(0, n_max, CHUNK_STEPS):      # the engine's inputs of a chunk at a time, as for a file
            j1 = min(n_max, j0 + CHUNK_STEPS)
            rows = model.with_subject(frames[:, :, j0 * K:j1 * K].repeat_interleave(num_samples, dim=0), z)
            classes[:, j0:j1] = engine.generate(engine_frames(rows, cfg), uniforms[:, j0:j1], temperature,
                                                state=state).cpu().numpy()
        classes = classes.reshape(len(batch), num_samples, n_max)
        for i, r in enumerate(batch):
            c = np.ascontiguousarray(classes[i, :, : r.n])
            start = scale if people[i] is None else initial_levels(start_levels(people[i], initial_eda_us),
                                                                     num_samples, cfg)
            out[id(r)] = GeneratedEDA(values=np.asarray(codec.decode(c, start), dtype=np.float64), classes=c,
                                      sample_rate=float(cfg.eda_sample_rate), backend=engine.name, seed=r.seed,
                                      provenance=provenance(model, backend=engine.name, seed=r.seed,
                                                            temperature=temperature, num_samples=num_samples,
                                                            start_us=start, sample_rate=cfg.eda_sample_rate,
                                                            identity=gen.identity))
    return out
