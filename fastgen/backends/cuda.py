"""Backend ``cuda``: the persistent CUDA kernel (csrc/cuda/), one launch per generation.

This module is the thin host side, and everything in it runs (and is tested) on a CPU:

- ``pack_weights(spec, weights, dtype, path)``: the weights in the kernel's layout, packed once
  per engine: one byte blob ("core": input projection, per-layer dilated-conv / skip+residual
  weights and biases, head), ``down_w`` as ``[F][K][C_o][Q]`` and the conditioning folded into
  a per-layer table ``cond_table[l][class] = cond_emb @ cond_w^T + cond_b + dil_b`` (fp32).
  Matrices are stored in the engine dtype, biases and the input projection in fp32. The GEMM
  weights are laid out for the kernel's GEMM path: ``"fma"`` (fp32 FMA, any sizes) stores
  ``W^T`` (k-major); ``"mma"`` (tensor cores, bf16/fp16, channel counts multiples of 16) stores
  each 16x8 tile as the 32 lanes' ``mma.m16n8k16`` B fragments.
- ``plan_launch(spec, batch, smem_per_block, num_sms, ...)``: how the work is split (positions
  of a sequence across ``f_splits`` blocks for latency, sequences across blocks for batch),
  threads, dynamic shared memory, which weights are resident in shared memory, and the
  workspace sizes; raises ``ValueError`` naming the sizes and the limit when it cannot fit.
- ``CudaEngine``: packs once in ``__init__``, plans per call, allocates the workspaces and
  calls the extension ``fastgen._cuda.run``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..engine import Engine
from ..spec import NetworkSpec, check_weights

__all__ = ["CudaEngine", "unavailable_reason", "pack_weights", "unpack_weights", "plan_launch", "core_layout",
           "smem_layout", "select_path", "PackedWeights", "LaunchPlan", "CoreLayout", "MAX_LAYERS", "MAX_THREADS"]

MAX_LAYERS = 128        # FG_MAX_LAYERS in csrc/cuda/fastgen_cuda.h
MAX_THREADS = 256       # FG_MAX_THREADS
DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}   # FgDType codes
MODE_GENERATE, MODE_TEACHER = 0, 1
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


def unavailable_reason() -> str | None:
    """None when the extension imports and a GPU is visible, else what is missing and how to build."""
    from . import BUILD_HINT
    try:
        from .. import _cuda  # noqa: F401
    except ImportError as e:
        cuda = torch.version.cuda
        why = ("this torch is a CPU-only build (torch.version.cuda is None), so setup.py skipped it"
               if cuda is None else f"import failed: {e}")
        return (f"the CUDA extension fastgen._cuda is not built ({why}). Build it on a machine with a CUDA "
                f"build of torch and nvcc:\n  {BUILD_HINT}\n(set FASTGEN_BUILD_CUDA=1 to make the build fail "
                "loudly if it cannot compile the CUDA sources)")
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no usable CUDA GPU on this machine"
    return _arch_mismatch(_cuda)


def _arch_mismatch(ext) -> str | None:
    """A reason when the current GPU is older than sm_80 or not covered by the built arch list."""
    try:
        major, minor = torch.cuda.get_device_capability()
    except Exception:  # pragma: no cover - no device to ask
        return None
    if major < 8:
        return (f"the cuda backend needs compute capability 8.0+ (mma.sync bf16); "
                f"{torch.cuda.get_device_name()} is {major}.{minor}")
    try:
        import json
        archs = json.loads(ext.build_info()).get("arch", "")
    except Exception:
        return None
    if not archs:
        return None
    covered = False
    for a in archs.replace(",", ";").replace(" ", ";").split(";"):
        a = a.strip()
        if not a:
            continue
        plain = a.replace("+PTX", "")
        try:
            amaj, amin = (int(x) for x in plain.rstrip("af").split("."))
        except ValueError:
            return None
        if (amaj, amin) == (major, minor):
            covered = True
        elif amaj == major and amin <= minor and not plain.endswith(("a", "f")):
            covered = True                      # SASS runs on later minors of its major
        elif a.endswith("+PTX") and (amaj, amin) <= (major, minor):
            covered = True                      # JIT-compiled from the PTX
    if not covered:
        return (f"fastgen._cuda was built for TORCH_CUDA_ARCH_LIST={archs!r}, which does not cover this GPU "
                f"(compute capability {major}.{minor}); rebuild with e.g. TORCH_CUDA_ARCH_LIST=\"{major}.{minor}\"")
    return None


def _align16(n: int) -> int:
    return (n + 15) // 16 * 16


def _esize(dtype: torch.dtype) -> int:
    if dtype not in DTYPES:
        raise ValueError(f"the cuda backend supports float32, bfloat16 and float16, got {dtype}")
    return torch.empty((), dtype=dtype).element_size()


def select_path(spec: NetworkSpec, dtype: torch.dtype, path: str = "auto") -> str:
    """The GEMM path: ``"mma"`` (tensor cores) or ``"fma"``. ``auto`` takes mma for 16-bit dtypes
    when the channel counts allow it; float32 always runs on the FMA path (parity)."""
    _esize(dtype)
    chans = {"residual_channels": spec.residual_channels, "hidden_channels": spec.hidden_channels,
             "skip_channels": spec.skip_channels, "out_channels": spec.out_channels}
    mma_ok = all(v % 16 == 0 for v in chans.values())
    if path == "auto":
        return "mma" if dtype != torch.float32 and mma_ok else "fma"
    if path == "fma":
        return path
    if path == "mma":
        if dtype == torch.float32:
            raise ValueError("the tensor-core path (path='mma') needs dtype bfloat16 or float16; "
                             "float32 runs on path='fma'")
        if not mma_ok:
            bad = ", ".join(f"{k}={v}" for k, v in chans.items() if v % 16)
            raise ValueError(f"the tensor-core path (path='mma') needs channel counts that are multiples of 16; "
                             f"got {bad} (use path='fma' or 'auto')")
        return path
    raise ValueError(f"path must be 'auto', 'mma' or 'fma', got {path!r}")


# --------------------------------------------------------------------------------------------
# Packed weight layout
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CoreLayout:
    """Byte offsets of the segments of the packed "core" blob (each 16-byte aligned)."""
    offsets: dict            # name -> byte offset: in_w, in_b, down_b, h1b, h2b, h1w, h2w, layers
    layer_stride: int        # bytes per layer
    layer_offsets: dict      # within a layer: wdil, wsr, bsr
    total: int               # bytes


def core_layout(spec: NetworkSpec, dtype: torch.dtype, path: str) -> CoreLayout:
    es = _esize(dtype)
    Cin, Cr, Ch, Cs, Co, Q = (spec.in_channels, spec.residual_channels, spec.hidden_channels,
                              spec.skip_channels, spec.out_channels, spec.num_classes)
    off, offsets = 0, {}
    for name, nbytes in (("in_w", 4 * Cr * Cin), ("in_b", 4 * Cr), ("down_b", 4 * Q), ("h1b", 4 * Co),
                         ("h2b", 4 * Co), ("h1w", es * Co * Cs), ("h2w", es * Co * Co)):
        offsets[name] = off
        off += _align16(nbytes)
    offsets["layers"] = off
    wdil = 0
    wsr = wdil + _align16(es * 2 * Ch * 2 * Cr)
    bsr = wsr + _align16(es * (Cs + Cr) * Ch)
    stride = bsr + _align16(4 * (Cs + Cr))
    return CoreLayout(offsets, stride, {"wdil": wdil, "wsr": wsr, "bsr": bsr}, off + spec.num_layers * stride)


def _pack_matrix(w: torch.Tensor, path: str) -> torch.Tensor:
    """(N, Kd) -> flat, in the kernel's GEMM layout."""
    N, Kd = w.shape
    if path == "fma":
        return w.t().contiguous().reshape(-1)
    if N % 8 or Kd % 16:
        raise ValueError(f"mma packing needs N % 8 == 0 and K % 16 == 0, got {N}x{Kd}")
    # element (nt, kt, lane=(g, t), e=(hi, lo)) = W[nt*8 + g, kt*16 + hi*8 + 2t + lo]
    w6 = w.reshape(N // 8, 8, Kd // 16, 2, 4, 2)             # nt, g, kt, hi, t, lo
    return w6.permute(0, 2, 1, 4, 3, 5).contiguous().reshape(-1)


def _unpack_matrix(flat: torch.Tensor, N: int, Kd: int, path: str) -> torch.Tensor:
    if path == "fma":
        return flat.reshape(Kd, N).t()
    return flat.reshape(N // 8, Kd // 16, 8, 4, 2, 2).permute(0, 2, 1, 4, 3, 5).reshape(N, Kd)


@dataclass
class PackedWeights:
    core: torch.Tensor        # uint8 (core_layout(...).total,)
    down: torch.Tensor        # dtype (F*K*C_o*Q,): down_w as [F][K][C_o][Q]
    cond_table: torch.Tensor  # float32 (L*Q_c*2C_h,): [L][Q_c][2C_h]
    layout: CoreLayout
    dtype: torch.dtype
    path: str

    def to(self, device) -> "PackedWeights":
        return dataclasses.replace(self, core=self.core.to(device), down=self.down.to(device),
                                   cond_table=self.cond_table.to(device))


def pack_weights(spec: NetworkSpec, weights: dict, dtype: torch.dtype = torch.float32,
                 path: str = "auto") -> PackedWeights:
    """The weights in the kernel's layout, as CPU tensors (see the module docstring)."""
    check_weights(spec, weights)
    path = select_path(spec, dtype, path)
    lay = core_layout(spec, dtype, path)
    w = {k: v.detach().to("cpu", torch.float64) for k, v in weights.items()}
    core = torch.zeros(lay.total, dtype=torch.uint8)

    def put(off: int, t: torch.Tensor) -> None:
        b = t.contiguous().reshape(-1).view(torch.uint8)
        core[off:off + b.numel()] = b

    f32 = torch.float32
    o = lay.offsets
    put(o["in_w"], w["in_w"].to(f32))
    put(o["in_b"], w["in_b"].to(f32))
    put(o["down_b"], w["down_b"].to(f32))
    put(o["h1b"], w["head1_b"].to(f32))
    put(o["h2b"], w["head2_b"].to(f32))
    put(o["h1w"], _pack_matrix(w["head1_w"].to(dtype), path))
    put(o["h2w"], _pack_matrix(w["head2_w"].to(dtype), path))
    for l in range(spec.num_layers):
        base = o["layers"] + l * lay.layer_stride
        wdil = torch.cat([w["dil_w0"][l], w["dil_w1"][l]], dim=1)            # (2Ch, 2Cr): [past | cur]
        wsr = torch.cat([w["skip_w"][l], w["res_w"][l]], dim=0)              # (Cs+Cr, Ch): [skip; res]
        bsr = torch.cat([w["skip_b"][l], w["res_b"][l]])
        put(base + lay.layer_offsets["wdil"], _pack_matrix(wdil.to(dtype), path))
        put(base + lay.layer_offsets["wsr"], _pack_matrix(wsr.to(dtype), path))
        put(base + lay.layer_offsets["bsr"], bsr.to(f32))
    down = w["down_w"].permute(3, 2, 1, 0).contiguous().reshape(-1).to(dtype)   # [F][K][Co][Q]
    cond = (torch.einsum("ce,loe->lco", w["cond_emb"], w["cond_w"])
            + w["cond_b"][:, None, :] + w["dil_b"][:, None, :])                  # (L, Qc, 2Ch), float64
    return PackedWeights(core, down, cond.to(f32).reshape(-1).contiguous(), lay, dtype, path)


def unpack_weights(spec: NetworkSpec, packed: PackedWeights) -> dict:
    """Inverse of ``pack_weights`` for the tensors it stores as they are (float64 results):
    every spec weight except ``cond_emb``, ``cond_w``, ``cond_b`` and ``dil_b`` (folded into
    ``cond_table``, returned under that name with shape (L, Q_c, 2C_h))."""
    lay, path, dt = packed.layout, packed.path, packed.dtype
    Cin, Cr, Ch, Cs, Co, Q = (spec.in_channels, spec.residual_channels, spec.hidden_channels,
                              spec.skip_channels, spec.out_channels, spec.num_classes)
    core = packed.core.cpu()

    def get(off, n, dtype):
        size = torch.empty((), dtype=dtype).element_size()
        return core[off:off + n * size].view(dtype).to(torch.float64)

    def mat(off, N, Kd):
        return _unpack_matrix(get(off, N * Kd, dt), N, Kd, path)

    o = lay.offsets
    out = {"in_w": get(o["in_w"], Cr * Cin, torch.float32).reshape(Cr, Cin),
           "in_b": get(o["in_b"], Cr, torch.float32), "down_b": get(o["down_b"], Q, torch.float32),
           "head1_b": get(o["h1b"], Co, torch.float32), "head2_b": get(o["h2b"], Co, torch.float32),
           "head1_w": mat(o["h1w"], Co, Cs), "head2_w": mat(o["h2w"], Co, Co)}
    keys = ("dil_w0", "dil_w1", "skip_w", "res_w", "skip_b", "res_b")
    per = {k: [] for k in keys}
    for l in range(spec.num_layers):
        base = o["layers"] + l * lay.layer_stride
        wdil = mat(base + lay.layer_offsets["wdil"], 2 * Ch, 2 * Cr)
        wsr = mat(base + lay.layer_offsets["wsr"], Cs + Cr, Ch)
        bsr = get(base + lay.layer_offsets["bsr"], Cs + Cr, torch.float32)
        per["dil_w0"].append(wdil[:, :Cr]); per["dil_w1"].append(wdil[:, Cr:])
        per["skip_w"].append(wsr[:Cs]); per["res_w"].append(wsr[Cs:])
        per["skip_b"].append(bsr[:Cs]); per["res_b"].append(bsr[Cs:])
    out.update({k: torch.stack(v) for k, v in per.items()})
    K, Fn = spec.frames_per_step, spec.num_features
    out["down_w"] = packed.down.cpu().to(torch.float64).reshape(Fn, K, Co, Q).permute(3, 2, 1, 0)
    out["cond_table"] = packed.cond_table.cpu().to(torch.float64).reshape(spec.num_layers, spec.cond_classes, 2 * Ch)
    return out


# --------------------------------------------------------------------------------------------
# Launch plan
# --------------------------------------------------------------------------------------------
def smem_layout(spec: NetworkSpec, dtype: torch.dtype, path: str, seqs_per_block: int, f_per_block: int,
                threads: int, core_resident: int, down_resident: bool) -> dict:
    """Bytes of each shared-memory region of a block (mirrors fg_smem_layout in fastgen_cuda.h)."""
    es = _esize(dtype)
    K, Cr, Ch, Cs, Co, Q = (spec.frames_per_step, spec.residual_channels, spec.hidden_channels,
                            spec.skip_channels, spec.out_channels, spec.num_classes)
    M = seqs_per_block * K * f_per_block
    Mp = (M + 15) // 16 * 16 if path == "mma" else M
    pad = 8 if es == 2 else 0
    ldA, ldZ = max(2 * Cr, Cs) + pad, max(Ch, Co) + pad
    sizes = {
        "weights": _align16(core_resident),
        "down_w": _align16(f_per_block * K * Co * Q * es) if down_resident else 0,
        # the head's output (M x Co fp32) reuses the skip sums' region (see fg_smem_layout)
        "x": _align16(M * Cr * 4), "skip": _align16(M * max(Cs, Co) * 4),
        "A": _align16(Mp * ldA * es), "Z": _align16(Mp * ldZ * es),
        "reduce": _align16(threads * 4), "logits": _align16(seqs_per_block * Q * 4),
        "classes": _align16(seqs_per_block * 4),
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
    es = _esize(dtype)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if num_sms < 1 or blocks_per_sm < 1:
        raise ValueError(f"num_sms and blocks_per_sm must be >= 1, got {num_sms}, {blocks_per_sm}")
    if spec.num_layers > MAX_LAYERS:
        raise ValueError(f"the cuda backend supports at most {MAX_LAYERS} layers, the network has {spec.num_layers}")
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
    down_resident = core_resident == lay.total and budget - _align16(lay.total) >= _align16(down_slice(Fb))
    smem = smem_layout(spec, dtype, path, S, Fb, thr, core_resident, down_resident)["total"]
    assert smem <= smem_per_block
    ring = F * spec.residual_channels * sum(d + K for d in spec.dilations)
    return LaunchPlan(path=path, dtype=dtype, threads=thr, f_splits=nf, f_per_block=Fb, seqs_per_block=S,
                      groups=groups, batch_per_launch=batch_per_launch, launches=launches, smem_bytes=smem,
                      activation_bytes=act, core_bytes=lay.total, core_resident=core_resident,
                      down_resident=down_resident, ring_elems_per_seq=ring,
                      partial_floats=groups * nf * S * Q, flag_count=groups * (nf + 1))


def launch_ints(spec: NetworkSpec, plan: LaunchPlan, layout: CoreLayout, batch: int, steps: int, mode: int,
                timeout_ms: int = round(DEFAULT_SPIN_TIMEOUT_S * 1000)) -> dict:
    """The named integers the extension's ``run`` takes for one launch of ``batch`` sequences."""
    groups = -(-batch // plan.seqs_per_block)
    o, lo = layout.offsets, layout.layer_offsets
    return {
        "Cin": spec.in_channels, "F": spec.num_features, "K": spec.frames_per_step,
        "Cr": spec.residual_channels, "Ch": spec.hidden_channels, "Cs": spec.skip_channels,
        "Co": spec.out_channels, "Q": spec.num_classes, "Qc": spec.cond_classes, "L": spec.num_layers,
        "start_class": spec.start_class,
        "nf": plan.f_splits, "Fb": plan.f_per_block, "S": plan.seqs_per_block, "G": groups,
        "threads": plan.threads, "batch": batch, "steps": steps, "mode": mode, "dtype": DTYPES[plan.dtype],
        "mma": int(plan.path == "mma"), "smem_bytes": plan.smem_bytes, "down_resident": int(plan.down_resident),
        "core_bytes": layout.total, "core_resident": plan.core_resident,
        "off_in_w": o["in_w"], "off_in_b": o["in_b"], "off_down_b": o["down_b"], "off_h1w": o["h1w"],
        "off_h1b": o["h1b"], "off_h2w": o["h2w"], "off_h2b": o["h2b"], "off_layers": o["layers"],
        "layer_stride": layout.layer_stride, "loff_wdil": lo["wdil"], "loff_wsr": lo["wsr"], "loff_bsr": lo["bsr"],
        "spin_timeout_ms": timeout_ms,
    }


_SMEM_OPTIN_FALLBACK = {(8, 0): 163 * 1024, (8, 7): 163 * 1024, (9, 0): 227 * 1024}


def device_limits(device: torch.device) -> tuple[int, int]:
    """(dynamic shared memory per block, opt-in, in bytes; number of SMs) of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    smem = getattr(props, "shared_memory_per_block_optin", None)
    if not smem:
        smem = _SMEM_OPTIN_FALLBACK.get((props.major, props.minor), 99 * 1024)
    return int(smem), int(props.multi_processor_count)


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------
class CudaEngine(Engine):
    """Options: ``path`` ("auto" | "mma" | "fma"), overrides of the launch heuristics
    ``threads``, ``f_splits``, ``seqs_per_block``, and ``spin_timeout_s`` (how long a block waits
    for another before it traps; default ``$FASTGEN_CUDA_SPIN_TIMEOUT_S`` or 20 s). ``_runtime``/``_device_limits`` substitute
    the extension and the device's (smem per block, SMs) -- the tests run the kernel in a CPU
    emulator that way."""
    name = "cuda"

    def __init__(self, spec, weights, device="cuda", dtype=torch.float32, path: str = "auto",
                 threads: int | None = None, f_splits: int | None = None, seqs_per_block: int | None = None,
                 spin_timeout_s: float | None = None, _runtime=None, _device_limits: tuple[int, int] | None = None):
        super().__init__(spec, weights, device, dtype)
        self.spin_timeout_ms = spin_timeout_ms(spin_timeout_s)
        if dtype not in DTYPES:
            raise ValueError(f"the cuda backend supports float32, bfloat16 and float16, got {dtype}")
        if _runtime is None:
            if self.device.type != "cuda":
                raise ValueError(f"the cuda backend runs on CUDA devices, got device {self.device}")
            reason = unavailable_reason()
            if reason:
                raise RuntimeError(reason)
            from .. import _cuda
            _runtime = _cuda
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            major, minor = torch.cuda.get_device_capability(self.device)
            if major < 8:
                raise RuntimeError(f"the cuda backend is built for compute capability 8.0+ (sm_80, sm_90); "
                                   f"{torch.cuda.get_device_name(self.device)} is {major}.{minor}")
        self._runtime = _runtime
        self._limits = _device_limits or device_limits(self.device)
        self.path = select_path(spec, dtype, path)
        self.options = {"threads": threads, "f_splits": f_splits, "seqs_per_block": seqs_per_block}
        self.packed = pack_weights(spec, weights, dtype, self.path).to(self.device)
        # fail early (with the sizes) if even one sequence cannot fit
        self.plan(1)

    def plan(self, batch: int) -> LaunchPlan:
        smem, sms = self._limits
        return plan_launch(self.spec, batch, smem, sms, dtype=self.dtype, path=self.path, **self.options)

    def _run(self, mode: int, frames: torch.Tensor, aux: torch.Tensor, temperature: float) -> torch.Tensor:
        spec, dev = self.spec, self.device
        B = frames.shape[0]
        n = frames.shape[2] // spec.frames_per_step
        if mode == MODE_GENERATE:
            out = torch.empty((B, n), dtype=torch.long, device=dev)
        else:
            out = torch.empty((B, n, spec.num_classes), dtype=torch.float32, device=dev)
        if B == 0 or n == 0:
            return out
        plan = self.plan(B)
        bpl = plan.batch_per_launch
        ring = torch.empty(bpl * plan.ring_elems_per_seq, dtype=self.dtype, device=dev)
        partials = torch.empty(plan.partial_floats, dtype=torch.float32, device=dev)
        flags = torch.zeros(plan.flag_count, dtype=torch.int32, device=dev)
        empty_f = torch.empty(0, dtype=torch.float32, device=dev)
        empty_l = torch.empty(0, dtype=torch.long, device=dev)
        aux = aux.contiguous()
        dils = list(spec.dilations)
        pk = self.packed
        for b0 in range(0, B, bpl):
            b1 = min(B, b0 + bpl)
            ints = launch_ints(spec, plan, pk.layout, b1 - b0, n, mode, self.spin_timeout_ms)
            if mode == MODE_GENERATE:
                uniforms, classes, samples, logits = aux[b0:b1], empty_l, out[b0:b1], empty_f
            else:
                uniforms, classes, samples, logits = empty_f, aux[b0:b1], empty_l, out[b0:b1]
            self._runtime.run(ints, dils, float(temperature), pk.core, pk.down, pk.cond_table, frames[b0:b1],
                              uniforms, classes, samples, logits, ring, partials, flags)
        return out

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature):
        return self._run(MODE_GENERATE, frames, uniforms, temperature)

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        return self._run(MODE_TEACHER, frames, classes, 0.0)
