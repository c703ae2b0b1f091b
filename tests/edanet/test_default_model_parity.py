"""The bundled default model on every backend: the backends' parity bars at the model's real sizes
(its classes, its input channels, its dilations), on the features of the bundled example clip.

The CUDA kernel runs through the CPU emulator (tests/cuda_emu.py) and Triton through
its interpreter (conftest.py), so every backend is checked here without a GPU."""
from pathlib import Path

import pytest
import torch

import edanet
import fastgen
from edanet.features import features
from edanet.generation.export import engine_frames, export_to_fastgen
from conformance import check_generate, check_teacher_forced
from cuda_emu import emu_engine

EXAMPLE = Path(edanet.__file__).parent / "assets" / "example.wav"
STEPS = 10


@pytest.fixture(scope="module")
def bundled():
    model = edanet.default_model()
    spec, weights = export_to_fastgen(model)
    frames, _ = features(str(EXAMPLE), None, model.config)
    K = model.config.spectral_frames_per_eda_step
    x = torch.from_numpy(frames[:, 40 * K:(40 + STEPS) * K])[None]        # 10 steps from 10 s in
    # two of its people (table rows 0 and the last): their vectors are input channels too
    rows = torch.tensor([0, model.config.subject_count - 1]) if model.config.subject_dim else None
    x = engine_frames(model.with_subject(torch.cat([x, x.flip(2)]), rows), model.config).contiguous()
    g = torch.Generator().manual_seed(0)
    classes = torch.randint(0, spec.num_classes, (2, STEPS), generator=g)
    uniforms = torch.rand(2, STEPS, generator=g)
    return spec, weights, x, classes, uniforms


def _engine(name, spec, weights, emu):
    if name == "cuda":
        return emu_engine(emu, spec, weights, torch.float32)
    if name not in fastgen.available("cpu"):
        pytest.skip(f"backend {name} is not built here")
    return fastgen.create(name, spec, weights, device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("name", ["torch", "cpu", "triton", "triton_persistent", "cuda"])
def test_bundled_model_matches_the_reference(name, bundled, emu):
    spec, weights, x, classes, uniforms = bundled
    engine = _engine(name, spec, weights, emu)
    check_teacher_forced(engine, spec, weights, x, classes, 1e-4)
    check_generate(engine, spec, weights, x, uniforms, 1.0)


@pytest.fixture(scope="module")
def with_subjects():
    """A model with a subject table (per-coefficient input, frame features, as the bundled one):
    the subject vectors reach the engines as input channels, so every backend must match the
    PyTorch model on them, for rows of different subjects."""
    torch.manual_seed(3)
    cfg = edanet.EDANetConfig.from_preset("tiny", per_coefficient_input=True, frame_features=("loudness",),
                                          subject_dim=3, subject_count=5)
    model = edanet.EDANet(cfg).double().eval()
    spec, weights = export_to_fastgen(model)
    K, C = cfg.spectral_frames_per_eda_step, cfg.feature_channels
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(3, C, STEPS * K, cfg.num_mfccs, generator=g, dtype=torch.float64)
    rows = torch.tensor([0, 4, 2])
    classes = torch.randint(0, spec.num_classes, (3, STEPS), generator=g)
    x = engine_frames(model.with_subject(frames, rows), cfg).contiguous()
    return model, spec, weights, frames, rows, x, classes, torch.rand(3, STEPS, generator=g)


def test_subject_channels_change_the_output(with_subjects):
    model, _, _, frames, rows, _, classes, _ = with_subjects
    with torch.no_grad():
        a = model(frames, classes, subject=rows)
        b = model(frames, classes, subject=torch.tensor([1, 1, 1]))
        mean = model(frames, classes, subject=torch.tensor([-1, -1, -1]))
        none = model(frames, classes)
    assert not torch.allclose(a, b)                        # the subject is heard
    assert torch.equal(mean, none)                         # -1 and no subject: the average subject


def test_the_model_with_subjects_exports_exactly(with_subjects):
    model, spec, weights, frames, rows, x, classes, _ = with_subjects
    ref = fastgen.create("reference", spec, {k: v.double() for k, v in weights.items()}, dtype=torch.float64)
    with torch.no_grad():
        want = model(frames, classes, subject=rows).transpose(1, 2)
    torch.testing.assert_close(ref.teacher_forced(x, classes), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["torch", "cpu", "triton", "triton_persistent", "cuda"])
def test_a_model_with_subjects_matches_the_reference(name, with_subjects, emu):
    _, spec, weights, _, _, x, classes, uniforms = with_subjects
    weights = {k: v.float() for k, v in weights.items()}
    engine = _engine(name, spec, weights, emu)
    x = x.float()
    check_teacher_forced(engine, spec, weights, x, classes, 1e-4)
    check_generate(engine, spec, weights, x, uniforms, 1.0)
