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
    x = engine_frames(torch.cat([x, x.flip(2)]), model.config).contiguous()
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
