"""The ``cuda`` backend: host logic on the CPU, the kernel in a CPU emulator, parity on a GPU.

- Host logic (always): weight packing round trip and the mma fragment layout, the launch
  plan and its error messages, the C++ parameter validation, ``unavailable_reason``.
- Kernel on the CPU (needs g++): ``csrc/cuda/emu`` compiles the real kernel source with an
  emulation layer (one OS thread per CUDA thread, mma.sync evaluated from the PTX fragment
  layouts, flags as C++ atomics) into a shared library; ``CudaEngine`` drives it through its
  ``_runtime`` hook, so packing, planning, the parameter hand-over, indexing, the barriers and
  the cross-block protocol are all exercised. Same parity bars as on a GPU. The same emulator
  under ThreadSanitizer and AddressSanitizer: tests/fastgen/test_cuda_sanitizers.py.
- GPU (skipped without one): the same parity checks against the float64 reference for
  tests/conftest.py's PARITY_SPECS, batch 1, 3 and 64, float32 / bfloat16 / float16.

Parity: teacher-forced logits, max |cuda - ref| / max |ref| <= 1e-4 (float32) or 2e-2
(bfloat16/float16); generated samples identical to the reference's on the engine's own
sequence (the float64 logits of that sequence sampled with the same uniforms), except where
the reference's threshold lies within a logit error of 1e-5 (float32) or 2e-2 (16-bit) of a
CDF step (a near-tie).
"""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import torch

import fastgen
from fastgen.backends import BackendUnavailable
from fastgen.backends import cuda as cb
from conftest import PARITY_SPECS, make_case
from conformance import *  # noqa: F401,F403 (the conformance suite, on the engines below)
from conformance import TOL, EngineCase, check_generate, check_samples, check_teacher_forced, engine_fixture
from cuda_emu import build_emu, emu_engine

ROOT = Path(__file__).resolve().parents[2]
HAS_GPU = torch.cuda.is_available()
ALL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")

# The conformance suite runs on the kernel emulated on the CPU, in every dtype, and on a GPU
# where there is one.
EMULATED = [EngineCase(f"emulator-{_NAMES[dt]}", lambda s, w, dt=dt: emu_engine(build_emu(), s, w, dt), dt, exact=False)
            for dt in ALL_DTYPES]
# a 2-block position split: the followers read the leader's samples
FSPLIT = EngineCase("emulator-fsplit-bf16", lambda s, w: emu_engine(build_emu(), s, w, torch.bfloat16, f_splits=2,
                                                                   path="fma"), torch.bfloat16, exact=False)
ON_GPU = [pytest.param(EngineCase(f"gpu-{_NAMES[dt]}", lambda s, w, dt=dt: fastgen.create("cuda", s, w, device="cuda",
                                                                                        dtype=dt), dt, exact=False),
                       marks=[gpu, pytest.mark.gpu]) for dt in ALL_DTYPES]
engine_case = engine_fixture(EMULATED + [FSPLIT] + ON_GPU)
state_case = engine_fixture([EMULATED[0], FSPLIT] + ON_GPU[:1], name="state_case")


# ------------------------------------------------------------------------------------------
# Host logic
# ------------------------------------------------------------------------------------------
def test_unavailable_reason_names_what_is_missing():
    reason = cb.unavailable_reason()
    try:
        importlib.import_module("fastgen._cuda")
        built = True
    except ImportError:
        built = False
    if built and HAS_GPU:
        assert reason is None
        return
    assert isinstance(reason, str) and reason
    if not built:
        assert "fastgen._cuda" in reason
        assert "pip install --no-build-isolation -e ." in reason
        assert "FASTGEN_BUILD_CUDA=1" in reason
    else:
        assert "torch.cuda.is_available()" in reason
    with pytest.raises(BackendUnavailable, match="backend 'cuda' is not available"):
        fastgen.create("cuda", PARITY_SPECS["round"], fastgen.random_weights(PARITY_SPECS["round"]), device="cuda")


@pytest.mark.parametrize("arch,cap,ok", [
    ("8.0;9.0a", (8, 0), True), ("8.0;9.0a", (8, 9), True), ("8.0;9.0a", (9, 0), True),
    ("8.0;9.0a", (10, 0), False), ("8.0;9.0a", (7, 5), False), ("8.0;9.0+PTX", (10, 0), True), ("9.0a", (8, 6), False),
])
def test_unavailable_reason_checks_the_gpu_arch(monkeypatch, arch, cap, ok):
    import json
    import types
    ext = types.SimpleNamespace(build_info=lambda: json.dumps({"arch": arch}))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: cap)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some GPU")
    reason = cb.arch_mismatch(ext)
    if ok:
        assert reason is None
    else:
        assert f"{cap[0]}.{cap[1]}" in reason and ("8.0+" in reason or "TORCH_CUDA_ARCH_LIST" in reason)


def test_engine_refuses_cpu_device_without_runtime():
    spec = PARITY_SPECS["round"]
    with pytest.raises(ValueError, match="runs on CUDA devices"):
        cb.CudaEngine(spec, fastgen.random_weights(spec), device="cpu")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("name", sorted(PARITY_SPECS))
def test_pack_round_trip(name, dtype):
    spec = PARITY_SPECS[name]
    w = fastgen.random_weights(spec, seed=3)
    paths = ["fma"] + (["mma"] if cb.select_path(spec, dtype, "auto") == "mma" else [])
    for path in paths:
        packed = cb.pack_weights(spec, w, dtype, path)
        assert packed.core.dtype == torch.uint8 and packed.core.numel() == cb.core_layout(spec, dtype, path).total
        assert packed.down.dtype == dtype and packed.cond_table.dtype == torch.float32
        back = cb.unpack_weights(spec, packed)
        for k, v in back.items():
            if k == "cond_table":
                continue
            want = w[k].to(torch.float32 if k in ("in_w", "in_b") or k.endswith("_b") else dtype).double()
            assert torch.equal(v, want), f"{k} ({path}) does not round-trip"
        w64 = {k: v.double() for k, v in w.items()}
        table = (torch.einsum("ce,loe->lco", w64["cond_emb"], w64["cond_w"]) + w64["cond_b"][:, None]
                 + w64["dil_b"][:, None])
        assert torch.allclose(back["cond_table"], table, rtol=1e-6, atol=1e-7)


def test_mma_fragment_layout_follows_the_ptx_formula():
    # B (16x8, "col") fragment of mma.m16n8k16: b_i with i = 2*reg + half sits at
    # row(k) = tig*2 + (i&1) + 8*(i>=2), col(n) = groupID; lane = groupID*4 + tig.
    N, Kd = 24, 48
    w = torch.arange(N * Kd, dtype=torch.float64).reshape(N, Kd)
    flat = cb.pack_matrix(w, "mma")
    KT = Kd // 16
    for nt in range(N // 8):
        for kt in range(KT):
            for lane in range(32):
                g, tig = lane >> 2, lane & 3
                for i in range(4):
                    k = kt * 16 + tig * 2 + (i & 1) + (8 if i >= 2 else 0)
                    assert flat[((nt * KT + kt) * 32 + lane) * 4 + i] == w[nt * 8 + g, k]
    assert torch.equal(cb.unpack_matrix(flat, N, Kd, "mma"), w)
    with pytest.raises(ValueError, match="N % 8 == 0 and K % 16 == 0"):
        cb.pack_matrix(torch.zeros(12, 16), "mma")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_core_layout_segments_are_aligned_and_disjoint(dtype):
    for spec in PARITY_SPECS.values():
        lay = cb.core_layout(spec, dtype, "fma")
        es = torch.empty((), dtype=dtype).element_size()
        Cin, Cr, Ch, Cs, Co, Q = (spec.in_channels, spec.residual_channels, spec.hidden_channels,
                                  spec.skip_channels, spec.out_channels, spec.num_classes)
        segs = [(lay.offsets["in_w"], 4 * Cr * Cin), (lay.offsets["in_b"], 4 * Cr), (lay.offsets["down_b"], 4 * Q),
                (lay.offsets["h1b"], 4 * Co), (lay.offsets["h2b"], 4 * Co), (lay.offsets["h1w"], es * Co * Cs),
                (lay.offsets["h2w"], es * Co * Co)]
        for l in range(spec.num_layers):
            base = lay.offsets["layers"] + l * lay.layer_stride
            segs += [(base + lay.layer_offsets["wdil"], es * 4 * Ch * Cr),
                     (base + lay.layer_offsets["wsr"], es * (Cs + Cr) * Ch),
                     (base + lay.layer_offsets["bsr"], 4 * (Cs + Cr))]
        segs.sort()
        for (o1, n1), (o2, _) in zip(segs, segs[1:]):
            assert o1 % 16 == 0 and o1 + n1 <= o2
        assert segs[-1][0] + segs[-1][1] <= lay.total and lay.total % 16 == 0


def test_select_path():
    spec = PARITY_SPECS["round"]
    assert cb.select_path(spec, torch.float32) == "fma"
    assert cb.select_path(spec, torch.bfloat16) == "mma"
    assert cb.select_path(PARITY_SPECS["odd"], torch.float16) == "fma"
    with pytest.raises(ValueError, match="needs dtype bfloat16 or float16"):
        cb.select_path(spec, torch.float32, "mma")
    with pytest.raises(ValueError, match=r"multiples of 16; got residual_channels=12, hidden_channels=20"):
        cb.select_path(PARITY_SPECS["odd"], torch.bfloat16, "mma")
    with pytest.raises(ValueError, match="path must be"):
        cb.select_path(spec, torch.float32, "wgmma")
    with pytest.raises(ValueError, match="supports float32, bfloat16 and float16"):
        cb.select_path(spec, torch.float64)


def test_plan_small_batch_splits_positions_across_blocks():
    spec = PARITY_SPECS["round"]                                      # F=8, K=4
    p = cb.plan_launch(spec, 1, 227 * 1024, 132, dtype=torch.bfloat16)
    assert p.path == "mma" and p.seqs_per_block == 1
    assert p.f_splits == 2 and p.f_per_block == 4                       # 16 rows per block for the mma tiles
    p = cb.plan_launch(spec, 1, 227 * 1024, 132, dtype=torch.float32)
    assert p.path == "fma" and p.f_splits == 4 and p.f_per_block == 2  # 8 rows per block
    assert p.grid == (4, 1) and p.launches == 1
    # the whole blob fits: weights and this block's down_w slice resident
    assert p.core_resident == p.core_bytes and p.down_resident
    odd = PARITY_SPECS["odd"]                                          # F=5, K=3: uneven split
    p = cb.plan_launch(odd, 1, 227 * 1024, 132)
    assert p.f_splits == 2 and p.f_per_block == 3


def test_plan_large_batch_puts_sequences_in_blocks():
    spec = PARITY_SPECS["round"]
    p = cb.plan_launch(spec, 64, 227 * 1024, 132, dtype=torch.bfloat16)
    assert p.f_splits == 2 and p.seqs_per_block == 1 and p.groups == 64 and p.blocks <= 132
    p = cb.plan_launch(spec, 1000, 227 * 1024, 132, dtype=torch.bfloat16)
    assert p.f_splits == 1 and p.seqs_per_block == 8 and p.groups == 125 and p.launches == 1
    assert p.threads == 256                                            # 8*4*8 = 256 rows
    # more sequences than fit in shared memory: several launches
    p = cb.plan_launch(spec, 1000, 40_000, 8, dtype=torch.bfloat16)
    assert p.launches > 1 and p.batch_per_launch * p.launches >= 1000 and p.smem_bytes <= 40_000


def test_plan_base_bf16_fits_a_whole_sequence_per_block_on_h100():
    # base: K x F = 160 rows. With the head output in the skip region, a block's activations
    # for a whole sequence fit an H100's 227 KiB, so batch 256 runs as 2 waves of 132, not 4 of 66.
    from edanet import EDANet, EDANetConfig, export_to_fastgen
    spec, _ = export_to_fastgen(EDANet(EDANetConfig.from_preset("base")))
    p = cb.plan_launch(spec, 256, 227 * 1024, 132, dtype=torch.bfloat16)
    assert (p.f_splits, p.seqs_per_block, p.groups, p.launches) == (1, 1, 132, 2)
    assert p.activation_bytes <= 227 * 1024


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_plan_invariants(dtype):
    for spec in PARITY_SPECS.values():
        for batch in (1, 2, 3, 7, 64, 200):
            for smem, sms in ((227 * 1024, 132), (163 * 1024, 108), (48 * 1024, 4), (20_000, 3)):
                p = cb.plan_launch(spec, batch, smem, sms, dtype=dtype)
                F = spec.num_features
                assert p.f_splits * p.f_per_block >= F > (p.f_splits - 1) * p.f_per_block
                assert p.blocks <= sms and p.smem_bytes <= smem
                assert p.groups * p.seqs_per_block >= p.batch_per_launch > (p.groups - 1) * p.seqs_per_block
                assert p.batch_per_launch * p.launches >= batch > p.batch_per_launch * (p.launches - 1)
                assert p.core_resident % 16 == 0 and 0 <= p.core_resident <= p.core_bytes
                assert p.smem_bytes == cb.smem_layout(spec, dtype, p.path, p.seqs_per_block, p.f_per_block,
                                                      p.threads, p.core_resident, p.down_resident)["total"]


def test_plan_streams_weights_that_do_not_fit():
    spec = PARITY_SPECS["round"]
    full = cb.plan_launch(spec, 1, 227 * 1024, 132, dtype=torch.float32, f_splits=4)
    p = cb.plan_launch(spec, 1, full.activation_bytes + 4096, 132, dtype=torch.float32, f_splits=4)
    assert 0 < p.core_resident < p.core_bytes and not p.down_resident
    p = cb.plan_launch(spec, 1, full.activation_bytes, 132, dtype=torch.float32, f_splits=4)
    assert p.core_resident == 0 and not p.down_resident
    # without a fixed split, a small budget splits positions further (down_w slice per block)
    p = cb.plan_launch(spec, 1, full.activation_bytes, 132, dtype=torch.float32)
    assert p.f_splits == 8 and p.smem_bytes <= full.activation_bytes


def test_plan_errors_are_clear():
    spec = PARITY_SPECS["round"]
    with pytest.raises(ValueError, match=r"need \d+ bytes of shared memory \(.*\), more than the 1000 bytes per block"):
        cb.plan_launch(spec, 1, 1000, 132)
    with pytest.raises(ValueError, match="C_r=16, C_h=16, C_s=32, C_o=32, Q=64"):
        cb.plan_launch(spec, 1, 1000, 132)
    with pytest.raises(ValueError, match="threads must be a multiple of 32"):
        cb.plan_launch(spec, 1, 227 * 1024, 132, threads=100)
    with pytest.raises(ValueError, match="f_splits must be in"):
        cb.plan_launch(spec, 1, 227 * 1024, 132, f_splits=9)
    with pytest.raises(ValueError, match="exceed the 2 co-resident blocks"):
        cb.plan_launch(spec, 1, 227 * 1024, 2, f_splits=4)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        cb.plan_launch(spec, 0, 227 * 1024, 132)
    deep = fastgen.NetworkSpec(**{**spec.to_dict(), "dilations": (1,) * 129})
    with pytest.raises(ValueError, match="at most 128 layers"):
        cb.plan_launch(deep, 1, 227 * 1024, 132)
    # too few conditioning classes: the spec itself refuses, before any backend sees it
    with pytest.raises(ValueError, match=r"cond_classes \(10\) must be >= num_classes \(64\)"):
        fastgen.NetworkSpec(**{**spec.to_dict(), "cond_classes": 10, "start_class": 0})


def test_smem_layout_matches_the_kernel(emu):
    for spec in PARITY_SPECS.values():
        for dtype in ALL_DTYPES:
            for path in ("fma", "mma"):
                for S, Fb, thr, core, down in ((1, 1, 32, 0, False), (3, 2, 128, 4096, True), (8, 5, 256, 160, False)):
                    py = cb.smem_layout(spec, dtype, path, S, Fb, thr, core, down)["total"]
                    es = torch.empty((), dtype=dtype).element_size()
                    cpp = emu.smem_bytes(spec.frames_per_step, Fb, S, spec.residual_channels, spec.hidden_channels,
                                         spec.skip_channels, spec.out_channels, spec.num_classes, es,
                                         int(path == "mma"), thr, core, int(down))
                    assert py == cpp


def _raw_args(spec, dtype=torch.float32, batch=1, steps=2):
    """Arguments of one valid teacher-forced launch, for the validation tests."""
    w, frames, classes, _ = make_case(spec, batch, steps)
    packed = cb.pack_weights(spec, w, dtype)
    plan = cb.plan_launch(spec, batch, 100_000, 4, dtype=dtype, threads=32)
    ints = cb.launch_ints(spec, plan, packed.layout, batch, steps, cb.MODE_TEACHER)
    e = torch.empty(0)
    tensors = [packed.core, packed.down, packed.cond_table, frames.to(dtype), e, classes, e.long(),
               torch.empty(batch, steps, spec.num_classes), torch.empty(batch * plan.ring_elems_per_seq, dtype=dtype),
               torch.empty(plan.partial_floats), torch.zeros(plan.flag_count, dtype=torch.int32)]
    return ints, list(spec.dilations), tensors


def test_prepare_rejects_bad_launches(emu):
    spec = PARITY_SPECS["round"]
    ints, dils, ts = _raw_args(spec)
    emu.run(ints, dils, 0.0, *ts)                                       # valid

    def expect(match, ints=ints, dils=dils, ts=ts):
        with pytest.raises(ValueError, match=match):
            emu.run(ints, dils, 0.0, *ts)

    expect("parameter 'Cin' is missing", ints={k: v for k, v in ints.items() if k != "Cin"})
    expect("got 4 dilations for 5 layers", dils=dils[:4])
    expect(r"plan's shared memory size \(\d+ bytes\) differs", ints={**ints, "smem_bytes": ints["smem_bytes"] + 16})
    expect("does not tile F=8 exactly", ints={**ints, "nf": 3})
    expect("do not tile a batch of 1 exactly", ints={**ints, "G": 2})
    expect("threads per block must be a multiple of 32", ints={**ints, "threads": 48})
    expect("multiples of 16, got 16, 16, 32, 32|needs bfloat16 or float16", ints={**ints, "mma": 1})
    expect("buffer frames must be float32, got bfloat16", ts=ts[:3] + [ts[3].bfloat16()] + ts[4:])
    expect(r"buffer ring holds \d+ elements, the launch needs \d+", ts=ts[:8] + [ts[8][:-1]] + ts[9:])
    expect("buffer classes must be int64", ts=ts[:5] + [ts[5].int()] + ts[6:])
    expect("down weights must be float32, bfloat16 or float16 .*got int32", ts=ts[:1] + [ts[1].int()] + ts[2:])
    # the compute dtype is down's: bfloat16 weights with float32 frames are a mismatch
    ib, db, tb = _raw_args(spec, torch.bfloat16)
    expect("buffer frames must be bfloat16, got float32", ints=ib, dils=db, ts=tb[:3] + [tb[3].float()] + tb[4:])
    expect("segment head1_w .* lies outside", ints={**ints, "off_h1w": ints["core_bytes"]})
    odd = PARITY_SPECS["odd"]
    i2, d2, t2 = _raw_args(odd, torch.bfloat16)
    expect(r"multiples of 16, got 12, 20, 24, 7 \(use path='fma'\)", ints={**i2, "mma": 1}, dils=d2, ts=t2)
    expect(r"spin timeout \(ms\) must lie in \[1, 86400000\], got 0", ints={**ints, "spin_timeout_ms": 0})


def test_spin_timeout_option(monkeypatch):
    monkeypatch.delenv(cb.SPIN_TIMEOUT_ENV, raising=False)
    assert cb.spin_timeout_ms() == 20_000 and cb.spin_timeout_ms(0.25) == 250
    monkeypatch.setenv(cb.SPIN_TIMEOUT_ENV, "600")
    assert cb.spin_timeout_ms() == 600_000 and cb.spin_timeout_ms(2) == 2000       # the argument wins
    for bad in (0, -1, float("nan"), float("inf"), 86401, True, "soon"):
        with pytest.raises(ValueError, match="spin_timeout_s must be a number of seconds"):
            cb.spin_timeout_ms(bad)
    monkeypatch.setenv(cb.SPIN_TIMEOUT_ENV, "0")
    with pytest.raises(ValueError, match=cb.SPIN_TIMEOUT_ENV):
        cb.spin_timeout_ms()


def test_a_wait_that_never_ends_traps_after_the_spin_timeout(tmp_path):
    # a mutant kernel whose leader waits for one partial-logits flag more than is ever raised:
    # the launch must stop with the wait named after the engine's spin timeout, not hang (the
    # emulator's own watchdog, 120 s, would say "barrier")
    src = tmp_path / "cuda"
    shutil.copytree(ROOT / "csrc" / "cuda", src)
    kernel = src / "kernel.cuh"
    old = '(unsigned)(j + 1), "partial logits"'
    text = kernel.read_text()
    assert text.count(old) == 1, "the kernel changed: update this test's mutation"
    kernel.write_text(text.replace(old, '(unsigned)(j + 2), "partial logits"'))
    mutant = build_emu(src)
    spec = PARITY_SPECS["round"]
    w, frames, classes, uniforms = make_case(spec, 1, 2, seed=1)
    eng = emu_engine(mutant, spec, w, torch.float32, f_splits=2, threads=32, spin_timeout_s=0.2)
    # the leader's wait times out, or, a moment earlier, a follower's wait for the sample the
    # stuck leader never writes: both are this wait's fault, which thread reports it is timing
    with pytest.raises(RuntimeError, match=r"timed out waiting for (partial logits \(flag 1, want >= 2\)|"
                                           r"the leader's sample \(flag 0, want >= 1\))"):
        eng.generate(frames, uniforms, 1.0)


# ------------------------------------------------------------------------------------------
# The kernel, emulated on the CPU
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,path", [(torch.float32, "fma"), (torch.bfloat16, "mma"), (torch.float16, "fma")])
def test_emulated_batch_64(emu, dtype, path):
    spec = PARITY_SPECS["round"]
    w, frames, classes, uniforms = make_case(spec, 64, 2 if path == "mma" else 3, seed=7)
    eng = emu_engine(emu, spec, w, dtype, path=path, smem=400_000, sms=4, threads=128)
    p = eng.plan(64)
    assert p.seqs_per_block == 16 and p.groups == 4
    check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
    if path == "fma":  # (the emulated tensor cores are slow; their sampling is covered above)
        check_generate(eng, spec, w, frames, uniforms, 0.7)


@pytest.mark.parametrize("options", [
    dict(f_splits=5, threads=32),                  # odd: F=5 -> one position per block, 5-way hand-off
    dict(f_splits=2, threads=256),                 # odd: uneven split (3 + 2 positions)
    dict(seqs_per_block=2, threads=96),            # batch 3 -> groups of 2 and 1
    dict(sms=2, seqs_per_block=1),                 # batch 3 on 2 blocks: two launches
    dict(smem="stream"),                           # weights streamed from global memory
    dict(smem="partial", f_splits=2),              # part of the blob resident, 2-way hand-off
], ids=["f5", "f2-uneven", "seqs2", "launches", "stream", "partial"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_emulated_plans(emu, options, dtype):
    spec = PARITY_SPECS["odd"]
    options = dict(options)
    w, frames, classes, uniforms = make_case(spec, 3, 4, seed=11)
    kw = {"sms": options.pop("sms", 8)}
    smem = options.pop("smem", None)
    if smem is not None:
        probe = cb.plan_launch(spec, 3, 200_000, kw["sms"], dtype=dtype, threads=options.get("threads", 64),
                               f_splits=options.get("f_splits"))
        kw["smem"] = probe.activation_bytes + (0 if smem == "stream" else probe.core_bytes // 2)
    eng = emu_engine(emu, spec, w, dtype, **kw, **options)
    p = eng.plan(3)
    if smem == "stream":
        assert p.core_resident == 0 and not p.down_resident
    if smem == "partial":
        assert 0 < p.core_resident < p.core_bytes
    if kw["sms"] == 2:
        assert p.launches == 2
    check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
    check_generate(eng, spec, w, frames, uniforms, 1.3)


def test_emulated_mma_with_f_splits(emu):
    spec = PARITY_SPECS["round"]
    w, frames, classes, uniforms = make_case(spec, 2, 4, seed=5)
    for dtype in (torch.bfloat16, torch.float16):
        eng = emu_engine(emu, spec, w, dtype, sms=8, f_splits=4, threads=32)   # 8 rows in a 16-row tile
        assert eng.plan(2).grid == (4, 2)
        check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
        check_generate(eng, spec, w, frames, uniforms, 1.0)


@pytest.mark.parametrize("seqs", [1, 3, 5])
def test_emulated_mma_warp_blocks(emu, seqs):
    # A warp's tensor-core block is up to 4 m-tiles: 32 rows (2 m-tiles), 96 rows (a block of 4
    # and one of 2) and 160 rows (two full blocks and one of 2).
    spec = PARITY_SPECS["round"]                                  # K x F = 32 rows per sequence
    w, frames, classes, uniforms = make_case(spec, seqs, 2, seed=seqs)
    eng = emu_engine(emu, spec, w, torch.bfloat16, sms=4, f_splits=1, seqs_per_block=seqs, threads=64)
    assert eng.plan(seqs).seqs_per_block * spec.frames_per_step * spec.num_features == 32 * seqs
    check_teacher_forced(eng, spec, w, frames, classes, TOL[torch.bfloat16])
    check_generate(eng, spec, w, frames, uniforms, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_emulated_wide_channels_and_split_downsampling(emu, dtype):
    # C_r = C_s = 48 (> 32, not a multiple of 32: a second, half-used pass of the row split);
    # 5 sequences per block with Q = 8 and 256 threads: the downsampling splits the 10 (f, k)
    # pairs 6 ways (chunks of 2, the last one empty) for 2 groups of at most 4 sequences.
    spec = fastgen.NetworkSpec(in_channels=1, num_features=5, frames_per_step=2, residual_channels=48,
                               hidden_channels=16, skip_channels=48, out_channels=16, num_classes=8,
                               cond_classes=9, cond_channels=4, dilations=(1, 2, 4, 1, 2), start_class=8)
    w, frames, classes, uniforms = make_case(spec, 5, 3, seed=4)
    eng = emu_engine(emu, spec, w, dtype, sms=4, f_splits=1, seqs_per_block=5, threads=256)
    assert eng.plan(5).seqs_per_block == 5
    check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
    check_generate(eng, spec, w, frames, uniforms, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_emulated_head_wider_than_skip(emu, dtype):
    # The head's output (C_o wide) reuses the skip sums' region (C_s wide): C_o > C_s here.
    spec = fastgen.NetworkSpec(**{**PARITY_SPECS["round"].to_dict(), "skip_channels": 16, "out_channels": 48})
    w, frames, classes, uniforms = make_case(spec, 2, 3, seed=3)
    eng = emu_engine(emu, spec, w, dtype, sms=4, f_splits=2)
    check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
    check_generate(eng, spec, w, frames, uniforms, 1.0)


def test_emulated_edge_cases(emu):
    spec = PARITY_SPECS["k1_stereo"]
    w, frames, classes, uniforms = make_case(spec, 2, 3)
    eng = emu_engine(emu, spec, w, torch.float32)
    # zero steps / zero batch
    assert eng.generate(frames[:, :, :0], uniforms[:, :0]).shape == (2, 0)
    assert eng.teacher_forced(frames[:0], classes[:0]).shape == (0, 3, spec.num_classes)
    # extreme uniforms
    got = eng.generate(frames, torch.tensor([[0.0, 1.0, 0.999999], [1e-9, 0.5, 0.0]]))
    assert got.min() >= 0 and got.max() < spec.num_classes
    # a single step
    check_generate(eng, spec, w, frames[:, :, :1], uniforms[:, :1], 1.0)


@pytest.mark.parametrize("dtype,path,options", [
    (torch.bfloat16, "mma", dict(f_splits=2, threads=64)),      # the residual n-tiles of the fragments
    (torch.float16, "mma", dict(seqs_per_block=2, threads=96)),  # groups of 2 and 1
    (torch.float32, "fma", dict(f_splits=4, threads=32)),       # a 4-way split the forced steps never meet in
    (torch.float32, "fma", dict(smem="stream")),                # weights (the residual columns) from global
], ids=["mma-bf16", "mma-fp16-seqs2", "fma-f4", "fma-stream"])
def test_emulated_forced_history_is_the_sampled_one(emu, dtype, path, options):
    # The forced kernel takes the residual columns of the skip/residual GEMM alone and skips the
    # last layer's GEMMs: each value it writes to the rings is computed as the whole GEMM computes it.
    spec = PARITY_SPECS["round"]
    options = dict(options)
    w, frames, _, uniforms = make_case(spec, 3, 4, seed=12)
    if options.pop("smem", None) == "stream":
        options["smem"] = cb.plan_launch(spec, 3, 200_000, 4, dtype=dtype, threads=64).activation_bytes
    eng = emu_engine(emu, spec, w, dtype, path=path, **options)
    assert eng.path == path
    if "smem" in options:
        assert eng.plan(3).core_resident == 0
    sampled, forced = eng.start(3), eng.start(3)
    for state in (sampled, forced):
        state.history.zero_()      # (the engine leaves slots no step wrote as they are: never read)
    c = eng.generate(frames, uniforms, 1.0, state=sampled)
    eng.force(frames, c, forced)
    assert forced.history.abs().sum() > 0 and torch.equal(forced.history, sampled.history)
    assert torch.equal(eng.generate(frames, uniforms, 1.0, state=forced), eng.generate(frames, uniforms, 1.0,
                                                                                        state=sampled))


# ------------------------------------------------------------------------------------------
# On a GPU
# ------------------------------------------------------------------------------------------
@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("batch", [64])      # batch 1 and 3: the conformance suite (above)
def test_gpu_parity(parity_spec, batch, dtype):
    spec = parity_spec
    w, frames, classes, uniforms = make_case(spec, batch, 24, seed=batch)
    eng = fastgen.create("cuda", spec, w, device="cuda", dtype=dtype)
    check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
    for temperature in (1.0, 0.0):
        check_generate(eng, spec, w, frames, uniforms, temperature)
    # deterministic
    assert torch.equal(eng.generate(frames, uniforms, 1.0), eng.generate(frames, uniforms, 1.0))


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("options", [dict(f_splits=1), dict(f_splits=4, threads=32), dict(seqs_per_block=2),
                                     dict(path="fma"), dict(threads=256)])
def test_gpu_plans(options):
    spec = PARITY_SPECS["round"]
    w, frames, classes, uniforms = make_case(spec, 3, 16, seed=2)
    for dtype in (torch.float32, torch.bfloat16):
        if dtype == torch.float32 and options.get("path") == "fma":
            continue
        eng = cb.CudaEngine(spec, w, device="cuda", dtype=dtype, **options)
        check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
        check_generate(eng, spec, w, frames, uniforms, 1.0)


@gpu
@pytest.mark.gpu
def test_gpu_streamed_weights_match_resident():
    spec = PARITY_SPECS["round"]
    w, frames, classes, _ = make_case(spec, 2, 12, seed=4)
    eng = cb.CudaEngine(spec, w, device="cuda", dtype=torch.bfloat16, f_splits=2)
    full = eng.plan(2)
    assert full.core_resident == full.core_bytes
    streamed = cb.CudaEngine(spec, w, device="cuda", dtype=torch.bfloat16, f_splits=2,
                             _runtime=eng._runtime, _device_limits=(full.activation_bytes, eng._limits[1]))
    assert streamed.plan(2).core_resident == 0
    assert torch.equal(eng.teacher_forced(frames, classes), streamed.teacher_forced(frames, classes))


@gpu
@pytest.mark.gpu
def test_gpu_long_generation_and_larger_model():
    spec = fastgen.NetworkSpec(in_channels=1, num_features=8, frames_per_step=4, residual_channels=64,
                               hidden_channels=64, skip_channels=128, out_channels=128, num_classes=256,
                               cond_classes=257, cond_channels=32, dilations=tuple(2 ** i for i in range(10)) * 2,
                               start_class=256)
    w, frames, classes, uniforms = make_case(spec, 2, 300, seed=9)
    for dtype in (torch.float32, torch.bfloat16):
        eng = fastgen.create("cuda", spec, w, device="cuda", dtype=dtype)
        check_teacher_forced(eng, spec, w, frames, classes, TOL[dtype])
        check_generate(eng, spec, w, frames, uniforms, 1.0)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_forced_history_is_the_sampled_one(dtype):
    # on the device too: the forced launch's residual-only GEMM computes each ring value as the
    # whole GEMM does (bf16: the tensor-core path), so a long forced prefix leaves the same rings
    spec = fastgen.NetworkSpec(in_channels=1, num_features=8, frames_per_step=4, residual_channels=64,
                               hidden_channels=64, skip_channels=128, out_channels=128, num_classes=256,
                               cond_classes=257, cond_channels=32, dilations=tuple(2 ** i for i in range(10)) * 2,
                               start_class=256)
    w, frames, _, uniforms = make_case(spec, 3, 200, seed=13)
    eng = fastgen.create("cuda", spec, w, device="cuda", dtype=dtype)
    sampled, forced = eng.start(3), eng.start(3)
    for state in (sampled, forced):
        state.history.zero_()
    K, j = spec.frames_per_step, 150
    c = eng.generate(frames[:, :, :j * K], uniforms[:, :j], 1.0, state=sampled)
    eng.force(frames[:, :, :j * K], c, forced)
    assert torch.equal(forced.history, sampled.history)
    rest = eng.generate(frames[:, :, j * K:], uniforms[:, j:], 1.0, state=forced)
    check_samples(spec, w, frames, torch.cat([c, rest], 1).cpu(), uniforms, 1.0, dtype, first=j)
