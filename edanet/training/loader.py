"""Training batches through a ``torch.utils.data.DataLoader``: the windows of each batch are drawn
in this process with the run's sampler generator (so a run, and a resumed run, sees the same
batches whatever the number of workers), the workers read them (from the frame cache) and
stack them.

A DataLoader draws batches ahead of the step that uses them, so the generator runs ahead of
training; ``BatchPlan.state_for_next`` is the generator's state as of the next batch training
will take, what a checkpoint saves and a resumed run starts from.
"""
from __future__ import annotations

import collections
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .data import PairedData, Window
from .run_folder import RunLock

__all__ = ["BatchPlan", "batches"]


class _Reader(Dataset):
    """A window spec -> its arrays (in a worker)."""

    def __init__(self, data: PairedData):
        self.data = data

    def __getitem__(self, w: Window):
        return self.data.read(w)

    def __len__(self) -> int:          # endless: the plan decides
        return 2 ** 62


class BatchPlan(Sampler):
    """Endless batches of windows (``PairedData.draw_windows``) drawn with ``generator``."""

    def __init__(self, data: PairedData, batch_size: int, generator: torch.Generator, onset_focus: float):
        self.data, self.batch_size, self.generator, self.onset_focus = data, batch_size, generator, onset_focus
        self._states: collections.deque = collections.deque()     # of the batches drawn, not yet taken

    def __iter__(self) -> Iterator[list[Window]]:
        while True:
            self._states.append(self.generator.get_state())
            yield self.data.draw_windows(self.batch_size, self.generator, self.onset_focus)

    def taken(self) -> None:
        """Training took the oldest batch drawn."""
        self._states.popleft()

    def state_for_next(self) -> torch.Tensor:
        """The generator's state as of the next batch training will take."""
        return self._states[0].clone() if self._states else self.generator.get_state()


def batches(data: PairedData, plan: BatchPlan, workers: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """``(frames, cond, target, mask, subject)`` batches of ``plan``, read by ``workers`` processes
    (0: in this one)."""
    loader = DataLoader(_Reader(data), batch_sampler=plan, num_workers=workers, collate_fn=PairedData.collate,
                        prefetch_factor=2 if workers else None, persistent_workers=workers > 0,
                        worker_init_fn=RunLock.close_in_child)
    for batch in loader:
        plan.taken()
        yield batch
