"""The CUDA kernel on the CPU: ``csrc/cuda/emu`` compiles the real kernel source with an
emulation layer (one OS thread per CUDA thread, mma.sync evaluated from the PTX fragment
layouts, flags as C++ atomics) into a shared library. ``EmuRuntime`` has the ops' signatures
(``torch.ops.fastgen.cuda_generate`` / ``cuda_force`` / ``cuda_teacher_forced``), so ``CudaEngine`` drives it
through its ``_runtime`` hook, and ``as_cpu_kernels`` makes it the ops' CPU kernels (opcheck
through the dispatcher). Used by tests/fastgen/test_cuda_backend.py, test_cuda_ops.py, the
conformance suite's emulated engines and tests/fastgen/test_cuda_sanitizers.py (the same
emulator under TSan and ASan)."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from fastgen.backends import cuda as cb

ROOT = Path(__file__).resolve().parents[1]

# The buffer slots of a launch (FgBufId in csrc/cuda/fastgen_cuda.h).
BUFFERS = ("core", "down", "cond_table", "frames", "uniforms", "classes", "samples", "logits", "ring", "partials",
           "flags")


def _c_buffers(tensors):
    """ctypes arrays of the buffers' pointers, numels and dtype names (None: an empty slot)."""
    assert len(tensors) == len(BUFFERS)
    for t in tensors:
        assert t is None or (t.device.type == "cpu" and (t.numel() == 0 or t.is_contiguous()))
    n = len(BUFFERS)
    ptrs = (ctypes.c_void_p * n)(*[t.data_ptr() if t is not None and t.numel() else None for t in tensors])
    numels = (ctypes.c_longlong * n)(*[0 if t is None else t.numel() for t in tensors])
    dtypes = (ctypes.c_char_p * n)(*[str(t.dtype).removeprefix("torch.").encode() if t is not None else b"float32"
                                     for t in tensors])
    return ptrs, numels, dtypes


def _c_ints(ints, dilations):
    keys = list(ints)
    return (len(keys), (ctypes.c_char_p * len(keys))(*[k.encode() for k in keys]),
            (ctypes.c_longlong * len(keys))(*[int(ints[k]) for k in keys]),
            len(dilations), (ctypes.c_longlong * len(dilations))(*[int(d) for d in dilations]))


class EmuRuntime:
    """The ops with the kernel emulated on the CPU (csrc/cuda/emu): ``cuda_generate``,
    ``cuda_force`` and ``cuda_teacher_forced`` take the ops' arguments; ``run`` is one raw launch
    (every launch integer by name, the 11 buffers)."""

    def __init__(self, lib_path, timeout_s=120.0):
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.fg_emu_run.restype = ctypes.c_int
        self.lib.fg_emu_op.restype = ctypes.c_int
        self.lib.fg_emu_smem_bytes.restype = ctypes.c_longlong
        self.timeout_s = timeout_s

    def _check(self, rc, err):
        if rc == 1:
            raise ValueError("fastgen cuda: " + err.value.decode())
        if rc != 0:
            raise RuntimeError("fastgen cuda (emulated): " + err.value.decode())

    def run(self, ints, dilations, temperature, *tensors):
        err = ctypes.create_string_buffer(4096)
        rc = self.lib.fg_emu_run(*_c_ints(ints, dilations), ctypes.c_double(temperature), *_c_buffers(tensors),
                                 ctypes.c_double(self.timeout_s), err, len(err))
        self._check(rc, err)

    def _op(self, mode, ints, dilations, temperature, step0, frames, **tensors):
        # as binding.cpp: the op's tensors in their slots; the workspaces are the library's
        slots = [tensors.get(name) for name in BUFFERS]
        slots[BUFFERS.index("frames")] = frames
        shape = (ctypes.c_longlong * 4)(*frames.shape) if frames.dim() == 4 else None
        assert shape is not None, "frames must be (batch, C_in, steps*K, F)"
        err = ctypes.create_string_buffer(4096)
        rc = self.lib.fg_emu_op(mode, *_c_ints(ints, dilations), ctypes.c_double(temperature),
                                ctypes.c_longlong(step0), shape, *_c_buffers(slots), ctypes.c_double(self.timeout_s),
                                err, len(err))
        self._check(rc, err)

    @staticmethod
    def _steps(frames, K):
        return frames.shape[2] // K if K > 0 else 0    # K < 1: the library refuses it

    def cuda_generate(self, core, down, cond_table, frames, uniforms, first_class, rings, temperature, step0,
                      dilations, **ints):
        n = self._steps(frames, ints["K"])
        # column 0: the class conditioning the first step; the kernel writes step j to column j + 1
        samples = torch.empty((frames.shape[0], n + 1), dtype=torch.long)
        samples[:, 0] = first_class
        self._op(cb.MODE_GENERATE, ints, dilations, temperature, step0, frames, core=core, down=down,
                 cond_table=cond_table, uniforms=uniforms, samples=samples, ring=rings)
        return samples[:, 1:].clone(memory_format=torch.contiguous_format)

    def cuda_force(self, core, down, cond_table, frames, classes, first_class, rings, step0, dilations, **ints):
        B, n = frames.shape[0], self._steps(frames, ints["K"])
        if not (first_class.dim() == 1 and first_class.shape[0] == B and first_class.dtype == torch.long):
            raise ValueError(f"fastgen cuda: first_class must be {B} int64 classes")
        if not (tuple(classes.shape) == (B, n) and classes.dtype == torch.long):
            raise ValueError(f"fastgen cuda: classes must be ({B}, {n}) int64 classes")
        # as binding.cpp: step j's conditioning, column 0 the class the state carries
        cond = torch.cat([first_class[:, None], classes[:, :-1]], dim=1).contiguous() if classes.shape[1] else classes
        self._op(cb.MODE_FORCE, ints, dilations, 0.0, step0, frames, core=core, down=down, cond_table=cond_table,
                 classes=cond, ring=rings)

    def cuda_teacher_forced(self, core, down, cond_table, frames, classes, dilations, **ints):
        logits = torch.empty((frames.shape[0], self._steps(frames, ints["K"]), ints["Q"]))
        self._op(cb.MODE_TEACHER, ints, dilations, 0.0, 0, frames, core=core, down=down, cond_table=cond_table,
                 classes=classes, logits=logits)
        return logits

    def smem_bytes(self, *args):
        return self.lib.fg_emu_smem_bytes(*[ctypes.c_longlong(a) if i == 11 else ctypes.c_int(a)
                                            for i, a in enumerate(args)])


@contextlib.contextmanager
def as_cpu_kernels(emu: EmuRuntime):
    """``emu`` as the CPU kernels of the ops while the block runs: the real kernel through the
    dispatcher, on CPU tensors."""
    lib = torch.library.Library("fastgen", "IMPL", "CPU")
    lib.impl("cuda_generate", emu.cuda_generate)
    lib.impl("cuda_force", emu.cuda_force)
    lib.impl("cuda_teacher_forced", emu.cuda_teacher_forced)
    try:
        yield
    finally:
        del lib             # its finalizer removes the registrations


@functools.lru_cache(maxsize=None)      # the conformance engines ask for it once per engine
def build_emu(cuda_dir: Path = ROOT / "csrc" / "cuda") -> "EmuRuntime":
    """The emulator built from ``cuda_dir`` (a copy of csrc/cuda, for a mutant), cached by the
    hash of its sources; skips the test where there is no C++ compiler."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel emulator")
    h = hashlib.sha256()
    for p in sorted([*cuda_dir.glob("*.h"), *cuda_dir.glob("*.cuh"), *(cuda_dir / "emu").glob("*")]):
        h.update(p.name.encode() + p.read_bytes())
    out_dir = Path(tempfile.gettempdir()) / "fastgen_cuda_emu"
    out_dir.mkdir(exist_ok=True)
    lib = out_dir / f"libfastgen_cuda_emu_{h.hexdigest()[:16]}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, "-std=c++17", "-O2", "-fno-strict-aliasing", "-pthread", "-shared", "-fPIC", "-Wall", "-Wextra",
               "-Wno-unknown-pragmas", "-Werror", "-o", str(tmp), str(cuda_dir / "emu" / "emu_capi.cpp")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"building the emulator failed:\n{' '.join(cmd)}\n{r.stderr[-6000:]}"
        os.replace(tmp, lib)
    return EmuRuntime(lib)


def emu_engine(emu, spec, weights, dtype, smem=200_000, sms=4, **kw):
    kw.setdefault("threads", 64)
    return cb.CudaEngine(spec, weights, device="cpu", dtype=dtype, _runtime=emu, _device_limits=(smem, sms), **kw)
