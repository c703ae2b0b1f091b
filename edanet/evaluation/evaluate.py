"""Evaluation: how far generated EDA is from the data, on held-out synthetic recordings.

Every system is scored by the same code (``edanet.metrics``) on the same recordings:

- ``model``: the model under test, ``num_samples`` samples per recording.
- ``baseline_model`` (optional): another model, usually the same architecture trained without
  audio (``audio_input=False``): what the audio adds. It gets the same sampling uniforms.
- ``onset_rule``: no learning, an SCR 2 s after every acoustic onset louder than -30 dBFS
  (``metrics.acoustic_onset_rule``). It has onsets but no EDA: response rate and F1 only.
- ``random_onsets``: as many SCR onsets as the model shows in each sample, at uniformly random
  times (``RANDOM_DRAWS`` draws each): the F1 and response rate of chance.
- ``data_redrawn``: the ground-truth generator run again on the same acoustic events with
  other seeds (``redraws`` per recording): the data's own variability, what a perfect
  generative model would score on every figure. (Not a bound on F1: a rule that predicts an
  SCR after every likely event can match more true onsets than a second random draw does.)
- ``data``: the recorded EDA itself, the reference of the distribution figures.

Figures (per system; ``edanet.report`` writes them out with one sentence each):

- NLL per EDA step (teacher-forced, every step of every recording, full receptive-field
  warm-up as in validation) in nats and bits, and the NLL of the µS value
  (``metrics.nll_per_us``: uniform dequantization, comparable across output representations).
- Event-locked average EDA around acoustic events, and the response size (mean 1-7 s after
  minus 2 s before), mean and 95% CI over events; its ratio to the data's.
- Response rate (an SCR 0.5-4.5 s after the event) by the event's true response probability.
- SCR amplitude / rise / half-recovery: medians and 1-Wasserstein distances to the data's;
  SCRs per minute.
- Texture: distinct values per minute, flat-step fraction, largest jump, median peak-to-peak.
- SCR F1 against the true stimulus-locked onsets (+-1 s); a sample with no SCR on a recording
  with no stimulus-locked SCR has nothing to score and is excluded (counted), not an F1 of 1.

Seeds: evaluation seed ``s_k = seed + k`` for ``k < seeds``; recording ``i`` is sampled with
the uniforms of ``SeedSequence((s_k, i))`` and redrawn with ``SeedSequence((s_k, i, r, 1))``.
Every figure is computed per seed over all recordings, then reported as mean and sd over seeds.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..extras import require
from ..features import load_audio
from ..generation import Generator, check_sampling, resolve_model
from ..signals import codec_for, resample_eda
from ..synth import SynthConfig, eda_from_events, read_ground_truth, response_drive, subject_truth
from ..training.data import PairedData
from . import metrics
from .report import SYSTEMS, build_report, write_report

__all__ = ["evaluate", "TOLERANCE_S", "RANDOM_DRAWS", "SPAN_S"]

TOLERANCE_S = 1.0
#: Random-onset draws per generated sample (the chance baseline's own noise averages out).
RANDOM_DRAWS = 20
# the report's trace plot: the data and the first samples of the first recordings
TRACE_RECORDINGS = 3
TRACE_SAMPLES = 3
#: The event-locked average's span around event onsets (s).
SPAN_S = (-5.0, 15.0)
#: Systems in report order.
_DIST = ("amplitude", "rise", "half_recovery")


@dataclass
class Truth:
    """What a recording's ground truth says, cut to the ``n`` scored EDA steps."""
    name: str
    duration: float                # s: the scored steps
    times: np.ndarray              # acoustic event onsets (s)
    p_response: np.ndarray         # each event's true probability of eliciting an SCR
    true_onsets: np.ndarray        # stimulus-locked SCR onsets (s)
    gt: dict


def _read_truth(rec, n: int, rate: float) -> Truth | None:
    """The ground truth of ``rec``: its pair's JSON, or for a subject of a cohort clip the clip's
    JSON, that subject's part (``edanet.synth.subject_truth``); None when there is none."""
    path = rec.csv_path.with_suffix(".json")
    subject = None
    if not path.is_file() and "/" in rec.name:
        path, subject = rec.audio_path.with_suffix(".json"), rec.name.split("/", 1)[1]
    if not path.is_file():
        return None
    gt = subject_truth(read_ground_truth(path), subject)
    duration = n / rate
    events = [e for e in gt["events"] if float(e["time"]) < duration]
    responses = gt.get("responses") or response_drive(gt["events"], SynthConfig.from_dict(gt.get("config") or {}))
    p = [r["p_response"] for e, r in zip(gt["events"], responses) if float(e["time"]) < duration]
    true = [s["onset"] for s in gt["scrs"] if s["kind"] == "stimulus" and s["onset"] < duration]
    return Truth(rec.name, duration, np.array([float(e["time"]) for e in events]), np.asarray(p, float),
                 np.asarray(true, float), gt)


@dataclass
class Tally:
    """One system's scores over the recordings of one evaluation seed."""
    response: list = field(default_factory=list)      # per event: response size (µS), mean over rows
    curves: list = field(default_factory=list)        # per event: event-locked curve, mean over rows
    rate: list = field(default_factory=list)          # per event: share of rows with an SCR after it
    p: list = field(default_factory=list)             # per event: true response probability
    f1: list = field(default_factory=list)            # per row (NaN: nothing to score)
    tp: int = 0
    found: int = 0
    true: int = 0
    scrs: dict = field(default_factory=lambda: {k: [] for k in _DIST})
    row_minutes: float = 0.0
    texture: list = field(default_factory=list)       # per recording
    has_eda: bool = False

    def add_onsets(self, onsets_rows: list, truth: Truth) -> list:
        """Score SCR onsets (one array per row): response rate and F1. Returns each row's F1."""
        self.rate.append(metrics.responded(onsets_rows, truth.times).mean(axis=0))
        self.p.append(truth.p_response)
        f1s = []
        for on in onsets_rows:
            f1, tp = metrics.match_f1(on, truth.true_onsets, TOLERANCE_S)
            f1s.append(f1)
            self.tp += tp
            self.found += len(on)
            self.true += truth.true_onsets.size
        self.f1.extend(f1s)
        return f1s

    def add_eda(self, values: np.ndarray, rate: float, truth: Truth) -> dict:
        """Score EDA rows ``(S, N)``. Returns this recording's ``onsets`` (per row), ``f1`` (per
        row) and ``response`` (per event, mean over rows)."""
        self.has_eda = True
        scrs = metrics.find_scrs_rows(values, rate)
        onsets = [s["onset"] for s in scrs]
        f1s = self.add_onsets(onsets, truth)
        with warnings.catch_warnings():       # an event whose windows leave the recording is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            response = np.nanmean(metrics.event_locked(values, rate, truth.times), axis=0) \
                if truth.times.size else np.zeros(0)
        self.response.append(response)
        self.curves.append(metrics.event_locked_average(values, rate, truth.times, SPAN_S)[1])
        for k in _DIST:
            self.scrs[k].extend(np.concatenate([s[k] for s in scrs]).tolist())
        self.row_minutes += values.shape[0] * values.shape[1] / rate / 60.0
        self.texture.append(metrics.texture(values, rate))
        return {"onsets": onsets, "f1": f1s, "response": response}

    # -- summaries ---------------------------------------------------------------------------
    def events(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)

    def summary(self, data: "Tally") -> dict:
        """This system's figures (``data``: the recorded EDA's tally, for distances and ratios)."""
        f1 = np.asarray(self.f1, float)
        out = {"rate": {"all": _nanmean(self.events("rate")),
                        "bins": [b["rate"] for b in metrics.calibration(self.events("rate"), self.events("p"))]},
               "f1": {"f1": _nanmean(f1), "precision": self.tp / self.found if self.found else math.nan,
                      "recall": self.tp / self.true if self.true else math.nan,
                      "rows_scored": int(np.isfinite(f1).sum()), "rows_excluded": int((~np.isfinite(f1)).sum())}}
        if not self.has_eda:
            return out
        m, ci = metrics.mean_ci(self.events("response"))
        dm = metrics.mean_ci(data.events("response"))[0]
        out["response"] = {"us": m, "ci95": ci, "ratio_to_data": m / dm if dm else math.nan}
        out["scrs"] = {"per_minute": len(self.scrs["amplitude"]) / self.row_minutes if self.row_minutes else math.nan,
                       "recovered_share": _nanmean(np.isfinite(np.asarray(self.scrs["half_recovery"], float)))}
        for k in _DIST:
            out["scrs"][f"{k}_median"] = _nanmedian(self.scrs[k])
            out["scrs"][f"{k}_w1"] = metrics.wasserstein(self.scrs[k], data.scrs[k])
        tx = self.texture
        out["texture"] = {"distinct_per_minute": float(np.mean([t["distinct_per_minute"] for t in tx])),
                          "flat_fraction": float(np.mean([t["flat_fraction"] for t in tx])),
                          "max_jump_us": float(np.max([t["max_jump_us"] for t in tx])),
                          "peak_to_peak_us": float(np.median([t["peak_to_peak_us"] for t in tx]))}
        return out


def _nanmean(x) -> float:
    x = np.asarray(x, float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def _nanmedian(x) -> float:
    x = np.asarray(x, float)
    return float(np.nanmedian(x)) if np.isfinite(x).any() else math.nan


# -- likelihood ---------------------------------------------------------------------------------
def step_nll(net, data) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced NLL (nats) and the µS width of the true class of every scored step of
    every recording of ``data`` (a ``PairedData``: its validation windows, none left out)."""
    import torch
    import torch.nn.functional as F

    codec = codec_for(net.config)
    windows = data.validation_windows(max_windows_per_recording=10 ** 9)
    counts = [len(data.window_starts(r)) for r in data.recordings]      # in order, as validation_windows
    if sum(counts) != len(windows):
        raise RuntimeError(f"expected {sum(counts)} validation windows, got {len(windows)}")
    nll, widths, start = [], [], 0
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for rec, count in zip(data.recordings, counts):
            w_class = codec.class_widths_us(rec.eda_range_us) if net.config.eda_representation == "normalized" \
                else codec.class_widths_us()
            for b in range(start, start + count, 16):
                frames, cond, target, mask, subject = PairedData.collate(windows[b:min(b + 16, start + count)])
                per = F.cross_entropy(net.forward_conditioned(frames, cond, subject).float(), target,
                                      reduction="none")
                m = mask.numpy().astype(bool)
                nll.append(per.numpy()[m])
                widths.append(np.asarray(w_class)[target.numpy()[m]])
            start += count
    net.train(was_training)
    return np.concatenate(nll), np.concatenate(widths)


def likelihood(net, data) -> dict:
    """NLL per EDA step (nats, bits) and of the µS value (``metrics.nll_per_us``)."""
    nll, widths = step_nll(net, data)
    return {"nats_per_step": float(nll.mean()), "bits_per_step": float(nll.mean() / math.log(2)),
            "nats_per_step_us": metrics.nll_per_us(nll, widths), "steps": int(nll.size)}


# -- arguments --------------------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_arguments(num_samples, temperature, max_recordings, seed, seeds, redraws) -> None:
    """Reject bad arguments before any work is done (some are used only for recordings with
    ground truth, so they would otherwise pass unchecked)."""
    check_sampling(num_samples, temperature)
    if max_recordings is not None and (not _is_int(max_recordings) or max_recordings < 1):
        raise ValueError(f"max_recordings must be a positive integer, or None for every recording, "
                         f"got {max_recordings!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not _is_int(seeds) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer (evaluation seeds seed, seed+1, ...), got {seeds!r}")
    if not _is_int(redraws) or redraws < 1:
        raise ValueError(f"redraws must be a positive integer (data redrawn per recording and seed), "
                         f"got {redraws!r}")


# -- sampling the systems ---------------------------------------------------------------------
def _uniform_seed(s_k: int, i: int) -> int:
    return int(np.random.SeedSequence([s_k, i]).generate_state(1)[0])


def _generated(gen, rec, n: int, *, seed: int, num_samples: int, temperature: float) -> np.ndarray:
    """``num_samples`` rows ``(S, n)`` of Generator ``gen`` on the recording's audio (``rec``: the
    recording as loaded for its model, whose config decides whether it carries a µS range)."""
    scale = {"eda_range_us": rec.eda_range_us} if gen.config.eda_representation == "normalized" else {}
    res = gen.generate(str(rec.audio_path), num_samples=num_samples, seed=seed, temperature=temperature, **scale)
    return res.values[:, :n]


def _redrawn(truth: Truth, n: int, rate: float, s_k: int, i: int, redraws: int) -> np.ndarray:
    """``redraws`` rows ``(R, n)`` of the ground-truth generator on the recording's events, stored
    as the CSV stores the data (6 decimals), at the model's EDA rate."""
    cfg = SynthConfig.from_dict(truth.gt.get("config") or {})
    rows = []
    for r in range(redraws):
        e, _ = eda_from_events(truth.gt["events"], truth.gt["seconds"], cfg, np.random.SeedSequence([s_k, i, r, 1]))
        if cfg.eda_sample_rate != rate:
            e = resample_eda(e, cfg.eda_sample_rate, rate)
        rows.append(np.round(e[:n], 6))
    return np.stack(rows)


def _random_onsets(found: list, duration: float, rng: np.random.Generator) -> list:
    return [np.sort(rng.uniform(0.0, duration, len(f))) for f in found for _ in range(RANDOM_DRAWS)]


def _onset_rule(rec, cfg) -> np.ndarray:
    audio = load_audio(str(rec.audio_path), None, target_rate=cfg.audio_sample_rate, channels=1)[0]
    return metrics.acoustic_onset_rule(audio, cfg.audio_sample_rate)


# -- the evaluation ---------------------------------------------------------------------------
def _load(data_dir, nets: dict, max_recordings, progress: bool) -> tuple[dict, dict]:
    """Each model's ``PairedData`` (every pair of the folder, as its config loads them) and its
    recordings. A legacy model's µS range is the recording's, which only a "normalized" config
    loads: each model generates from its own loading."""
    hint = "fix or remove that pair: evaluate reads every pair in the folder"
    datasets = {name: PairedData(data_dir, net.config, "all", crop_steps=64, max_recordings=max_recordings,
                                 bad_pair_hint=hint, progress=progress) for name, net in nets.items()}
    own = {name: d.recordings for name, d in datasets.items()}
    names = [r.name for r in own["model"]]
    for name, rs in own.items():
        if [r.name for r in rs] != names:
            raise ValueError(f"the {name} loads other recordings from {data_dir} than the model: "
                             f"{[r.name for r in rs][:3]}... against {names[:3]}...")
    return datasets, own


def _score_recording(i: int, truth: Truth, own: dict, generators: dict, tallies: list, *, seed: int, redraws: int,
                     generation: dict, traces: list) -> dict:
    """Score recording ``i`` for every system and seed into ``tallies``; returns its row of the
    per-recording table. The first ``TRACE_RECORDINGS`` recordings also add their data and the
    first seed's samples to ``traces`` (for the report's plot)."""
    rec = own["model"][i]
    n, rate = rec.steps, float(generators["model"].config.eda_sample_rate)
    # the data and the onset rule do not depend on the seed: scored once, shared by all seeds
    data = tallies[0]["data"].add_eda(rec.eda_us[None, :n], rate, truth)
    tallies[0]["onset_rule"].add_onsets([_onset_rule(rec, generators["model"].config)], truth)
    scores = {"model": [], "data_redrawn": []}
    keep = len(traces) < TRACE_RECORDINGS
    if keep:
        traces.append({"name": truth.name, "rate": rate, "data": rec.eda_us[:n].tolist(),
                       "events": truth.times.tolist(), "p_response": truth.p_response.tolist()})
    for k, t in enumerate(tallies):
        s_k = seed + k
        for name, gen in generators.items():       # the same uniforms for every model
            v = _generated(gen, own[name][i], n, seed=_uniform_seed(s_k, i), **generation)
            got = t[name].add_eda(v, rate, truth)
            if keep and k == 0:
                traces[-1][name] = np.asarray(v)[:TRACE_SAMPLES].tolist()
            if name == "model":
                scores["model"].append(got)
                rng = np.random.default_rng(np.random.SeedSequence([s_k, i, 2]))
                t["random_onsets"].add_onsets(_random_onsets(got["onsets"], truth.duration, rng), truth)
        redrawn = _redrawn(truth, n, rate, s_k, i, redraws)
        scores["data_redrawn"].append(t["data_redrawn"].add_eda(redrawn, rate, truth))
    return _per_recording(truth, scores, data)


def evaluate(data_dir, *, model=None, out=None, backend: str = "auto", num_samples: int = 4, seed: int = 0,
             temperature: float = 1.0, max_recordings: int | None = None, progress: bool = True,
             seeds: int = 3, baseline_model=None, redraws: int = 4) -> dict:
    """Evaluate ``model`` (default: the bundled one) on every pair in ``data_dir`` against the
    baselines (module docstring); ``seeds`` evaluation seeds ``seed, seed + 1, ...``;
    ``baseline_model``: a model (or folder) scored beside it, e.g. the same architecture trained
    without audio; ``redraws``: data redrawn per recording and seed. Writes ``OUT.md``,
    ``OUT.json`` and ``OUT_event_locked.png`` when ``out`` is given. Returns the report dict."""
    _check_arguments(num_samples, temperature, max_recordings, seed, seeds, redraws)
    if out:
        require("matplotlib", "eval", "the evaluation report's plots")     # before the long work
    from tqdm import tqdm


    nets = {"model": resolve_model(model)}
    if baseline_model is not None:
        nets["baseline_model"] = resolve_model(baseline_model)
    rate = nets["model"].config.eda_sample_rate
    for name, net in nets.items():
        if net.config.eda_sample_rate != rate:
            raise ValueError(f"the {name} runs at {net.config.eda_sample_rate} Hz EDA but the model at "
                             f"{rate} Hz: compare models of one EDA rate")
    datasets, own = _load(data_dir, nets, max_recordings, progress)
    nll = {name: likelihood(net, datasets[name]) for name, net in nets.items()}

    recs = own["model"]
    scored = [(i, t) for i, rec in enumerate(recs) if (t := _read_truth(rec, rec.steps, rate)) is not None]
    tallies = [{s: Tally() for s in SYSTEMS if s in nets or s not in ("model", "baseline_model")}
               for _ in range(seeds)]
    generation = {"num_samples": num_samples, "temperature": temperature}
    generators = {name: Generator(net, backend=backend) for name, net in nets.items()}    # packed once
    per_rec, traces = [], []
    for i, truth in tqdm(scored, desc="evaluate", unit="rec", disable=not progress):
        per_rec.append(_score_recording(i, truth, own, generators, tallies, seed=seed, redraws=redraws,
                                        generation=generation, traces=traces))
    for t in tallies[1:]:
        t["data"], t["onset_rule"] = tallies[0]["data"], tallies[0]["onset_rule"]

    report = build_report(
        tallies, nll, per_rec, recordings=len(recs),
        settings={"data": str(data_dir), "num_samples": num_samples, "seeds": seeds, "seed": seed,
                  "redraws": redraws, "random_draws": RANDOM_DRAWS, "temperature": temperature, "backend": backend,
                  "tolerance_s": TOLERANCE_S, "span_s": list(SPAN_S), "eda_sample_rate": float(rate),
                  "model": _describe(model, nets["model"]),
                  "baseline_model": _describe(baseline_model, nets.get("baseline_model"))})
    report["traces"] = traces
    if out:
        write_report(report, out)
    return report


def _per_recording(truth: Truth, scores: dict, data: dict) -> dict:
    """One recording's F1 and response size, means over seeds, samples and events."""
    def mean(name: str, what: str) -> float:
        return _nanmean(np.concatenate([np.asarray(s[what], float).reshape(-1) for s in scores[name]]))

    return {"name": truth.name, "events": int(truth.times.size), "true_onsets": int(truth.true_onsets.size),
            "f1_model": mean("model", "f1"), "f1_data_redrawn": mean("data_redrawn", "f1"),
            "f1_data": _nanmean(data["f1"]), "response_model_us": mean("model", "response"),
            "response_data_redrawn_us": mean("data_redrawn", "response"),
            "response_data_us": _nanmean(data["response"])}


def _describe(given, net) -> dict | None:
    """Where a model came from and what it is, for the report."""
    if net is None:
        return None
    if given is None:
        source = "bundled default"
    elif isinstance(given, (str, bytes)) or hasattr(given, "__fspath__"):
        source = str(given)
    else:
        source = "in-memory model"
    c = net.config
    return {"source": source, "eda_representation": c.eda_representation, "audio_input": bool(c.audio_input)}
