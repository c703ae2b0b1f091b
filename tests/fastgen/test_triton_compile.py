"""The Triton kernels compile for sm_80 and sm_90, and what they would use there fits.

CI has no GPU and runs the kernels through Triton's interpreter, which never compiles them;
here they are compiled for real (``benchmarks/triton_aot.py``: the launches' own arguments and
specialisations, Triton's bundled ptxas), in a subprocess without ``TRITON_INTERPRET``. That
catches what only the compiler rejects, and checks every default launch configuration of the
parity specs and of the ``small`` and ``base`` presets (batch 1; 256, one sequence per program
on sm_90's 132 SMs and two on sm_80's 108; 4096, 16 per program in bf16/fp16, the
tensor-core downsampling), and the forced-step launches (``Engine.force``: the layers alone)
at the same sizes, and a spec with a wide input (999 channels): shared memory within what a
block may have on the architecture, at least one block per SM, and no register spills beyond a
few bytes in bf16/fp16 (the fast modes) nor for ``small`` or the wide input in fp32. The fp32 parity mode of
``base`` does spill (0.5-0.9 KiB per thread): ``python -m benchmarks.triton_resources``
reports it, and this test does not hold it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")
from conftest import PARITY_SPECS  # noqa: E402
from fastgen.backends.triton import ops as tk  # noqa: E402
from fastgen import random_weights  # noqa: E402
from benchmarks.triton_aot import SHARED_PER_BLOCK, SM_COUNT, compile_launch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

def _small_spec():
    from edanet import EDANet, EDANetConfig, export_to_fastgen
    torch.manual_seed(0)
    return export_to_fastgen(EDANet(EDANetConfig.from_preset("small")))[0]


# "round" with many more input channels than the kernels take in one trip of their input
# convolution's loop (``kernels.CIN_TILE``), and a count no tile divides.
WIDE_INPUT = dataclasses.replace(PARITY_SPECS["round"], in_channels=999)


def _cases():
    """Parity specs by value, presets by name (``benchmarks.triton_resources`` case format)."""
    named = [(n, dict(spec=s.to_dict())) for n, s in PARITY_SPECS.items()]
    named += [(n, dict(preset=n)) for n in ("small", "base")]
    cases = []
    for name, which in named:
        archs = (80, 90) if name in ("small", "base") else (90,)
        for variant in ("triton", "triton_persistent"):
            for dtype in ("fp32", "bf16", "fp16"):
                if name == "base" and dtype == "fp16":
                    continue  # the same code and register use as bf16, and base is the slowest to build
                # the sequences per program follow the batch and the arch's SM count
                for batch in (1, 256, 4096) if name in ("small", "base") else (1, 4096):
                    for arch in archs:
                        # generation, and forced steps (no head: a specialisation of its own)
                        for force in (False, True):
                            cases.append(dict(which, name=name, variant=variant, dtype=dtype, batch=batch, arch=arch,
                                              teacher=False, force=force))
            # teacher-forced launches (logits written, no sampling) specialise differently
            cases.append(dict(which, name=name, variant=variant, dtype="fp32", batch=3, arch=90, teacher=True,
                              force=False))
    # a wide input (the input convolution's loop over channel tiles, its last trip masked)
    for variant in ("triton", "triton_persistent"):
        for dtype in ("fp32", "bf16"):
            for batch in (1, 4096):
                for arch in (80, 90):
                    cases.append(dict(spec=WIDE_INPUT.to_dict(), name="wide_input", variant=variant, dtype=dtype,
                                      batch=batch, arch=arch, teacher=False, force=False))
    return cases


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cases = _cases()
    r = subprocess.run([sys.executable, "-m", "benchmarks.triton_resources", "--cases-json"],
                       input=json.dumps(cases), capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert r.returncode == 0, f"compiling the Triton kernels failed:\n{r.stderr[-6000:]}"
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(cases)
    return rows


def test_the_cases_cover_every_sequences_per_program_path():
    # 1, 2 (batch 256 on sm_80's 108 SMs) and 16 sequences per program (batch 4096, bf16/fp16)
    spec = PARITY_SPECS["round"]
    dims = tk.pack_weights(spec, random_weights(spec), "cpu", torch.bfloat16)[1]
    seen = {tk.launch_config(c["batch"], dims, torch.bfloat16, sms=SM_COUNT[c["arch"]])[0]
            for c in _cases() if c["dtype"] == "bf16"}
    assert seen == {1, 2, 16}


def test_every_launch_compiles_for_sm80_and_sm90(compiled):
    seen = {(r["name"], r["variant"], r["dtype"], r["batch"], r["arch"], r["teacher"], r["force"]) for r in compiled}
    assert len(seen) == len(compiled)
    assert {r["force"] for r in compiled} == {False, True}
    assert {r["arch"] for r in compiled} == {80, 90}
    for r in compiled:
        assert 0 < r["registers"] <= 255, r
        assert r["kernel"] == ("step_kernel" if r["variant"] == "triton" else "persistent_kernel")


def test_shared_memory_fits_a_block(compiled):
    for r in compiled:
        assert r["shared_bytes"] <= SHARED_PER_BLOCK[r["arch"]], (
            f"{r['name']}/{r['variant']}/{r['dtype']}/batch {r['batch']} needs {r['shared_bytes']} B of shared "
            f"memory, more than a block may have on sm_{r['arch']}")
        assert r["blocks_per_sm"] >= 1, r


# ptxas sometimes keeps a handful of bytes on the stack even with registers to spare (the
# "round" spec's persistent kernel: 96 registers, 16 bytes); a few bytes stay in L1.
SPILL_SLACK = 64


def test_no_register_spills_in_half_precision(compiled):
    spilled = [r for r in compiled if r["dtype"] != "fp32" and r["spill_bytes"] > SPILL_SLACK]
    assert not spilled, "register spills:\n" + "\n".join(map(str, spilled))


def test_small_preset_does_not_spill_in_fp32(compiled):
    spilled = [r for r in compiled if r["name"] == "small" and r["spill_bytes"] > SPILL_SLACK]
    assert not spilled, "register spills:\n" + "\n".join(map(str, spilled))


def test_wide_inputs_do_not_spill(compiled):
    # the input channels are taken a tile at a time: their count does not reach the registers
    rows = [r for r in compiled if r["name"] == "wide_input"]
    assert {r["dtype"] for r in rows} == {"fp32", "bf16"} and {r["batch"] for r in rows} == {1, 4096}
    spilled = [r for r in rows if r["spill_bytes"] > SPILL_SLACK]
    assert not spilled, "register spills:\n" + "\n".join(map(str, spilled))


# -- in this process the kernels are interpreted: compile_launch says what to do --------------
def test_compile_launch_refuses_bad_arguments():
    spec = PARITY_SPECS["k1_stereo"]
    with pytest.raises(ValueError, match="variant"):
        compile_launch("cuda", spec, torch.float32, 1)
    with pytest.raises(ValueError, match="arch"):
        compile_launch("triton", spec, torch.float32, 1, arch=70)
    with pytest.raises(ValueError, match="teacher-forced or forced"):
        compile_launch("triton", spec, torch.float32, 1, teacher=True, force=True)


@pytest.mark.skipif(not tk.interpreting(), reason="the kernels here are real JIT functions")
def test_compile_launch_needs_real_kernels():
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        compile_launch("triton", PARITY_SPECS["k1_stereo"], torch.float32, 1)


# -- on a GPU: the prediction is what the driver reports for the kernel a launch built ---------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares with the driver's report of a launched kernel")
@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["triton", "triton_persistent"])
def test_prediction_matches_the_launched_kernel(variant):
    import fastgen
    spec = _small_spec()
    eng = fastgen.create(variant, spec, fastgen.random_weights(spec), device="cuda", dtype=torch.bfloat16)
    steps = 16
    frames = torch.randn(1, spec.in_channels, steps * spec.frames_per_step, spec.num_features)
    kernel = tk.step_kernel if variant == "triton" else tk.persistent_kernel
    for caches in kernel.device_caches.values():
        caches[0].clear()                       # so only this launch's kernels are compared
    eng.generate(frames, torch.rand(1, steps))
    launched = [k for caches in kernel.device_caches.values() for k in caches[0].values()]
    assert launched, "the launch built no kernel"
    for k in launched:
        k._init_handles()                       # loads the module: n_regs comes from the driver
    major, minor = torch.cuda.get_device_capability()
    arch = 10 * major + minor
    if arch not in SHARED_PER_BLOCK:
        pytest.skip(f"compile_launch knows no limits for sm_{arch}")
    predicted = compile_launch(variant, spec, torch.bfloat16, 1, arch, steps=steps)
    assert predicted.registers in {k.n_regs for k in launched}, (predicted, [k.n_regs for k in launched])
    assert predicted.shared_bytes in {k.metadata.shared for k in launched}
