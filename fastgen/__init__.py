"""fastgen: fast autoregressive generation for conditioned WaveNets.

``fastgen.create(backend, spec, weights)`` packs the weights for one backend once and returns
an engine with ``generate`` (in one call, or continued in chunks from ``engine.start(batch)``)
and ``teacher_forced``. ``fastgen`` knows nothing of EDA or audio.
"""
from .backends import BACKENDS, BackendUnavailable, available, create, resolve
from .engine import Engine, GenerationState, check_memory
from .spec import NetworkSpec, check_weights, random_weights, weight_shapes

__all__ = ["NetworkSpec", "Engine", "GenerationState", "BackendUnavailable", "BACKENDS", "available", "create",
           "resolve", "check_weights", "random_weights", "weight_shapes", "check_memory", "build_info"]
__version__ = "0.1.0"


def build_info() -> dict:
    """What native code this install has, and how it was built (recorded at build time)."""
    import importlib
    import json
    info = {}
    for key, mod in (("cpu", "fastgen._C"), ("cuda", "fastgen._cuda")):
        try:
            info[key] = json.loads(importlib.import_module(mod).build_info())
        except ImportError as e:
            info[key] = f"not built ({e})"
    return info
