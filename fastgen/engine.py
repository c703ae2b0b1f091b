"""The backend interface and input checks shared by every backend.

An ``Engine`` is built once per (model, backend, device, dtype): that is where weights are
packed into the backend's layout. Its calls are thin:

- ``generate(frames, uniforms, temperature, state=None)``: sample ``n`` steps
  autoregressively. With a ``state`` (from ``start(batch)``) the call continues where the
  last one on that state stopped: the history ring buffers, the step count and the class
  that conditions the next step are carried over, so generating in chunks of any sizes gives
  exactly the classes of one call;
- ``force(frames, classes, state)``: continue a state with ``n`` known classes (a recorded
  sequence to prime the generation with) as if they had been sampled: the history, the step
  count and the class that conditions the next step advance exactly as ``generate`` would
  advance them had it sampled ``classes``; the backends skip what a sampled step needs only
  for its sample (skip sums, head, downsampling, sampling) where that is simple;
- ``teacher_forced(frames, classes)``: the logits of every step for a given class sequence
  (step j conditioned on ``classes[:, j-1]``), for parity tests and likelihoods.

All three refuse a call whose memory estimate (weights, history ring buffers, outputs) exceeds
``memory_limit``: a long input with many classes must fail with the sizes, not exhaust the
machine's memory halfway through an allocation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from .spec import NetworkSpec, check_weights

__all__ = ["Engine", "GenerationState", "memory_limit", "check_memory", "MAX_BYTES_ENV"]

MAX_BYTES_ENV = "FASTGEN_MAX_BYTES"
# Shares of a device's memory one engine may plan to use: half of the host's RAM (a trainer
# or the rest of the program usually shares it), most of a GPU's (dedicated to the work).
HOST_FRACTION = 0.5
GPU_FRACTION = 0.9


def _physical_memory() -> int | None:
    """The memory this process can have: the host's RAM, or less under an address-space cap
    (``ulimit -v``: allocations beyond it fail however much RAM there is)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):     # no sysconf (Windows) or the name is unknown
        physical = None
    try:
        import resource
        cap = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):        # not POSIX
        cap = -1
    if cap < 0:                                       # RLIM_INFINITY is -1: no cap
        return physical
    return cap if physical is None else min(physical, cap)


def memory_limit(device: str | torch.device = "cpu") -> int | None:
    """Bytes an engine on ``device`` may plan to use: ``$FASTGEN_MAX_BYTES`` when set, else a
    share of the device's memory (None where it cannot be told: no limit)."""
    env = os.environ.get(MAX_BYTES_ENV, "").strip()
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not value >= 1 or value == float("inf"):
            raise ValueError(f"{MAX_BYTES_ENV}={env!r} is not a number of bytes (e.g. 8e9); unset it or fix it")
        return int(value)
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory * GPU_FRACTION)
    physical = _physical_memory()
    return None if physical is None else int(physical * HOST_FRACTION)


def check_memory(what: str, parts: dict[str, int], device: str | torch.device = "cpu") -> None:
    """Raise ValueError when the estimated ``parts`` (name -> bytes) exceed ``memory_limit``."""
    total = sum(parts.values())
    limit = memory_limit(device)
    if limit is None or total <= limit:
        return
    detail = ", ".join(f"{k} {v / 2**30:.3g} GiB" for k, v in parts.items())
    raise ValueError(f"{what} would need about {total / 2**30:.3g} GiB ({detail}), more than the "
                     f"{limit / 2**30:.3g} GiB fastgen allows on {torch.device(device)}; use a shorter input, a "
                     f"smaller batch or a smaller model (or set {MAX_BYTES_ENV} to a number of bytes to change "
                     "the limit)")


@dataclass
class GenerationState:
    """Where a batch of sequences stands between ``Engine.generate`` calls (``Engine.start``).

    ``steps``: steps generated so far; ``classes`` ``(B,)`` int64: the class that conditions
    each sequence's next step (the start class before the first); ``history``: the backend's
    history ring buffers, in its own layout. Updated in place by every ``generate`` and
    ``force`` call on it; it belongs to the engine that made it."""
    backend: str
    batch: int
    steps: int
    classes: torch.Tensor
    history: Any
    engine_id: int = 0


class Engine:
    name = "base"

    def __init__(self, spec: NetworkSpec, weights: dict[str, torch.Tensor],
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        check_weights(spec, weights)
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype

    # -- public calls -------------------------------------------------------------------
    def start(self, batch: int) -> GenerationState:
        """A fresh state for ``batch`` sequences: no history, the start class next."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ValueError(f"batch must be an integer >= 0, got {batch!r}")
        check_memory(f"{self.name} history of {batch} sequence(s)",
                     {"history": self.spec.history_bytes(batch, self.dtype)}, self.device)
        return self._fresh_state(batch)

    def _fresh_state(self, batch: int) -> GenerationState:
        classes = torch.full((batch,), self.spec.start_class, dtype=torch.long, device=self.device)
        return GenerationState(self.name, batch, 0, classes, self._new_history(batch), id(self))

    def generate(self, frames: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0,
                 state: GenerationState | None = None) -> torch.Tensor:
        """Classes ``(B, n)`` (int64, on the engine's device) sampled with the host uniforms.

        ``state`` (from ``start``): continue those sequences (``frames`` and ``uniforms`` are
        then the next ``n`` steps'); the state is updated in place. Without one, a fresh
        generation from the start class."""
        # out (int64) and the device copy of the uniforms (float32)
        frames, n = self._check_frames(frames, "generate", out_bytes_per_step=8 + 4)
        if state is not None:
            self._check_state(state, frames.shape[0])
        uniforms = torch.as_tensor(uniforms)
        if tuple(uniforms.shape) != (frames.shape[0], n):
            raise ValueError(f"uniforms must have shape (batch, steps) = {(frames.shape[0], n)}, "
                             f"got {tuple(uniforms.shape)}")
        if not uniforms.is_floating_point():
            raise ValueError(f"uniforms must be floating point numbers in [0, 1] (torch.rand), got {uniforms.dtype}")
        if uniforms.numel() and not ((uniforms >= 0) & (uniforms <= 1)).all():
            raise ValueError("uniforms must lie in [0, 1] (torch.rand; not torch.randn), got values in "
                             f"[{uniforms.min().item():g}, {uniforms.max().item():g}] or NaN")
        if not (temperature >= 0 and temperature < float("inf")):
            raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
        if temperature < torch.finfo(torch.float32).tiny:
            temperature = 0.0    # dividing by it in fp32 would give inf/NaN; its limit is the argmax
        if state is None:               # _check_frames has checked the history's memory
            state = self._fresh_state(frames.shape[0])
        out = self._generate(frames, uniforms.to(self.device, torch.float32), float(temperature), state)
        if n:
            state.classes = out[:, -1].clone()
        state.steps += n
        return out

    def force(self, frames: torch.Tensor, classes: torch.Tensor, state: GenerationState) -> None:
        """Continue ``state``'s sequences with ``n`` known classes instead of sampled ones
        (priming: a recorded sequence that ``generate(..., state=state)`` then carries on).

        ``frames (B, C_in, n*K, F)`` are those steps' frames and ``classes (B, n)`` integers in
        ``[0, num_classes)`` their classes; ``state`` (from ``start(B)``, required) is updated in
        place exactly as a ``generate`` call on it that sampled ``classes`` would update it:
        the history advances by the ``n`` steps, ``steps += n`` and ``state.classes`` becomes
        ``classes[:, -1]`` (unchanged for ``n = 0``). Forced steps output nothing, so they cost
        less than generated ones where the backend skips the head. Input and memory checks as
        for ``generate`` and ``teacher_forced`` (ValueError)."""
        # the device copy of the classes (int64)
        frames, n = self._check_frames(frames, "force", out_bytes_per_step=8)
        if state is None:
            raise ValueError("force needs the state to continue (engine.start(batch)): forced steps output nothing, "
                             "they only advance a state")
        self._check_state(state, frames.shape[0])
        classes = self._check_classes(classes, frames.shape[0], n)
        if n and frames.shape[0]:
            self._force(frames, classes, state)
        if n:
            state.classes = classes[:, -1].clone()
        state.steps += n

    def teacher_forced(self, frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n, Q)`` for the given class sequence ``(B, n)``: float32 (float64 for a
        float64 engine)."""
        # the logits and the device copy of the classes (int64)
        out = self.spec.num_classes * torch.empty((), dtype=self.logits_dtype).element_size()
        frames, n = self._check_frames(frames, "teacher_forced", out_bytes_per_step=out + 8)
        return self._teacher_forced(frames, self._check_classes(classes, frames.shape[0], n))

    # -- to implement ---------------------------------------------------------------------
    def _new_history(self, batch: int) -> Any:
        """The history of ``batch`` fresh sequences (zeros), in the backend's layout."""
        raise NotImplementedError

    def _generate(self, frames: torch.Tensor, uniforms: torch.Tensor, temperature: float,
                  state: GenerationState) -> torch.Tensor:
        """Sample the next ``n`` steps of ``state``'s sequences: step ``state.steps + j``,
        the first conditioned on ``state.classes``; update ``state.history`` in place (the
        caller updates ``steps`` and ``classes``)."""
        raise NotImplementedError

    def _force(self, frames: torch.Tensor, classes: torch.Tensor, state: GenerationState) -> None:
        """Advance ``state.history`` in place by the ``n >= 1`` steps of ``frames`` (``B >= 1``)
        with the given classes: step ``state.steps + j`` conditioned on ``state.classes`` for
        ``j = 0``, else on ``classes[:, j-1]`` (the caller updates ``steps`` and ``classes``)."""
        raise NotImplementedError

    def _teacher_forced(self, frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def logits_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    # -- helpers --------------------------------------------------------------------------
    def _check_state(self, state: GenerationState, batch: int) -> None:
        if not isinstance(state, GenerationState) or state.engine_id != id(self):
            raise ValueError("state must come from this engine's start(batch) (a state holds the history in "
                             "its engine's layout)")
        if state.batch != batch:
            raise ValueError(f"the state is for {state.batch} sequence(s), frames hold {batch}")
        c = state.classes
        if (not isinstance(c, torch.Tensor) or tuple(c.shape) != (state.batch,) or c.dtype != torch.long
                or (c.numel() and not (0 <= int(c.min()) and int(c.max()) < self.spec.cond_classes))):
            raise ValueError(f"state.classes must be {state.batch} int64 classes in [0, {self.spec.cond_classes}) "
                             "(the kernels index the conditioning table with them)")

    def _check_classes(self, classes, batch: int, n: int) -> torch.Tensor:
        """``classes`` as int64 on the engine's device, checked: shape ``(batch, n)``, integers in
        ``[0, num_classes)``."""
        classes = torch.as_tensor(classes)
        if tuple(classes.shape) != (batch, n):
            raise ValueError(f"classes must have shape (batch, steps) = {(batch, n)}, got {tuple(classes.shape)}")
        if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
            raise ValueError(f"classes must be integers (int64), got {classes.dtype}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.spec.num_classes):
            raise ValueError(f"classes must lie in [0, {self.spec.num_classes})")
        return classes.to(self.device, torch.long)

    def _check_frames(self, frames: torch.Tensor, call: str, out_bytes_per_step: int) -> tuple[torch.Tensor, int]:
        s = self.spec
        frames = torch.as_tensor(frames)
        if frames.dim() != 4 or frames.shape[1] != s.in_channels or frames.shape[3] != s.num_features:
            raise ValueError(f"frames must have shape (batch, {s.in_channels}, steps*{s.frames_per_step}, "
                             f"{s.num_features}), got {tuple(frames.shape)}")
        if frames.shape[2] % s.frames_per_step:
            raise ValueError(f"frame count {frames.shape[2]} is not a multiple of frames_per_step "
                             f"{s.frames_per_step}; trim to whole steps")
        # before anything is converted or allocated: sizes only, so it costs nothing
        B, n = frames.shape[0], frames.shape[2] // s.frames_per_step
        check_memory(f"{self.name} {call} of {B} sequence(s) x {n} steps", {
            "weights": s.weight_bytes(self.dtype), "history": s.history_bytes(B, self.dtype),
            "frames and outputs": B * n * (out_bytes_per_step
                                           + s.positions_per_step * s.in_channels * _element_size(self.dtype))},
            self.device)
        if not torch.isfinite(frames).all():
            raise ValueError("frames contain NaN or inf")
        return frames.to(self.device, self.dtype).contiguous(), frames.shape[2] // s.frames_per_step


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
