"""Backends ``triton`` and ``triton_persistent``: kernels.py (the Triton kernels), ops.py (packing,
launch configuration, the custom ops), engine.py (the engines). Compiling the launches for a named
GPU architecture on any machine is a build tool: benchmarks/triton_aot.py. Importing this package
does not import triton: ``engine.unavailable_reason()`` says whether it can be used."""
from .engine import TritonEngine, TritonPersistentEngine, unavailable_reason

__all__ = ["TritonEngine", "TritonPersistentEngine", "unavailable_reason"]
