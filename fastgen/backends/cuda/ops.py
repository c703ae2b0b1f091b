"""The cuda backend's ops in the torch dispatcher: ``torch.ops.fastgen.cuda_generate``,
``cuda_force`` and ``cuda_teacher_forced``, one launch of the persistent kernel each.

Their schemas are compiled into ``fastgen._C`` (csrc/cuda/schema/ops.cpp), which every build
has, so tracing and the CPU tests see them without a GPU; their CUDA kernels into
``fastgen._cuda`` (csrc/cuda/binding.cpp). Their fake versions, for torch.compile and
FakeTensor tracing, are registered here.

Arguments: the packed weights (``pack.PackedWeights``'s core, down and cond_table), the frames
``(B, C_in, n*K, F)`` in the compute dtype (down's), uniforms float32 ``(B, n)`` (generate) or
classes int64 ``(B, n)`` (teacher-forced and forced, step j conditioned on ``classes[:, j-1]``),
in generate and forced mode the class conditioning the first step ``first_class (B,)`` int64,
the history ``rings`` (updated in place) and the generation's step index ``step0``, the
temperature (generate); the dilations;
and as keyword arguments the kernel's integers (``plan.op_ints``: the network's sizes, the
weight blob's layout, the plan). The op derives the batch, the steps and the sequence groups
from the frames, validates everything (csrc/cuda/fastgen_cuda.h), allocates its output and
workspaces and launches. Returns sampled classes int64 ``(B, n)``, logits float32 ``(B, n, Q)``,
or nothing (forced: only the layers run, the rings advance).
"""
from __future__ import annotations

import torch

try:  # registers the schemas (the CPU extension carries them)
    from ... import _C  # noqa: F401
except ImportError:  # pragma: no cover - depends on the build; engine.unavailable_reason says so
    pass

OPS = ("cuda_generate", "cuda_teacher_forced", "cuda_force")


def registered() -> bool:
    """Whether the ops' schemas are in the dispatcher (fastgen._C is built and up to date)."""
    return all(hasattr(torch.ops.fastgen, name) for name in OPS)


def _steps(frames, K):
    torch._check(frames.shape[2] % K == 0, lambda: f"frames hold {frames.shape[2]} frames, not whole steps of {K}")
    return frames.shape[2] // K


if registered():
    @torch.library.register_fake("fastgen::cuda_generate")
    def _(core, down, cond_table, frames, uniforms, first_class, rings, temperature, step0, dilations, *, K, **ints):
        return frames.new_empty((frames.shape[0], _steps(frames, K)), dtype=torch.long)

    @torch.library.register_fake("fastgen::cuda_force")
    def _(core, down, cond_table, frames, classes, first_class, rings, step0, dilations, *, K, **ints):
        _steps(frames, K)
        return None

    @torch.library.register_fake("fastgen::cuda_teacher_forced")
    def _(core, down, cond_table, frames, classes, dilations, *, K, Q, **ints):
        return frames.new_empty((frames.shape[0], _steps(frames, K), Q), dtype=torch.float32)
