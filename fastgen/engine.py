"""The backend interface and input checks shared by every backend.

An ``Engine`` is built once per (model, backend, device, dtype): that is where weights are
packed into the backend's layout. Its two calls are thin:

- ``generate(frames, uniforms, temperature)``: sample ``n`` steps autoregressively;
- ``teacher_forced(frames, classes)``: the logits of every step for a given class sequence
  (step j conditioned on ``classes[:, j-1]``), for parity tests and likelihoods.
"""
from __future__ import annotations

import torch

from .spec import NetworkSpec, check_weights

__all__ = ["Engine"]


class Engine:
    name = "base"

    def __init__(self, spec: NetworkSpec, weights: dict[str, torch.Tensor],
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        check_weights(spec, weights)
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype

    # -- public calls -------------------------------------------------------------------
    def generate(self, frames: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Classes ``(B, n)`` (int64, on the engine's device) sampled with the host uniforms."""
        frames, n = self._check_frames(frames)
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
        return self._generate(frames, uniforms.to(self.device, torch.float32), float(temperature))

    def teacher_forced(self, frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n, Q)`` for the given class sequence ``(B, n)``: float32 (float64 for a
        float64 engine)."""
        frames, n = self._check_frames(frames)
        classes = torch.as_tensor(classes)
        if tuple(classes.shape) != (frames.shape[0], n):
            raise ValueError(f"classes must have shape (batch, steps) = {(frames.shape[0], n)}, "
                             f"got {tuple(classes.shape)}")
        if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
            raise ValueError(f"classes must be integers (int64), got {classes.dtype}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.spec.num_classes):
            raise ValueError(f"classes must lie in [0, {self.spec.num_classes})")
        return self._teacher_forced(frames, classes.to(self.device, torch.long))

    # -- to implement ---------------------------------------------------------------------
    def _generate(self, frames: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    def _teacher_forced(self, frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def logits_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    # -- helpers --------------------------------------------------------------------------
    def _check_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, int]:
        s = self.spec
        frames = torch.as_tensor(frames)
        if frames.dim() != 4 or frames.shape[1] != s.in_channels or frames.shape[3] != s.num_features:
            raise ValueError(f"frames must have shape (batch, {s.in_channels}, steps*{s.frames_per_step}, "
                             f"{s.num_features}), got {tuple(frames.shape)}")
        if frames.shape[2] % s.frames_per_step:
            raise ValueError(f"frame count {frames.shape[2]} is not a multiple of frames_per_step "
                             f"{s.frames_per_step}; trim to whole steps")
        if not torch.isfinite(frames).all():
            raise ValueError("frames contain NaN or inf")
        return frames.to(self.device, self.dtype).contiguous(), frames.shape[2] // s.frames_per_step
