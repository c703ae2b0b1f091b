"""Backend ``torch``: incremental generation with per-layer history buffers (the Fast WaveNet
queue algorithm generalized to K frames per step), in eager PyTorch; on CUDA the step can be
captured in a CUDA graph; ``compile=True`` runs the step (layers, head and sampling) through
``torch.compile`` (inductor: C++ on a CPU, Triton and CUDA graphs on a GPU): the peer a user
would try before a hand-written kernel, which the benchmarks measure beside eager.

A layer of dilation d needs its input d frames back. Its buffer holds the last d input frames
(B, C_r, d, F); appending the step's K frames gives a (d + K)-frame window whose first K
frames are the "past" taps and last K the "current" taps (which covers d < K, where part of
the past lies in the current group, and d >= K alike)."""
from __future__ import annotations

import torch

from .. import reference as ref
from ..engine import Engine
from ..packing import cond_table


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, spec, weights, device="cpu", dtype=torch.float32, cuda_graph: bool = False,
                 compile: bool = False):
        super().__init__(spec, weights, device, dtype)
        w = {k: v.to(self.device, dtype) for k, v in weights.items()}
        self.w = w
        L = spec.num_layers
        # Packed once: the two dilation taps side by side, and the conditioning folded into a
        # per-layer table over classes (a row lookup per step instead of a matmul).
        self.dil_w = torch.cat([w["dil_w0"], w["dil_w1"]], dim=2)              # (L, 2Ch, 2Cr)
        self.cond_table = cond_table(weights).to(self.device, dtype)              # (L, Qc, 2Ch)
        # The (K, F) output conv as one matrix over a step's (k, f, c) values: (K*F*C_o, Q).
        self.down_w = w["down_w"].reshape(-1, spec.num_classes)
        self.cuda_graph = bool(cuda_graph) and self.device.type == "cuda"
        self._L = L
        # compiled once per input shape (batch); "reduce-overhead" replays CUDA graphs on a GPU
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self._compiled = torch.compile(self._sample_step, dynamic=False, mode=mode) if compile else None

    def _sample_step(self, frames_step, cond, buffers: tuple, u, temperature: float):
        """One sampled step as a function (what ``compile`` compiles): the class and the new buffers."""
        buffers = list(buffers)
        logits = self._step(frames_step, cond, buffers)
        return ref.sample(logits.to(self.logits_dtype), u, temperature), tuple(buffers)

    # One step on the K new frames of every sequence. x: (B, P=K*F, C_in) for positions
    # ordered (k, f); buffers[l]: (B, d_l * F, C_r) holding the last d_l frames, same order.
    # Without `head` (a forced step) only the buffers advance: no skip sums, no last layer's
    # conv (its output feeds only them), no head or downsampling; returns None.
    def _step(self, frames_step, cond, buffers, head=True):
        s, w = self.spec, self.w
        K, Fn, Ch = s.frames_per_step, s.num_features, s.hidden_channels
        P = K * Fn
        x = frames_step @ w["in_w"].T + w["in_b"]                              # (B, P, Cr)
        skip = None
        for l, d in enumerate(s.dilations):
            win = torch.cat([buffers[l], x], dim=1)                            # (B, (d+K)F, Cr)
            past = win[:, :P]
            buffers[l] = win[:, P:]                                            # last d frames
            if not head and l + 1 == self._L:
                return None
            a = torch.cat([past, x], dim=2) @ self.dil_w[l].T + self.cond_table[l][cond][:, None, :]
            z = torch.tanh(a[..., :Ch]) * torch.sigmoid(a[..., Ch:])
            if head:
                sk = z @ w["skip_w"][l].T + w["skip_b"][l]
                skip = sk if skip is None else skip + sk
            if l + 1 < self._L:                                                # none after the last
                x = x + z @ w["res_w"][l].T + w["res_b"][l]
        h = torch.relu(torch.relu(skip) @ w["head1_w"].T + w["head1_b"]) @ w["head2_w"].T + w["head2_b"]
        # h: (B, K*F, Co) -> logits over the (K, F) group.
        return h.reshape(h.shape[0], -1) @ self.down_w + w["down_b"]

    def _init_buffers(self, B):
        s = self.spec
        return [torch.zeros(B, d * s.num_features, s.residual_channels, device=self.device, dtype=self.dtype)
                for d in s.dilations]

    def _steps_input(self, frames):
        # (B, C_in, n*K, F) -> (n, B, K*F, C_in) with positions ordered (k, f)
        B, C, T, Fn = frames.shape
        K = self.spec.frames_per_step
        return frames.reshape(B, C, T // K, K, Fn).permute(2, 0, 3, 4, 1).reshape(T // K, B, K * Fn, C)

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        cond = ref.shift_conditioning(classes, self.spec.start_class)
        buffers = self._init_buffers(frames.shape[0])
        steps = self._steps_input(frames)
        out = [self._step(steps[j], cond[:, j], buffers).to(self.logits_dtype) for j in range(steps.shape[0])]
        if not out:
            return frames.new_zeros(frames.shape[0], 0, self.spec.num_classes, dtype=self.logits_dtype)
        return torch.stack(out, 1)

    def _new_history(self, batch):
        return self._init_buffers(batch)

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature, state):
        B, n = uniforms.shape
        buffers = state.history                    # updated in place (list items replaced)
        steps = self._steps_input(frames)
        out = torch.empty((B, n), dtype=torch.long, device=self.device)
        cond = state.classes
        if self.cuda_graph and n > 0:
            return self._generate_graph(steps, uniforms, temperature, buffers, out, cond)
        step = self._compiled or self._sample_step       # the same step, compiled or eager
        for j in range(n):
            cond, new = step(steps[j], cond, tuple(buffers), uniforms[:, j], temperature)
            buffers[:] = new
            out[:, j] = cond
        return out

    @torch.no_grad()
    def _force(self, frames, classes, state):
        # eagerly, step by step (no CUDA graph: a forced step is the layers alone)
        steps = self._steps_input(frames)
        cond = ref.shift_conditioning(classes, state.classes)
        for j in range(steps.shape[0]):
            self._step(steps[j], cond[:, j], state.history, head=False)

    def _generate_graph(self, steps, uniforms, temperature, buffers, out, cond):
        # Capture one step (buffers updated in place) and replay it n times.
        static_in = steps[0].clone()
        static_u = uniforms[:, 0].clone()
        static_cond = cond.clone()

        def step():
            new_buffers = list(buffers)
            logits = self._step(static_in, static_cond, new_buffers)
            for b_old, b_new in zip(buffers, new_buffers):
                b_old.copy_(b_new)
            static_cond.copy_(ref.sample(logits.to(self.logits_dtype), static_u, temperature))

        s = torch.cuda.Stream(device=self.device)
        s.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(s):  # warm up outside the graph, as CUDA graphs require
            saved = [b.clone() for b in buffers]
            step()
            for b, v in zip(buffers, saved):
                b.copy_(v)
            static_cond.copy_(cond)
        torch.cuda.current_stream(self.device).wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        for j in range(steps.shape[0]):
            static_in.copy_(steps[j])
            static_u.copy_(uniforms[:, j])
            graph.replay()
            out[:, j] = static_cond
        return out
