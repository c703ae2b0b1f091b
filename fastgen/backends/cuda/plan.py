"""How one launch of the cuda kernel is laid out: shared memory per block, the split of a batch
over blocks (positions across ``f_splits`` blocks, sequences across blocks), threads, resident
weights, workspaces; the named integers the ops take; the device's limits; the spin timeout."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import devices
from ...spec import NetworkSpec

from .pack import MAX_KERNEL_LAYERS, MAX_THREADS, CoreLayout, align16, core_layout, element_size, select_path

# A block that waits for another longer than this reports the wait and traps (a broken
# invariant must not hang the GPU). compute-sanitizer slows blocks down by 100x or more: give
# it a longer one with the engine's ``spin_timeout_s`` or this variable.
SPIN_TIMEOUT_ENV = "FASTGEN_CUDA_SPIN_TIMEOUT_S"
DEFAULT_SPIN_TIMEOUT_S = 20.0
MAX_SPIN_TIMEOUT_S = 86400.0          # the kernel's FG_MAX_SPIN_TIMEOUT_MS


def spin_timeout_ms(seconds: float | None = None) -> int:
    """The kernel's spin timeout in ms: ``seconds``, else ``$FASTGEN_CUDA_SPIN_TIMEOUT_S``, else
    20 s; ValueError unless a number of seconds in (0, 1 day]."""
    import os
    where = "spin_timeout_s"
    if seconds is None:
        env = os.environ.get(SPIN_TIMEOUT_ENV, "").strip()
        seconds, where = (env, SPIN_TIMEOUT_ENV) if env else (DEFAULT_SPIN_TIMEOUT_S, where)
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(seconds, bool) or not 0 < value <= MAX_SPIN_TIMEOUT_S:
        raise ValueError(f"{where} must be a number of seconds in (0, {MAX_SPIN_TIMEOUT_S:g}], got {seconds!r}")
    return max(1, round(value * 1000))


# --------------------------------------------------------------------------------------------
# Launch plan
# --------------------------------------------------------------------------------------------
def smem_layout(spec: NetworkSpec, dtype: torch.dtype, path: str, seqs_per_block: int, f_per_block: int,
                threads: int, core_resident: int, down_resident: bool) -> dict:
    """Bytes of each shared-memory region of a block (mirrors fg_smem_layout in fastgen_cuda.h)."""
    es = element_size(dtype)
    K, Cr, Ch, Cs, Co, Q = (spec.frames_per_step, spec.residual_channels, spec.hidden_channels,
                            spec.skip_channels, spec.out_channels, spec.num_classes)
    M = seqs_per_block * K * f_per_block
    Mp = (M + 15) // 16 * 16 if path == "mma" else M
    pad = 8 if es == 2 else 0
    ldA, ldZ = max(2 * Cr, Cs) + pad, max(Ch, Co) + pad
    sizes = {
        "weights": align16(core_resident),
        "down_w": align16(f_per_block * K * Co * Q * es) if down_resident else 0,
        # the head's output (M x Co fp32) reuses the skip sums' region (see fg_smem_layout)
        "x": align16(M * Cr * 4), "skip": align16(M * max(Cs, Co) * 4),
        "A": align16(Mp * ldA * es), "Z": align16(Mp * ldZ * es),
        "reduce": align16(threads * 4), "logits": align16(seqs_per_block * Q * 4),
        "classes": align16(seqs_per_block * 4),
    }
    sizes["total"] = sum(sizes.values())
    return sizes


@dataclass(frozen=True)
class LaunchPlan:
    path: str
    dtype: torch.dtype
    threads: int
    f_splits: int            # blocks sharing one sequence's positions (grid.x)
    f_per_block: int         # positions per block (the last block may have fewer)
    seqs_per_block: int      # sequences per block
    groups: int              # sequence groups per launch (grid.y)
    batch_per_launch: int    # sequences per launch (launches run one after another)
    launches: int
    smem_bytes: int          # dynamic shared memory per block
    activation_bytes: int    # of which activations (the rest: resident weights)
    core_bytes: int          # packed weight blob
    core_resident: int       # leading bytes of it kept in shared memory (rest streams from L2)
    down_resident: bool      # this block's down_w slice in shared memory
    ring_elems_per_seq: int  # history ring buffers, elements of dtype
    partial_floats: int
    flag_count: int

    @property
    def grid(self) -> tuple[int, int]:
        return (self.f_splits, self.groups)

    @property
    def blocks(self) -> int:
        return self.f_splits * self.groups


def plan_launch(spec: NetworkSpec, batch: int, smem_per_block: int, num_sms: int, *,
                dtype: torch.dtype = torch.float32, path: str = "auto", threads: int | None = None,
                f_splits: int | None = None, seqs_per_block: int | None = None,
                blocks_per_sm: int = 1) -> LaunchPlan:
    """Split the work of ``batch`` sequences over at most ``num_sms * blocks_per_sm`` co-resident
    blocks of at most ``smem_per_block`` bytes of dynamic shared memory.

    Small batches split each sequence's F positions over several blocks (more SMs per
    sequence: lower latency; rows per block are kept >= 16 for the tensor cores, >= 8 for
    FMA, and raised further while a block's slice of ``down_w`` is too large for shared memory);
    large batches put several sequences in a block. Weights are kept in shared memory as
    far as the budget left by the activations allows; the rest is read from global memory
    (L2). ``f_splits``/``seqs_per_block``/``threads`` override the heuristics."""
    path = select_path(spec, dtype, path)
    es = element_size(dtype)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if num_sms < 1 or blocks_per_sm < 1:
        raise ValueError(f"num_sms and blocks_per_sm must be >= 1, got {num_sms}, {blocks_per_sm}")
    if spec.num_layers > MAX_KERNEL_LAYERS:
        raise ValueError(f"the cuda backend supports at most {MAX_KERNEL_LAYERS} layers, the network has "
                         f"{spec.num_layers}")
    if spec.cond_classes < spec.num_classes:
        raise ValueError(f"sampled classes feed back as conditioning classes, so cond_classes "
                         f"({spec.cond_classes}) must be >= num_classes ({spec.num_classes})")
    F, K, Q = spec.num_features, spec.frames_per_step, spec.num_classes
    capacity = num_sms * blocks_per_sm
    if threads is not None and (threads % 32 or not 32 <= threads <= MAX_THREADS):
        raise ValueError(f"threads must be a multiple of 32 in [32, {MAX_THREADS}], got {threads}")

    def act_bytes(S, Fb, thr):
        return smem_layout(spec, dtype, path, S, Fb, thr, 0, False)["total"]

    def pick_threads(S, Fb):
        # a warp per 16x8 tile of the widest GEMM of a layer (fma: 4 rows x 1 column per
        # thread), 64..256. The mma GEMMs give a warp up to 4x2 tiles, so some warps wait there,
        # but the element loops and the downsampling use them all (to tune on a GPU).
        if threads is not None:
            return threads
        M = S * K * Fb
        widest = max(spec.hidden_channels, spec.skip_channels + spec.residual_channels, spec.out_channels)
        if path == "mma":
            warps = -(-M // 16) * (widest // 8)
        else:
            warps = -(-(-(-M // 4) * widest) // 32)
        return int(min(MAX_THREADS, max(64, 32 * warps)))

    def down_slice(Fb):
        return Fb * K * spec.out_channels * Q * es

    # -- split
    if f_splits is not None:
        if not 1 <= f_splits <= F:
            raise ValueError(f"f_splits must be in [1, F={F}], got {f_splits}")
        Fb = -(-F // f_splits)
    elif seqs_per_block is not None or batch * 1 > capacity:
        Fb = F
    else:
        target_rows = 16 if path == "mma" else 8
        f_min = min(F, -(-target_rows // K))                 # positions per block for target rows
        nf = max(1, min(capacity // batch, -(-F // f_min)))
        Fb = -(-F // nf)
        # The downsampling reads a block's whole down_w slice every step: split further while
        # that slice is too large to stay in shared memory (and blocks are free).
        while Fb > 1 and down_slice(Fb) > smem_per_block // 2 and batch * -(-F // (Fb - 1)) <= capacity:
            Fb = -(-F // -(-F // (Fb - 1)))
    nf = -(-F // Fb)
    if seqs_per_block is not None:
        if seqs_per_block < 1:
            raise ValueError(f"seqs_per_block must be >= 1, got {seqs_per_block}")
        S = min(seqs_per_block, batch)
    else:
        S = max(1, -(-batch // max(1, capacity // nf)))
    if nf > capacity:
        raise ValueError(f"f_splits={nf} blocks per sequence exceed the {capacity} co-resident blocks "
                         f"({num_sms} SMs x {blocks_per_sm})")

    # -- fit the activations: fewer sequences per block (more launches), then more f-splits
    while act_bytes(S, Fb, pick_threads(S, Fb)) > smem_per_block:
        if S > 1 and seqs_per_block is None:
            S = (S + 1) // 2
        elif Fb > 1 and f_splits is None and -(-F // (Fb - 1)) <= capacity:
            Fb = -(-F // -(-F // (Fb - 1)))          # the next smaller even split
            nf = -(-F // Fb)
        else:
            thr = pick_threads(S, Fb)
            sizes = smem_layout(spec, dtype, path, S, Fb, thr, 0, False)
            detail = ", ".join(f"{k} {v}" for k, v in sizes.items() if k != "total" and v)
            raise ValueError(
                f"the cuda kernel's activations for {S} sequence(s) x K={K} frames x {Fb} position(s) per block "
                f"need {sizes['total']} bytes of shared memory ({detail}; C_r={spec.residual_channels}, "
                f"C_h={spec.hidden_channels}, C_s={spec.skip_channels}, C_o={spec.out_channels}, Q={Q}, "
                f"dtype {dtype}, path {path}), more than the {smem_per_block} bytes per block available")
    thr = pick_threads(S, Fb)
    groups_total = -(-batch // S)
    groups = min(groups_total, capacity // nf)
    batch_per_launch = min(batch, groups * S)
    launches = -(-batch // batch_per_launch)

    # -- weights: resident prefix of the blob, then this block's down_w slice
    lay = core_layout(spec, dtype, path)
    act = act_bytes(S, Fb, thr)
    budget = smem_per_block - act
    core_resident = min(lay.total, budget // 16 * 16)
    down_resident = core_resident == lay.total and budget - align16(lay.total) >= align16(down_slice(Fb))
    smem = smem_layout(spec, dtype, path, S, Fb, thr, core_resident, down_resident)["total"]
    assert smem <= smem_per_block
    ring = F * spec.residual_channels * sum(d + K for d in spec.dilations)
    return LaunchPlan(path=path, dtype=dtype, threads=thr, f_splits=nf, f_per_block=Fb, seqs_per_block=S,
                      groups=groups, batch_per_launch=batch_per_launch, launches=launches, smem_bytes=smem,
                      activation_bytes=act, core_bytes=lay.total, core_resident=core_resident,
                      down_resident=down_resident, ring_elems_per_seq=ring,
                      partial_floats=groups * nf * S * Q, flag_count=groups * (nf + 1))


def op_ints(spec: NetworkSpec, plan: LaunchPlan, layout: CoreLayout,
            timeout_ms: int = round(DEFAULT_SPIN_TIMEOUT_S * 1000)) -> dict:
    """The named int arguments of ``torch.ops.fastgen.cuda_generate`` / ``cuda_teacher_forced``
    (FG_OP_INTS in csrc/cuda/fastgen_cuda.h) for launches of ``plan``: the network's sizes, the
    packed weight blob's ``layout``, the plan and the spin timeout. The op derives the rest per
    call (``launch_ints``)."""
    o, lo = layout.offsets, layout.layer_offsets
    return {
        "Cin": spec.in_channels, "F": spec.num_features, "K": spec.frames_per_step,
        "Cr": spec.residual_channels, "Ch": spec.hidden_channels, "Cs": spec.skip_channels,
        "Co": spec.out_channels, "Q": spec.num_classes, "Qc": spec.cond_classes, "L": spec.num_layers,
        "start_class": spec.start_class,
        "nf": plan.f_splits, "Fb": plan.f_per_block, "S": plan.seqs_per_block, "threads": plan.threads,
        "mma": int(plan.path == "mma"), "smem_bytes": plan.smem_bytes, "down_resident": int(plan.down_resident),
        "core_bytes": layout.total, "core_resident": plan.core_resident,
        "off_in_w": o["in_w"], "off_in_b": o["in_b"], "off_down_b": o["down_b"], "off_h1w": o["h1w"],
        "off_h1b": o["h1b"], "off_h2w": o["h2w"], "off_h2b": o["h2b"], "off_layers": o["layers"],
        "layer_stride": layout.layer_stride, "loff_wdil": lo["wdil"], "loff_wsr": lo["wsr"], "loff_bsr": lo["bsr"],
        "spin_timeout_ms": timeout_ms,
    }


def launch_ints(spec: NetworkSpec, plan: LaunchPlan, layout: CoreLayout, batch: int, steps: int, mode: int,
                timeout_ms: int = round(DEFAULT_SPIN_TIMEOUT_S * 1000), step0: int = 0) -> dict:
    """Every integer of one launch of ``batch`` sequences, steps ``step0 ..`` of a generation:
    ``op_ints`` and those the op derives per call (FG_CALL_INTS: sequence groups, batch, steps,
    mode, step0). What the kernel emulator's raw launch takes (tests/cuda_emu.py)."""
    return {**op_ints(spec, plan, layout, timeout_ms), "G": -(-batch // plan.seqs_per_block), "batch": batch,
            "steps": steps, "mode": mode, "step0": step0}


def device_limits(device: torch.device) -> tuple[int, int]:
    """(dynamic shared memory per block, opt-in, in bytes; number of SMs) of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    smem = getattr(props, "shared_memory_per_block_optin", None)
    if not smem:
        known = devices.limits_for(props.major, props.minor)
        smem = known.shared_per_block if known else devices.DEFAULT_SHARED_PER_BLOCK
    return int(smem), int(props.multi_processor_count)
