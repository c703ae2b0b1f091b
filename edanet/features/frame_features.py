"""The frame features computed beside the MFCCs, from the same audio: the loudness of each hop
and its onset strength (the steepest rise of the level within it). Both are causal (a frame's
value depends on its own hop and, for the onset, the sub-window before it) and are summed in
float64 one chunk of audio at a time, so the whole audio and a stream in pieces give the same
bits (``edanet.features.stream`` carries the onset's last level between pieces)."""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..config import EDANetConfig

__all__ = ["loudness", "onset_strength", "LOUDNESS_REF_DB", "LOUDNESS_SCALE", "ONSET_WINDOW_S", "ONSET_SCALE",
           "ONSET_FLOOR_DB", "FRAME_FEATURE_FNS"]

#: Samples per chunk the sums read at a time: mixed and converted to float64 into one reused
#: buffer (512 KiB, in cache for the sums; a float64 copy of the whole audio would cost more
#: than the sums, page faults included).
_CHUNK = 1 << 16


def _mono64(audio, out: np.ndarray | None = None) -> np.ndarray:
    """``audio`` ``(C, n)`` or ``(n,)`` as float64 mono (the mean of the channels), into ``out``
    (``(n,)`` float64) if given, unless ``audio`` is a float64 ``(n,)`` already (returned as is)."""
    a = np.asarray(audio)
    if a.ndim == 2 and a.shape[0] > 1:
        return a.mean(axis=0, dtype=np.float64, out=out)
    if a.ndim == 2:
        a = a[0]
    if out is None or a.dtype == np.float64:
        return a.astype(np.float64, copy=False)
    np.copyto(out, a, casting="unsafe")
    return out


def _mean_squares(audio, hop: int, parts) -> list[np.ndarray]:
    """For each ``m`` in ``parts``: the mean squares ``(T*m,)`` float64 of the ``m`` sub-windows
    of ``hop // m`` samples that split each whole hop ``[t*hop, (t+1)*hop)`` of ``audio`` mixed
    to mono in float64 (:func:`_mono64`), ``T = n // hop``. One pass for all of them, a chunk
    of hops at a time: each sum is the one :func:`_mono64` of the whole audio would give."""
    a = np.asarray(audio)
    T = a.shape[-1] // hop
    out = [np.empty(T * m) for m in parts]
    per = max(1, _CHUNK // hop)
    buf = np.empty(min(T, per) * hop)       # reused: a fresh array each chunk costs more than the sums
    for t0 in range(0, T, per):
        t1 = min(T, t0 + per)
        x = _mono64(a[..., t0 * hop:t1 * hop], buf[:(t1 - t0) * hop])
        for m, o in zip(parts, out):
            rows = x.reshape((t1 - t0) * m, hop // m)
            o = o[t0 * m:t1 * m]
            if rows.shape[0] == 1:
                # einsum sums a lone row of over 8192 in another order than it sums a row among
                # others: a chunk (or audio) of one hop would not give the whole audio's sums
                rows = np.concatenate([rows, rows])
                o[:] = np.einsum("ij,ij->i", rows, rows)[:1]
            else:                           # no temporaries, unlike np.mean(rows * rows, axis=1)
                np.einsum("ij,ij->i", rows, rows, out=o)
            o /= rows.shape[1]
    return out


#: Loudness: the RMS level (dBFS) of each hop, read against LOUDNESS_REF_DB, times LOUDNESS_SCALE
#: (-40 dBFS -> 0, -10 dBFS -> 1.5, digital silence -> -3).
LOUDNESS_REF_DB = -40.0
LOUDNESS_SCALE = 0.05


def loudness(audio: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """Causal loudness ``(T,)`` float32 of audio ``(C, n)`` (mixed to mono): the RMS level of
    samples ``[t*hop, (t+1)*hop)`` in dBFS (floored at ``ONSET_FLOOR_DB``), scaled. The MFCCs'
    c0 is a mean of log band levels, which a tone (all its power in a few bands) barely moves;
    and since the coefficient positions never mix, no position could compute the level itself."""
    return _loudness(_mean_squares(audio, config.mfcc_hop_size, (1,))[0])


def _loudness(power: np.ndarray) -> np.ndarray:
    """:func:`loudness` of the hops' mean squares."""
    level = np.maximum(10.0 * np.log10(power + 1e-30), ONSET_FLOOR_DB)
    return ((level - LOUDNESS_REF_DB) * LOUDNESS_SCALE).astype(np.float32)


#: Onset strength: the level (dB) of sub-windows of about ONSET_WINDOW_S (a whole fraction of
#: a hop), its rise from one sub-window to the next, the largest rise in each frame, times
#: ONSET_SCALE. Levels are floored at ONSET_FLOOR_DB so that digital silence is not -inf.
ONSET_WINDOW_S = 0.008
ONSET_SCALE = 0.05
ONSET_FLOOR_DB = -100.0


def onset_strength(audio: np.ndarray, config: EDANetConfig) -> np.ndarray:
    """Causal onset strength ``(T,)`` float32 of audio ``(C, n)`` (mixed to mono): for frame t,
    the steepest rise of the short-time level (dB) among the sub-windows of samples
    ``[t*hop, (t+1)*hop)``, each against the sub-window before it (none for the first).
    A 2 ms attack rises some 30 dB in one sub-window, a 300 ms one a few dB: the sharpness of a
    sound's onset, which the MFCC frames (a 128 ms window every 62.5 ms) cannot resolve."""
    m = _onset_parts(config.mfcc_hop_size, config.audio_sample_rate)
    return _onset(_mean_squares(audio, config.mfcc_hop_size, (m,))[0], m)[0]


@functools.lru_cache(maxsize=64)
def _onset_parts(hop: int, sample_rate: float) -> int:
    """Sub-windows per hop for :func:`onset_strength`: the divisor of ``hop`` nearest (as a ratio)
    to ``hop`` over ``ONSET_WINDOW_S`` of samples. Cached: a stream asks at every push."""
    want = max(1.0, hop / (ONSET_WINDOW_S * sample_rate))
    divisors = [m for m in range(1, hop + 1) if hop % m == 0]
    return min(divisors, key=lambda d: abs(math.log(d / want)))


def _onset(power: np.ndarray, m: int, before=None) -> tuple[np.ndarray, Any]:
    """:func:`onset_strength` of the mean squares ``(T*m,)`` of ``m`` sub-windows a hop, and the
    level (dB) of the last sub-window. ``before``: the level of the sub-window before the first
    (a stream's previous block), or None at the recording's start, which is no onset."""
    level = np.maximum(10.0 * np.log10(power + 1e-30), ONSET_FLOOR_DB)
    rise = np.diff(np.concatenate([level[:1] if before is None else [before], level]))
    strength = (np.maximum(rise, 0.0).reshape(-1, m).max(axis=1) * ONSET_SCALE).astype(np.float32)
    return strength, (level[-1] if level.size else before)


FRAME_FEATURE_FNS = {"loudness": loudness, "onset_strength": onset_strength}


def compute_frame_features(audio, config: EDANetConfig, before=None) -> tuple[list[np.ndarray], Any]:
    """``config.frame_features`` of ``audio``, in order (float32 ``(T,)`` each), from one pass over
    it (:func:`_mean_squares`; a hop's mean square is not taken from its sub-windows' as the sums
    would round differently), and the onset level to carry to the next block (see :func:`_onset`)."""
    hop = config.mfcc_hop_size
    m = _onset_parts(hop, config.audio_sample_rate)
    names = config.frame_features
    sums = _mean_squares(audio, hop, [m if name == "onset_strength" else 1 for name in names])
    out = []
    for name, s in zip(names, sums):
        if name == "onset_strength":
            strength, before = _onset(s, m, before)
            out.append(strength)
        else:
            out.append(_loudness(s))
    return out, before
