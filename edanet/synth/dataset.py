"""Synthetic pairs and datasets: seeds, one pair, writing pairs (WAV, E4 CSV, ground-truth JSON)
and reading the ground truth back."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, atomic_write, write_eda_csv
from .config import GENERATOR_VERSION, SynthConfig, SynthPair
from .population import PopulationConfig, SubjectTraits, draw_subjects
from .response import eda_from_events, response_drive
from .sounds import render_audio


# =============================================================================================
# Pairs and datasets
# =============================================================================================

def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def pair_seed(seed: int, index: int) -> int:
    """Seed of pair ``index`` of a dataset made with ``seed``: the ``index``-th child of
    ``SeedSequence(seed)`` (independent of how many pairs are made)."""
    ss = np.random.SeedSequence(_check_seed(seed), spawn_key=(_check_seed(index),))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def synthesize_pair(seed: int, cfg: SynthConfig = SynthConfig()) -> SynthPair:
    """One synthetic recording: audio with events, and the EDA the response model gives for them."""
    seed = _check_seed(seed)
    audio_ss, eda_ss = np.random.SeedSequence(seed).spawn(2)
    eda_seed = int(eda_ss.generate_state(1, dtype=np.uint64)[0])
    audio, events = render_audio(np.random.default_rng(audio_ss), cfg)
    eda, scrs = eda_from_events(events, cfg.duration, cfg, eda_seed)
    meta = {"seed": seed, "eda_seed": eda_seed, "config": cfg.to_dict(), "generator": GENERATOR_VERSION,
            "seconds": cfg.duration}
    return SynthPair(audio=audio, audio_sample_rate=cfg.audio_sample_rate, eda=eda,
                     eda_sample_rate=cfg.eda_sample_rate, events=events, scrs=scrs, meta=meta)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return round(x, 6)
    return x


def _clear_wav_peak_timestamp(path: Path) -> None:
    """Zero the time stamp libsndfile writes into a float WAV's PEAK chunk, so that the same
    pair gives the same bytes whenever it is written (walks the RIFF chunks up to ``data``)."""
    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8 or chunk[:4] == b"data":
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"PEAK" and size >= 8:      # version (4 bytes), then the time stamp
                f.seek(pos + 12)
                f.write(b"\0\0\0\0")
                return
            pos += 8 + size + (size & 1)


def write_pair(pair: SynthPair, out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """Write ``NAME.wav`` (float32), ``NAME.csv`` (E4 form, start time 0) and ``NAME.json`` (ground
    truth) atomically into ``out_dir``; returns ``{"audio", "eda", "json"}`` paths."""
    import soundfile as sf
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wav, csv, js = out / f"{name}.wav", out / f"{name}.csv", out / f"{name}.json"
    audio = np.asarray(pair.audio, dtype=np.float32).reshape(-1)
    with atomic_path(wav) as tmp:
        sf.write(str(tmp), audio, int(pair.audio_sample_rate), subtype="FLOAT", format="WAV")
        _clear_wav_peak_timestamp(tmp)
    write_eda_csv(csv, pair.eda, pair.eda_sample_rate, fmt="e4", start_time=0.0)
    drives = response_drive(pair.events, SynthConfig.from_dict(pair.meta["config"])) \
        if "config" in pair.meta else None
    truth = {
        "generator": pair.meta.get("generator", GENERATOR_VERSION),
        "name": name,
        "audio": wav.name,
        "eda": csv.name,
        "audio_sample_rate": int(pair.audio_sample_rate),
        "eda_sample_rate": int(pair.eda_sample_rate),
        "seconds": len(pair.eda) / pair.eda_sample_rate,
        "seed": pair.meta.get("seed"),
        "eda_seed": pair.meta.get("eda_seed"),
        **{k: v for k, v in pair.meta.items() if k not in ("seed", "eda_seed", "config", "generator", "seconds")},
        "config": pair.meta.get("config"),
        "events": pair.events,
        "responses": drives,
        "scrs": pair.scrs,
    }
    atomic_write(js, json.dumps(_jsonable(truth), indent=1) + "\n")
    return {"audio": wav, "eda": csv, "json": js}


def write_dataset(out_dir: str | os.PathLike, pairs: int, cfg: SynthConfig = SynthConfig(), seed: int = 0,
                  progress: bool = True) -> list[str]:
    """Make ``pairs`` pairs ``synth_00000 ...`` in ``out_dir`` (pair ``i`` from ``pair_seed(seed, i)``),
    each written atomically, then a ``dataset.json`` manifest. Returns the names."""
    from tqdm.auto import tqdm
    if isinstance(pairs, bool) or not isinstance(pairs, (int, np.integer)) or pairs < 0:
        raise ValueError(f"pairs must be a non-negative integer, got {pairs!r}")
    seed = _check_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(max(int(pairs) - 1, 0))))
    names, seeds = [], []
    for i in tqdm(range(int(pairs)), desc="synth", unit="pair", disable=not progress):
        name = f"synth_{i:0{width}d}"
        ps = pair_seed(seed, i)
        pair = synthesize_pair(ps, cfg)
        pair.meta.update({"dataset_seed": seed, "index": i})
        write_pair(pair, out, name)
        names.append(name)
        seeds.append(ps)
    manifest = {"generator": GENERATOR_VERSION, "seed": seed, "pairs": len(names),
                "audio_sample_rate": cfg.audio_sample_rate, "eda_sample_rate": cfg.eda_sample_rate,
                "seconds": cfg.duration, "eda_format": "e4", "config": cfg.to_dict(),
                "names": names, "pair_seeds": seeds}
    atomic_write(out / "dataset.json", json.dumps(_jsonable(manifest), indent=1) + "\n")
    return names


def subject_eda_seed(clip_seed: int, k: int) -> int:
    """The response model's seed for subject ``k`` of a cohort on the clip of seed ``clip_seed``."""
    ss = np.random.SeedSequence(_check_seed(clip_seed), spawn_key=(3, int(k)))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def write_cohort(out_dir: str | os.PathLike, clips: int, subjects: int | list[SubjectTraits],
                 cfg: SynthConfig = SynthConfig(), seed: int = 0, population: PopulationConfig = PopulationConfig(),
                 progress: bool = True) -> list[str]:
    """A cohort: ``subjects`` simulated people (a count, drawn with :func:`draw_subjects` from
    ``population`` and ``seed``, or the people themselves) each listening to the same ``clips``
    clips. Writes, for clip ``NAME`` (``synth_00000 ...``; its audio and events from
    ``pair_seed(seed, i)``, as :func:`write_dataset`'s): ``NAME.wav``, one ``NAME.<subject>.csv``
    per subject (the multi-subject layout ``edanet train`` reads) and ``NAME.json`` (the events,
    and per subject its traits, its response model seed and its SCRs); then ``subjects.json``
    (every subject's traits) and ``dataset.json``. Returns the clip names."""
    import soundfile as sf
    from tqdm.auto import tqdm
    if isinstance(clips, bool) or not isinstance(clips, (int, np.integer)) or clips < 0:
        raise ValueError(f"clips must be a non-negative integer, got {clips!r}")
    seed = _check_seed(seed)
    people = draw_subjects(subjects, seed, cfg, population) if isinstance(subjects, (int, np.integer)) \
        else list(subjects)
    if not people:
        raise ValueError("a cohort needs at least one subject")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(max(int(clips) - 1, 0))))
    names = []
    for i in tqdm(range(int(clips)), desc="synth", unit="clip", disable=not progress):
        name = f"synth_{i:0{width}d}"
        ps = pair_seed(seed, i)
        audio_ss, _ = np.random.SeedSequence(ps).spawn(2)       # the audio of write_dataset's pair i
        audio, events = render_audio(np.random.default_rng(audio_ss), cfg)
        with atomic_path(out / f"{name}.wav") as tmp:
            sf.write(str(tmp), np.asarray(audio, dtype=np.float32), cfg.audio_sample_rate, subtype="FLOAT",
                     format="WAV")
            _clear_wav_peak_timestamp(tmp)
        per_subject = {}
        for k, person in enumerate(people):
            scfg = person.config(cfg)
            eda_seed = subject_eda_seed(ps, k)
            eda, scrs = eda_from_events(events, cfg.duration, scfg, eda_seed)
            write_eda_csv(out / f"{name}.{person.id}.csv", eda, cfg.eda_sample_rate, fmt="e4", start_time=0.0)
            per_subject[person.id] = {"eda": f"{name}.{person.id}.csv", "eda_seed": eda_seed,
                                      "traits": person.to_dict(), "responses": response_drive(events, scfg),
                                      "scrs": scrs}
        truth = {"generator": GENERATOR_VERSION, "name": name, "audio": f"{name}.wav",
                 "audio_sample_rate": cfg.audio_sample_rate, "eda_sample_rate": cfg.eda_sample_rate,
                 "seconds": cfg.duration, "seed": ps, "dataset_seed": seed, "index": i, "config": cfg.to_dict(),
                 "events": events, "subjects": per_subject}
        atomic_write(out / f"{name}.json", json.dumps(_jsonable(truth), indent=1) + "\n")
        names.append(name)
    traits = {p.id: p.to_dict() for p in people}
    atomic_write(out / "subjects.json", json.dumps(_jsonable({"generator": GENERATOR_VERSION, "seed": seed,
                                                              "population": population.to_dict(),
                                                              "subjects": traits}), indent=1) + "\n")
    manifest = {"generator": GENERATOR_VERSION, "seed": seed, "clips": len(names), "subjects": [p.id for p in people],
                "audio_sample_rate": cfg.audio_sample_rate, "eda_sample_rate": cfg.eda_sample_rate,
                "seconds": cfg.duration, "eda_format": "e4", "config": cfg.to_dict(),
                "population": population.to_dict(), "names": names}
    atomic_write(out / "dataset.json", json.dumps(_jsonable(manifest), indent=1) + "\n")
    return names


def subject_truth(truth: dict, subject: str | None) -> dict:
    """The ground truth of one recording: ``truth`` (from :func:`read_ground_truth`) itself for
    a single-subject pair; for subject ``subject`` of a cohort clip, the clip's events with that
    subject's SCRs, response model seed, traits and the response model's config for it."""
    if subject is None or "subjects" not in truth:
        return truth
    if subject not in truth["subjects"]:
        raise ValueError(f"{truth.get('name', 'this clip')}'s ground truth has no subject {subject!r} (it has "
                         f"{sorted(truth['subjects'])[:5]})")
    s = truth["subjects"][subject]
    traits = SubjectTraits.from_dict(s["traits"])
    cfg = traits.config(SynthConfig.from_dict(truth["config"])).to_dict()
    return {**{k: v for k, v in truth.items() if k != "subjects"}, "scrs": s["scrs"], "eda_seed": s["eda_seed"],
            "responses": s.get("responses"), "traits": s["traits"], "subject": subject, "config": cfg}


def read_ground_truth(json_path: str | os.PathLike) -> dict:
    """The ground truth written beside a pair: ``events``, ``scrs``, sample rates, seeds, config..."""
    p = Path(json_path)
    if p.suffix.lower() != ".json":
        p = p.with_suffix(".json")
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no ground truth at {p}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(d, dict) or "events" not in d or ("scrs" not in d and "subjects" not in d):
        raise ValueError(f"{p} is not an edanet synth ground-truth file (needs 'events', and 'scrs' or "
                         "'subjects')")
    return d
