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
import math
import operator
from dataclasses import dataclass

import torch

__all__ = ["NetworkSpec", "weight_shapes", "check_weights", "nonfinite", "random_weights", "padded_size",
           "MAX_CHANNELS", "MAX_FEATURES", "MAX_FRAMES_PER_STEP", "MAX_CLASSES", "MAX_LAYERS", "MAX_DILATION",
           "MAX_HISTORY_ELEMENTS"]


# Plausible ranges of every size. They are far above any useful model (the largest published
# WaveNets use 512-1024 channels, 256-class mu-law outputs and dilations up to 512), yet they
# keep every product the backends form from two or three sizes well inside 64-bit integers, so
# a spec from a downloaded file cannot overflow an index or request a runaway allocation before
# the memory estimate (``weight_bytes``/``history_bytes``) is even checked.
MAX_CHANNELS = 4096          # any channel count: products of two stay below 2**24
MAX_FEATURES = 4096          # F: positions per frame (MFCCs, mel bands, ...)
MAX_FRAMES_PER_STEP = 4096   # K: frames one step consumes
MAX_CLASSES = 65536          # Q: a categorical over 16-bit values at most
MAX_LAYERS = 1024            # 10 stacks of 100 layers
MAX_DILATION = 2 ** 20       # one layer looking ~1M frames back (20 s at 48 kHz per layer)
# The history ring buffers of one sequence, in elements (channels padded as the backends pad
# them): the Triton kernels index them with 32-bit offsets.
MAX_HISTORY_ELEMENTS = 2 ** 31 - 1

_RANGES = {  # field -> (lowest, highest, what it is)
    "in_channels": (1, MAX_CHANNELS, "input channels per frame and position"),
    "num_features": (1, MAX_FEATURES, "positions per frame"),
    "frames_per_step": (1, MAX_FRAMES_PER_STEP, "frames per step"),
    "residual_channels": (1, MAX_CHANNELS, "residual channels"),
    "hidden_channels": (1, MAX_CHANNELS, "hidden channels"),
    "skip_channels": (1, MAX_CHANNELS, "skip channels"),
    "out_channels": (1, MAX_CHANNELS, "head channels"),
    "num_classes": (2, MAX_CLASSES, "output classes"),
    "cond_classes": (2, MAX_CLASSES + 1, "conditioning classes (the output classes + a start class)"),
    "cond_channels": (1, MAX_CHANNELS, "conditioning embedding width"),
}


def padded_size(n: int) -> int:
    """``n`` rounded up to a power of two, at least 16: how the Triton kernels pad a channel count
    (and a step's positions, and the classes) to their tiles. The widest padding of a channel
    count any backend uses (the CPU backend pads to a multiple of 8, never more), so the memory
    estimates here assume it."""
    return max(16, 1 << (int(n) - 1).bit_length())


def _int(name: str, v) -> int:
    """``v`` as an int: ints and numpy/torch integers, not bools (True would pass as 1) nor floats."""
    if isinstance(v, bool):
        raise ValueError(f"NetworkSpec.{name} must be an int, got the bool {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise ValueError(f"NetworkSpec.{name} must be an int, got {v!r} ({type(v).__name__})") from None


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
        fix = "; a model file with such a value is damaged or not meant for fastgen"
        for name, (lo, hi, what) in _RANGES.items():
            v = _int(name, getattr(self, name))
            if not lo <= v <= hi:
                raise ValueError(f"NetworkSpec.{name} ({what}) must lie in [{lo}, {hi}], got {v}{fix}")
            object.__setattr__(self, name, v)
        self._check_dilations(fix)
        start = _int("start_class", self.start_class)
        object.__setattr__(self, "start_class", start)
        if self.cond_classes < self.num_classes:
            # a sampled class conditions the next step: its row must exist in the embedding
            raise ValueError(f"NetworkSpec: sampled classes feed back as conditioning classes, so cond_classes "
                             f"({self.cond_classes}) must be >= num_classes ({self.num_classes}){fix}")
        if not 0 <= start < self.cond_classes:
            raise ValueError(f"NetworkSpec.start_class must lie in [0, cond_classes={self.cond_classes}), "
                             f"got {start}{fix}")
        history = self.history_elements()
        if history > MAX_HISTORY_ELEMENTS:
            raise ValueError(f"NetworkSpec: the history of one sequence (sum of (dilation + frames_per_step) x "
                             f"num_features x residual channels, padded) would hold {history} values, more than "
                             f"{MAX_HISTORY_ELEMENTS}; use smaller dilations, fewer layers or fewer positions{fix}")

    def _check_dilations(self, fix: str) -> None:
        d = self.dilations
        if isinstance(d, (str, bytes)) or not hasattr(d, "__iter__"):
            raise ValueError(f"NetworkSpec.dilations must be a sequence of ints, got {d!r}")
        d = tuple(_int("dilations", x) for x in d)
        if not 1 <= len(d) <= MAX_LAYERS:
            raise ValueError(f"NetworkSpec.dilations: a network has 1 to {MAX_LAYERS} layers (one dilation each), "
                             f"got {len(d)}{fix}")
        bad = [x for x in d if not 1 <= x <= MAX_DILATION]
        if bad:
            raise ValueError(f"NetworkSpec.dilations must lie in [1, {MAX_DILATION}] (2**20 frames back), "
                             f"got {bad[0]}{fix}")
        object.__setattr__(self, "dilations", d)

    # -- sizes and memory ---------------------------------------------------------------
    def history_elements(self) -> int:
        """Values in one sequence's history ring buffers: a (dilation + K)-frame ring of F x C_r
        per layer, with C_r padded as the backends pad it."""
        rings = sum(self.dilations) + self.num_layers * self.frames_per_step
        return rings * self.num_features * padded_size(self.residual_channels)

    def weight_bytes(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes of one packed copy of the weights in ``dtype`` (channel counts padded as the
        backends pad them, plus the per-layer conditioning table over classes every backend
        folds the embedding into). An upper estimate for building an engine."""
        p = padded_size
        shapes = _shapes(self.num_layers, self.in_channels, p(self.residual_channels), p(self.hidden_channels),
                         p(self.skip_channels), p(self.out_channels), self.num_classes, self.cond_classes,
                         self.cond_channels, self.frames_per_step, self.num_features)
        table = self.num_layers * self.cond_classes * 2 * p(self.hidden_channels)
        return _element_size(dtype) * (sum(math.prod(s) for s in shapes.values()) + table)

    def history_bytes(self, batch: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes a generation of ``batch`` sequences holds besides the weights: the history ring
        buffers and one step's activations (every channel of every position of the step) per
        sequence. An upper estimate."""
        p = padded_size
        step = self.positions_per_step * (2 * p(self.residual_channels) + 3 * p(self.hidden_channels)
                                          + p(self.skip_channels) + 2 * p(self.out_channels)) + self.num_classes
        return batch * _element_size(dtype) * (self.history_elements() + step)

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
        if not isinstance(d, dict):
            raise ValueError(f"a NetworkSpec is a JSON object of its fields, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown NetworkSpec fields {sorted(unknown)}")
        missing = sorted(names - set(d))
        if missing:
            raise ValueError(f"NetworkSpec fields missing: {missing}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def weight_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    return _shapes(spec.num_layers, spec.in_channels, spec.residual_channels, spec.hidden_channels,
                   spec.skip_channels, spec.out_channels, spec.num_classes, spec.cond_classes,
                   spec.cond_channels, spec.frames_per_step, spec.num_features)


def _shapes(L, Cin, Cr, Ch, Cs, Co, Q, Qc, E, K, Fn) -> dict[str, tuple[int, ...]]:
    Ch2 = 2 * Ch
    return {
        "in_w": (Cr, Cin), "in_b": (Cr,),
        "cond_emb": (Qc, E),
        "dil_w0": (L, Ch2, Cr),      # multiplies x[t - d]
        "dil_w1": (L, Ch2, Cr),      # multiplies x[t]
        "dil_b": (L, Ch2),
        "cond_w": (L, Ch2, E), "cond_b": (L, Ch2),
        "res_w": (L - 1, Cr, Ch),    # the last layer has none: its output feeds only the skip sum
        "res_b": (L - 1, Cr),
        "skip_w": (L, Cs, Ch), "skip_b": (L, Cs),
        "head1_w": (Co, Cs), "head1_b": (Co,),
        "head2_w": (Co, Co), "head2_b": (Co,),
        "down_w": (K, Fn, Co, Q),    # a step's (k, f, c) values -> Q logits, as the engines read it
        "down_b": (Q,),
    }


def _element_size(dtype: torch.dtype) -> int:
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    return torch.empty((), dtype=dtype).element_size()


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
            fan_in = shape[0] * shape[1] * shape[2]
        else:
            fan_in = shape[-1] * (2 if name.startswith("dil_w") else 1)
        out[name] = (torch.randn(shape, generator=g, dtype=torch.float64) * scale / fan_in ** 0.5).to(dtype)
    return out
