"""Rules the backends' weight packing shares, each written once.

- The conditioning folded into a table over classes: a step's conditioning row of layer l is
  ``cond_emb[c] @ cond_w[l]^T + cond_b[l]``, to which the dilated conv's bias ``dil_b[l]`` is
  always added, so ``table[l, c] = cond_emb[c] @ cond_w[l]^T + cond_b[l] + dil_b[l]`` replaces an
  embedding lookup, a matmul and two bias adds per step by one row read.
- The skip biases of all layers summed: the skip sum starts from it instead of adding one per
  layer.
- The residual projections with one entry per layer: the spec has none for the last layer (its
  output feeds only the skip sum); packers that give every layer the same layout store zeros
  there (``residual_per_layer``).

Both in float64 (from whatever the weights are), so every backend rounds the same sums once,
to its own dtype; the native CPU backend receives them with the weights (``folded``)."""
from __future__ import annotations

import torch

__all__ = ["cond_table", "summed_skip_bias", "residual_per_layer", "folded"]


def cond_table(w: dict) -> torch.Tensor:
    """``(L, cond_classes, 2 C_h)`` float64: see the module docstring."""
    f64 = torch.float64
    return (torch.einsum("ce,loe->lco", w["cond_emb"].to(f64), w["cond_w"].to(f64))
            + w["cond_b"].to(f64)[:, None, :] + w["dil_b"].to(f64)[:, None, :])


def summed_skip_bias(w: dict) -> torch.Tensor:
    """``(C_s,)`` float64: every layer's skip bias, summed."""
    return w["skip_b"].to(torch.float64).sum(0)


def residual_per_layer(w: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``res_w (L, C_r, C_h)`` and ``res_b (L, C_r)`` float64: the spec's ``L - 1`` layers, then
    zeros for the last one."""
    rw, rb = w["res_w"].to(torch.float64), w["res_b"].to(torch.float64)
    return torch.cat([rw, rw.new_zeros(1, *rw.shape[1:])]), torch.cat([rb, rb.new_zeros(1, rb.shape[1])])


def folded(w: dict) -> dict:
    """``w`` with the folded tensors added under ``cond_table`` and ``skip_bias`` (what the native
    CPU packer reads instead of folding them again)."""
    return {**w, "cond_table": cond_table(w), "skip_bias": summed_skip_bias(w)}
