"""fastgen: fast autoregressive generation for conditioned WaveNets.

``fastgen.create(backend, spec, weights)`` packs the weights for one backend once and returns
an engine with ``generate`` and ``teacher_forced``. ``fastgen`` knows nothing of EDA or audio.
"""
from .backends import BACKENDS, BackendUnavailable, available, create, resolve
from .engine import Engine
from .spec import NetworkSpec, check_weights, random_weights, weight_shapes

__all__ = ["NetworkSpec", "Engine", "BackendUnavailable", "BACKENDS", "available", "create",
           "resolve", "check_weights", "random_weights", "weight_shapes"]
__version__ = "0.1.0"
