"""Generation in pieces: ``EDAStream`` (any chunk sizes) and block-wise files give exactly what
``edanet.generate`` gives for the whole audio with the same seed; the per-sample uniform streams and
the chunked µS decoder that make that so; ``edanet stream`` (raw PCM on stdin) and the
``edanet generate`` CSV written as it goes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import edanet
import fastgen
from edanet.generation import UniformStream, default_model, draw_uniforms
from edanet.signals.codec import codec_for

SR = 16000


def _audio(seconds, seed=0, rate=SR, channels=1):
    """Noise bursts over quiet noise: sounds the model responds to."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = 0.01 * rng.standard_normal((n, channels))
    for start in rng.integers(0, max(1, n - rate // 2), size=max(1, int(seconds // 3))):
        x[start:start + rate // 4] += 0.5 * rng.standard_normal((min(rate // 4, n - start), channels))
    x = np.clip(x, -1, 1).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def _random_chunks(n, rng, largest):
    j = 0
    while j < n:
        m = int(rng.integers(0, largest + 1))
        yield j, min(n, j + m)
        j += m


def test_uniforms_do_not_depend_on_chunking():
    whole = draw_uniforms(7, 3, 50)
    u = UniformStream(7, 3)
    parts = [u.next(k) for k in (1, 0, 13, 36)]
    assert np.array_equal(np.concatenate(parts, axis=1), whole.numpy())
    assert whole.dtype.is_floating_point and float(whole.min()) >= 0 and float(whole.max()) <= 1
    # one stream per sample: sample 0 is PCG64(seed)'s, whatever the number of samples
    first = np.random.Generator(np.random.PCG64(7)).random(50).astype(np.float32)
    assert np.array_equal(whole[0].numpy(), first) and np.array_equal(draw_uniforms(7, 1, 50)[0].numpy(), first)
    assert not np.array_equal(whole[1].numpy(), whole[0].numpy())
    assert not np.array_equal(draw_uniforms(8, 3, 50).numpy(), whole.numpy())


def test_delta_decoder_chunks_equal_one_decode():
    cfg = default_model().config
    codec = codec_for(cfg)
    rng = np.random.default_rng(1)
    classes = rng.integers(0, cfg.quantization_bins, (4, 700))
    start = np.array([4.5, 0.0, 0.02, 30.0])
    dec = codec.decoder(start)
    parts = [dec.push(classes[:, a:b]) for a, b in _random_chunks(700, rng, 90)]
    whole = codec.decode(classes, start)
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
    assert (whole >= 0).all()


@pytest.mark.parametrize("backend,rate,channels,num_samples,largest", [
    ("cpu", SR, 1, 1, 4000),
    ("cpu", 44100, 2, 3, 30000),
    ("torch", 22050, 1, 2, 900),
])
def test_stream_equals_generate(backend, rate, channels, num_samples, largest):
    if backend not in fastgen.available("cpu"):
        pytest.skip(f"backend {backend} is not built here")
    audio = _audio(9.3, seed=rate, rate=rate, channels=channels)
    want = edanet.generate(audio.T if channels > 1 else audio, rate, backend=backend, seed=5,
                           num_samples=num_samples)
    rng = np.random.default_rng(rate)
    got, times, classes = [], [], []
    with edanet.EDAStream(sample_rate=rate, channels=channels, seed=5, num_samples=num_samples,
                          backend=backend) as s:
        for a, b in _random_chunks(len(audio), rng, largest):
            v = s.push(audio[a:b])
            assert v.shape == (num_samples, len(s.times))
            got.append(v), times.append(s.times), classes.append(s.classes)
        got.append(s.close()), times.append(s.times), classes.append(s.classes)
    got = np.concatenate(got, axis=1)
    assert got.shape == want.values.shape and got.shape[1] == int(9.3 * 4)
    assert np.array_equal(np.concatenate(classes, axis=1), want.classes)
    assert np.array_equal(got, want.values)
    assert np.array_equal(np.concatenate(times), want.times)
    assert s.steps == want.values.shape[1] and s.backend == want.backend


def test_stream_refuses_misuse():
    with pytest.raises(ValueError, match="sample_rate is required"):
        edanet.EDAStream()
    s = edanet.EDAStream(sample_rate=SR, seed=1)
    s.push(_audio(0.6))
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.push(_audio(0.3))
    with pytest.raises(ValueError, match="NaN|non-finite"):
        edanet.EDAStream(sample_rate=SR).push(np.full(100, np.nan, dtype=np.float32))


def test_file_is_generated_block_by_block_as_its_samples(tmp_path, monkeypatch):
    import edanet.features.stream as feature_stream_mod
    import edanet.generation.core as stream_mod
    audio = _audio(13.1, seed=3, rate=22050, channels=2)
    path = tmp_path / "clip.wav"
    sf.write(path, audio, 22050, subtype="FLOAT")
    want = edanet.generate(audio.T, 22050, seed=9, num_samples=2)
    monkeypatch.setattr(feature_stream_mod, "BLOCK_SECONDS", 1.7)   # many blocks, none on a step boundary
    seen = []
    got = stream_mod.generate_file(path, seed=9, num_samples=2, on_block=lambda v, t, sec: seen.append(sec))
    assert len(seen) >= 7 and seen[-1] == pytest.approx(13.1, abs=1e-3)
    assert np.array_equal(got.classes, want.classes) and np.array_equal(got.values, want.values)
    assert np.array_equal(edanet.generate(path, seed=9, num_samples=2).values, want.values)
    with pytest.raises(ValueError, match="is at 22050 Hz"):
        edanet.generate(path, 16000)
    short = tmp_path / "short.wav"
    sf.write(short, audio[:1000], 22050)
    with pytest.raises(ValueError, match="too short"):
        edanet.generate(short)


def _cli(args, stdin=None):
    return subprocess.run([sys.executable, "-m", "edanet.cli", *args], input=stdin, capture_output=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cli_stream_reads_pcm_and_writes_lines_as_generate():
    audio = _audio(6.2, seed=4)
    pcm = np.round(audio * 32767).astype("<i2")
    want = edanet.generate(pcm.astype(np.float32) / 32768.0, SR, seed=3)
    r = _cli(["-q", "stream", "--sample-rate", str(SR), "--seed", "3"], stdin=pcm.tobytes())
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "time,eda" and len(lines) == 1 + want.values.shape[1]
    got = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(got[:, 0], np.round(want.times, 6))
    np.testing.assert_allclose(got[:, 1], want.values[0], atol=5e-7)


def test_cli_stream_f32_stereo_several_samples_and_bad_input():
    audio = _audio(3.1, seed=6, channels=2)
    want = edanet.generate(audio.T, SR, seed=2, num_samples=2)
    r = _cli(["-q", "stream", "--sample-rate", str(SR), "--channels", "2", "--encoding", "f32", "--seed", "2",
              "--num-samples", "2", "--with-median"], stdin=audio.astype("<f4").tobytes())
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "time,sample_0,sample_1,median_of_samples"     # each sample a recording; a named summary
    got = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(got[:, 1:3], want.values.T, atol=5e-7)
    np.testing.assert_allclose(got[:, 3], np.median(want.values, axis=0), atol=5e-7)
    bad = np.full(4000, np.nan, dtype="<f4").tobytes()
    r = _cli(["-q", "stream", "--sample-rate", str(SR), "--encoding", "f32"], stdin=bad)
    assert r.returncode == 2 and b"edanet stream: error:" in r.stderr and b"NaN" in r.stderr


def test_cli_generate_csv_equals_generate(tmp_path):
    audio = _audio(7.4, seed=8, rate=SR)
    path = tmp_path / "a.wav"
    sf.write(path, audio, SR)
    out = tmp_path / "a.csv"
    r = _cli(["-q", "generate", str(path), "-o", str(out), "--seed", "4", "--format", "time"])
    assert r.returncode == 0, r.stderr.decode()
    want = edanet.generate(path, seed=4)
    from edanet.io import write_eda_csv
    write_eda_csv(tmp_path / "want.csv", want.values[0], want.sample_rate, fmt="time")
    assert out.read_bytes() == (tmp_path / "want.csv").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temporary file left
