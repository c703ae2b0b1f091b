"""Training data: a folder of audio files, each with one or more EDA recordings (synthetic or real).

Layouts (:func:`find_pairs`; a recording is one training sequence for its audio):

- ``NAME.<audio>`` + ``NAME.csv`` (E4 or ``time,eda``) or ``NAME.avro`` (Empatica EmbracePlus):
  the recording ``NAME``.
- ``NAME.csv`` as a subject table (a time column and one column per subject, the form of PMEmo's
  EDA files): one recording ``NAME/<subject>`` per column.
- ``NAME.<subject>.csv`` / ``NAME.<subject>.avro`` beside ``NAME.<audio>``: the recording
  ``NAME/<subject>`` each (besides ``NAME``'s own file, if any).
- PMEmo's folders: ``chorus/<id>.mp3`` + ``EDA/<id>_EDA.csv`` (a subject table): ``<id>/<subject>``.

Each recording is loaded once: MFCC frames at the model's rate, EDA read (any form above),
resampled to the model's EDA rate and coded into classes (``edanet.representation``: the
change from the previous value, starting from the recording's first value). Training draws random crops of ``crop_steps`` EDA steps preceded by a warm-up of
``ceil((R - 1) / K)`` steps, R the receptive field in frames, so the first scored step sees a
full receptive field; the loss is taken on the crop only. The split into train and validation
is by audio file (a stable hash of its name, the part of a recording's name before ``/``): all
recordings of one audio land on the same side, so validation audio is never trained on.

Onset-focused crops (``sample_batch(..., onset_focus=p)``): a fraction ``p`` of the crops is
placed so that an acoustic onset (:func:`acoustic_onsets`, found from the audio alone) and the
``RESPONSE_WINDOW_S`` seconds after it lie inside the scored crop. Audio-locked responses are rare
(about one scored step in 150 on the synthetic data), so uniform crops spend almost all of the
gradient on steps the audio cannot explain, and the model learns to ignore the audio. Choosing
crops by the audio only reweights the training examples: when the audio is exogenous (what is
heard does not depend on the listener's EDA, true of the synthetic data; not quite of the wearer's
own speech), the conditional the loss is minimized for, p(e_j | e_<j, audio), is unchanged - for a
model of unlimited capacity; a small one trades some NLL elsewhere for the responses. The end of
a silence gap (the background returning) also counts as an onset, harmlessly.
"""
from __future__ import annotations

import functools
import hashlib
import math
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch

from ..config import EDANetConfig
from ..features import mean_level_db
from ..signals import codec_for, load_eda_file, subject_columns
from .frame_store import FrameStore

__all__ = ["Recording", "find_pairs", "load_recording", "acoustic_onsets", "PairedData", "AUDIO_SUFFIXES",
           "EDA_SUFFIXES"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
EDA_SUFFIXES = (".csv", ".avro")
#: PMEmo's folder layout: ``chorus/<id>.<audio>`` beside ``EDA/<id>_EDA.csv`` (names any case).
PMEMO_AUDIO_DIR, PMEMO_EDA_DIR, PMEMO_EDA_SUFFIX = "chorus", "EDA", "_EDA"
# Audio and EDA may disagree by a little at the end (a partial last second): trimmed silently.
LENGTH_SLACK_SECONDS = 2.0
#: An acoustic onset: the mean log-mel level rises by at least ONSET_RISE_DB above its minimum
#: over the previous ONSET_LOOKBACK_S seconds (a sound starting over its background).
ONSET_RISE_DB = 5.0
ONSET_LOOKBACK_S = 0.5
#: Seconds after an onset kept inside a focused crop: SCR latency is 1-3 s, plus the first second
#: of the rise.
RESPONSE_WINDOW_S = 4.0


@dataclass
class Recording:
    name: str
    store: FrameStore         # where its audio's frames are (shared by the subjects of one audio)
    key: str                  # its audio's frames in the store
    classes: np.ndarray       # (N,) int64
    eda_us: np.ndarray        # (N,) float64: the recorded values the classes code
    start_us: float           # delta models: the level the classes start from (the first value)
    eda_range_us: tuple[float, float] | None = None    # "normalized" models: the recording's range
    audio_path: Path | None = None    # the files it was loaded from (find_pairs' match)
    csv_path: Path | None = None
    subject: str = ""         # who it is of: NAME/<subject>'s subject, else the recording itself

    @property
    def steps(self) -> int:
        return int(self.classes.shape[0])

    @property
    def frames(self) -> np.ndarray:
        """Its frames ``(C, N*K, F)`` float32 (read whole: for one recording at a time)."""
        return self.store.frames(self.key)[:, : self.steps * self.store.config.spectral_frames_per_eda_step]

    def frames_window(self, f0: int, f1: int) -> np.ndarray:
        """Its frames ``[f0, f1)`` ``(C, f1 - f0, F)`` (``f1`` at most ``N*K``)."""
        return self.store.window(self.key, f0, f1)


def _names(paths: list[Path], limit: int = 5) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f", ... ({len(paths) - limit} more)" if len(paths) > limit else "")


def _audio_name(name: str) -> str:
    """The audio a recording belongs to: its name up to the first ``/`` (``NAME/<subject>``)."""
    return name.split("/", 1)[0]


def _subject(name: str) -> str | None:
    return name.split("/", 1)[1] if "/" in name else None


def _subdir(root: Path, name: str) -> Path | None:
    return next((d for d in sorted(root.iterdir()) if d.name.lower() == name.lower() and d.is_dir()), None)


def _layout(root: Path) -> tuple[Path, Path, Callable[[str], str]]:
    """(audio folder, EDA folder, EDA file stem -> the NAME of the audio it belongs to)."""
    chorus, eda = _subdir(root, PMEMO_AUDIO_DIR), _subdir(root, PMEMO_EDA_DIR)
    if chorus is not None and eda is not None:
        cut = len(PMEMO_EDA_SUFFIX)
        return chorus, eda, lambda stem: stem[:-cut] if stem.lower().endswith(PMEMO_EDA_SUFFIX.lower()) else stem
    return root, root, lambda stem: stem


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return [f for f in sorted(folder.iterdir()) if f.suffix.lower() in suffixes and f.is_file()]


def _owner(stem: str, audio_names) -> tuple[str, str | None] | None:
    """``(NAME, subject)`` an EDA file stem belongs to: ``NAME`` itself (subject None), or
    ``NAME.<subject>`` with the longest audio ``NAME`` that fits; None when no audio fits."""
    if stem in audio_names:
        return stem, None
    parts = stem.split(".")
    for k in range(len(parts) - 1, 0, -1):     # longest NAME first: NAME may hold dots itself
        name = ".".join(parts[:k])
        if name in audio_names:
            return name, ".".join(parts[k:])
    return None


def _recording_names(eda: Path, name: str, subject: str | None) -> list[str]:
    if subject is not None:
        return [f"{name}/{subject}"]
    columns = subject_columns(eda) if eda.suffix.lower() == ".csv" else None
    return [f"{name}/{c}" for c in columns] if columns else [name]


def _unmatched_message(lone_audio: list[Path], lone_eda: list[Path]) -> str:
    lone_csv = [f for f in lone_eda if f.suffix.lower() == ".csv"]
    lone_avro = [f for f in lone_eda if f.suffix.lower() != ".csv"]
    return "; ".join(
        [f"{len(lone_audio)} audio file(s) without a .csv ({_names(lone_audio)})"] * bool(lone_audio)
        + [f"{len(lone_csv)} CSV(s) without audio ({_names(lone_csv)})"] * bool(lone_csv)
        + [f"{len(lone_avro)} .avro file(s) without audio ({_names(lone_avro)})"] * bool(lone_avro))


def find_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, audio_path, eda_path)`` for every EDA recording that has audio, sorted by audio
    then name; ``eda_path`` is the EDA file (``.csv`` or ``.avro``).

    Layouts (see the module docstring): ``NAME.csv`` or ``NAME.avro`` beside ``NAME.<audio>``
    is the recording ``NAME``, or, when ``NAME.csv`` is a subject table, one recording
    ``NAME/<subject>`` per column (only its header is read here); ``NAME.<subject>.csv`` or
    ``.avro`` is the recording ``NAME/<subject>``. A folder with ``chorus/`` and ``EDA/``
    subfolders is PMEmo's layout: ``chorus/<id>.<audio>`` with ``EDA/<id>_EDA.csv``.

    Suffixes match in any case (``NAME.WAV``, ``NAME.CSV``); with several audio files for one
    name the first suffix in ``AUDIO_SUFFIXES`` wins. Audio without EDA and EDA files without
    audio are left out with one ``RuntimeWarning`` naming them. Two files giving one recording
    name (``NAME.csv`` and ``NAME.avro``) raise ``ValueError``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    audio_dir, eda_dir, name_of = _layout(root)
    audios: dict[str, list[Path]] = {}
    for f in _files(audio_dir, AUDIO_SUFFIXES):
        audios.setdefault(f.stem, []).append(f)
    sources: dict[str, Path] = {}
    pairs, lone_eda, used = [], [], set()
    for f in _files(eda_dir, EDA_SUFFIXES):
        owner = _owner(name_of(f.stem), audios.keys())
        if owner is None:
            lone_eda.append(f)
            continue
        audio = min(audios[owner[0]], key=lambda a: AUDIO_SUFFIXES.index(a.suffix.lower()))
        used.add(owner[0])
        for name in _recording_names(f, *owner):
            if name in sources:
                raise ValueError(f"{root}: both {sources[name].name} and {f.name} give the recording {name!r}; "
                                 f"keep one of them (or rename it)")
            sources[name] = f
            pairs.append((name, audio, f))
    pairs.sort(key=lambda p: (_audio_name(p[0]), p[0]))
    lone_audio = sorted(a for name in audios.keys() - used for a in audios[name])
    found = _unmatched_message(lone_audio, lone_eda)
    layout = (f"expected NAME.csv (EDA) beside NAME.wav (or {', '.join(AUDIO_SUFFIXES[1:])}) audio; or NAME.avro, "
              f"NAME.<subject>.csv, or PMEmo's {PMEMO_AUDIO_DIR}/ and {PMEMO_EDA_DIR}/ folders")
    if not pairs:
        raise ValueError(f"no pairs in {root}: found {found or 'no audio or .csv files'}; {layout}")
    if found:
        warnings.warn(f"{root}: ignoring {found}; {layout}", RuntimeWarning, stacklevel=2)
    return pairs


def load_recording(name: str, audio_path: Path, csv_path: Path, config: EDANetConfig, *,
                   store: FrameStore | None = None) -> Recording:
    """One recording of :func:`find_pairs`: the audio's frames and the EDA at the model's rate.

    ``csv_path`` is the EDA file, any form :func:`edanet.signals.read_eda_file` reads; in a
    subject table the column is the part of ``name`` after its first ``/`` (``NAME/<subject>``).
    ``store``: where the audio's frames are computed once and kept (the recordings of one audio
    share them; default: a new one in memory)."""
    store = store if store is not None else FrameStore(config)
    key, n_audio = store.add(Path(audio_path))
    rec = load_eda_file(csv_path, config.eda_sample_rate, column=_subject(name))
    n_eda = len(rec.values)
    slack = max(2, int(LENGTH_SLACK_SECONDS * config.eda_sample_rate))
    if abs(n_eda - n_audio) > slack:
        raise ValueError(f"{name}: length mismatch: audio {audio_path.name} gives {n_audio} EDA steps "
                         f"({n_audio / config.eda_sample_rate:.1f} s) but {csv_path.name} has {n_eda} "
                         f"({n_eda / config.eda_sample_rate:.1f} s); they must cover the same time")
    n = min(n_audio, n_eda)
    eda = rec.values[:n]
    codec = codec_for(config)
    start, eda_range = float(eda[0]), None
    if config.eda_representation == "delta":
        classes = codec.encode(eda, start)
    else:
        classes, eda_range = codec.encode(rec.values)
        classes = classes[:n]
    return Recording(name, store, key, classes, eda, start, eda_range, Path(audio_path), Path(csv_path),
                     subject=_subject(name) or name)


def acoustic_onsets(frames: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """EDA steps (sorted, unique) in which a sound starts, from MFCC frames ``(C, T, F)`` alone.

    An onset is the first frame of a run where the mean log-mel level (``audio.mean_level_db``;
    its reference level does not matter to a rise) lies ``ONSET_RISE_DB`` or more above its
    minimum over the previous ``ONSET_LOOKBACK_S`` seconds. Causal (past frames only).
    """

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[-1] < 1:
        raise ValueError(f"frames must have shape (channels, T, F), got {frames.shape}")
    T = frames.shape[1]
    if T == 0:
        return np.zeros(0, np.int64)
    level = mean_level_db(frames, config)
    w = max(1, round(ONSET_LOOKBACK_S * config.frame_rate))
    past = np.lib.stride_tricks.sliding_window_view(np.pad(level, (w, 0), mode="edge"), w + 1)
    above = level - past.min(axis=1) >= ONSET_RISE_DB
    starts = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    return np.unique(starts // config.spectral_frames_per_eda_step).astype(np.int64)


def _is_validation(name: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return (h / 2 ** 64) < fraction


def _split_pairs(pairs: list, split: str, val_fraction: float) -> list:
    """The pairs of ``split``, by a stable hash of each recording's audio name: every recording
    of one audio goes to the same side."""
    if split == "all":
        return list(pairs)
    chosen = [p for p in pairs if _is_validation(_audio_name(p[0]), val_fraction) == (split == "val")]
    if split == "val" and not chosen and pairs and val_fraction > 0:
        last = _audio_name(pairs[-1][0])      # tiny folders: still validate on something (one audio), stably
        chosen = [p for p in pairs if _audio_name(p[0]) == last]
    return chosen


def _no_recordings_message(root, split: str, pairs: list, chosen: list, skipped: list, val_fraction: float) -> str:
    head = f"no usable recordings for split {split!r} in {root}"
    if chosen:          # every chosen pair was skipped
        return (f"{head}: all {len(chosen)} of its recording(s) were skipped as bad ("
                + "; ".join(f"{n}: {r}" for n, r in skipped[:3]) + "); fix or replace them")
    if split == "val":      # only with val_fraction <= 0: tiny folders otherwise get a fallback
        return f"{head}: val_fraction is {val_fraction:g}, so no recording goes to validation"
    n_val = sum(_is_validation(_audio_name(name), val_fraction) for name, _, _ in pairs)
    return (f"{head}: of {len(pairs)} recording(s), {len(pairs) - n_val} went to 'train' and {n_val} to 'val' "
            f"(val_fraction {val_fraction:g}, by a stable hash of each audio file's name); add recordings (about "
            f"{val_fraction:.0%} of them go to validation), or lower the fraction (edanet train --val-fraction, "
            f"TrainConfig.val_fraction; 0 trains on every recording, without validation)")


class PairedData:
    """Recordings of one split, with random crops for training and fixed windows for validation.

    A pair that cannot be loaded raises ``ValueError`` naming it and ending in ``bad_pair_hint``
    (what the caller offers to get past it), unless ``skip_bad``."""

    def __init__(self, root: str | Path, config: EDANetConfig, split: str = "train", *,
                 val_fraction: float = 0.1, crop_steps: int = 32, skip_bad: bool = False, progress: bool = False,
                 max_recordings: int | None = None, cache: str | Path | None = None,
                 bad_pair_hint: str = "use --skip-bad to skip such files"):
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if max_recordings is not None and (not isinstance(max_recordings, numbers.Integral)
                                           or isinstance(max_recordings, bool) or max_recordings < 1):
            raise ValueError(f"max_recordings must be None (all) or a positive integer, got {max_recordings!r}")
        self.config = config
        self.crop_steps = int(crop_steps)
        K = config.spectral_frames_per_eda_step
        self.warmup_steps = math.ceil((config.receptive_field_frames - 1) / K)
        pairs = find_pairs(root)
        chosen = _split_pairs(pairs, split, val_fraction)
        if max_recordings is not None:
            chosen = chosen[:max_recordings]
        self.recordings: list[Recording] = []
        self.skipped: list[tuple[str, str]] = []
        it = chosen
        if progress:
            from tqdm import tqdm
            it = tqdm(chosen, desc=f"loading {split}", unit="rec")
        self.store = FrameStore(config, cache)
        self.subject_rows: dict[str, int] = {}       # subject -> its row in the model's table (training sets it)
        for name, audio, csv in it:
            try:     # per recording: one bad subject of an audio does not take the others with it
                rec = load_recording(name, audio, csv, config, store=self.store)
            except (ValueError, OSError) as e:
                if not skip_bad:
                    raise ValueError(f"bad pair {name!r} in {root}: {e} ({bad_pair_hint})") from None
                self.skipped.append((name, str(e)))
                continue
            if rec.steps < 1:
                self.skipped.append((name, "no complete EDA step"))
                continue
            self.recordings.append(rec)
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} bad pair(s): " +
                          "; ".join(f"{n}: {r}" for n, r in self.skipped[:5]), RuntimeWarning, stacklevel=2)
        if not self.recordings:
            raise ValueError(_no_recordings_message(root, split, pairs, chosen, self.skipped, val_fraction))
        self.subjects = sorted({r.subject for r in self.recordings})

    @functools.cached_property
    def onsets(self) -> list[np.ndarray]:
        """Each recording's acoustic onsets (steps), found when onset focus first needs them: each
        audio's frames are read once here, not at start-up (validation and evaluation never do)."""
        of_audio: dict[str, np.ndarray] = {}      # per audio: its subjects share them (onsets are causal)
        out = []
        for r in self.recordings:
            if r.key not in of_audio:
                of_audio[r.key] = acoustic_onsets(self.store.frames(r.key), self.config)
            out.append(of_audio[r.key][of_audio[r.key] < r.steps])
        return out

    @property
    def window_steps(self) -> int:
        return self.warmup_steps + self.crop_steps

    def _window(self, rec: Recording, start: int, length: int):
        """Frames, conditioning classes and targets of steps [start, start+length), zero-padded
        (and masked) past the end; conditioning of the first step is the true previous value."""
        K = self.config.spectral_frames_per_eda_step
        n = min(length, rec.steps - start)
        part = rec.frames_window(start * K, (start + n) * K)
        frames = np.zeros((part.shape[0], length * K, part.shape[2]), np.float32)
        frames[:, : n * K] = part
        target = np.zeros(length, np.int64)
        target[:n] = rec.classes[start:start + n]
        cond = np.empty(length, np.int64)
        cond[0] = rec.classes[start - 1] if start > 0 else self.config.start_class
        cond[1:] = target[:-1]
        valid = np.zeros(length, bool)
        valid[:n] = True
        return frames, cond, target, valid

    def subject_row(self, rec: Recording) -> int:
        """The row of ``rec``'s subject in :attr:`subject_rows` (the model's subject table), or -1
        for a subject it does not hold (the model then takes its average subject)."""
        return self.subject_rows.get(rec.subject, -1) if self.subject_rows else -1

    def read(self, w: Window) -> tuple[np.ndarray, ...]:
        """``(frames, cond, target, mask, subject)`` of window ``w``: ``mask`` marks its scored
        steps (those with data in ``w.scored``), ``subject`` its recording's subject row."""
        rec = self.recordings[w.rec]
        frames, cond, target, valid = self._window(rec, w.start, w.length)
        mask = valid.copy()
        mask[: w.scored[0]] = False
        mask[w.scored[1]:] = False
        return frames, cond, target, mask, np.int64(self.subject_row(rec))

    @staticmethod
    def collate(items) -> tuple[torch.Tensor, ...]:
        """A batch of :meth:`read` items as tensors ``(frames, cond, target, mask, subject)``."""
        return tuple(torch.from_numpy(np.stack(x)) for x in zip(*items))

    def draw_windows(self, batch_size: int, generator: torch.Generator, onset_focus: float = 0.0) -> list[Window]:
        """The windows of a training batch, drawn with ``generator`` (see :meth:`sample_batch`)."""
        if not 0.0 <= onset_focus <= 1.0:
            raise ValueError(f"onset_focus must lie in [0, 1], got {onset_focus!r}")
        W, C = self.window_steps, self.crop_steps
        after = min(C, max(1, round(RESPONSE_WINDOW_S * self.config.eda_sample_rate)))
        picks = [int(torch.randint(len(self.recordings), (1,), generator=generator)) for _ in range(batch_size)]
        # a window longer than every recording of the batch starts each at 0 and scores it whole:
        # it need only be as long as the longest of them
        length = min(W, max(self.recordings[i].steps for i in picks))
        out = []
        for i in picks:
            r, onsets = self.recordings[i], self.onsets[i] if onset_focus > 0 else ()
            hi = max(0, r.steps - W)
            if onset_focus > 0 and len(onsets) and float(torch.rand(1, generator=generator)) < onset_focus:
                j = int(onsets[int(torch.randint(len(onsets), (1,), generator=generator))])
                # scored steps are [start + warm-up, start + W): keep [j, j + after) inside them
                lo = j + after - C - self.warmup_steps
                start = min(max(0, lo + int(torch.randint(C - after + 1, (1,), generator=generator))), hi)
            else:
                start = int(torch.randint(hi + 1, (1,), generator=generator))
            # steps before the crop lack part of their field: not scored
            out.append(Window(i, start, length, (self.warmup_steps if start > 0 else 0, length)))
        return out

    def sample_batch(self, batch_size: int, generator: torch.Generator, onset_focus: float = 0.0):
        """A training batch ``(frames, cond, target, mask)`` of random windows; ``mask`` marks the
        scored steps (the crop). With probability ``onset_focus`` a window is placed so that an
        acoustic onset of its recording and the ``RESPONSE_WINDOW_S`` after it are scored (see the
        module docstring). (Training reads the same windows, with their subjects, through
        ``edanet.training.loader``.)"""
        return self.collate([self.read(w) for w in self.draw_windows(batch_size, generator, onset_focus)])[:4]

    def window_starts(self, recording) -> list[int]:
        """The first scored step of each validation window of ``recording``: 0 (a whole window),
        then one every ``crop_steps`` steps."""
        return [0, *range(self.window_steps, recording.steps, self.crop_steps)]

    def validation_windows(self, max_windows_per_recording: int = 8) -> "Windows":
        """Deterministic windows tiling each recording, as training scores it: the first window
        starts at 0 and scores all its steps (the field before the start is the model's zeros,
        as when it generates), each later one scores a crop after a warm-up that overlaps what
        came before. Read when indexed (:meth:`read`'s items): memory does not grow with them."""
        W, C = self.window_steps, self.crop_steps
        specs = []
        for i, r in enumerate(self.recordings):
            for s in self.window_starts(r)[:max_windows_per_recording]:
                start = max(0, s - self.warmup_steps)
                specs.append(Window(i, start, W, (s - start, s - start + (W if s == 0 else C))))
        return Windows(self, specs)


@dataclass(frozen=True)
class Window:
    """A window of a recording: ``rec`` its index, steps ``[start, start + length)``, of which
    ``scored`` (relative to ``start``) are scored."""
    rec: int
    start: int
    length: int
    scored: tuple[int, int]


class Windows(Sequence):
    """Windows of a ``PairedData``, read when indexed: an item is ``PairedData.read``'s, a slice
    a list of them."""

    def __init__(self, data: PairedData, specs: list[Window]):
        self.data, self.specs = data, specs

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.data.read(w) for w in self.specs[i]]
        return self.data.read(self.specs[i])
