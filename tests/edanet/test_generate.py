"""edanet.generate: shapes, seeds, backend agreement, bad input."""
import numpy as np
import pytest
import torch

import edanet
import fastgen
from edanet import EDANet, EDANetConfig
from edanet.generation import Generator, generator_for
from edanet.signals.codec import FALLBACK_INITIAL_EDA_US, codec_for


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model


def _audio(seconds, rate=8000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.1 * np.sin(2 * np.pi * 440 * t) * (t % 2 < 1) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_shapes_and_units(tiny):
    """A delta model's values are µS: its start level plus the decoded changes of its classes."""
    cfg = tiny.config
    audio = _audio(6.3)
    res = edanet.generate(audio, 8000, model=tiny, backend="torch", seed=1, num_samples=3)
    step_samples = cfg.spectral_frames_per_eda_step * cfg.mfcc_hop_size
    n = len(audio) // step_samples
    assert res.values.shape == res.classes.shape == (3, n)
    assert res.sample_rate == cfg.eda_sample_rate
    assert res.classes.min() >= 0 and res.classes.max() < cfg.quantization_bins
    assert np.allclose(res.times, np.arange(n) / cfg.eda_sample_rate)
    deltas = codec_for(cfg).deltas_us[res.classes]
    start = FALLBACK_INITIAL_EDA_US          # an untrained model's config has no start level
    np.testing.assert_allclose(res.values, np.maximum(0, start + np.cumsum(deltas, axis=1)), atol=1e-9)
    # another start level shifts the same classes; one per sample is taken too
    res2 = edanet.generate(audio, 8000, model=tiny, backend="torch", seed=1, num_samples=3,
                           initial_eda_us=[8.0, 9.0, 10.0])
    assert np.array_equal(res2.classes, res.classes)
    np.testing.assert_allclose(res2.values - res.values, np.array([[3.0], [4.0], [5.0]]) * np.ones(n), atol=1e-9)


def test_the_start_level_is_the_models(tiny):
    import dataclasses
    model = EDANet(dataclasses.replace(tiny.config, initial_eda_us=2.5))
    model.load_state_dict(tiny.state_dict())
    a = edanet.generate(_audio(3.0), 8000, model=model, backend="torch", seed=4)
    b = edanet.generate(_audio(3.0), 8000, model=tiny, backend="torch", seed=4, initial_eda_us=2.5)
    np.testing.assert_array_equal(a.values, b.values)


def test_legacy_normalized_models_map_to_a_range():
    torch.manual_seed(0)
    legacy = EDANet(EDANetConfig.from_preset("tiny", eda_representation="normalized"))
    cfg = legacy.config
    audio = _audio(4.0)
    res = edanet.generate(audio, 8000, model=legacy, backend="torch", seed=1, num_samples=2)
    lo, hi = cfg.default_eda_range_us
    assert (res.values >= lo - 1e-9).all() and (res.values <= hi + 1e-9).all()
    res2 = edanet.generate(audio, 8000, model=legacy, backend="torch", seed=1, num_samples=2, eda_range_us=(1.0, 3.0))
    assert np.array_equal(res2.classes, res.classes)
    assert np.allclose((res2.values - 1.0) / 2.0, (res.values - lo) / (hi - lo))
    with pytest.raises(ValueError, match="initial_eda_us applies"):
        edanet.generate(audio, 8000, model=legacy, initial_eda_us=3.0)
    for bad, match in (((3.0, 1.0), "eda_range_us"), (5, "pair")):
        with pytest.raises(ValueError, match=match):
            edanet.generate(audio, 8000, model=legacy, eda_range_us=bad)


def test_same_seed_same_samples_on_every_backend(tiny):
    audio = _audio(8.0, seed=3)
    # on the CPU (on a GPU, edanet.generate's default device, the cpu backend does not run)
    runs = {b: edanet.generate(audio, 8000, model=tiny, backend=b, seed=7, num_samples=2, temperature=1.5,
                               device="cpu")
            for b in ["reference", "torch"] + (["cpu"] if "cpu" in fastgen.available("cpu") else [])}
    first = runs["reference"].classes
    assert len(np.unique(first)) > 1
    for b, r in runs.items():
        assert np.array_equal(r.classes, first), b
    again = edanet.generate(audio, 8000, model=tiny, backend="torch", seed=7, num_samples=2, temperature=1.5,
                            device="cpu")
    assert np.array_equal(again.classes, first)
    other = edanet.generate(audio, 8000, model=tiny, backend="torch", seed=8, num_samples=2, temperature=1.5,
                            device="cpu")
    assert not np.array_equal(other.classes, first)
    assert not np.array_equal(first[0], first[1])     # samples within one call differ


def test_resampled_input_and_paths(tiny, tmp_path):
    import soundfile as sf
    a16 = _audio(5.0, rate=16000)
    sf.write(tmp_path / "x.wav", a16, 16000)
    from_path = edanet.generate(str(tmp_path / "x.wav"), model=tiny, backend="torch", seed=0)
    from_array = edanet.generate(a16, 16000, model=tiny, backend="torch", seed=0)
    assert np.array_equal(from_path.classes, from_array.classes)
    assert from_path.values.shape[1] == 20          # 5 s at 4 Hz


def test_generator_packs_once_and_is_what_generate_uses(tiny):
    import copy
    tiny = copy.deepcopy(tiny)          # its weights are changed below
    gen = Generator(tiny, backend="torch")
    audio = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1
    a = gen.generate(audio, 16000, seed=4, num_samples=2)
    b = edanet.generate(audio, 16000, model=tiny, backend="torch", seed=4, num_samples=2)
    assert np.array_equal(a.values, b.values) and a.backend == b.backend == gen.backend == "torch"
    assert edanet.generate(audio, 16000, model=gen, seed=4, num_samples=2).values.tolist() == a.values.tolist()
    # packed at construction: a later change to the weights is seen by a new Generator only
    with torch.no_grad():
        tiny.head2.bias.add_(5.0 * torch.randn_like(tiny.head2.bias))
    assert np.array_equal(gen.generate(audio, 16000, seed=4, num_samples=2).classes, a.classes)
    assert not np.array_equal(Generator(tiny, backend="torch").generate(audio, 16000, seed=4, num_samples=2).classes,
                              a.classes)
    # the bundled model's generators are kept, one per backend, device and dtype
    assert generator_for(None, "auto") is generator_for(None, "auto")
    s = gen.stream(16000, seed=4, num_samples=2)
    assert s.generator is gen and np.array_equal(np.concatenate([s.push(audio), s.close()], 1), a.values)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_samples": 0}, "num_samples"), ({"temperature": -1.0}, "temperature"),
    ({"eda_range_us": (1.0, 3.0)}, "only to legacy"), ({"backend": "warp"}, "unknown backend"),
    ({"initial_eda_us": -1.0}, "initial_eda_us"), ({"initial_eda_us": [1.0, 2.0]}, "one per sample"),
    ({"initial_eda_us": "x"}, "initial_eda_us"), ({"initial_eda_us": float("nan")}, "initial_eda_us"),
    ({"seed": "abc"}, "seed"), ({"seed": 10 ** 20}, "seed"),
    ({"seed": -1}, "seed"), ({"num_samples": True}, "num_samples"),
])
def test_bad_arguments(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        edanet.generate(_audio(2.0), 8000, model=tiny, **kwargs)


@pytest.mark.parametrize("audio,rate,match", [
    (np.zeros(100, np.float32), 8000, "too short"), (np.full(20000, np.nan, np.float32), 8000, "NaN"),
    (np.zeros(0, np.float32), 8000, "empty"), (np.zeros(20000, np.float32), -5, "sample.rate"),
])
def test_bad_audio(tiny, audio, rate, match):
    with pytest.raises(ValueError, match=match):
        edanet.generate(audio, rate, model=tiny, backend="torch")


def test_numpy_scalars_are_accepted(tiny):
    a = edanet.generate(_audio(2.0), 8000, model=tiny, backend="torch", num_samples=np.int64(2),
                        temperature=np.float32(0.5), seed=np.uint32(3))
    b = edanet.generate(_audio(2.0), 8000, model=tiny, backend="torch", num_samples=2, temperature=0.5, seed=3)
    assert a.values.shape[0] == 2 and np.array_equal(a.classes, b.classes)


def test_silent_audio_is_valid(tiny):
    res = edanet.generate(np.zeros(16000, np.float32), 8000, model=tiny, backend="torch", seed=0)
    assert res.values.shape == (1, 8) and np.isfinite(res.values).all()
