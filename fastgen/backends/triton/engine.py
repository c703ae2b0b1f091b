"""Backends ``triton`` (one kernel launch per step) and ``triton_persistent`` (one launch for the
whole sequence); forced steps (``Engine.force``) launch the same kernels without the head.
Thin wrappers: the weights are packed once here; the kernels and their ``torch.library``
custom ops live in ``ops.py``, the kernels in ``kernels.py``.

Without a GPU they run on CPU tensors through Triton's interpreter, which must be switched on
(``TRITON_INTERPRET=1``) before triton is first imported.

Options (keyword arguments of ``fastgen.create``): ``num_warps``, ``seqs_per_program`` (the
sequences one program owns: 1 gives the most parallelism, 16 puts the downsampling on tensor
cores and shares each weight read among 16 sequences), ``tile_rows`` (rows, i.e. positions of
one or more sequences, per register tile: 16 to 128); None picks by batch size and the
device's SM count, so that the grid has a program for every SM
(``ops.launch_config``). ``fp32_dot`` ("ieee", the default, or "tf32x3") is how
fp32 engines multiply.
"""
from __future__ import annotations

import torch

from ... import reference as ref
from ...engine import Engine

try:
    from . import ops as tk
    _IMPORT_ERROR = None
except Exception as e:  # noqa: BLE001 - triton missing or broken: report why
    tk = None
    _IMPORT_ERROR = e


def unavailable_reason() -> str | None:
    """None when the triton backends can be used here, else why not."""
    if isinstance(_IMPORT_ERROR, ModuleNotFoundError) and (_IMPORT_ERROR.name or "").split(".")[0] == "triton":
        return "triton is not installed: pip install triton (or pip install 'edanet[gpu]')"
    if _IMPORT_ERROR is not None:
        return f"triton could not be imported ({type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR})"
    return None


class TritonEngine(Engine):
    """One launch per step (``torch.ops.fastgen.triton_step``): every layer, the head, the
    downsampling and the sampling of one step of the whole batch."""
    name = "triton"

    def __init__(self, spec, weights, device="cpu", dtype=torch.float32, num_warps: int | None = None,
                 seqs_per_program: int | None = None, tile_rows: int | None = None, fp32_dot: str = "ieee"):
        super().__init__(spec, weights, device, dtype)
        from .. import BackendUnavailable
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailable(reason)
        if self.device.type != "cuda" and not tk.interpreting():
            raise BackendUnavailable(
                "the triton backends run on CUDA, or on the CPU through Triton's interpreter "
                f"(set TRITON_INTERPRET=1 before triton is imported); device is {self.device}")
        if dtype not in tk.SUPPORTED_DTYPES:
            raise ValueError(f"backend {self.name!r} supports dtypes {tk.SUPPORTED_DTYPES}, got {dtype}")
        self.options = dict(num_warps=num_warps, seqs_per_program=seqs_per_program, tile_rows=tile_rows,
                            fp32_dot=fp32_dot)
        self.packed, self.dims = tk.pack_weights(spec, weights, self.device, dtype)
        self._config(1)  # validate the options now

    def _config(self, batch):
        return tk.launch_config(batch, self.dims, self.dtype, sms=tk.sm_count(self.device), **self.options)

    def _empty_logits(self, B):
        return torch.zeros((B, 0, self.spec.num_classes), dtype=self.logits_dtype, device=self.device)

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        B, n = classes.shape
        if n == 0:
            return self._empty_logits(B)
        cond = ref.shift_conditioning(classes, self.spec.start_class).T.contiguous()   # step j's: row j
        ring = tk.new_ring(B, self.dims, self.device, self.dtype)
        no_u = torch.zeros((B,), dtype=torch.float32, device=self.device)
        config = self._config(B)
        out = []
        for j in range(n):
            logits, _ = torch.ops.fastgen.triton_step(frames, j, cond[j], no_u, 1.0, ring,
                                                      self.packed, self.dims, config, True, False)
            out.append(logits)
        return torch.stack(out, 1)

    def _new_history(self, batch):
        return tk.new_ring(batch, self.dims, self.device, self.dtype)

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature, state):
        B, n = uniforms.shape
        out = torch.empty((B, n), dtype=torch.long, device=self.device)
        if n == 0:
            return out
        cls = state.classes
        config = self._config(B)
        u = uniforms.T.contiguous()                     # step j's uniforms: row j, one copy for the call
        for j in range(n):
            _, cls = torch.ops.fastgen.triton_step(frames, j, cls, u[j], temperature,
                                                   state.history, self.packed, self.dims, config, False, True,
                                                   state.steps)
            out[:, j] = cls
        return out

    @torch.no_grad()
    def _force(self, frames, classes, state):
        # one launch per step with neither logits nor sampling: the layers alone (ops.triton_step)
        B, n = classes.shape
        cond = ref.shift_conditioning(classes, state.classes).T.contiguous()         # step j's: row j
        no_u = torch.zeros((B,), dtype=torch.float32, device=self.device)
        config = self._config(B)
        for j in range(n):
            torch.ops.fastgen.triton_step(frames, j, cond[j], no_u, 1.0, state.history, self.packed,
                                          self.dims, config, False, False, state.steps)


class TritonPersistentEngine(TritonEngine):
    """One launch for the whole sequence (``torch.ops.fastgen.triton_persistent``): each program
    loops over the steps of its sequences, the sampled classes fed back in-kernel."""
    name = "triton_persistent"

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        B, n = classes.shape
        if n == 0:
            return self._empty_logits(B)
        cond = ref.shift_conditioning(classes, self.spec.start_class).contiguous()
        no_u = torch.zeros((B, n), dtype=torch.float32, device=self.device)
        ring = tk.new_ring(B, self.dims, self.device, self.dtype)
        logits, _ = torch.ops.fastgen.triton_persistent(frames, cond, no_u, 1.0, ring, self.packed, self.dims,
                                                        self._config(B), True)
        return logits

    @torch.no_grad()
    def _force(self, frames, classes, state):
        # one launch, the steps' classes given as in teacher-forced mode, nothing output
        B, n = classes.shape
        cond = ref.shift_conditioning(classes, state.classes).contiguous()
        no_u = torch.zeros((B, n), dtype=torch.float32, device=self.device)
        torch.ops.fastgen.triton_persistent(frames, cond, no_u, 1.0, state.history, self.packed, self.dims,
                                            self._config(B), True, state.steps, True)

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature, state):
        B, n = uniforms.shape
        if n == 0:
            return torch.empty((B, 0), dtype=torch.long, device=self.device)
        _, out = torch.ops.fastgen.triton_persistent(frames, state.classes, uniforms.contiguous(), temperature,
                                                     state.history, self.packed, self.dims, self._config(B), False,
                                                     state.steps)
        return out
