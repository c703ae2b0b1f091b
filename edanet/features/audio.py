"""Audio as the model reads it: files (any format soundfile reads) and arrays, checked and
turned into float32 ``(channels, n)`` at the model's rate.

- :func:`file_info` reads and checks a file's header (a missing file, a folder, a FIFO, a rate
  outside :data:`edanet.config.AUDIO_RATES`, a truncated WAV/AIFF) before any sample is read;
  :func:`read_blocks` reads its samples a block at a time.
- :func:`as_samples` takes an array or a tensor of float or integer PCM; :func:`check_samples`
  refuses NaN, inf and absurd magnitudes; :func:`map_channels` mixes or keeps channels.
- :func:`load_audio` does all of it for a whole file or array and resamples it (soxr, high
  quality, as ``librosa.resample``: :func:`resample`).
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..config import AUDIO_RATES
from ..io import check_regular_file

__all__ = ["load_audio", "audio_array", "resample", "file_info", "read_blocks", "read_float32", "is_pcm16", "as_samples",
           "check_samples", "check_sample_rate", "check_file_rate", "map_channels", "unreadable", "MAX_SAMPLE"]

#: Samples per chunk where the whole audio is checked (NaN, inf, magnitude): no boolean array
#: the size of the audio.
_CHUNK = 1 << 16


def check_sample_rate(rate: Any, what: str, limits: tuple[float, float, str] | None = None) -> float:
    """``rate`` as a float, or a ValueError naming ``what`` unless it is a positive, finite number
    of Hz within ``limits`` (``(lowest, highest, kind)``: :data:`edanet.config.AUDIO_RATES` or
    :data:`edanet.config.EDA_RATES`; None: any positive rate)."""
    span = f" ({limits[0]:g}-{limits[1]:g} Hz for {limits[2]})" if limits else ""
    if isinstance(rate, bool):
        raise ValueError(f"{what} must be a positive number of Hz{span}, got {rate!r}")
    try:
        r = float(rate)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be a positive number of Hz{span}, got {_shown(rate)}") from None
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"{what} must be a positive, finite number of Hz{span}, got {_shown(rate)}")
    if limits and not limits[0] <= r <= limits[1]:
        raise ValueError(f"{what} {r:g} Hz is outside {limits[0]:g}-{limits[1]:g} Hz, the {limits[2]} sample "
                         f"rates edanet reads")
    return r


def _shown(v: Any, limit: int = 40) -> str:
    try:
        text = repr(v)
    except (ValueError, RecursionError):
        return f"a {type(v).__name__} too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# RIFF/RIFX (WAV) and FORM (AIFF) files: byte order and the id of the chunk holding the audio
_CONTAINERS = {b"RIFF": ("<", b"data"), b"RIFX": (">", b"data"), b"FORM": (">", b"SSND")}
# data chunk sizes a streaming writer (a pipe) leaves unset: the length is then unknown, not wrong
_UNSET_SIZES = (0, 0xFFFFFFFF)
_MAX_CHUNKS = 1000


def _audio_chunk(path: Path) -> tuple[int, int] | None:
    """``(size its header gives, bytes the file holds)`` of the audio data chunk of a WAV or AIFF
    file, or None for another format or when no data chunk header is found. Reads chunk headers only."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in _CONTAINERS:
            return None
        order, data_id = _CONTAINERS[head[:4]]
        pos = 12
        for _ in range(_MAX_CHUNKS):
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            (n,) = struct.unpack(order + "I", chunk[4:])
            if chunk[:4] == data_id:
                return n, size - pos - 8
            pos += 8 + n + (n & 1)        # chunks are padded to an even length
    return None


def _check_complete(path: Path, sample_rate: float, frames: int) -> None:
    """ValueError when a WAV or AIFF file holds less audio data than its header promises.

    libsndfile reads such a file silently, as far as it goes; edanet refuses it: the generated
    EDA would be silently shorter than the recording one believes one gave, and a training pair
    would pair the EDA with part of its audio. Cutting it is a decision for its owner (ffmpeg
    reads it with a warning and writes a complete file of the part present)."""
    found = _audio_chunk(path)
    if found is None or found[0] in _UNSET_SIZES or found[0] <= found[1]:
        return
    promised, present = found
    raise ValueError(f"audio file {str(path)!r} is truncated: its header promises {promised} bytes of audio "
                     f"data but the file holds {present} ({present / promised:.0%}, {frames / sample_rate:.3g} s "
                     f"of audio); use the complete file, or cut it deliberately (e.g. ffmpeg -i in.wav out.wav "
                     f"writes the part present)")


def unreadable(path: Path, e: Exception) -> ValueError:
    """The error for a file soundfile could not open or read (``e``: what it raised)."""
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return ValueError(f"could not read audio file {str(path)!r}: not an audio file soundfile can read "
                      f"(WAV, FLAC, OGG, MP3, ...) or it is corrupt ({msg})")


#: Containers whose 16-bit PCM libsndfile reads as ``sample / 32768`` in float32 (exact), and
#: reads as int16 straight into the array: scaled here, the same floats come about 3x faster
#: (libsndfile converts to float a small buffer at a time).
_PCM16_FORMATS = ("WAV", "WAVEX", "AIFF", "W64", "RF64")


def file_info(path: Path) -> tuple[Any, float]:
    """soundfile's ``info`` of an audio file and its checked rate, before any sample is read:
    a missing file, a folder, an unreadable file, a rate outside :data:`AUDIO_RATES` or a
    truncated WAV/AIFF is refused."""
    import soundfile as sf

    check_regular_file(path, "audio file")
    try:
        info = sf.info(str(path))
    except MemoryError:
        raise
    except Exception as e:  # soundfile.LibsndfileError, RuntimeError, TypeError on odd files
        raise unreadable(path, e) from None
    sr = check_sample_rate(info.samplerate, f"audio file {str(path)!r}: its header's sample rate", AUDIO_RATES)
    _check_complete(path, sr, info.frames)
    return info, sr


def is_pcm16(info) -> bool:
    """Whether a file (soundfile ``info``) is read fastest as int16 (``read_float32``)."""
    return info.subtype == "PCM_16" and info.format in _PCM16_FORMATS


def read_float32(read, pcm16: bool) -> np.ndarray:
    """``read(dtype=...)`` (soundfile's ``read`` of a file or of an open file's next block) as
    float32 ``(n, channels)``: 16-bit PCM read as int16 and scaled, the same floats faster."""
    if pcm16:
        return np.multiply(read(dtype="int16"), np.float32(2.0 ** -15), dtype=np.float32)
    return read(dtype="float32")


def _read_file(path: Path) -> tuple[np.ndarray, float, bool]:
    """The samples ``(channels, n)`` and rate of an audio file, its header checked first
    (:func:`file_info`); and whether the samples are finite by construction (16-bit PCM)."""
    import soundfile as sf

    info, sr = file_info(path)
    pcm16 = is_pcm16(info)
    try:
        data = read_float32(lambda dtype: sf.read(str(path), dtype=dtype, always_2d=True)[0], pcm16)
    except MemoryError:
        raise
    except Exception as e:
        raise unreadable(path, e) from None
    return data.T, sr, pcm16  # (channels, n)


def as_samples(audio: Any) -> np.ndarray:
    """``audio`` (an array, a list, a torch tensor) as a float32 array: floats kept, integer PCM
    scaled by its dtype's full scale; ValueError for what holds no real samples."""
    if type(audio).__module__.startswith("torch"):
        if getattr(audio, "is_meta", False):
            raise ValueError("audio is a torch tensor on the 'meta' device, which holds shapes but no samples; "
                             "pass a tensor with data (on the CPU or a GPU)")
        try:
            audio = audio.detach().cpu().numpy()
        except (RuntimeError, TypeError, NotImplementedError) as e:    # sparse, quantized, ...
            raise ValueError(f"audio tensor cannot be read as samples ({type(e).__name__}: {e}); pass a dense "
                             "float or integer tensor") from None
    try:
        a = np.asarray(audio)
    except Exception as e:
        raise ValueError(f"audio must be a path or a numeric array, got {type(audio).__name__} ({e})") from None
    if a.dtype.kind == "f":
        with np.errstate(over="ignore"):    # beyond float32's range: inf, refused as non-finite
            return a.astype(np.float32, copy=False)
    if a.dtype.kind == "i":
        # integer PCM: full scale of the dtype maps to [-1, 1)
        return (a.astype(np.float64) / float(-np.iinfo(a.dtype).min)).astype(np.float32)
    if a.dtype.kind == "u":
        info = np.iinfo(a.dtype)
        mid = (info.max + 1) / 2.0
        return ((a.astype(np.float64) - mid) / mid).astype(np.float32)
    raise ValueError(f"audio array must hold real numbers (float or integer PCM), got dtype {a.dtype}")


def _orient(a: np.ndarray) -> np.ndarray:
    """1-D -> (1, n). 2-D: (channels, n), unless the first axis is longer than the second,
    in which case it is taken as (n, channels) and transposed (the channel axis is the shorter)."""
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 2:
        return a.T if a.shape[0] > a.shape[1] else a
    raise ValueError(f"audio array must be 1-D (mono) or 2-D (channels, samples); got shape {a.shape}")


def audio_array(audio: Any, sample_rate) -> tuple[np.ndarray, float]:
    """An array of samples and its rate as ``(float32 (channels, n), rate)``: 1-D is mono; of a
    2-D array the shorter axis is the channel axis (soundfile's ``(n, channels)`` is transposed).
    ValueError for None, bytes, no or a bad ``sample_rate``, or what holds no real samples (the
    samples themselves are checked by :func:`check_samples`)."""
    if audio is None:
        raise ValueError("audio is None: pass a path or an array of samples")
    if isinstance(audio, bytes):
        raise ValueError("audio must be a path or an array of samples, got bytes")
    if sample_rate is None:
        raise ValueError("sample_rate is required when audio is an array (pass sample_rate=... in Hz)")
    sr = check_sample_rate(sample_rate, "sample_rate", AUDIO_RATES)
    return _orient(as_samples(audio)), sr


def load_audio(audio: Any, sample_rate: float | None = None, *, target_rate: float,
               channels: int = 1) -> np.ndarray:
    """Load ``audio`` as float32 ``(channels, n)`` at ``target_rate`` Hz.

    ``audio``: a path (``str`` or ``os.PathLike``; any format soundfile reads) or an array —
    1-D mono, or 2-D ``(channels, n)``; a 2-D array whose first axis is *longer* than its
    second is taken as ``(n, channels)`` (soundfile's layout) and transposed, i.e. the shorter
    axis is the channel axis (ties: first axis). Torch tensors are accepted; integer arrays are
    PCM scaled by the dtype's full scale. ``sample_rate`` is required for arrays; for a file it
    may be omitted, and if given must equal the file's rate.

    Channels: ``channels == 1`` mixes to mono (mean of the channels); audio with exactly
    ``channels`` channels is kept; mono audio with ``channels > 1`` is duplicated; anything
    else is a ``ValueError``. Resampling (:func:`resample`, soxr_hq) happens after mixing.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unreadable or
    non-audio file, a WAV/AIFF file holding less audio than its header says (truncated), empty
    audio, NaN/inf samples, a missing sample rate or one (given, in a file's header, or the
    target) outside 1-384 kHz (:data:`edanet.config.AUDIO_RATES`; checked before resampling),
    or an unsupported channel count.
    """
    target = check_sample_rate(target_rate, "target_rate", AUDIO_RATES)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    channels = int(channels)

    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio).expanduser()
        data, sr, finite = _read_file(path)
        where = f"audio file {str(path)!r}"
        check_file_rate(sample_rate, sr, where)
    else:
        data, sr = audio_array(audio, sample_rate)
        where = "audio array"
        finite = False

    if data.size == 0:
        raise ValueError(f"{where} is empty (shape {tuple(data.shape)}): no samples to process")
    if not finite:
        check_samples(data, where)
    data = map_channels(data, channels, where)

    if abs(sr - target) > 1e-9 * target:
        data = resample(data, sr, target)
        if data.shape[-1] == 0:
            raise ValueError(f"{where} is empty after resampling from {sr:g} Hz to {target:g} Hz")
    return np.ascontiguousarray(data, dtype=np.float32)


def check_file_rate(sample_rate, file_rate: float, where: str) -> None:
    """ValueError unless ``sample_rate`` (given with a file) is None or the file's rate."""
    if sample_rate is not None:
        given = check_sample_rate(sample_rate, "sample_rate", AUDIO_RATES)
        if abs(given - file_rate) > 1e-6 * file_rate:
            raise ValueError(f"sample_rate={sample_rate!r} was given but {where} is at {file_rate:g} Hz; "
                             f"leave sample_rate out for files")


def _nonfinite_counts(data: np.ndarray) -> tuple[int, int, int]:
    """``(NaN count, inf count, first sample index with one)`` of ``(C, n)`` samples that have some."""
    bad = ~np.isfinite(data)
    n_nan = int(np.isnan(data).sum())
    return n_nan, int(bad.sum()) - n_nan, int(np.argmax(bad.any(axis=0)))


def map_channels(data: np.ndarray, channels: int, where: str) -> np.ndarray:
    """``(have, n)`` samples as the ``channels`` a model reads: mixed to mono (the float64 mean),
    kept, or mono duplicated; ValueError for any other count."""
    have = data.shape[0]
    if channels == 1:
        return data.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32) if have > 1 else data
    if have == channels:
        return data
    if have == 1:
        return np.repeat(data, channels, axis=0)
    raise ValueError(f"{where} has {have} channels but {channels} are needed "
                     f"(mono or {channels}-channel audio is accepted)")


#: The largest sample magnitude taken as audio: 1e10 times full scale (+-1). Float files of
#: unnormalised integer PCM (up to 2**31) pass; far beyond it (about 1e17) the power spectrum
#: overflows float32 and the features would be inf.
MAX_SAMPLE = 1e10


def check_samples(data: np.ndarray, where: str, *, start: int = 0, chunk_of: int | None = None,
                  fix: str = "clean the audio before passing it") -> None:
    """ValueError naming ``where`` when ``(C, n)`` samples hold NaN or inf or a magnitude beyond
    :data:`MAX_SAMPLE`; checked a cache-sized chunk at a time (no array the size of the audio).
    The first bad sample is named by its index plus ``start`` (where ``data`` starts in a file
    read in blocks); ``chunk_of``: ``data`` is a pushed chunk starting there in a stream."""
    def at(first: int) -> str:
        if chunk_of is not None:
            return f"first at sample {first} of the chunk, {chunk_of + first} of the stream"
        return f"first at sample {start + first}"

    for i in range(0, data.shape[1], _CHUNK):
        c = data[:, i:i + _CHUNK]
        if not np.isfinite(c).all():
            n_nan, n_inf, first = _nonfinite_counts(data)
            raise ValueError(f"{where} contains non-finite samples ({n_nan} NaN, {n_inf} inf; {at(first)}); {fix}")
        if c.size and float(np.abs(c).max()) > MAX_SAMPLE:
            first = int(np.argmax((np.abs(data) > MAX_SAMPLE).any(axis=0)))
            raise ValueError(f"{where} has samples of magnitude up to {float(np.abs(data).max()):.3g} "
                             f"({at(first)}), over {MAX_SAMPLE:g} times full scale (+-1), which no recorder "
                             f"writes: scale the audio to +-1 ({fix})")


def resample(data: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """float32 ``(C, n)`` audio from ``orig_sr`` to ``target_sr`` Hz: what ``librosa.resample``
    (soxr_hq, its default) gives, called on soxr directly (librosa's first call costs a second
    or two of start-up): each channel through soxr, then cut or zero-padded to
    ``ceil(n * target / orig)`` samples."""
    import soxr
    n_out = int(np.ceil(data.shape[-1] * float(target_sr) / orig_sr))
    out = np.zeros((data.shape[0], n_out), dtype=np.float32)
    for c, channel in enumerate(data.astype(np.float32, copy=False)):
        y = soxr.resample(channel, orig_sr, target_sr, quality="soxr_hq")
        out[c, : min(n_out, y.size)] = y[:n_out]
    return out


def read_blocks(path: Path, block_frames: int, pcm16: bool = False) -> Iterator[np.ndarray]:
    """The samples of a file already checked (:func:`file_info`) as float32 ``(n, channels)``
    blocks of ``block_frames`` samples (the last may be shorter), read one at a time as
    :func:`read_float32` reads them (``pcm16``: as int16, scaled)."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except MemoryError:
        raise
    except Exception as e:
        raise unreadable(path, e) from None
    with f:
        while True:
            try:
                data = read_float32(lambda dtype: f.read(block_frames, dtype=dtype, always_2d=True), pcm16)
            except MemoryError:
                raise
            except Exception as e:
                raise unreadable(path, e) from None
            if data.shape[0] == 0:
                return
            yield data
