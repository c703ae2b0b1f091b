"""Audio loading and causal MFCC features (tiny preset: 8 kHz, hop 500, n_fft 512, 5 mfccs, K=4)."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from edanet.features import MFCC_SCALE, features, load_audio, mfcc_frames, mfcc_frames_reference
from edanet.config import EDANetConfig

CFG = EDANetConfig.from_preset("tiny")
SR = CFG.audio_sample_rate
HOP = CFG.mfcc_hop_size
NFFT = CFG.mfcc_window_size


def _noise(n, channels=None, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (channels, n)
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def test_tiny_preset_numbers():
    assert (SR, HOP, NFFT, CFG.num_mfccs, CFG.spectral_frames_per_eda_step) == (8000, 500, 512, 5, 4)


@pytest.mark.parametrize("n", [500, 999, 1000, 1001, 4321, 8000])
def test_frame_count(n):
    f = mfcc_frames(_noise(n)[None], CFG)
    assert f.shape == (1, n // HOP, CFG.num_mfccs) and f.dtype == np.float32
    assert np.all(np.isfinite(f))


def test_shorter_than_a_hop_gives_no_frames():
    assert mfcc_frames(np.zeros((1, HOP - 1), np.float32), CFG).shape == (1, 0, CFG.num_mfccs)


@pytest.mark.parametrize("s", [0, 1, 487, 488, 499, 500, 1234, 2999, 3000, 5999])
def test_causal_impulse(s):
    """An impulse at sample s changes only frames t with (t+1)*hop > s, and frame s // hop.

    The background is faint noise (1e-4) so that even an impulse at the last sample of a frame's
    window, where the Hann window weighs it by ~4e-5, makes a visible difference."""
    n = 6000
    base = _noise(n, seed=3, scale=1e-4)[None]
    bumped = base.copy()
    bumped[0, s] += 1.0
    a, b = mfcc_frames(base, CFG), mfcc_frames(bumped, CFG)
    t = np.arange(n // HOP)
    # frames that end at or before s are bit-identical (nothing looks ahead) ...
    before = (t + 1) * HOP <= s
    np.testing.assert_array_equal(a[:, before], b[:, before])
    # ... and so are frames whose window [(t+1)*hop - n_fft, (t+1)*hop) starts after s
    after = (t + 1) * HOP - NFFT > s
    np.testing.assert_array_equal(a[:, after], b[:, after])
    # the frame that ends just after s does change
    assert np.abs(a[0, s // HOP] - b[0, s // HOP]).max() > 1e-5


def test_frames_of_a_prefix_are_a_prefix():
    """Nothing looks ahead: the frames of the first m samples equal the first frames of all."""
    x = _noise(8000, seed=5)[None]
    full = mfcc_frames(x, CFG)
    part = mfcc_frames(x[:, :3000], CFG)
    np.testing.assert_allclose(part, full[:, :6], rtol=1e-5, atol=1e-6)
    # a loud event late in the audio does not change earlier frames (no whole-signal dB reference)
    y = x.copy()
    y[0, 7000:] *= 100
    np.testing.assert_allclose(mfcc_frames(y, CFG)[:, :14], full[:, :14], rtol=1e-5, atol=1e-6)


def test_mfcc_matches_librosa_pipeline():
    x = _noise(4000, seed=7).astype(np.float64)
    m = mfcc_frames_reference(x, CFG)[0]             # librosa's chain, c0 read against the reference level
    np.testing.assert_allclose(mfcc_frames(x[None], CFG)[0], m, rtol=1e-5, atol=1e-5)
    # values are O(1)
    assert np.abs(mfcc_frames(x[None], CFG)).max() < 20


def test_c0_reference_shifts_c0_only():
    x = _noise(4000, seed=3)
    a = mfcc_frames(x[None], CFG)
    b = mfcc_frames(x[None], dataclasses.replace(CFG, c0_ref_db=-25.0))
    np.testing.assert_allclose(a[..., 0] - b[..., 0], 15 * np.sqrt(CFG.num_mels) * MFCC_SCALE, rtol=1e-4)
    np.testing.assert_array_equal(a[..., 1:], b[..., 1:])


def test_silence_gives_finite_features():
    f, N = features(np.zeros(SR), SR, CFG)
    assert N == 4 and f.shape == (1, 16, 5)
    assert np.all(np.isfinite(f))
    np.testing.assert_allclose(f[0, :, 0], (-80 - CFG.c0_ref_db) * np.sqrt(CFG.num_mels) * MFCC_SCALE, rtol=1e-5)
    np.testing.assert_allclose(f[0, :, 1:], 0, atol=1e-5)


def test_features_trim_to_whole_eda_steps():
    step = CFG.spectral_frames_per_eda_step * HOP  # 2000 samples
    f, N = features(_noise(3 * step + 1999), SR, CFG)
    assert N == 3 and f.shape == (1, 3 * 4, 5)
    full = mfcc_frames(_noise(3 * step + 1999)[None], CFG)
    np.testing.assert_allclose(f, full[:, :12], rtol=1e-6, atol=1e-6)


def test_features_too_short():
    with pytest.raises(ValueError, match=r"at least 0\.25 s"):
        features(_noise(1999), SR, CFG)


@pytest.mark.parametrize("rate", [44100, 8000, 16000, 22050, 11025])
def test_resampling_to_config_rate(rate):
    sec = 1.5
    t = np.arange(int(rate * sec)) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    a = load_audio(x, rate, target_rate=SR)
    assert a.shape == (1, int(np.ceil(len(x) * SR / rate))) and a.dtype == np.float32
    t8 = np.arange(a.shape[1]) / SR
    ref = 0.5 * np.sin(2 * np.pi * 440 * t8)
    np.testing.assert_allclose(a[0, 400:-400], ref[400:-400], atol=5e-3)


def test_resampling_from_8k_to_16k_and_features():
    x = _noise(8000)
    a = load_audio(x, 8000, target_rate=16000)
    assert a.shape == (1, 16000)
    cfg16 = dataclasses.replace(CFG, audio_sample_rate=16000, mfcc_hop_size=1000, mfcc_window_size=1024)
    f, N = features(x, 8000, cfg16)
    assert N == 4 and f.shape == (1, 16, 5)
    f44, N44 = features(np.zeros(44100), 44100, CFG)
    assert N44 == 4 and f44.shape == (1, 16, 5)


def test_stereo_mixing_is_the_mean_of_the_channels():
    x = _noise(11025, channels=2, seed=11)
    mono = load_audio(x, 11025, target_rate=SR)
    left = load_audio(x[0], 11025, target_rate=SR)
    right = load_audio(x[1], 11025, target_rate=SR)
    assert mono.shape == left.shape == (1, 8000)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)


def test_orientation_rule():
    x = _noise(4000, channels=2, seed=2)
    a = load_audio(x, SR, target_rate=SR, channels=2)
    b = load_audio(x.T, SR, target_rate=SR, channels=2)  # (n, channels): first axis longer
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(x), SR, target_rate=SR, channels=2), x)


def test_in_channels_two_keeps_channels():
    cfg = dataclasses.replace(CFG, in_channels=2)
    x = _noise(8000, channels=2, seed=4)
    x[1] *= 0.01
    f, N = features(x, SR, cfg)
    assert f.shape == (2, 16, 5) and N == 4
    np.testing.assert_allclose(f[0], mfcc_frames(x[:1], CFG)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f[1], mfcc_frames(x[1:], CFG)[0], rtol=1e-5, atol=1e-5)
    # mono audio is duplicated for a 2-channel model
    g, _ = features(x[0], SR, cfg)
    np.testing.assert_array_equal(g[0], g[1])


def test_channel_mismatch():
    with pytest.raises(ValueError, match="3 channels but 2"):
        load_audio(_noise(4000, channels=3), SR, target_rate=SR, channels=2)


def test_wav_file_equals_array(tmp_path):
    x = _noise(12000, channels=2, seed=9)
    p = tmp_path / "clip.wav"
    sf.write(p, x.T, 12000, subtype="FLOAT")
    for path in (p, str(p)):
        np.testing.assert_array_equal(load_audio(path, target_rate=SR), load_audio(x, 12000, target_rate=SR))
    f1, n1 = features(p, None, CFG)
    f2, n2 = features(x, 12000, CFG)
    assert n1 == n2 == 4
    np.testing.assert_array_equal(f1, f2)
    # a matching sample_rate is accepted, a different one is an error
    load_audio(p, 12000, target_rate=SR)
    with pytest.raises(ValueError, match="12000 Hz"):
        load_audio(p, 16000, target_rate=SR)


@pytest.mark.parametrize("fmt", ["WAV", "WAVEX", "AIFF", "W64", "RF64"])
def test_pcm16_files_read_as_libsndfile_reads_them(tmp_path, fmt):
    """16-bit PCM is read as int16 and scaled here (faster): the floats libsndfile gives, for every
    sample value, kept per channel or mixed."""
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    pcm = np.stack([pcm, np.roll(pcm, 1000), pcm[::-1]], axis=1)           # (n, 3)
    p = tmp_path / f"clip.{fmt.lower()}"
    sf.write(p, pcm, SR, format=fmt, subtype="PCM_16")
    want, _ = sf.read(p, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(load_audio(p, target_rate=SR, channels=3), want.T)
    np.testing.assert_array_equal(load_audio(p, target_rate=SR), load_audio(want, SR, target_rate=SR))


# -- errors a user can act on -----------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_audio(tmp_path / "nope.wav", target_rate=SR)


def test_not_audio_file(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n")
    with pytest.raises(ValueError, match="could not read audio file"):
        load_audio(p, target_rate=SR)
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path, target_rate=SR)


def test_empty_audio(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        load_audio(np.zeros(0, np.float32), SR, target_rate=SR)
    with pytest.raises(ValueError, match="empty"):
        load_audio(np.zeros((2, 0), np.float32), SR, target_rate=SR)
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros((0, 1), np.float32), SR)
    with pytest.raises(ValueError, match="empty"):
        load_audio(p, target_rate=SR)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(bad):
    x = _noise(4000)
    x[123] = bad
    with pytest.raises(ValueError, match=r"non-finite samples.*first at sample 123"):
        load_audio(x, SR, target_rate=SR)


@pytest.mark.parametrize("rate", [0, -8000, np.nan, np.inf, "fast", True])
def test_bad_sample_rate(rate):
    with pytest.raises(ValueError, match="sample_rate must be a positive"):
        load_audio(_noise(4000), rate, target_rate=SR)


def test_array_needs_sample_rate():
    with pytest.raises(ValueError, match="sample_rate is required"):
        load_audio(_noise(4000), target_rate=SR)
    with pytest.raises(ValueError, match="sample_rate is required"):
        features(_noise(4000), None, CFG)


def test_bad_array_shapes_and_types():
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        load_audio(np.zeros((2, 2, 100)), SR, target_rate=SR)
    with pytest.raises(ValueError, match="dtype"):
        load_audio(np.array(["a", "b"]), SR, target_rate=SR)
    with pytest.raises(ValueError, match="path or an array"):
        load_audio(None, SR, target_rate=SR)


def test_integer_pcm_is_scaled():
    x = np.array([0, 16384, -32768, 32767] * 1000, dtype=np.int16)
    a = load_audio(x, SR, target_rate=SR)
    np.testing.assert_allclose(a[0, :4], [0, 0.5, -1, 32767 / 32768])


def _attack(rate, attack_s, level_db=-20.0, seconds=2.0, at=1.0, seed=0):
    """Background noise at -60 dBFS, then a tone from ``at`` s with a raised-cosine attack."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = 10 ** (-60 / 20) * rng.standard_normal(n)
    env = np.clip((t - at) / attack_s, 0, 1)
    env = 0.5 - 0.5 * np.cos(np.pi * env)
    x += 10 ** (level_db / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t) * env
    return x.astype(np.float32)


def test_onset_strength_grows_with_the_sharpness_of_an_attack():
    from edanet.features.frame_features import onset_strength
    cfg = EDANetConfig.from_preset("small")
    peaks = [onset_strength(_attack(16000, a)[None], cfg).max() for a in (0.002, 0.05, 0.4)]
    assert peaks[0] > 1.5 * peaks[1] > 1.5 * 1.5 * peaks[2], peaks
    quiet = onset_strength(_attack(16000, 0.002, level_db=-70)[None], cfg)
    assert quiet.max() < 0.5 * peaks[0]
    # where the onset is: in the frame that holds the attack, not before
    o = onset_strength(_attack(16000, 0.002)[None], cfg)
    assert int(np.argmax(o)) == 16000 // cfg.mfcc_hop_size
    assert o.shape == (2 * 16000 // cfg.mfcc_hop_size,) and o.dtype == np.float32 and (o >= 0).all()


def test_onset_strength_is_causal_and_a_feature_channel():
    from edanet.features.frame_features import onset_strength
    cfg = EDANetConfig.from_preset("tiny", frame_features=("onset_strength",))
    x = _attack(8000, 0.01, seconds=3.0, seed=2)
    full = onset_strength(x[None], cfg)
    for cut in (700, 8000, 12345):
        part = onset_strength(x[None, :cut], cfg)
        np.testing.assert_array_equal(part, full[: part.size])
    frames, n = features(x, 8000, cfg)
    assert frames.shape[0] == 2 == cfg.feature_channels
    np.testing.assert_array_equal(frames[1], np.broadcast_to(full[: frames.shape[1], None], frames.shape[1:]))
    plain, _ = features(x, 8000, EDANetConfig.from_preset("tiny"))
    np.testing.assert_array_equal(frames[:1], plain)


def test_loudness_is_the_rms_level_of_each_hop():
    from edanet.features.frame_features import LOUDNESS_REF_DB, LOUDNESS_SCALE, loudness
    cfg = EDANetConfig.from_preset("tiny")
    hop, rate = cfg.mfcc_hop_size, cfg.audio_sample_rate
    t = np.arange(4 * hop) / rate
    x = np.zeros(4 * hop)
    x[hop:2 * hop] = 0.1 * np.sqrt(2) * np.sin(2 * np.pi * 500 * t[:hop])     # -20 dBFS RMS
    x[2 * hop:] = 0.01 * np.sqrt(2) * np.sin(2 * np.pi * 2000 * t[:2 * hop])   # -40 dBFS
    got = loudness(x[None].astype(np.float32), cfg)
    want = (np.array([-100.0, -20.0, -40.0, -40.0]) - LOUDNESS_REF_DB) * LOUDNESS_SCALE
    np.testing.assert_allclose(got, want, atol=2e-3)
    # a tone and noise of one RMS level are equally loud, though their c0 differs
    rng = np.random.default_rng(0)
    noise = 0.1 * rng.standard_normal(8 * hop)
    tone = 0.1 * np.sqrt(2) * np.sin(2 * np.pi * 700 * np.arange(8 * hop) / rate)
    np.testing.assert_allclose(loudness(noise[None], cfg), loudness(tone[None], cfg), atol=0.05)   # 1 dB
    c0 = [mfcc_frames(y[None], cfg)[0, 4:, 0].mean() for y in (noise, tone)]
    assert abs(c0[0] - c0[1]) > 0.5


@pytest.mark.parametrize("hop", [500, 1000, 10000, 40000])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("chunk", [None, 3])
def test_frame_features_in_chunks_are_those_of_the_whole_audio(monkeypatch, hop, channels, chunk):
    """Loudness and onset strength mix and convert the audio to float64 a chunk of hops at a time
    (features: both from one pass): the bits of the mean squares of the whole float64 mono audio."""
    from types import SimpleNamespace

    from edanet.features import frame_features as audio
    if chunk:
        monkeypatch.setattr(audio, "_CHUNK", chunk * hop)         # 3 hops a chunk, the last one alone
    rng = np.random.default_rng(hop + channels)
    n = 7 * hop + 123
    x = (0.1 * rng.standard_normal((channels, n)) * 10 ** rng.uniform(-4, 0, (1, n))).astype(np.float32)
    x[:, 2 * hop: 3 * hop] = 0.0
    mono = x.mean(axis=0, dtype=np.float64) if channels > 1 else x[0].astype(np.float64)
    cfg = SimpleNamespace(mfcc_hop_size=hop, audio_sample_rate=16000, frame_features=("loudness", "onset_strength"))
    m = audio._onset_parts(hop, 16000)

    def mean_squares(m):
        rows = mono[:7 * hop].reshape(7 * m, hop // m)
        return np.einsum("ij,ij->i", rows, rows) / rows.shape[1]

    level = np.maximum(10.0 * np.log10(mean_squares(1) + 1e-30), audio.ONSET_FLOOR_DB)
    loud = ((level - audio.LOUDNESS_REF_DB) * audio.LOUDNESS_SCALE).astype(np.float32)
    level = np.maximum(10.0 * np.log10(mean_squares(m) + 1e-30), audio.ONSET_FLOOR_DB)
    rise = np.diff(np.concatenate([level[:1], level]))
    onset = (np.maximum(rise, 0.0).reshape(7, m).max(axis=1) * audio.ONSET_SCALE).astype(np.float32)
    for a in (x, x.astype(np.float64), mono[None], mono):
        np.testing.assert_array_equal(audio.loudness(a, cfg), loud)
        np.testing.assert_array_equal(audio.onset_strength(a, cfg), onset)
    both, _ = audio.compute_frame_features(x, cfg)
    np.testing.assert_array_equal(both[0], loud)
    np.testing.assert_array_equal(both[1], onset)
