"""edanet: synthetic electrodermal activity (EDA) from audio with an autoregressive,
multimodal WaveNet. ``edanet.generate(audio)`` runs the bundled default model.

The names below are imported on first use (PEP 562), so ``import edanet`` (and ``edanet
--help``) does not pay for torch until something needs it."""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "EDANetConfig": "config", "PRESETS": "config", "EDANet": "training.model",
    "save_model": "training.checkpoint", "export_to_fastgen": "generation.export",
    "generate": "generation.core", "GeneratedEDA": "generation.core", "Generator": "generation.core",
    "EDAStream": "generation.core", "default_model": "generation.models", "load_model": "generation.models",
    "generate_many": "generation.corpus", "find_clips": "generation.corpus", "clip_seed": "generation.corpus",
    "MissingExtra": "extras", "neurokit": "evaluation.interop", "phasic": "evaluation.metrics",
    "find_scrs": "evaluation.metrics",
}

__all__ = sorted(_EXPORTS)


def _version() -> str:
    """The installed distribution's version: pyproject.toml's, the one place it is written."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("edanet")
    except PackageNotFoundError:        # a source tree on sys.path without an install
        return "0+unknown"




def __getattr__(name: str):
    if name == "__version__":           # read from the package's metadata when first asked
        globals()["__version__"] = _version()
        return globals()["__version__"]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edanet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value          # once: later lookups do not come here
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
