"""The Triton backends' host side: the weights packed once per engine in the kernels' layout,
the launch configuration (sequences per program sized to the device's SMs, tile rows), the
workspaces, and the launches as ``torch.library`` custom ops (``torch.ops.fastgen.triton_step``,
``torch.ops.fastgen.triton_persistent``) with fake implementations, so ``torch.compile`` can
trace code that calls them. The kernels and their design are in ``kernels.py``."""
from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl

from ...packing import cond_table, residual_per_layer, summed_skip_bias
from ...spec import padded_size
from .kernels import CONFIG_FIELDS, DIMS_FIELDS, SUPPORTED_DTYPES, interpreting, persistent_kernel, step_kernel

__all__ = ["pack_weights", "launch_config", "default_seqs_per_program", "sm_count", "new_ring", "triton_step",
           "triton_persistent", "step_launch", "persistent_launch", "DIMS_FIELDS", "CONFIG_FIELDS", "PACKED_FIELDS",
           "SUPPORTED_DTYPES", "DEFAULT_SMS", "interpreting"]

# --------------------------------------------------------------------------------------------
# Packing (once per engine) and launches
# --------------------------------------------------------------------------------------------
PACKED_FIELDS = ("w_in", "b_in", "w_dil", "cond", "w_skip", "w_res", "b_res", "b_skip",
                 "w_h1", "b_h1", "w_h2", "b_h2", "w_down", "b_down", "dil", "roff")


def pack_weights(spec, weights: dict, device, dtype) -> tuple[list[torch.Tensor], list[int]]:
    """Zero-padded, pre-transposed weights in the kernels' layout (list in ``PACKED_FIELDS``
    order) and the static sizes (list in ``DIMS_FIELDS`` order)."""
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"the triton backends support {SUPPORTED_DTYPES}, got {dtype}")
    device = torch.device(device)
    s = spec
    w = {k: v.detach().to(torch.float64).cpu() for k, v in weights.items()}
    L, Cin, Fn, K = s.num_layers, s.in_channels, s.num_features, s.frames_per_step
    Cr, Ch, Cs, Co, Q, Qc = (s.residual_channels, s.hidden_channels, s.skip_channels,
                             s.out_channels, s.num_classes, s.cond_classes)
    P = K * Fn
    PP, CR, CH, CS, CO, QP = (padded_size(x) for x in (P, Cr, Ch, Cs, Co, Q))
    f64 = torch.float64

    def z(*shape):
        return torch.zeros(shape, dtype=f64)

    w_in = z(Cin, CR); w_in[:, :Cr] = w["in_w"].T
    b_in = z(CR); b_in[:Cr] = w["in_b"]
    w_dil = z(L, 4, CR, CH)     # taps (past, current) x halves (filter, gate), as (in, out)
    for tap, name in enumerate(("dil_w0", "dil_w1")):
        wt = w[name]                                                  # (L, 2Ch, Cr)
        w_dil[:, 2 * tap, :Cr, :Ch] = wt[:, :Ch].transpose(1, 2)
        w_dil[:, 2 * tap + 1, :Cr, :Ch] = wt[:, Ch:].transpose(1, 2)
    table = cond_table(w)                                             # (L, Qc, 2Ch)
    cond = z(L, Qc, 2, CH)
    cond[:, :, 0, :Ch] = table[..., :Ch]
    cond[:, :, 1, :Ch] = table[..., Ch:]
    w_skip = z(L, CH, CS); w_skip[:, :Ch, :Cs] = w["skip_w"].transpose(1, 2)
    res_w, res_b = residual_per_layer(w)                              # the last layer's: zeros
    w_res = z(L, CH, CR); w_res[:, :Ch, :Cr] = res_w.transpose(1, 2)
    b_res = z(L, CR); b_res[:, :Cr] = res_b
    b_skip = z(CS); b_skip[:Cs] = summed_skip_bias(w)
    w_h1 = z(CS, CO); w_h1[:Cs, :Co] = w["head1_w"].T
    b_h1 = z(CO); b_h1[:Co] = w["head1_b"]
    w_h2 = z(CO, CO); w_h2[:Co, :Co] = w["head2_w"].T
    b_h2 = z(CO); b_h2[:Co] = w["head2_b"]
    w_down = z(PP, CO, QP)      # row p*CO + o with p = k*F + f
    w_down[:P, :Co, :Q] = w["down_w"].reshape(P, Co, Q)
    w_down = w_down.reshape(PP * CO, QP)
    b_down = z(QP); b_down[:Q] = w["down_b"]

    dil = torch.tensor(s.dilations, dtype=torch.int32)
    caps = [d + K for d in s.dilations]
    roff = torch.tensor([0] + [sum(caps[:i + 1]) * Fn * CR for i in range(L - 1)], dtype=torch.int32)
    ring = sum(caps) * Fn * CR

    mats = {"w_in", "w_dil", "w_skip", "w_res", "w_h1", "w_h2", "w_down"}
    local = dict(w_in=w_in, b_in=b_in, w_dil=w_dil, cond=cond, w_skip=w_skip, w_res=w_res, b_res=b_res,
                 b_skip=b_skip, w_h1=w_h1, b_h1=b_h1, w_h2=w_h2, b_h2=b_h2, w_down=w_down, b_down=b_down,
                 dil=dil, roff=roff)
    packed = []
    for name in PACKED_FIELDS:
        t = local[name]
        if t.is_floating_point():
            t = t.to(dtype if name in mats else torch.float32)
        packed.append(t.contiguous().to(device))

    dims = dict(CIN=Cin, F=Fn, K=K, Q=Q, QC=Qc, L=L, START=s.start_class, PP=PP, CR=CR, CH=CH, CS=CS,
                CO=CO, QP=QP, RING=ring)
    return packed, [int(dims[k]) for k in DIMS_FIELDS]


def _dims(dims: list[int]) -> dict:
    return dict(zip(DIMS_FIELDS, dims))


FP32_DOT = ("ieee", "tf32x3")
# Most sequences one program takes by default: 16 makes the downsampling a tensor-core GEMM
# (M = 16 sequences) and serves each weight read to 16 sequences.
MAX_SEQS_PER_PROGRAM = 16
# SMs assumed where no CUDA device is given (the interpreter, ahead-of-time compiles): an
# H100's or H200's count, so the grid rule is exercised and tested on a CPU too.
DEFAULT_SMS = 132


@functools.lru_cache(maxsize=None)
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device=None) -> int:
    """Streaming multiprocessors of ``device`` (a CUDA device), else ``DEFAULT_SMS``."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda":
        return DEFAULT_SMS
    return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())


def default_seqs_per_program(batch: int, sms: int, exact_fp32: bool = False) -> int:
    """The most sequences per program (a power of two, at most ``MAX_SEQS_PER_PROGRAM``) that
    still leaves a program for every SM. Sharing a program's weight reads among its sequences
    only pays once every SM has work: below that it only idles SMs (batch 256 in programs of
    16 would run on 16 of an H100's 132). Exact fp32 ("ieee") dots take one: they run on CUDA
    cores, so more sequences gain no tensor-core downsampling, and wide models' tiles spill."""
    if exact_fp32:
        return 1
    spp = MAX_SEQS_PER_PROGRAM
    while spp > 1 and triton.cdiv(batch, spp) < sms:
        spp //= 2
    return spp


def launch_config(batch: int, dims: list[int], dtype: torch.dtype = torch.float32,
                  seqs_per_program: int | None = None, tile_rows: int | None = None,
                  num_warps: int | None = None, fp32_dot: str = "ieee", sms: int | None = None) -> list[int]:
    """``[BLOCK_B, TILE_M, num_warps, fp32 dot mode]`` for a batch (``CONFIG_FIELDS``); None
    picks a default (chosen from sm_80/sm_90 compiles' register and shared-memory use,
    ``python -m benchmarks.triton_resources``; not yet from timings).

    Sequences per program: ``default_seqs_per_program`` for ``sms`` SMs (the device's,
    ``sm_count``; None: ``DEFAULT_SMS``): one per program until the batch fills the SMs,
    then up to 16 while there are still at least as many programs as SMs. A program walks
    its BLOCK_B x PP rows in tiles of TILE_M rows
    (a power of two, 16 to 128): several whole sequences, or a chunk of one when PP > TILE_M.
    The default keeps the live fp32 tiles (x, skip, filter and gate: C_r + C_s + 2 C_h per
    row) within a register budget. ``fp32_dot``: "ieee" (exact fp32 FMA dots: parity, but
    register-hungry for wide layers) or "tf32x3" (fp32 emulated on tensor cores with three
    TF32 products)."""
    D = _dims(dims)
    PP = D["PP"]
    per_row = D["CR"] + D["CS"] + 2 * D["CH"]
    half = dtype != torch.float32
    if fp32_dot not in FP32_DOT:
        raise ValueError(f"fp32_dot must be one of {FP32_DOT}, got {fp32_dot!r}")
    if seqs_per_program is None:
        seqs_per_program = default_seqs_per_program(batch, DEFAULT_SMS if sms is None else int(sms),
                                                    exact_fp32=not half and fp32_dot == "ieee")
    block_b = triton.next_power_of_2(max(1, int(seqs_per_program)))
    if tile_rows is None:
        tile_rows = (16384 if half else 4096) // per_row
    tile_rows = max(16, min(128, block_b * PP, int(tile_rows)))
    tile_m = 1 << (tile_rows.bit_length() - 1)                      # power of two, rounded down
    if num_warps is None:
        num_warps = 4 if half and tile_m * per_row <= 4096 else 8
    return [block_b, tile_m, int(num_warps), FP32_DOT.index(fp32_dot)]


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _operand_dtype(dtype: torch.dtype):
    """tl.dot operand dtype for weights of ``dtype`` (see ``_group_step``: fp32 for bf16 only
    under the interpreter)."""
    if dtype == torch.bfloat16 and interpreting():
        return tl.float32
    return _TL_DTYPES[dtype]


def _launch_args(packed, dims, config):
    D = _dims(dims)
    block_b, tile_m, _, fp32_dot = config
    PP, CO, QP, P = D["PP"], D["CO"], D["QP"], D["K"] * D["F"]
    down_dot = block_b >= 16
    # Downsampling chunk: a (BLOCK_B, BLOCK_R, QP) product tile on CUDA cores, or the K-dim
    # of a (BLOCK_B x BLOCK_R) @ (BLOCK_R x QP) dot.
    budget = 4096 if not down_dot else 8192
    block_r = max(16, min(PP * CO, 128, triton.next_power_of_2(max(1, budget // (QP * (1 if down_dot else block_b))))))
    # Rows of padded positions (p >= P) are zero: stop at the first chunk past P*CO. That never
    # passes the rows the tiles wrote (``covered`` positions, a multiple of SPAN >= 16: of
    # block_r too), so the scratch needs no zeroing.
    span = min(tile_m, PP)
    covered = triton.cdiv(P, span) * span
    r_end = min(triton.cdiv(P * CO, block_r) * block_r, covered * CO)
    opd = _operand_dtype(packed[2].dtype)
    return dict(
        W=tuple(packed), L=D["L"], CIN=D["CIN"], F=D["F"], K=D["K"], Q=D["Q"], QC=D["QC"], START=D["START"], RING=D["RING"],
        PP=PP, CR=D["CR"], CH=D["CH"], CS=D["CS"], CO=CO, QP=QP,
        BLOCK_B=block_b, TILE_M=tile_m, SPAN=span, BLOCK_R=block_r, R_END=r_end, DOWN_DOT=down_dot,
        OPD=opd, PREC=FP32_DOT[fp32_dot] if opd == tl.float32 else "tf32",
    )


def new_ring(batch: int, dims: list[int], device, dtype) -> torch.Tensor:
    """The history ring buffers of ``batch`` sequences, (B, RING) in the activation dtype."""
    return torch.zeros((batch, _dims(dims)["RING"]), dtype=dtype, device=device)


def _scratch(batch: int, dims: list[int], config: list[int], device, head: bool = True) -> torch.Tensor:
    """The head's output rows the downsampling reads; a placeholder for forced steps (no head)."""
    D = _dims(dims)
    if not head:
        return torch.empty((1,), dtype=torch.float32, device=device)
    rows = triton.cdiv(batch, config[0]) * config[0]
    return torch.empty((rows, D["PP"] * D["CO"]), dtype=torch.float32, device=device)


# Every argument of a launch, by name: the custom ops launch with these, and
# benchmarks/triton_aot.py compiles the same specialisations for a named GPU without one.
# FMA fusion is on explicitly (Triton 3.9 warns that its default will flip).
def _kernel_args(frames, cls, uniforms, temperature, greedy, out, logits, ring, scratch, packed, dims, config):
    return dict(frames_ptr=frames, s_fb=frames.stride(0), s_fc=frames.stride(1), s_ft=frames.stride(2),
                s_ff=frames.stride(3), B=frames.shape[0], cls_ptr=cls, u_ptr=uniforms,
                temperature=1.0 if greedy else float(temperature), out_ptr=out, lg_ptr=logits, ring_ptr=ring,
                scratch_ptr=scratch, GREEDY=greedy, **_launch_args(packed, dims, config),
                num_warps=config[2], enable_fp_fusion=True)


def step_launch(frames, step, cls, uniforms, temperature, out, logits, ring, scratch,
                packed, dims, config, write_logits, sample, step0=0):
    """(grid, keyword arguments) of the ``step_kernel`` launch ``triton_step`` makes: every
    argument by name, so an ahead-of-time compile (benchmarks/triton_aot.py) specialises the
    kernel as the launch does."""
    kwargs = _kernel_args(frames, cls, uniforms, temperature, bool(sample) and temperature == 0, out, logits,
                          ring, scratch, packed, dims, config)
    return (triton.cdiv(frames.shape[0], config[0]),), dict(
        kwargs, j=step, j0=step0, WRITE_LOGITS=bool(write_logits), SAMPLE=bool(sample))


def persistent_launch(frames, n, cond, uniforms, temperature, out, logits, ring, scratch,
                      packed, dims, config, teacher, step0=0, force=False):
    """(grid, keyword arguments) of the ``persistent_kernel`` launch ``triton_persistent`` makes
    (as ``step_launch``); ``force`` (with ``teacher``): forced steps."""
    if force and not teacher:
        raise ValueError("forced steps take their classes as teacher-forced ones do (teacher=True)")
    kwargs = _kernel_args(frames, cond, uniforms, temperature, (not teacher) and temperature == 0, out, logits,
                          ring, scratch, packed, dims, config)
    return (triton.cdiv(frames.shape[0], config[0]),), dict(kwargs, n=n, j0=step0, TEACHER=bool(teacher),
                                                            FORCE=bool(force))


# -- custom ops --------------------------------------------------------------------------------
def _on(device: torch.device):
    """Triton launches on the current CUDA device, not the tensors' one: make it theirs."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


@torch.library.custom_op("fastgen::triton_step", mutates_args=("ring",))
def triton_step(frames: torch.Tensor, step: int, cls: torch.Tensor, uniforms: torch.Tensor,
                temperature: float, ring: torch.Tensor, packed: list[torch.Tensor], dims: list[int],
                config: list[int], write_logits: bool, sample: bool,
                step0: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One step (group ``step`` of ``frames``, step ``step0 + step`` of the generation) of every
    sequence in one launch. ``frames (B, C_in, n*K, F)`` in the engine dtype, ``cls (B,)`` int64 the step's conditioning classes, ``uniforms (B,)``
    fp32, ``ring`` (``new_ring``) updated in place, ``packed``/``dims`` from ``pack_weights``,
    ``config`` from ``launch_config``. Returns ``(logits (B, Q) fp32, or (B, 0) without
    write_logits; sampled classes (B,) int64, = cls without sample)``. Neither write_logits nor
    sample: a forced step (the layers alone advance the ring)."""
    D = _dims(dims)
    B = frames.shape[0]
    logits = frames.new_empty((B, D["Q"] if write_logits else 0), dtype=torch.float32)
    out = cls.to(torch.int64).clone()
    if B == 0:
        return logits, out
    grid, kwargs = step_launch(frames, step, cls.contiguous(), uniforms.contiguous(), temperature, out, logits,
                                ring, _scratch(B, dims, config, frames.device, write_logits or sample), packed, dims,
                                config, write_logits, sample, step0)
    with _on(frames.device):
        step_kernel[grid](**kwargs)
    return logits, out


@triton_step.register_fake
def _(frames, step, cls, uniforms, temperature, ring, packed, dims, config, write_logits, sample, step0=0):
    D = _dims(dims)
    B = frames.shape[0]
    return (frames.new_empty((B, D["Q"] if write_logits else 0), dtype=torch.float32),
            cls.new_empty((B,), dtype=torch.int64))


@torch.library.custom_op("fastgen::triton_persistent", mutates_args=("ring",))
def triton_persistent(frames: torch.Tensor, cond: torch.Tensor, uniforms: torch.Tensor, temperature: float,
                      ring: torch.Tensor, packed: list[torch.Tensor], dims: list[int], config: list[int],
                      teacher: bool, step0: int = 0, force: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``n = frames.shape[2] // K`` steps in one launch, steps ``step0 .. step0 + n - 1`` of
    the generation whose history ``ring`` (``new_ring``) holds; updated in place. Teacher mode:
    ``cond (B, n)`` int64 are the steps' conditioning classes (``reference.shift_conditioning``);
    returns ``(logits (B, n, Q) fp32, a copy of cond)``, or with ``force`` (forced steps: the
    layers alone advance the ring) ``(empty (B, 0, Q), a copy of cond)``. Generate mode:
    ``cond (B,)`` int64 the class conditioning the first step, ``uniforms (B, n)`` fp32; returns
    ``(empty (B, 0, Q), sampled classes (B, n) int64)``."""
    D = _dims(dims)
    B, T = frames.shape[0], frames.shape[2]
    n = T // D["K"]
    logits = frames.new_empty((B, n if teacher and not force else 0, D["Q"]), dtype=torch.float32)
    # generate: column 0 the first step's conditioning class, column j + 1 step j's sample
    out = frames.new_empty((B, n) if teacher else (B, n + 1), dtype=torch.int64)
    if teacher:
        out.copy_(cond)
    else:
        out[:, 0] = cond
    if B == 0 or n == 0:
        return logits, out if teacher else out[:, 1:].clone()
    grid, kwargs = persistent_launch(frames, n, cond.contiguous(), uniforms.contiguous(), temperature, out,
                                      logits, ring, _scratch(B, dims, config, frames.device, not force), packed, dims,
                                      config, teacher, step0, force)
    with _on(frames.device):
        persistent_kernel[grid](**kwargs)
    return logits, out if teacher else out[:, 1:].clone()


@triton_persistent.register_fake
def _(frames, cond, uniforms, temperature, ring, packed, dims, config, teacher, step0=0, force=False):
    D = _dims(dims)
    B, n = frames.shape[0], frames.shape[2] // D["K"]
    return (frames.new_empty((B, n if teacher and not force else 0, D["Q"]), dtype=torch.float32),
            frames.new_empty((B, n), dtype=torch.int64))
