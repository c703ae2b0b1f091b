"""EDA in µS <-> the model's classes: how generated values get a physiological scale.

``codec_for(config)`` gives the codec of a model's ``eda_representation``:

- ``"delta"`` (the default): class ``c_j`` is the quantized *change* from the previous
  reconstructed value (DPCM with error feedback):

      c_j = quantize((e_j - r_{j-1}) / delta_range_us)        r_j = max(0, r_{j-1} + d[c_j])

  with ``r_{-1}`` the start level and ``d[c]`` the class's change in µS (``delta_range_us``
  times the companded bin's midpoint, ``edanet.signals.quantize``). Causal (step j looks at e_j and
  the past only), and invertible: ``decode(encode(e)) == r`` where ``e_j - r_j`` lies within
  the bin of the step's change (error feedback keeps the errors from adding up). A change
  beyond ``delta_range_us`` is carried over to the next steps. The values come out in µS on the
  scale of the training data: no range is needed, only a start level (a model's
  ``initial_eda_us``, the median first value of its training recordings).
- ``"normalized"`` (models saved before the delta representation existed): each recording's
  min-max range mapped to [-1, 1] and quantized; it reads the whole recording (not causal),
  and its output needs a µS range (``default_eda_range_us``) to mean anything.

``class_widths_us`` gives each class's width in µS, so a likelihood can be reported as a
density of the µS value (uniform within the class), comparable across representations.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from ..config import REPRESENTATIONS
from .quantize import bin_edges, class_values, expand, mu_compress, quantize
from .recording import Normalization

__all__ = ["DeltaCodec", "DeltaDecoder", "NormalizedCodec", "codec_for", "REPRESENTATIONS", "FALLBACK_INITIAL_EDA_US"]
#: Start level of a delta model that was never trained (its config has no ``initial_eda_us``):
#: a typical resting skin conductance level.
FALLBACK_INITIAL_EDA_US = 5.0


def _widths(bins: int, companding: str) -> np.ndarray:
    """Widths in ``[-1, 1]`` of classes 1..Q-1 from consecutive companded edges; class 0 (the
    single point -1 of the rounding rule) gets class 1's, the width it has in practice."""
    w = np.diff(expand(bin_edges(bins), bins, companding))
    return np.concatenate([w[:1], w])


@dataclass(frozen=True)
class DeltaCodec:
    bins: int
    companding: str
    delta_range_us: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delta_range_us) and self.delta_range_us > 0):
            raise ValueError(f"delta_range_us must be a positive number of µS, got {self.delta_range_us!r}")

    @property
    def deltas_us(self) -> np.ndarray:
        """The change in µS each class decodes to (float64, ``(bins,)``)."""
        return class_values(self.bins, self.companding) * self.delta_range_us

    def class_widths_us(self) -> np.ndarray:
        return _widths(self.bins, self.companding) * self.delta_range_us

    def encode(self, eda_us, start_us: float) -> np.ndarray:
        """Classes ``(N,)`` int64 of the µS values ``(N,)`` from the start level ``start_us``."""
        e = np.asarray(eda_us, dtype=np.float64).reshape(-1)
        edges = bin_edges(self.bins).tolist()
        table = self.deltas_us.tolist()
        mu, inv = self.bins - 1, 1.0 / self.delta_range_us
        mu_law = self.companding == "mu_law"
        out = np.empty(e.size, dtype=np.int64)
        r = float(start_us)
        for j, v in enumerate(e.tolist()):      # sequential: each step codes against the last decoded value
            y = min(1.0, max(-1.0, (v - r) * inv))
            if mu_law:
                y = mu_compress(y, mu)
            c = bisect.bisect_left(edges, y)     # == np.digitize(y, edges, right=True), as quantize()
            out[j] = c
            r = max(0.0, r + table[c])
        return out

    def decode(self, classes, start_us) -> np.ndarray:
        """µS ``(..., N)`` float64 of classes ``(..., N)`` from ``start_us`` (a number, or one per
        leading index): ``r_j = max(0, r_{j-1} + d[c_j])``, as a reflected cumulative sum."""
        c = np.asarray(classes, dtype=np.int64)
        s = np.broadcast_to(np.asarray(start_us, dtype=np.float64), c.shape[:-1])[..., None]
        if (s < 0).any() or not np.isfinite(s).all():
            raise ValueError(f"start levels must be finite µS >= 0, got {np.unique(s)[:4]}")
        # summed from the start value in step order, as encode() does: identical rounding
        walk = np.cumsum(np.concatenate([s, self.deltas_us[c]], axis=-1), axis=-1)[..., 1:]
        # r_j = S_j - min(0, min_{i<=j} S_i): the Lindley recursion of max(0, r + d) in closed form
        return walk - np.minimum(0.0, np.minimum.accumulate(np.minimum(walk, s), axis=-1))

    def decoder(self, start_us) -> "DeltaDecoder":
        """A decoder of consecutive chunks of classes ``(S, n)`` from ``start_us`` (one per row):
        the concatenated chunks' values equal ``decode`` of the whole sequence, bit for bit."""
        return DeltaDecoder(self, start_us)


class DeltaDecoder:
    """``DeltaCodec.decode`` chunk by chunk. It carries the running sum and the running minimum
    of the closed form (not the last value), so every value is computed with the same float
    operations, in the same order, as in one call."""

    def __init__(self, codec: DeltaCodec, start_us):
        s = np.asarray(start_us, dtype=np.float64).reshape(-1)
        if (s < 0).any() or not np.isfinite(s).all():
            raise ValueError(f"start levels must be finite µS >= 0, got {np.unique(s)[:4]}")
        self.codec = codec
        self._sum = s.copy()          # S_{j-1}: the walk's last value (the start before any step)
        self._min = s.copy()          # min(s, S_0 .. S_{j-1})

    def push(self, classes) -> np.ndarray:
        """µS ``(S, n)`` float64 of the next ``n`` steps' classes ``(S, n)``."""
        c = np.asarray(classes, dtype=np.int64)
        if c.shape[-1] == 0:
            return np.zeros(c.shape, dtype=np.float64)
        walk = np.cumsum(np.concatenate([self._sum[:, None], self.codec.deltas_us[c]], axis=-1), axis=-1)[:, 1:]
        low = np.minimum.accumulate(np.concatenate([self._min[:, None], walk], axis=-1), axis=-1)[:, 1:]
        self._sum, self._min = walk[:, -1].copy(), low[:, -1].copy()
        return walk - np.minimum(0.0, low)


@dataclass(frozen=True)
class NormalizedCodec:
    """Legacy: per-recording min-max normalization to [-1, 1], then quantization."""
    bins: int
    companding: str

    def encode(self, eda_us) -> tuple[np.ndarray, tuple[float, float]]:
        norm = Normalization.fit(eda_us)
        return np.asarray(quantize(norm.apply(eda_us), self.bins, self.companding), np.int64), (norm.lo, norm.hi)

    def decode(self, classes, eda_range_us: tuple[float, float]) -> np.ndarray:
        return Normalization(*eda_range_us).invert(class_values(self.bins, self.companding)[np.asarray(classes)])

    def class_widths_us(self, eda_range_us: tuple[float, float]) -> np.ndarray:
        lo, hi = eda_range_us
        return _widths(self.bins, self.companding) * 0.5 * (hi - lo)


def codec_for(config) -> DeltaCodec | NormalizedCodec:
    """The codec of an ``EDANetConfig``."""
    if config.eda_representation == "delta":
        return DeltaCodec(config.quantization_bins, config.companding, config.delta_range_us)
    return NormalizedCodec(config.quantization_bins, config.companding)
