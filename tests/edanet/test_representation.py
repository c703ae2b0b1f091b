"""EDA <-> classes: the delta codec is causal, invertible to half a bin, and its widths are right."""
import numpy as np
import pytest

from edanet import EDANetConfig
from edanet.signals.quantize import bin_edges, quantize
from edanet.signals.codec import DeltaCodec, NormalizedCodec, codec_for


def _eda(n=600, seed=0):
    """A skin-conductance-like series: a wandering level, a few SCR-like rises, sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 4.0
    e = 4.0 + 0.3 * np.sin(t / 20.0) + 0.01 * rng.standard_normal(n)
    for onset in rng.uniform(0, t[-1], 6):
        s = np.clip(t - onset, 0, None)
        e += rng.uniform(0.2, 0.9) * (s / 2.0) * np.exp(1 - s / 2.0)
    return e


@pytest.mark.parametrize("bins,companding", [(256, "mu_law"), (255, "mu_law"), (64, "linear"), (16, "mu_law")])
def test_round_trip_error_is_within_half_the_step_bin(bins, companding):
    codec = DeltaCodec(bins, companding, 1.0)
    e = _eda()
    c = codec.encode(e, e[0])
    r = codec.decode(c, e[0])
    # the error of step j is the quantization error of the change coded at j: inside its bin
    # (half of it for linear classes; mu-law decodes to the bin's companded midpoint)
    widths = codec.class_widths_us()[c] * (0.5 if companding == "linear" else 1.0)
    assert np.all(np.abs(r - e) <= widths + 1e-12)
    assert np.abs(r - e).max() < 0.02 if bins >= 64 else True
    # the encoder's classes are quantize() of the change from the previous decoded value
    prev = np.concatenate([[e[0]], r[:-1]])
    np.testing.assert_array_equal(c, quantize(np.clip(e - prev, -1, 1), bins, companding))


def test_encoding_is_causal():
    codec = DeltaCodec(256, "mu_law", 1.0)
    e = _eda(seed=1)
    full = codec.encode(e, 3.0)
    for k in (1, 17, 300):
        np.testing.assert_array_equal(codec.encode(e[:k], 3.0), full[:k])
        changed = e.copy()
        changed[k:] += 5.0                      # the future never changes the past's classes
        np.testing.assert_array_equal(codec.encode(changed, 3.0)[:k], full[:k])


def test_large_changes_are_carried_over_and_the_level_never_goes_below_zero():
    codec = DeltaCodec(256, "mu_law", 0.5)
    e = np.array([1.0, 1.0] + [3.0] * 6 + [0.0] * 8)
    r = codec.decode(codec.encode(e, 1.0), 1.0)
    assert np.all(np.abs(np.diff(np.concatenate([[1.0], r]))) <= 0.5 + 1e-12)   # at most delta_range a step
    assert abs(r[7] - 3.0) < 0.01 and abs(r[-1]) < 0.01                          # then it catches up
    # decoding a walk below zero: the sequential rule r = max(0, r + d) exactly
    rng = np.random.default_rng(2)
    c = rng.integers(0, 256, size=(3, 200))
    starts = np.array([0.0, 0.3, 5.0])
    got = codec.decode(c, starts)
    for s in range(3):
        want, r = [], starts[s]
        for d in codec.deltas_us[c[s]]:
            r = max(0.0, r + d)
            want.append(r)
        np.testing.assert_allclose(got[s], want, rtol=0, atol=1e-12)
    assert got.min() >= 0 and (got == 0).any()


def test_decode_broadcasts_start_levels():
    codec = DeltaCodec(16, "mu_law", 1.0)
    c = np.tile(np.arange(16), (2, 1))
    one = codec.decode(c, 5.0)
    two = codec.decode(c, [5.0, 6.0])
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_allclose(two[1] - two[0], 1.0)
    with pytest.raises(ValueError, match="start levels"):
        codec.decode(c, -1.0)


def test_class_widths_tile_the_range():
    for bins, companding in [(256, "mu_law"), (32, "linear")]:
        codec = DeltaCodec(bins, companding, 0.8)
        w = codec.class_widths_us()
        assert w.shape == (bins,) and (w > 0).all()
        # classes 1..Q-1 tile [-range, range]; class 0 reuses class 1's width
        assert np.sum(w[1:]) == pytest.approx(1.6)
        assert w[0] == w[1]
        # every class's decoded change lies inside its bin
        edges = bin_edges(bins)
        lo = np.concatenate([[-1.0], edges[:-1]])
        ymid = codec.deltas_us / 0.8
        if companding == "mu_law":
            mu = bins - 1
            ymid = np.sign(ymid) * np.log1p(mu * np.abs(ymid)) / np.log1p(mu)
        assert np.all((ymid[1:] > lo[1:]) & (ymid[1:] <= edges[1:]))
    # mu-law resolves small changes finely: the zero class is well under 0.001 µS wide
    assert DeltaCodec(256, "mu_law", 1.0).class_widths_us()[128] < 1e-3


def test_codec_for_config_and_legacy_normalized():
    cfg = EDANetConfig.from_preset("tiny")
    assert isinstance(codec_for(cfg), DeltaCodec) and codec_for(cfg).bins == cfg.quantization_bins
    legacy = codec_for(EDANetConfig.from_preset("tiny", eda_representation="normalized", companding="linear"))
    assert isinstance(legacy, NormalizedCodec)
    e = _eda(seed=3)
    c, (lo, hi) = legacy.encode(e)
    assert lo < e.min() and hi > e.max()
    r = legacy.decode(c, (lo, hi))
    assert np.abs(r - e).max() <= legacy.class_widths_us((lo, hi)).max() + 1e-12
    with pytest.raises(ValueError, match="delta_range_us"):
        DeltaCodec(16, "mu_law", 0.0)
