"""edanet.features.stream: the frames of a stream, however the audio is cut, are bit for bit
those of edanet.features.features on the whole audio; audio_blocks reads a file in parts."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import edanet
from edanet.features import spectral
from edanet.features import features
from edanet.config import EDANetConfig
from edanet.features.stream import FeatureStream, audio_blocks, audio_info

# the bundled default model's config (16 kHz, n_fft 2048, hop 1000, K=4, loudness + onset)
DEFAULT = EDANetConfig.from_json((Path(edanet.__file__).parent / "assets" / "default" / "config.json").read_text())
# 8 kHz, n_fft 512, hop 500, K=4, with both frame features
TINY = EDANetConfig.from_preset("tiny", frame_features=("loudness", "onset_strength"))


def _audio(n, channels=None, seed=0):
    """Noise at a level that changes every few hundred samples, a loud burst and digital silence:
    onsets, quiet and loud frames, and frames at the -80 dB floor."""
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    level = 10 ** rng.uniform(-4, -1, size=(n // 300 + 1,))
    a = rng.standard_normal(shape) * np.repeat(level, 300)[:n].reshape((n,) + (1,) * (len(shape) - 1))
    a[n // 3: n // 3 + n // 20] *= 30
    a[(4 * n) // 5: (4 * n) // 5 + n // 10] = 0.0
    return a.astype(np.float32)


def _sizes(n, rng, step):
    """Chunk sizes covering n: empty, single-sample, small and several-step chunks mixed."""
    sizes = []
    while sum(sizes) < n:
        r = rng.random()
        sizes.append(0 if r < 0.1 else 1 if r < 0.3 else int(rng.integers(2, 60)) if r < 0.6
                     else int(rng.integers(60, 3 * step)))
    return sizes


def _stream(audio, rate, config, sizes, channels=1):
    """The frames of every push and the close, joined, and the stream."""
    s = FeatureStream(config, rate, channels=channels)
    out, pos = [], 0
    for k in sizes:
        f = s.push(audio[pos:pos + k])
        assert f.dtype == np.float32 and f.shape[0] == config.feature_channels
        assert f.shape[1] % config.spectral_frames_per_eda_step == 0 and f.shape[2] == config.num_mfccs
        out.append(f)
        pos += k
    assert pos >= len(audio)
    out.append(s.close())
    return np.concatenate(out, axis=1), s


def _check(audio, rate, config, seed=0, channels=1):
    """Random chunking, one push, and the stream's counters, against features on the whole."""
    want, N = features(audio, rate, config)
    step = config.spectral_frames_per_eda_step * config.mfcc_hop_size
    got, s = _stream(audio, rate, config, _sizes(len(audio), np.random.default_rng(seed), step), channels)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert s.steps == N and s.samples_in == len(audio) and s.closed
    whole, _ = _stream(audio, rate, config, [len(audio)], channels)
    assert np.array_equal(whole, want)
    return want


def test_no_resampling_random_chunks():
    a = _audio(9 * 2000 + 777, seed=1)                     # 9 whole steps and a partial one
    want = _check(a, 8000, TINY, seed=1)
    assert want.shape[1] == 9 * 4


def test_default_config_no_resampling():
    assert DEFAULT.audio_sample_rate == 16000 and DEFAULT.spectral_frames_per_eda_step == 4
    _check(_audio(16000 * 3 + 1234, seed=2), 16000, DEFAULT, seed=2)


@pytest.mark.parametrize("rate", [44100, 22050, 8000])
def test_resampled_to_the_default_rate(rate):
    _check(_audio(int(rate * 2.6) + 13, seed=rate), rate, DEFAULT, seed=rate)


@pytest.mark.parametrize("rate", [44100, 11025, 4000])
def test_resampled_to_the_tiny_rate(rate):
    _check(_audio(int(rate * 2.3) + 7, seed=rate), rate, TINY, seed=rate + 1)


@pytest.mark.parametrize("rate", [8000, 44100])
def test_single_sample_chunks(rate):
    a = _audio(int(rate * 0.6) + 5, seed=3)               # 2.4 steps of TINY
    want, N = features(a, rate, TINY)
    got, s = _stream(a, rate, TINY, [1] * len(a))
    assert N == 2 and np.array_equal(got, want)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_stereo_mixed_to_mono(rate):
    a = _audio(int(rate * 2.2) + 3, channels=2, seed=4)
    a[:, 1] *= 0.3                                        # unequal channels: the mean matters
    _check(a, rate, DEFAULT, seed=4, channels=2)


def test_stereo_model_keeps_or_duplicates_channels():
    cfg = dataclasses.replace(TINY, in_channels=2)
    stereo = _audio(5 * 2000 + 3, channels=2, seed=5)
    assert _check(stereo, 8000, cfg, seed=5, channels=2).shape[0] == 2 + 2
    _check(stereo[:, 0].copy(), 11025, cfg, seed=6, channels=1)       # mono duplicated, resampled


def test_integer_pcm():
    pcm = (_audio(6 * 2000 + 11, seed=7) * 2 ** 15).clip(-2 ** 15, 2 ** 15 - 1).astype(np.int16)
    _check(pcm, 8000, TINY, seed=7)


@pytest.mark.parametrize("rate", [8000, 22050])
def test_audio_input_false_gives_the_silence_features(rate):
    cfg = dataclasses.replace(TINY, audio_input=False)
    want = _check(_audio(int(rate * 1.7) + 9, seed=8), rate, cfg, seed=8)
    assert np.all(want == want[:, :1])                    # every frame the same: silence


def test_lengths_around_whole_steps():
    """Audio of 1 step, just under and over 2 steps: the last partial step is dropped."""
    for n in (2000, 3999, 4001):
        _check(_audio(n, seed=n), 8000, TINY, seed=n)
    for n in (5513, 11024, 11029):                        # 11025 Hz -> 8000 Hz: 1 to 2 steps
        _check(_audio(n, seed=n), 11025, TINY, seed=n)


@pytest.mark.parametrize("rate,n,config", [(11025, 8268, TINY), (44100, 11023, DEFAULT)])
def test_zero_padded_last_sample(rate, n, config):
    """soxr gives round(n * target / orig) samples, resample() ceil(...): here the sample
    close() pads with is the last of the last whole step."""
    steps = math.ceil(n * config.audio_sample_rate / rate) // (config.spectral_frames_per_eda_step
                                                                * config.mfcc_hop_size)
    assert soxr.resample(np.zeros(n, np.float32), rate, config.audio_sample_rate, quality="soxr_hq").size \
        == steps * config.spectral_frames_per_eda_step * config.mfcc_hop_size - 1
    _check(_audio(n, seed=n), rate, config, seed=n)


def test_shorter_than_a_step_gives_no_frames():
    s = FeatureStream(TINY, 8000)
    assert s.push(_audio(1999)).shape == (3, 0, 5)
    assert s.close().shape == (3, 0, 5) and s.steps == 0


def test_frames_come_as_soon_as_a_step_is_complete():
    s = FeatureStream(TINY, 8000)
    a = _audio(4000, seed=9)
    assert s.push(a[:1999]).shape[1] == 0
    assert s.push(a[1999:2000]).shape[1] == 4 and s.steps == 1
    assert s.push(a[2000:4000]).shape[1] == 4 and s.steps == 2


def test_soxr_stream_equals_one_shot():
    """What the stream relies on: soxr's streaming output, joined, is its one-shot output, and
    never more than resample()'s ceil(n * target / orig) samples."""
    rng = np.random.default_rng(10)
    for orig, target in [(44100, 16000), (22050, 16000), (8000, 16000), (11025, 8000), (48000, 8000)]:
        for n in (1, 999, 44117):
            x = (0.1 * rng.standard_normal(n)).astype(np.float32)
            one = soxr.resample(x, orig, target, quality="soxr_hq")
            st = soxr.ResampleStream(orig, target, 1, dtype="float32", quality="soxr_hq")
            parts, pos = [], 0
            for k in _sizes(n, rng, 3000):
                parts.append(st.resample_chunk(x[pos:pos + k], last=False))
                pos += k
            parts.append(st.resample_chunk(x[:0], last=True))
            joined = np.concatenate(parts)
            assert np.array_equal(joined, one)
            assert joined.size <= math.ceil(n * target / orig)


def test_mfccs_do_not_depend_on_the_rows_per_call():
    """log_mel_mfcc gives a frame the same bits alone, among a few, or among thousands."""
    a = _audio(2048 + 1000 * 40, seed=11)[None]
    kw = dict(sample_rate=16000, n_fft=2048, hop=1000, n_mels=40, n_mfcc=8, amin=1e-8)
    whole = spectral.log_mel_mfcc(a, **kw)
    T = whole.shape[1]
    for rows in (1, 2, 3, 5, 7, 19):
        parts = [spectral.log_mel_mfcc(a[:, t * 1000: (t + rows - 1) * 1000 + 2048], **kw)
                 for t in range(0, T - rows + 1, rows)]
        joined = np.concatenate(parts, axis=1)
        assert np.array_equal(joined, whole[:, :joined.shape[1]])


def test_mel_energies_are_the_exact_sums_rounded():
    """The filterbank sums are the exact sums rounded to float32 (math.fsum, in float64 first),
    summed band by band or over every bin, the ambiguous ones included; a NaN or inf power gives
    what the exact sum over every bin gives (NaN where a band weighs it 0)."""
    plan = spectral._plan(16000.0, 2048, 40, 8)
    rng = np.random.default_rng(12)
    scale = 10.0 ** rng.uniform(-8, 2, (64, 1))
    power = (rng.standard_normal((64, 1025)) ** 2 * scale).astype(np.float32).astype(np.float64)
    power[3, 0] = np.inf                # a bin no band weighs
    power[5, 500] = np.inf
    power[7, 10] = np.nan
    with np.errstate(invalid="ignore"):
        want = np.array([[math.fsum((row * plan.mel[:, b]).tolist()) for b in range(40)] for row in power],
                        dtype=np.float32)
    assert np.isnan(want[3]).all() and np.isnan(want[7]).all() and np.isinf(want[5]).any()
    assert np.isfinite(np.delete(want, [3, 5, 7], axis=0)).all()
    # every sum taken as ambiguous: the exact path for all
    forced = plan._replace(dense_tol=1.0, band_tol=np.ones(40))
    with np.errstate(invalid="ignore"):           # as log_mel_mfcc calls it
        for banded in (False, True):
            assert np.array_equal(spectral._mel_energies(power, plan, banded), want, equal_nan=True)
            assert np.array_equal(spectral._mel_energies(power, forced, banded), want, equal_nan=True)


def test_wrong_channel_count():
    s = FeatureStream(TINY, 8000, channels=2)
    with pytest.raises(ValueError, match="3 channel"):
        s.push(np.zeros((100, 3), np.float32))
    with pytest.raises(ValueError, match="1-D"):
        s.push(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="transpose"):
        s.push(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="shape"):
        s.push(np.zeros((10, 2, 2), np.float32))
    with pytest.raises(ValueError, match="model reads 2-channel"):
        FeatureStream(dataclasses.replace(TINY, in_channels=2), 8000, channels=3)


def test_nan_is_refused_and_the_stream_is_unchanged():
    a = _audio(3 * 2000 + 5, seed=13)
    want, _ = features(a, 8000, TINY)
    s = FeatureStream(TINY, 8000)
    out = [s.push(a[:3000])]
    bad = a[3000:4000].copy()
    bad[17] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN, 0 inf; first at sample 17 of the chunk, 3017"):
        s.push(bad)
    with pytest.raises(ValueError, match="inf"):
        s.push(np.full(10, np.inf, np.float32))
    assert s.samples_in == 3000
    out += [s.push(a[3000:]), s.close()]
    assert np.array_equal(np.concatenate(out, axis=1), want)


def test_closed_stream_refuses_audio():
    s = FeatureStream(TINY, 8000)
    assert s.push(_audio(2500)).shape[1] == 4
    assert s.close().shape[1] == 0
    with pytest.raises(ValueError, match="closed"):
        s.push(_audio(100))
    with pytest.raises(ValueError, match="closed"):
        s.close()


def test_bad_arguments():
    with pytest.raises(ValueError, match="sample_rate"):
        FeatureStream(TINY, 0)
    with pytest.raises(ValueError, match="channels"):
        FeatureStream(TINY, 8000, channels=0)
    with pytest.raises(ValueError, match="dtype"):
        FeatureStream(TINY, 8000).push(np.array(["a", "b"]))


def test_audio_blocks_read_the_whole_file(tmp_path):
    path = tmp_path / "clip.wav"
    a = _audio(44100 + 1234, channels=2, seed=14)
    sf.write(path, a, 44100, subtype="PCM_16")
    assert audio_info(path) == (44100.0, 2, len(a))
    blocks = list(audio_blocks(path, block_frames=10000))
    assert [b.shape for b in blocks[:1]] == [(10000, 2)] and all(b.dtype == np.float32 for b in blocks)
    assert len(blocks) == 5 and blocks[-1].shape == (len(a) - 40000, 2)
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    assert np.array_equal(np.concatenate(blocks), whole)
    # a file streamed block by block gives the features of the file
    s = FeatureStream(DEFAULT, 44100, channels=2)
    got = np.concatenate([s.push(b) for b in audio_blocks(path, block_frames=3333)] + [s.close()], axis=1)
    assert np.array_equal(got, features(str(path), None, DEFAULT)[0])


def test_audio_blocks_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        audio_blocks(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(ValueError, match="could not read audio file"):
        audio_blocks(junk)
    with pytest.raises(ValueError, match="directory"):
        audio_info(tmp_path)
    with pytest.raises(ValueError, match="block_frames"):
        audio_blocks(junk, block_frames=0)
