"""Audio loading and causal MFCC features.

- :func:`load_audio` reads a file (anything soundfile reads) or takes an array, checks it,
  resamples it to the model's rate (soxr, high quality, as ``librosa.resample``) and mixes or
  keeps channels. It returns float32 ``(channels, n)``.
- :func:`mfcc_frames` turns audio at ``config.audio_sample_rate`` into **causal** MFCC frames
  ``(C, T, F)``: frame ``t`` summarises samples ``[(t+1)*hop - n_fft, (t+1)*hop)`` (the audio
  is left-padded with ``n_fft - hop`` zeros and framed with ``center=False``), so
  ``T = n // hop`` and no frame looks ahead.
- :func:`features` = load + resample + MFCC + the config's frame features (loudness, onset
  strength: ``edanet.frame_features``), trimmed to ``N`` whole EDA steps of ``K`` frames.

c0 (the mean log-mel level times ``sqrt(num_mels)``) is read relative to ``config.c0_ref_db``
(-40 dB by default), so a quiet background sits near 0 and a sound is a positive
excursion, on the same footing as the other coefficients: the F positions share the model's
weights, and the ``small`` model with c0 unshifted (silence about -2.5) learned to use the audio
about 2.5x slower (README, "The bundled default model").

Silent audio is valid input: it gives the "silence" features (every mel band at the floor of
``10*log10(amin) = -80`` dB, i.e. ``c0 = (-80 - c0_ref_db) * sqrt(num_mels) * MFCC_SCALE`` and
the other coefficients 0), which are finite.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .config import AUDIO_RATES, EDANetConfig
from .frame_features import _frame_features, loudness, onset_strength  # noqa: F401 (re-exported)
from .io import check_regular_file

__all__ = ["MFCC_SCALE", "POWER_DB_AMIN", "load_audio", "resample", "mfcc_frames", "mfcc_frames_reference", "loudness", "onset_strength",
           "mean_level_db", "features"]

#: Fixed scale applied to librosa's MFCCs (dB-scaled DCT coefficients, magnitudes ~10-1000) so
#: that features are O(1). A fixed constant, not a per-recording statistic, so nothing looks ahead.
MFCC_SCALE = 0.01
#: Power floor of ``librosa.power_to_db`` (-80 dB). ``top_db`` is always None: librosa's default
#: clips relative to the maximum of the whole signal, which would look ahead.
POWER_DB_AMIN = 1e-8
#: Samples per chunk where the whole audio is scanned: checked for NaN/inf, or mixed and converted
#: to float64 for the frame features (512 KiB, in cache for the sums; a float64 copy of the whole
#: audio would cost more than the sums, page faults included).
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


def _unreadable(path: Path, e: Exception) -> ValueError:
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
        raise _unreadable(path, e) from None
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
        raise _unreadable(path, e) from None
    return data.T, sr, pcm16  # (channels, n)


def _as_array(audio: Any) -> np.ndarray:
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
        if audio is None:
            raise ValueError("audio is None: pass a path or an array of samples")
        if isinstance(audio, bytes):
            raise ValueError("audio must be a path or an array of samples, got bytes")
        if sample_rate is None:
            raise ValueError("sample_rate is required when audio is an array (pass sample_rate=... in Hz)")
        sr = check_sample_rate(sample_rate, "sample_rate", AUDIO_RATES)
        data = _orient(_as_array(audio))
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


def nonfinite(data: np.ndarray) -> tuple[int, int, int]:
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


def too_short(samples: int, rate: float, config: EDANetConfig) -> ValueError:
    """The error for audio of ``samples`` at ``rate`` Hz shorter than one EDA step."""
    need = config.spectral_frames_per_eda_step * config.mfcc_hop_size / config.audio_sample_rate
    return ValueError(f"audio is too short: {samples / rate:.3f} s, but at least {need:g} s (one EDA step at "
                      f"{config.eda_sample_rate} Hz) is needed")


def with_frame_features(frames: np.ndarray, extra: list) -> np.ndarray:
    """MFCC frames ``(C, T, F)`` with the frame features (one ``(T,)`` array each) appended as
    channels, the same value at every coefficient position."""
    if not extra:
        return frames
    extra = np.broadcast_to(np.stack(extra)[:, :, None], (len(extra),) + frames.shape[1:])
    return np.concatenate([frames, extra], axis=0)


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
            n_nan, n_inf, first = nonfinite(data)
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


def mfcc_frames(audio: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """Causal MFCC frames float32 ``(C, T, F)`` of ``audio`` ``(C, n)`` at ``config.audio_sample_rate``.

    Frame ``t`` summarises samples ``[(t+1)*hop - n_fft, (t+1)*hop)`` (left-padded with
    ``n_fft - hop`` zeros, ``center=False``), so ``T = n // hop``. librosa's chain, computed by
    ``edanet.spectral`` (tests hold the two within 1e-4): mel power spectrogram
    (``n_fft = mfcc_window_size``, ``hop_length = mfcc_hop_size``, ``n_mels = num_mels``, Hann
    window) -> ``power_to_db(ref=1.0, amin=1e-8, top_db=None)`` -> ``librosa.feature.mfcc``
    (DCT-II, ortho) with ``n_mfcc = num_mfccs``; c0 minus ``c0_ref_db * sqrt(num_mels)`` (the
    mean level read against ``config.c0_ref_db``); times :data:`MFCC_SCALE`. A 1-D input is
    taken as mono. Audio shorter than one hop gives ``T = 0``.
    """
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"mfcc_frames expects audio of shape (channels, samples), got {a.shape}")
    check_samples(a, "audio")
    return _mfcc_frames(a, config)


def _mfcc_frames(a: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """:func:`mfcc_frames` of finite ``(C, n)`` audio, unchecked. The frames that reach before
    the start see zeros without a padded copy of the audio (:func:`edanet.spectral.log_mel_mfcc`)."""
    from .spectral import log_mel_mfcc

    C, n = a.shape
    n_fft, hop, F = config.mfcc_window_size, config.mfcc_hop_size, config.num_mfccs
    T = n // hop
    if T == 0:
        return np.zeros((C, 0, F), dtype=np.float32)
    m = log_mel_mfcc(a[:, :T * hop], sample_rate=config.audio_sample_rate, n_fft=n_fft, hop=hop,
                     n_mels=config.num_mels, n_mfcc=F, amin=POWER_DB_AMIN, pad=n_fft - hop)    # (C, T, F)
    assert m.shape[1] == T, (m.shape, T)
    return _scaled(m, config)


def _scaled(m: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """float32 model features of :func:`edanet.spectral.log_mel_mfcc`'s ``(C, T, F)`` MFCCs."""
    m[..., 0] -= config.c0_ref_db * math.sqrt(config.num_mels)   # ortho DCT-II: c0 = sqrt(n_mels) * mean level
    m *= MFCC_SCALE
    return m.astype(np.float32)


def mfcc_frames_reference(audio: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """:func:`mfcc_frames` computed by librosa in float64 (the chain it reproduces), for tests
    and benchmarks: float64 ``(C, T, F)``. Imports librosa."""
    import librosa

    a = np.asarray(audio, dtype=np.float64)
    a = a[None, :] if a.ndim == 1 else a
    n_fft, hop = config.mfcc_window_size, config.mfcc_hop_size
    T = a.shape[1] // hop
    padded = np.concatenate([np.zeros((a.shape[0], n_fft - hop)), a[:, :T * hop]], axis=1)
    S = librosa.feature.melspectrogram(y=padded, sr=config.audio_sample_rate, n_fft=n_fft, hop_length=hop,
                                       n_mels=config.num_mels, center=False, power=2.0)
    m = librosa.feature.mfcc(S=librosa.power_to_db(S, ref=1.0, amin=POWER_DB_AMIN, top_db=None),
                             n_mfcc=config.num_mfccs)
    m[:, 0] -= config.c0_ref_db * math.sqrt(config.num_mels)
    return np.swapaxes(m, -1, -2) * MFCC_SCALE


def mean_level_db(frames: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """Mean log-mel level (dB, relative to ``config.c0_ref_db``) of each frame of ``(C, T, F)``
    features, averaged over channels: :func:`mfcc_frames`' c0 scaling undone."""
    return frames[..., 0].astype(np.float64).mean(axis=0) / (MFCC_SCALE * math.sqrt(config.num_mels))


def features(audio: Any, sample_rate: float | None, config: EDANetConfig) -> tuple[np.ndarray, int]:
    """Load, resample and featurize ``audio``: returns ``(frames, N)`` with frames float32
    ``(C, N*K, F)`` (``C = config.feature_channels``: the MFCCs of each audio channel, then the
    config's ``frame_features`` in order) and ``N`` the number of complete EDA steps
    (``n_samples_at_audio_sample_rate // (K * hop)``); the partial step at the end is dropped.
    A model with ``audio_input=False`` gets the features of silence of the same length.
    Audio shorter than one EDA step raises ``ValueError`` naming the minimum duration."""
    a = load_audio(audio, sample_rate, target_rate=config.audio_sample_rate, channels=config.in_channels)
    K, hop = config.spectral_frames_per_eda_step, config.mfcc_hop_size
    step = K * hop
    N = a.shape[1] // step
    if N == 0:
        raise too_short(a.shape[1], config.audio_sample_rate, config)
    if not config.audio_input:      # the audio-agnostic baseline hears silence, whatever is played
        a = np.zeros_like(a)
    a = a[:, :N * step]
    frames = _mfcc_frames(a, config)                # load_audio has checked the samples
    extra = _frame_features(a, config)[0] if config.frame_features else []
    return with_frame_features(frames, extra), N
