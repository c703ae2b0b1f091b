"""The cuda backend's weights in the kernel's layout: the packed blob ("core"), ``down_w`` and
the folded conditioning table; the GEMM path ("fma" or "mma") a network and dtype take."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...packing import cond_table, residual_per_layer
from ...spec import NetworkSpec, check_weights

# The kernel's own limits (csrc/cuda/fastgen_cuda.h), tighter than a NetworkSpec's:
MAX_KERNEL_LAYERS = 128  # FG_MAX_LAYERS: its parameter block holds each layer's dilation and ring offset
MAX_THREADS = 256        # FG_MAX_THREADS: threads per block
DTYPES = (torch.float32, torch.bfloat16, torch.float16)   # the kernel takes its dtype from down_w's
MODE_GENERATE, MODE_TEACHER, MODE_FORCE = 0, 1, 2   # FgMode


def align16(n: int) -> int:
    """``n`` bytes rounded up to the 16-byte alignment of every segment of the packed blob and of
    shared memory (fg_align16 in csrc/cuda/fastgen_cuda.h)."""
    return (n + 15) // 16 * 16


def element_size(dtype: torch.dtype) -> int:
    """Bytes per element of a compute dtype the kernel takes (``DTYPES``); ValueError for another."""
    if dtype not in DTYPES:
        raise ValueError(f"the cuda backend supports float32, bfloat16 and float16, got {dtype}")
    return torch.empty((), dtype=dtype).element_size()


def select_path(spec: NetworkSpec, dtype: torch.dtype, path: str = "auto") -> str:
    """The GEMM path: ``"mma"`` (tensor cores) or ``"fma"``. ``auto`` takes mma for 16-bit dtypes
    when the channel counts allow it; float32 always runs on the FMA path (parity)."""
    element_size(dtype)
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
    es = element_size(dtype)
    Cin, Cr, Ch, Cs, Co, Q = (spec.in_channels, spec.residual_channels, spec.hidden_channels,
                              spec.skip_channels, spec.out_channels, spec.num_classes)
    off, offsets = 0, {}
    for name, nbytes in (("in_w", 4 * Cr * Cin), ("in_b", 4 * Cr), ("down_b", 4 * Q), ("h1b", 4 * Co),
                         ("h2b", 4 * Co), ("h1w", es * Co * Cs), ("h2w", es * Co * Co)):
        offsets[name] = off
        off += align16(nbytes)
    offsets["layers"] = off
    wdil = 0
    wsr = wdil + align16(es * 2 * Ch * 2 * Cr)
    bsr = wsr + align16(es * (Cs + Cr) * Ch)
    stride = bsr + align16(4 * (Cs + Cr))
    return CoreLayout(offsets, stride, {"wdil": wdil, "wsr": wsr, "bsr": bsr}, off + spec.num_layers * stride)


def pack_matrix(w: torch.Tensor, path: str) -> torch.Tensor:
    """A GEMM weight ``(N, Kd)``, flat in the kernel's layout for ``path``: ``W^T`` (k-major) for
    "fma"; for "mma" each 16x8 tile as the 32 lanes' ``mma.m16n8k16`` B fragments."""
    N, Kd = w.shape
    if path == "fma":
        return w.t().contiguous().reshape(-1)
    if N % 8 or Kd % 16:
        raise ValueError(f"mma packing needs N % 8 == 0 and K % 16 == 0, got {N}x{Kd}")
    # element (nt, kt, lane=(g, t), e=(hi, lo)) = W[nt*8 + g, kt*16 + hi*8 + 2t + lo]
    w6 = w.reshape(N // 8, 8, Kd // 16, 2, 4, 2)             # nt, g, kt, hi, t, lo
    return w6.permute(0, 2, 1, 4, 3, 5).contiguous().reshape(-1)


def unpack_matrix(flat: torch.Tensor, N: int, Kd: int, path: str) -> torch.Tensor:
    """Inverse of ``pack_matrix``: the ``(N, Kd)`` matrix."""
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
    put(o["h1w"], pack_matrix(w["head1_w"].to(dtype), path))
    put(o["h2w"], pack_matrix(w["head2_w"].to(dtype), path))
    res_w, res_b = residual_per_layer(w)          # the last layer's zeros: the kernel never reads them
    for l in range(spec.num_layers):
        base = o["layers"] + l * lay.layer_stride
        wdil = torch.cat([w["dil_w0"][l], w["dil_w1"][l]], dim=1)            # (2Ch, 2Cr): [past | cur]
        wsr = torch.cat([w["skip_w"][l], res_w[l]], dim=0)                   # (Cs+Cr, Ch): [skip; res]
        bsr = torch.cat([w["skip_b"][l], res_b[l]])
        put(base + lay.layer_offsets["wdil"], pack_matrix(wdil.to(dtype), path))
        put(base + lay.layer_offsets["wsr"], pack_matrix(wsr.to(dtype), path))
        put(base + lay.layer_offsets["bsr"], bsr.to(f32))
    down = w["down_w"].transpose(0, 1).contiguous().reshape(-1).to(dtype)       # [F][K][Co][Q]: F-split blocks
    cond = cond_table(w)                                                         # (L, Qc, 2Ch), float64
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
        return unpack_matrix(get(off, N * Kd, dt), N, Kd, path)

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
    out["res_w"], out["res_b"] = out["res_w"][:-1], out["res_b"][:-1]         # the last layer's: unread
    K, Fn = spec.frames_per_step, spec.num_features
    out["down_w"] = packed.down.cpu().to(torch.float64).reshape(Fn, K, Co, Q).transpose(0, 1)
    out["cond_table"] = packed.cond_table.cpu().to(torch.float64).reshape(spec.num_layers, spec.cond_classes, 2 * Ch)
    return out
