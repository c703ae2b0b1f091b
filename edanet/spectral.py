"""Log-mel MFCCs with torch, block by block: librosa's ``melspectrogram`` -> ``power_to_db`` ->
``mfcc`` chain (tests hold them within 1e-4 of librosa, the reference), without librosa's
first-call start-up (numba: 1-2 s a process) and faster.

The filterbank is Slaney's (librosa's default: linear mel below 1 kHz, logarithmic above,
each triangle scaled to unit area), the window a periodic Hann, the DCT an orthonormal
DCT-II. The FFT runs in float32 (the audio's own precision: within 2e-6 of librosa's float64
on the features the model sees), the filterbank sums in float64 rounded to float32, the dB
and the DCT in float64. Frames are taken in blocks so memory stays bounded on hours of audio.

A frame's MFCCs are the same to the bit however many frames one call computes (a live stream,
:mod:`edanet.feature_stream`, computes a few at a time, a file thousands): a BLAS matrix
product may sum in another order for another number of rows (MKL on 2 threads: 1 row, or 5 to
100 rows, differ in the last bit from the same rows among 2048), so the two sums over a frame
are taken in an order no row count can change (:func:`_mel_energies`, :func:`_dct`)."""
from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["mel_filterbank", "dct_ortho", "log_mel_mfcc"]

# Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, log steps of ln(6.4)/27 above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0

#: Frames per block: 2048 frames of a 2048-sample window is 16 MiB of float32.
BLOCK_FRAMES = 2048


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


@functools.lru_cache(maxsize=4)
def _bases(sample_rate: float, n_fft: int, n_mels: int, n_mfcc: int):
    """The torch operands of :func:`log_mel_mfcc`, built once per shape: the periodic Hann window
    ("fftbins", as librosa's, float32), the filterbank transposed and the DCT (float64)."""
    import torch
    win = torch.from_numpy((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32))
    mel_t = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels).T.astype(np.float64))
    dct = torch.from_numpy(dct_ortho(n_mfcc, n_mels).copy())
    return win, mel_t, dct


def _mel_energies(power, mel_t):
    """``power @ mel_t`` float32 ``(T, n_mels)`` of float32 power spectra ``(T, bins)``: the exact
    sum rounded to float64, then to float32, whatever T is or however BLAS orders the sum.

    float32 x float32 products are exact in float64, and any order of summing n non-negative
    terms lands within ``(n - 1) * 2**-53`` of the exact sum (relative): where the whole interval
    rounds to one float32, that is the value; the rare sums that straddle a rounding boundary
    (some in 10**5) are summed exactly (math.fsum) and rounded the same way."""
    import torch
    s = power.double() @ mel_t
    err = s * (2.0 * mel_t.shape[0] * 2.0 ** -53)       # twice the bound: room for rounding s +- err
    lo, hi = (s - err).float(), (s + err).float()
    for t, b in torch.nonzero(lo != hi).tolist():       # NaN/inf power lands here too
        lo[t, b] = math.fsum((power[t].double() * mel_t[:, b]).tolist())
    return lo


def _dct(db, dct):
    """``db @ dct.T`` ``(T, n_mfcc)`` float64 of ``(T, n_mels)`` levels, summed pairwise over the
    bands in a fixed order (elementwise adds: no BLAS, so no dependence on T)."""
    import torch
    x = db.T[:, :, None] * dct.T[:, None, :]            # (n_mels, T, n_mfcc) products
    while x.shape[0] > 1:
        h = x.shape[0] // 2
        y = x[:h] + x[h:2 * h]
        x = y if x.shape[0] % 2 == 0 else torch.cat((y, x[2 * h:]))
    return x[0]


def log_mel_mfcc(padded: np.ndarray, *, sample_rate: float, n_fft: int, hop: int, n_mels: int,
                 n_mfcc: int, amin: float) -> np.ndarray:
    """MFCCs ``(C, T, n_mfcc)`` float64 of the frames of ``padded`` ``(C, n)``, frame ``t`` being
    samples ``[t*hop, t*hop + n_fft)`` (no centering; ``T = (n - n_fft) // hop + 1``): Hann-
    windowed power spectrum, Slaney mel filterbank, ``10 log10(max(amin, .))`` dB, DCT-II."""
    import torch
    C, n = padded.shape
    T = (n - n_fft) // hop + 1 if n >= n_fft else 0
    out = np.empty((C, T, n_mfcc), dtype=np.float64)
    win, mel_t, dct = _bases(float(sample_rate), n_fft, n_mels, n_mfcc)
    x = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
    for c in range(C):
        frames = x[c].unfold(0, n_fft, hop)                  # (T, n_fft), a view
        for t0 in range(0, T, BLOCK_FRAMES):
            spec = torch.fft.rfft(frames[t0:t0 + BLOCK_FRAMES] * win, dim=-1)
            power = spec.real.square() + spec.imag.square()
            db = 10.0 * torch.log10(torch.clamp(_mel_energies(power, mel_t).double(), min=amin))
            out[c, t0:t0 + BLOCK_FRAMES] = _dct(db, dct).numpy()
    return out
