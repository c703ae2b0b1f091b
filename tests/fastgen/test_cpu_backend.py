"""The fused C++ CPU backend (``cpu``): the conformance suite (tests/conformance.py), its thread
splits, and its native argument checks; all of it again under each other instruction-set path of
the kernels this CPU has (FASTGEN_CPU_ISA, in a subprocess)."""
import contextlib
import os
import subprocess
import sys

import pytest
import torch

import fastgen
from fastgen.backends import cpu as cpu_backend

from conftest import PARITY_SPECS, make_case
from conformance import *  # noqa: F401,F403 (the conformance suite, on the engine below)
from conformance import EngineCase, engine_fixture
from fastgen.packing import folded

pytestmark = pytest.mark.skipif(cpu_backend.unavailable_reason() is not None,
                                reason=f"cpu backend not built: {cpu_backend.unavailable_reason()}")

STEPS = 20

CPU = EngineCase("cpu", lambda s, w: fastgen.create("cpu", s, w, num_threads=2))
engine_case = engine_fixture([CPU])
state_case = engine_fixture([CPU], name="state_case")


@contextlib.contextmanager
def _one_thread():
    # The reference's many tiny ops gain nothing from threads and can stall badly on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _ref_teacher_forced(spec, weights, frames, classes):
    with _one_thread():
        eng = fastgen.create("reference", spec, {k: v.double() for k, v in weights.items()}, dtype=torch.float64)
        return eng.teacher_forced(frames.double(), classes)


def _ref_generate(spec, weights, frames, uniforms, temperature):
    with _one_thread():
        return fastgen.create("reference", spec, weights).generate(frames, uniforms, temperature)


def _assert_logits_close(got, ref):
    assert got.dtype == torch.float32 and got.shape == ref.shape
    err = (got.double() - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), f"max abs error {err:.3g} vs max |logit| {ref.abs().max().item():.3g}"


@pytest.mark.parametrize("num_threads,split", [(1, True), (2, True), (4, True), (4, False), (3, None)])
def test_thread_splits(num_threads, split):
    # Fewer sequences than threads: with split_positions a sequence's positions are shared among
    # threads (F=5 over 4 threads: uneven parts); without, extra threads stay idle.
    spec = PARITY_SPECS["odd"]
    weights, frames, classes, uniforms = make_case(spec, 3, 12, seed=2)
    ref = _ref_teacher_forced(spec, weights, frames, classes)
    eng = fastgen.create("cpu", spec, weights, num_threads=num_threads, split_positions=split)
    _assert_logits_close(eng.teacher_forced(frames, classes), ref)
    _assert_logits_close(eng.teacher_forced(frames[:1], classes[:1]), ref[:1])
    want = _ref_generate(spec, weights, frames[:2], uniforms[:2], 1.0)
    assert torch.equal(eng.generate(frames[:2], uniforms[:2], 1.0), want)
    assert torch.equal(eng.generate(frames[:1], uniforms[:1], 1.0), want[:1])


@pytest.mark.parametrize("num_threads", [2, 4])
def test_split_then_one_thread_per_sequence(num_threads):
    # split=-2: positions split across threads, then (after 8 steps) one thread per sequence
    # takes over all its positions, as the auto mode does when the threads wait too long.
    spec = PARITY_SPECS["round"]
    weights, frames, classes, uniforms = make_case(spec, 2, STEPS, seed=8)
    ref = _ref_teacher_forced(spec, weights, frames, classes)
    eng = fastgen.create("cpu", spec, weights)
    ops, packed = torch.ops.fastgen, eng._packed
    for b in (1, 2):
        got = ops.cpu_teacher_forced(packed, frames[:b], classes[:b], spec.start_class, num_threads, -2)
        _assert_logits_close(got, ref[:b])
        want = _ref_generate(spec, weights, frames[:b], uniforms[:b], 1.0)
        assert torch.equal(ops.cpu_generate(packed, frames[:b], uniforms[:b], 1.0, spec.start_class, num_threads, -2),
                           want)


def test_num_samples_replicated_frames():
    spec = PARITY_SPECS["round"]
    weights, frames, _, _ = make_case(spec, 1, STEPS, seed=4)
    frames = frames.expand(5, -1, -1, -1).contiguous()
    uniforms = torch.rand(5, STEPS, generator=torch.Generator().manual_seed(5))
    got = fastgen.create("cpu", spec, weights).generate(frames, uniforms, 1.0)
    want = _ref_generate(spec, weights, frames, uniforms, 1.0)
    assert torch.equal(got, want)
    assert len({tuple(r) for r in got.tolist()}) > 1, "rows with different uniforms should differ"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_unsupported_dtype_raises(dtype):
    spec = PARITY_SPECS["round"]
    with pytest.raises(ValueError, match="float32"):
        fastgen.create("cpu", spec, fastgen.random_weights(spec), dtype=dtype)


def test_wrong_shapes_raise():
    spec = PARITY_SPECS["round"]
    weights, frames, classes, uniforms = make_case(spec, 2, 4)
    eng = fastgen.create("cpu", spec, weights)
    with pytest.raises(ValueError):
        eng.generate(frames[:, :, :-1], uniforms)             # not whole steps
    with pytest.raises(ValueError):
        eng.generate(frames[..., :-1], uniforms)              # wrong F
    with pytest.raises(ValueError):
        eng.generate(frames, uniforms[:, :-1])                # uniforms vs steps
    with pytest.raises(ValueError):
        eng.teacher_forced(frames, classes[:1])               # classes vs batch
    with pytest.raises(ValueError):
        fastgen.create("cpu", spec, {k: v for k, v in weights.items() if k != "down_b"})


def test_native_argument_checks():
    spec = PARITY_SPECS["round"]
    weights, frames, classes, uniforms = make_case(spec, 2, 4)
    ops = torch.ops.fastgen
    packed = ops.cpu_pack(folded(weights), list(spec.dilations), spec.flops_per_step())
    with pytest.raises(RuntimeError, match="float32"):
        ops.cpu_generate(packed, frames.double(), uniforms, 1.0, spec.start_class)
    with pytest.raises(RuntimeError, match="uniforms"):
        ops.cpu_generate(packed, frames, uniforms[:, :2], 1.0, spec.start_class)
    with pytest.raises(RuntimeError, match="start_class"):
        ops.cpu_teacher_forced(packed, frames, classes, spec.cond_classes)
    with pytest.raises(RuntimeError, match="classes must lie"):
        ops.cpu_teacher_forced(packed, frames, classes + 1000, spec.start_class)
    with pytest.raises(RuntimeError, match="dilations"):
        ops.cpu_pack(folded(weights), [1, 2], spec.flops_per_step())


def test_packed_once_at_construction():
    spec = PARITY_SPECS["round"]
    weights, frames, classes, uniforms = make_case(spec, 2, 8, seed=7)
    weights = {k: v.clone() for k, v in weights.items()}
    eng = fastgen.create("cpu", spec, weights)
    before = eng.teacher_forced(frames, classes)
    samples = eng.generate(frames, uniforms)
    for v in weights.values():   # mutate every weight in place after construction
        v.mul_(-3.0).add_(0.5)
    assert torch.equal(eng.teacher_forced(frames, classes), before)
    assert torch.equal(eng.generate(frames, uniforms), samples)
    # ... while an engine built from the mutated weights does see the change.
    assert not torch.allclose(fastgen.create("cpu", spec, weights).teacher_forced(frames, classes), before)


def test_registry():
    assert "cpu" in fastgen.available("cpu")
    assert fastgen.resolve("fused", "cpu") == "cpu"
    assert cpu_backend.unavailable_reason() is None
    with pytest.raises(ValueError, match="CPU"):
        cpu_backend.CpuEngine(PARITY_SPECS["round"], fastgen.random_weights(PARITY_SPECS["round"]), device="meta")


# -- the ops in the torch dispatcher (as the Triton ones) ----------------------------------------
def _op_case(batch=2, steps=3):
    spec = PARITY_SPECS["odd"]
    weights, frames, classes, uniforms = make_case(spec, batch, steps, seed=9)
    eng = fastgen.create("cpu", spec, weights)
    return spec, eng, frames, classes, uniforms


def test_ops_are_registered_with_the_dispatcher():
    spec, eng, *_ = _op_case()
    packed = eng._packed
    assert isinstance(packed, torch.ScriptObject) and "CpuPacked" in str(packed._type())
    assert packed.num_classes() == spec.num_classes and packed.cond_classes() == spec.cond_classes
    assert packed.ring_stride() > 0 and packed.nbytes() > 0
    for name in ("cpu_pack", "cpu_generate", "cpu_force", "cpu_teacher_forced"):
        assert hasattr(torch.ops.fastgen, name)
    # rings are declared as written in place (so functionalization copies them back)
    assert torch.ops.fastgen.cpu_generate.default._schema.arguments[7].alias_info.is_write
    force = torch.ops.fastgen.cpu_force.default._schema
    assert [a.name for a in force.arguments if a.alias_info is not None and a.alias_info.is_write] == ["rings"]
    assert not force.returns


def test_opcheck_cpu_ops():
    # (opcheck's schema check cannot walk a TorchScript object argument: the schema's aliasing is
    # asserted in test_ops_are_registered_with_the_dispatcher instead)
    spec, eng, frames, classes, uniforms = _op_case()
    rings = torch.zeros(2, eng._packed.ring_stride())
    torch.library.opcheck(torch.ops.fastgen.cpu_generate.default,
                          (eng._packed, frames, uniforms, 1.0, spec.start_class, 1, 0, rings, 0, None),
                          test_utils=("test_faketensor",))
    torch.library.opcheck(torch.ops.fastgen.cpu_teacher_forced.default,
                          (eng._packed, frames, classes, spec.start_class, 1, 0),
                          test_utils=("test_faketensor",))
    first = torch.full((2,), spec.start_class)
    torch.library.opcheck(torch.ops.fastgen.cpu_force.default,
                          (eng._packed, frames, classes, rings, 0, first, 1, 0), test_utils=("test_faketensor",))


def test_cpu_force_op_continues_the_rings_as_generate_does():
    # the op itself: forcing a generation's own samples leaves the rings generate left
    spec, eng, frames, classes, uniforms = _op_case(batch=3, steps=4)
    ops, packed, K = torch.ops.fastgen, eng._packed, spec.frames_per_step
    first = torch.full((3,), spec.start_class)
    sampled, forced = torch.zeros(2, 3, packed.ring_stride())
    c = ops.cpu_generate(packed, frames[:, :, :3 * K], uniforms[:, :3], 1.0, spec.start_class, 2, -1, sampled, 0,
                         first)
    assert ops.cpu_force(packed, frames[:, :, :3 * K], c, forced, 0, first, 2, -1) is None
    assert torch.equal(forced, sampled) and forced.abs().sum() > 0
    ops.cpu_force(packed, frames[:, :, 3 * K:], classes[:, 3:], forced, 3, c[:, -1], 2, -1)
    assert not torch.equal(forced, sampled)


def test_cpu_force_native_argument_checks():
    spec, eng, frames, classes, _ = _op_case()
    ops, packed = torch.ops.fastgen, eng._packed
    rings, first = torch.zeros(2, packed.ring_stride()), torch.full((2,), spec.start_class)
    with pytest.raises(RuntimeError, match="force: classes must lie in"):
        ops.cpu_force(packed, frames, classes + 1000, rings, 0, first)
    with pytest.raises(RuntimeError, match=r"force: classes must have shape \(batch, steps\)"):
        ops.cpu_force(packed, frames, classes[:, :1], rings, 0, first)
    with pytest.raises(RuntimeError, match="force: rings must be a contiguous float32"):
        ops.cpu_force(packed, frames, classes, rings[:1], 0, first)
    with pytest.raises(RuntimeError, match="force: first_class must lie in"):
        ops.cpu_force(packed, frames, classes, rings, 0, first + 100)
    with pytest.raises(RuntimeError, match="force: step0 -1"):
        ops.cpu_force(packed, frames, classes, rings, -1, first)
    with pytest.raises(RuntimeError, match="force: frames must be float32"):
        ops.cpu_force(packed, frames.double(), classes, rings, 0, first)
    assert rings.abs().sum() == 0                      # refused calls wrote nothing


def test_torch_compile_traces_the_cpu_ops():
    spec, eng, frames, classes, uniforms = _op_case()

    def run(frames, uniforms, classes):
        return (torch.ops.fastgen.cpu_generate(eng._packed, frames, uniforms, 1.0, spec.start_class),
                torch.ops.fastgen.cpu_teacher_forced(eng._packed, frames, classes, spec.start_class))

    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    got, want = compiled(frames, uniforms, classes), run(frames, uniforms, classes)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


# -- the instruction-set paths (csrc/cpu/isa.h) --------------------------------------------------
def _isa_paths():
    return cpu_backend._C.cpu_isa_paths().split(",") if cpu_backend.unavailable_reason() is None else []


@pytest.mark.skipif(bool(os.environ.get("FASTGEN_CPU_ISA")), reason="this run already forces a path")
@pytest.mark.parametrize("isa", _isa_paths())
def test_every_isa_path_passes_this_file(isa):
    # This file (the conformance suite: samples equal to the float64 reference's, logits within
    # its tolerance) with the path forced; the path this run picked has just been tested here.
    if isa == cpu_backend._C.cpu_isa():
        pytest.skip(f"{isa} is the path of this run")
    env = dict(os.environ, FASTGEN_CPU_ISA=isa)
    probe = subprocess.run([sys.executable, "-c", "import fastgen._C as c; print(c.cpu_isa())"], env=env,
                           capture_output=True, text=True)
    if "cannot run" in probe.stderr:
        pytest.skip(f"this CPU has no {isa}")
    assert probe.returncode == 0 and probe.stdout.split() == [isa], probe.stderr[-3000:]
    # (this run's cwd and environment: the same fastgen)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-8000:] + r.stderr[-3000:]


def test_unbuilt_extension_is_backend_unavailable(monkeypatch):
    # the one "cannot run here" exception, whichever way the engine is made
    monkeypatch.setattr(cpu_backend, "unavailable_reason", lambda: "fastgen._C is not built (test)")
    spec = PARITY_SPECS["round"]
    with pytest.raises(fastgen.BackendUnavailable, match="backend 'cpu' is not available: fastgen._C is not built"):
        cpu_backend.CpuEngine(spec, fastgen.random_weights(spec))
