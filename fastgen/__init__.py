"""fastgen: fast autoregressive generation for conditioned WaveNets.

``fastgen.create(backend, spec, weights)`` packs the weights for one backend once and returns
an engine with ``generate`` (in one call, or continued in chunks from ``engine.start(batch)``),
``force`` (continue such a state with known classes: priming with a recorded sequence) and
``teacher_forced``. ``fastgen`` knows nothing of EDA or audio.
"""
from .backends import BACKENDS, BackendUnavailable, available, create, resolve
from .engine import Engine, GenerationState, check_memory
from .spec import NetworkSpec, check_weights, random_weights, weight_shapes

__all__ = ["NetworkSpec", "Engine", "GenerationState", "BackendUnavailable", "BACKENDS", "available", "create",
           "resolve", "check_weights", "random_weights", "weight_shapes", "check_memory", "build_info"]
try:        # the distribution (edanet) holds both packages: pyproject.toml's version, written once
    from importlib.metadata import PackageNotFoundError, version as _dist_version
    __version__ = _dist_version("edanet")
except PackageNotFoundError:          # pragma: no cover - a source tree without an install
    __version__ = "0+unknown"


def build_info() -> dict:
    """What native code this install has, and how it was built (recorded at build time). For
    ``cpu``: ``cxx_flags`` (every source), ``isa_paths`` (the instruction-set paths of the hot
    kernels compiled in, best last; ``isa_flags``: what each adds) and ``isa``, the path that
    runs on this CPU (picked when the extension loads; ``FASTGEN_CPU_ISA`` forces one)."""
    import importlib
    import json
    info = {}
    for key, mod in (("cpu", "fastgen._C"), ("cuda", "fastgen._cuda")):
        try:
            module = importlib.import_module(mod)
            info[key] = json.loads(module.build_info())
        except ImportError as e:
            info[key] = f"not built ({e})"
            continue
        if hasattr(module, "cpu_isa"):
            info[key]["isa"] = module.cpu_isa()
    return info
