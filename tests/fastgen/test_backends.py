"""The reference and torch backends: the conformance suite (tests/conformance.py), parity with
the model they are exported from, input checks, and the suite's own sampling rules."""
import pytest
import torch

import fastgen
from conftest import PARITY_SPECS, make_case
from conformance import *  # noqa: F401,F403 (the conformance suite, on the engines below)
from conformance import EngineCase, check_generate, engine_fixture, near_tie, rel_err
from edanet import EDANet, EDANetConfig, export_to_fastgen
from edanet.generation.export import engine_frames
from fastgen import reference as ref


ENGINES = [EngineCase(name, lambda s, w, name=name: fastgen.create(name, s, w)) for name in ("reference", "torch")]
engine_case = engine_fixture(ENGINES)
state_case = engine_fixture(ENGINES, name="state_case")


@pytest.mark.parametrize("over", [
    {},                                                             # tiny: K=4, F=5, two stacks
    {"residual_channels": 12, "hidden_channels": 20, "skip_channels": 24, "out_channels": 7,
     "audio_sample_rate": 6000, "mfcc_hop_size": 500, "mfcc_window_size": 600,    # K=3
     "quantization_bins": 11, "context_size_in_seconds": 2.0},      # 3 stacks; dilations < and > K
    {"in_channels": 2, "num_mfccs": 3, "mfcc_hop_size": 2000, "mfcc_window_size": 2000},   # K=1
    # an input projection per coefficient and an onset channel (exported block-diagonally)
    {"per_coefficient_input": True, "frame_features": ("loudness", "onset_strength")},
    {"per_coefficient_input": True, "in_channels": 2, "num_mfccs": 3, "quantization_bins": 9},
    {"context_size_in_seconds": 0.01},                              # one layer: no residual at all
])
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_teacher_forced_matches_model(over, backend, dtype, tol):
    torch.manual_seed(3)
    cfg = EDANetConfig.from_preset("tiny", **over)
    model = EDANet(cfg).to(dtype)
    spec, w = export_to_fastgen(model)
    K, N = cfg.spectral_frames_per_eda_step, cfg.receptive_field_frames // cfg.spectral_frames_per_eda_step + 5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, cfg.feature_channels, N * K, cfg.num_mfccs, generator=g, dtype=dtype)
    e = torch.randint(0, cfg.quantization_bins, (3, N), generator=g)
    with torch.no_grad():
        want = model(x, e).transpose(1, 2)
    got = fastgen.create(backend, spec, w, dtype=dtype).teacher_forced(engine_frames(x, cfg), e)
    assert got.shape == want.shape
    assert rel_err(got, want) <= tol


def test_scattered_frames_layout():
    """Position f of a per-coefficient model's engine frame holds its own features in slots
    [f*C, (f+1)*C), a 1 in slot F*C + f, and nothing else."""
    cfg = EDANetConfig.from_preset("tiny", per_coefficient_input=True, frame_features=("onset_strength",))
    C, Fn = cfg.feature_channels, cfg.num_mfccs
    x = torch.randn(2, C, 8, Fn, dtype=torch.float64)
    y = engine_frames(x, cfg)
    assert y.shape == (2, Fn * (C + 1), 8, Fn)
    for f in range(Fn):
        want = torch.zeros(2, Fn * (C + 1), 8, dtype=torch.float64)
        want[:, f * C:(f + 1) * C] = x[..., f]
        want[:, Fn * C + f] = 1.0
        torch.testing.assert_close(y[..., f], want, rtol=0, atol=0)
    assert engine_frames(x[:, :1], EDANetConfig.from_preset("tiny")) is not None


def test_sampling_is_inverse_cdf():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    for u, want in [(0.0, 0), (0.2, 0), (0.26, 1), (0.74, 2), (0.999, 3)]:
        assert ref.sample(logits, torch.tensor([u]), 1.0).item() == want
    skew = torch.tensor([[0.0, 5.0, 1.0]])
    assert ref.sample(skew, torch.tensor([0.5]), 0.0).item() == 1
    # higher temperature flattens: the same u lands on a lower class
    assert ref.sample(skew, torch.tensor([0.01]), 50.0).item() == 0
    assert ref.sample(skew, torch.tensor([0.01]), 0.2).item() == 1


def test_engine_input_errors():
    spec = PARITY_SPECS["odd"]
    w, frames, classes, u = make_case(spec, 2, 4)
    e = fastgen.create("torch", spec, w)
    with pytest.raises(ValueError, match="multiple of frames_per_step"):
        e.generate(frames[:, :, :-1], u)
    with pytest.raises(ValueError, match="uniforms"):
        e.generate(frames, u[:, :3])
    with pytest.raises(ValueError, match="classes"):
        e.teacher_forced(frames, classes + spec.num_classes)
    with pytest.raises(ValueError, match="NaN"):
        e.generate(frames * float("nan"), u)
    with pytest.raises(ValueError, match="temperature"):
        e.generate(frames, u, -1.0)
    bad = dict(w)
    bad["res_w"] = bad["res_w"][:, :-1]
    with pytest.raises(ValueError, match="res_w"):
        fastgen.create("torch", spec, bad)
    with pytest.raises(ValueError, match="unknown backend"):
        fastgen.create("warp", spec, w)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        e.generate(frames, torch.randn(u.shape))                   # randn instead of rand
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        e.generate(frames, u * float("nan"))
    with pytest.raises(ValueError, match="floating point"):
        e.generate(frames, (u * 2).long())
    with pytest.raises(ValueError, match="integers"):
        e.teacher_forced(frames, classes.float())                    # not truncated silently
    nan_w = dict(w, res_w=w["res_w"].clone())
    nan_w["res_w"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'res_w' contains NaN"):
        fastgen.create("torch", spec, nan_w)
    with pytest.raises(TypeError, match="dict of torch tensors"):
        fastgen.create("torch", spec, {k: v.numpy() for k, v in w.items()})
    with pytest.raises(TypeError, match="NetworkSpec"):
        fastgen.create("torch", spec.to_dict(), w)


def test_auto_falls_back_or_picks_fused():
    name = fastgen.resolve("auto", "cpu")
    assert name in ("cpu", "torch")
    assert ("cpu" in fastgen.available("cpu")) == (name == "cpu")


def test_near_tie_flags_only_uniforms_at_a_cdf_boundary():
    logits = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    c = torch.cumsum(torch.exp(logits - 2.0), 0) / torch.exp(logits - 2.0).sum()
    edge = c[0].item()                                  # the boundary between classes 0 and 1
    assert near_tie(logits, edge + 1e-7, 1.0, 1, 1e-5)
    assert not near_tie(logits, edge + 1e-2, 1.0, 1, 1e-5)
    assert not near_tie(logits, edge + 1e-7, 1.0, 1, 0.0)  # no margin: only the boundary itself
    assert near_tie(torch.tensor([1.0, 1.0 + 1e-6, -3.0], dtype=torch.float64), 0.5, 0.0, 1, 1e-5)
    assert not near_tie(logits, 0.5, 0.0, 2, 1e-5)


class _Flipped:
    """An engine whose last sample is one class off the wrapped engine's."""

    def __init__(self, eng):
        self.eng, self.dtype = eng, eng.dtype

    def generate(self, frames, uniforms, temperature):
        out = self.eng.generate(frames, uniforms, temperature).clone()
        out[0, -1] = (out[0, -1] + 1) % self.eng.spec.num_classes
        return out


def test_sampling_parity_catches_a_single_flipped_sample():
    spec = PARITY_SPECS["odd"]
    w, frames, _, uniforms = make_case(spec, 1, 8)
    eng = fastgen.create("reference", spec, w)
    check_generate(eng, spec, w, frames, uniforms, 1.0, exact=True)
    with pytest.raises(AssertionError, match="differ from the reference"):
        check_generate(_Flipped(eng), spec, w, frames, uniforms, 1.0, exact=True)
    with pytest.raises(AssertionError, match="not a near-tie"):
        check_generate(_Flipped(eng), spec, w, frames, uniforms, 1.0, exact=False)


@pytest.mark.slow
def test_torch_compiled_step_matches_the_reference():
    """``compile=True`` (the benchmarks' torch.compile peer): the same samples as the float64
    reference, but at near-ties (inductor may order the sums differently), and as eager."""
    spec = PARITY_SPECS["odd"]
    w, frames, _, uniforms = make_case(spec, 3, 6, seed=5)
    compiled = fastgen.create("torch", spec, w, compile=True)
    got = check_generate(compiled, spec, w, frames, uniforms, 1.0)
    eager = fastgen.create("torch", spec, w).generate(frames, uniforms, 1.0)
    assert (got == eager).float().mean() > 0.9
