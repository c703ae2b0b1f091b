"""The CUDA kernel on the CPU: ``csrc/cuda/emu`` compiles the real kernel source with an
emulation layer (one OS thread per CUDA thread, mma.sync evaluated from the PTX fragment
layouts, flags as C++ atomics) into a shared library, which ``CudaEngine`` drives through its
``_runtime`` hook. Used by tests/fastgen/test_cuda_backend.py, the conformance suite's emulated
engines and tests/fastgen/test_cuda_sanitizers.py (the same emulator under TSan and ASan)."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fastgen.backends import cuda as cb

ROOT = Path(__file__).resolve().parents[1]

class EmuRuntime:
    """``fastgen._cuda``'s ``run`` with the kernel emulated on the CPU (csrc/cuda/emu)."""

    def __init__(self, lib_path, timeout_s=120.0):
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.fg_emu_run.restype = ctypes.c_int
        self.lib.fg_emu_smem_bytes.restype = ctypes.c_longlong
        self.timeout_s = timeout_s

    def run(self, ints, dilations, temperature, *tensors):
        assert len(tensors) == 11
        for t in tensors:
            assert t.device.type == "cpu" and (t.numel() == 0 or t.is_contiguous())
        keys = list(ints)
        c_keys = (ctypes.c_char_p * len(keys))(*[k.encode() for k in keys])
        c_vals = (ctypes.c_longlong * len(keys))(*[int(ints[k]) for k in keys])
        c_dils = (ctypes.c_longlong * len(dilations))(*[int(d) for d in dilations])
        ptrs = (ctypes.c_void_p * 11)(*[t.data_ptr() if t.numel() else None for t in tensors])
        numels = (ctypes.c_longlong * 11)(*[t.numel() for t in tensors])
        dtypes = (ctypes.c_char_p * 11)(*[str(t.dtype).removeprefix("torch.").encode() for t in tensors])
        err = ctypes.create_string_buffer(4096)
        rc = self.lib.fg_emu_run(len(keys), c_keys, c_vals, len(dilations), c_dils, ctypes.c_double(temperature),
                                 ptrs, numels, dtypes, ctypes.c_double(self.timeout_s), err, len(err))
        if rc == 1:
            raise ValueError("fastgen cuda: " + err.value.decode())
        if rc != 0:
            raise RuntimeError("fastgen cuda (emulated): " + err.value.decode())

    def smem_bytes(self, *args):
        return self.lib.fg_emu_smem_bytes(*[ctypes.c_longlong(a) if i == 11 else ctypes.c_int(a)
                                            for i, a in enumerate(args)])


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
