"""A plain description of a conditioned WaveNet and its packed weights.

This is the contract between a model (``edanet`` exports into it) and every fastgen backend.
It knows nothing about EDA or audio: a *step* consumes ``frames_per_step`` (K) new input
frames of ``num_features`` (F) independent positions and one conditioning class, and emits
one categorical distribution over ``num_classes`` (Q).

Network, for every position f and frame t (F positions never mix before the output conv):

    x      = W_in @ frame[t, f] + b_in                                   (C_r)
    c_g    = cond_emb[cls_g]            class of the group g = t // K    (E)
    for layer l with dilation d:
        a  = W0_l @ x[t-d] + W1_l @ x[t] + b_l + Wc_l @ c_g + bc_l       (2*C_h; x[<0] = 0)
        z  = tanh(a[:C_h]) * sigmoid(a[C_h:])                            (C_h)
        skip += Ws_l @ z + bs_l                                          (C_s)
        x  = x + Wr_l @ z + br_l                                         (C_r)
    h      = W_h2 @ relu(W_h1 @ relu(skip) + b_h1) + b_h2                 (C_o)
    logits_g = b_down + sum_{k<K, f<F} W_down[:, :, k, f] @ h[gK+k, f]    (Q)

Weights (float tensors, names and shapes below) live in a flat ``dict[str, Tensor]`` so they
save to safetensors as they are. Layers are stacked along dim 0 (every layer has the same
channel counts).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch

__all__ = ["NetworkSpec", "weight_shapes", "check_weights", "nonfinite", "random_weights"]


@dataclass(frozen=True)
class NetworkSpec:
    in_channels: int            # C_in: input channels per (frame, position)
    num_features: int           # F: independent positions per frame
    frames_per_step: int        # K: frames consumed by one step
    residual_channels: int      # C_r
    hidden_channels: int        # C_h (the dilated conv outputs 2*C_h: filter and gate)
    skip_channels: int          # C_s
    out_channels: int           # C_o
    num_classes: int            # Q: output classes per step
    cond_classes: int           # rows of the conditioning embedding (Q + 1: index Q = start)
    cond_channels: int          # E: embedding width
    dilations: tuple[int, ...]  # one per layer, in order
    start_class: int            # conditioning class of the first step (the "e[-1]" value)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        for name in ("in_channels", "num_features", "frames_per_step", "residual_channels",
                     "hidden_channels", "skip_channels", "out_channels", "num_classes",
                     "cond_classes", "cond_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"NetworkSpec.{name} must be a positive int, got {v!r}")
        if not self.dilations or any(d <= 0 for d in self.dilations):
            raise ValueError(f"NetworkSpec.dilations must be non-empty and positive, got {self.dilations}")
        if not 0 <= self.start_class < self.cond_classes:
            raise ValueError(f"start_class {self.start_class} outside [0, {self.cond_classes})")

    @property
    def num_layers(self) -> int:
        return len(self.dilations)

    @property
    def receptive_field_frames(self) -> int:
        """Frames one step's logits can see: the layers' field plus the K-1 of the output conv."""
        return sum(self.dilations) + 1 + self.frames_per_step - 1

    @property
    def positions_per_step(self) -> int:
        return self.frames_per_step * self.num_features

    def flops_per_step(self) -> int:
        """Multiply-adds x2 of one step of one sequence (elementwise work not counted)."""
        P, L = self.positions_per_step, self.num_layers
        Cr, Ch, Cs, Co = self.residual_channels, self.hidden_channels, self.skip_channels, self.out_channels
        per_pos = (self.in_channels * Cr
                   + L * (2 * Cr * 2 * Ch + Ch * Cs + Ch * Cr)
                   + Cs * Co + Co * Co)
        per_step = P * per_pos + L * self.cond_channels * 2 * Ch + P * Co * self.num_classes
        return 2 * per_step

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown NetworkSpec fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def weight_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    L, Cin, Cr, Ch2, Ch = spec.num_layers, spec.in_channels, spec.residual_channels, 2 * spec.hidden_channels, spec.hidden_channels
    Cs, Co, Q, E = spec.skip_channels, spec.out_channels, spec.num_classes, spec.cond_channels
    return {
        "in_w": (Cr, Cin), "in_b": (Cr,),
        "cond_emb": (spec.cond_classes, E),
        "dil_w0": (L, Ch2, Cr),      # multiplies x[t - d]
        "dil_w1": (L, Ch2, Cr),      # multiplies x[t]
        "dil_b": (L, Ch2),
        "cond_w": (L, Ch2, E), "cond_b": (L, Ch2),
        "res_w": (L, Cr, Ch), "res_b": (L, Cr),
        "skip_w": (L, Cs, Ch), "skip_b": (L, Cs),
        "head1_w": (Co, Cs), "head1_b": (Co,),
        "head2_w": (Co, Co), "head2_b": (Co,),
        "down_w": (Q, Co, spec.frames_per_step, spec.num_features), "down_b": (Q,),
    }


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or inf (what a diverged run leaves)."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_weights(spec: NetworkSpec, weights: dict[str, torch.Tensor]) -> None:
    """Raise ValueError unless ``weights`` has exactly the tensors ``spec`` needs, all finite."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a fastgen.NetworkSpec, got {type(spec).__name__} "
                        "(NetworkSpec(**d) builds one from a dict)")
    if not isinstance(weights, dict) or not all(isinstance(w, torch.Tensor) for w in weights.values()):
        raise TypeError("weights must be a dict of torch tensors (fastgen.spec.weight_shapes names them)")
    shapes = weight_shapes(spec)
    missing = sorted(set(shapes) - set(weights))
    extra = sorted(set(weights) - set(shapes))
    if missing or extra:
        raise ValueError(f"weights do not match the spec: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        w = weights[name]
        if tuple(w.shape) != shape:
            raise ValueError(f"weight {name!r} has shape {tuple(w.shape)}, the spec needs {shape}")
        if not w.is_floating_point():
            raise ValueError(f"weight {name!r} must be floating point, got {w.dtype}")
    bad = nonfinite(weights)
    if bad:
        raise ValueError(f"weight {bad[0]!r} contains NaN or inf (a diverged training run?)")


def random_weights(spec: NetworkSpec, seed: int = 0, dtype=torch.float32, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random weights of a realistic scale (fan-in init), for tests and benchmarks."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in weight_shapes(spec).items():
        if name == "cond_emb":
            fan_in = 1
        elif name.endswith("_b"):
            fan_in = 4
        elif name == "down_w":
            fan_in = shape[1] * shape[2] * shape[3]
        else:
            fan_in = shape[-1] * (2 if name.startswith("dil_w") else 1)
        out[name] = (torch.randn(shape, generator=g, dtype=torch.float64) * scale / fan_in ** 0.5).to(dtype)
    return out
