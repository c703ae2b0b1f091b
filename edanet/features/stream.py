"""Model input features of audio that arrives block by block (a live input, a file read in parts).

- :class:`FeatureStream`: :func:`edanet.features.features` computed as the audio comes. Whatever
  the audio is cut into, the frames of all its pushes and its close, joined, are bit for bit
  those ``features`` gives for the whole audio; a frame is returned once, when it is final.
- :func:`audio_info` and :func:`audio_blocks`: a file's rate, channels and length from its
  header, and its samples in ``(n, channels)`` float32 blocks, never the whole file at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..config import AUDIO_RATES, EDANetConfig
from .audio import as_samples, check_sample_rate, check_samples, file_info, is_pcm16, map_channels, read_blocks
from .frame_features import compute_frame_features
from .frames import POWER_DB_AMIN, scale_mfccs, too_short, with_frame_features

__all__ = ["FeatureStream", "file_features", "audio_info", "audio_blocks", "BLOCK_SECONDS"]


# the frame features a stream computes (each needs its own history carried between pushes)
_STREAMED_FEATURES = ("loudness", "onset_strength")


def _final_length(n: int, orig: float, target: float) -> int:
    """Samples :func:`edanet.features.audio.resample` makes of ``n``: the same float expression, so the
    stream and the whole-file path cut at the same sample."""
    return int(np.ceil(n * float(target) / orig))


class FeatureStream:
    """Features of audio pushed in chunks, for a model with ``config``.

    ``sample_rate``: the pushed audio's rate (Hz); ``channels``: how many channels it has. It
    is mixed to mono, kept or duplicated as :func:`edanet.features.audio.load_audio` does for
    ``config.in_channels``, resampled to ``config.audio_sample_rate`` (soxr_hq, streaming), and
    turned into frames one whole EDA step (``K`` frames, ``K * hop`` samples) at a time.

    :meth:`push` returns the frames of the steps a chunk completes, float32
    ``(config.feature_channels, k * K, num_mfccs)`` (``k`` may be 0); :meth:`close` flushes
    the resampler, makes the audio the length ``features`` gives it, and returns the frames of
    the last whole steps (a partial step at the end is dropped, as ``features`` drops it).
    """

    #: What the audio is called in error messages (a file's path); None: "chunk", the pushed chunks.
    name: str | None = None

    def __init__(self, config: EDANetConfig, sample_rate: float, channels: int = 1):
        if not isinstance(config, EDANetConfig):
            raise TypeError(f"config must be an EDANetConfig, got {type(config).__name__}")
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"channels must be a positive integer (the pushed audio's channel count), "
                             f"got {channels!r}")
        unknown = [f for f in config.frame_features if f not in _STREAMED_FEATURES]
        if unknown:
            raise ValueError(f"FeatureStream does not compute the frame features {unknown}; use edanet.features.features")
        self._config = config
        self._rate = check_sample_rate(sample_rate, "sample_rate", AUDIO_RATES)
        self._channels = int(channels)
        need = config.in_channels
        if need > 1 and self._channels not in (1, need):
            raise ValueError(f"the model reads {need}-channel audio; a stream of {self._channels} channels cannot "
                             f"be mapped to it (give mono or {need}-channel audio)")
        self._target = float(config.audio_sample_rate)
        self._resampling = abs(self._rate - self._target) > 1e-9 * self._target      # load_audio's test
        self._resamplers = None
        if self._resampling and config.audio_input:
            import soxr
            # one stream per channel: load_audio resamples each channel on its own
            self._resamplers = [soxr.ResampleStream(self._rate, self._target, 1, dtype="float32", quality="soxr_hq")
                                for _ in range(need)]
        self._hop = config.mfcc_hop_size
        self._step = config.spectral_frames_per_eda_step * self._hop
        self._n_in = 0
        self._produced = 0             # resampled samples soxr has returned
        self._released = 0             # of them, those passed on as final
        self._held = np.zeros((need, 0), np.float32)       # returned by soxr, not yet final
        self._pending = np.zeros((need, 0), np.float32)    # final, not yet a whole step
        # the samples before the next frame's hop that its window reaches back to (zeros at the start)
        self._tail = np.zeros((need, config.mfcc_window_size - self._hop), np.float32)
        self._onset_before = None      # the last onset sub-window's level (dB), for the next step's first rise
        self._steps = 0
        self._closed = False

    @property
    def steps(self) -> int:
        """EDA steps whose frames have been returned so far."""
        return self._steps

    @property
    def samples_in(self) -> int:
        """Samples (per channel, at ``sample_rate``) pushed so far."""
        return self._n_in

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (push and close then raise)."""
        return self._closed

    def push(self, chunk: Any) -> np.ndarray:
        """Add ``chunk`` (1-D mono, or 2-D ``(n, channels)`` as soundfile reads it; float, or integer
        PCM scaled by its full scale) and return the frames of the EDA steps it completes.
        ValueError, the stream unchanged, for the wrong shape or channel count or NaN/inf samples."""
        if self._closed:
            raise ValueError("push() on a closed FeatureStream: it has returned all its frames; "
                             "make a new FeatureStream for more audio")
        x = self._as_channels(chunk)
        if x.shape[1] == 0:
            return self._empty()
        self._n_in += x.shape[1]
        if self._resamplers is not None:
            y = np.stack([r.resample_chunk(c, last=False) for r, c in zip(self._resamplers, x)])
            return self._frames(self._release(y, _final_length(self._n_in, self._rate, self._target)))
        if self._resampling:            # audio_input=False: only the resampled length matters
            n = _final_length(self._n_in, self._rate, self._target)
            return self._frames(self._silence(n))
        return self._frames(x if self._config.audio_input else self._silence(self._n_in))

    def close(self) -> np.ndarray:
        """Flush the resampler, cut or zero-pad the audio to ``features``' length, and return the
        frames of the steps that completes. The stream takes no more audio after it."""
        if self._closed:
            raise ValueError("close() on a FeatureStream already closed")
        self._closed = True
        n = _final_length(self._n_in, self._rate, self._target) if self._resampling else self._n_in
        if self._resamplers is not None:
            empty = np.zeros(0, np.float32)
            y = np.stack([r.resample_chunk(empty, last=True) for r in self._resamplers])
            y = self._release(y, n)
            if self._released < n:     # soxr gave fewer: resample() zero-pads to the length
                y = np.concatenate([y, np.zeros((y.shape[0], n - self._released), np.float32)], axis=1)
                self._released = n
            return self._frames(y)
        if self._resampling:
            return self._frames(self._silence(n))
        return self._empty()

    # -- input ----------------------------------------------------------------------------------

    def _as_channels(self, chunk: Any) -> np.ndarray:
        """``chunk`` checked and mapped to float32 ``(config.in_channels, n)``."""
        if chunk is None:
            raise ValueError("chunk is None: push an array of samples")
        a = as_samples(chunk)
        want = self._channels
        if a.ndim == 1:
            if want != 1:
                raise ValueError(f"chunk is 1-D (mono) but this stream reads {want}-channel audio; push "
                                 f"(samples, {want}) arrays, or make the stream with channels=1")
            a = a[:, None]
        elif a.ndim != 2:
            raise ValueError(f"chunk must be 1-D (mono) or 2-D (samples, channels); got shape {a.shape}")
        elif a.shape[1] != want:
            hint = (" (it looks like (channels, samples): pass its transpose)"
                    if a.shape[0] == want and a.shape[1] != want else "")
            raise ValueError(f"chunk has shape {a.shape}: {a.shape[1]} channel(s), but this stream reads {want} "
                             f"(channels={want}); push (samples, channels) arrays{hint}")
        data = a.T                      # (channels, n), the view load_audio takes of (n, channels) audio
        if self.name is None:
            check_samples(data, "chunk", chunk_of=self._n_in,
                          fix="clean the audio before pushing it (the stream is unchanged)")
        else:
            check_samples(data, self.name, start=self._n_in)
        data = map_channels(data, self._config.in_channels, "the stream")
        return np.ascontiguousarray(data, dtype=np.float32)

    def _release(self, y: np.ndarray, final: int) -> np.ndarray:
        """Hold soxr's output ``y`` back beyond sample ``final`` (a later close may cut there);
        return the samples up to it not yet returned."""
        self._produced += y.shape[1]
        held = np.concatenate([self._held, y], axis=1) if self._held.shape[1] else y
        k = max(0, min(final, self._produced) - self._released)
        self._released += k
        self._held = held[:, k:].copy()          # not a view keeping a large push alive
        return held[:, :k]

    def _silence(self, n: int) -> np.ndarray:
        k = n - self._released
        self._released = n
        return np.zeros((self._config.in_channels, k), np.float32)

    # -- frames ---------------------------------------------------------------------------------

    def _empty(self) -> np.ndarray:
        c = self._config
        return np.zeros((c.feature_channels, 0, c.num_mfccs), np.float32)

    def _frames(self, x: np.ndarray) -> np.ndarray:
        """Append final samples ``x`` ``(C, n)``; the frames of the whole steps now complete."""
        pending = np.concatenate([self._pending, x], axis=1) if self._pending.shape[1] else x
        k = pending.shape[1] // self._step
        self._pending = pending[:, k * self._step:].copy()
        if k == 0:
            return self._empty()
        from .spectral import log_mel_mfcc
        cfg, hop = self._config, self._hop
        block = pending[:, :k * self._step]
        padded = np.concatenate([self._tail, block], axis=1)
        keep = self._tail.shape[1]
        self._tail = padded[:, padded.shape[1] - keep:].copy()
        # what mfcc_frames does to the frames of the whole audio
        m = log_mel_mfcc(padded, sample_rate=cfg.audio_sample_rate, n_fft=cfg.mfcc_window_size, hop=hop,
                         n_mels=cfg.num_mels, n_mfcc=cfg.num_mfccs, amin=POWER_DB_AMIN)
        frames = scale_mfccs(m, cfg)
        self._steps += k
        if not cfg.frame_features:
            return frames
        # the block's first onset sub-window rises from the previous block's last
        extra, self._onset_before = compute_frame_features(block, cfg, self._onset_before)
        return with_frame_features(frames, extra)


#: Audio read per block when a file is generated block by block: a minute at 48 kHz stereo is
#: 23 MB of float32, whatever the file's length.
BLOCK_SECONDS = 60.0
#: Audio read per block when only a file's features are computed (a corpus' feature workers,
#: several at once): 10 s keeps each worker's blocks near 20 MB at 48 kHz stereo.
FEATURE_BLOCK_SECONDS = 10.0


def file_features(path: str | Path, config: EDANetConfig) -> tuple[np.ndarray, int]:
    """:func:`edanet.features.features` of an audio file (the same frames, bit for bit), computed
    block by block (:data:`FEATURE_BLOCK_SECONDS` of audio at a time), so that only the frames, not
    the file's samples, are ever held whole. Errors name the file."""
    path = Path(path).expanduser()
    info, sr = file_info(path)
    stream = FeatureStream(config, sr, channels=int(info.channels))
    stream.name = f"audio file {str(path)!r}"
    parts, read = [], 0
    for chunk in read_blocks(path, max(1, int(FEATURE_BLOCK_SECONDS * sr)), is_pcm16(info)):
        read += chunk.shape[0]
        parts.append(stream.push(chunk))
    parts.append(stream.close())
    if stream.steps == 0:
        raise too_short(read, sr, config)
    return np.concatenate(parts, axis=1), stream.steps


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """``(sample_rate, channels, frames)`` of an audio file, from its header: the checks of
    :func:`edanet.features.audio.load_audio` on a file (missing, a directory, unreadable, a rate outside
    1-384 kHz, a truncated WAV/AIFF) before any sample is read."""
    info, sr = file_info(Path(path).expanduser())
    return sr, int(info.channels), int(info.frames)


def audio_blocks(path: str | Path, block_frames: int = 65536) -> Iterator[np.ndarray]:
    """The samples of an audio file as float32 ``(n, channels)`` blocks of ``block_frames``
    samples (the last may be shorter), read one at a time: an hours-long file is never in
    memory whole. The file is checked (:func:`audio_info`) when this is called, not at the
    first block."""
    if isinstance(block_frames, bool) or not isinstance(block_frames, (int, np.integer)) or block_frames < 1:
        raise ValueError(f"block_frames must be a positive integer, got {block_frames!r}")
    path = Path(path).expanduser()
    info, _ = file_info(path)
    return read_blocks(path, int(block_frames), is_pcm16(info))
