"""Who a generated sample is of, for a model with a subject table (``config.subject_dim``): each
sample is a person drawn from the training subjects, held for the whole sequence, with a start
level drawn around that person's own; or, primed with a recording, the training subjects that
explain the recording best.

Sample i's person comes from its own random stream (the seed's child ``(PEOPLE, i)``), so it
does not depend on ``num_samples`` nor on the sampling uniforms.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..training.model import EDANet
from .export import engine_frames

__all__ = ["People", "draw_people", "people_for_prime", "start_levels"]

#: The spawn key of the people's random streams (the uniforms are PCG64(seed) jumped per sample).
PEOPLE = 0x9E0

#: Table rows teacher-forced at once when a prime is scored: bounds the engine's inputs.
PRIME_ROWS_PER_CALL = 16


class People:
    """The subject vectors ``z`` ``(S, subject_dim)`` float32 of S samples, their table ``rows``
    and their start ``levels`` (µS)."""

    def __init__(self, z: torch.Tensor, rows: np.ndarray, levels: np.ndarray):
        self.z, self.rows, self.levels = z, rows, levels


def start_levels(people: People | None, initial_eda_us=None):
    """The start levels a generation asks for: ``initial_eda_us`` when given (it overrides), else
    its people's own; None (the model's default) for a model without subjects. Unchecked: the
    caller's ``initial_levels`` checks whichever it is."""
    return initial_eda_us if initial_eda_us is not None or people is None else people.levels


def _rngs(seed: int, num_samples: int) -> list[np.random.Generator]:
    return [np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(PEOPLE, i)))
            for i in range(num_samples)]


def _table(model: EDANet) -> tuple[torch.Tensor, np.ndarray]:
    with torch.no_grad():
        return (model.subjects.weight.detach().float().cpu(),
                model.subject_levels.detach().double().cpu().numpy())


def draw_people(model: EDANet, num_samples: int, seed: int) -> People | None:
    """Each sample a training subject drawn uniformly (the population the model learned), with a
    start level of that subject's times a draw of the spread between a subject's recordings
    (``config.subject_level_log_sd``); None for a model without subjects."""
    cfg = model.config
    if not cfg.subject_dim:
        return None
    table, levels = _table(model)
    rows, starts = [], []
    for rng in _rngs(seed, num_samples):
        r = int(rng.integers(table.shape[0]))
        rows.append(r)
        starts.append(levels[r] * math.exp(cfg.subject_level_log_sd * rng.standard_normal()))
    rows = np.array(rows, dtype=np.int64)
    return People(table[rows].clone(), rows, np.array(starts))


def people_for_prime(model: EDANet, engine, frames: torch.Tensor, classes: torch.Tensor, num_samples: int,
                     seed: int) -> People | None:
    """Each sample a training subject drawn from the posterior given a prime: the recorded classes
    ``(n,)`` of the prime's steps and their engine frames ``(1, C, n*K, F)`` (without the subject
    channels), scored by teacher forcing every row of the table through ``engine``; a uniform
    prior over the rows. None for a model without subjects."""
    cfg = model.config
    if not cfg.subject_dim:
        return None
    table, levels = _table(model)
    loglik = np.empty(table.shape[0])
    n = classes.shape[-1]
    for r0 in range(0, table.shape[0], PRIME_ROWS_PER_CALL):
        z = table[r0:r0 + PRIME_ROWS_PER_CALL]
        rows = engine_frames(model.with_subject(frames.expand(z.shape[0], -1, -1, -1), z), cfg)
        logits = engine.teacher_forced(rows, classes.reshape(1, n).expand(z.shape[0], n))
        logp = torch.log_softmax(logits.double(), dim=-1).gather(-1, classes.reshape(1, n, 1).expand(
            z.shape[0], n, 1).to(logits.device))
        loglik[r0:r0 + z.shape[0]] = logp.sum(dim=(1, 2)).cpu().numpy()
    post = np.exp(loglik - loglik.max())
    post /= post.sum()
    picked = np.array([int(rng.choice(len(post), p=post)) for rng in _rngs(seed, num_samples)], dtype=np.int64)
    return People(table[picked].clone(), picked, levels[picked])
