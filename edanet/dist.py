"""Where this process sits in a ``torchrun`` launch: its rank, the world size, its device.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a plain process is rank 0 of 1.
Training and corpus generation both shard by these and put rank r on GPU ``LOCAL_RANK``."""
from __future__ import annotations

import os

__all__ = ["ranks", "local_device"]


def ranks() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; ``(0, 1, 0)`` outside torchrun."""
    env = os.environ
    try:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


def local_device() -> str:
    """``cuda:LOCAL_RANK`` where torch sees a GPU, else ``cpu``."""
    import torch
    return f"cuda:{ranks()[2]}" if torch.cuda.is_available() else "cpu"
