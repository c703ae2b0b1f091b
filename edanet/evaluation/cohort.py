"""``edanet evaluate`` on a cohort (a folder of ``NAME.wav`` + ``NAME.<subject>.csv``): the
population figures of ``edanet.evaluation.population`` for a model, unprimed and primed with
each recording's first ``prime_s`` seconds, written as ``OUT_population.{json,md,png}``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..generation import Generator
from ..io import atomic_write
from ..synth import SynthConfig, read_ground_truth, response_drive
from ..training.data import PairedData, find_pairs
from .plot import plot_population
from .population import NON_RESPONDER_RATE, QUANTILES, STRONG_P, person_figures, population_summary, primed_summary

__all__ = ["evaluate_cohort", "is_cohort", "render_cohort_markdown"]


def is_cohort(data) -> bool:
    """Whether the recordings of ``data`` (a ``PairedData`` or a data folder) are subjects of
    shared clips (``NAME/<subject>``)."""
    if isinstance(data, PairedData):
        return any("/" in r.name for r in data.recordings)
    return any("/" in name for name, _, _ in find_pairs(data))


def _events(rec) -> tuple[np.ndarray, np.ndarray]:
    """The clip's event times and which are strong (for the population's typical person)."""
    truth = read_ground_truth(Path(rec.audio_path).with_suffix(".json"))
    cfg = SynthConfig.from_dict(truth["config"])
    drives = response_drive(truth["events"], cfg)
    times = np.array([float(e["time"]) for e in truth["events"]])
    return times, np.array([d["p_response"] >= STRONG_P for d in drives], bool)


def evaluate_cohort(data_dir, model, *, backend: str = "auto", num_samples: int = 8, seed: int = 0,
                    temperature: float = 1.0, prime_s: float | None = 120.0, out=None, progress: bool = True, max_recordings=None) -> dict:
    """The population figures of ``model`` on the cohort in ``data_dir`` (module docstring);
    written to ``out``'s ``_population`` files when ``out`` is given. Returns the figures."""
    from tqdm import tqdm
    gen = model if isinstance(model, Generator) else Generator(model, backend=backend)
    cfg = gen.config
    data = PairedData(data_dir, cfg, "all", max_recordings=max_recordings)
    if not is_cohort(data):
        raise ValueError(f"{data_dir} holds no cohort (recordings NAME/<subject>): the population figures need "
                         "several subjects per clip (edanet synth --subjects K)")
    rate = float(cfg.eda_sample_rate)
    n_p = None if prime_s is None else int(round(prime_s * rate))
    clips: dict[str, list] = {}
    for r in data.recordings:
        clips.setdefault(str(r.audio_path), []).append(r)
    generated, recorded, primed, unprimed_rest, rec_rest, rec_first, who = [], [], [], [], [], [], []
    bar = tqdm(total=len(data.recordings), desc="population", unit="rec", disable=not progress)
    for c, (audio, recs) in enumerate(clips.items()):
        times, strong = _events(recs[0])
        n = min(r.steps for r in recs)
        res = gen.generate(audio, seed=seed + 7919 * c, num_samples=num_samples, temperature=temperature)
        generated.append(person_figures(res.values[:, :n], rate, times, strong))
        for k, r in enumerate(recs):
            recorded.append(person_figures(r.eda_us[None, :n], rate, times, strong))
            if n_p is not None and n_p < n:
                rec_rest.append(person_figures(r.eda_us[None, :n], rate, times, strong, span=(n_p, n)))
                rec_first.append(person_figures(r.eda_us[None, :n], rate, times, strong, span=(0, n_p)))
                # unprimed: a generation of its own per recording (not one shared by the clip's
                # subjects, which would make the per-subject figures equal by construction)
                ures = gen.generate(audio, seed=seed + 7919 * c + 5003 + k, num_samples=num_samples,
                                    temperature=temperature)
                unprimed_rest.append(person_figures(ures.values[:, :n], rate, times, strong, span=(n_p, n)))
                pres = gen.generate(audio, seed=seed + 7919 * c + 1 + k, num_samples=num_samples,
                                    temperature=temperature, prime=r.eda_us[:n_p])
                primed.append(person_figures(pres.values[:, :n], rate, times, strong, span=(n_p, n)))
                who.append(r.subject)
            bar.update()
    bar.close()
    report = {"data": str(data_dir), "model": gen.identity, "num_samples": num_samples,
              "seed": seed, "temperature": temperature, "clips": len(clips), "recordings": len(data.recordings),
              "subjects": len(data.subjects), "strong_event_p": STRONG_P, "non_responder_rate": NON_RESPONDER_RATE,
              "quantiles": list(QUANTILES), "population": population_summary(generated, recorded)}
    if primed:
        report["prime_s"] = prime_s
        report["primed"] = primed_summary(primed, unprimed_rest, rec_rest, rec_first, who)
    if out is not None:
        out = Path(out)
        png = out.with_name(out.name + "_population.png")
        levels, rates = report["population"]["_levels"], report["population"]["_rates"]
        plot_population(levels, rates, png)
        report["plot"] = png.name
        public = _public(report)
        atomic_write(out.with_name(out.name + "_population.json"), json.dumps(public, indent=1) + "\n")
        atomic_write(out.with_name(out.name + "_population.md"), render_cohort_markdown(public))
        return public
    return _public(report)


def _public(x):
    """``x`` without its private (``_``) entries, NaN as None: what the JSON holds."""
    if isinstance(x, dict):
        return {k: _public(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_public(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def _f(x, digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_cohort_markdown(r: dict) -> str:
    """The population report as markdown: every figure, generated beside recorded."""
    p, g, d = r["population"], r["population"]["generated"], r["population"]["recorded"]
    q = " / ".join(f"{int(100 * x)}th" for x in r["quantiles"])
    lines = [f"# Population: {r['recordings']} recordings ({r['clips']} clips x {r['subjects']} subjects)", "",
             f"{r['num_samples']} generated people per clip (seed {r['seed']}); strong events: response probability "
             f">= {r['strong_event_p']} for the population's typical person; a non-responder answers fewer than "
             f"{int(100 * r['non_responder_rate'])}% of them.", "",
             "| figure | generated | recorded | ratio / difference |", "|---|---|---|---|",
             f"| median level, {q} percentiles (µS) | {' / '.join(_f(x) for x in g['level_quantiles_us'])} | "
             f"{' / '.join(_f(x) for x in d['level_quantiles_us'])} | "
             f"{' / '.join(_f(x) for x in p['level_quantile_ratios'])} |",
             f"| response rate, {q} percentiles | {' / '.join(_f(x) for x in g['rate_quantiles'])} | "
             f"{' / '.join(_f(x) for x in d['rate_quantiles'])} | Wasserstein {_f(p['rate_wasserstein'], 3)} |",
             f"| level Wasserstein distance (µS) | | | {_f(p['level_wasserstein_us'])} |",
             f"| non-responder fraction | {_f(g['non_responder_fraction'])} | {_f(d['non_responder_fraction'])} | "
             f"{_f(p['non_responder_difference'])} |",
             f"| split-half consistency of the response rate (r) | {_f(g['split_half_consistency'])} | "
             f"{_f(d['split_half_consistency'])} | {_f(p['split_half_ratio'])}x |",
             f"| split-half consistency of the responsiveness, every event (r) | "
             f"{_f(g['split_half_responsiveness'])} | {_f(d['split_half_responsiveness'])} | "
             f"{_f(p['split_half_responsiveness_ratio'])}x |",
             f"| lability (non-specific SCRs a minute, median) | {_f(g['lability_median_per_min'])} | "
             f"{_f(d['lability_median_per_min'])} | |",
             f"| lability-level rank correlation | {_f(g['lability_level_spearman'])} | "
             f"{_f(d['lability_level_spearman'])} | |",
             f"| lability-response rank correlation | {_f(g['lability_rate_spearman'])} | "
             f"{_f(d['lability_rate_spearman'])} | |"]
    if "primed" in r:
        pr = r["primed"]
        lines += ["", f"## Primed with each recording's first {r['prime_s']:g} s", "",
                  "Over the rest of each clip: the generated response rate and level (mean of its samples) against "
                  f"the recorded, per subject ({pr.get('subjects', '-')}: its recordings averaged) and per recording "
                  f"({pr['recordings']}).", "",
                  "Response rate: after strong events; responsiveness: after every event (it ranks responders, "
                  "most of whom answer nearly every strong event).", "",
                  "| | per | response-rate Spearman | responsiveness Spearman | level Spearman | level error, median |",
                  "|---|---|---|---|---|---|"]
        for per in ("per_subject", "per_recording"):
            if per not in pr:
                continue
            f = pr[per]
            for name, label in (("primed", "primed"), ("unprimed", "unprimed")):
                err = f[name]["level_error_median"]
                lines.append(f"| {label} | {per[4:]} | {_f(f[name]['rate_spearman'])} | "
                             f"{_f(f[name]['responsiveness_spearman'])} | {_f(f[name]['level_spearman'])} "
                             f"| {_f(None if err is None else 100 * err, 1)}% |")
            lines.append(f"| the data's first part against its rest | {per[4:]} | "
                         f"{_f(f['data_first_vs_rest']['rate_spearman'])} | "
                         f"{_f(f['data_first_vs_rest']['responsiveness_spearman'])} | "
                         f"{_f(f['data_first_vs_rest']['level_spearman'])} | |")
    if r.get("plot"):
        lines += ["", f"![levels and response rates, generated and recorded]({r['plot']})"]
    return "\n".join(lines) + "\n"
