"""``edanet generate IN... -o OUTDIR``: a corpus to a folder of CSVs.

Each clip's CSV (and plot) lands at its relative path under OUTDIR; an existing output is
skipped unless ``overwrite``, so an interrupted run resumes; ``OUTDIR/manifest.csv`` lists
every clip (input, output, duration, seed, backend, status, error). A clip that cannot be
read is recorded and the rest go on (``fail_fast`` stops at it).

Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes the clips whose relative path hashes
to its rank (``edanet.corpus.shard_of``), on GPU ``LOCAL_RANK`` where there are GPUs, and
writes ``manifest.rank-R-of-W.csv``; after a barrier (gloo) rank 0 merges them into
``manifest.csv``. Seeds come from the relative paths, so the union of the outputs is what one
process would write."""
from __future__ import annotations

import collections
import csv
import io
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from .corpus import Clip, clip_seed, find_clips, generate_many, shard_of
from .dist import local_device, ranks
from .io import atomic_write, write_eda_csv

__all__ = ["CorpusJob", "run_corpus", "MANIFEST_FIELDS"]

MANIFEST_FIELDS = ("input", "output", "duration_s", "seed", "backend", "status", "error")


@dataclass
class CorpusJob:
    inputs: list[str]
    out_dir: str
    plot_format: str | None = None          # "png", "svg", ...: a plot beside each CSV
    overwrite: bool = False
    fail_fast: bool = False
    model: str | None = None
    backend: str = "auto"
    batch_size: int | None = None
    seed: int = 0
    num_samples: int = 1
    temperature: float = 1.0
    initial_eda: float | None = None
    fmt: str = "e4"
    quiet: bool = False


def _duration(path: Path) -> str:
    import soundfile
    try:
        return f"{soundfile.info(str(path)).duration:.3f}"
    except Exception:        # an unreadable clip: its row says why in "error"
        return ""


def _rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_corpus(job: CorpusJob) -> int:
    """Run ``job``; returns 0 when every clip has its output, 1 when some failed (the manifest
    says which and why)."""
    import torch
    from tqdm import tqdm

    rank, world, _ = ranks()
    out_dir = Path(job.out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"-o {out_dir} is a file, but several inputs (or a folder) need an output folder")
    if job.plot_format:
        from .plot import plot_format
        plot_format(f"x.{job.plot_format}")
    clips = find_clips(job.inputs)
    if not clips:
        raise FileNotFoundError(f"no audio files in {', '.join(job.inputs)} (looked for "
                                "wav, flac, ogg, mp3, aiff, ... recursively)")
    outputs = {c.rel: out_dir / Path(c.rel).with_suffix(".csv") for c in clips}
    for c in clips:
        if outputs[c.rel].resolve() == c.path.resolve():
            raise ValueError(f"the output for {c.path} would overwrite it: choose another -o folder")
    mine = [c for c in clips if shard_of(c.rel, world) == rank]

    device = None
    if world > 1:
        device = torch.device(local_device())
        import torch.distributed as dist
        dist.init_process_group("gloo", timeout=timedelta(days=7))    # only a barrier: a shard may take hours

    def row(c: Clip, status: str, backend: str = "", error: str = "") -> dict:
        return {"input": str(c.path), "output": str(outputs[c.rel]), "duration_s": _duration(c.path),
                "seed": clip_seed(job.seed, c.rel), "backend": backend, "status": status,
                "error": " ".join(error.split())}

    rows: dict[str, dict] = {}
    todo = []
    for c in mine:
        if outputs[c.rel].exists() and not job.overwrite:
            rows[c.rel] = row(c, "skipped")
        else:
            todo.append(c)

    who = f"[rank {rank}/{world}] " if world > 1 else ""
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="clip", desc=f"{who}edanet generate",
               disable=job.quiet, dynamic_ncols=True)
    t0, audio_s, first_error = time.perf_counter(), 0.0, None
    try:
        for clip, res in generate_many(todo, model=job.model, backend=job.backend, batch_size=job.batch_size,
                                       seed=job.seed, num_samples=job.num_samples, temperature=job.temperature,
                                       initial_eda_us=job.initial_eda, device=device, on_error="yield"):
            if not isinstance(res, BaseException):
                try:
                    values = res.values if res.values.shape[0] > 1 else res.values[0]
                    write_eda_csv(outputs[clip.rel], values, res.sample_rate, fmt=job.fmt)
                    if job.plot_format:
                        from .plot import plot_generation
                        plot_generation(clip.path, res, outputs[clip.rel].with_suffix("." + job.plot_format))
                except OSError as e:
                    res = e
            if isinstance(res, BaseException):
                rows[clip.rel] = row(clip, "error", error=f"{type(res).__name__}: {res}")
                if job.fail_fast:
                    first_error = res
                    break
            else:
                rows[clip.rel] = row(clip, "ok", res.backend)
                audio_s += res.values.shape[1] / res.sample_rate
            bar.update()
            bar.set_postfix_str(f"{audio_s / 3600:.2f} audio h")
    finally:
        bar.close()
        for c in todo:             # not reached: stopped by --fail-fast, an interrupt or an error
            rows.setdefault(c.rel, row(c, "pending"))
        _write_manifest(out_dir, [rows[c.rel] for c in mine], rank, world, clips)
    wall = time.perf_counter() - t0
    count = collections.Counter(r["status"] for r in rows.values())
    done, skipped, failed = count["ok"], count["skipped"], count["error"]
    print(f"{who}edanet generate: {len(mine)} clips ({done} generated, {skipped} skipped, {failed} failed), "
          f"{audio_s / 3600:.3f} audio hours in {wall:.1f} s: {audio_s / max(wall, 1e-9):.0f}x real time; "
          f"manifest {out_dir / 'manifest.csv'}")
    if first_error is not None:
        raise first_error
    if failed:
        print(f"{who}edanet generate: {failed} of {len(mine)} clips failed; their errors are in "
              f"{out_dir / 'manifest.csv'}", file=sys.stderr)
        return 1
    return 0


def _write_manifest(out_dir: Path, rows: list[dict], rank: int, world: int, clips: list[Clip]) -> None:
    """manifest.csv of ``rows`` (in input order); with several processes, each writes its own
    and rank 0 merges them, in the order of ``clips``, once all have."""
    if world == 1:
        atomic_write(out_dir / "manifest.csv", _rows_csv(rows))
        return
    import torch.distributed as dist
    atomic_write(out_dir / f"manifest.rank-{rank}-of-{world}.csv", _rows_csv(rows))
    dist.barrier()
    if rank == 0:
        parts = [out_dir / f"manifest.rank-{r}-of-{world}.csv" for r in range(world)]
        merged = [row for p in parts for row in _read_rows(p)]
        order = {str(c.path): i for i, c in enumerate(clips)}
        merged.sort(key=lambda r: order[r["input"]])
        atomic_write(out_dir / "manifest.csv", _rows_csv(merged))
        for p in parts:
            p.unlink()
    dist.barrier()
    dist.destroy_process_group()
