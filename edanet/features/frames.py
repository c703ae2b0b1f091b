"""Model input frames of audio at the model's rate: causal MFCCs and the frame features.

- :func:`mfcc_frames` turns audio at ``config.audio_sample_rate`` into **causal** MFCC frames
  ``(C, T, F)``: frame ``t`` summarises samples ``[(t+1)*hop - n_fft, (t+1)*hop)`` (the audio
  is left-padded with ``n_fft - hop`` zeros and framed with ``center=False``), so
  ``T = n // hop`` and no frame looks ahead.
- :func:`features` = load + resample (:func:`edanet.features.audio.load_audio`) + MFCC + the
  config's frame features (loudness, onset strength: ``edanet.features.frame_features``),
  trimmed to ``N`` whole EDA steps of ``K`` frames.

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
from typing import Any

import numpy as np

from ..config import EDANetConfig
from .audio import check_samples, load_audio
from .frame_features import compute_frame_features

__all__ = ["MFCC_SCALE", "POWER_DB_AMIN", "mfcc_frames", "mfcc_frames_unchecked", "scale_mfccs",
           "mfcc_frames_reference", "mean_level_db", "features", "with_frame_features", "too_short"]

#: Fixed scale applied to librosa's MFCCs (dB-scaled DCT coefficients, magnitudes ~10-1000) so
#: that features are O(1). A fixed constant, not a per-recording statistic, so nothing looks ahead.
MFCC_SCALE = 0.01
#: Power floor of ``librosa.power_to_db`` (-80 dB). ``top_db`` is always None: librosa's default
#: clips relative to the maximum of the whole signal, which would look ahead.
POWER_DB_AMIN = 1e-8


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
    return mfcc_frames_unchecked(a, config)


def mfcc_frames_unchecked(a: np.ndarray, config: EDANetConfig) -> np.ndarray:
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
    return scale_mfccs(m, config)


def scale_mfccs(m: np.ndarray, config: EDANetConfig) -> np.ndarray:
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
    frames = mfcc_frames_unchecked(a, config)                # load_audio has checked the samples
    extra = compute_frame_features(a, config)[0] if config.frame_features else []
    return with_frame_features(frames, extra), N
