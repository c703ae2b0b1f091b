"""What every benchmark shares: the engines measured, the cases, the work counted per step, the
machine's measured peaks, the floor they imply, and a careful timer (warm-up excluded, device
synchronised, median of repeats).

Work per EDA step of one sequence (``fastgen.NetworkSpec.flops_per_step``): 2 x the
multiply-adds of the input projection, every layer's two dilation taps, skip and residual
projections, the conditioning projection, the two head layers and the output conv. Elementwise
work (gates, softmax) is not counted.

Bytes per step (the least traffic a step must move to and from memory, in the engine's dtype):
the weights once per step for the whole batch (a persistent kernel that keeps them on chip
pays this once per generation instead; both are reported), plus per sequence the step's K x F
input frames, each layer's history taps read (K x F x C_r) and written (K x F x C_r), and the
logits.

Floor (``floor_seconds``): the least time a step of the batch can take on this machine, the
larger of its FLOPs at the measured matmul peak of its dtype and its bytes (weights resident)
at the measured copy bandwidth. On a GPU the FLOP term counts only the SMs the step can spread
over: the K x F positions of a sequence are independent until the head, and a block owns at
least one of the F feature rows, so a step uses at most ``batch x F`` of them. It leaves out
the serial chain of layers inside a step, so at batch 1 no kernel comes near it.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from datetime import date

import torch

import fastgen

CPU_BATCHES = (1, 4, 16)
GPU_BATCHES = (1, 8, 64, 256)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# What runs when none are named, in table order (those not available here are left out). On a
# GPU, ``torch+graph`` (the step captured in a CUDA graph) is the bar the fused kernels must clear.
GPU_VARIANTS = ("torch", "torch+graph", "torch+graph:bf16", "torch+compile", "torch+compile:bf16", "triton", "triton:bf16", "triton_persistent",
                "triton_persistent:bf16", "cuda", "cuda:bf16", "reference")
CPU_VARIANTS = ("torch", "torch+compile", "cpu", "reference")


def _value(text: str):
    """An option's value: an int or a float where it parses as one, else the text."""
    for kind in (int, float) if any(c.isdigit() for c in text) else ():
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(opts: str, text: str) -> tuple:
    """``name=value,...`` (the part after ``@`` of ``text``) as ((name, value), ...)."""
    options = []
    for item in filter(None, opts.split(",")):
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise ValueError(f"option {item!r} in {text!r} must be written name=value")
        options.append((k, _value(v)))
    return tuple(options)


def parse_preset(text: str) -> tuple[str, dict]:
    """A preset as the benchmarks take it, ``name[@field=value,...]``: an edanet preset and
    fields of its ``EDANetConfig`` to override. ``base@quantization_bins=16`` is ``base``
    with Q = 16 classes instead of 256: against ``base`` it measures what the downsampling
    and the sampling over Q classes cost a step."""
    name, _, opts = text.partition("@")
    return name, dict(parse_options(opts, text))


def config_of(preset: str):
    """The ``EDANetConfig`` of a preset with its overrides (``parse_preset``)."""
    from edanet import EDANetConfig
    name, overrides = parse_preset(preset)
    return EDANetConfig.from_preset(name, **overrides)


@dataclass(frozen=True)
class Variant:
    """One engine to measure, written ``backend[+graph|+compile][:dtype][@option=value,...]``:
    ``cuda:bf16``, ``torch+graph``, ``torch+compile`` (the step through ``torch.compile``),
    ``cuda:bf16@f_splits=10,seqs_per_block=8`` (engine options of ``fastgen.create``; integers
    where they parse as such)."""
    backend: str
    dtype_name: str = "fp32"
    cuda_graph: bool = False
    options: tuple = ()
    compiled: bool = False

    @classmethod
    def parse(cls, text: str) -> "Variant":
        head, _, opts = text.partition("@")
        name, _, dt = head.partition(":")
        dt = dt or "fp32"
        if dt not in DTYPES:
            raise ValueError(f"unknown dtype {dt!r} in {text!r}; choose one of {sorted(DTYPES)}")
        graph, compiled = name.endswith("+graph"), name.endswith("+compile")
        backend = name.removesuffix("+graph").removesuffix("+compile")
        if backend not in fastgen.BACKENDS:
            raise ValueError(f"unknown backend {backend!r} in {text!r}; choose one of {sorted(fastgen.BACKENDS)} "
                             "(append +graph or +compile to torch for a CUDA graph or torch.compile, :bf16 or "
                             ":fp16 for a dtype)")
        if (graph or compiled) and backend != "torch":
            raise ValueError(f"{text!r}: only the torch backend takes +graph or +compile")
        return cls(backend, dt, graph, parse_options(opts, text), compiled)

    @property
    def _name(self) -> str:
        return self.backend + ("+graph" if self.cuda_graph else "") + ("+compile" if self.compiled else "")

    @property
    def _opts(self) -> str:
        return "@" + ",".join(f"{k}={v}" for k, v in self.options) if self.options else ""

    @property
    def text(self) -> str:
        """The written form, which ``parse`` reads back."""
        return f"{self._name}:{self.dtype_name}{self._opts}"

    @property
    def label(self) -> str:
        """The backend as the report names it: with +graph, and with its options if any."""
        return self._name + self._opts

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    def create(self, spec, weights, device):
        options = dict(self.options, **({"cuda_graph": True} if self.cuda_graph else {}),
                       **({"compile": True} if self.compiled else {}))
        return fastgen.create(self.backend, spec, weights, device=device, dtype=self.dtype, **options)


def default_variants(device: torch.device) -> list[Variant]:
    """Every default variant whose backend runs here (Triton on a CPU only when asked for)."""
    have = set(fastgen.available(device))
    names = GPU_VARIANTS if device.type == "cuda" else CPU_VARIANTS
    return [v for v in map(Variant.parse, names) if v.backend in have and (device.type == "cuda" or not v.cuda_graph)]


def spec_and_weights(preset: str, seed: int = 0):
    """The network of an edanet preset (with overrides: ``parse_preset``), with random
    weights (speed does not depend on them)."""
    from edanet import EDANet, export_to_fastgen
    torch.manual_seed(seed)
    return export_to_fastgen(EDANet(config_of(preset)))


def weight_bytes(spec: fastgen.NetworkSpec, itemsize: int = 4) -> int:
    return itemsize * sum(int(torch.Size(s).numel()) for s in fastgen.weight_shapes(spec).values())


def bytes_per_step(spec: fastgen.NetworkSpec, batch: int, itemsize: int = 4, weights_resident: bool = False) -> int:
    P = spec.positions_per_step
    per_seq = itemsize * (P * spec.in_channels + 2 * spec.num_layers * P * spec.residual_channels
                          + spec.num_classes)
    return batch * per_seq + (0 if weights_resident else weight_bytes(spec, itemsize))


def parallel_units(device: torch.device) -> int:
    """SMs on a GPU; on a CPU, the threads torch uses (the benchmarks' only knob there)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return torch.get_num_threads()


def floor_seconds(spec: fastgen.NetworkSpec, batch: int, dtype: torch.dtype, peak_flops: float,
                  copy_bytes_per_s: float, units: int | None = None) -> float:
    """Least seconds for one step of ``batch`` sequences (see the module docstring). ``units``:
    the GPU's SM count; a step then reaches at most ``batch x F / units`` of the FLOP peak."""
    usable = 1.0 if units is None else min(1.0, batch * spec.num_features / units)
    flops = spec.flops_per_step() * batch
    traffic = bytes_per_step(spec, batch, dtype.itemsize, weights_resident=True)
    return max(flops / (peak_flops * usable), traffic / copy_bytes_per_s)


def history_bytes(spec: fastgen.NetworkSpec, batch: int, itemsize: int = 4) -> int:
    """History buffers: every layer keeps (d + K) frames x F x C_r per sequence."""
    frames = sum(d + spec.frames_per_step for d in spec.dilations)
    return batch * frames * spec.num_features * spec.residual_channels * itemsize


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_matmul_flops(device: torch.device, dtype=torch.float32) -> float:
    """Measured FLOP/s of a large square matmul (same threads as the benchmarks). fp32 on a GPU
    is measured with TF32 off: the fp32 engines multiply in full fp32 too."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        t = timed(lambda: a @ b, device, repeats=5 if device.type == "cpu" else 20)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n ** 3 / t


def calibrated_steps(run, device, target_s: float, lo: int = 32, hi: int = 4096) -> int:
    """Steps per timed run: the first power of two from ``lo`` whose run lasts ``target_s`` or
    more (so fixed per-call costs, a CUDA-graph capture say, are a small share), at most ``hi``.
    ``run(n)`` generates n steps; a first call of ``lo`` steps warms up (compiles)."""
    n = lo
    run(n)
    while n < hi and timed(lambda: run(n), device, repeats=1, warmup=0) < target_s:
        n *= 2
    return min(n, hi)


def copy_bandwidth(device: torch.device) -> float:
    """Measured bytes/s of a large copy (read + write counted)."""
    n = (64 if device.type == "cpu" else 512) * 2 ** 20 // 4
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a), device, repeats=10)
    return 2 * 4 * n / t


def make_inputs(spec, batch: int, steps: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, spec.in_channels, steps * spec.frames_per_step, spec.num_features, generator=g)
    uniforms = torch.rand(batch, steps, generator=g)
    return frames.to(device), uniforms.to(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        commit = None
    info = {"device": device_name(device), "device_type": device.type, "date": date.today().isoformat(),
            "commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}
    info["fastgen_build"] = fastgen.build_info()
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        pass
    return info
