"""The one bridge from ``edanet`` to ``fastgen``: an ``EDANet`` as a ``NetworkSpec`` + weights,
and its input frames in the layout that spec reads (``engine_frames``).

fastgen's input projection is one matrix shared by every position f. A model with an input
projection per MFCC coefficient (``per_coefficient_input``) is exported as one block-diagonal
projection over scattered frames: position f's input vector holds its C feature values in
slots ``[f*C, (f+1)*C)``, zeros elsewhere, and a 1 in slot ``F*C + f`` for its bias, so
``in_w = [W_0 | ... | W_{F-1} | b_0 | ... | b_{F-1}]`` gives exactly ``W_f @ x + b_f``.
"""
from __future__ import annotations

import torch

from fastgen import NetworkSpec, check_weights
from fastgen.engine import MAX_BYTES_ENV, memory_limit
from fastgen.spec import MAX_CHANNELS, MAX_FRAMES_PER_STEP, MAX_LAYERS

from ..config import MAX_LAYERS_PER_STACK, EDANetConfig
from ..training.model import EDANet

__all__ = ["export_to_fastgen", "engine_frames", "engine_channels", "network_spec", "check_network"]

#: A model's float32 parameters up to this size fit any machine: no memory limit is asked for.
SMALL_MODEL_BYTES = 256 * 2**20


def engine_channels(cfg) -> int:
    """Input channels of the exported spec (see the module docstring): the network's channels
    (frames and subject vector), scattered per coefficient when each has its own projection."""
    C = cfg.model_channels
    return cfg.num_mfccs * (C + 1) if cfg.per_coefficient_input else C


def engine_frames(frames, cfg):
    """Model input frames ``(B, C, T, F)`` (torch) in the exported spec's layout: unchanged for a
    shared input projection, scattered (module docstring) for one per coefficient."""
    if not cfg.per_coefficient_input:
        return frames
    B, C, T, Fn = frames.shape
    out = frames.new_zeros(B, Fn * (C + 1), T, Fn)
    for f in range(Fn):
        out[:, f * C:(f + 1) * C, :, f] = frames[..., f]
        out[:, Fn * C + f, :, f] = 1.0
    return out


def _input_weights(model: EDANet) -> dict[str, torch.Tensor]:
    if not model.config.per_coefficient_input:
        return {"in_w": model.input.weight, "in_b": model.input.bias}
    w, b = model.input_w, model.input_b                        # (F, C_r, C), (F, C_r)
    in_w = torch.cat([w.permute(1, 0, 2).reshape(w.shape[1], -1), b.T], dim=1)
    return {"in_w": in_w, "in_b": torch.zeros_like(b[0])}


def network_spec(cfg: EDANetConfig) -> NetworkSpec:
    """The network fastgen runs for a model of ``cfg``: the one mapping of a config's sizes onto
    a ``NetworkSpec`` (whose constructor refuses what fastgen cannot run)."""
    return NetworkSpec(
        in_channels=engine_channels(cfg), num_features=cfg.num_mfccs, frames_per_step=cfg.spectral_frames_per_eda_step,
        residual_channels=cfg.residual_channels, hidden_channels=cfg.hidden_channels,
        skip_channels=cfg.skip_channels, out_channels=cfg.out_channels, num_classes=cfg.quantization_bins,
        cond_classes=cfg.quantization_bins + 1, cond_channels=cfg.cond_channels, dilations=cfg.dilations,
        start_class=cfg.start_class)


def check_network(cfg: EDANetConfig) -> None:
    """ValueError, in the config's own terms and before any weight is allocated, when the
    engines cannot run a model of ``cfg`` (frames per step, layers and input channels beyond
    fastgen's limits, then anything else :func:`network_spec` refuses, one sequence's history
    included) or when its float32 parameters exceed the memory fastgen allows here
    (``fastgen.engine.memory_limit``; a model under ``SMALL_MODEL_BYTES`` fits any machine)."""
    K = cfg.spectral_frames_per_eda_step
    if K > MAX_FRAMES_PER_STEP:
        raise ValueError(f"audio_sample_rate / (eda_sample_rate * mfcc_hop_size) = {cfg.audio_sample_rate} / "
                         f"({cfg.eda_sample_rate} * {cfg.mfcc_hop_size}) = {K} MFCC frames per EDA step, "
                         f"more than fastgen's {MAX_FRAMES_PER_STEP}; use a longer mfcc_hop_size")
    L, S = cfg.layers_per_stack, cfg.num_stacks
    if L * S > MAX_LAYERS:
        raise ValueError(f"context_size_in_seconds={cfg.context_size_in_seconds:g} s at {cfg.frame_rate:g} "
                         f"frames/s ({cfg.target_receptive_field_frames} frames) needs {S} stacks of {L} "
                         f"layers = {L * S} layers, more than fastgen's {MAX_LAYERS}; use a shorter context, "
                         f"a larger max_layers_per_stack (at most {MAX_LAYERS_PER_STACK}) or a longer "
                         f"mfcc_hop_size")
    inputs = engine_channels(cfg)
    if inputs > MAX_CHANNELS:
        raise ValueError(f"per_coefficient_input with num_mfccs={cfg.num_mfccs} and {cfg.model_channels} input "
                         f"channel(s) gives the exported network {inputs} input channels (num_mfccs x (channels + "
                         f"1)), more than fastgen's {MAX_CHANNELS}; use fewer num_mfccs or a shared input")
    try:
        network_spec(cfg)
    except ValueError as e:
        raise ValueError(f"EDANetConfig: fastgen cannot run this network (context_size_in_seconds, "
                         f"num_mfccs and residual_channels set its size): {e}") from None
    parts = {k: 4 * v for k, v in cfg.parameter_counts.items()}
    total = sum(parts.values())
    limit = None if total <= SMALL_MODEL_BYTES else memory_limit("cpu")
    if limit is not None and total > limit:
        big = max(parts, key=parts.get)
        raise ValueError(f"EDANetConfig: the model would have {total // 4:,} parameters, about "
                         f"{total / 2**30:.3g} GiB in float32 (the {big} {parts[big] / 2**30:.3g} GiB), more than "
                         f"the {limit / 2**30:.3g} GiB allowed here ({MAX_BYTES_ENV}, or half this machine's "
                         f"memory); use fewer quantization_bins, channels or num_mfccs")


@torch.no_grad()
def export_to_fastgen(model: EDANet) -> tuple[NetworkSpec, dict[str, torch.Tensor]]:
    """The model's network description and its weights (detached CPU copies, float64 for a
    float64 model, else float32) in fastgen's layout (see ``fastgen/spec.py``)."""
    cfg = model.config
    spec = network_spec(cfg)
    L = model.layers

    def stack(fn):
        return torch.stack([fn(layer) for layer in L])

    def stack_res(part):
        # the last layer has no residual projection (its output feeds only the skip sum)
        if len(L) > 1:
            return torch.stack([getattr(layer.residual, part) for layer in L[:-1]])
        shape = (0, cfg.residual_channels, cfg.hidden_channels) if part == "weight" else (0, cfg.residual_channels)
        return L[0].skip.weight.new_zeros(shape)

    K, Fn, Co, Q = cfg.spectral_frames_per_eda_step, cfg.num_mfccs, cfg.out_channels, cfg.quantization_bins
    w = {
        **_input_weights(model),
        "cond_emb": model.embedding.weight,
        "dil_w0": stack(lambda l: l.tap_past.weight), "dil_w1": stack(lambda l: l.tap_now.weight),
        "dil_b": stack(lambda l: l.tap_past.bias),
        "cond_w": stack(lambda l: l.cond.weight), "cond_b": stack(lambda l: l.cond.bias),
        "res_w": stack_res("weight"), "res_b": stack_res("bias"),
        "skip_w": stack(lambda l: l.skip.weight), "skip_b": stack(lambda l: l.skip.bias),
        "head1_w": model.head1.weight, "head1_b": model.head1.bias,
        "head2_w": model.head2.weight, "head2_b": model.head2.bias,
        # (Q, K*F*C_o) in (k, f, c) order -> fastgen's (K, F, C_o, Q)
        "down_w": model.downsample.weight.reshape(Q, K, Fn, Co).permute(1, 2, 3, 0),
        "down_b": model.downsample.bias,
    }
    dtype = torch.float64 if model.head1.weight.dtype == torch.float64 else torch.float32
    w = {k: v.detach().to("cpu", dtype).contiguous().clone() for k, v in w.items()}
    check_weights(spec, w)
    return spec, w
