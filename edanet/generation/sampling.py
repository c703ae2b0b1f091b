"""The sampling inputs of a generation: its seed, the number of samples and the temperature
(checked once, where a generation starts), and the uniform numbers drawn from the seed.

The uniforms are drawn on the host and handed to the engine, so one seed gives the same
samples on every backend and device (fp32). They are drawn one stream per sample
(``UniformStream``), so a stream (``edanet.EDAStream``) or a long file generated block by block
gets the samples of one call with the same seed."""
from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["UniformStream", "draw_uniforms", "fresh_seed", "check_seed", "check_sampling"]


def fresh_seed() -> int:
    """A seed from the OS's entropy (when the caller gives none)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def check_seed(seed) -> None:
    """ValueError unless ``seed`` is None or an integer in [0, 2**63)."""
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
                             or not 0 <= seed < 2 ** 63):
        raise ValueError(f"seed must be an integer in [0, 2**63) or None (a fresh one), got {seed!r}")


def check_sampling(num_samples, temperature) -> None:
    """ValueError unless ``num_samples`` is a positive integer and ``temperature`` a finite
    number >= 0 (numpy scalars are numbers.Integral / numbers.Real too; bool is not a count)."""
    if not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not (isinstance(temperature, numbers.Real) and 0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = most likely class, 1 = the model's "
                         f"distribution), got {temperature!r}")


class UniformStream:
    """The sampling uniforms of a seed, drawn step by step: sample i's numbers are the doubles
    of its own PCG64 stream (``PCG64(seed)`` jumped i times, i.e. 2**127 i draws on), rounded
    to float32. So a generation in chunks of any sizes (a live stream, a long file read in
    blocks) gets exactly the numbers of one call, sample 0 is the same whatever
    ``num_samples`` is, and the numbers are the same on every machine (numpy's PCG64 is
    specified bit for bit)."""

    def __init__(self, seed: int, num_samples: int):
        first = np.random.PCG64(int(seed))
        self._rngs = [np.random.Generator(first.jumped(i) if i else first) for i in range(int(num_samples))]
        self.num_samples = int(num_samples)

    def next(self, n_steps: int) -> torch.Tensor:
        """The uniforms ``(num_samples, n_steps)`` float32 of the next ``n_steps`` steps."""
        u = np.empty((self.num_samples, int(n_steps)), dtype=np.float64)
        for row, rng in zip(u, self._rngs):
            rng.random(out=row)
        return torch.from_numpy(u.astype(np.float32))


def draw_uniforms(seed: int, num_samples: int, n_steps: int) -> torch.Tensor:
    """The sampling uniforms ``(num_samples, n_steps)`` float32 of ``seed``: the first
    ``n_steps`` of ``UniformStream(seed, num_samples)``."""
    return UniformStream(seed, num_samples).next(n_steps)
