"""The PyTorch model: shapes, causality, use of the conditioning, receptive field."""
import pytest
import torch

from edanet import EDANet, EDANetConfig


def _model(seed=0, **over):
    torch.manual_seed(seed)
    cfg = EDANetConfig.from_preset("tiny", **over)
    return EDANet(cfg).double(), cfg


def _inputs(cfg, B, N, seed=1):
    g = torch.Generator().manual_seed(seed)
    K = cfg.spectral_frames_per_eda_step
    x = torch.randn(B, cfg.in_channels, N * K, cfg.num_mfccs, generator=g, dtype=torch.float64)
    e = torch.randint(0, cfg.quantization_bins, (B, N), generator=g)
    return x, e


@pytest.mark.parametrize("B,N", [(1, 1), (2, 7), (3, 12)])
def test_shapes(B, N):
    m, cfg = _model()
    x, e = _inputs(cfg, B, N)
    assert m(x, e).shape == (B, cfg.quantization_bins, N)


def test_causality_up_to_each_step():
    m, cfg = _model()
    K, N = cfg.spectral_frames_per_eda_step, 10
    x, e = _inputs(cfg, 2, N)
    base = m(x, e)
    for j in range(N):
        x2, e2 = x.clone(), e.clone()
        x2[:, :, (j + 1) * K:] += torch.randn_like(x2[:, :, (j + 1) * K:]) * 5
        e2[:, j:] = (e2[:, j:] + 3) % cfg.quantization_bins
        out = m(x2, e2)
        torch.testing.assert_close(out[..., : j + 1], base[..., : j + 1], rtol=0, atol=1e-12)
        if j + 1 < N:   # and the perturbation is seen later (so the test can fail)
            assert (out[..., j + 1:] - base[..., j + 1:]).abs().max() > 1e-6


def test_conditioning_is_used():
    m, cfg = _model()
    x, e = _inputs(cfg, 1, 8)
    base = m(x, e)
    for j in range(1, 8):
        e2 = e.clone()
        e2[:, j - 1] = (e2[:, j - 1] + 5) % cfg.quantization_bins
        assert (m(x, e2)[..., j] - base[..., j]).abs().max() > 1e-6


@pytest.mark.parametrize("preset_over", [{}, {"max_layers_per_stack": 2, "context_size_in_seconds": 1.5}])
def test_receptive_field_by_gradients(preset_over):
    m, cfg = _model(**preset_over)
    K = cfg.spectral_frames_per_eda_step
    R = cfg.receptive_field_frames
    N = R // K + 4
    x, e = _inputs(cfg, 1, N)
    x.requires_grad_(True)
    j = N - 1
    m(x, e)[0, :, j].sum().backward()
    seen = (x.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
    first, last = int(seen.min()), int(seen.max())
    assert last == (j + 1) * K - 1
    assert last - first + 1 == R


def test_bad_inputs_are_explained():
    m, cfg = _model()
    x, e = _inputs(cfg, 2, 5)
    with pytest.raises(ValueError, match="length mismatch"):
        m(x[:, :, :-1], e)
    with pytest.raises(ValueError, match="class"):
        m(x, e + cfg.quantization_bins)
    with pytest.raises(ValueError, match="integer"):
        m(x, e.double())
    with pytest.raises(ValueError, match="shape"):
        m(x[..., :3], e)


@pytest.mark.parametrize("over", [{}, {"per_coefficient_input": True, "frame_features": ("loudness",)},
                                  {"residual_channels": 12, "hidden_channels": 20, "skip_channels": 24,
                                   "out_channels": 7, "quantization_bins": 11}])
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_parameter_counts_add_up_to_the_model(preset, over):
    cfg = EDANetConfig.from_preset(preset, **over)
    assert sum(cfg.parameter_counts.values()) == sum(p.numel() for p in EDANet(cfg).parameters())
