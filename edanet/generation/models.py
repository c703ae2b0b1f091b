"""Which model, on which device, in which dtype, with which backend: the bundled default model,
model folders (checked runnable before their weights are read), the device and dtype checks,
and the backend resolution, asked of fastgen once per (backend, device) in a process."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

import fastgen

from ..training.checkpoint import load_model as read_model
from ..training.checkpoint import read_config
from ..training.model import EDANet
from .export import check_network

__all__ = ["DEFAULT_MODEL_DIR", "default_model", "resolve_model", "load_model", "check_device", "check_dtype",
           "resolve_backend", "ENGINE_DTYPES"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"
#: The dtypes an engine may compute in (each backend supports some of them).
ENGINE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_DEFAULT: EDANet | None = None


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> EDANet:
    """Load a model saved by ``edanet.save_model`` (safetensors + JSON; no pickle is ever read):
    its config is read and checked first, the engines' limits and this machine's memory
    included (:func:`edanet.generation.check_network`), then its weights.
    ``FileNotFoundError`` for a missing file, ``ValueError`` for a bad one."""
    check_network(read_config(path))
    return read_model(path, map_location)


def default_model() -> EDANet:
    """The bundled default model (``edanet/assets/default``), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the bundled default model is missing from {DEFAULT_MODEL_DIR}; pass model=... "
                "(a model from edanet.load_model or a model folder path)")
        _DEFAULT = load_model(DEFAULT_MODEL_DIR)
    return _DEFAULT


def resolve_model(model) -> EDANet:
    """``model`` as an EDANet: None is the bundled default model, a path is loaded."""
    if model is None:
        return default_model()
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if not isinstance(model, EDANet):
        raise TypeError(f"model must be an EDANet, a model folder path or None, got {type(model).__name__}")
    return model


def check_device(device) -> torch.device:
    """``device`` as a torch.device (None: cuda when there is a GPU, else cpu): ValueError unless
    it names a CPU or a CUDA device (torch's own error for "bogus" is a RuntimeError)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = "'cpu', 'cuda', 'cuda:N' or a torch.device"
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise TypeError(f"device must be {accepted}, got {type(device).__name__}")
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"device must be {accepted}, got {str(device)[:60]!r}") from None
    if d.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be {accepted}, got {str(device)[:60]!r} (edanet generates on a CPU or "
                         "a CUDA GPU)")
    return d


def check_dtype(dtype) -> None:
    """TypeError unless ``dtype`` is a torch.dtype, ValueError unless one of ``ENGINE_DTYPES``."""
    names = ", ".join(str(d) for d in ENGINE_DTYPES)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch floating point dtype ({names}), got {type(dtype).__name__} "
                        f"{str(dtype)[:60]!r}")
    if dtype not in ENGINE_DTYPES:
        raise ValueError(f"dtype must be a floating point dtype ({names}), got {dtype}")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend ``backend`` names on ``device`` (``auto`` and ``fused`` resolved), asked of
    fastgen once per process and (backend, device): resolving probes every backend's build."""
    return _resolved(backend, str(device))


@functools.lru_cache(maxsize=None)
def _resolved(backend: str, device: str) -> str:
    return fastgen.resolve(backend, torch.device(device))
