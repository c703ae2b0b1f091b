"""The cuda backend's ops, ``torch.ops.fastgen.cuda_generate``, ``cuda_force`` and
``cuda_teacher_forced``.

- Schemas (always: fastgen._C declares them): the kernel's integers are named, keyword-only
  int arguments, exactly those ``op_ints`` gives; only ``rings`` is written to (generate,
  force), and ``cuda_force`` returns nothing.
- Fake versions (CPU): meta and FakeTensor calls, CUDA devices included, give the outputs'
  shapes without a GPU.
- ``torch.library.opcheck`` on the CPU with the kernel emulator as the ops' CPU kernels
  (tests/cuda_emu.py): schema, fake and real outputs agree, through the dispatcher, and the
  dispatched op gives the emulated engine's results; validation errors are ValueErrors.
- GPU (skipped without one): opcheck of the real CUDA kernels (fastgen._cuda).
"""
from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from conftest import PARITY_SPECS, make_case
from cuda_emu import as_cpu_kernels
from fastgen.backends import cuda as cb
from fastgen.backends.cuda import ops

pytestmark = pytest.mark.skipif(not ops.registered(), reason="fastgen._C (which declares the ops) is not built")
OPS = {"generate": "cuda_generate", "teacher_forced": "cuda_teacher_forced", "force": "cuda_force"}
# What the ops derive per call, beside the integers they are given (FG_CALL_INTS).
PER_CALL = {"G", "batch", "steps", "mode", "step0"}


def _op(name):
    return getattr(torch.ops.fastgen, OPS[name]).default


def _calls(spec, batch=2, steps=2, dtype=torch.float32, device="cpu", limits=(100_000, 4), seed=0):
    """(positional arguments of each op, their integers) for one launch."""
    w, frames, classes, uniforms = make_case(spec, batch, steps, seed=seed)
    packed = cb.pack_weights(spec, w, dtype).to(device)
    plan = cb.plan_launch(spec, batch, *limits, dtype=dtype, threads=32)
    assert plan.launches == 1
    weights, frames = (packed.core, packed.down, packed.cond_table), frames.to(device, dtype)
    rings = torch.zeros(batch * plan.ring_elems_per_seq, dtype=dtype, device=device)
    first = torch.full((batch,), spec.start_class, dtype=torch.long, device=device)
    dils = list(spec.dilations)
    args = {"generate": (*weights, frames, uniforms.to(device), first, rings, 1.0, 0, dils),
            "teacher_forced": (*weights, frames, classes.to(device), dils),
            "force": (*weights, frames, classes.to(device), first, rings.clone(), 0, dils)}
    return args, cb.op_ints(spec, plan, packed.layout), w


@pytest.mark.parametrize("name", sorted(OPS))
def test_the_kernel_integers_are_named_keyword_arguments(name):
    spec = PARITY_SPECS["round"]
    _, ints, _ = _calls(spec)
    schema = _op(name)._schema
    named = {a.name for a in schema.arguments if a.kwarg_only}
    assert named == set(ints)
    assert all(str(a.type) == "int" for a in schema.arguments if a.kwarg_only)
    # a raw launch's integers: the op's and those it derives per call
    plan = cb.plan_launch(spec, 2, 100_000, 4, threads=32)
    layout = cb.core_layout(spec, torch.float32, plan.path)
    assert set(cb.launch_ints(spec, plan, layout, 2, 3, cb.MODE_GENERATE)) == named | PER_CALL
    written = [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
    assert written == (["rings"] if name in ("generate", "force") else [])
    assert len(schema.returns) == (0 if name == "force" else 1)


@pytest.mark.parametrize("device", ["meta", "fake-cuda"])
def test_fake_versions_give_the_output_shapes(device):
    spec = PARITY_SPECS["odd"]
    args, ints, _ = _calls(spec, batch=3, steps=4)
    fake = FakeTensorMode() if device == "fake-cuda" else None
    with fake or torch.device("meta"):
        dev = "cuda" if fake else "meta"
        moved = {k: tuple(torch.empty(a.shape, dtype=a.dtype, device=dev) if isinstance(a, torch.Tensor) else a
                          for a in v) for k, v in args.items()}
        samples = _op("generate")(*moved["generate"], **ints)
        logits = _op("teacher_forced")(*moved["teacher_forced"], **ints)
        assert _op("force")(*moved["force"], **ints) is None
    assert (tuple(samples.shape), samples.dtype, samples.device.type) == ((3, 4), torch.long, dev)
    assert (tuple(logits.shape), logits.dtype, logits.device.type) == ((3, 4, spec.num_classes), torch.float32, dev)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(OPS))
def test_opcheck_on_the_emulated_kernel(emu, name, dtype):
    spec = PARITY_SPECS["round"]
    args, ints, _ = _calls(spec, dtype=dtype)
    with as_cpu_kernels(emu):
        torch.library.opcheck(_op(name), args[name], ints)


def test_the_dispatched_op_is_the_engines_kernel(emu):
    spec = PARITY_SPECS["odd"]
    args, ints, w = _calls(spec, batch=3, steps=3, seed=2)
    eng = cb.CudaEngine(spec, w, device="cpu", _runtime=emu, _device_limits=(100_000, 4), threads=32)
    frames, uniforms, classes = args["generate"][3], args["generate"][4], args["teacher_forced"][4]
    with as_cpu_kernels(emu):
        samples = torch.ops.fastgen.cuda_generate(*args["generate"], **ints)
        logits = torch.ops.fastgen.cuda_teacher_forced(*args["teacher_forced"], **ints)
    assert torch.equal(samples, eng.generate(frames, uniforms, 1.0))
    assert torch.equal(logits, eng.teacher_forced(frames, classes))
    # the rings were written in place: continuing from them is continuing the generation
    assert args["generate"][6].abs().sum() > 0
    # forcing the generated classes leaves the rings generating them left, and forced steps are
    # the engine's
    *weights, _, _, first, rings, step0, dils = args["force"]
    with as_cpu_kernels(emu):
        assert torch.ops.fastgen.cuda_force(*weights, frames, samples, first, rings, step0, dils, **ints) is None
    assert torch.equal(rings, args["generate"][6])
    state = eng.start(3)
    state.history.zero_()           # (slots no step wrote are never read: the engine leaves them as they are)
    eng.force(frames, classes, state)
    with as_cpu_kernels(emu):
        torch.ops.fastgen.cuda_force(*weights, frames, classes, first, rings.zero_(), step0, dils, **ints)
    assert torch.equal(rings, state.history)


def test_the_op_refuses_what_the_kernel_cannot_run(emu):
    spec = PARITY_SPECS["round"]
    args, ints, _ = _calls(spec)
    core, down, cond, frames, classes, dils = args["teacher_forced"]
    with as_cpu_kernels(emu):
        with pytest.raises(ValueError, match="threads per block must be a multiple of 32"):
            torch.ops.fastgen.cuda_teacher_forced(*args["teacher_forced"], **{**ints, "threads": 48})
        with pytest.raises(ValueError, match=r"frames must have shape \(batch, C_in=1, steps\*K with K=4, F=8\)"):
            torch.ops.fastgen.cuda_teacher_forced(core, down, cond, frames[:, :, 1:].contiguous(), classes, dils,
                                                  **ints)
        with pytest.raises(ValueError, match="got 4 dilations for 5 layers"):
            torch.ops.fastgen.cuda_teacher_forced(core, down, cond, frames, classes, dils[:4], **ints)
        with pytest.raises(RuntimeError, match="missing value for argument 'Cin'"):
            torch.ops.fastgen.cuda_teacher_forced(*args["teacher_forced"], **{k: v for k, v in ints.items()
                                                                               if k != "Cin"})
        empty = torch.ops.fastgen.cuda_teacher_forced(core, down, cond, frames[:0], classes[:0], dils, **ints)
        assert tuple(empty.shape) == (0, 2, spec.num_classes)
        _, _, _, _, _, first, rings, step0, _ = args["force"]
        with pytest.raises(ValueError, match=r"classes must be \(2, 2\) int64 classes"):
            torch.ops.fastgen.cuda_force(core, down, cond, frames, classes[:, :1], first, rings, step0, dils, **ints)
        with pytest.raises(ValueError, match="first_class must be 2 int64 classes"):
            torch.ops.fastgen.cuda_force(core, down, cond, frames, classes, first[:1], rings, step0, dils, **ints)
        with pytest.raises(ValueError, match=r"buffer ring holds \d+ elements, the launch needs \d+"):
            torch.ops.fastgen.cuda_force(core, down, cond, frames, classes, first, rings[:-1], step0, dils, **ints)
        with pytest.raises(ValueError, match=r"the first step's index must lie in"):
            torch.ops.fastgen.cuda_force(core, down, cond, frames, classes, first, rings, -1, dils, **ints)
        torch.ops.fastgen.cuda_force(core, down, cond, frames[:, :, :0], classes[:, :0], first, rings, 0, dils,
                                     **ints)
        assert rings.abs().sum() == 0                   # refused or empty calls wrote nothing


# -- on a GPU: the real kernels ------------------------------------------------------------------
@pytest.mark.skipif(cb.unavailable_reason() is not None, reason=str(cb.unavailable_reason()))
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(OPS))
def test_opcheck_on_the_gpu(name, dtype):
    spec = PARITY_SPECS["round"]
    args, ints, _ = _calls(spec, dtype=dtype, device="cuda", limits=cb.device_limits(torch.device("cuda")))
    torch.library.opcheck(_op(name), args[name], ints)
    with pytest.raises(ValueError, match="threads per block must be a multiple of 32"):
        _op(name)(*args[name], **{**ints, "threads": 48})
