"""Evaluation: held-out NLL and the stimulus-locked SCR F1.

- NLL: teacher-forced, nats and bits per EDA step, over every step of every recording (windows
  with a full receptive-field warm-up, exactly as validation during training).
- SCR F1: SCR onsets that NeuroKit2 finds in generated EDA (high-pass phasic component, then
  ``eda_findpeaks(method="neurokit")``) matched one-to-one to the true stimulus-locked onsets
  of the recording's ground truth (``NAME.json`` from ``edanet synth``) within +-1 s. Beside it:
  an audio-agnostic baseline (as many onsets as were found in the generated EDA, at uniformly
  random times) and the data's own ceiling (the ground-truth generator run again on the same
  acoustic events with another noise seed, scored the same way).
"""
from __future__ import annotations

import json
import math
import numbers
import warnings

import numpy as np

__all__ = ["detect_scr_onsets", "match_f1", "evaluate"]

TOLERANCE_S = 1.0


def detect_scr_onsets(eda_us: np.ndarray, rate: float, *, amplitude_min: float = 0.3,
                      absolute_min_us: float = 0.05) -> np.ndarray:
    """Onset times (s) of the SCRs NeuroKit2 finds in ``eda_us``: peaks of the phasic component
    above ``amplitude_min`` of the largest one and ``absolute_min_us`` in height."""
    import neurokit2 as nk
    x = np.asarray(eda_us, dtype=np.float64)
    if x.size < int(8 * rate) or np.ptp(x) < absolute_min_us:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phasic = np.asarray(nk.eda_phasic(x, sampling_rate=int(rate), method="highpass")["EDA_Phasic"])
        info = nk.eda_findpeaks(phasic, sampling_rate=int(rate), method="neurokit", amplitude_min=amplitude_min)
    on = np.asarray(info["SCR_Onsets"], dtype=float)
    pk = np.asarray(info["SCR_Peaks"], dtype=float)
    ok = np.isfinite(on) & np.isfinite(pk)
    on, pk = on[ok].astype(int), pk[ok].astype(int)
    keep = (phasic[pk] - phasic[on]) >= absolute_min_us
    return on[keep] / rate


def match_f1(found: np.ndarray, true: np.ndarray, tol: float = TOLERANCE_S) -> tuple[float, int]:
    """F1 of ``found`` onsets against ``true`` ones, one-to-one within ``tol`` s (greedy in time,
    nearest first). Returns (F1, matches); F1 is 1 when both are empty."""
    found, true = np.sort(np.asarray(found, float)), np.sort(np.asarray(true, float))
    if found.size == 0 and true.size == 0:
        return 1.0, 0
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(true) if abs(f - t) <= tol)
    used_f, used_t, tp = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            tp += 1
    return 2 * tp / (found.size + true.size), tp


def _random_baseline(n: int, duration: float, true: np.ndarray, rng: np.random.Generator, draws: int = 20) -> float:
    return float(np.mean([match_f1(rng.uniform(0, duration, n), true)[0] for _ in range(draws)]))


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_arguments(num_samples, temperature, max_recordings, seed) -> None:
    """Reject bad arguments before any work is done (some are used only for recordings with
    ground truth, so they would otherwise pass unchecked)."""
    from .generate import check_sampling
    check_sampling(num_samples, temperature)
    if max_recordings is not None and (not _is_int(max_recordings) or max_recordings < 1):
        raise ValueError(f"max_recordings must be a positive integer, or None for every recording, "
                         f"got {max_recordings!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def evaluate(data_dir, *, model=None, out=None, backend: str = "auto", num_samples: int = 4, seed: int = 0,
             temperature: float = 1.0, max_recordings: int | None = None, progress: bool = True) -> dict:
    """Evaluate ``model`` (default: the bundled one) on every pair in ``data_dir``; write
    ``OUT.md`` and ``OUT.json`` when ``out`` is given. Returns the report dict."""
    _check_arguments(num_samples, temperature, max_recordings, seed)
    import torch
    from tqdm import tqdm

    from .data import PairedData
    from .generate import _resolve_model, generate
    from .synth import SynthConfig, eda_from_events, read_ground_truth
    from .train import validation_nll

    net = _resolve_model(model)
    cfg = net.config
    data = PairedData(data_dir, cfg, "all", crop_steps=64, max_recordings=max_recordings,
                      bad_pair_hint="fix or remove that pair: evaluate reads every pair in the folder")
    recs = data.recordings
    nll = validation_nll(net, data.validation_windows(max_windows_per_recording=10 ** 6), "cpu")

    rows, rng = [], np.random.default_rng(seed)
    for i, rec in enumerate(tqdm(recs, desc="evaluate", unit="rec", disable=not progress)):
        gt_path = rec.csv_path.with_suffix(".json")
        if not gt_path.is_file():
            continue
        gt = read_ground_truth(gt_path)
        true = np.array([s["onset"] for s in gt["scrs"] if s["kind"] == "stimulus"])
        res = generate(str(rec.audio_path), model=net, backend=backend, num_samples=num_samples, seed=seed + i,
                       temperature=temperature, eda_range_us=(rec.lo, rec.hi))
        duration = res.values.shape[1] / res.sample_rate
        f1s, base = [], []
        for v in res.values:
            found = detect_scr_onsets(v, res.sample_rate)
            f1s.append(match_f1(found, true)[0])
            base.append(_random_baseline(len(found), duration, true, rng))
        scfg = SynthConfig.from_dict(gt.get("config", {}))
        again, _ = eda_from_events(gt["events"], duration, scfg, seed=10 ** 6 + seed + i)
        ceiling = match_f1(detect_scr_onsets(np.asarray(again)[: res.values.shape[1]], res.sample_rate), true)[0]
        rows.append({"name": rec.name, "true_onsets": int(true.size), "f1_model": float(np.mean(f1s)),
                     "f1_baseline": float(np.mean(base)), "f1_ceiling": float(ceiling)})

    def mean(k):
        return float(np.mean([r[k] for r in rows])) if rows else float("nan")

    report = {"data": str(data_dir), "recordings": len(recs), "scored_recordings": len(rows),
              "nll_nats_per_step": nll, "nll_bits_per_step": nll / math.log(2),
              "f1_model": mean("f1_model"), "f1_audio_agnostic_baseline": mean("f1_baseline"),
              "f1_ceiling": mean("f1_ceiling"), "num_samples": num_samples, "backend": backend,
              "temperature": temperature,
              "tolerance_s": TOLERANCE_S, "per_recording": rows, "torch": torch.__version__}
    report["markdown"] = (
        "| metric | value |\n|---|---|\n"
        f"| recordings | {len(recs)} ({len(rows)} with ground truth) |\n"
        f"| sampling | {num_samples} samples each, temperature {temperature:g} |\n"
        f"| NLL (nats / step) | {nll:.4f} |\n| NLL (bits / step) | {nll / math.log(2):.4f} |\n"
        f"| SCR F1, model (+-{TOLERANCE_S:g} s) | {report['f1_model']:.3f} |\n"
        f"| SCR F1, audio-agnostic baseline | {report['f1_audio_agnostic_baseline']:.3f} |\n"
        f"| SCR F1, data ceiling | {report['f1_ceiling']:.3f} |\n")
    if out:
        from .io import atomic_write
        atomic_write(f"{out}.md", report["markdown"])
        atomic_write(f"{out}.json", json.dumps(report, indent=1))
    return report
