"""What fastgen assumes of NVIDIA GPUs, in one place: the compute capability its GPU kernels
need, and per capability the limits a launch is planned against -- opt-in shared memory per
block, 32-bit registers per SM, and the SM count of a representative data-center part (for
ahead-of-time compiles and plans made without the device; on a device its own are read)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpuLimits", "LIMITS", "MIN_CAPABILITY", "limits_for", "capability_name", "supported"]

#: The fused GPU kernels use bf16 mma.sync and cp.async: sm_80 (Ampere) and later.
MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class GpuLimits:
    shared_per_block: int      # bytes of dynamic shared memory a block may opt in to
    registers_per_sm: int      # 32-bit registers
    sms: int                   # of the representative part
    part: str


#: By compute capability as an int (major * 10 + minor).
LIMITS = {
    80: GpuLimits(163 * 1024, 65536, 108, "A100"),
    86: GpuLimits(99 * 1024, 65536, 72, "A10"),
    87: GpuLimits(163 * 1024, 65536, 16, "Jetson AGX Orin"),
    89: GpuLimits(99 * 1024, 65536, 142, "L40S"),
    90: GpuLimits(227 * 1024, 65536, 132, "H100"),
}
#: Opt-in shared memory assumed for a capability not in the table (the smallest of the 8.x parts).
DEFAULT_SHARED_PER_BLOCK = 99 * 1024


def limits_for(major: int, minor: int) -> GpuLimits | None:
    return LIMITS.get(10 * int(major) + int(minor))


def supported(major: int, minor: int) -> bool:
    """Whether a device of this compute capability can run the fused GPU kernels."""
    return (int(major), int(minor)) >= MIN_CAPABILITY


def capability_name(major: int, minor: int) -> str:
    return f"{major}.{minor}"
