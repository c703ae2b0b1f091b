"""Backend ``reference``: recompute the whole receptive field with the reference forward pass at
every step. Slow and obviously right; the bar every other backend is held to."""
from __future__ import annotations

import torch

from .. import reference as ref
from ..engine import Engine


class ReferenceEngine(Engine):
    name = "reference"

    def __init__(self, spec, weights, device="cpu", dtype=torch.float32):
        super().__init__(spec, weights, device, dtype)
        self.w = {k: v.to(self.device, dtype) for k, v in weights.items()}
        # Groups of history one step needs: its last frame sees sum(dilations) frames back.
        K = spec.frames_per_step
        self.back = -(-sum(spec.dilations) // K)

    def _window_logits(self, frames, cond, j):
        K = self.spec.frames_per_step
        g0 = max(0, j - self.back)
        return ref.forward(self.spec, self.w, frames[:, :, g0 * K:(j + 1) * K], cond[:, g0:j + 1])[:, -1]

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        cond = ref.shift_conditioning(classes, self.spec.start_class)
        n = classes.shape[1]
        out = [self._window_logits(frames, cond, j) for j in range(n)]
        return torch.stack(out, 1).to(self.logits_dtype) if out else frames.new_zeros(frames.shape[0], 0, self.spec.num_classes, dtype=self.logits_dtype)

    def _new_history(self, batch):
        # The last (up to) `back` groups of frames and their conditioning classes: all a later
        # step's window can reach (a one-shot call's window starts at most `back` groups back too).
        s = self.spec
        return {"frames": torch.zeros((batch, s.in_channels, 0, s.num_features), dtype=self.dtype, device=self.device),
                "cond": torch.zeros((batch, 0), dtype=torch.long, device=self.device)}

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature, state):
        B, n = uniforms.shape
        h = state.history
        m = h["cond"].shape[1]                       # groups of context before this call's first
        frames = torch.cat([h["frames"], frames], dim=2)
        cond = torch.cat([h["cond"], state.classes[:, None], h["cond"].new_empty((B, max(n - 1, 0)))], dim=1)
        out = torch.empty((B, n), dtype=torch.long, device=self.device)
        for j in range(n):
            logits = self._window_logits(frames, cond, m + j).to(self.logits_dtype)
            out[:, j] = ref.sample(logits, uniforms[:, j], temperature)
            if j + 1 < n:
                cond[:, m + j + 1] = out[:, j]
        self._keep(state, frames, cond[:, :m + n])     # (n = 0: without the next step's class)
        return out

    @torch.no_grad()
    def _force(self, frames, classes, state):
        # Nothing to compute: a later step's window recomputes what it reaches, so forcing is
        # only appending the steps' frames and conditioning classes to the history.
        h = state.history
        self._keep(state, torch.cat([h["frames"], frames], dim=2),
                   torch.cat([h["cond"], ref.shift_conditioning(classes, state.classes)], dim=1))

    def _keep(self, state, frames, cond):
        """The history after the groups of ``frames`` and ``cond`` (the old history's, then the
        call's): their last (up to) ``back`` groups."""
        K, g = self.spec.frames_per_step, cond.shape[1]
        keep = min(self.back, g)
        state.history["frames"] = frames[:, :, (g - keep) * K:g * K].clone()
        state.history["cond"] = cond[:, g - keep:].clone()
