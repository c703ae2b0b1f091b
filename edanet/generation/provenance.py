"""How a generation was made, recorded beside everything it writes: the model (its name, its
weights' sha256 and where they came from), the library's version, the backend, the seed, the
temperature, the start levels, the sample rate, the prime.

A model loaded from a folder is identified by the sha256 of its ``model.safetensors`` (what
``sha256sum`` prints); a model built in memory by the sha256 of its weights as safetensors
would store them. The hash of a file is computed once per file version (path, size, mtime).
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = ["model_identity", "provenance", "file_sha256"]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file (hex), computed once per version of it."""
    st = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def model_identity(model) -> dict:
    """``{"name", "sha256", "path"}`` of an ``EDANet``: its folder's name and its weights file's hash
    when it was loaded from one (``model.source``), else ``"in memory"`` and the hash of its
    weights."""
    from .models import DEFAULT_MODEL_DIR
    source = getattr(model, "source", None)
    if source is not None and (Path(source) / "model.safetensors").is_file():
        folder = Path(source)
        name = "edanet bundled default" if folder.resolve() == DEFAULT_MODEL_DIR.resolve() else folder.name
        return {"name": name, "sha256": file_sha256(folder / "model.safetensors"), "path": str(folder)}
    from safetensors.torch import save
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {"name": "in memory", "sha256": hashlib.sha256(save(state)).hexdigest(), "path": None}


def provenance(model, *, backend: str, seed: int, temperature: float, num_samples: int, start_us,
               sample_rate: float, prime_steps: int = 0, identity: dict | None = None) -> dict:
    """The provenance record of one generation (JSON-ready)."""
    from .. import __version__
    start = np.asarray(start_us, dtype=np.float64).reshape(-1) if start_us is not None else None
    return {"generated_by": f"edanet {__version__}", "edanet_version": __version__,
            "model": identity if identity is not None else model_identity(model), "backend": backend,
            "seed": int(seed), "temperature": float(temperature), "num_samples": int(num_samples),
            "start_eda_us": None if start is None else [round(float(x), 6) for x in start],
            "sample_rate_hz": float(sample_rate), "prime_steps": int(prime_steps),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
