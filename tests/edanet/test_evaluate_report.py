"""edanet evaluate's report: its structure, and figures that could silently be wrong (the data
redrawn answers like the data, empty-empty F1 is excluded, calibration counts add up, the NLL of
the µS value); the metrics behind it on constructed signals with known answers."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

from edanet import EDANet, EDANetConfig
from edanet.evaluation import metrics
from edanet.training.data import PairedData
from edanet.signals import read_eda_csv
from edanet.evaluation import SYSTEMS, Tally, Truth, evaluate, likelihood, over_seeds
from edanet.synth import SynthConfig, scr_shape, write_dataset

CFG = EDANetConfig.from_preset("tiny")
RATE = 4.0
# Loud events that (almost) always elicit an SCR, no spontaneous SCRs, no amplitude jitter: the
# data's event-locked response is large and nearly the same in every redraw, so a redraw that
# missed the events (wrong times, rate or events) would show.
LOUD = SynthConfig(seconds=45.0, audio_sample_rate=CFG.audio_sample_rate, event_gap_s=(9.0, 11.0),
                   first_event_s=(5.0, 6.0), event_level_db=(-16.0, -10.0), kinds=("noise_burst", "tone"),
                   kind_weights=(1.0, 1.0), response_threshold=0.0, spontaneous_rate_per_min=(0.0, 0.0),
                   amplitude_jitter=0.0, half_recovery_s=(2.0, 4.0))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evrep")
    write_dataset(root / "data", 3, LOUD, seed=11, progress=False)
    torch.manual_seed(0)
    model = EDANet(CFG)
    # a legacy "normalized" baseline beside a "delta" model: each generates from its own loading
    baseline = EDANet(EDANetConfig.from_preset("tiny", audio_input=False, eda_representation="normalized"))
    rep = evaluate(root / "data", model=model, baseline_model=baseline, out=root / "rep", num_samples=2, seeds=2,
                   redraws=6, progress=False)
    return root, rep


def _strict_json(path):
    def refuse(name):
        raise AssertionError(f"{path} has {name}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_report_files_and_structure(run):
    root, rep = run
    assert rep["recordings"] == 3 and rep["scored_recordings"] == 3 and rep["seeds"] == 2
    assert set(rep["figures"]) == set(SYSTEMS)
    on_disk = _strict_json(root / "rep.json")
    assert on_disk["figures"]["model"]["response"]["us"]["mean"] == pytest.approx(
        rep["figures"]["model"]["response"]["us"]["mean"])
    assert len(on_disk["per_seed"]["model"]) == 2
    png = root / "rep_event_locked.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (root / "rep.md").read_text()
    assert "](rep_event_locked.png)" in md and md == rep["markdown"]
    for heading in ("## Likelihood", "## Event-locked response", "## Response rate by true response probability",
                    "## SCRs", "## Texture", "## SCR F1"):
        assert heading in md
    assert "| NLL (nats / step) |" in md and "no-audio model" in md
    # onset-only systems have no EDA figures; the likelihood is the models'
    assert "response" not in rep["figures"]["onset_rule"] and "texture" not in rep["figures"]["random_onsets"]
    assert set(rep["likelihood"]) == {"model", "baseline_model"}
    t = rep["event_locked"]["t"]
    assert t[0] == pytest.approx(-5.0) and t[-1] == pytest.approx(15.0 - 1 / RATE)
    assert {"model", "baseline_model", "data_redrawn", "data"} <= set(rep["event_locked"])


def test_traces_are_the_data_and_the_first_seeds_samples(run):
    root, rep = run
    traces = rep["traces"]
    assert [t["name"] for t in traces] == sorted(t["name"] for t in traces) and len(traces) == 3
    for tr in traces:
        truth = read_eda_csv(root / "data" / f"{tr['name']}.csv")
        n = len(tr["data"])
        assert np.allclose(tr["data"], truth.values[:n])
        # num_samples=2 rows of each model, as long as the data, in µS
        for name in ("model", "baseline_model"):
            assert np.asarray(tr[name]).shape == (2, n) and np.isfinite(tr[name]).all()
        assert len(tr["events"]) == len(tr["p_response"]) > 0
    png = root / "rep_traces.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](rep_traces.png)" in rep["markdown"] and "## Sample traces" in rep["markdown"]


def test_data_redrawn_answers_the_events_as_the_data_do(run):
    _, rep = run
    fig = rep["figures"]
    data, redrawn = fig["data"]["response"]["us"]["mean"], fig["data_redrawn"]["response"]["us"]["mean"]
    assert data > 0.2                                  # the loud events do elicit responses
    assert redrawn == pytest.approx(data, rel=0.2)
    assert fig["data_redrawn"]["response"]["ratio_to_data"]["mean"] == pytest.approx(redrawn / data, rel=0.05)
    assert fig["data"]["response"]["ratio_to_data"]["mean"] == pytest.approx(1.0)
    # every SCR distance of the data to itself is 0, the redrawn data's is small beside the SCRs' size
    assert fig["data"]["scrs"]["amplitude_w1"]["mean"] == 0.0
    assert fig["data_redrawn"]["scrs"]["amplitude_w1"]["mean"] < 0.5 * fig["data"]["scrs"]["amplitude_median"]["mean"]
    # the event-locked curves agree where the response peaks (2-6 s after the events)
    el = rep["event_locked"]
    t = np.asarray(el["t"])
    win = (t >= 2) & (t < 6)
    assert np.mean(el["data_redrawn"]["mean"], where=win) == pytest.approx(np.mean(el["data"]["mean"], where=win),
                                                                          rel=0.2)


def test_a_legacy_baseline_gets_each_recordings_range(run):
    # its output is mapped to the recording's own µS range, not the config's default (2-8 µS)
    root, rep = run
    widest = max(np.ptp(read_eda_csv(p).values) for p in (root / "data").glob("*.csv"))
    assert widest < 3.0
    assert rep["figures"]["baseline_model"]["texture"]["peak_to_peak_us"]["mean"] <= widest + 1e-9
    assert rep["settings"]["baseline_model"] == {"source": "in-memory model", "eda_representation": "normalized",
                                                 "audio_input": False}


def test_calibration_counts_add_up_and_rates_are_shares(run):
    _, rep = run
    bins = rep["calibration_bins"]
    assert sum(b["events"] for b in bins) == rep["events"] > 0
    for name in SYSTEMS:
        rates = rep["figures"][name]["rate"]["bins"]
        assert len(rates) == len(bins)
        for b, r in zip(bins, rates):
            assert math.isnan(r["mean"]) == (b["events"] == 0)
            assert math.isnan(r["mean"]) or 0.0 <= r["mean"] <= 1.0


def test_f1_rows_are_all_accounted_for(run):
    _, rep = run
    fig = rep["figures"]
    per_seed = {"model": 3 * 2, "baseline_model": 3 * 2, "onset_rule": 3, "data": 3, "data_redrawn": 3 * 6,
                "random_onsets": 3 * 2 * 20}
    for name, rows in per_seed.items():
        f = fig[name]["f1"]
        assert f["rows_scored"]["mean"] + f["rows_excluded"]["mean"] == rows


def test_f1_excludes_empty_against_empty():
    truth = Truth("r", 60.0, np.array([10.0, 30.0]), np.array([0.9, 0.1]), np.zeros(0), {})
    t = Tally()
    f1s = t.add_onsets([np.zeros(0), np.array([12.0])], truth)
    assert math.isnan(f1s[0]) and f1s[1] == 0.0
    s = t.summary(t)
    assert s["f1"]["f1"] == 0.0                  # not 0.5: the empty row is not an F1 of 1
    assert s["f1"]["rows_scored"] == 1 and s["f1"]["rows_excluded"] == 1
    assert s["rate"]["all"] == pytest.approx(0.25)   # one of two rows answers the first event


@pytest.mark.parametrize("representation", ["delta", "normalized"])
def test_nll_of_the_us_value_on_a_uniform_model(tmp_path, representation):
    # zero output weights: every class has probability 1/Q, so NLL = log Q exactly and the µS
    # figure is log Q + the mean log width of the true classes of every step of every recording
    cfg = EDANetConfig.from_preset("tiny", eda_representation=representation)
    net = EDANet(cfg)
    with torch.no_grad():
        net.downsample.weight.zero_()
        net.downsample.bias.zero_()
    write_dataset(tmp_path, 2, SynthConfig(seconds=20.0, audio_sample_rate=cfg.audio_sample_rate), seed=4,
                  progress=False)
    data = PairedData(tmp_path, cfg, "all", crop_steps=7)    # several windows, not a multiple of W
    from edanet.signals.codec import codec_for
    codec = codec_for(cfg)
    logw = []
    for rec in data.recordings:
        w = codec.class_widths_us(rec.eda_range_us) if representation == "normalized" else codec.class_widths_us()
        logw.append(np.log(w[rec.classes]))
    lik = likelihood(net, data)
    Q = cfg.quantization_bins
    assert lik["steps"] == sum(r.steps for r in data.recordings)
    assert lik["nats_per_step"] == pytest.approx(math.log(Q), abs=1e-5)
    assert lik["bits_per_step"] == pytest.approx(math.log2(Q), abs=1e-5)
    assert lik["nats_per_step_us"] == pytest.approx(math.log(Q) + np.concatenate(logw).mean(), abs=1e-5)


def test_evaluation_seeds_differ_and_figures_are_their_mean(run):
    _, rep = run
    seeds = [s["response"]["us"] for s in rep["per_seed"]["model"]]
    assert seeds[0] != seeds[1]
    agg = rep["figures"]["model"]["response"]["us"]
    assert agg["mean"] == pytest.approx(np.mean(seeds)) and agg["sd"] == pytest.approx(np.std(seeds, ddof=1))
    assert rep["figures"]["data"]["response"]["us"]["sd"] == 0.0      # the data do not depend on the seed


def test_over_seeds_nests_and_skips_nan():
    agg = over_seeds([{"a": 1.0, "b": [2.0, math.nan]}, {"a": 3.0, "b": [4.0, 5.0]}])
    assert agg["a"] == {"mean": 2.0, "sd": pytest.approx(math.sqrt(2))}
    assert agg["b"][0]["mean"] == 3.0 and agg["b"][1]["mean"] == 5.0 and math.isnan(agg["b"][1]["sd"])
    assert over_seeds([0.1 + 0.2, 0.1 + 0.2, 0.1 + 0.2])["sd"] == 0.0


# -- metrics ------------------------------------------------------------------------------------
def test_mean_ci_on_known_numbers():
    m, ci = metrics.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0, math.nan])
    assert m == 3.0 and ci == pytest.approx(1.96 * math.sqrt(2.5) / math.sqrt(5))
    assert metrics.mean_ci([7.0])[0] == 7.0 and math.isnan(metrics.mean_ci([7.0])[1])
    assert all(math.isnan(x) for x in metrics.mean_ci([]))
    m, ci = metrics.mean_ci_columns([[1.0, 0.0], [3.0, 0.0], [math.nan, 0.0]])
    assert m.tolist() == [2.0, 0.0] and ci[0] == pytest.approx(1.96 * math.sqrt(2) / math.sqrt(2)) and ci[1] == 0


def _step(after_us=0.5, t_event=10.0, seconds=30.0, level=5.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return level + after_us * (t >= t_event)


def test_event_locked_response_of_a_step():
    x = _step()
    assert metrics.event_locked(x, RATE, [10.0]).tolist() == [[0.5]]
    # two rows and an event whose windows leave the recording
    r = metrics.event_locked(np.stack([x, 2 * x]), RATE, [10.0, 1.0, 29.0])
    assert r[:, 0].tolist() == [0.5, 1.0] and np.isnan(r[:, 1:]).all()


def test_event_locked_average_of_a_step():
    x = _step()
    t, curves = metrics.event_locked_average(np.stack([x, x + 1.0]), RATE, [10.0, 2.0])
    assert t[0] == -5.0 and t.size == 80 and curves.shape == (2, 80)
    assert np.isnan(curves[1]).all()                         # 2 s: its span starts before the recording
    assert np.allclose(curves[0][t < 0], 0.0) and np.allclose(curves[0][t >= 0], 0.5)


def test_texture_of_a_constructed_series():
    x = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 3.0])
    tx = metrics.texture(x, RATE)
    assert tx["flat_fraction"] == pytest.approx(3 / 5)
    assert tx["distinct_per_minute"] == pytest.approx(3 / (6 / RATE / 60))
    assert tx["max_jump_us"] == 1.0 and tx["peak_to_peak_us"] == 2.0


def test_responded_and_match_f1():
    r = metrics.responded([np.array([12.0, 40.0]), np.zeros(0)], [10.0, 30.0, 39.0])
    assert r.tolist() == [[True, False, True], [False, False, False]]
    assert math.isnan(metrics.match_f1([], [])[0])
    assert metrics.match_f1([1.0], [])[0] == 0.0
    assert metrics.match_f1([1.0, 5.0, 5.2], [1.5, 5.1]) == (pytest.approx(0.8), 2)


def test_calibration_bins():
    p = [0.05, 0.1, 0.3, 0.95, 1.0]
    bins = metrics.calibration([0.0, 1.0, 0.5, 1.0, 1.0], p)
    assert [b["events"] for b in bins] == [2, 1, 0, 0, 2]          # the last bin includes 1.0
    assert bins[0]["rate"] == 0.5 and bins[0]["p_mean"] == pytest.approx(0.075)
    assert math.isnan(bins[2]["rate"]) and bins[4]["rate"] == 1.0


def test_nll_per_us_by_hand():
    # density of the µS value = P(class) / width: -log = nll + log(width), averaged over steps
    assert metrics.nll_per_us([1.0, 2.0], [0.5, 0.25]) == pytest.approx(1.5 + (math.log(0.5) + math.log(0.25)) / 2)
    assert metrics.nll_per_us([3.0], [1.0]) == 3.0
    with pytest.raises(ValueError, match="one width per scored step"):
        metrics.nll_per_us([1.0, 2.0], [1.0])


def _scr_signal(rng, seconds=120.0, onsets=(10.0, 40.0, 75.0), amp=0.6, noise=0.01):
    t = np.arange(int(seconds * RATE)) / RATE
    x = 4.0 + sum(amp * scr_shape(t - o, 2.0, 4.0) for o in onsets)
    return x + rng.normal(0, noise, t.size)


def test_find_scrs_finds_constructed_scrs():
    x = _scr_signal(np.random.default_rng(0))
    s = metrics.find_scrs(x, RATE)
    assert s["onset"].size == 3
    assert np.allclose(s["onset"], [10.0, 40.0, 75.0], atol=0.75)
    assert np.allclose(s["rise"], 2.0, atol=0.75)
    assert (s["amplitude"] > 0.3).all() and np.isfinite(s["half_recovery"]).all()
    assert metrics.find_scrs(np.full(480, 3.0), RATE)["onset"].size == 0         # flat: nothing
    assert metrics.find_scrs(x[:20], RATE)["onset"].size == 0                    # too short to high-pass


@pytest.mark.parametrize("seed", range(4))
def test_find_scrs_is_neurokit(seed):
    # with every SCR kept, the numpy version returns exactly what NeuroKit2 returns
    nk = pytest.importorskip("neurokit2")
    rng = np.random.default_rng(seed)
    x = _scr_signal(rng, onsets=tuple(rng.uniform(5, 110, 5)), noise=0.02) if seed % 2 \
        else 5.0 + np.round(np.cumsum(rng.normal(0, 0.05, 480)), 1)               # a quantized random walk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = np.asarray(nk.eda_phasic(x, sampling_rate=4, method="highpass")["EDA_Phasic"])
        _, info = nk.eda_peaks(ph, sampling_rate=4, method="neurokit", amplitude_min=1e-6)
    assert np.allclose(metrics.phasic(x, RATE)[0], ph, rtol=0, atol=1e-12)
    on = np.asarray(info["SCR_Onsets"], float)
    ok = np.isfinite(on) & np.isfinite(np.asarray(info["SCR_Amplitude"], float))
    mine = metrics.find_scrs(x, RATE, min_amplitude_us=-np.inf)
    assert np.array_equal(mine["onset"], on[ok] / 4)
    for k, nk_key in (("amplitude", "SCR_Amplitude"), ("rise", "SCR_RiseTime"), ("half_recovery", "SCR_RecoveryTime")):
        assert np.allclose(mine[k], np.asarray(info[nk_key], float)[ok], equal_nan=True), k


def test_half_recovery_is_not_cut_by_a_ripple():
    # a ripple in the recovery (a peak 0.02 µS over the trough before it): NeuroKit2 ends the SCR's
    # recovery stretch there and finds no half-recovery; here only an SCR that counts ends it
    t = np.arange(480) / RATE
    x = 4.0 + 0.8 * scr_shape(t - 20.0, 2.0, 6.0)
    x[int(24.5 * RATE)] += 0.04
    kept, every = metrics.find_scrs(x, RATE), metrics.find_scrs(x, RATE, min_amplitude_us=-np.inf)
    assert kept["onset"][0] == every["onset"][0] == 20.0
    assert 24.25 in every["onset"] and 24.25 not in kept["onset"]
    assert kept["half_recovery"][0] == pytest.approx(4.0, abs=0.5) and np.isnan(every["half_recovery"][0])
