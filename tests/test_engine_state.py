"""Continued generation (``engine.start`` + ``generate(..., state=)``) on every backend: the
classes of n steps generated in chunks of any sizes are exactly those of one call, the state
carries the history, the step count and the class that conditions the next step, and a state
cannot be misused silently. Triton runs in its interpreter and the cuda kernel in the CPU
emulator (tests/test_cuda_backend.py) where there is no GPU."""
from __future__ import annotations

import pytest
import torch

import fastgen
from conftest import PARITY_SPECS, make_case


def _engines():
    """(id, factory(spec, weights)) for every backend that can run here."""
    out = []
    for name in fastgen.available("cpu"):
        out.append((name, lambda spec, w, name=name: fastgen.create(name, spec, w)))
    if torch.cuda.is_available():
        for name in fastgen.available("cuda"):
            out.append((f"{name}-gpu", lambda spec, w, name=name: fastgen.create(name, spec, w, device="cuda")))
    out.append(("cuda-emulator", "emu"))
    out.append(("cuda-emulator-fsplit-bf16", "emu-split"))     # followers read the leader's samples
    return out


ENGINES = _engines()


@pytest.fixture(params=[e[1] for e in ENGINES], ids=[e[0] for e in ENGINES])
def make_engine(request):
    factory = request.param
    if factory in ("emu", "emu-split"):
        from test_cuda_backend import build_emu, emu_engine
        emu = build_emu()
        if factory == "emu":
            return lambda spec, w: emu_engine(emu, spec, w, torch.float32)
        return lambda spec, w: emu_engine(emu, spec, w, torch.bfloat16, f_splits=2, path="fma")
    return factory


def _chunks(n, sizes):
    """Split n steps into consecutive chunks of the given sizes (cycled)."""
    out, j, i = [], 0, 0
    while j < n:
        m = min(sizes[i % len(sizes)], n - j)
        out.append((j, j + m))
        j, i = j + m, i + 1
    return out


@pytest.mark.parametrize("spec_name,batch,steps,sizes", [
    ("round", 2, 21, (1,)),
    ("odd", 3, 23, (7, 1, 3)),
    ("k1_stereo", 1, 40, (5, 17, 64)),
    ("odd", 1, 12, (12,)),
])
def test_chunked_generation_equals_one_call(make_engine, spec_name, batch, steps, sizes):
    spec = PARITY_SPECS[spec_name]
    w, frames, _, uniforms = make_case(spec, batch, steps, seed=11)
    eng = make_engine(spec, w)
    K = spec.frames_per_step
    one = eng.generate(frames, uniforms, 1.0).cpu()
    state = eng.start(batch)
    parts = []
    for j0, j1 in _chunks(steps, sizes):
        parts.append(eng.generate(frames[:, :, j0 * K:j1 * K], uniforms[:, j0:j1], 1.0, state=state).cpu())
        assert state.steps == j1
        assert torch.equal(state.classes.cpu(), parts[-1][:, -1])
    assert torch.equal(torch.cat(parts, dim=1), one)


def test_empty_chunks_change_nothing(make_engine):
    spec = PARITY_SPECS["odd"]
    w, frames, _, uniforms = make_case(spec, 2, 9, seed=3)
    eng = make_engine(spec, w)
    K = spec.frames_per_step
    one = eng.generate(frames, uniforms, 0.8).cpu()
    state = eng.start(2)
    a = eng.generate(frames[:, :, :4 * K], uniforms[:, :4], 0.8, state=state).cpu()
    e = eng.generate(frames[:, :, :0], uniforms[:, :0], 0.8, state=state).cpu()
    assert e.shape == (2, 0) and state.steps == 4
    b = eng.generate(frames[:, :, 4 * K:], uniforms[:, 4:], 0.8, state=state).cpu()
    assert torch.equal(torch.cat([a, b], 1), one)


def test_state_is_not_shared_between_sequences_or_engines(make_engine):
    spec = PARITY_SPECS["round"]
    w, frames, _, uniforms = make_case(spec, 2, 6, seed=5)
    eng = make_engine(spec, w)
    K = spec.frames_per_step
    # Two independent states: interleaving their chunks gives each its own one-call result.
    s1, s2 = eng.start(2), eng.start(2)
    u2 = uniforms.flip(0)
    one1, one2 = eng.generate(frames, uniforms).cpu(), eng.generate(frames, u2).cpu()
    got1, got2 = [], []
    for j0, j1 in _chunks(6, (2, 1, 3)):
        got1.append(eng.generate(frames[:, :, j0 * K:j1 * K], uniforms[:, j0:j1], state=s1).cpu())
        got2.append(eng.generate(frames[:, :, j0 * K:j1 * K], u2[:, j0:j1], state=s2).cpu())
    assert torch.equal(torch.cat(got1, 1), one1) and torch.equal(torch.cat(got2, 1), one2)
    with pytest.raises(ValueError, match="state is for 2 sequence"):
        eng.generate(frames[:1, :, :K], uniforms[:1, :1], state=s1)
    other = fastgen.create("reference", spec, w)
    with pytest.raises(ValueError, match="this engine's start"):
        other.generate(frames[:, :, :K], uniforms[:, :1], state=s1)
    with pytest.raises(ValueError, match="batch must be an integer"):
        eng.start(-1)
