"""Backend ``cpu``: the fused C++ engine (``fastgen._C``, sources in ``csrc/cpu``), called through
the torch dispatcher as the Triton engines are: ``torch.ops.fastgen.cpu_pack``, ``cpu_generate``,
``cpu_force`` and ``cpu_teacher_forced`` (their fake versions, for torch.compile and FakeTensor
tracing, are registered here).

The whole generation loop runs in native code with the GIL released: each step computes every
layer (dilated conv on ring-buffered history, conditioning row, gate, residual and skip) on the
step's K x F positions, the head and the output conv, then samples with the host's uniforms
and feeds the class back. Forced steps (``cpu_force``: their classes given, nothing output)
stop once the last layer's input is in its ring. Sequences are split across OpenMP threads;
with fewer sequences than threads and enough work per step, a sequence's F positions are
(they never mix before the output conv). Weights are packed once, here at construction.
float32 only.

The step's arithmetic is compiled once per instruction-set path (x86-64: baseline, avx2) and
the best one this CPU has runs (``fastgen.build_info()["cpu"]["isa"]``; ``FASTGEN_CPU_ISA``
forces one, for tests): the build is portable unless ``FASTGEN_CPU_ARCH=native`` (setup.py).
"""
from __future__ import annotations

import torch

from ..engine import Engine
from ..packing import folded
from . import BUILD_HINT, BackendUnavailable

try:  # the extension is optional: the registry reports why it cannot be used
    from .. import _C
    _IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the build
    _C = None
    _IMPORT_ERROR = e

SUPPORTED_DTYPES = (torch.float32,)


def unavailable_reason() -> str | None:
    """None when the native CPU engine can be used, else why not (and how to build it)."""
    if _C is None:
        if "FASTGEN_CPU_ISA" in str(_IMPORT_ERROR):   # built, but asked for a path it cannot run
            return f"the native extension fastgen._C did not load: {_IMPORT_ERROR}"
        return f"the native extension fastgen._C is not built ({_IMPORT_ERROR}); run  {BUILD_HINT}"
    if not all(hasattr(torch.ops.fastgen, f)
               for f in ("cpu_pack", "cpu_generate", "cpu_force", "cpu_teacher_forced")):
        return f"the native extension fastgen._C is out of date (no fused CPU engine in it); rebuild with  {BUILD_HINT}"
    return None


if unavailable_reason() is None:
    @torch._library.register_fake_class("fastgen::CpuPacked")
    class _FakeCpuPacked:
        """The packed weights as tracing sees them: their sizes (``__obj_flatten__`` in csrc/cpu/ops.cpp)."""

        def __init__(self, num_classes, cond_classes, ring_stride, nbytes):
            self._sizes = dict(num_classes=num_classes, cond_classes=cond_classes, ring_stride=ring_stride,
                               nbytes=nbytes)

        @classmethod
        def __obj_unflatten__(cls, flat):
            return cls(**dict(flat))

        def num_classes(self):
            return self._sizes["num_classes"]

        def cond_classes(self):
            return self._sizes["cond_classes"]

        def ring_stride(self):
            return self._sizes["ring_stride"]

        def nbytes(self):
            return self._sizes["nbytes"]

    @torch.library.register_fake("fastgen::cpu_generate")
    def _(packed, frames, uniforms, temperature, start_class, num_threads=0, split=-1, rings=None, step0=0,
          first_class=None):
        return frames.new_empty((frames.shape[0], uniforms.shape[1]), dtype=torch.long)

    @torch.library.register_fake("fastgen::cpu_force")
    def _(packed, frames, classes, rings, step0, first_class, num_threads=0, split=-1):
        return None

    @torch.library.register_fake("fastgen::cpu_teacher_forced")
    def _(packed, frames, classes, start_class, num_threads=0, split=-1):
        return frames.new_empty((frames.shape[0], classes.shape[1], packed.num_classes()))


class CpuEngine(Engine):
    name = "cpu"

    def __init__(self, spec, weights, device="cpu", dtype=torch.float32, num_threads: int | None = None,
                 split_positions: bool | None = None):
        """``num_threads``: OpenMP threads of the loop (default: ``torch.get_num_threads()`` at
        each call). ``split_positions``: with fewer sequences than threads, share each sequence's
        F positions among threads (a barrier every step): True always, False never, None
        (default) where a step has enough work to pay for the barrier, and only while the threads
        do not wait long for each other (on a busy machine one thread per sequence goes on alone)."""
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"backend 'cpu' supports dtype {', '.join(map(str, SUPPORTED_DTYPES))} only, got {dtype}")
        if torch.device(device).type != "cpu":
            raise ValueError(f"backend 'cpu' runs on the CPU only, got device {device!r}")
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailable(f"backend 'cpu' is not available: {reason}")
        super().__init__(spec, weights, device, dtype)
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = 0 if num_threads is None else int(num_threads)
        self.split = -1 if split_positions is None else int(bool(split_positions))
        # Packed once, here: a copy in the native layout (later changes to `weights` are not seen).
        self._packed = torch.ops.fastgen.cpu_pack(folded({k: v.detach().to("cpu") for k, v in weights.items()}),
                                                  list(spec.dilations), float(spec.flops_per_step()))

    @property
    def packed_nbytes(self) -> int:
        return self._packed.nbytes()

    def _new_history(self, batch):
        return torch.zeros((batch, self._packed.ring_stride()), dtype=torch.float32)

    def _generate(self, frames, uniforms, temperature, state):
        return torch.ops.fastgen.cpu_generate(self._packed, frames, uniforms.contiguous(), float(temperature),
                                              self.spec.start_class, self.num_threads, self.split,
                                              state.history, state.steps, state.classes)

    def _force(self, frames, classes, state):
        torch.ops.fastgen.cpu_force(self._packed, frames, classes.contiguous(), state.history, state.steps,
                                    state.classes, self.num_threads, self.split)

    def _teacher_forced(self, frames, classes):
        return torch.ops.fastgen.cpu_teacher_forced(self._packed, frames, classes.contiguous(),
                                                    self.spec.start_class, self.num_threads, self.split)
