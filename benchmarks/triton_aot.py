"""Compile the Triton kernels for a named NVIDIA architecture on any machine, GPU or not, and
read what each launch would use: registers per thread, spilled (local) bytes, shared memory.
A build and test tool (benchmarks/triton_resources.py, tests/fastgen/test_triton_compile.py),
not part of the runtime package: it reaches into Triton's compiler.

The interpreter that runs the kernels on a CPU in CI never compiles them, so it cannot catch
what only the compiler rejects (a ``tl.dot`` shape, a layout), nor say whether a launch
configuration spills. This compiles exactly what a launch would: the same arguments
(``ops.step_launch`` / ``persistent_launch``) bound by the same binder that
``JITFunction.run`` uses, so ints equal to 1 and 16-byte alignments are specialised as they
would be on the device, then reads registers and spills from Triton's bundled ptxas
(``-v``), shared memory from the compiled kernel's metadata. Needs ``TRITON_INTERPRET``
unset (the kernels must be real JIT functions).
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass

import torch
import triton
from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from fastgen.backends.triton import ops as tk
from fastgen.devices import LIMITS
from fastgen.spec import NetworkSpec, random_weights

__all__ = ["KernelResources", "compile_launch", "SHARED_PER_BLOCK", "REGISTERS_PER_SM", "SM_COUNT", "VARIANTS"]

VARIANTS = ("triton", "triton_persistent")
# By compute capability (``fastgen.devices``): opt-in shared memory per block (bytes), 32-bit
# registers per SM, and the SMs of a representative part -- the default sequences per program
# depend on them (``ops.default_seqs_per_program``), so a compile for an architecture builds
# what a launch on that part would.
ARCHS = (80, 86, 89, 90)
SHARED_PER_BLOCK = {a: LIMITS[a].shared_per_block for a in ARCHS}
REGISTERS_PER_SM = {a: LIMITS[a].registers_per_sm for a in ARCHS}
SM_COUNT = {a: LIMITS[a].sms for a in ARCHS}


@dataclass(frozen=True)
class KernelResources:
    kernel: str
    arch: int
    num_warps: int
    registers: int       # per thread
    spill_bytes: int     # per thread, stored to local memory because registers ran out
    shared_bytes: int    # per block (what Triton allocates)

    @property
    def blocks_per_sm(self) -> int:
        """Resident blocks per SM that registers and shared memory allow, roughly (the SM's
        shared memory taken as one block's limit; allocation granularity ignored)."""
        by_regs = REGISTERS_PER_SM[self.arch] // max(1, self.registers * 32 * self.num_warps)
        by_smem = SHARED_PER_BLOCK[self.arch] // self.shared_bytes if self.shared_bytes else by_regs
        return min(by_regs, by_smem)

    def to_dict(self) -> dict:
        return dict(asdict(self), blocks_per_sm=self.blocks_per_sm)


def _resources(ptx: str, kernel: str, arch: int, num_warps: int, shared: int) -> KernelResources:
    # ptxas -v on the kernel's PTX, with the flags Triton's own ptxas call uses (its log is
    # not kept, and a cached kernel is not assembled again).
    ptxas = get_ptxas(arch).path
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        log = subprocess.run([ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2",
                              f"--gpu-name={sm_arch_from_capability(arch)}", src, "-o", src + ".o"],
                             capture_output=True, text=True, check=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if regs is None or spills is None:
        raise RuntimeError(f"no resource usage in ptxas's report:\n{log}")
    return KernelResources(kernel, arch, num_warps, int(regs.group(1)), int(spills.group(1)), shared)


def compile_launch(variant: str, spec: NetworkSpec, dtype: torch.dtype, batch: int, arch: int = 90,
                   steps: int = 16, teacher: bool = False, force: bool = False, **options) -> KernelResources:
    """Compile the kernel that ``variant`` ("triton" or "triton_persistent") would launch for
    ``batch`` sequences of ``steps`` steps in ``dtype`` on an sm_``arch`` GPU; ``options`` are
    the engines' launch options (``ops.launch_config``; ``sms`` defaults to
    ``SM_COUNT[arch]``). Generation mode, teacher-forced (logits written, no sampling) with
    ``teacher``, or forced steps (``Engine.force``: the layers alone) with ``force``."""
    if teacher and force:
        raise ValueError("a launch is teacher-forced or forced, not both")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if arch not in SHARED_PER_BLOCK:
        raise ValueError(f"arch must be one of {sorted(SHARED_PER_BLOCK)}, got {arch}")
    if tk.interpreting():
        raise RuntimeError("compiling ahead of time needs real JIT kernels: unset TRITON_INTERPRET "
                           "before triton is imported")
    packed, dims = tk.pack_weights(spec, random_weights(spec), "cpu", dtype)
    config = tk.launch_config(batch, dims, dtype, **{"sms": SM_COUNT[arch], **options})
    # Only dtypes, alignment and the ints matter to the compile: the buffers can be tiny. The
    # frames' shape and strides are the launch's (B and the strides are arguments), so they are
    # a meta tensor: no memory (a wide input at batch 4096 would be GiBs), and its data pointer,
    # 0, is 16-byte aligned as a device allocation is.
    frames = torch.empty(batch, spec.in_channels, steps * spec.frames_per_step, spec.num_features, dtype=dtype,
                         device="meta")
    i64, f32 = torch.zeros(1, dtype=torch.int64), torch.zeros(1)
    ring = torch.zeros(1, dtype=dtype)
    if variant == "triton":
        _, kwargs = tk.step_launch(frames, 0, i64, f32, 1.0, i64, f32, ring, f32, packed, dims, config,
                                   write_logits=teacher, sample=not (teacher or force))
        fn = tk.step_kernel
    else:
        _, kwargs = tk.persistent_launch(frames, steps, i64, f32, 1.0, i64, f32, ring, f32, packed, dims,
                                         config, teacher=teacher or force, force=force)
        fn = tk.persistent_kernel
    kwargs["debug"] = False
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    # As JITFunction.run: bind and specialise the arguments, then compile that signature. Triton
    # has no public call for this; _pack_args (Triton 3.x, private) is the one used here, so a
    # Triton upgrade that changes it breaks this tool only, never a launch.
    bound, specialization, opts = create_function_from_signature(fn.signature, fn.params, backend)(**kwargs)
    opts, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, opts)
    compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=opts.__dict__)
    return _resources(compiled.asm["ptx"], fn.__name__, arch, config[2], compiled.metadata.shared)
