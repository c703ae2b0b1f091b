"""``EDANet``: the PyTorch model used for training, one teacher-forced parallel pass.

Tensors are ``(B, C, T, F)``: T frames, F MFCC coefficients as a spatial axis. The F positions
never mix before the output conv; the K frames of an EDA step mix only through dilations < K.

For every layer (dilation d): a causal kernel-2 conv along T only (taps ``x[t-d]`` and
``x[t]``), plus the previous EDA value's embedding projected to ``2*C_h`` and broadcast over
the step's K frames and the F positions; gate ``tanh(f) * sigmoid(g)``; 1x1 convs into the
skip sum and back onto the residual. Head: ``ReLU -> 1x1 -> ReLU -> 1x1``, then a learned
``(K, F)`` conv with stride ``(K, 1)`` gives ``Q`` logits per EDA step.

``logits[:, :, j]`` depends only on ``eda[:, :j]`` and frames ``[0, (j+1)*K)``.

Who the EDA is of (``config.subject_dim`` > 0): a learned vector per training subject
(``subjects``, one row each) is appended to every frame's channels, constant over the sequence:
the input projection reads it as it reads the features, so the engines run it unchanged (the
exported frames carry it). ``subject_levels`` holds each subject's typical start level (µS).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import EDANetConfig

__all__ = ["EDANet"]


class ResidualLayer(nn.Module):
    """One layer on channel-last tensors ``(B, T, F, C)``: every conv here is a 1x1 or a
    kernel-2 conv along T, i.e. matmuls over the channel axis (far faster on a CPU than
    ``Conv2d`` with so few channels)."""

    def __init__(self, cfg: EDANetConfig, dilation: int, last: bool = False):
        super().__init__()
        self.dilation = dilation
        self.hidden = cfg.hidden_channels
        self.tap_past = nn.Linear(cfg.residual_channels, 2 * cfg.hidden_channels)        # x[t - d] (+ bias)
        self.tap_now = nn.Linear(cfg.residual_channels, 2 * cfg.hidden_channels, bias=False)  # x[t]
        self.cond = nn.Linear(cfg.cond_channels, 2 * cfg.hidden_channels)
        self.skip = nn.Linear(cfg.hidden_channels, cfg.skip_channels)
        # The last layer's residual output feeds nothing: it has no residual projection.
        self.residual = None if last else nn.Linear(cfg.hidden_channels, cfg.residual_channels)

    def forward(self, x, cond_frames):
        # x: (B, T, F, C_r); cond_frames: (B, T, 1, E), the held EDA embedding of each frame's group
        past = F.pad(x, (0, 0, 0, 0, self.dilation, 0))[:, : x.shape[1]]   # causal: zeros before frame 0
        a = self.tap_past(past) + self.tap_now(x) + self.cond(cond_frames)
        z = torch.tanh(a[..., :self.hidden]) * torch.sigmoid(a[..., self.hidden:])
        return (x + self.residual(z) if self.residual is not None else x), self.skip(z)


class EDANet(nn.Module):
    def __init__(self, config: EDANetConfig):
        super().__init__()
        if not isinstance(config, EDANetConfig):
            raise TypeError(f"EDANet needs an EDANetConfig, got {type(config).__name__}")
        self.config = cfg = config
        C, Fn = cfg.model_channels, cfg.num_mfccs
        if cfg.per_coefficient_input:
            # coefficient f's input projection: weight (C_r, C) and bias, as nn.Linear initializes them
            bound = 1.0 / C ** 0.5
            self.input_w = nn.Parameter(torch.empty(Fn, cfg.residual_channels, C).uniform_(-bound, bound))
            self.input_b = nn.Parameter(torch.empty(Fn, cfg.residual_channels).uniform_(-bound, bound))
        else:
            self.input = nn.Linear(C, cfg.residual_channels)
        # Q classes plus one start row: the "previous value" of the first step.
        self.embedding = nn.Embedding(cfg.quantization_bins + 1, cfg.cond_channels)
        n = len(cfg.dilations)
        self.layers = nn.ModuleList(ResidualLayer(cfg, d, last=i == n - 1) for i, d in enumerate(cfg.dilations))
        self.head1 = nn.Linear(cfg.skip_channels, cfg.out_channels)
        self.head2 = nn.Linear(cfg.out_channels, cfg.out_channels)
        K = cfg.spectral_frames_per_eda_step
        # The learned (K, F) downsampling conv with stride (K, 1), as a matmul over each group's
        # K*F*C_o values (weight layout (Q, K, F, C_o); export permutes it to fastgen's).
        self.downsample = nn.Linear(K * cfg.num_mfccs * cfg.out_channels, cfg.quantization_bins)
        if cfg.subject_dim:
            self.subjects = nn.Embedding(max(1, cfg.subject_count), cfg.subject_dim)
            nn.init.normal_(self.subjects.weight, std=0.1)
            self.register_buffer("subject_levels", torch.ones(max(1, cfg.subject_count)))

    def forward(self, mfcc: torch.Tensor, eda: torch.Tensor, *, conditioned: bool = False,
                subject: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, Q, N)`` for MFCC frames ``(B, C_in, N*K, F)`` and EDA classes ``(B, N)``.
        ``conditioned=True``: ``eda`` already holds each step's conditioning class (see
        ``forward_conditioned``). ``subject``: see :meth:`subject_vectors`."""
        self._check(mfcc, eda, conditioned)
        if conditioned:
            return self.forward_conditioned(mfcc, eda, subject)
        start = torch.full_like(eda[:, :1], self.config.start_class)
        return self.forward_conditioned(mfcc, torch.cat([start, eda[:, :-1]], dim=1), subject)

    def subject_vectors(self, subject: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The subject vectors ``(B, subject_dim)`` of ``subject``: row indices ``(B,)`` into the
        subject table (-1: a subject it does not hold), vectors ``(B, subject_dim)`` as they are,
        or None; the table's mean (an average person) for None and -1. None when the model has
        no subjects."""
        if not self.config.subject_dim:
            return None
        mean = self.subjects.weight.mean(0, keepdim=True)
        if subject is None:
            return mean.expand(batch, -1)
        if subject.dtype in (torch.int64, torch.int32):
            rows = subject.long()
            return torch.where((rows >= 0)[:, None], self.subjects(rows.clamp(min=0)), mean)
        return subject.to(self.subjects.weight.dtype)

    def with_subject(self, mfcc: torch.Tensor, subject: torch.Tensor | None) -> torch.Tensor:
        """Frames ``(B, C, T, F)`` with the subject vectors appended as channels (constant over T
        and F): the network's input, and what the engines are given."""
        z = self.subject_vectors(subject, mfcc.shape[0])
        if z is None:
            return mfcc
        B, _, T, Fn = mfcc.shape
        return torch.cat([mfcc, z.to(mfcc.dtype)[:, :, None, None].expand(B, -1, T, Fn)], dim=1)

    def forward_conditioned(self, mfcc: torch.Tensor, cond: torch.Tensor,
                            subject: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, Q, N)`` given each step's conditioning class directly (``cond[:, j]`` is
        the value step j sees as "previous"; the start class is ``config.start_class``)."""
        K = self.config.spectral_frames_per_eda_step
        mfcc = self.with_subject(mfcc, subject)
        B, _, T, Fn = mfcc.shape
        e = self.embedding(cond).repeat_interleave(K, dim=1)[:, :, None, :]   # (B, N*K, 1, E): held K frames
        m = mfcc.permute(0, 2, 3, 1)                                           # (B, T, F, C)
        if self.config.per_coefficient_input:
            x = torch.einsum("btfc,frc->btfr", m, self.input_w) + self.input_b    # (B, T, F, C_r)
        else:
            x = self.input(m)
        skip = 0
        for layer in self.layers:
            x, s = layer(x, e)
            skip = skip + s
        h = self.head2(torch.relu(self.head1(torch.relu(skip))))              # (B, T, F, C_o)
        logits = self.downsample(h.reshape(B, T // K, -1))                    # (B, N, Q)
        return logits.transpose(1, 2)

    def _check(self, mfcc, eda, conditioned=False):
        cfg = self.config
        K, Fn = cfg.spectral_frames_per_eda_step, cfg.num_mfccs
        C = cfg.feature_channels
        if mfcc.dim() != 4 or mfcc.shape[1] != C or mfcc.shape[3] != Fn:
            raise ValueError(f"mfcc must have shape (batch, {C}, N*{K}, {Fn}), got {tuple(mfcc.shape)}")
        if eda.dim() != 2 or eda.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"eda must be integer class indices of shape (batch, N), got {eda.dtype} {tuple(eda.shape)}")
        if mfcc.shape[0] != eda.shape[0] or mfcc.shape[2] != eda.shape[1] * K:
            raise ValueError(f"length mismatch: {mfcc.shape[2]} frames for {eda.shape[1]} EDA steps; "
                             f"need exactly {K} frames per step (batch {mfcc.shape[0]} vs {eda.shape[0]})")
        top = cfg.quantization_bins + (1 if conditioned else 0)
        if eda.numel() and (int(eda.min()) < 0 or int(eda.max()) >= top):
            raise ValueError(f"eda classes must lie in [0, {top})")
