"""Quantization: librosa's rounding convention, round trips, monotonicity, numpy/torch parity."""
import librosa
import numpy as np
import pytest
import torch

from edanet.signals.quantize import class_values, dequantize, quantize


def mu_law_encode(x, bins):
    return quantize(x, bins, "mu_law")


def mu_law_decode(c, bins):
    return dequantize(c, bins, "mu_law")


def linear_encode(x, bins):
    return quantize(x, bins, "linear")


def linear_decode(c, bins):
    return dequantize(c, bins, "linear")

BINS = (2, 3, 16, 64, 255, 256)


def _probe(bins, seed=0):
    """Dense grid, random values, and the exact bin edges (in x) with their float neighbours."""
    rng = np.random.default_rng(seed)
    mu = bins - 1
    e = np.linspace(-1, 1, bins)
    edges_x = np.sign(e) / mu * ((1 + mu) ** np.abs(e) - 1)
    x = np.concatenate([np.linspace(-1, 1, 20001), rng.uniform(-1, 1, 20000), edges_x, e,
                        np.nextafter(edges_x, 2), np.nextafter(edges_x, -2), [0.0, -0.0, 1.0, -1.0]])
    return np.clip(x, -1, 1)


def _compand(x, bins):
    mu = bins - 1
    return np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)


@pytest.mark.parametrize("bins", [256, 64])
def test_mu_law_matches_librosa_mu_compress(bins):
    x = _probe(bins)
    ours = mu_law_encode(x, bins)
    ref = librosa.mu_compress(x, mu=bins - 1, quantize=True) + bins // 2
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == np.int64
    # signed output with offset bins//2 (offset 128 for 256 classes)
    assert mu_law_encode(np.array([-1.0, 0.0, 1.0]), bins).tolist() == [0, bins // 2, bins - 1]


@pytest.mark.parametrize("bins", [256, 64, 16])
def test_linear_is_digitize_right(bins):
    x = _probe(bins)
    np.testing.assert_array_equal(linear_encode(x, bins), np.digitize(x, np.linspace(-1, 1, bins), right=True))


@pytest.mark.parametrize("companding", ["mu_law", "linear"])
@pytest.mark.parametrize("bins", BINS)
def test_encode_decode_every_class(bins, companding):
    c = np.arange(bins)
    v = dequantize(c, bins, companding)
    assert v.dtype == np.float64 and np.all(np.abs(v) <= 1)
    np.testing.assert_array_equal(quantize(v, bins, companding), c)
    np.testing.assert_array_equal(v, class_values(bins, companding))
    # torch round trip too
    ct = torch.arange(bins)
    vt = dequantize(ct, bins, companding)
    assert isinstance(vt, torch.Tensor) and vt.dtype == torch.float32
    assert torch.equal(quantize(vt.double(), bins, companding), ct)


@pytest.mark.parametrize("bins", [16, 64, 256])
def test_decode_error_within_half_a_bin(bins):
    x = _probe(bins)
    width = 2.0 / (bins - 1)
    lin = linear_decode(linear_encode(x, bins), bins)
    assert np.max(np.abs(lin - x)) <= width / 2 + 1e-12
    mu = mu_law_decode(mu_law_encode(x, bins), bins)
    assert np.max(np.abs(_compand(mu, bins) - _compand(x, bins))) <= width / 2 + 1e-12
    # and exact decoding of the class holding 0 (even bins)
    assert mu_law_decode(np.array([bins // 2]), bins)[0] == 0.0
    assert linear_decode(np.array([bins // 2]), bins)[0] == 0.0


@pytest.mark.parametrize("companding", ["mu_law", "linear"])
def test_monotone(companding):
    x = np.linspace(-1, 1, 50001)
    c = quantize(x, 64, companding)
    assert np.all(np.diff(c) >= 0) and c[0] == 0 and c[-1] == 63
    assert set(np.unique(c)) == set(range(64))
    v = dequantize(np.arange(64), 64, companding)
    assert np.all(np.diff(v) > 0)


@pytest.mark.parametrize("companding", ["mu_law", "linear"])
@pytest.mark.parametrize("bins", [16, 256])
def test_numpy_and_torch_identical(bins, companding):
    x = _probe(bins, seed=1)
    cn = quantize(x, bins, companding)
    for dtype in (torch.float64, torch.float32):
        xt = torch.tensor(x, dtype=dtype)
        ct = quantize(xt, bins, companding)
        assert isinstance(ct, torch.Tensor) and ct.dtype == torch.int64 and ct.shape == xt.shape
        np.testing.assert_array_equal(ct.numpy(), quantize(xt.numpy(), bins, companding))
        if dtype == torch.float64:
            np.testing.assert_array_equal(ct.numpy(), cn)
    c = np.arange(bins)
    np.testing.assert_array_equal(dequantize(torch.tensor(c), bins, companding, dtype=torch.float64).numpy(),
                                  dequantize(c, bins, companding))


def test_shapes_preserved():
    x = np.random.default_rng(0).uniform(-1, 1, (3, 4, 5))
    assert mu_law_encode(x, 16).shape == (3, 4, 5)
    assert mu_law_decode(mu_law_encode(x, 16), 16).shape == (3, 4, 5)
    assert mu_law_encode(torch.tensor(x), 16).shape == (3, 4, 5)
    assert mu_law_encode(torch.tensor(0.5), 16).shape == ()
    assert mu_law_encode(0.5, 16) == mu_law_encode(np.array([0.5]), 16)[0]
    assert mu_law_decode(torch.tensor(3), 16).shape == ()


@pytest.mark.parametrize("companding", ["mu_law", "linear"])
def test_clipping(companding):
    x = np.array([-5.0, -1.0000001, -1.0, 1.0, 1.0000001, 7.0, np.inf, -np.inf])
    c = quantize(x, 16, companding)
    assert c.tolist() == [0, 0, 0, 15, 15, 15, 15, 0]
    ct = quantize(torch.tensor(x), 16, companding)
    assert ct.tolist() == c.tolist()


def test_errors():
    with pytest.raises(ValueError, match="NaN"):
        mu_law_encode(np.array([0.0, np.nan]), 16)
    with pytest.raises(ValueError, match="NaN"):
        mu_law_encode(torch.tensor([np.nan]), 16)
    with pytest.raises(ValueError, match="bins"):
        mu_law_encode(np.zeros(3), 1)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        mu_law_decode(np.array([16]), 16)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        linear_decode(torch.tensor([-1]), 16)
    with pytest.raises(ValueError, match="integers"):
        mu_law_decode(np.array([0.5]), 16)
    with pytest.raises(ValueError, match="companding"):
        quantize(np.zeros(3), 16, "alaw")
    with pytest.raises(ValueError, match="companding"):
        dequantize(np.zeros(3, dtype=int), 16, "alaw")
