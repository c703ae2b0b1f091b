"""edanet.evaluation.evaluate's inputs: its arguments are checked first, the audio is the pair's, bad pairs
get a remedy evaluate offers, pairs without ground truth get the likelihood only, a baseline model
must share the model's EDA rate."""
import json
import math

import pytest
import torch

from edanet import EDANet, EDANetConfig
from edanet.evaluation import evaluate
from edanet.synth import SynthConfig, write_dataset

CFG = EDANetConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EDANet(CFG)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    write_dataset(d, 1, SynthConfig(seconds=16.0, audio_sample_rate=CFG.audio_sample_rate), seed=3, progress=False)
    return d


@pytest.mark.parametrize("kw,match", [
    ({"num_samples": 0}, "num_samples must be a positive integer"),
    ({"num_samples": -2}, "num_samples must be a positive integer"),
    ({"num_samples": 2.0}, "num_samples must be a positive integer"),
    ({"temperature": -5.0}, "temperature must be a finite number >= 0"),
    ({"temperature": math.nan}, "temperature must be a finite number >= 0"),
    ({"temperature": math.inf}, "temperature must be a finite number >= 0"),
    ({"max_recordings": 0}, "max_recordings must be a positive integer"),
    ({"max_recordings": -1}, "max_recordings must be a positive integer"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"seeds": 0}, "seeds must be a positive integer"),
    ({"seeds": 1.5}, "seeds must be a positive integer"),
    ({"redraws": 0}, "redraws must be a positive integer"),
    ({"redraws": True}, "redraws must be a positive integer"),
])
def test_bad_arguments_are_refused_before_any_work(data, model, tmp_path, kw, match):
    # without ground truth nothing is generated, so only evaluate itself can refuse them
    d = tmp_path / "data"
    d.mkdir()
    for suffix in (".wav", ".csv"):
        (d / f"rec{suffix}").write_bytes((data / f"synth_00000{suffix}").read_bytes())
    with pytest.raises(ValueError, match=match):
        evaluate(d, model=model, out=tmp_path / "rep", progress=False, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]   # no report, not even a partial one


def test_audio_is_the_paired_file_not_any_name_dot_star(data, model, tmp_path):
    # a name that is also a glob pattern ("a[1].*" matches "a1.zz", not "a[1].wav"), decoys beside
    # the pair, and a second pair left out by max_recordings
    d = tmp_path / "data"
    d.mkdir()
    for suffix in (".wav", ".csv", ".json"):
        (d / f"a[1]{suffix}").write_bytes((data / f"synth_00000{suffix}").read_bytes())
    for decoy in ("a[1].wav.bak", "a[1].zz", "a1.zz"):
        (d / decoy).write_bytes(b"not audio")
    for suffix in (".wav", ".csv"):
        (d / f"b{suffix}").write_bytes((data / f"synth_00000{suffix}").read_bytes())
    rep = evaluate(d, model=model, backend="torch", num_samples=1, temperature=0.0, max_recordings=1,
                   seeds=1, redraws=1, progress=False)
    assert rep["recordings"] == 1 and rep["scored_recordings"] == 1
    assert rep["per_recording"][0]["name"] == "a[1]" and rep["temperature"] == 0.0


def test_bad_pair_error_does_not_suggest_skip_bad(data, model, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "rec.wav").write_bytes((data / "synth_00000.wav").read_bytes())
    (d / "rec.csv").write_text("1500000000\n4\nnot-a-number\n")
    with pytest.raises(ValueError, match=r"bad pair 'rec'.*fix or remove that pair") as e:
        evaluate(d, model=model, progress=False)
    assert "--skip-bad" not in str(e.value)


def test_without_ground_truth_only_the_likelihood_is_scored(data, model, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for suffix in (".wav", ".csv"):
        (d / f"rec{suffix}").write_bytes((data / f"synth_00000{suffix}").read_bytes())
    rep = evaluate(d, model=model, out=tmp_path / "rep", num_samples=1, seeds=1, progress=False)
    assert rep["recordings"] == 1 and rep["scored_recordings"] == 0 and rep["figures"] == {}
    assert 0 < rep["nll_nats_per_step"] < 10 and math.isnan(rep["f1_model"])
    assert "only the likelihood is scored" in (tmp_path / "rep.md").read_text()
    assert not (tmp_path / "rep_event_locked.png").exists()
    assert json.loads((tmp_path / "rep.json").read_text())["f1_model"] is None     # strict JSON: no NaN


def test_baseline_model_of_another_eda_rate_is_refused(data, model):
    other = EDANet(EDANetConfig.from_preset("tiny", eda_sample_rate=8))
    with pytest.raises(ValueError, match="compare models of one EDA rate"):
        evaluate(data, model=model, baseline_model=other, progress=False)
