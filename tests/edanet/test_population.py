"""The population evaluation's per-person figures, on EDA whose responses are known, and the
cohort report from the command line."""
import json

import numpy as np
import pytest

from edanet.evaluation.population import (NON_RESPONDER_RATE, person_figures, population_summary,
                                          primed_summary)
from edanet.synth import scr_shape

RATE = 4.0


def _eda(seconds, scr_onsets, level=3.0):
    t = np.arange(int(seconds * RATE)) / RATE
    v = np.full(t.size, level)
    for on in scr_onsets:
        v += 0.4 * scr_shape(t - on, 1.5, 4.0)
    return v


def test_response_rate_lability_and_halves_are_counted():
    events = np.arange(10.0, 290.0, 20.0)                     # 14 events, all strong
    strong = np.ones(events.size, bool)
    answered = events[::2]                                     # every other event: rate 0.5
    spontaneous = [40.0, 120.0, 200.0]                         # 3 outside any response window
    v = _eda(300.0, list(answered + 1.5) + spontaneous, level=2.0)
    f = person_figures(v[None], RATE, events, strong)
    assert f.rate[0] == pytest.approx(0.5, abs=0.08)
    assert f.lability[0] == pytest.approx(3 / 5.0, abs=0.25)    # a minute of 5: 0.6 a minute
    assert f.level[0] == pytest.approx(2.0, abs=0.2)
    first_only = _eda(300.0, list(events[events < 150] + 1.5))
    g = person_figures(first_only[None], RATE, events, strong)
    assert g.rate_halves[0, 0] > 0.8 and g.rate_halves[0, 1] < 0.2
    part = person_figures(first_only[None], RATE, events, strong, span=(600, 1200))     # 150-300 s
    assert part.rate[0] < 0.2


def test_population_summary_and_primed_summary():
    rng = np.random.default_rng(0)
    events = np.arange(10.0, 230.0, 15.0)
    strong = np.ones(events.size, bool)

    def person(p, level):
        on = [e + 1.5 for e in events if rng.random() < p]
        return person_figures(_eda(240.0, on, level)[None], RATE, events, strong)
    recorded = [person(p, lv) for p, lv in zip(rng.uniform(0, 1, 30), rng.lognormal(1, 0.6, 30))]
    same = population_summary(recorded, recorded)
    assert same["level_wasserstein_us"] == 0 and same["non_responder_difference"] == 0
    assert same["level_quantile_ratios"] == pytest.approx([1, 1, 1])
    flat = [person(0.0, 3.0) for _ in range(30)]             # one flat person, 30 times
    diff = population_summary(flat, recorded)
    assert diff["generated"]["non_responder_fraction"] == 1.0 and diff["level_wasserstein_us"] > 0.5
    assert diff["recorded"]["non_responder_fraction"] == pytest.approx(
        np.mean([r.rate[0] < NON_RESPONDER_RATE for r in recorded]))
    pr = primed_summary(recorded, flat, recorded, recorded)["per_recording"]
    assert pr["primed"]["rate_spearman"] == pytest.approx(1.0) and pr["primed"]["level_error_median"] == 0
    assert pr["unprimed"]["rate_spearman"] is None or np.isnan(pr["unprimed"]["rate_spearman"])
    # per subject: a subject's recordings are averaged before ranking. Ten subjects of three
    # recordings each; the "generated" side is each subject's mean rate, given to one of its
    # recordings, the others empty: per recording it is noise, per subject the same ranking
    subjects = [f"s{k % 10}" for k in range(30)]
    means = {s: np.nanmean([r.rate[0] for r, t in zip(recorded, subjects) if t == s]) for s in set(subjects)}
    gen = []
    for k, s in enumerate(subjects):
        on = [e + 1.5 for e in events] if k < 10 else []
        one = person_figures(_eda(240.0, on, 3.0)[None], RATE, events, strong)
        one.rate = np.array([means[s]]) if k < 10 else np.array([np.nan])
        gen.append(one)
    both = primed_summary(gen, flat, recorded, recorded, subjects)
    assert both["subjects"] == 10
    assert both["per_subject"]["primed"]["rate_spearman"] == pytest.approx(1.0)
    assert both["per_subject"]["data_first_vs_rest"]["rate_spearman"] == pytest.approx(1.0)
    assert not both["per_recording"]["primed"]["rate_spearman"] == pytest.approx(1.0)


@pytest.mark.slow
def test_cohort_report_from_the_command_line(tmp_path, tiny_model_dir):
    from edanet.cli import main
    assert main(["-q", "synth", "--out", str(tmp_path / "c"), "--pairs", "2", "--subjects", "3", "--seconds",
                 "60", "--audio-rate", "8000", "--seed", "6"]) == 0
    assert main(["-q", "evaluate", "--data", str(tmp_path / "c"), "--model", str(tiny_model_dir), "--num-samples",
                 "2", "--seeds", "1", "--redraws", "1", "--prime-seconds", "20", "--out", str(tmp_path / "r")]) == 0
    rep = json.loads((tmp_path / "r_population.json").read_text())
    assert rep["recordings"] == 6 and rep["subjects"] == 3 and rep["population"]["recorded"]["persons"] == 6
    assert rep["population"]["generated"]["persons"] == 4 and rep["primed"]["recordings"] == 6
    assert rep["primed"]["subjects"] == 3 and set(rep["primed"]["per_subject"]) == {"primed", "unprimed",
                                                                                    "data_first_vs_rest"}
    assert "## Primed with each recording's first 20 s" in (tmp_path / "r_population.md").read_text()
    assert (tmp_path / "r_population.png").read_bytes()[:4] == b"\x89PNG"
