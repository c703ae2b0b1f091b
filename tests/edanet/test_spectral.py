"""edanet.features.spectral and edanet.features.audio.resample against librosa, their reference."""
import dataclasses
import math

import librosa
import numpy as np
import pytest
import scipy.fft

from edanet import EDANetConfig
from edanet.features import spectral
from edanet.features import mfcc_frames, mfcc_frames_reference, resample


def _audio(channels: int, n: int, sr: int, seed: int) -> np.ndarray:
    """Noise, a loud tone burst, a click, and digital silence: the hard cases for a float32 FFT
    are bands far below a frame's loudest and bands at the -80 dB floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    a = 10 ** (rng.uniform(-70, -40) / 20) * rng.standard_normal((channels, n))
    a[:, n // 4: n // 2] += 0.9 * np.sin(2 * np.pi * rng.uniform(200, sr / 3) * t[n // 4: n // 2])
    a[:, (2 * n) // 3] = 1.0
    a[:, (3 * n) // 4:] = 0.0
    return a.astype(np.float32)


CONFIGS = {
    "tiny": EDANetConfig.from_preset("tiny"),
    "small": EDANetConfig.from_preset("small"),
    "odd": dataclasses.replace(EDANetConfig.from_preset("tiny"), mfcc_window_size=777, mfcc_hop_size=315,
                               num_mels=23, num_mfccs=7, audio_sample_rate=11025, eda_sample_rate=1),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("channels", [1, 2])
def test_mfcc_frames_match_librosa(name, channels):
    cfg = CONFIGS[name]
    a = _audio(channels, 9 * cfg.audio_sample_rate // 2 + 17, cfg.audio_sample_rate, seed=channels)
    ours, ref = mfcc_frames(a, cfg), mfcc_frames_reference(a, cfg)
    assert ours.shape == ref.shape and ours.shape[1] == a.shape[1] // cfg.mfcc_hop_size
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert np.abs(ours - ref).max() < 1e-5          # in practice float32 rounding, far below the bound


def test_blocks_join_seamlessly(monkeypatch):
    cfg = CONFIGS["tiny"]
    a = _audio(1, 3 * cfg.audio_sample_rate, cfg.audio_sample_rate, seed=4)
    whole = mfcc_frames(a, cfg)
    monkeypatch.setattr(spectral, "BLOCK_FRAMES", 5)          # 48 frames in 10 blocks, the last partial
    np.testing.assert_array_equal(mfcc_frames(a, cfg), whole)


@pytest.mark.parametrize("n_fft,hop,pad,n", [(2048, 1000, 1048, 30000), (512, 500, 12, 4321), (777, 315, 462, 5000),
                                             (300, 500, 0, 4000), (300, 500, 900, 4000), (512, 100, 2000, 3000),
                                             (512, 500, 12, 700), (512, 500, 300, 100)])
def test_padding_is_zeros_before_the_audio(monkeypatch, n_fft, hop, pad, n):
    """pad=p frames the audio as if p zeros preceded it (mfcc_frames' causal padding, without a
    padded copy of the audio): any layout, dtype and block size."""
    a = _audio(2, n, 8000, seed=n)
    kw = dict(sample_rate=8000, n_fft=n_fft, hop=hop, n_mels=20, n_mfcc=6, amin=1e-8)
    want = spectral.log_mel_mfcc(np.concatenate([np.zeros((2, pad), np.float32), a], axis=1), **kw)
    assert want.shape[1] == max(0, (pad + n - n_fft) // hop + 1)
    strided = np.asfortranarray(a)
    readonly = a.copy()
    readonly.flags.writeable = False
    for x in (a, strided, readonly, a.astype(np.float64)):
        np.testing.assert_array_equal(spectral.log_mel_mfcc(x, pad=pad, **kw), want)
    monkeypatch.setattr(spectral, "BLOCK_FRAMES", 3)
    np.testing.assert_array_equal(spectral.log_mel_mfcc(a, pad=pad, **kw), want)
    with pytest.raises(ValueError, match="pad"):
        spectral.log_mel_mfcc(a, pad=-1, **kw)


@pytest.mark.parametrize("sr,n_fft,n_mels", [(16000, 2048, 40), (8000, 512, 20), (11025, 777, 23), (44100, 4096, 128),
                                             (8000, 256, 128), (16000, 400, 80)])
def test_mel_sums_band_by_band_are_the_dense_sums(sr, n_fft, n_mels):
    """The filterbank summed band by band (large blocks) gives the bits of the dense product (a few
    frames): each the exact sum rounded. The band groups hold every weight."""
    plan = spectral._plan(float(sr), n_fft, n_mels, 8)
    w = spectral.mel_filterbank(float(sr), n_fft, n_mels)
    covered = np.zeros(w.shape, bool)
    for lo, hi, b0, b1, _ in plan.groups:
        covered[b0:b1, lo:hi] = True
    bands = [g[2:4] for g in plan.groups]             # consecutive, each band in one group
    assert bands[0][0] == 0 and bands[-1][1] == n_mels and all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    assert not np.any((w != 0) & ~covered)
    rng = np.random.default_rng(n_fft)
    power = (rng.standard_normal((300, w.shape[1])) ** 2 * 10.0 ** rng.uniform(-9, 3, (300, 1))).astype(np.float32)
    power = power.astype(np.float64)
    banded = spectral._mel_energies(power, plan, True)
    np.testing.assert_array_equal(banded, spectral._mel_energies(power, plan, False))
    exact = [[math.fsum((power[t] * plan.mel[:, b]).tolist()) for b in range(n_mels)] for t in range(0, 300, 37)]
    np.testing.assert_array_equal(banded[::37], np.array(exact, dtype=np.float32))


@pytest.mark.parametrize("sr,n_fft,n_mels", [(16000, 2048, 40), (8000, 512, 20), (11025, 777, 23), (44100, 4096, 128)])
def test_filterbank_and_dct_match_librosa_and_scipy(sr, n_fft, n_mels):
    np.testing.assert_allclose(spectral.mel_filterbank(float(sr), n_fft, n_mels),
                               librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels), rtol=1e-6, atol=1e-9)
    d = spectral.dct_ortho(13, n_mels)
    x = np.random.default_rng(0).standard_normal((5, n_mels))
    np.testing.assert_allclose(x @ d.T, scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :13], atol=1e-12)


@pytest.mark.parametrize("orig,target,channels", [(44100, 16000, 1), (8000, 16000, 2), (22050, 8000, 2),
                                                  (16000, 11025, 1)])
def test_resample_is_librosa_resample(orig, target, channels):
    a = _audio(channels, orig + 1234, orig, seed=orig)
    ref = librosa.resample(a, orig_sr=orig, target_sr=target, axis=-1)
    ours = resample(a, orig, target)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)
