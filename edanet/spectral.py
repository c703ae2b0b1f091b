"""Log-mel MFCCs with torch, block by block: librosa's ``melspectrogram`` -> ``power_to_db`` ->
``mfcc`` chain (tests hold them within 1e-4 of librosa, the reference), without librosa's
first-call start-up (numba: 1-2 s a process) and faster.

The filterbank is Slaney's (librosa's default: linear mel below 1 kHz, logarithmic above,
each triangle scaled to unit area), the window a periodic Hann, the DCT an orthonormal
DCT-II. The FFT and the filterbank run in float32 (the audio's own precision: within 2e-6 of
librosa's float64 on the features the model sees), the dB and the DCT in float64.
Frames are taken in blocks so memory stays bounded on hours of audio."""
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
    ("fftbins", as librosa's) and the filterbank (float32), the DCT (float64), both transposed."""
    import torch
    win = torch.from_numpy((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32))
    mel_t = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels).T.copy())
    dct_t = torch.from_numpy(dct_ortho(n_mfcc, n_mels).T.copy())
    return win, mel_t, dct_t


def log_mel_mfcc(padded: np.ndarray, *, sample_rate: float, n_fft: int, hop: int, n_mels: int,
                 n_mfcc: int, amin: float) -> np.ndarray:
    """MFCCs ``(C, T, n_mfcc)`` float64 of the frames of ``padded`` ``(C, n)``, frame ``t`` being
    samples ``[t*hop, t*hop + n_fft)`` (no centering; ``T = (n - n_fft) // hop + 1``): Hann-
    windowed power spectrum, Slaney mel filterbank, ``10 log10(max(amin, .))`` dB, DCT-II."""
    import torch
    C, n = padded.shape
    T = (n - n_fft) // hop + 1 if n >= n_fft else 0
    out = np.empty((C, T, n_mfcc), dtype=np.float64)
    win, mel_t, dct_t = _bases(float(sample_rate), n_fft, n_mels, n_mfcc)
    x = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
    for c in range(C):
        frames = x[c].unfold(0, n_fft, hop)                  # (T, n_fft), a view
        for t0 in range(0, T, BLOCK_FRAMES):
            spec = torch.fft.rfft(frames[t0:t0 + BLOCK_FRAMES] * win, dim=-1)
            power = spec.real.square() + spec.imag.square()
            db = 10.0 * torch.log10(torch.clamp((power @ mel_t).double(), min=amin))
            out[c, t0:t0 + BLOCK_FRAMES] = (db @ dct_t).numpy()
    return out
