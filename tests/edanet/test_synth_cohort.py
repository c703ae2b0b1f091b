"""Synthetic cohorts: subjects drawn from a population whose spread and correlations follow its
documented figures, a subject keeping its traits across the clips it hears, and the files
``edanet synth --subjects K`` writes (the multi-subject layout training reads)."""
import json
import math

import numpy as np
import pytest

from edanet.signals import read_eda_csv
from edanet.synth import (PopulationConfig, SubjectTraits, SynthConfig, draw_subjects, eda_from_events,
                          read_ground_truth, subject_eda_seed, subject_truth, write_cohort)
from edanet.training.data import find_pairs

CFG = SynthConfig(seconds=60.0, audio_sample_rate=8000)


@pytest.fixture(scope="module")
def population():
    return draw_subjects(4000, seed=11)


def test_population_spread_and_correlations_follow_the_figures(population):
    p = PopulationConfig()
    level = np.array([s.level_us for s in population])
    lab = np.array([s.lability for s in population])
    rate = np.array([s.spontaneous_per_min for s in population])
    responder = np.array([s.responder for s in population])
    assert abs(responder.mean() - (1 - p.non_responder_fraction)) < 0.015            # ~1 in 10 do not respond
    assert np.median(level) == pytest.approx(p.level_median_us, rel=0.06)
    lo, hi = np.percentile(level, [5, 95])
    assert 0.45 < lo < 0.8 and 9.0 < hi < 14.0                                        # 0.6-11 µS for 90%
    assert level.min() >= p.level_range_us[0] and level.max() <= p.level_range_us[1]
    r_resp = rate[responder]
    assert np.median(r_resp) == pytest.approx(p.spontaneous_median_per_min, rel=0.08)
    assert np.percentile(r_resp, 95) > 4.5 and np.percentile(r_resp, 5) < 0.55        # 0 to 10+ a minute
    assert np.median(rate[~responder]) < 0.3                                            # non-responders: few
    # labiles have higher levels, larger, faster responses, slower habituation, a lower threshold
    ok = responder
    corr = {name: np.corrcoef(lab[ok], np.log(v[ok]))[0, 1] for name, v in (
        ("level", level), ("gain", np.array([s.response_gain for s in population])),
        ("speed", np.array([s.speed for s in population])),
        ("habituation", 1 - np.array([s.habituation_factor for s in population])))}
    for name in ("level", "gain", "speed"):
        assert 0.4 < corr[name] < 0.6, corr                                              # the loading, 0.5
    assert -0.6 < corr["habituation"] < -0.4, corr
    thr = np.array([s.response_threshold for s in population])[ok]
    assert -0.6 < np.corrcoef(lab[ok], thr)[0, 1] < -0.4
    assert all(math.isinf(s.response_threshold) for s in population if not s.responder)


def test_subjects_are_drawn_independently_of_how_many():
    few, many = draw_subjects(3, seed=5), draw_subjects(30, seed=5)
    assert few == many[:3] and few != draw_subjects(3, seed=6)
    assert len({s.id for s in many}) == 30 and {s.id for s in few}.isdisjoint(s.id for s in draw_subjects(3, 6))
    assert SubjectTraits.from_dict(json.loads(json.dumps(many[0].to_dict()))) == many[0]


def test_a_subject_config_changes_what_the_draws_mean_not_which():
    events = [{"time": 5.0 + 8 * i, "kind": "noise_burst", "level_db": -12.0, "sharpness": 1.0} for i in range(6)]
    subjects = draw_subjects(40, seed=3)
    resp = next(s for s in subjects if s.responder)
    non = next(s for s in subjects if not s.responder)
    _, scrs = eda_from_events(events, 60.0, resp.config(CFG), seed=9)
    assert any(s["kind"] == "stimulus" for s in scrs)
    eda, scrs = eda_from_events(events, 60.0, non.config(CFG), seed=9)
    assert not any(s["kind"] == "stimulus" for s in scrs)            # loud, sharp: still no answer
    # the subject's level sets the tonic: the start is the level (plus noise and its wander)
    assert eda[0] == pytest.approx(non.level_us, rel=0.15, abs=0.1)


def _same(a: SubjectTraits, b: SubjectTraits) -> bool:
    """Traits equal up to the 6 decimals the ground truth files keep."""
    da, db = a.to_dict(), b.to_dict()
    return da.keys() == db.keys() and all(
        da[k] == pytest.approx(db[k], abs=1e-6) if isinstance(db[k], float) else da[k] == db[k] for k in da)


def test_write_cohort_files_truth_and_training_layout(tmp_path):
    people = draw_subjects(4, seed=21)
    names = write_cohort(tmp_path, 2, people, CFG, seed=21, progress=False)
    ids = [p.id for p in people]
    for name in names:
        assert (tmp_path / f"{name}.wav").is_file()
        truth = read_ground_truth(tmp_path / f"{name}.json")
        assert sorted(truth["subjects"]) == sorted(ids)
        for k, person in enumerate(people):
            sub = subject_truth(truth, person.id)
            assert _same(SubjectTraits.from_dict(sub["traits"]), person)                # kept across clips
            rec = read_eda_csv(tmp_path / f"{name}.{person.id}.csv")
            assert rec.sample_rate == CFG.eda_sample_rate and len(rec) == CFG.eda_samples
            eda, scrs = eda_from_events(truth["events"], CFG.duration, person.config(CFG),
                                        subject_eda_seed(truth["seed"], k))
            np.testing.assert_allclose(rec.values, eda, atol=5e-7)                       # reproducible truth
            assert len(sub["scrs"]) == len(scrs)
    pairs = find_pairs(tmp_path)
    assert sorted(n for n, _, _ in pairs) == sorted(f"{name}/{i}" for name in names for i in ids)
    listed = json.loads((tmp_path / "subjects.json").read_text())["subjects"]
    assert all(_same(SubjectTraits.from_dict(listed[i]), p) for i, p in zip(ids, people))
    with pytest.raises(ValueError, match="no subject"):
        subject_truth(read_ground_truth(tmp_path / f"{names[0]}.json"), "nobody")


def test_cli_synth_subjects(tmp_path):
    from edanet.cli import main
    assert main(["-q", "synth", "--out", str(tmp_path / "c"), "--pairs", "2", "--subjects", "3", "--seconds", "20",
                 "--audio-rate", "8000", "--seed", "4"]) == 0
    assert len(list((tmp_path / "c").glob("*.csv"))) == 6 and len(list((tmp_path / "c").glob("*.wav"))) == 2
    assert main(["-q", "synth", "--out", str(tmp_path / "d"), "--pairs", "2", "--subjects", "0"]) == 2
