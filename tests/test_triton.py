"""Parity of the Triton backends (``triton``: one launch per step; ``triton_persistent``: one
launch per sequence) with the float64 reference engine.

Without a GPU the kernels run on CPU tensors through Triton's interpreter (conftest sets
TRITON_INTERPRET=1), which is slow: shapes and step counts here are tiny.

Sampling: under the interpreter, samples must equal the reference's exactly. On a GPU, exp and
divide are approximate and the cumsum runs in parallel, so a sample may differ from the
float64 reference (on the engine's own sequence, with the same uniforms) where the uniform lies
within rounding of a CDF boundary, and nowhere else: the near-tie rule of
tests/test_cuda_backend.py.
"""
import functools

import pytest
import torch

import fastgen
from conftest import PARITY_SPECS, make_case
from fastgen import reference

pytest.importorskip("triton")
from fastgen.backends.triton import engine as triton_backend  # noqa: E402

pytestmark = pytest.mark.skipif(triton_backend.unavailable_reason() is not None,
                                reason=f"triton unavailable: {triton_backend.unavailable_reason()}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VARIANTS = ("triton", "triton_persistent")
SPECS = sorted(PARITY_SPECS)
STEPS = 8


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
def _reference_samples(spec_name, batch, temperature, steps=STEPS):
    _, frames, _, uniforms = _case(spec_name, batch, steps)
    return _reference_engine(spec_name, batch).generate(frames, uniforms, temperature).cpu()


@functools.lru_cache(maxsize=None)
def _engine(variant, spec_name, batch, dtype=torch.float32):
    weights = _case(spec_name, batch)[0]
    return fastgen.create(variant, PARITY_SPECS[spec_name], weights, device=DEVICE, dtype=dtype)


def _rel_err(a, ref):
    return ((a.double().cpu() - ref.double().cpu()).abs().max() / ref.double().abs().max()).item()


# -- sampling parity ---------------------------------------------------------------------------
# How far (relative to the logit scale) a GPU's logits may be from float64 where a sample may
# flip: fp32 logits are off by ~1e-6. The interpreter is exact: no slack there.
SAMPLE_MARGIN = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-2}


def near_tie(logits, u, temperature, idx, margin):
    """Whether a sample of float64 ``logits`` (Q,) is within ``margin`` (relative to the logit
    scale) of flipping between ``idx`` and a neighbour (as in tests/test_cuda_backend.py)."""
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


def assert_samples_match(out, spec, weights, frames, uniforms, temperature, ref_samples, dtype=torch.float32):
    """``out`` (B, n) are the reference's samples: exactly under the interpreter; on a GPU, the
    float64 reference's samples of ``out``'s own sequence except at near-ties."""
    out = out.cpu()
    assert out.dtype == torch.long and out.shape == uniforms.shape
    if DEVICE == "cpu":
        assert torch.equal(out, ref_samples), f"samples:\n{out}\nvs reference\n{ref_samples}"
        return
    w64 = {k: v.detach().cpu().double() for k, v in weights.items()}
    logits = reference.forward(spec, w64, frames.cpu().double(), reference.shift_conditioning(out, spec.start_class))
    want = reference.sample(logits, uniforms.cpu().double(), temperature)
    for b, j in (out != want).nonzero().tolist():
        assert near_tie(logits[b, j], uniforms[b, j].item(), temperature, int(want[b, j]), SAMPLE_MARGIN[dtype]), (
            f"sample ({b}, {j}) is {int(out[b, j])}, the reference gives {int(want[b, j])} (not a near-tie)")


def test_available_and_registered():
    assert triton_backend.unavailable_reason() is None
    assert {"triton", "triton_persistent"} <= set(fastgen.available(DEVICE))
    assert hasattr(torch.ops.fastgen, "triton_step")
    assert hasattr(torch.ops.fastgen, "triton_persistent")


# -- fp32: teacher-forced logits within 1e-4 of float64 ----------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spec_name", SPECS)
def test_teacher_forced_fp32(variant, spec_name):
    _, frames, classes, _ = _case(spec_name, 2)
    ref = _reference_logits(spec_name, 2)
    out = _engine(variant, spec_name, 2).teacher_forced(frames, classes)
    assert out.shape == ref.shape and out.dtype == torch.float32
    err = _rel_err(out, ref)
    assert err <= 1e-4, f"{variant}/{spec_name}: relative error {err:.3g}"


def test_step_and_persistent_agree():
    _, frames, classes, _ = _case("odd", 2)
    a = _engine("triton", "odd", 2).teacher_forced(frames, classes)
    b = _engine("triton_persistent", "odd", 2).teacher_forced(frames, classes)
    assert _rel_err(a, b) <= 1e-6


# -- sampling: identical sequences for the same uniforms ---------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("batch,temperature", [(1, 1.0), (2, 0.7)])
def test_generate_matches_reference(variant, spec_name, batch, temperature):
    weights, frames, _, uniforms = _case(spec_name, batch)
    ref = _reference_samples(spec_name, batch, temperature)
    out = _engine(variant, spec_name, batch).generate(frames, uniforms, temperature).cpu()
    assert out.shape == (batch, STEPS)
    assert_samples_match(out, PARITY_SPECS[spec_name], weights, frames, uniforms, temperature, ref)
    assert out.unique().numel() > 1, "sampled sequence is constant: the test would prove little"


@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_greedy(variant):
    spec_name = "odd"
    weights, frames, _, uniforms = _case(spec_name, 2)
    ref = _reference_samples(spec_name, 2, 0.0)
    out = _engine(variant, spec_name, 2).generate(frames, uniforms, 0.0).cpu()
    assert_samples_match(out, PARITY_SPECS[spec_name], weights, frames, uniforms, 0.0, ref)


def test_near_tie_flags_only_uniforms_at_a_cdf_boundary():
    logits = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    c = torch.cumsum(torch.exp(logits - 2.0), 0) / torch.exp(logits - 2.0).sum()
    edge = c[0].item()                                  # the boundary between classes 0 and 1
    assert near_tie(logits, edge + 1e-7, 1.0, 1, 1e-5)
    assert not near_tie(logits, edge + 1e-2, 1.0, 1, 1e-5)
    assert not near_tie(logits, edge + 1e-7, 1.0, 1, 0.0)  # no margin: only the boundary itself
    assert near_tie(torch.tensor([1.0, 1.0 + 1e-6, -3.0], dtype=torch.float64), 0.5, 0.0, 1, 1e-5)
    assert not near_tie(logits, 0.5, 0.0, 2, 1e-5)


def test_sampling_parity_demands_exact_samples_under_the_interpreter():
    if DEVICE != "cpu":
        pytest.skip("the interpreter's exact rule")
    weights, frames, _, uniforms = _case("odd", 1)
    ref = _reference_samples("odd", 1, 1.0)
    flipped = ref.clone()
    flipped[0, -1] = (flipped[0, -1] + 1) % PARITY_SPECS["odd"].num_classes
    with pytest.raises(AssertionError):
        assert_samples_match(flipped, PARITY_SPECS["odd"], weights, frames, uniforms, 1.0, ref)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_steps(variant):
    spec = PARITY_SPECS["k1_stereo"]
    eng = _engine(variant, "k1_stereo", 1)
    frames = torch.zeros(1, spec.in_channels, 0, spec.num_features)
    assert eng.generate(frames, torch.zeros(1, 0)).shape == (1, 0)
    assert eng.teacher_forced(frames, torch.zeros(1, 0, dtype=torch.long)).shape == (1, 0, spec.num_classes)


# -- half precision: 2e-2 of the fp32 reference ----------------------------------------------
# fp16 runs under the interpreter as it is; bf16 needs the kernels' interpreter-only upcast
# before tl.dot (the interpreter's dot multiplies the raw uint16 storage of bf16), everything
# else (bf16 ring buffers, weights, casts) is exercised as on a GPU.
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spec_name", SPECS)
def test_teacher_forced_half(variant, spec_name, dtype):
    _, frames, classes, _ = _case(spec_name, 2)
    ref = _reference_logits(spec_name, 2, torch.float32)
    out = _engine(variant, spec_name, 2, dtype).teacher_forced(frames, classes)
    assert out.dtype == torch.float32
    err = _rel_err(out, ref)
    assert err <= 2e-2, f"{variant}/{spec_name}/{dtype}: relative error {err:.3g}"


# -- several sequences per program (the large-batch tiling), some of them masked off --------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seqs,rows", [(2, 32), (16, 64)])  # odd: PP = 16, so 2 and 4 sequences per tile
def test_sequences_per_program(variant, seqs, rows):
    spec_name, batch, steps = "odd", 3, 5
    weights, frames, classes, uniforms = _case(spec_name, batch, steps)
    eng = fastgen.create(variant, PARITY_SPECS[spec_name], weights, device=DEVICE,
                         seqs_per_program=seqs, tile_rows=rows)
    assert eng._config(batch)[:2] == [seqs, rows]
    err = _rel_err(eng.teacher_forced(frames, classes), _reference_logits(spec_name, batch, steps=steps))
    assert err <= 1e-4, f"relative error {err:.3g}"
    out = eng.generate(frames, uniforms, 0.7).cpu()
    assert_samples_match(out, PARITY_SPECS[spec_name], weights, frames, uniforms, 0.7,
                         _reference_samples(spec_name, batch, 0.7, steps=steps))


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
    err = _rel_err(eng.teacher_forced(frames, classes), ref.teacher_forced(frames, classes))
    assert err <= 1e-4, f"relative error {err:.3g}"
    assert_samples_match(eng.generate(frames, uniforms, 0.8), spec, weights, frames, uniforms, 0.8,
                         ref.generate(frames, uniforms, 0.8).cpu())


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
    kernel = "_step_kernel" if variant == "triton" else "_persistent_kernel"
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


def test_opcheck_persistent():
    from fastgen.backends.triton import ops as tk
    spec, eng, frames, config = _op_args(batch=1, steps=2)
    cond = torch.full((1,), spec.start_class, dtype=torch.long, device=DEVICE)
    u = torch.tensor([[0.3, 0.8]], device=DEVICE)
    ring = tk.new_ring(1, eng.dims, DEVICE, eng.dtype)
    torch.library.opcheck(torch.ops.fastgen.triton_persistent.default,
                          (frames, cond, u, 1.0, ring, eng.packed, eng.dims, config, False, 0),
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
