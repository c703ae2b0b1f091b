"""Shared fixtures: parity network specs (round and odd) and random cases.

Triton runs on the CPU through its interpreter when no GPU is present, so the interpreter
flag is set here, before anything imports triton.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# training's frame cache (~/.cache/edanet/frames by default): the tests' own, not the user's
os.environ["XDG_CACHE_HOME"] = __import__("tempfile").mkdtemp(prefix="edanet-test-cache-")

import fastgen  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _spec(Cin, F, K, Cr, Ch, Cs, Co, Q, E, dil):
    return fastgen.NetworkSpec(in_channels=Cin, num_features=F, frames_per_step=K, residual_channels=Cr,
                               hidden_channels=Ch, skip_channels=Cs, out_channels=Co, num_classes=Q,
                               cond_classes=Q + 1, cond_channels=E, dilations=tuple(dil), start_class=Q)


# Round sizes; odd sizes with two stacks and dilations both below and above K; K=1; C_in=2;
# a single layer (whose residual projection the spec omits).
PARITY_SPECS = {
    "round": _spec(1, 8, 4, 16, 16, 32, 32, 64, 16, (1, 2, 4, 8, 16)),
    "odd": _spec(1, 5, 3, 12, 20, 24, 7, 11, 6, (1, 2, 4, 8, 1, 2, 4, 8)),
    "k1_stereo": _spec(2, 3, 1, 8, 8, 8, 8, 16, 4, (1, 2, 4, 1, 2, 4)),
    "one_layer": _spec(1, 4, 2, 8, 8, 16, 8, 16, 4, (3,)),     # no residual projection at all
}


def make_case(spec, batch, steps, seed=0, dtype=torch.float32):
    """Random weights, frames, a class sequence and uniforms for one spec."""
    g = torch.Generator().manual_seed(seed)
    weights = fastgen.random_weights(spec, seed=seed, dtype=dtype)
    frames = torch.randn(batch, spec.in_channels, steps * spec.frames_per_step, spec.num_features,
                         generator=g, dtype=torch.float64).to(dtype)
    classes = torch.randint(0, spec.num_classes, (batch, steps), generator=g)
    uniforms = torch.rand(batch, steps, generator=g)
    return weights, frames, classes, uniforms


@pytest.fixture(params=sorted(PARITY_SPECS))
def parity_spec(request):
    return PARITY_SPECS[request.param]


@pytest.fixture(scope="session")
def emu():
    """The CUDA kernel's CPU emulator (tests/cuda_emu.py), built once per session."""
    from cuda_emu import build_emu
    return build_emu()


# -- the edanet tests' shared model -----------------------------------------------------------------
# One tiny model (the ``tiny`` preset, weights drawn with torch seed 0), saved once per session.
# Tests read it; a test that needs to change a model copies the folder or builds its own.

@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny model's folder (config.json + model.safetensors)."""
    from edanet import EDANet, EDANetConfig, save_model
    torch.manual_seed(0)
    return save_model(EDANet(EDANetConfig.from_preset("tiny")), tmp_path_factory.mktemp("tiny_model") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model, loaded (in eval mode): the same weights as the folder."""
    from edanet import load_model
    return load_model(tiny_model_dir)
