"""Backend ``cuda``: the persistent CUDA kernel (csrc/cuda/), one launch per generation.

This package is the thin host side (pack.py, plan.py, ops.py, engine.py), and everything in it
runs (and is tested) on a CPU:

- ``pack_weights(spec, weights, dtype, path)``: the weights in the kernel's layout, packed once
  per engine: one byte blob ("core": input projection, per-layer dilated-conv / skip+residual
  weights and biases, head), ``down_w`` as ``[F][K][C_o][Q]`` and the conditioning folded into
  a per-layer table ``cond_table[l][class] = cond_emb @ cond_w^T + cond_b + dil_b`` (fp32).
  Matrices are stored in the engine dtype, biases and the input projection in fp32. The GEMM
  weights are laid out for the kernel's GEMM path (``pack_matrix``): ``"fma"`` (fp32 FMA, any
  sizes) stores ``W^T`` (k-major); ``"mma"`` (tensor cores, bf16/fp16, channel counts multiples
  of 16) stores each 16x8 tile as the 32 lanes' ``mma.m16n8k16`` B fragments.
- ``plan_launch(spec, batch, smem_per_block, num_sms, ...)``: how the work is split (positions
  of a sequence across ``f_splits`` blocks for latency, sequences across blocks for batch),
  threads, dynamic shared memory, which weights are resident in shared memory, and the
  workspace sizes; raises ``ValueError`` naming the sizes and the limit when it cannot fit.
- the ops ``torch.ops.fastgen.cuda_generate``, ``cuda_force`` and ``cuda_teacher_forced``
  (ops.py): one launch each, the kernel's integers as named arguments (``op_ints``).
- ``CudaEngine``: packs once in ``__init__``, plans per call and calls the ops once per launch.
"""
from .engine import CudaEngine, arch_mismatch, unavailable_reason
from .pack import (DTYPES, MAX_KERNEL_LAYERS, MAX_THREADS, MODE_FORCE, MODE_GENERATE, MODE_TEACHER, CoreLayout,
                   PackedWeights, core_layout, pack_matrix, pack_weights, select_path, unpack_matrix, unpack_weights)
from .plan import (DEFAULT_SPIN_TIMEOUT_S, SPIN_TIMEOUT_ENV, LaunchPlan, device_limits, launch_ints, op_ints,
                   plan_launch, smem_layout, spin_timeout_ms)

__all__ = ["CudaEngine", "unavailable_reason", "arch_mismatch", "pack_weights", "unpack_weights", "pack_matrix",
           "unpack_matrix", "plan_launch", "core_layout", "smem_layout", "select_path", "PackedWeights", "LaunchPlan",
           "CoreLayout", "MAX_KERNEL_LAYERS", "MAX_THREADS", "DTYPES", "MODE_GENERATE", "MODE_TEACHER", "MODE_FORCE",
           "op_ints", "launch_ints", "device_limits", "spin_timeout_ms", "SPIN_TIMEOUT_ENV", "DEFAULT_SPIN_TIMEOUT_S"]
