"""Quantization of normalized EDA values in ``[-1, 1]`` into ``bins`` classes.

Two companding rules, both followed by the same rounding rule:

- ``"mu_law"``: ``y = sign(x) * log1p(mu * |x|) / log1p(mu)`` with ``mu = bins - 1``
  (exactly the formula of ``librosa.mu_compress``);
- ``"linear"``: ``y = x``.

Rounding convention (librosa's)
    The edges are ``e = np.linspace(-1, 1, bins)`` and the class is
    ``np.digitize(y, e, right=True)``: class ``c >= 1`` holds ``e[c-1] < y <= e[c]`` and class
    ``0`` holds only ``y == -1`` (the single point ``x == -1``). Classes run ``0 .. bins-1``.
    For mu-law this is *exactly* librosa's signed output plus an offset of ``bins // 2``::

        librosa.mu_compress(x, mu=bins - 1, quantize=True) + bins // 2 == quantize(x, bins)

    (a signed output offset by 128 for 256 bins). Values outside ``[-1, 1]`` are
    clipped first; NaN raises ``ValueError``.

Decode convention (bin midpoints)
    Each class decodes to the midpoint of its bin *in the companded domain*, then is expanded:
    ``y_c = (e[c-1] + e[c]) / 2 = -1 + (2c - 1) / (bins - 1)`` for ``c >= 1`` and ``y_0 = -1``
    (class 0's bin is the single point -1); mu-law then returns
    ``x_c = sign(y_c) / mu * ((1 + mu) ** |y_c| - 1)`` (librosa.mu_expand's inverse formula,
    applied to the bin midpoint rather than to librosa's ``signed * 2 / bins``). Consequences:
    ``encode(decode(c)) == c`` for every class with a margin of half a bin; the class
    ``bins // 2`` (even ``bins``) decodes to exactly 0; and
    ``|compand(decode(encode(x))) - compand(x)| <= 1 / (bins - 1)`` (half a bin width).

Array kinds: numpy arrays (and scalars / lists) in, numpy out; torch tensors in, torch tensors
out on the same device. Encoding always computes in float64 on the host (through numpy) so
numpy and torch give bit-identical classes; decoding is a lookup in a float64 table of the
``bins`` class values (on the tensor's device for torch). Classes are int64; decoded values
are float64 for numpy and float32 (or ``dtype``) for torch.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..config import COMPANDINGS

__all__ = ["COMPANDINGS", "quantize", "dequantize", "class_values", "bin_edges", "mu_compress", "mu_expand",
           "expand"]


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    if not mod.startswith("torch"):
        return False
    import torch
    return isinstance(x, torch.Tensor)


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"quantization bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def _check_companding(companding: str) -> str:
    if companding not in COMPANDINGS:
        raise ValueError(f"unknown companding {companding!r}; choose one of {COMPANDINGS}")
    return companding


def bin_edges(bins: int) -> np.ndarray:
    """The ``bins`` edges ``np.linspace(-1, 1, bins)`` of the (companded) rounding rule."""
    return np.linspace(-1.0, 1.0, num=_check_bins(bins), endpoint=True)


def mu_compress(y, mu: int):
    """mu-law: ``sign(y) * log1p(mu * |y|) / log1p(mu)`` (librosa.mu_compress's expression, in
    float64) of an array, or of one Python float (with ``math``: a per-step encoder calls it
    once a step, where numpy's call overhead would dominate)."""
    if isinstance(y, float):
        return math.copysign(math.log1p(mu * abs(y)) / math.log1p(mu), y)
    return np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)


def mu_expand(y: np.ndarray, mu: int) -> np.ndarray:
    """The inverse of :func:`mu_compress` (librosa.mu_expand's expression, in float64)."""
    return np.sign(y) / mu * (np.power(1.0 + mu, np.abs(y)) - 1.0)


def expand(y: np.ndarray, bins: int, companding: str) -> np.ndarray:
    """Companded values ``y`` back to ``[-1, 1]`` under ``companding`` with ``bins`` classes."""
    return mu_expand(y, bins - 1) if _check_companding(companding) == "mu_law" else y


@functools.lru_cache(maxsize=64)
def _table(bins: int, companding: str) -> np.ndarray:
    c = np.arange(bins, dtype=np.float64)
    y = -1.0 + (2.0 * c - 1.0) / (bins - 1)
    y[0] = -1.0
    if companding == "mu_law":
        y = mu_expand(y, bins - 1)
        y[0] = -1.0
    y.setflags(write=False)
    return y


def class_values(bins: int, companding: str = "mu_law") -> np.ndarray:
    """The value (in ``[-1, 1]``) that each of the ``bins`` classes decodes to (float64, read-only)."""
    return _table(_check_bins(bins), _check_companding(companding))


def _encode(x: Any, bins: int, companding: str):
    bins = _check_bins(bins)
    torch_in = _is_torch(x)
    if torch_in:
        device = x.device
        arr = x.detach().to("cpu", dtype=__import__("torch").float64).numpy()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"cannot quantize values of dtype {arr.dtype}; expected real numbers in [-1, 1]")
        arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"cannot quantize NaN values ({int(np.isnan(arr).sum())} NaN of {arr.size})")
    y = np.clip(arr, -1.0, 1.0)
    if companding == "mu_law":
        y = mu_compress(y, bins - 1)
    classes = np.digitize(y, bin_edges(bins), right=True).astype(np.int64)
    if torch_in:
        import torch
        return torch.from_numpy(np.array(classes, dtype=np.int64).reshape(arr.shape)).to(device)
    return classes


def _decode(classes: Any, bins: int, companding: str, dtype=None):
    bins = _check_bins(bins)
    table = _table(bins, companding)
    if _is_torch(classes):
        import torch
        if classes.dtype.is_floating_point or classes.dtype.is_complex or classes.dtype == torch.bool:
            raise ValueError(f"classes must be integers, got a tensor of dtype {classes.dtype}")
        if classes.numel():
            lo, hi = int(classes.min()), int(classes.max())
            if lo < 0 or hi >= bins:
                raise ValueError(f"classes must lie in [0, {bins - 1}], found values in [{lo}, {hi}]")
        t = torch.tensor(table, dtype=torch.float64, device=classes.device)
        return t[classes.long()].to(dtype or torch.float32)
    c = np.asarray(classes)
    if c.dtype.kind not in "iu":
        if c.dtype.kind == "f" and c.size and np.all(np.isfinite(c)) and np.all(c == np.round(c)):
            c = c.astype(np.int64)
        elif c.dtype.kind == "f" and c.size == 0:
            c = c.astype(np.int64)
        else:
            raise ValueError(f"classes must be integers, got an array of dtype {c.dtype}")
    if c.size:
        lo, hi = int(c.min()), int(c.max())
        if lo < 0 or hi >= bins:
            raise ValueError(f"classes must lie in [0, {bins - 1}], found values in [{lo}, {hi}]")
    out = table[c.astype(np.int64, copy=False)]
    return out.astype(dtype, copy=False) if dtype is not None else out


def quantize(x, bins: int, companding: str = "mu_law"):
    """Classes (int64, ``0 .. bins-1``) of ``x`` in ``[-1, 1]`` (clipped) under ``companding``:
    ``"mu_law"`` (``mu = bins - 1``; equals ``librosa.mu_compress(x, mu=bins-1, quantize=True) +
    bins // 2``, see the module docstring for the rounding rule) or ``"linear"``
    (``np.digitize(clip(x, -1, 1), np.linspace(-1, 1, bins), right=True)``)."""
    return _encode(x, bins, _check_companding(companding))


def dequantize(classes, bins: int, companding: str = "mu_law", dtype=None):
    """Inverse of :func:`quantize`: the value each class represents (the expanded midpoint of
    each companded bin; linear class 0 is -1)."""
    return _decode(classes, bins, _check_companding(companding), dtype)
