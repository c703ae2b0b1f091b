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
from .response import eda_from_events, response_drive
from .sounds import _render_audio


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
    audio, events = _render_audio(np.random.default_rng(audio_ss), cfg)
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
    if not isinstance(d, dict) or "events" not in d or "scrs" not in d:
        raise ValueError(f"{p} is not an edanet synth ground-truth file (needs 'events' and 'scrs')")
    return d
