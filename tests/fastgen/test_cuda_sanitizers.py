"""The emulated CUDA kernel under the compiler's sanitizers: a CPU stand-in for compute-sanitizer.

``csrc/cuda/emu`` runs the real kernel with one OS thread per CUDA thread, ``__syncthreads``
as a block barrier, warp collectives through warp barriers and the cross-block flags as C++
acquire/release atomics. Built with ``-fsanitize=thread``, ThreadSanitizer then reports any
two accesses to shared or global memory by different CUDA threads that no barrier, warp
collective or flag orders (racecheck's hazards, and the hand-off between blocks); built with
``-fsanitize=address,undefined``, any access past the end of a buffer (memcheck; shared memory
is one allocation per block, so an overrun from one of its regions into the next is not seen).

The sanitized library is loaded into a child Python through LD_PRELOAD; torch's own threads
are kept out (one thread), and only reports whose stacks name the emulated kernel count.
The runs cover generation, teacher forcing and forced steps. Two mutant kernels (a barrier
removed; a store one element too far) show that each check can fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CUDA_SRC = ROOT / "csrc" / "cuda"

SCRIPT = r"""
import json, sys, torch
sys.path[:0] = [sys.argv[2], sys.argv[3]]
import conftest, conformance, cuda_emu
import fastgen
from fastgen.backends import cuda as cb
torch.set_num_threads(1)   # torch's OpenMP regions are invisible to TSan: keep them out
rt = cuda_emu.EmuRuntime(sys.argv[1], timeout_s=600)
dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
for case in json.loads(sys.argv[4]):
    spec = conftest.PARITY_SPECS[case["spec"]] if isinstance(case["spec"], str) else fastgen.NetworkSpec(**case["spec"])
    dtype, batch, opts = dt[case["dtype"]], case["batch"], dict(case["opts"])
    smem, sms = 200_000, 8
    if opts.pop("weights", None) == "partial":   # half of the weight blob resident, the rest from global
        probe = cb.plan_launch(spec, batch, smem, sms, dtype=dtype, threads=opts["threads"],
                               f_splits=opts.get("f_splits"))
        smem = probe.activation_bytes + probe.core_bytes // 2
    w, frames, classes, uniforms = conftest.make_case(spec, batch, 2, seed=1)
    eng = cb.CudaEngine(spec, w, device="cpu", dtype=dtype, _runtime=rt, _device_limits=(smem, sms), **opts)
    if case.get("partial"):
        p = eng.plan(batch)
        assert 0 < p.core_resident < p.core_bytes, p
    conformance.check_teacher_forced(eng, spec, w, frames, classes, conformance.TOL[dtype])
    conformance.check_generate(eng, spec, w, frames, uniforms, 1.0)
    # a forced step (the layers alone, the blocks never meet), then one generated on from it
    K, state = spec.frames_per_step, eng.start(batch)
    eng.force(frames[:, :, :K], classes[:, :1], state)
    rest = eng.generate(frames[:, :, K:], uniforms[:, 1:], 1.0, state=state).cpu()
    conformance.check_samples(spec, w, frames, torch.cat([classes[:, :1], rest], 1), uniforms, 1.0, dtype, first=1)
print("SANITIZED-RUN-OK")
"""

WIDE = dict(in_channels=1, num_features=5, frames_per_step=2, residual_channels=48, hidden_channels=16,
            skip_channels=48, out_channels=16, num_classes=8, cond_classes=9, cond_channels=4,
            dilations=[1, 2, 4, 1, 2], start_class=8)
CASES = [
    # F split 4 ways, one warp per block: the flag hand-off of partial logits and samples
    dict(spec="round", dtype="float32", batch=2, opts=dict(f_splits=4, threads=32)),
    # tensor cores (mma.sync fragments through the warp exchange)
    dict(spec="round", dtype="bfloat16", batch=2, opts=dict(f_splits=2, threads=64)),
    # odd sizes, 2 sequences per block and a 2-way split of the downsampling
    dict(spec="odd", dtype="float16", batch=3, opts=dict(f_splits=2, seqs_per_block=2, threads=64)),
    # half the weights read from global memory (the resident-prefix boundary)
    dict(spec="odd", dtype="float32", batch=3, opts=dict(f_splits=2, threads=64, weights="partial"), partial=True),
    # 5 sequences in one block of 256 threads: downsampling split 6 ways in sequence groups
    dict(spec=WIDE, dtype="bfloat16", batch=5, opts=dict(f_splits=1, seqs_per_block=5, threads=256)),
]


def _runtimes(cxx, sanitizer):
    libs = ["libtsan.so"] if sanitizer == "thread" else ["libasan.so", "libubsan.so"]
    paths = []
    for lib in libs:
        path = subprocess.run([cxx, f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            pytest.skip(f"{lib} not found")
        paths.append(path)
    return paths


def _compiler():
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None or "g++" not in Path(cxx).name:
        pytest.skip("needs g++ with its sanitizer runtimes")
    return cxx


def sanitized_run(tmp_path, sanitizer, cases, src=CUDA_SRC):
    """Builds src/emu/emu_capi.cpp with the sanitizer, runs the cases; returns (reports on the
    kernel, whether the script finished, the whole output)."""
    cxx = _compiler()
    runtimes = _runtimes(cxx, sanitizer)
    so = tmp_path / "libemu_san.so"
    cmd = [cxx, "-std=c++17", "-O1", "-g", f"-fsanitize={sanitizer}", "-fno-omit-frame-pointer",
           "-fno-strict-aliasing", "-pthread", "-shared", "-fPIC", "-Wno-unknown-pragmas", "-Wno-tsan",
           "-o", str(so), str(src / "emu" / "emu_capi.cpp")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    env = dict(os.environ, LD_PRELOAD=" ".join(runtimes), OMP_NUM_THREADS="1",
               TSAN_OPTIONS="report_signal_unsafe=0 halt_on_error=0",
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(so), str(Path(__file__).parents[1]), str(ROOT),
                        json.dumps(cases)], capture_output=True, text=True, env=env, timeout=1800)
    out = r.stdout + r.stderr
    ok = "SANITIZED-RUN-OK" in out
    if not ok and "Sanitizer" in out and "ERROR" not in out and "WARNING" not in out:
        pytest.skip(f"the sanitizer runtime could not start under python:\n{out[-2000:]}")
    # reports about the emulated kernel (their stacks name the emulator library)
    reports = [rep for rep in out.split("==================") if "Sanitizer" in rep or "runtime error" in rep]
    ours = [rep for rep in reports if so.name in rep or "fg_persistent_kernel" in rep or "emu_runtime" in rep]
    return ours, ok, out


@pytest.mark.slow
@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_emulated_kernel_is_clean_under_sanitizers(tmp_path, sanitizer):
    ours, ok, out = sanitized_run(tmp_path, sanitizer, CASES)
    assert not ours, "\n".join(ours)[-12000:]
    assert ok, out[-12000:]


def mutant(tmp_path, old, new):
    """A copy of csrc/cuda with one edit to kernel.cuh: a bug the sanitizers must find."""
    src = tmp_path / "cuda"
    shutil.copytree(CUDA_SRC, src)
    kernel = src / "kernel.cuh"
    text = kernel.read_text()
    assert text.count(old) == 1, f"the kernel changed: {old!r} is not there once; update this test"
    kernel.write_text(text.replace(old, new))
    return src


FENCE = "fg_sync();\n\n    // (4) skip and residual"
STORE = "* nsteps + j) * Q + q] = part[r];"
MUTANTS = {
    # the barrier between the gate writing Z (shared memory) and the skip/residual GEMM reading it
    "missing-barrier": ("thread", FENCE, FENCE.replace("fg_sync();", ""), "data race",
                        dict(spec="round", dtype="float32", batch=2, opts=dict(f_splits=2, threads=64))),
    # teacher-forced logits written one element further on: the last one lands past the buffer
    "store-past-the-end": ("address,undefined", STORE, STORE.replace("+ q]", "+ q + 1]"), "heap-buffer-overflow",
                           dict(spec="odd", dtype="float32", batch=1, opts=dict(f_splits=1, threads=32))),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", MUTANTS)
def test_sanitizers_find_a_planted_bug(tmp_path, name):
    sanitizer, old, new, finding, case = MUTANTS[name]
    ours, ok, out = sanitized_run(tmp_path, sanitizer, [case], src=mutant(tmp_path, old, new))
    assert any(finding in rep and "fg_persistent_kernel" in rep for rep in ours), out[-6000:]
