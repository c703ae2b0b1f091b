"""What every benchmark shares: the cases, the work counted per step, the machine's measured
peaks, and a careful timer (warm-up excluded, device synchronised, median of repeats).

Work per EDA step of one sequence (``fastgen.NetworkSpec.flops_per_step``): 2 x the
multiply-adds of the input projection, every layer's two dilation taps, skip and residual
projections, the conditioning projection, the two head layers and the output conv. Elementwise
work (gates, softmax) is not counted.

Bytes per step (the least traffic a step must move to and from memory, fp32 unless stated):
the weights once per step for the whole batch (a persistent kernel that keeps them on chip
pays this once per generation instead; both are reported), plus per sequence the step's K x F
input frames, each layer's history taps read (K x F x C_r) and written (K x F x C_r), and the
logits.
"""
from __future__ import annotations

import json
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


def spec_and_weights(preset: str, seed: int = 0):
    """The network of an edanet preset, with random weights (speed does not depend on them)."""
    from edanet import EDANet, EDANetConfig, export_to_fastgen
    torch.manual_seed(seed)
    return export_to_fastgen(EDANet(EDANetConfig.from_preset(preset)))


def weight_bytes(spec: fastgen.NetworkSpec, itemsize: int = 4) -> int:
    return itemsize * sum(int(torch.Size(s).numel()) for s in fastgen.weight_shapes(spec).values())


def bytes_per_step(spec: fastgen.NetworkSpec, batch: int, itemsize: int = 4, weights_resident: bool = False) -> int:
    P = spec.positions_per_step
    per_seq = itemsize * (P * spec.in_channels + 2 * spec.num_layers * P * spec.residual_channels
                          + spec.num_classes)
    return batch * per_seq + (0 if weights_resident else weight_bytes(spec, itemsize))


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
    """Measured FLOP/s of a large square matmul (same threads as the benchmarks)."""
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = timed(lambda: a @ b, device, repeats=5 if device.type == "cpu" else 20)
    return 2 * n ** 3 / t


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


@dataclass
class Case:
    preset: str
    batch: int
    backend: str
    steps: int


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
    try:
        import fastgen._C as C
        info["fastgen_build"] = json.loads(C.build_info())
    except ImportError:
        info["fastgen_build"] = None
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        pass
    return info
