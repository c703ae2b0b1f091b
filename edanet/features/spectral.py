"""Log-mel MFCCs with torch, block by block: librosa's ``melspectrogram`` -> ``power_to_db`` ->
``mfcc`` chain (tests hold them within 1e-4 of librosa, the reference), without librosa's
first-call start-up (numba: 1-2 s a process) and faster.

The filterbank is Slaney's (librosa's default: linear mel below 1 kHz, logarithmic above,
each triangle scaled to unit area), the window a periodic Hann, the DCT an orthonormal
DCT-II. The FFT runs in float32 (the audio's own precision: within 2e-6 of librosa's float64
on the features the model sees), the filterbank sums in float64 rounded to float32, the dB
and the DCT in float64. Frames are read straight from the audio (no padded copy of it) and
taken in blocks, so memory stays bounded on hours of audio and a block's buffers stay in cache.

A frame's MFCCs are the same to the bit however many frames one call computes (a live stream,
:mod:`edanet.feature_stream`, computes a few at a time, a file thousands): a BLAS matrix
product may sum in another order for another number of rows (MKL on 2 threads: 1 row, or 5 to
100 rows, differ in the last bit from the same rows among 2048), so the two sums over a frame
are taken in an order no row count can change (:func:`_dct`), or rounded so that the order
cannot show (:func:`_mel_energies`, which may then sum a large block band by band and a few
frames with one matrix product: the same bits either way)."""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["mel_filterbank", "dct_ortho", "log_mel_mfcc"]

# Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, log steps of ln(6.4)/27 above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0

#: Frames per block: 256 frames of a 2048-sample window is 2 MiB of float32, and each buffer of
#: a block about as much: small enough to stay in cache from one step to the next (2048 frames
#: a block: the MFCCs of 10 minutes some 1.3-1.5x slower), large enough that the per-call costs
#: (an FFT call: about 25 us) do not count.
BLOCK_FRAMES = 256
#: From this many frames in a block the filterbank is summed band by band (a fraction of the
#: products); fewer go through one dense matrix product (fewer calls). Same bits either way.
_BANDED_FROM = 32
#: What one more band group (one more matrix product call) is taken to cost when the bands are
#: grouped, in multiplications per frame: fewer, wider groups, or more, narrower ones.
_GROUP_COST = 1024


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` float32 Slaney-normalised triangles from 0 Hz to Nyquist
    (librosa.filters.mel's defaults, which also computes in float32). Read-only: it is cached."""
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)          # the rfft bins: below Nyquist for odd n_fft
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=16)
def dct_ortho(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the orthonormal DCT-II matrix of size ``n_in`` (float64)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    d = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    d[0] /= math.sqrt(2.0)
    d.flags.writeable = False
    return d


class _Plan(NamedTuple):
    """What :func:`log_mel_mfcc` needs for one shape, built once (:func:`_plan`)."""
    win: "torch.Tensor"     # (n_fft,) float32 periodic Hann ("fftbins", as librosa's)
    mel: np.ndarray         # (bins, n_mels) float64: the filterbank, transposed
    dense_tol: float        # twice the relative error bound of a sum over all bins
    groups: tuple           # (lo, hi, b0, b1, (hi - lo, b1 - b0) float64 weights): bands b0..b1-1 weigh bins lo..hi-1
    band_tol: np.ndarray    # (n_mels,): twice the bound of each band's sum over its group's bins
    idle: np.ndarray        # the bins no band weighs (a NaN/inf there must still reach every band, as it does dense)
    dct_t: np.ndarray       # (n_mels, n_mfcc, 1) float64: the DCT, transposed for :func:`_dct`


def _band_groups(w: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Consecutive bands of the filterbank ``w`` ``(n_mels, bins)`` in groups ``(lo, hi, b0, b1)``:
    bands ``b0..b1-1`` weigh only bins ``lo..hi-1``. The grouping minimises the products summed
    (each group: its bins times its bands) plus :data:`_GROUP_COST` a group."""
    n_mels, bins = w.shape
    nz = w != 0
    used = nz.any(axis=1)
    lo = np.where(used, nz.argmax(axis=1), bins).tolist()               # an empty band needs no bins
    hi = np.where(used, bins - nz[:, ::-1].argmax(axis=1), 0).tolist()
    best, cut = [0] + [math.inf] * n_mels, [0] * (n_mels + 1)
    for j in range(1, n_mels + 1):                 # best[j]: bands 0..j-1 grouped; at most 64 bands a group
        g_lo, g_hi = bins, 0
        for i in range(j - 1, max(-1, j - 65), -1):
            g_lo, g_hi = min(g_lo, lo[i]), max(g_hi, hi[i])
            c = best[i] + max(0, g_hi - g_lo) * (j - i) + _GROUP_COST
            if c < best[j]:
                best[j], cut[j] = c, i
    groups, j = [], n_mels
    while j > 0:
        i = cut[j]
        g_lo, g_hi = min(lo[i:j]), max(hi[i:j])
        groups.append((g_lo, g_hi, i, j) if g_hi > g_lo else (0, 0, i, j))
        j = i
    return groups[::-1]


@functools.lru_cache(maxsize=4)
def _plan(sample_rate: float, n_fft: int, n_mels: int, n_mfcc: int) -> _Plan:
    import torch
    w = mel_filterbank(sample_rate, n_fft, n_mels).astype(np.float64)      # float32 weights, exact in float64
    groups, band_tol = [], np.empty(n_mels)
    for lo, hi, b0, b1 in _band_groups(w):
        groups.append((lo, hi, b0, b1, torch.from_numpy(np.ascontiguousarray(w[b0:b1, lo:hi].T))))
        band_tol[b0:b1] = 2.0 * (hi - lo) * 2.0 ** -53
    win = torch.from_numpy((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32))
    plan = _Plan(win=win, mel=np.ascontiguousarray(w.T), dense_tol=2.0 * w.shape[1] * 2.0 ** -53,
                 groups=tuple(groups), band_tol=band_tol, idle=np.flatnonzero(~(w != 0).any(axis=0)),
                 dct_t=np.ascontiguousarray(dct_ortho(n_mfcc, n_mels).T[:, :, None]))
    for a in (plan.mel, plan.band_tol, plan.idle, plan.dct_t):
        a.flags.writeable = False
    return plan


def _mel_energies(power: np.ndarray, plan: _Plan, banded: bool) -> np.ndarray:
    """``power @ plan.mel`` float32 ``(T, n_mels)`` of power spectra ``(T, bins)`` (float32 values,
    held in float64): the exact sum rounded to float64, then to float32, whatever T is, however
    BLAS orders the sum, and whether it sums every bin (``banded`` False) or each band's own.

    float32 x float32 products are exact in float64, and any order of summing n non-negative
    terms lands within ``(n - 1) * 2**-53`` of the exact sum (relative): where the whole interval
    rounds to one float32, that is the value; the rare sums that straddle a rounding boundary
    (some in 10**5, fewer the fewer the terms) are summed exactly (math.fsum) and rounded the
    same way. A frame with a NaN or inf power gets, in every band, the exact sum over all bins
    (NaN where a band weighs it 0), as a dense product would give it."""
    if banded:                                          # torch's BLAS: faster on these narrow products
        import torch
        s = np.empty((power.shape[0], plan.mel.shape[1]))
        p, st = torch.from_numpy(power), torch.from_numpy(s)
        for lo, hi, b0, b1, w in plan.groups:
            torch.matmul(p[:, lo:hi], w, out=st[:, b0:b1])
        tol = plan.band_tol
    else:
        s = power @ plan.mel
        tol = plan.dense_tol
    err = s * tol                                       # twice the bound: room for rounding s +- err
    out = (s - err).astype(np.float32)
    odd = out != (s + err).astype(np.float32)           # NaN/inf lands here too
    if plan.idle.size:                                  # BLAS may skip a 0 weight: check those bins
        odd |= ~np.isfinite(power[:, plan.idle]).all(axis=1, keepdims=True)
    if odd.any():
        odd |= ~np.isfinite(s).all(axis=1, keepdims=True)
        for t, b in zip(*np.nonzero(odd)):
            out[t, b] = math.fsum((power[t] * plan.mel[:, b]).tolist())
    return out


def _dct(db: np.ndarray, dct_t: np.ndarray) -> np.ndarray:
    """``(db @ dct.T).T`` ``(n_mfcc, T)`` float64 of ``(T, n_mels)`` levels, summed pairwise over
    the bands in a fixed order (elementwise adds: no BLAS, so no dependence on T): each step adds
    the second half of the partial sums to the first (an odd one out carried along)."""
    x = np.ascontiguousarray(db.T)[:, None, :] * dct_t  # (n_mels, n_mfcc, T) products, T the inner axis
    n = x.shape[0]
    while n > 1:
        h = n // 2
        x[:h] += x[h:2 * h]
        if n % 2:
            x[h] = x[2 * h]
        n -= h
    return x[0]


class _Buffers:
    """A block's working tensors, reused block after block (a fresh large array costs page faults)."""

    def __init__(self, rows: int, n_fft: int):
        import torch
        self.frames = torch.empty((rows, n_fft), dtype=torch.float32)
        self.power = torch.empty((rows, n_fft // 2 + 1), dtype=torch.float32)
        self.power64 = torch.empty((rows, n_fft // 2 + 1), dtype=torch.float64)


def _block(frames, plan: _Plan, buf: _Buffers, amin: float) -> np.ndarray:
    """MFCCs ``(n_mfcc, k)`` float64 of ``k`` frames ``(k, n_fft)`` (a float32 tensor, strided)."""
    import torch
    k = frames.shape[0]
    spec = torch.fft.rfft(torch.mul(frames, plan.win, out=buf.frames[:k]), dim=-1)
    sq = torch.view_as_real(spec)                       # (k, bins, 2): re, im
    sq.mul_(sq)
    power = buf.power64[:k]
    power.copy_(torch.add(sq[..., 0], sq[..., 1], out=buf.power[:k]))     # float32 power, exact in float64
    with np.errstate(over="ignore", invalid="ignore"):     # absurd audio (inf power): silently, as in torch
        e = _mel_energies(power.numpy(), plan, k >= _BANDED_FROM).astype(np.float64)
    np.maximum(e, amin, out=e)                          # NaN stays NaN
    db = torch.log10(torch.from_numpy(e)).numpy()
    db *= 10.0
    return _dct(db, plan.dct_t)


def log_mel_mfcc(audio: np.ndarray, *, sample_rate: float, n_fft: int, hop: int, n_mels: int,
                 n_mfcc: int, amin: float, pad: int = 0) -> np.ndarray:
    """MFCCs ``(C, T, n_mfcc)`` float64 of the frames of ``audio`` ``(C, n)`` (as float32) preceded
    by ``pad`` zeros: frame ``t`` is samples ``[t*hop - pad, t*hop - pad + n_fft)``, zeros before
    the start (no centering; ``T = (pad + n - n_fft) // hop + 1``): Hann-windowed power spectrum,
    Slaney mel filterbank, ``10 log10(max(amin, .))`` dB, DCT-II. Only the frames that reach into
    the zeros are framed from a padded copy (of their own samples); the others from ``audio``."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    a = np.asarray(audio, dtype=np.float32)
    C, n = a.shape
    T = (pad + n - n_fft) // hop + 1 if pad + n >= n_fft else 0
    out = np.empty((C, T, n_mfcc), dtype=np.float64)
    if T == 0:
        return out
    plan = _plan(float(sample_rate), n_fft, n_mels, n_mfcc)
    buf = _Buffers(min(T, BLOCK_FRAMES), n_fft)
    head = min(T, -(-pad // hop))                       # frames that start in the zeros
    for c in range(C):
        x = a[c]
        if head:
            need = (head - 1) * hop + n_fft
            y = np.zeros(need, np.float32)
            if need > pad:
                y[pad:] = x[:need - pad]
            _frames(y, 0, head, hop, plan, buf, amin, out[c, :head])
        if T > head:
            _frames(x, head * hop - pad, T - head, hop, plan, buf, amin, out[c, head:])
    return out


def _frames(x: np.ndarray, start: int, count: int, hop: int, plan: _Plan, buf: _Buffers, amin: float,
            out: np.ndarray) -> None:
    """MFCCs of the ``count`` frames of ``x`` from sample ``start``, every ``hop``, into ``out``."""
    import torch
    if not x.flags.writeable or x.strides[0] < 0:       # torch takes neither (as a view)
        x = x.copy()
    frames = torch.from_numpy(x)[start:].unfold(0, plan.win.shape[0], hop)[:count]   # (count, n_fft), a view
    rows = buf.frames.shape[0]
    for t0 in range(0, count, rows):
        out[t0:t0 + rows] = _block(frames[t0:t0 + rows], plan, buf, amin).T
