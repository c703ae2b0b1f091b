"""Training: AdamW, linear warm-up + cosine decay, gradient clipping, AMP on CUDA, validation
NLL at intervals, a CSV log, and resumable checkpoints; multi-GPU (or multi-process CPU) data
parallel through ``torchrun`` (PyTorch DDP).

A run folder holds::

    config.json, model.safetensors   the latest weights (``edanet.load_model(run_dir)`` works)
    train.json                       the TrainConfig
    log.csv                          step, lr, loss, grad norm, validation NLL, seconds
    checkpoints/step_XXXXXXXX/       model + optimizer/scheduler/step/RNG state (safetensors + JSON)
    latest.json                      names the newest *complete* checkpoint

Every file is written atomically, and ``latest.json`` is replaced only after its checkpoint is
complete, so a crash at any moment leaves the previous checkpoint usable. ``--resume`` restores
model, optimizer, scheduler, step and the sampler's RNG: on a CPU in fp32, k steps + a kill +
k resumed steps give the same weights as 2k uninterrupted steps; ``log.csv`` is cut back to the
checkpoint's step, so the steps trained again are not logged twice.

A run holds an exclusive lock on its folder (``.lock``: pid and host, ``RunLock``) from start to
end: a second run into the same ``--out`` is refused at once. A lock left by a killed run is
taken over with a warning, as are the temporary files its interrupted writes left behind.
``TrainConfig.keep_checkpoints`` keeps only the newest checkpoints (never the latest one).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import EDANetConfig
from ..dist import local_device, ranks
from ..io import atomic_write, remove_temp_files_of
from .checkpoint import nonfinite_tensors
from .data import PairedData
from .loader import BatchPlan, batches
from .model import EDANet
from .recipe import TRAIN_PRESETS, TrainConfig
from .run_folder import (LOG_HEADER, RunLock, append_log, check_resume_steps, check_run_folder, load_checkpoint,
                         prune_checkpoints, run_files, save_checkpoint, truncate_log)

__all__ = ["TrainConfig", "train", "TRAIN_PRESETS", "RunLock", "default_cache"]


def default_cache() -> Path:
    """Where training keeps the audio's frames unless told (``train(cache=...)``, ``--cache``):
    ``$XDG_CACHE_HOME/edanet/frames`` (``~/.cache/edanet/frames``), shared by every run, a file
    per audio file and feature settings (``edanet.training.frame_store``)."""
    import os
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edanet" / "frames"


def _device(name) -> torch.device:
    """The training device, checked before anything is built or written."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(name)!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError("no CUDA device here; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"no CUDA device {device.index} here (this machine has cuda:0 to cuda:{count - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("no MPS device here; use --device cpu")
    elif device.type != "cpu":
        raise ValueError(f"cannot train on device {str(name)!r}; use cpu or cuda")
    return device


def _diverged(step: int, what: str, tcfg: TrainConfig, last_ckpt: int | None) -> ValueError:
    kept = f"its checkpoint of step {last_ckpt} is kept" if last_ckpt is not None else "no checkpoint was written"
    return ValueError(f"training diverged at step {step}: {what}; stopped without saving these weights ({kept}). "
                      f"Train into a new --out with a lower --lr (this run: {tcfg.lr:g}) or stronger gradient "
                      f"clipping (a smaller TrainConfig.clip_norm; this run: {tcfg.clip_norm:g})")


def _masked_nll(logits, target, mask):
    nll = F.cross_entropy(logits.float(), target, reduction="none")
    m = mask.float()
    return (nll * m).sum() / m.sum().clamp_min(1.0)


@torch.no_grad()
def validation_nll(model: EDANet, windows, device, batch_size: int = 16) -> float:
    """Mean NLL (nats per EDA step) over the scored steps of the validation windows."""
    model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(windows), batch_size):
        frames, cond, target, mask, subject = (t.to(device) for t in PairedData.collate(windows[i:i + batch_size]))
        logits = model.forward_conditioned(frames, cond, subject)
        nll = F.cross_entropy(logits.float(), target, reduction="none")
        total += float((nll * mask).sum())
        count += float(mask.sum())
    model.train()
    return total / max(count, 1.0)


def train(data_dir: str | Path, out_dir: str | Path, model_config: EDANetConfig, tcfg: TrainConfig = TrainConfig(),
          *, resume: bool = False, skip_bad: bool = False, device: str | None = None, progress: bool = True,
          init_model: EDANet | None = None, cache: str | Path | None = None) -> dict:
    """Train ``model_config`` on the pairs in ``data_dir``; returns a summary dict (also written
    to ``out_dir/summary.json``). ``cache``: the folder of the audio's frames, computed once and
    read a window at a time, so that memory does not grow with the data (default
    :func:`default_cache`, which later runs on the same data reuse).

    The run folder is locked (``RunLock``) for the whole run; a folder another run holds is
    refused at once with a FileExistsError."""
    rank = ranks()[0]
    kwargs = dict(resume=resume, skip_bad=skip_bad, device=device, progress=progress, init_model=init_model,
                  cache=cache)
    if rank != 0:       # rank 0 alone writes into the folder, and holds its lock
        return _train(data_dir, out_dir, model_config, tcfg, **kwargs)
    run = Path(out_dir)
    with RunLock(run):
        check_run_folder(run, resume)
        return _train(data_dir, out_dir, model_config, tcfg, **kwargs)


def _subject_table(cfg: EDANetConfig, data: PairedData) -> tuple[EDANetConfig, np.ndarray]:
    """The subject table of a new run: one row per subject of the training data (sorted, so a
    resumed run gets the same rows), each subject's start level (the median of its recordings'
    first values) and the spread of a subject's start levels between its recordings (log-sd,
    pooled over the subjects with several)."""
    data.subject_rows = {s: i for i, s in enumerate(data.subjects)}
    starts: dict[str, list[float]] = {}
    for r in data.recordings:
        starts.setdefault(r.subject, []).append(max(r.start_us, 1e-3))
    levels = np.array([np.median(starts[s]) for s in data.subjects])
    dev = [np.log(v) - np.log(v).mean() for v in starts.values() if len(v) > 1]
    n = sum(len(d) - 1 for d in dev)
    log_sd = float(np.sqrt(sum(float((d ** 2).sum()) for d in dev) / n)) if n else 0.0
    return dataclasses.replace(cfg, subject_count=len(data.subjects), subject_level_log_sd=round(log_sd, 4)), levels


def _train(data_dir, out_dir, model_config: EDANetConfig, tcfg: TrainConfig, *, resume: bool, skip_bad: bool,
           device: str | None, progress: bool, init_model: EDANet | None, cache) -> dict:
    from tqdm import tqdm


    rank, world, _ = ranks()
    if device is None:
        device = local_device()
    device = _device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # the run folder is created only once the inputs are checked (before train.json is written
    # below): a refused run leaves no empty folder behind
    run = Path(out_dir)
    if rank == 0 and run.exists() and not run.is_dir():
        raise FileExistsError(f"--out {run} is a file; give a folder for the run")

    cache = Path(cache) if cache is not None else default_cache()
    train_data = PairedData(data_dir, model_config, "train", val_fraction=tcfg.val_fraction,
                            crop_steps=tcfg.crop_steps, skip_bad=skip_bad, progress=progress and rank == 0,
                            cache=cache)
    if model_config.eda_representation == "delta" and model_config.initial_eda_us is None:
        # the level generation starts from by default: the training recordings' median first value
        start = float(np.median([r.start_us for r in train_data.recordings]))
        model_config = dataclasses.replace(model_config, initial_eda_us=round(start, 3))
    levels = None
    if model_config.subject_dim and init_model is None:
        model_config, levels = _subject_table(model_config, train_data)
    elif model_config.subject_dim:
        train_data.subject_rows = {s: i for i, s in enumerate(train_data.subjects)} \
            if len(train_data.subjects) == model_config.subject_count else {}
    torch.manual_seed(tcfg.seed)            # identical initial weights on every rank
    model = init_model if init_model is not None else EDANet(model_config)
    model.config = model_config
    if levels is not None:
        model.subject_levels.copy_(torch.as_tensor(levels, dtype=model.subject_levels.dtype))
    model.to(device).train()
    val_windows = []
    if rank == 0 and tcfg.val_fraction > 0:
        val = PairedData(data_dir, model_config, "val", val_fraction=tcfg.val_fraction,
                         crop_steps=tcfg.crop_steps, skip_bad=skip_bad, cache=cache)
        val.subject_rows = train_data.subject_rows
        val_windows = val.validation_windows()

    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, tcfg.lr_factor)
    sampler = torch.Generator().manual_seed(tcfg.seed * 1000 + rank)
    step = 0
    if resume:
        step, state = load_checkpoint(run, model, opt, sched, world, rank, tcfg)
        check_resume_steps(step, tcfg, run)
        if state is not None:
            sampler.set_state(state)
    plan = BatchPlan(train_data, tcfg.batch_size, sampler, tcfg.onset_focus)
    last_ckpt = step if resume else None
    if rank == 0:       # after the resume checks: a refused resume leaves the run as it was
        run.mkdir(parents=True, exist_ok=True)
        remove_temp_files_of(run_files(run))     # of writes a killed run left unfinished: the run's own names only
        atomic_write(run / "train.json", json.dumps(dataclasses.asdict(tcfg), indent=1))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    use_amp = tcfg.amp and device.type == "cuda"

    log_path = run / "log.csv"
    # a new run starts its log afresh (one that stopped before its first checkpoint left one); a
    # resumed one drops the rows of the steps after its checkpoint, which it trains again
    if rank == 0 and (not resume or not log_path.exists()):
        atomic_write(log_path, LOG_HEADER)
    elif rank == 0:
        truncate_log(log_path, step)
    t0 = time.time()
    bar = tqdm(total=tcfg.steps, initial=step, desc="train", unit="step", disable=not progress or rank != 0)
    last_val, loss_v = float("nan"), None
    workers = tcfg.workers if tcfg.workers is not None else (2 if device.type == "cuda" else 0)
    stream = batches(train_data, plan, workers) if step < tcfg.steps else iter(())
    while step < tcfg.steps:
        frames, cond, target, mask, subject = (t.to(device) for t in next(stream))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = ddp(frames, cond, conditioned=True, subject=subject)
        loss = _masked_nll(logits, target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip_norm)
        loss_v, gnorm_v = loss.item(), float(gnorm)
        # checked before the update, so the weights stay as they were. The norm is that of the
        # gradients averaged over the ranks: under DDP every rank stops at the same step.
        if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
            bar.close()         # the error goes on its own line
            raise _diverged(step + 1, f"the loss is {loss_v} (gradient norm {gnorm_v})", tcfg, last_ckpt)
        opt.step()
        sched.step()
        step += 1
        val_now = ""
        if rank == 0 and val_windows and (step % tcfg.val_every == 0 or step == tcfg.steps):
            last_val = validation_nll(model, val_windows, device)
            val_now = f"{last_val:.5f}"
        if rank == 0:
            append_log(log_path, f"{step},{sched.get_last_lr()[0]:.6g},{loss_v:.5f},{gnorm_v:.4f},{val_now},"
                                  f"{time.time() - t0:.2f}\n")
            bar.set_postfix(loss=f"{loss_v:.3f}", val=f"{last_val:.3f}")
            bar.update(1)
        if step % tcfg.ckpt_every == 0 or step == tcfg.steps:
            bad = nonfinite_tensors(model.state_dict())     # a finite gradient can still overflow the update
            if bad:
                bar.close()
                raise _diverged(step, f"the update left NaN or inf in {bad[:3]}", tcfg, last_ckpt)
            states = [plan.state_for_next()]
            if world > 1:
                mine = states[0]
                states = [torch.empty_like(mine) for _ in range(world)]
                dist.all_gather(states, mine)
            if rank == 0:
                save_checkpoint(run, step, model, opt, sched, states, tcfg)
                prune_checkpoints(run, tcfg.keep_checkpoints, step)
            last_ckpt = step
    bar.close()

    summary = {"steps": step, "final_loss": loss_v, "val_nll": last_val,
               "val_bits_per_step": last_val / math.log(2), "world_size": world,
               "seconds": time.time() - t0, "skipped": train_data.skipped}
    if world > 1:   # the replicas must hold identical weights
        flat = torch.cat([p.detach().flatten().float().cpu() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        summary["replica_max_abs_diff"] = max(float((g - gathered[0]).abs().max()) for g in gathered)
        dist.barrier()
    if rank == 0:
        atomic_write(run / "summary.json", json.dumps(summary, indent=1))
    if world > 1:
        dist.destroy_process_group()
    return summary
