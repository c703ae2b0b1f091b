"""The Triton backends (``triton``: one launch per step; ``triton_persistent``: one launch per
sequence): the conformance suite (tests/conformance.py) in float32, float16 and bfloat16, and
their launch configurations (sequences per program, row chunks, the grid at large batch, the
torch.library registration).

Without a GPU the kernels run on CPU tensors through Triton's interpreter (conftest sets
TRITON_INTERPRET=1), which is slow: shapes and step counts here are tiny.

Sampling: under the interpreter, float32 samples must equal the reference's exactly. On a GPU,
exp and divide are approximate and the cumsum runs in parallel, so a sample may differ from the
float64 reference (on the engine's own sequence, with the same uniforms) where the uniform lies
within rounding of a CDF boundary, and nowhere else (the suite's near-tie rule).

bfloat16 under the interpreter needs the kernels' interpreter-only upcast before tl.dot (the
interpreter's dot multiplies the raw uint16 storage of bf16); everything else (bf16 ring
buffers, weights, casts) is exercised as on a GPU.
"""
import functools

import pytest
import torch

import fastgen
from conftest import PARITY_SPECS, make_case
from conformance import *  # noqa: F401,F403 (the conformance suite, on the engines below)
from conformance import TOL, EngineCase, check_generate, check_teacher_forced, engine_fixture, rel_err

pytest.importorskip("triton")
from fastgen.backends.triton import engine as triton_backend  # noqa: E402

pytestmark = pytest.mark.skipif(triton_backend.unavailable_reason() is not None,
                                reason=f"triton unavailable: {triton_backend.unavailable_reason()}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VARIANTS = ("triton", "triton_persistent")
SPECS = sorted(PARITY_SPECS)
STEPS = 8
EXACT = DEVICE == "cpu"       # the interpreter computes as the reference does

ENGINES = [EngineCase(f"{v}-{name}", lambda s, w, v=v, dt=dt: fastgen.create(v, s, w, device=DEVICE, dtype=dt), dt,
                      exact=EXACT and dt == torch.float32)
           for v in VARIANTS for name, dt in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16))]
engine_case = engine_fixture(ENGINES)
state_case = engine_fixture([e for e in ENGINES if e.dtype == torch.float32], name="state_case")   # the interpreter is slow


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The shapes here are tiny: intra-op threads only spin (badly so on a loaded 2-core box).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=None)
def _case(spec_name, batch, steps=STEPS, seed=0):
    return make_case(PARITY_SPECS[spec_name], batch, steps, seed=seed)


@functools.lru_cache(maxsize=None)
def _reference_engine(spec_name, batch, dtype=torch.float64):
    weights = _case(spec_name, batch)[0]
    return fastgen.create("reference", PARITY_SPECS[spec_name], weights, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _reference_logits(spec_name, batch, dtype=torch.float64, steps=STEPS):
    _, frames, classes, _ = _case(spec_name, batch, steps)
    return _reference_engine(spec_name, batch, dtype).teacher_forced(frames, classes)


@functools.lru_cache(maxsize=None)
def _engine(variant, spec_name, batch, dtype=torch.float32):
    weights = _case(spec_name, batch)[0]
    return fastgen.create(variant, PARITY_SPECS[spec_name], weights, device=DEVICE, dtype=dtype)


def test_available_and_registered():
    assert triton_backend.unavailable_reason() is None
    assert {"triton", "triton_persistent"} <= set(fastgen.available(DEVICE))
    assert hasattr(torch.ops.fastgen, "triton_step")
    assert hasattr(torch.ops.fastgen, "triton_persistent")


def test_step_and_persistent_agree():
    _, frames, classes, _ = _case("odd", 2)
    a = _engine("triton", "odd", 2).teacher_forced(frames, classes)
    b = _engine("triton_persistent", "odd", 2).teacher_forced(frames, classes)
    assert rel_err(a, b) <= 1e-6


# -- several sequences per program (the large-batch tiling), some of them masked off --------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seqs,rows", [(2, 32), (16, 64)])  # odd: PP = 16, so 2 and 4 sequences per tile
def test_sequences_per_program(variant, seqs, rows):
    spec_name, batch, steps = "odd", 3, 5
    weights, frames, classes, uniforms = _case(spec_name, batch, steps)
    eng = fastgen.create(variant, PARITY_SPECS[spec_name], weights, device=DEVICE,
                         seqs_per_program=seqs, tile_rows=rows)
    assert eng._config(batch)[:2] == [seqs, rows]
    err = rel_err(eng.teacher_forced(frames, classes), _reference_logits(spec_name, batch, steps=steps))
    assert err <= 1e-4, f"relative error {err:.3g}"
    check_generate(eng, PARITY_SPECS[spec_name], weights, frames, uniforms, 0.7, exact=EXACT)


# -- row chunks: a sequence's positions split over tiles (PP > TILE_M) -------------------------
# "round": P = 32 in two 16-row chunks, dilations 1 and 2 < K = 4, so past taps of the second
# chunk lie in the first. "wide": P = 40, PP = 64: three chunks, the fourth (all padding)
# skipped, the third part padding; K = 5 with dilations below and above it.
WIDE = fastgen.NetworkSpec(in_channels=1, num_features=8, frames_per_step=5, residual_channels=12,
                           hidden_channels=16, skip_channels=20, out_channels=9, num_classes=13, cond_classes=14,
                           cond_channels=5, dilations=(1, 3, 2, 7, 4), start_class=13)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spec_name,seqs", [("round", 1), ("wide", 2)])
def test_row_chunks(variant, spec_name, seqs):
    spec = WIDE if spec_name == "wide" else PARITY_SPECS[spec_name]
    batch, steps = 3, 4
    weights, frames, classes, uniforms = make_case(spec, batch, steps, seed=5)
    ref = fastgen.create("reference", spec, weights, dtype=torch.float64)
    eng = fastgen.create(variant, spec, weights, device=DEVICE, seqs_per_program=seqs, tile_rows=16)
    assert eng._config(batch)[1] == 16 and spec.positions_per_step > 16
    err = rel_err(eng.teacher_forced(frames, classes), ref.teacher_forced(frames, classes))
    assert err <= 1e-4, f"relative error {err:.3g}"
    check_generate(eng, spec, weights, frames, uniforms, 0.8, exact=EXACT)


# -- a wide input: the input convolution takes its channels a tile (kernels.CIN_TILE) per trip of
# a loop, the last trip partial; two sequences per program, the third masked off --------------
WIDE_INPUT = fastgen.NetworkSpec(in_channels=21, num_features=4, frames_per_step=2, residual_channels=12,
                                 hidden_channels=16, skip_channels=16, out_channels=8, num_classes=13,
                                 cond_classes=14, cond_channels=5, dilations=(1, 2, 4), start_class=13)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_wide_input(variant, dtype):
    from fastgen.backends.triton import kernels
    spec, tile = WIDE_INPUT, kernels.CIN_TILE.value
    assert spec.in_channels > 2 * tile and spec.in_channels % tile
    batch, steps = 3, 4
    weights, frames, classes, uniforms = make_case(spec, batch, steps, seed=7)
    eng = fastgen.create(variant, spec, weights, device=DEVICE, dtype=dtype, seqs_per_program=2)
    assert eng._config(batch)[0] == 2
    check_teacher_forced(eng, spec, weights, frames, classes, TOL[dtype])
    check_generate(eng, spec, weights, frames, uniforms, 0.8, exact=EXACT and dtype == torch.float32)


# -- forced steps: the history the sampled steps leave, on every tiling ------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spec_name,options", [
    ("odd", dict(seqs_per_program=2, tile_rows=32)),   # 2 sequences per tile, the third masked off
    ("wide", dict(seqs_per_program=2, tile_rows=16)),  # row chunks: past taps in an earlier chunk
    ("one_layer", {}),                                 # no layer before the last: the ring store alone
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forced_rings_are_the_sampled_ones(variant, spec_name, options, dtype):
    spec = WIDE if spec_name == "wide" else PARITY_SPECS[spec_name]
    w, frames, _, uniforms = make_case(spec, 3, 4, seed=6)
    eng = fastgen.create(variant, spec, w, device=DEVICE, dtype=dtype, **options)
    sampled, forced = eng.start(3), eng.start(3)
    c = eng.generate(frames, uniforms, 1.0, state=sampled)
    eng.force(frames, c, forced)
    assert forced.history.abs().sum() > 0
    if EXACT:        # the interpreter: the same dots on the same values
        assert torch.equal(forced.history, sampled.history)
    else:            # on a GPU the forced launch is another compiled kernel
        assert rel_err(forced.history, sampled.history) <= (1e-6 if dtype == torch.float32 else 1e-2)


def test_tile_rows_are_clamped_to_a_power_of_two():
    from fastgen.backends.triton import ops as tk
    dims = _engine("triton", "round", 1).dims              # PP = 32
    assert tk.launch_config(1, dims, tile_rows=100)[1] == 32    # at most the program's rows
    sixteen = dict(seqs_per_program=16)
    assert tk.launch_config(300, dims, tile_rows=100, **sixteen)[1] == 64  # rounded down
    assert tk.launch_config(300, dims, tile_rows=1000, **sixteen)[1] == 128
    assert tk.launch_config(300, dims, tile_rows=3, **sixteen)[1] == 16


def test_default_sequences_per_program():
    from fastgen.backends.triton import ops as tk
    dims = _engine("triton", "round", 1).dims
    # one per program until the batch fills the SMs, then the most that keep a program per SM
    assert tk.launch_config(128, dims, torch.bfloat16, sms=128)[0] == 1
    assert tk.launch_config(256, dims, torch.bfloat16, sms=132)[0] == 1      # 128 programs < 132 SMs
    assert tk.launch_config(264, dims, torch.bfloat16, sms=132)[0] == 2
    assert tk.launch_config(1056, dims, torch.bfloat16, sms=132)[0] == 8
    assert tk.launch_config(2112, dims, torch.bfloat16, sms=132)[0] == 16
    assert tk.launch_config(10 ** 6, dims, torch.bfloat16, sms=132)[0] == 16  # never more than 16
    assert tk.launch_config(256, dims, torch.bfloat16, sms=16)[0] == 16
    assert tk.launch_config(256, dims, torch.float32, fp32_dot="tf32x3", sms=16)[0] == 16
    assert tk.launch_config(4096, dims, torch.float32, sms=16)[0] == 1  # exact fp32 dots: see launch_config
    assert tk.launch_config(2112, dims, torch.bfloat16)[0] == 16          # no sms given: DEFAULT_SMS (132)
    assert tk.sm_count("cpu") == tk.DEFAULT_SMS
    if torch.cuda.is_available():
        assert tk.sm_count("cuda") == torch.cuda.get_device_properties(0).multi_processor_count


class _GridRecorder:
    """Stands in for a kernel: records the grid of each launch, runs nothing."""
    def __init__(self):
        self.grids = []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return lambda **kwargs: None


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sms", [132, 108, 16])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_batch_256_launches_a_program_per_sm(monkeypatch, variant, sms, dtype):
    from fastgen.backends.triton import ops as tk
    kernel = "step_kernel" if variant == "triton" else "persistent_kernel"
    recorder = _GridRecorder()
    monkeypatch.setattr(tk, kernel, recorder)
    monkeypatch.setattr(tk, "sm_count", lambda device=None: sms)
    spec = PARITY_SPECS["round"]
    eng = fastgen.create(variant, spec, _case("round", 1)[0], device=DEVICE, dtype=dtype, fp32_dot="tf32x3")
    batch = 256
    frames = torch.zeros(batch, spec.in_channels, spec.frames_per_step, spec.num_features, dtype=dtype, device=DEVICE)
    eng.generate(frames, torch.rand(batch, 1, device=DEVICE))
    [(programs,)] = recorder.grids
    assert programs >= min(sms, batch), f"{programs} programs for {sms} SMs"
    spp = eng._config(batch)[0]
    assert programs == -(-batch // spp)
    # where the sequences outnumber the SMs, programs still share their weight reads
    assert spp == {132: 1, 108: 2, 16: 16}[sms]


def test_bad_options():
    spec = PARITY_SPECS["k1_stereo"]
    with pytest.raises(ValueError):
        fastgen.create("triton", spec, _case("k1_stereo", 1)[0], device=DEVICE, fp32_dot="tf32")
    with pytest.raises(ValueError):
        fastgen.create("triton", spec, _case("k1_stereo", 1)[0], device=DEVICE, dtype=torch.float64)


# -- torch.library ops --------------------------------------------------------------------------
def _op_args(batch=1, steps=2):
    spec = PARITY_SPECS["k1_stereo"]
    eng = _engine("triton", "k1_stereo", 1)
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(batch, spec.in_channels, steps * spec.frames_per_step, spec.num_features,
                         generator=g).to(DEVICE)
    return spec, eng, frames, eng._config(batch)


def test_fake_impls_under_fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from fastgen.backends.triton import ops as tk
    spec, eng, frames, config = _op_args(batch=3, steps=5)
    Q = spec.num_classes
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        f = mode.from_tensor(frames)
        packed = [mode.from_tensor(p) for p in eng.packed]
        cond = torch.zeros(3, 5, dtype=torch.long, device=DEVICE)
        u = torch.zeros(3, 5, device=DEVICE)
        ring = tk.new_ring(3, eng.dims, DEVICE, eng.dtype)
        logits, out = torch.ops.fastgen.triton_persistent(f, cond, u, 1.0, ring, packed, eng.dims, config, True)
        assert logits.shape == (3, 5, Q) and logits.dtype == torch.float32
        assert out.shape == (3, 5) and out.dtype == torch.int64
        logits, out = torch.ops.fastgen.triton_persistent(f, cond[:, 0], u, 1.0, ring, packed, eng.dims, config,
                                                          False, 7)
        assert logits.shape == (3, 0, Q) and out.shape == (3, 5)
        logits, nxt = torch.ops.fastgen.triton_step(f, 1, cond[:, 0], u[:, 0], 1.0, ring, packed, eng.dims,
                                                    config, True, True)
        assert logits.shape == (3, Q) and nxt.shape == (3,) and nxt.dtype == torch.int64
        # forced steps: nothing written but the ring
        logits, out = torch.ops.fastgen.triton_persistent(f, cond, u, 1.0, ring, packed, eng.dims, config, True, 2,
                                                          True)
        assert logits.shape == (3, 0, Q) and out.shape == (3, 5)
        logits, nxt = torch.ops.fastgen.triton_step(f, 1, cond[:, 0], u[:, 0], 1.0, ring, packed, eng.dims,
                                                    config, False, False, 2)
        assert logits.shape == (3, 0) and nxt.shape == (3,)


def test_opcheck_persistent():
    from fastgen.backends.triton import ops as tk
    spec, eng, frames, config = _op_args(batch=1, steps=2)
    cond = torch.full((1,), spec.start_class, dtype=torch.long, device=DEVICE)
    u = torch.tensor([[0.3, 0.8]], device=DEVICE)
    ring = tk.new_ring(1, eng.dims, DEVICE, eng.dtype)
    torch.library.opcheck(torch.ops.fastgen.triton_persistent.default,
                          (frames, cond, u, 1.0, ring, eng.packed, eng.dims, config, False, 0),
                          test_utils=("test_schema", "test_faketensor"))


def test_opcheck_persistent_forced():
    from fastgen.backends.triton import ops as tk
    spec, eng, frames, config = _op_args(batch=1, steps=2)
    cond = torch.tensor([[spec.start_class, 3]], device=DEVICE)
    u = torch.zeros(1, 2, device=DEVICE)
    ring = tk.new_ring(1, eng.dims, DEVICE, eng.dtype)
    torch.library.opcheck(torch.ops.fastgen.triton_persistent.default,
                          (frames, cond, u, 1.0, ring, eng.packed, eng.dims, config, True, 4, True),
                          test_utils=("test_schema", "test_faketensor"))


def test_opcheck_step():
    from fastgen.backends.triton import ops as tk
    spec, eng, frames, config = _op_args(batch=1, steps=2)
    ring = tk.new_ring(1, eng.dims, DEVICE, eng.dtype)
    cls = torch.full((1,), spec.start_class, dtype=torch.long, device=DEVICE)
    u = torch.tensor([0.4], device=DEVICE)
    torch.library.opcheck(torch.ops.fastgen.triton_step.default,
                          (frames, 0, cls, u, 1.0, ring, eng.packed, eng.dims, config, True, True, 3),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_traces_the_op():
    from fastgen.backends.triton import ops as tk
    spec, eng, frames, config = _op_args(batch=1, steps=2)
    u = torch.tensor([[0.3, 0.8]], device=DEVICE)
    first = torch.full((1,), spec.start_class, dtype=torch.long, device=DEVICE)

    def run(frames, u):
        ring = tk.new_ring(1, eng.dims, DEVICE, eng.dtype)
        return torch.ops.fastgen.triton_persistent(frames, first, u, 1.0, ring, eng.packed, eng.dims, config,
                                                   False)[1]

    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(frames, u), run(frames, u))
