"""The model input frames of a dataset's audio files, computed once per file and read a window at
a time: held in memory (small datasets, evaluation), or in a cache folder of ``.npy`` files
that a training run reads from disk, so that its memory does not grow with its data.

A cached file is ``(T, C, F)`` float32 (a window of frames is one contiguous read) named by a
hash of the audio file (path, size, modification time), of the config fields its features
depend on and of the feature code's version (``FRAMES_VERSION``): a cache folder serves later runs of the same data and features, never stale frames.
Files are written atomically, so runs may share a folder.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..config import EDANetConfig
from ..features import features
from ..io import atomic_write

__all__ = ["FrameStore", "FEATURE_FIELDS"]

#: The version of the feature code: part of every key, so a cache folder shared across upgrades
#: never serves frames an older feature computation made. Raise it when features() changes.
FRAMES_VERSION = 1

#: The config fields a file's frames depend on.
FEATURE_FIELDS = ("audio_sample_rate", "eda_sample_rate", "mfcc_window_size", "mfcc_hop_size", "in_channels",
                  "num_mfccs", "num_mels", "c0_ref_db", "frame_features", "audio_input")


class FrameStore:
    """Frames ``(C, T, F)`` of audio files for ``config``: :meth:`add` computes a file's once (and
    returns its key and its number of whole EDA steps); :meth:`frames` gives all of a file's,
    :meth:`window` frames ``[f0, f1)``. ``folder`` None keeps them in memory."""

    def __init__(self, config: EDANetConfig, folder: str | os.PathLike | None = None):
        self.config = config
        self.folder = None if folder is None else Path(folder)
        self._memory: dict[str, np.ndarray] = {}
        self._steps: dict[str, int] = {}
        fields = {k: getattr(config, k) for k in FEATURE_FIELDS}
        self._config_key = json.dumps({"frames_version": FRAMES_VERSION, **fields}, sort_keys=True, default=list)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def key(self, audio: Path) -> str:
        st = os.stat(audio)
        ident = f"{Path(audio).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self._config_key}"
        return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def add(self, audio: Path) -> tuple[str, int]:
        """``(key, steps)`` of ``audio``'s frames, computed now unless held or cached already."""
        key = self.key(audio)
        if key in self._steps:
            return key, self._steps[key]
        path = self._path(key)
        if path is not None and path.is_file():
            shape = np.load(path, mmap_mode="r").shape
            steps = shape[0] // self.config.spectral_frames_per_eda_step
        else:
            frames, steps = features(str(audio), None, self.config)
            if path is None:
                self._memory[key] = frames
            else:
                tcf = np.ascontiguousarray(frames.transpose(1, 0, 2))          # (T, C, F): windows contiguous
                atomic_write(path, lambda tmp: np.save(tmp, tcf, allow_pickle=False))
        self._steps[key] = steps
        return key, steps

    def frames(self, key: str) -> np.ndarray:
        """All the frames ``(C, T, F)`` of a file (a copy when they come from the cache)."""
        if self.folder is None:
            return self._memory[key]
        return np.ascontiguousarray(np.load(self._path(key), mmap_mode="r").transpose(1, 0, 2))

    def window(self, key: str, f0: int, f1: int) -> np.ndarray:
        """Frames ``[f0, f1)`` ``(C, f1 - f0, F)`` of a file (``f1`` at most its length)."""
        if self.folder is None:
            return self._memory[key][:, f0:f1]
        mm = np.load(self._path(key), mmap_mode="r")       # mapped only while the window is copied out
        return np.ascontiguousarray(mm[f0:f1].transpose(1, 0, 2))

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.npy"

