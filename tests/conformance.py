"""The conformance suite: what every fastgen backend must do, written once.

Each backend's test file imports the tests below and defines the ``engine_case`` fixture with
its own engines (``engine_fixture``): tests/fastgen/test_backends.py the reference and torch engines,
test_cpu_backend.py the fused CPU engine, test_triton.py both Triton engines (the interpreter
without a GPU), test_cuda_backend.py the CUDA kernel (the CPU emulator, and the GPU where there
is one). So a backend's file says which engines it has, and this file what they must satisfy:

- teacher-forced logits within ``TOL`` (relative to max |logit|) of the float64 reference;
- generated samples equal to the float64 reference's on the engine's own sequence (the
  reference's logits of that sequence sampled with the same uniforms): exactly where the
  engine computes on the CPU in float32 or wider (``exact``), elsewhere except at near-ties
  (the uniform within a logit error of ``SAMPLE_MARGIN`` of a CDF step: approximate exp and
  divide, a parallel cumsum, 16-bit weights);
- argmax with the lowest index on ties at temperature 0, and a temperature below float32's
  range sampling as temperature 0;
- zero steps give empty results;
- continued generation (``engine.start`` + ``generate(..., state=)``): the classes of n steps
  generated in chunks of any sizes are those of one call, the state carries the history, the
  step count and the class that conditions the next step, and cannot be misused silently;
- forced steps (``engine.force(frames, classes, state)``, priming with a recorded sequence):
  forcing the classes a generation sampled, in chunks, then generating the rest continues that
  generation; after forced recorded classes the samples are the float64 reference's on the
  whole sequence; a forced state is the state a generation that sampled those classes leaves,
  row by row; the bookkeeping (steps, next class, n = 0) and the refusals.
  Where two runs of one engine are compared, the CPU engines (any dtype: the forced steps
  run the sampled steps' own arithmetic there) must agree exactly, GPU ones but at near-ties.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch

import fastgen
from conftest import PARITY_SPECS, make_case
from fastgen import reference as ref

# What ``from conformance import *`` brings into a backend's test file: the suite's tests.
__all__ = ["test_teacher_forced_matches_reference", "test_generate_matches_reference",
           "test_temperature_scales_the_logits", "test_argmax_takes_the_lowest_index_on_ties",
           "test_temperature_below_float32_range_is_greedy", "test_zero_steps",
           "test_chunked_generation_equals_one_call", "test_empty_chunks_change_nothing",
           "test_state_is_not_shared_between_sequences_or_engines",
           "test_forcing_the_sampled_classes_continues_the_generation",
           "test_generating_after_forced_classes_matches_reference", "test_force_bookkeeping_and_refusals",
           "test_forcing_is_sampling_the_same_classes"]

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}
# A generated sample may differ from the reference's only where a logit error of this size
# (relative to the logit scale) could flip it. float32 logits are off by ~1e-6.
SAMPLE_MARGIN = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-2}
STEPS = 8


@dataclass(frozen=True)
class EngineCase:
    """One engine under test: ``make(spec, weights)`` builds it; ``exact``: its samples must
    equal the reference's exactly (float32 or wider arithmetic on the CPU)."""
    id: str
    make: Callable
    dtype: torch.dtype = torch.float32
    exact: bool = True

    def __call__(self, spec, weights):
        return self.make(spec, weights)


def engine_fixture(cases, name="engine_case"):
    """A fixture over ``cases`` (EngineCase, or pytest.param of one): ``engine_case`` for the
    parity tests, ``state_case`` for the continued-generation tests (the ring buffers and the
    state are the same code in every dtype, so a backend may give fewer cases there)."""
    ids = [c.values[0].id if hasattr(c, "values") else c.id for c in cases]
    return pytest.fixture(params=cases, ids=ids, name=name)(lambda request: request.param)


# -- the checks ---------------------------------------------------------------------------------
def ref_logits(spec, weights, frames, classes):
    """float64 whole-sequence reference logits of a class sequence."""
    w64 = {k: v.detach().cpu().double() for k, v in weights.items()}
    cond = ref.shift_conditioning(classes.cpu(), spec.start_class)
    return ref.forward(spec, w64, frames.detach().cpu().double(), cond)


def rel_err(got, want):
    """max |got - want| / max |want|, in float64 on the CPU."""
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def near_tie(logits, u, temperature, idx, margin):
    """Whether a sample of float64 ``logits`` (Q,) is within ``margin`` (relative to the logit
    scale) of flipping between ``idx`` and a neighbour."""
    scale = logits.abs().max().item()
    if temperature == 0:
        top = logits.topk(2).values
        return (top[0] - top[1]).item() <= 2 * margin * scale
    # perturbing every logit by <= margin*scale moves each CDF ratio by <= exp(2*margin*scale/T) - 1
    e = torch.exp((logits - logits.max()) / temperature)
    c = torch.cumsum(e, 0) / e.sum()
    slack = (torch.exp(torch.tensor(2 * margin * scale / temperature, dtype=torch.float64)) - 1).item()
    lo, hi = (c[idx - 1].item() if idx > 0 else 0.0), c[idx].item()
    return abs(u - lo) <= slack + 1e-12 or abs(hi - u) <= slack + 1e-12


def check_teacher_forced(engine, spec, weights, frames, classes, tol):
    got = engine.teacher_forced(frames, classes)
    assert got.dtype == torch.float32 and tuple(got.shape) == (frames.shape[0], classes.shape[1], spec.num_classes)
    want = ref_logits(spec, weights, frames, classes)
    err = rel_err(got, want)
    assert err <= tol, f"teacher-forced logits off by {err:.3g} (relative to max |logit|), tolerance {tol}"
    return err


def check_generate(engine, spec, weights, frames, uniforms, temperature, exact=False):
    """The engine's samples against the float64 reference on its own sequence; returns them."""
    got = engine.generate(frames, uniforms, temperature).cpu()
    assert got.dtype == torch.long and tuple(got.shape) == tuple(uniforms.shape)
    check_samples(spec, weights, frames, got, uniforms, temperature, engine.dtype, exact)
    return got


def check_samples(spec, weights, frames, classes, uniforms, temperature, dtype, exact=False, first=0):
    """A class sequence ``(B, n)`` whose steps from ``first`` on an engine of ``dtype`` sampled
    with ``uniforms`` (those before were given) against the float64 reference on that sequence:
    each such step's class is the reference logits' sample, exactly where ``exact``, elsewhere
    but at near-ties."""
    classes = classes.cpu()
    assert classes.numel() == 0 or (classes.min() >= 0 and classes.max() < spec.num_classes)
    want_logits = ref_logits(spec, weights, frames, classes)[:, first:]
    got = classes[:, first:]
    want = ref.sample(want_logits, uniforms[:, first:].double(), temperature)
    bad = (got != want).nonzero().tolist()
    if exact:
        assert not bad, f"temperature {temperature}: samples {got.tolist()} differ from the reference's {want.tolist()}"
    for b, j in bad:
        assert near_tie(want_logits[b, j], uniforms[b, first + j].item(), temperature, int(want[b, j]),
                        SAMPLE_MARGIN[dtype]), (
            f"sample ({b}, {first + j}) is {int(got[b, j])}, the reference gives {int(want[b, j])} (not a near-tie)")


# -- the suite ----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
def test_teacher_forced_matches_reference(engine_case, parity_spec, batch):
    w, frames, classes, _ = make_case(parity_spec, batch, STEPS, seed=batch)
    check_teacher_forced(engine_case(parity_spec, w), parity_spec, w, frames, classes, TOL[engine_case.dtype])


@pytest.mark.parametrize("batch", [1, 3])
def test_generate_matches_reference(engine_case, parity_spec, batch):
    w, frames, _, uniforms = make_case(parity_spec, batch, STEPS, seed=batch + 10)
    eng = engine_case(parity_spec, w)
    for temperature in (1.0, 0.0):
        got = check_generate(eng, parity_spec, w, frames, uniforms, temperature, engine_case.exact)
        if temperature == 1.0:
            assert got.unique().numel() > 1, "constant sequence: the sampling check would mean little"


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_scales_the_logits(engine_case, temperature):
    spec = PARITY_SPECS["odd"]
    w, frames, _, uniforms = make_case(spec, 2, STEPS, seed=3)
    check_generate(engine_case(spec, w), spec, w, frames, uniforms, temperature, engine_case.exact)


def test_argmax_takes_the_lowest_index_on_ties(engine_case):
    spec = PARITY_SPECS["k1_stereo"]
    w, frames, _, uniforms = make_case(spec, 2, 6, seed=6)
    w = dict(w, down_w=torch.zeros_like(w["down_w"]),
             down_b=torch.tensor([0.0, 1.0, 3.0, 3.0] + [3.0] * (spec.num_classes - 4)))
    assert (engine_case(spec, w).generate(frames, uniforms, 0.0).cpu() == 2).all()


def test_temperature_below_float32_range_is_greedy(engine_case):
    spec = PARITY_SPECS["odd"]
    w, frames, _, uniforms = make_case(spec, 2, 4)
    eng = engine_case(spec, w)
    greedy = eng.generate(frames, uniforms, 0.0)
    assert torch.equal(eng.generate(frames, uniforms, 1e-300), greedy)      # not class 0 from 0/0 = NaN
    assert len(greedy.unique()) > 1 or (greedy != 0).any()


def test_zero_steps(engine_case):
    spec = PARITY_SPECS["k1_stereo"]
    w, frames, classes, uniforms = make_case(spec, 2, 0)
    eng = engine_case(spec, w)
    assert tuple(eng.generate(frames, uniforms).shape) == (2, 0)
    assert tuple(eng.teacher_forced(frames, classes).shape) == (2, 0, spec.num_classes)


# -- continued generation -----------------------------------------------------------------------
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
def test_chunked_generation_equals_one_call(state_case, spec_name, batch, steps, sizes):
    spec = PARITY_SPECS[spec_name]
    w, frames, _, uniforms = make_case(spec, batch, steps, seed=11)
    eng = state_case(spec, w)
    K = spec.frames_per_step
    one = eng.generate(frames, uniforms, 1.0).cpu()
    state = eng.start(batch)
    parts = []
    for j0, j1 in _chunks(steps, sizes):
        parts.append(eng.generate(frames[:, :, j0 * K:j1 * K], uniforms[:, j0:j1], 1.0, state=state).cpu())
        assert state.steps == j1
        assert torch.equal(state.classes.cpu(), parts[-1][:, -1])
    assert torch.equal(torch.cat(parts, dim=1), one)


def test_empty_chunks_change_nothing(state_case):
    spec = PARITY_SPECS["odd"]
    w, frames, _, uniforms = make_case(spec, 2, 9, seed=3)
    eng = state_case(spec, w)
    K = spec.frames_per_step
    one = eng.generate(frames, uniforms, 0.8).cpu()
    state = eng.start(2)
    a = eng.generate(frames[:, :, :4 * K], uniforms[:, :4], 0.8, state=state).cpu()
    e = eng.generate(frames[:, :, :0], uniforms[:, :0], 0.8, state=state).cpu()
    assert e.shape == (2, 0) and state.steps == 4
    b = eng.generate(frames[:, :, 4 * K:], uniforms[:, 4:], 0.8, state=state).cpu()
    assert torch.equal(torch.cat([a, b], 1), one)


def test_state_is_not_shared_between_sequences_or_engines(state_case):
    spec = PARITY_SPECS["round"]
    w, frames, _, uniforms = make_case(spec, 2, 6, seed=5)
    eng = state_case(spec, w)
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


# -- forced steps (priming) ---------------------------------------------------------------------
def _same_arithmetic(engine, case):
    """Whether two runs of ``engine`` that should compute the same must agree exactly: on the
    CPU (its forced steps run the sampled steps' arithmetic) or where it is exact; on a GPU a
    forced launch is another compiled kernel, so they agree but at near-ties."""
    return case.exact or engine.device.type == "cpu"


def _check_same(engine, case, spec, weights, frames, uniforms, temperature, got, want, first):
    """``got`` and ``want`` (B, n): the same engine's classes, given before ``first`` and sampled
    from there on with ``uniforms``: equal, or (GPU) each the reference's sample but at near-ties."""
    if _same_arithmetic(engine, case):
        assert torch.equal(got, want), f"{got.tolist()} != {want.tolist()}"
        return
    for classes in (got, want):
        check_samples(spec, weights, frames, classes, uniforms, temperature, engine.dtype, first=first)


@pytest.mark.parametrize("spec_name,steps", [("round", 9), ("odd", 10)])
def test_forcing_the_sampled_classes_continues_the_generation(state_case, spec_name, steps):
    spec = PARITY_SPECS[spec_name]
    w, frames, _, uniforms = make_case(spec, 2, steps, seed=21)
    eng = state_case(spec, w)
    K = spec.frames_per_step
    c = eng.generate(frames, uniforms, 1.0).cpu()
    assert (c[:, 1:] != c[:, :1]).any(), "constant sequence: forcing it would prove little"
    for j in (0, 1, steps // 2, steps - 1, steps):
        # force c[:, :j] in two calls (the first empty for j < 2), generate the rest in two
        state, a, g = eng.start(2), j // 2, (j + steps + 1) // 2
        eng.force(frames[:, :, :a * K], c[:, :a], state)
        eng.force(frames[:, :, a * K:j * K], c[:, a:j], state)
        assert state.steps == j
        assert torch.equal(state.classes.cpu(), c[:, j - 1] if j else torch.full((2,), spec.start_class))
        rest = torch.cat([eng.generate(frames[:, :, j * K:g * K], uniforms[:, j:g], 1.0, state=state).cpu(),
                          eng.generate(frames[:, :, g * K:], uniforms[:, g:], 1.0, state=state).cpu()], dim=1)
        assert state.steps == steps
        _check_same(eng, state_case, spec, w, frames, uniforms, 1.0, torch.cat([c[:, :j], rest], 1), c, j)


@pytest.mark.parametrize("batch", [1, 3])
def test_generating_after_forced_classes_matches_reference(engine_case, parity_spec, batch):
    # recorded classes (random, a different sequence in each row) forced, then sampling on:
    # the samples are the float64 reference's on the whole sequence, the recorded part included
    spec = parity_spec
    w, frames, recorded, uniforms = make_case(spec, batch, STEPS, seed=batch + 30)
    eng = engine_case(spec, w)
    K, j = spec.frames_per_step, STEPS // 2 + 1
    for temperature in (1.0, 0.0):
        state = eng.start(batch)
        eng.force(frames[:, :, :j * K], recorded[:, :j], state)
        got = eng.generate(frames[:, :, j * K:], uniforms[:, j:], temperature, state=state).cpu()
        check_samples(spec, w, frames, torch.cat([recorded[:, :j], got], 1), uniforms, temperature, eng.dtype,
                      engine_case.exact, first=j)


def test_force_bookkeeping_and_refusals(state_case):
    spec = PARITY_SPECS["odd"]
    w, frames, classes, uniforms = make_case(spec, 2, 6, seed=8)
    eng = state_case(spec, w)
    K = spec.frames_per_step

    def run(empty_force):
        # force 3, generate 1, force 1, generate 1: the state after each call says where it is
        state = eng.start(2)
        assert eng.force(frames[:, :, :3 * K], classes[:, :3], state) is None
        assert state.steps == 3 and torch.equal(state.classes.cpu(), classes[:, 2])
        if empty_force:                       # zero steps change nothing (the history neither: below)
            eng.force(frames[:, :, 3 * K:3 * K], classes[:, 3:3], state)
            assert state.steps == 3 and torch.equal(state.classes.cpu(), classes[:, 2])
        a = eng.generate(frames[:, :, 3 * K:4 * K], uniforms[:, 3:4], 0.9, state=state).cpu()
        assert state.steps == 4 and torch.equal(state.classes.cpu(), a[:, 0])
        eng.force(frames[:, :, 4 * K:5 * K], classes[:, 4:5], state)
        assert state.steps == 5 and torch.equal(state.classes.cpu(), classes[:, 4])
        return torch.cat([a, eng.generate(frames[:, :, 5 * K:], uniforms[:, 5:], 0.9, state=state).cpu()], 1), state

    want, state = run(False)
    got, _ = run(True)
    assert torch.equal(got, want)
    # refused, and the state left as it was
    two = frames[:, :, :2 * K]
    for call, match in [
        (lambda: eng.force(two, classes[:, :2], None), "needs the state"),
        (lambda: eng.force(two, classes[:, :2], eng.start(3)), "state is for 3 sequence"),
        (lambda: eng.force(two, classes[:, :2], fastgen.create("reference", spec, w).start(2)), "this engine's start"),
        (lambda: eng.force(two, classes[:, :2] + spec.num_classes, state), r"classes must lie in \[0, 11\)"),
        (lambda: eng.force(two, torch.full((2, 2), spec.start_class), state), r"classes must lie in \[0, 11\)"),
        (lambda: eng.force(two, -classes[:, :2] - 1, state), r"classes must lie in"),
        (lambda: eng.force(two, classes[:, :2].float(), state), "integers"),
        (lambda: eng.force(two, classes[:, :3], state), r"classes must have shape \(batch, steps\) = \(2, 2\)"),
        (lambda: eng.force(two[:, :, :-1], classes[:, :2], state), "multiple of frames_per_step"),
        (lambda: eng.force(two * float("nan"), classes[:, :2], state), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
    assert state.steps == 6 and torch.equal(state.classes.cpu(), want[:, -1])


@pytest.mark.parametrize("batch", [1, 3])
def test_forcing_is_sampling_the_same_classes(state_case, batch):
    spec = PARITY_SPECS["round"]
    w, frames, _, uniforms = make_case(spec, batch, 10, seed=40 + batch)
    eng = state_case(spec, w)
    K, j = spec.frames_per_step, 6
    c = eng.generate(frames, uniforms, 1.0).cpu()
    assert len({tuple(r) for r in c.tolist()}) == batch, "rows alike: mixed-up rows would go unseen"
    # a state forced with c[:, :j] and one that sampled them: the same steps, next class and
    # (seen through what each generates next) history
    forced, sampled = eng.start(batch), eng.start(batch)
    eng.force(frames[:, :, :j * K], c[:, :j], forced)
    assert torch.equal(eng.generate(frames[:, :, :j * K], uniforms[:, :j], 1.0, state=sampled).cpu(), c[:, :j])
    assert forced.steps == sampled.steps == j and torch.equal(forced.classes, sampled.classes)
    rest = (frames[:, :, j * K:], uniforms[:, j:], 1.0)
    a = torch.cat([c[:, :j], eng.generate(*rest, state=forced).cpu()], 1)
    b = torch.cat([c[:, :j], eng.generate(*rest, state=sampled).cpu()], 1)
    _check_same(eng, state_case, spec, w, frames, uniforms, 1.0, a, b, j)
    # each row forced alone continues as in the batch: forced rows do not mix
    for r in range(batch):
        alone = eng.start(1)
        eng.force(frames[r:r + 1, :, :j * K], c[r:r + 1, :j], alone)
        got = eng.generate(frames[r:r + 1, :, j * K:], uniforms[r:r + 1, j:], 1.0, state=alone).cpu()
        _check_same(eng, state_case, spec, w, frames[r:r + 1], uniforms[r:r + 1], 1.0,
                    torch.cat([c[r:r + 1, :j], got], 1), a[r:r + 1], j)
