"""Backend registry: names -> engines, and the ``fused``/``auto`` choice.

``fused`` is the fastest fused backend available for the device (cuda > triton on a GPU,
cpu on a CPU); ``auto`` is ``fused`` where one is available, else ``torch`` with a warning.
"""
from __future__ import annotations

import importlib
import warnings

import torch

from ..engine import check_memory
from ..spec import NetworkSpec

__all__ = ["BACKENDS", "BackendUnavailable", "available", "resolve", "create"]

BUILD_HINT = "pip install --no-build-isolation -e .   (from the repository root; see README.md)"


class BackendUnavailable(RuntimeError):
    """The backend exists but is not usable here (not built, or needs another device)."""


# name -> (module, class, devices it runs on)
BACKENDS = {
    "reference": ("fastgen.backends.reference_backend", "ReferenceEngine", ("cpu", "cuda")),
    "torch": ("fastgen.backends.torch_backend", "TorchEngine", ("cpu", "cuda")),
    "cpu": ("fastgen.backends.cpu", "CpuEngine", ("cpu",)),
    "triton": ("fastgen.backends.triton.engine", "TritonEngine", ("cuda", "cpu")),
    "triton_persistent": ("fastgen.backends.triton.engine", "TritonPersistentEngine", ("cuda", "cpu")),
    "cuda": ("fastgen.backends.cuda", "CudaEngine", ("cuda",)),
}
FUSED_PREFERENCE = {"cuda": ("cuda", "triton_persistent", "triton"), "cpu": ("cpu",)}


def _engine_class(name: str):
    module, cls, _ = BACKENDS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"backend {name!r} is not available: {e}") from e
    reason = getattr(mod, "unavailable_reason", lambda: None)()
    if reason:
        raise BackendUnavailable(f"backend {name!r} is not available: {reason}")
    return getattr(mod, cls)


def available(device: str | torch.device = "cpu") -> list[str]:
    """Backends that can run on ``device`` on this machine."""
    dev = torch.device(device).type
    out = []
    for name, (_, _, devices) in BACKENDS.items():
        if dev not in devices:
            continue
        try:
            _engine_class(name)
        except BackendUnavailable:
            continue
        if name.startswith("triton") and dev == "cpu" and not _triton_interpret():
            continue
        out.append(name)
    return out


def _triton_interpret() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(name: str, device: str | torch.device = "cpu") -> str:
    """Concrete backend name for ``name`` (which may be ``fused`` or ``auto``) on ``device``."""
    dev = torch.device(device).type
    if name in ("fused", "auto"):
        have = available(device)
        for cand in FUSED_PREFERENCE.get(dev, ()):
            if cand in have:
                return cand
        if name == "fused":
            raise BackendUnavailable(
                f"no fused backend is built for device {dev!r}: build the native extension with\n  {BUILD_HINT}\n"
                "or pass backend='torch'")
        warnings.warn(f"no fused backend available on {dev!r}; falling back to 'torch' "
                      f"(build the extension with: {BUILD_HINT})", RuntimeWarning, stacklevel=3)
        return "torch"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS) + ['fused', 'auto']}")
    if dev not in BACKENDS[name][2]:
        runs_on = " or ".join(BACKENDS[name][2])
        hint = ("this machine has no CUDA GPU (torch.cuda.is_available() is False)"
                if "cuda" in BACKENDS[name][2] and not torch.cuda.is_available() else f"pass device={runs_on!r}")
        raise BackendUnavailable(f"backend {name!r} runs on {runs_on}, not {dev!r}: {hint}; "
                                 f"backend 'fused' or 'auto' picks the best one for the device")
    return name


def create(name: str, spec: NetworkSpec, weights: dict, device: str | torch.device = "cpu",
           dtype: torch.dtype = torch.float32, **options):
    """Build an engine (weights packed once) for backend ``name`` on ``device``.

    Refused with a ValueError before anything is packed when the engine's weights and the
    history of one sequence would exceed ``fastgen.engine.memory_limit`` (see there)."""
    concrete = resolve(name, device)
    _check_fits(spec, device, dtype)
    return _engine_class(concrete)(spec, weights, device=device, dtype=dtype, **options)


def _check_fits(spec: NetworkSpec, device, dtype) -> None:
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a fastgen.NetworkSpec, got {type(spec).__name__} "
                        "(NetworkSpec(**d) builds one from a dict)")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype (e.g. torch.float32), got {dtype!r}")
    check_memory("an engine for this network", {"weights": spec.weight_bytes(dtype),
                                                 "history of one sequence": spec.history_bytes(1, dtype)}, device)
