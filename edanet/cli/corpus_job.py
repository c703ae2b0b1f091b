"""``edanet generate IN... -o OUTDIR``: a corpus to a folder of CSVs.

Each clip's CSV (and plot) lands at its relative path under OUTDIR, with a record beside it
(``clip.json``: what made it, and the CSV's sha256). ``OUTDIR/manifest.csv`` lists every clip
(input, output, duration, seed, backend, status, error). A clip that cannot be read is
recorded and the rest go on (``fail_fast`` stops at it).

Nothing of the user's is overwritten: before anything is written, the run is refused when two
clips would write the same file, when a clip's output would be the manifest, and when an
output exists that this tool did not record (a recorded EDA CSV of a training folder, a
user's file). An output counts as done only when its record says so and the CSV's hash
matches (and its plot exists when one is asked for); the record is written before the CSV
and the plot, so a run killed at any point regenerates what it did not finish, and the
temporary files it left beside its outputs are removed. ``overwrite`` regenerates recorded
outputs, never anything else.

Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes the clips whose relative path hashes
to its rank (``edanet.generation.shard_of``), on GPU ``LOCAL_RANK`` where there are GPUs, and
writes ``manifest.rank-R-of-W.csv``; after a barrier (gloo) rank 0 merges them into
``manifest.csv``. Seeds come from the relative paths, so the union of the outputs is what one
process would write."""
from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ..dist import local_device, ranks
from ..evaluation.plot import plot_format, plot_generation
from ..generation import Clip, clip_seed, find_clips, generate_many, shard_of
from ..io import atomic_write, eda_csv_text, remove_temp_files_of, sidecar_fields

__all__ = ["CorpusJob", "run_corpus", "MANIFEST_FIELDS", "MANIFEST", "RECORD_KIND"]

MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ("input", "output", "duration_s", "seed", "backend", "status", "error", "model", "model_sha256",
                   "edanet_version", "temperature", "start_eda_us")
#: Names at the top of OUTDIR that are the run's own: a clip's output must not take them.
_RESERVED = re.compile(r"manifest(\.rank-\d+-of-\d+)?\.csv")
#: What a record says it is: an output with another record, or none, is not this tool's.
RECORD_KIND = "edanet generate output"


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
    start_time: float = 0.0
    summary: bool = False


@dataclass(frozen=True)
class _Outputs:
    """The files one clip writes: its CSV, its record, and its plot (when asked for)."""
    csv: Path
    record: Path
    plot: Path | None

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.csv, self.record) + ((self.plot,) if self.plot else ())


def _duration(path: Path) -> str:
    import soundfile
    try:
        return f"{soundfile.info(str(path)).duration:.3f}"
    except Exception:        # an unreadable clip: its row says why in "error"
        return ""


def _text(s: str) -> str:
    """``s`` as UTF-8 can hold it: a name that is not valid UTF-8 (its bytes held as surrogates)
    shown with its bad bytes escaped (\\xNN)."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _rows_csv(rows: list[dict]) -> str:
    # every field quoted: a file name may hold a comma, a quote, a line feed or a carriage
    # return, and each reads back as it was written
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _is_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest this tool wrote (its header is ours)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
        # the first seven are every version's (the provenance columns came later)
        return header is not None and header[:7] == list(MANIFEST_FIELDS[:7])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def _read_record(path: Path, rel: str) -> dict | None:
    """The record of clip ``rel``'s output at ``path``, or None when there is none or it is not
    one this tool wrote for that clip."""
    try:
        if path.stat().st_size > 1 << 20:
            return None
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("kind") != RECORD_KIND or rec.get("input") != rel:
        return None
    return rec


def _check_outputs(clips: list[Clip], outputs: dict[str, _Outputs], out_dir: Path) -> None:
    """Refuse, before anything is written, a corpus whose outputs would collide (two clips on
    one file, a clip on the manifest or on an input) or overwrite a file this tool did not write."""
    owner: dict[str, Clip] = {}
    inputs = {c.path.resolve() for c in clips}
    for c in clips:
        for f in outputs[c.rel].files:
            key = str(f).casefold()          # a case-insensitive file system would merge them
            if key in owner and owner[key] is not c:
                raise ValueError(f"{owner[key].path} and {c.path} would both write {f}: give them in different folders "
                                 "or rename one (outputs keep each input's path, without its suffix)")
            owner[key] = c
            if f.parent == out_dir and _RESERVED.fullmatch(f.name):
                raise ValueError(f"{c.path} would write {f}, the corpus manifest's name: rename the clip or give it "
                                 "in a subfolder")
            if f.resolve() in inputs:
                raise ValueError(f"{c.path}'s output {f} is one of the inputs: choose another -o folder")
    foreign = []
    for c in clips:
        o = outputs[c.rel]
        rec = _read_record(o.record, c.rel)
        if o.record.exists() and rec is None:
            foreign.append(o.record)
            continue
        for f in (o.csv, o.plot):
            if f is not None and f.exists() and (rec is None or (f == o.plot and rec.get("plot") != f.name)):
                foreign.append(f)
    manifest = out_dir / MANIFEST
    if manifest.exists() and not _is_manifest(manifest):
        foreign.append(manifest)
    if foreign:
        shown = ", ".join(str(f) for f in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FileExistsError(f"edanet generate would overwrite {shown}, which it did not write (no record of its "
                              "own beside them): nothing was written; generate into another -o folder, or move "
                              "those files away")


def _done(c: Clip, o: _Outputs) -> dict | None:
    """The record of clip ``c`` when it says its outputs were completed and they are there (the
    plot too, when one is asked for), else None. A CSV changed since is the user's business:
    it is done, and only ``overwrite`` regenerates it."""
    rec = _read_record(o.record, c.rel)
    if rec is None or rec.get("status") != "done" or not o.csv.is_file():
        return None
    if o.plot is not None and not (rec.get("plot") == o.plot.name and o.plot.is_file()):
        return None
    return rec


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
        plot_format(f"x.{job.plot_format}")
    clips = find_clips(job.inputs)
    if not clips:
        raise FileNotFoundError(f"no audio files in {', '.join(job.inputs)} (looked for "
                                "wav, flac, ogg, mp3, aiff, ... recursively)")
    outputs = {}
    ext = ".tsv.gz" if job.fmt == "bids" else ".csv"
    for c in clips:
        base = out_dir / Path(c.rel).with_suffix("")
        outputs[c.rel] = _Outputs(base.with_name(base.name + ext), base.with_name(base.name + ".json"),
                                  base.with_name(f"{base.name}.{job.plot_format}") if job.plot_format else None)
    _check_outputs(clips, outputs, out_dir)
    mine = [c for c in clips if shard_of(c.rel, world) == rank]
    # what a killed run left half-written beside this process's outputs (and only there)
    remove_temp_files_of([f for c in mine for f in outputs[c.rel].files]
                         + [out_dir / MANIFEST, out_dir / f"manifest.rank-{rank}-of-{world}.csv"])

    device = None
    if world > 1:
        device = torch.device(local_device())
        import torch.distributed as dist
        dist.init_process_group("gloo", timeout=timedelta(days=7))    # only a barrier: a shard may take hours

    def row(c: Clip, status: str, backend: str = "", error: str = "", prov: dict | None = None) -> dict:
        prov = prov or {}
        start = prov.get("start_eda_us") or []
        return {"input": _text(str(c.path)), "output": _text(str(outputs[c.rel].csv)), "duration_s": _duration(c.path),
                "seed": clip_seed(job.seed, c.rel), "backend": backend, "status": status,
                "error": " ".join(error.split()), "model": prov.get("model", {}).get("name", ""),
                "model_sha256": prov.get("model", {}).get("sha256", ""), "edanet_version": prov.get("edanet_version", ""),
                "temperature": prov.get("temperature", ""), "start_eda_us": " ".join(f"{x:g}" for x in start)}

    rows: dict[str, dict] = {}
    todo = []
    for c in mine:
        if not (_utf8(c.rel) and _utf8(str(c.path))):
            rows[c.rel] = row(c, "error", error=f"ValueError: the file name {_text(str(c.path))!r} is not valid UTF-8, "
                                                "so neither its output's name nor the manifest could hold it: "
                                                "rename the file")
        elif not job.overwrite and (rec := _done(c, outputs[c.rel])) is not None:
            rows[c.rel] = row(c, "skipped", str(rec.get("backend", "")), prov=rec)
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
                    _write_outputs(clip, res, outputs[clip.rel], job)
                except OSError as e:
                    res = e
            if isinstance(res, BaseException):
                rows[clip.rel] = row(clip, "error", error=f"{type(res).__name__}: {res}")
                if job.fail_fast:
                    first_error = res
                    break
            else:
                rows[clip.rel] = row(clip, "ok", res.backend, prov=res.provenance)
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
          f"manifest {_text(str(out_dir / MANIFEST))}")
    if first_error is not None:
        raise first_error
    if failed:
        print(f"{who}edanet generate: {failed} of {len(mine)} clips failed; their errors are in "
              f"{_text(str(out_dir / MANIFEST))}", file=sys.stderr)
        return 1
    return 0


def _write_outputs(clip: Clip, res, o: _Outputs, job: CorpusJob) -> None:
    """The clip's record claims its outputs ("writing"), then its CSV and plot are written, then
    the record says "done": a run killed in between leaves a claim, and the clip is generated
    again (its files are this tool's to replace), never a file of ours without a record."""
    values = res.values if res.values.shape[0] > 1 else res.values[0]
    text = eda_csv_text(values, res.sample_rate, fmt=job.fmt, start_time=job.start_time, summary=job.summary)
    data = gzip.compress(text.encode(), mtime=0) if job.fmt == "bids" else text.encode()
    # the record is the output's sidecar: its provenance, its layout (BIDS physio's fields)
    record = {"kind": RECORD_KIND, "status": "writing", "input": clip.rel, "output": o.csv.name,
              "csv_sha256": hashlib.sha256(data).hexdigest(), "plot": o.plot.name if o.plot else None,
              **res.provenance, **sidecar_fields(job.fmt, res.values.shape[0], res.sample_rate, job.summary,
                                                 job.start_time)}
    atomic_write(o.record, json.dumps(record, indent=1) + "\n")
    atomic_write(o.csv, data)
    if o.plot is not None:
        plot_generation(clip.path, res, o.plot)
    atomic_write(o.record, json.dumps({**record, "status": "done"}, indent=1) + "\n")


def _write_manifest(out_dir: Path, rows: list[dict], rank: int, world: int, clips: list[Clip]) -> None:
    """manifest.csv of ``rows`` (in input order); with several processes, each writes its own
    and rank 0 merges them, in the order of ``clips``, once all have."""
    if world == 1:
        atomic_write(out_dir / MANIFEST, _rows_csv(rows))
        return
    import torch.distributed as dist
    atomic_write(out_dir / f"manifest.rank-{rank}-of-{world}.csv", _rows_csv(rows))
    dist.barrier()
    if rank == 0:
        parts = [out_dir / f"manifest.rank-{r}-of-{world}.csv" for r in range(world)]
        merged = [row for p in parts for row in _read_rows(p)]
        order = {_text(str(c.path)): i for i, c in enumerate(clips)}
        merged.sort(key=lambda r: order.get(r["input"], len(order)))
        atomic_write(out_dir / MANIFEST, _rows_csv(merged))
        for p in parts:
            p.unlink()
    dist.barrier()
    dist.destroy_process_group()
