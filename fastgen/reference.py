"""The reference math every backend is checked against: a whole-sequence forward pass and
inverse-CDF sampling, written with plain PyTorch ops straight from ``spec.py``'s equations."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import NetworkSpec

__all__ = ["forward", "sample", "shift_conditioning"]


def shift_conditioning(classes: torch.Tensor, start_class: int | torch.Tensor) -> torch.Tensor:
    """Conditioning class of each group: group j sees ``classes[:, j-1]``, group 0 the start class
    (an int, or one class per sequence ``(B,)``: the class a continued generation's state
    carries, for forced steps)."""
    if isinstance(start_class, torch.Tensor):
        start = start_class.reshape(-1, 1).to(classes)
    else:
        start = torch.full((classes.shape[0], 1), start_class, dtype=classes.dtype, device=classes.device)
    return torch.cat([start, classes], dim=1)[:, :classes.shape[1]]


def forward(spec: NetworkSpec, w: dict[str, torch.Tensor], frames: torch.Tensor,
            cond: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, n, Q)`` for frames ``(B, C_in, n*K, F)`` and per-group conditioning classes
    ``cond (B, n)``. Frames before the first are zeros (causal left padding)."""
    K = spec.frames_per_step
    B, _, T, Fn = frames.shape
    Ch = spec.hidden_channels
    x = torch.einsum("rc,bctf->brtf", w["in_w"], frames) + w["in_b"][None, :, None, None]
    emb = w["cond_emb"][cond]                                       # (B, n, E)
    skip = 0
    for l, d in enumerate(spec.dilations):
        past = F.pad(x, (0, 0, d, 0))[:, :, :T]                     # x[t - d], zeros before 0
        a = (torch.einsum("oc,bctf->botf", w["dil_w0"][l], past)
             + torch.einsum("oc,bctf->botf", w["dil_w1"][l], x)
             + w["dil_b"][l][None, :, None, None])
        c = emb @ w["cond_w"][l].T + w["cond_b"][l]                 # (B, n, 2Ch)
        a = a + c.transpose(1, 2).repeat_interleave(K, dim=2)[..., None]
        z = torch.tanh(a[:, :Ch]) * torch.sigmoid(a[:, Ch:])
        skip = skip + torch.einsum("oc,bctf->botf", w["skip_w"][l], z) + w["skip_b"][l][None, :, None, None]
        if l + 1 < len(spec.dilations):         # the last layer has no residual projection
            x = x + torch.einsum("oc,bctf->botf", w["res_w"][l], z) + w["res_b"][l][None, :, None, None]
    h = torch.relu(skip)
    h = torch.einsum("oc,bctf->botf", w["head1_w"], h) + w["head1_b"][None, :, None, None]
    h = torch.einsum("oc,bctf->botf", w["head2_w"], torch.relu(h)) + w["head2_b"][None, :, None, None]
    # The downsampling as an einsum, not a strided conv2d: cuDNN convolutions may use TF32 on a
    # GPU by default, matmuls do not, and the reference must stay fp32 (or fp64) everywhere.
    n = T // K
    hk = h[:, :, :n * K].reshape(B, h.shape[1], n, K, Fn)
    return torch.einsum("kfcq,bcnkf->bnq", w["down_w"], hk) + w["down_b"]


def sample(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sampling, the rule every backend implements (as nv-wavenet does).

    ``p_i ∝ exp((l_i - max l) / T)``; with the running sum ``c_i = p_0 + ... + p_i`` (in index
    order, fp32 or wider) the sample is ``#{i : c_i <= u * c_{Q-1}}``, clamped to ``Q - 1``.
    ``temperature == 0`` means argmax (lowest index on ties)."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if temperature == 0:
        return logits.argmax(dim=-1)
    e = torch.exp((logits - logits.amax(dim=-1, keepdim=True)) / temperature)
    c = torch.cumsum(e, dim=-1)
    thr = uniforms.to(c.dtype)[..., None] * c[..., -1:]
    return (c <= thr).sum(dim=-1).clamp_(max=logits.shape[-1] - 1)
