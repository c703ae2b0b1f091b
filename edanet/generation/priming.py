"""A prime: a recording of the person whose EDA is generated, from the start of the audio, which
the generation continues (``edanet.generate(audio, prime=...)``, ``EDAStream(prime=...)``).

The prime's steps are given, not generated: the values returned for them are the prime's (at
the model's rate), and the engine consumes their classes (teacher forcing that keeps its
history, ``Engine.force``) before it samples the rest, which starts from the prime's last
value. A model with a subject table continues as the training subjects that explain the prime
best (``edanet.generation.people.people_for_prime``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import EDANetConfig
from ..signals import load_eda_file, validate_eda

__all__ = ["load_prime"]


def load_prime(prime, cfg: EDANetConfig) -> np.ndarray:
    """The prime as µS float64 ``(n,)`` at the model's EDA rate: a path to any EDA file the library
    reads (resampled), or a 1-D array already at that rate. ValueError for an empty, non-finite,
    negative or implausible prime, or a model whose output is not µS (a legacy normalized one)."""
    if cfg.eda_representation != "delta":
        raise ValueError("prime needs a model that generates µS (a 'delta' model); this legacy 'normalized' "
                         "model generates levels mapped to a range")
    if isinstance(prime, (str, os.PathLike)):
        values = load_eda_file(Path(prime).expanduser(), cfg.eda_sample_rate).values
    else:
        a = np.asarray(prime.detach().cpu() if hasattr(prime, "detach") else prime)
        if a.ndim != 1:
            raise ValueError(f"prime must be a 1-D array of µS at the model's {cfg.eda_sample_rate} Hz (or a path "
                             f"to an EDA file), got shape {a.shape}")
        values = a
    return validate_eda(values, name="prime")            # float64, non-empty (else ValueError)
