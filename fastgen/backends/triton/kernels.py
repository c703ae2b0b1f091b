"""Triton kernels for the ``triton`` and ``triton_persistent`` backends (their packing, launch
configuration and ``torch.library`` ops are in ``ops.py``).

The math is ``fastgen/reference.py`` (``forward`` and ``sample``) evaluated incrementally, one
EDA step (K frames x F positions of every sequence) at a time, as
``fastgen/backends/torch_backend.py`` does it. The reference beside these kernels is
``fastgen/reference.py``; tests/fastgen/test_triton.py holds them to it.

Design
------
* Grid ``(cdiv(B, BLOCK_B),)``: a program owns ``BLOCK_B`` whole sequences (1 while the
  batch does not fill the GPU's SMs: most parallelism, least latency; up to 16 beyond, see
  below and ``launch_config``). Each sequence has
  PP rows (P = K*F positions of a step, ordered p = k*F + f, padded to a power of two PP >=
  16: ``fastgen.spec.padded_size``, as are the channel tiles); the program walks its rows in
  tiles of ``TILE_M`` (16..128) rows: TILE_M / PP whole sequences, or, when PP > TILE_M, a
  chunk of SPAN = TILE_M positions of one (chunks that would hold only padding are skipped). A tile is held in
  registers against channel tiles padded to powers of two >= 16, so every per-layer GEMM is
  one ``tl.dot``: rows x C_r @ C_r x C_h for each dilation tap (past, current) and half
  (filter, gate), rows x C_h @ C_h x C_s (skip) and rows x C_h @ C_h x C_r (residual), then
  the two head convolutions. Accumulation is fp32 and the residual and skip streams stay in
  fp32 registers; the matmul operands, ring buffers and weights are in the engine dtype
  (fp32 / bf16 / fp16). fp32 dots use ``input_precision="ieee"`` (TF32 would miss 1e-4).
* The input 1x1 convolution is outer products on CUDA cores (fp32, one input channel after
  another): unrolled for up to ``CIN_TILE`` input channels, else ``CIN_TILE`` per trip of a
  loop that is not unrolled (C_in padded to whole tiles, the padding masked off). Unrolled
  over a wide input (the ``small`` preset's 64 channels), every channel's loads were issued
  at once and the (C_in, C_r) weights hoisted out of the tile and step loops as loop
  invariants, live across the layers: up to 412 B/thread of spills.
* Weights are packed once (``pack_weights``), zero padded to the tiles and pre-transposed,
  so the kernel loads them with no masks (but a wide input's last tile, above); padded
  channels stay exactly zero through every layer. Biases and the conditioning table are fp32. Conditioning is folded into a
  per-layer table over classes (cond_emb @ cond_w^T + cond_b + dil_b): one row per layer
  and sequence, gathered per row.
* History: per layer and sequence a ring buffer in global memory of (d + K) frames x F x
  C_r(padded); frame t lives in slot t mod (d + K). A step first writes its K new frames of
  the layer input, then, after ``tl.debug_barrier()`` (bar.sync: orders the CTA's global
  stores before its loads), reads the past taps x[t - d] (zeros where t - d < 0). The same
  code covers d >= K (every past tap from earlier steps) and d < K (part of the past tap lies
  in the current group, read back from what was just written). The d + K slots never alias:
  a step touches frames [gK - d, gK + K).
* Everything of a step is one launch, head and sampling included: relu -> head1 -> relu ->
  head2 on the tile; the learned downsampling is a contraction over positions *and*
  channels (not a row-wise GEMM of the tile), so h goes to a per-sequence fp32 scratch row
  (PP*C_o values, L1/L2 resident) and, after a barrier, logits (BLOCK_B x Q) = h-rows @ the
  packed (PP*C_o, Q) down weights, chunk by chunk: ``tl.dot`` when BLOCK_B >= 16, CUDA-core
  multiply-reduce otherwise. Softmax and inverse-CDF sampling (``reference.sample``: cumsum
  in index order, count of c_i <= u * c_{Q-1}, clamped to Q-1; argmax for temperature 0)
  follow in registers, one row per sequence.
* ``step_kernel``: one launch per step; the classes come from the previous launch's output.
  ``persistent_kernel``: one launch for the whole sequence, looping over steps in-kernel,
  the sampled class fed back through the (B, n) output (written and re-read by the same
  program, across a barrier), the uniforms of every step passed in, the ring buffers in
  device memory across steps. Head / downsampling biases are loaded once per program; the
  per-layer weights are re-read every step from L1/L2 (a real model's layers do not fit one
  SM's registers or shared memory).
* Large batches: BLOCK_B = 16 puts the downsampling on tensor cores (M = 16 sequences) and
  divides the per-program weight traffic by 16; 2 to 8 share the weights less. BLOCK_B grows
  only while the grid still has a program for every SM (batch 256 on 132 SMs: one sequence
  per program, 256 programs; 16 per program from 2112 sequences). TILE_M keeps the live fp32
  tiles within a register budget (up to 128 rows, wgmma-sized). Before row chunking, the
  ``base`` preset (PP = 256) ran 256-row tiles: 192 KiB of shared memory in fp32, more than
  an sm_80 block may have.
* Teacher-forced mode (parity tests, likelihoods): ``TEACHER`` reads each step's
  conditioning class from an input instead of the fed-back sample, ``WRITE_LOGITS`` writes
  the fp32 logits of every step, ``SAMPLE`` turns the sampling on.
* Forced steps (priming a generation with known classes, ``Engine.force``): neither
  ``WRITE_LOGITS`` nor ``SAMPLE`` (``persistent_kernel``: ``TEACHER`` and ``FORCE``). Nothing is
  output, so a step runs the layers alone and stops once the last layer's input is in its
  ring: no skip sums, no last layer's dots, no head, scratch or downsampling. The history
  it leaves is the one a sampled step leaves (the same dots on the same values).

The launches are ``torch.library`` custom ops (``torch.ops.fastgen.triton_step`` and
``torch.ops.fastgen.triton_persistent``) with fake implementations, so ``torch.compile``
can trace code that calls them (as opaque ops).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["SUPPORTED_DTYPES", "DIMS_FIELDS", "CONFIG_FIELDS", "step_kernel", "persistent_kernel", "interpreting"]

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# Layout of the ``dims`` int list passed to the ops (the static sizes of one packed model).
DIMS_FIELDS = ("CIN", "F", "K", "Q", "QC", "L", "START", "PP", "CR", "CH", "CS", "CO", "QP", "RING")
# Layout of the ``config`` int list passed to the ops (how a launch is tiled).
CONFIG_FIELDS = ("BLOCK_B", "TILE_M", "num_warps", "FP32_DOT")
# Input channels the input convolution takes per trip of its loop (fully unrolled up to this
# many; wider inputs take several trips). 8 compiled to fewer registers than 16 or 32 for the
# ``small`` preset (python -m benchmarks.triton_resources).
CIN_TILE = tl.constexpr(8)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
@triton.jit
def _group_step(b0, B, j, j0, temperature, io, frames, ring_ptr, scratch_ptr, W, L,
                N: tl.constexpr, C: tl.constexpr, MODE: tl.constexpr):
    """Step (group) ``j`` of this launch's frames, step ``j0 + j`` of the generation, of
    sequences ``b0 .. b0 + BLOCK_B - 1`` (those < B). The history rings are indexed by the
    generation's frame index, so a launch continues the rings an earlier one left.

    The arguments come in groups (tuples):

    - ``io = (cls_ptr, cls_stride, u_ptr, u_stride, out_ptr, out_stride, lg_ptr, lg_stride)``:
      sequence s is conditioned on class ``cls_ptr[s * cls_stride]``; the step writes logits to
      ``lg_ptr[s * lg_stride + q]`` (``WRITE_LOGITS``) and the class sampled with uniform
      ``u_ptr[s * u_stride]`` to ``out_ptr[s * out_stride]`` (``SAMPLE``);
    - ``frames = (frames_ptr, s_fb, s_fc, s_ft, s_ff)``: the frames and their strides;
    - ``W``: the packed weights (``ops.PACKED_FIELDS`` order) and ``L`` the layer count;
    - ``N`` (constexpr): the network's sizes, ``DIMS_FIELDS`` order;
    - ``C`` (constexpr): the launch configuration, ``CONFIG_FIELDS`` order, then ``OPD, PREC``;
    - ``MODE`` (constexpr): ``(WRITE_LOGITS, SAMPLE, GREEDY)``; neither output: a forced step
      (the history advances, nothing else is computed).

    ``DT`` is the engine dtype (weights, ring buffers, matmul operands); ``OPD`` the dtype the
    operands reach ``tl.dot`` in: ``DT`` (the ``.to(OPD)`` are no-ops) except under the
    interpreter for bf16, whose ``tl.dot`` multiplies the raw uint16 storage of bf16 tiles
    (numpy has no bf16): there they go up to fp32 first, which is exact (a bf16 x bf16
    product fits fp32; accumulation is fp32 either way). ``PREC`` is "ieee" for fp32 operands
    ("tf32x3" if asked for), Triton's default otherwise (where it is unused). Helpers such as tanh and sigmoid are
    written inline: every jit-function call costs the interpreter milliseconds."""
    cls_ptr, cls_stride, u_ptr, u_stride, out_ptr, out_stride, lg_ptr, lg_stride = io
    frames_ptr, s_fb, s_fc, s_ft, s_ff = frames
    (w_in_ptr, b_in_ptr, w_dil_ptr, cond_ptr, w_skip_ptr, w_res_ptr, b_res_ptr, b_skip_ptr,
     w_h1_ptr, b_h1_ptr, w_h2_ptr, b_h2_ptr, w_down_ptr, b_down_ptr, dil_ptr, roff_ptr) = W
    # One annotated name per value: unpacking the tuples (CIN, F, ... = N) makes them runtime
    # values when compiled (the interpreter does not mind), and the compiler then rejects PREC.
    CIN: tl.constexpr = N[0]
    F: tl.constexpr = N[1]
    K: tl.constexpr = N[2]
    Q: tl.constexpr = N[3]
    QC: tl.constexpr = N[4]
    START: tl.constexpr = N[5]
    RING: tl.constexpr = N[6]
    PP: tl.constexpr = N[7]
    CR: tl.constexpr = N[8]
    CH: tl.constexpr = N[9]
    CS: tl.constexpr = N[10]
    CO: tl.constexpr = N[11]
    QP: tl.constexpr = N[12]
    BLOCK_B: tl.constexpr = C[0]
    TILE_M: tl.constexpr = C[1]
    SPAN: tl.constexpr = C[2]
    BLOCK_R: tl.constexpr = C[3]
    R_END: tl.constexpr = C[4]
    DOWN_DOT: tl.constexpr = C[5]
    OPD: tl.constexpr = C[6]
    PREC: tl.constexpr = C[7]
    WRITE_LOGITS: tl.constexpr = MODE[0]
    SAMPLE: tl.constexpr = MODE[1]
    GREEDY: tl.constexpr = MODE[2]
    HEAD: tl.constexpr = WRITE_LOGITS or SAMPLE                # else a forced step: the layers alone
    DT = w_dil_ptr.dtype.element_ty
    P: tl.constexpr = K * F
    SEQS: tl.constexpr = TILE_M // SPAN                        # sequences per tile
    CHUNKS: tl.constexpr = (P + SPAN - 1) // SPAN              # tiles per sequence (no all-padding tile)
    offs_m = tl.arange(0, TILE_M)
    offs_cr = tl.arange(0, CR)
    offs_ch = tl.arange(0, CH)
    offs_cs = tl.arange(0, CS)
    offs_co = tl.arange(0, CO)
    offs_q = tl.arange(0, QP)
    qmask = offs_q < Q
    w_rc = offs_cr[:, None] * CH + offs_ch[None, :]            # (CR, CH) tile offsets
    w_hs = offs_ch[:, None] * CS + offs_cs[None, :]            # (CH, CS)
    w_hr = offs_ch[:, None] * CR + offs_cr[None, :]            # (CH, CR)
    sc_prog = scratch_ptr + b0 * (PP * CO)                     # BLOCK_B rows of PP*CO

    # Tile i: rows m hold position p of in-program sequence sb. Chunks of one sequence run in
    # order of p, so a past tap in the current group (d < K) is at a smaller p: already in the
    # ring, written by this chunk (before the barrier) or an earlier one.
    for i in range((BLOCK_B // SEQS) * CHUNKS):
        sb = (i // CHUNKS) * SEQS + offs_m // SPAN
        p = (i % CHUNKS) * SPAN + offs_m % SPAN
        kk = p // F
        ff = p % F
        t = j * K + kk                                         # frame index of each row (this launch)
        ta = (j0 + j).to(tl.int64) * K + kk                    # ... and in the generation (rings)
        pmask = p < P
        seq = b0 + sb
        smask = seq < B
        rmask = pmask & smask
        cls = tl.load(cls_ptr + seq * cls_stride, mask=smask, other=START).to(tl.int32)

        # -- input 1x1 conv: outer products, one input channel after another ----------------
        x = tl.zeros([TILE_M, CR], dtype=tl.float32) + tl.load(b_in_ptr + offs_cr)[None, :]
        fbase = frames_ptr + seq * s_fb + t.to(tl.int64) * s_ft + ff * s_ff
        if CIN <= CIN_TILE:
            for c in tl.static_range(CIN):
                fr = tl.load(fbase + c * s_fc, mask=rmask, other=0.0).to(tl.float32)
                wr = tl.load(w_in_ptr + c * CR + offs_cr).to(tl.float32)
                x += fr[:, None] * wr[None, :]
        else:
            # Wide inputs: CIN_TILE channels per trip of a loop that is not unrolled, so one
            # tile's loads are in flight at a time and no weights are hoisted out of the tile
            # and step loops (see the module docstring). The last trip is masked past C_in
            # (w_in is packed with C_in rows: nothing past them is read).
            for c0 in tl.range(0, CIN, CIN_TILE, loop_unroll_factor=1):
                for cc in tl.static_range(CIN_TILE):
                    c = c0 + cc
                    # (tl.where, not rmask & (c < CIN): the interpreter gives that int32 data)
                    ok = c < CIN
                    fr = tl.load(fbase + c * s_fc, mask=tl.where(ok, rmask, False), other=0.0).to(tl.float32)
                    wr = tl.load(w_in_ptr + c * CR + offs_cr, mask=tl.where(ok, offs_cr < CR, False),
                                 other=0.0).to(tl.float32)
                    x += fr[:, None] * wr[None, :]

        ring_r = ring_ptr + seq * RING
        if HEAD:
            skip = tl.zeros([TILE_M, CS], dtype=tl.float32) + tl.load(b_skip_ptr + offs_cs)[None, :]
            layers = L
        else:
            layers = L - 1                                     # the last layer's output feeds only skip
        for l in range(layers):
            d = tl.load(dil_ptr + l)
            cap = d + K
            ring_l = ring_r + tl.load(roff_ptr + l)
            xa = x.to(DT)
            # Current group first: for d < K part of the past tap lies in this group.
            slot = (ta % cap).to(tl.int32)
            tl.store(ring_l[:, None] + (slot * F + ff)[:, None] * CR + offs_cr[None, :], xa,
                     mask=rmask[:, None])
            tl.debug_barrier()
            tp = ta - d
            pslot = (tl.where(tp >= 0, tp, 0) % cap).to(tl.int32)
            past = tl.load(ring_l[:, None] + (pslot * F + ff)[:, None] * CR + offs_cr[None, :],
                           mask=(rmask & (tp >= 0))[:, None], other=0.0).to(OPD)
            xa = xa.to(OPD)

            # a = W0 x[t-d] + W1 x[t] + table[cls] (= W_c c + b_c + b_dil); filter / gate halves
            wl = w_dil_ptr + l * (4 * CR * CH)
            crow = cond_ptr + (l * QC + cls) * (2 * CH)
            af = tl.load(crow[:, None] + offs_ch[None, :])
            ag = tl.load(crow[:, None] + CH + offs_ch[None, :])
            af = tl.dot(past, tl.load(wl + w_rc).to(OPD), af, input_precision=PREC)
            af = tl.dot(xa, tl.load(wl + 2 * CR * CH + w_rc).to(OPD), af, input_precision=PREC)
            ag = tl.dot(past, tl.load(wl + CR * CH + w_rc).to(OPD), ag, input_precision=PREC)
            ag = tl.dot(xa, tl.load(wl + 3 * CR * CH + w_rc).to(OPD), ag, input_precision=PREC)
            # z = tanh(af) * sigmoid(ag), in forms that cannot overflow
            ef = tl.exp(-2.0 * tl.abs(af))
            th = (1.0 - ef) / (1.0 + ef)
            th = tl.where(af >= 0, th, -th)
            eg = tl.exp(-tl.abs(ag))
            sg = 1.0 / (1.0 + eg)
            sg = tl.where(ag >= 0, sg, eg * sg)
            z = (th * sg).to(DT).to(OPD)
            if HEAD:
                skip = tl.dot(z, tl.load(w_skip_ptr + l * (CH * CS) + w_hs).to(OPD), skip, input_precision=PREC)
            # The last layer's residual is packed as zeros and multiplied: skipping it behind a
            # branch costs registers (spills in 16-bit at sm_80/sm_90, tests/fastgen/test_triton_compile.py).
            x = tl.dot(z, tl.load(w_res_ptr + l * (CH * CR) + w_hr).to(OPD), x, input_precision=PREC)
            x += tl.load(b_res_ptr + l * CR + offs_cr)[None, :]

        if HEAD:
            # -- head ----------------------------------------------------------------------
            hs = tl.maximum(skip, 0.0).to(DT).to(OPD)
            w_h1 = tl.load(w_h1_ptr + offs_cs[:, None] * CO + offs_co[None, :]).to(OPD)
            h1 = tl.dot(hs, w_h1, tl.zeros([TILE_M, CO], tl.float32) + tl.load(b_h1_ptr + offs_co)[None, :],
                        input_precision=PREC)
            h1 = tl.maximum(h1, 0.0).to(DT).to(OPD)
            w_h2 = tl.load(w_h2_ptr + offs_co[:, None] * CO + offs_co[None, :]).to(OPD)
            h = tl.dot(h1, w_h2, tl.zeros([TILE_M, CO], tl.float32) + tl.load(b_h2_ptr + offs_co)[None, :],
                       input_precision=PREC)
            h = tl.where(rmask[:, None], h, 0.0)
            tl.store(sc_prog + (sb * PP + p)[:, None] * CO + offs_co[None, :], h)
        else:
            # a forced step: the last layer's input into its ring, and the step is done
            cap = tl.load(dil_ptr + L - 1) + K
            ring_l = ring_r + tl.load(roff_ptr + L - 1)
            slot = (ta % cap).to(tl.int32)
            tl.store(ring_l[:, None] + (slot * F + ff)[:, None] * CR + offs_cr[None, :], x.to(DT),
                     mask=rmask[:, None])

    if HEAD:                                                   # (a forced step outputs nothing)
        # -- learned downsampling: logits[s, q] = b[q] + sum_{p,o} h[s, p, o] * Wd[p*CO + o, q] --
        tl.debug_barrier()
        offs_b = tl.arange(0, BLOCK_B)
        seqs = b0 + offs_b
        bmask = seqs < B
        offs_r = tl.arange(0, BLOCK_R)
        acc = tl.zeros([BLOCK_B, QP], dtype=tl.float32)
        for r0 in range(0, R_END, BLOCK_R):
            hv = tl.load(sc_prog + offs_b[:, None] * (PP * CO) + r0 + offs_r[None, :])
            wv = tl.load(w_down_ptr + (r0 + offs_r)[:, None] * QP + offs_q[None, :])
            if DOWN_DOT:
                acc = tl.dot(hv.to(DT).to(OPD), wv.to(OPD), acc, input_precision=PREC)
            else:
                acc += tl.sum(hv[:, :, None] * wv.to(tl.float32)[None, :, :], axis=1)
        logits = acc + tl.load(b_down_ptr + offs_q)[None, :]

        if WRITE_LOGITS:
            tl.store(lg_ptr + seqs[:, None] * lg_stride + offs_q[None, :], logits,
                     mask=bmask[:, None] & qmask[None, :])
        if SAMPLE:
            # reference.sample: p_i ∝ exp((l_i - max l) / T); c = cumsum(p) in index order;
            # class = #{i : c_i <= u * c_{Q-1}}, clamped to Q - 1; argmax (lowest index) for T = 0.
            lm = tl.where(qmask[None, :], logits, float("-inf"))
            if GREEDY:
                nxt = tl.argmax(lm, 1, tie_break_left=True)
            else:
                m = tl.max(lm, 1)
                e = tl.where(qmask[None, :], tl.exp((lm - m[:, None]) / temperature), 0.0)
                c = tl.cumsum(e, 1)
                u = tl.load(u_ptr + seqs * u_stride, mask=bmask, other=0.0)
                thr = u * tl.max(c, 1)                             # c is non-decreasing: max = c_{Q-1}
                cnt = tl.sum(((c <= thr[:, None]) & qmask[None, :]).to(tl.int32), 1)
                nxt = tl.minimum(cnt, Q - 1)
            tl.store(out_ptr + seqs * out_stride, nxt, mask=bmask)


@triton.jit(do_not_specialize=["j", "j0"])
def step_kernel(frames_ptr, s_fb, s_fc, s_ft, s_ff, B, j, j0,
                cls_ptr, u_ptr, temperature, out_ptr, lg_ptr, ring_ptr, scratch_ptr,
                W, L,
                CIN: tl.constexpr, F: tl.constexpr, K: tl.constexpr, Q: tl.constexpr,
                QC: tl.constexpr, START: tl.constexpr, RING: tl.constexpr,
                PP: tl.constexpr, CR: tl.constexpr, CH: tl.constexpr, CS: tl.constexpr,
                CO: tl.constexpr, QP: tl.constexpr,
                BLOCK_B: tl.constexpr, TILE_M: tl.constexpr, SPAN: tl.constexpr, BLOCK_R: tl.constexpr, R_END: tl.constexpr,
                DOWN_DOT: tl.constexpr, WRITE_LOGITS: tl.constexpr, SAMPLE: tl.constexpr,
                GREEDY: tl.constexpr, OPD: tl.constexpr, PREC: tl.constexpr):
    b0 = tl.program_id(0).to(tl.int64) * BLOCK_B
    _group_step(b0, B, j, j0, temperature, (cls_ptr, 1, u_ptr, 1, out_ptr, 1, lg_ptr, Q),
                (frames_ptr, s_fb, s_fc, s_ft, s_ff), ring_ptr, scratch_ptr, W, L,
                (CIN, F, K, Q, QC, START, RING, PP, CR, CH, CS, CO, QP),
                (BLOCK_B, TILE_M, SPAN, BLOCK_R, R_END, DOWN_DOT, OPD, PREC), (WRITE_LOGITS, SAMPLE, GREEDY))


@triton.jit(do_not_specialize=["n", "j0"])
def persistent_kernel(frames_ptr, s_fb, s_fc, s_ft, s_ff, B, n, j0,
                      cls_ptr, u_ptr, temperature, out_ptr, lg_ptr, ring_ptr, scratch_ptr,
                      W, L,
                      CIN: tl.constexpr, F: tl.constexpr, K: tl.constexpr, Q: tl.constexpr,
                      QC: tl.constexpr, START: tl.constexpr, RING: tl.constexpr,
                      PP: tl.constexpr, CR: tl.constexpr, CH: tl.constexpr, CS: tl.constexpr,
                      CO: tl.constexpr, QP: tl.constexpr,
                      BLOCK_B: tl.constexpr, TILE_M: tl.constexpr, SPAN: tl.constexpr, BLOCK_R: tl.constexpr, R_END: tl.constexpr,
                      DOWN_DOT: tl.constexpr, TEACHER: tl.constexpr, FORCE: tl.constexpr,
                      GREEDY: tl.constexpr, OPD: tl.constexpr, PREC: tl.constexpr):
    """Generate: ``out (B, n + 1)`` holds in column 0 the class conditioning the first step and
    receives step j's sampled class in column j + 1, which conditions step j + 1. TEACHER: step
    j is conditioned on ``cls (B, n)[:, j]`` and ``lg (B, n, Q)`` receives the logits, or with
    FORCE nothing is written (forced steps: only the history advances). ``j0``: the
    generation's index of the first step (the rings continue from it)."""
    b0 = tl.program_id(0).to(tl.int64) * BLOCK_B
    frames = (frames_ptr, s_fb, s_fc, s_ft, s_ff)
    N: tl.constexpr = (CIN, F, K, Q, QC, START, RING, PP, CR, CH, CS, CO, QP)
    C: tl.constexpr = (BLOCK_B, TILE_M, SPAN, BLOCK_R, R_END, DOWN_DOT, OPD, PREC)
    for j in range(n):
        if TEACHER:
            _group_step(b0, B, j, j0, temperature, (cls_ptr + j, n, u_ptr + j, n, out_ptr + j, n, lg_ptr + j * Q, n * Q),
                        frames, ring_ptr, scratch_ptr, W, L, N, C, (not FORCE, False, False))
        else:
            # Column j (the class of step j - 1) was written by this program before the last barrier.
            _group_step(b0, B, j, j0, temperature,
                        (out_ptr + j, n + 1, u_ptr + j, n, out_ptr + j + 1, n + 1, lg_ptr, 0),
                        frames, ring_ptr, scratch_ptr, W, L, N, C, (False, True, GREEDY))
        # The next step overwrites ring slots and scratch rows this one read, and reads the
        # classes this one wrote.
        tl.debug_barrier()


_INTERPRETED = type(step_kernel).__name__ == "InterpretedFunction"


def interpreting() -> bool:
    """Whether the kernels run under Triton's interpreter (decided when they were defined)."""
    return _INTERPRETED
