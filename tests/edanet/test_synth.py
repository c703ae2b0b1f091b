"""Synthetic paired audio + EDA data (edanet.synth): the response model measured on generated
signals, determinism, and the files written."""
import dataclasses
import json
import math

import numpy as np
import pytest
import soundfile as sf

from edanet.synth import (KINDS, SynthConfig, eda_from_events, pair_seed, read_ground_truth, response_drive,
                          scr_shape, synthesize_pair, write_dataset, write_pair)

# Noise-free, flat tonic, no spontaneous SCRs: every bump in the EDA is a stimulus SCR.
CLEAN = dataclasses.replace(SynthConfig(), noise_us=0.0, tonic_drift_per_min=(0.0, 0.0), tonic_wander=0.0,
                            spontaneous_rate_per_min=(0.0, 0.0))


def _event(t, level=-10.0, sharpness=1.0, kind="noise_burst"):
    return {"time": float(t), "duration": 0.5, "kind": kind, "level_db": float(level), "sharpness": float(sharpness)}


def _landmarks(t, y):
    """Onset (first time above baseline), peak time and value, and the time it first falls to half
    the peak after it, measured on a sampled curve (baseline = y[0])."""
    p = y - y[0]
    above = np.flatnonzero(p > 1e-9 * max(1.0, p.max()))
    onset = t[above[0]]
    ip = int(np.argmax(p))
    after = np.flatnonzero(p[ip:] <= 0.5 * p[ip])
    half = t[ip + after[0]] if after.size else math.inf
    return onset, t[ip], p[ip], half


# ------------------------------------------------------------------------------------------------
# SCR shape
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rise,half", [(1.0, 2.0), (1.0, 10.0), (2.0, 5.0), (3.0, 2.0), (3.0, 10.0), (1.7, 3.3)])
def test_scr_shape_landmarks_at_fine_rate(rise, half):
    fs = 1000.0
    t = np.arange(-2.0, rise + 6 * half, 1 / fs)
    y = scr_shape(t, rise, half)
    assert np.all(y[t < 0] == 0) and np.all(np.isfinite(y))
    onset, t_peak, peak, t_half = _landmarks(t, y)
    assert abs(onset - 0.0) <= 1.5 / fs
    assert peak == pytest.approx(1.0, abs=1e-6)
    assert abs((t_peak - onset) - rise) <= 1.5 / fs           # measured rise time
    assert abs((t_half - t_peak) - half) <= 1.5 / fs          # measured half-recovery time
    ip = int(np.argmax(y))
    assert np.all(np.diff(y[t >= 0][: ip - np.searchsorted(t, 0)]) >= 0)   # monotone rise
    assert np.all(np.diff(y[ip:]) <= 1e-15)                                  # monotone recovery
    assert y[-1] < 0.1                                                       # it recovers


def test_scr_shape_is_real_time_scale_and_rejects_bad_args():
    # at 4 Hz a 2 s rise / 5 s half-recovery SCR spans many samples (not NeuroKit2's ~10x squeezed shape)
    t = np.arange(0, 30, 0.25)
    y = scr_shape(t, 2.0, 5.0)
    assert np.count_nonzero(y > 0.5) >= 4 * (2.0 + 5.0) - 8
    assert scr_shape(np.array([-1.0, 0.0]), 1.0, 2.0).tolist() == [0.0, 0.0]
    for bad in [(0.0, 2.0), (1.0, 0.0), (-1.0, 3.0), (float("nan"), 2.0)]:
        with pytest.raises(ValueError):
            scr_shape(t, *bad)


# ------------------------------------------------------------------------------------------------
# Response model, measured on generated EDA
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [100, 4])
def test_isolated_stimulus_scr_timing_measured_on_generated_eda(rate):
    cfg = dataclasses.replace(CLEAN, eda_sample_rate=rate)
    tol = 1.0 / rate + 1e-9
    ev_t = 5.0
    measured = []
    for seed in range(120):
        eda, scrs = eda_from_events([_event(ev_t)], 40.0, cfg, seed)
        assert np.all(np.isfinite(eda)) and np.all(eda > 0)
        if not scrs:
            assert np.ptp(eda) < 1e-12
            continue
        (s,) = scrs
        assert s["kind"] == "stimulus" and s["event"] == 0
        t = np.arange(len(eda)) / rate
        onset, t_peak, amp, t_half = _landmarks(t, eda)
        assert abs(onset - s["onset"]) <= tol
        lat, rise, half = onset - ev_t, t_peak - onset, t_half - t_peak
        assert 1.0 - tol <= lat <= 3.0 + tol
        assert 1.0 - 2 * tol <= rise <= 3.0 + 2 * tol
        assert 2.0 - 2 * tol <= half <= 10.0 + 2 * tol
        assert amp == pytest.approx(s["amplitude"], rel=0.05 if rate == 4 else 1e-3)
        assert 0.2 - 1e-9 <= s["amplitude"] <= 1.0 + 1e-9
        measured.append((lat, rise, half))
    assert len(measured) >= 110                     # a loud sharp event almost always responds
    m = np.array(measured)
    assert m.std(axis=0).min() > 0.2                # latencies and shapes vary over their ranges


def _measured_amplitudes(eda, fs, scrs):
    """Peak minus the value at onset, for each stimulus SCR, on the generated signal."""
    out = {}
    for s in scrs:
        if s["kind"] != "stimulus":
            continue
        a = int(math.ceil(s["onset"] * fs))
        b = int(math.ceil((s["onset"] + s["rise"]) * fs)) + 1
        out[s["event"]] = float(eda[a:b + 1].max() - eda[max(a - 1, 0)])
    return out


def test_amplitude_and_probability_grow_with_loudness_and_sharpness():
    cfg = dataclasses.replace(CLEAN, habituation_factor=1.0)
    fs = cfg.eda_sample_rate
    gap, n = 30.0, 60
    levels = [-40.0 if i % 2 else -15.0 for i in range(n)]
    events = [_event(5 + gap * i, lv, kind=KINDS[i % 5]) for i, lv in enumerate(levels)]
    amp = {-40.0: [], -15.0: []}
    resp = {-40.0: [], -15.0: []}
    for seed in range(4):
        eda, scrs = eda_from_events(events, 10 + gap * n, cfg, seed)
        meas = _measured_amplitudes(eda, fs, scrs)
        for i, lv in enumerate(levels):
            resp[lv].append(i in meas)
            amp[lv].append(meas.get(i, 0.0))
    assert np.mean(resp[-15.0]) > 0.85 and np.mean(resp[-40.0]) < 0.3
    assert np.mean(amp[-15.0]) > 2 * np.mean(amp[-40.0])
    loud_resp = [a for a, r in zip(amp[-15.0], resp[-15.0]) if r]
    quiet_resp = [a for a, r in zip(amp[-40.0], resp[-40.0]) if r]
    assert np.mean(loud_resp) > np.mean(quiet_resp) + 0.2          # larger even among responders

    # rank correlation over random levels (amplitudes as measured on the signal; no response = 0)
    from scipy.stats import spearmanr
    rng = np.random.default_rng(1)
    lv = rng.uniform(-50, -10, 200)
    events = [_event(5 + gap * i, l) for i, l in enumerate(lv)]
    eda, scrs = eda_from_events(events, 10 + gap * len(lv), cfg, 3)
    meas = _measured_amplitudes(eda, fs, scrs)
    assert spearmanr(lv, [meas.get(i, 0.0) for i in range(len(lv))])[0] > 0.6
    got = [i for i in range(len(lv)) if i in meas]
    assert spearmanr(lv[got], [meas[i] for i in got])[0] > 0.4

    # onset sharpness: same level, sharp vs soft onsets
    events = [_event(5 + gap * i, -22.0, sharpness=float(i % 2 == 0)) for i in range(n)]
    sharp, soft = [], []
    for seed in range(4):
        eda, scrs = eda_from_events(events, 10 + gap * n, cfg, seed)
        meas = _measured_amplitudes(eda, fs, scrs)
        for i in range(n):
            (sharp if i % 2 == 0 else soft).append(meas.get(i, 0.0))
    assert np.mean(sharp) > 1.3 * np.mean(soft)


def test_habituation_to_repeats():
    cfg = CLEAN
    fs = cfg.eda_sample_rate
    reps, gap = 8, 15.0
    events = [_event(5 + gap * k, -15.0, kind="tone") for k in range(reps)] + \
             [_event(5 + gap * reps, -15.0, kind="sweep")]       # a new kind: not habituated
    drives = response_drive(events, cfg)
    hab = [d["habituation"] for d in drives]
    assert hab[0] == 1.0 and all(hab[k + 1] < hab[k] for k in range(reps - 2)) and hab[-1] == 1.0
    assert min(hab) >= cfg.habituation_floor
    meas_amp = np.zeros((80, reps + 1))
    par_amp = [[] for _ in range(reps)]
    for seed in range(meas_amp.shape[0]):
        eda, scrs = eda_from_events(events, 10 + gap * (reps + 1), cfg, seed)
        for i, a in _measured_amplitudes(eda, fs, scrs).items():
            meas_amp[seed, i] = a
        for s in scrs:
            if s["event"] < reps:
                par_amp[s["event"]].append(s["amplitude"])
    mean = meas_amp.mean(axis=0)        # mean amplitude of the k-th repeat (no response = 0)
    for k in range(2, reps):
        assert mean[k] < mean[0], (k, mean)
    assert mean[reps - 1] < 0.75 * mean[0]
    assert mean[reps] > mean[reps - 1]            # the new kind responds as a first presentation
    assert np.mean(par_amp[reps - 1]) < np.mean(par_amp[0])


def test_spontaneous_rate_over_a_long_run():
    minutes = 30.0
    cfg = dataclasses.replace(CLEAN, spontaneous_rate_per_min=SynthConfig().spontaneous_rate_per_min)
    fs = cfg.eda_sample_rate
    for seed in range(6):
        eda, scrs = eda_from_events([], minutes * 60, cfg, seed)
        assert all(s["kind"] == "spontaneous" for s in scrs)
        assert 1.0 <= len(scrs) / minutes <= 3.0
        # count onsets on the signal: a local minimum where a new SCR starts
        d = np.diff(eda)
        minima = np.flatnonzero((d[:-1] <= 0) & (d[1:] > 0)) + 1
        onsets_measured = minima / fs
        true = np.array([s["onset"] for s in scrs])
        found = sum(np.min(np.abs(onsets_measured - o)) <= 0.5 for o in true)
        assert found >= 0.85 * len(true)
        assert len(onsets_measured) <= len(true) + 1
        assert 0.85 <= len(onsets_measured) / minutes <= 3.0 + 1 / minutes
    # the default model (with noise and drift) keeps the rate too
    for seed in range(3):
        _, scrs = eda_from_events([], minutes * 60, SynthConfig(), seed)
        assert 1.0 <= len(scrs) / minutes <= 3.0


def test_loud_sharp_events_in_synthesized_pairs_mostly_respond():
    cfg = dataclasses.replace(SynthConfig(), seconds=120.0)
    events = []
    for seed in range(4):
        events.append(synthesize_pair(seed, cfg).events)
    loud_sharp = quiet = total_ls = total_q = 0
    for evs in events:
        for rep in range(25):
            _, scrs = eda_from_events(evs, cfg.seconds, cfg, 1000 + rep)
            hit = {s["event"] for s in scrs if s["kind"] == "stimulus"}
            for i, e in enumerate(evs):
                if e["time"] + 3.0 >= cfg.seconds:
                    continue
                if e["level_db"] > -20 and e["sharpness"] > 0.6:
                    total_ls += 1
                    loud_sharp += i in hit
                elif e["level_db"] < -42:
                    total_q += 1
                    quiet += i in hit
    assert total_ls > 0 and total_q > 0
    assert loud_sharp / total_ls > 0.8
    assert quiet / total_q < 0.15


# ------------------------------------------------------------------------------------------------
# Pairs: signals, determinism, files
# ------------------------------------------------------------------------------------------------

SHORT = dataclasses.replace(SynthConfig(), seconds=40.0)


def test_pair_signals_are_sane():
    cfg = dataclasses.replace(SynthConfig(), seconds=90.0)
    for seed in (0, 1, 2):
        p = synthesize_pair(seed, cfg)
        assert p.audio.dtype == np.float32 and p.audio.shape == (90 * 16000,)
        assert p.eda.dtype == np.float64 and p.eda.shape == (90 * 4,)
        assert np.all(np.isfinite(p.audio)) and np.max(np.abs(p.audio)) < 1.0
        assert np.all(np.isfinite(p.eda)) and np.all(p.eda > 0)
        assert p.audio_sample_rate == 16000 and p.eda_sample_rate == 4
        assert len(p.events) >= 3 and {e["kind"] for e in p.events} <= set(KINDS)
        times = [e["time"] for e in p.events]
        assert all(b - a >= 6.0 - 1e-9 for a, b in zip(times, times[1:]))       # separable responses
        bg = 20 * np.log10(np.sqrt(np.mean(p.audio[: 2 * 16000].astype(np.float64) ** 2)))
        for e in p.events:
            assert set(e) >= {"time", "duration", "kind", "level_db", "sharpness"}
            assert 0.0 <= e["sharpness"] <= 1.0
            a, m = int(round(e["time"] * 16000)), int(round(e["duration"] * 16000))
            seg = p.audio[a:a + m].astype(np.float64)
            level = 20 * np.log10(np.sqrt(np.mean(seg ** 2)))
            if e["kind"] == "silence":
                assert level < bg - 10                     # the gap is quieter than the background
            elif e["level_db"] > bg + 15:
                assert level == pytest.approx(e["level_db"], abs=0.5)    # level measured in the audio
        for s in p.scrs:
            assert 0 <= s["onset"] < 90.0 and s["kind"] in ("stimulus", "spontaneous")
            if s["kind"] == "stimulus":
                assert 1.0 <= s["onset"] - p.events[s["event"]]["time"] <= 3.0


def test_determinism():
    a, b = synthesize_pair(11, SHORT), synthesize_pair(11, SHORT)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.eda, b.eda)
    assert a.events == b.events and a.scrs == b.scrs
    c = synthesize_pair(12, SHORT)
    assert not np.array_equal(a.audio, c.audio) and not np.array_equal(a.eda, c.eda)
    # the response model alone reproduces the pair's EDA from its events and EDA seed ...
    eda, scrs = eda_from_events(a.events, SHORT.seconds, SHORT, a.meta["eda_seed"])
    assert np.array_equal(eda, a.eda) and scrs == a.scrs
    # ... and another seed gives another draw for the same events (the data's own ceiling)
    eda2, _ = eda_from_events(a.events, SHORT.seconds, SHORT, a.meta["eda_seed"] + 1)
    assert eda2.shape == a.eda.shape and not np.array_equal(eda2, a.eda)
    assert pair_seed(0, 1) == pair_seed(0, 1) != pair_seed(0, 2) != pair_seed(1, 2)


def test_write_dataset_round_trip_and_pair_independence(tmp_path):
    cfg = dataclasses.replace(SynthConfig(), seconds=20.0)
    names2 = write_dataset(tmp_path / "two", 2, cfg, seed=7, progress=False)
    names5 = write_dataset(tmp_path / "five", 5, cfg, seed=7, progress=False)
    assert names2 == ["synth_00000", "synth_00001"] and names5[:2] == names2 and len(names5) == 5
    for suffix in (".wav", ".csv", ".json"):     # pair i is the same whether 2 or 5 pairs were made
        assert (tmp_path / "two" / f"synth_00001{suffix}").read_bytes() == \
               (tmp_path / "five" / f"synth_00001{suffix}").read_bytes()
    assert not list(tmp_path.rglob("*.tmp*"))    # atomic writes leave nothing behind
    # libsndfile stamps float WAVs with the time of writing (PEAK chunk): written as zero, so the
    # comparison above holds across a clock tick too
    raw = (tmp_path / "two" / "synth_00001.wav").read_bytes()
    at = raw.find(b"PEAK", 12, 200)
    assert at > 0 and raw[at + 12: at + 16] == bytes(4)
    assert sf.read(tmp_path / "two" / "synth_00001.wav", dtype="float32")[0].size == 20 * 16000

    pair = synthesize_pair(pair_seed(7, 1), cfg)
    d = tmp_path / "five"
    audio, sr = sf.read(d / "synth_00001.wav", dtype="float32")
    assert sr == 16000 and sf.info(str(d / "synth_00001.wav")).subtype == "FLOAT"
    assert np.array_equal(audio, pair.audio)
    lines = (d / "synth_00001.csv").read_text().splitlines()
    assert float(lines[0]) == 0.0 and float(lines[1]) == 4.0
    values = np.array([float(x) for x in lines[2:]])
    assert values.shape == (80,) and np.allclose(values, pair.eda, atol=1e-6)
    gt = read_ground_truth(d / "synth_00001.json")
    assert gt["events"] and "scrs" in gt and gt["generator"].startswith("edanet.synth")
    assert gt["audio_sample_rate"] == 16000 and gt["eda_sample_rate"] == 4 and gt["seed"] == pair_seed(7, 1)
    assert len(gt["events"]) == len(pair.events) and len(gt["scrs"]) == len(pair.scrs)
    for e, f in zip(gt["events"], pair.events):
        assert e["kind"] == f["kind"] and e["time"] == pytest.approx(f["time"], abs=1e-6)
    assert SynthConfig.from_dict(gt["config"]) == cfg
    manifest = json.loads((d / "dataset.json").read_text())
    assert manifest["names"] == names5 and manifest["pairs"] == 5 and manifest["seed"] == 7
    # eda_from_events on the saved events reproduces the saved EDA
    events = gt["events"]
    eda, _ = eda_from_events(events, gt["seconds"], SynthConfig.from_dict(gt["config"]), gt["eda_seed"])
    assert np.allclose(eda, values, atol=1e-5)
    # write_pair on its own
    paths = write_pair(pair, tmp_path / "single", "x")
    assert {p.name for p in paths.values()} == {"x.wav", "x.csv", "x.json"}
    with pytest.raises(ValueError):
        read_ground_truth(tmp_path / "five" / "dataset.json")


def test_config_validation_and_round_trip():
    cfg = SynthConfig()
    assert SynthConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.audio_sample_rate == 16000 and cfg.eda_sample_rate == 4 and cfg.seconds == 120.0
    for bad in [dict(eda_sample_rate=0), dict(seconds=-1), dict(latency_s=(3.0, 1.0)), dict(kinds=("bang",)),
                dict(habituation_factor=1.5), dict(noise_us=-0.1)]:
        with pytest.raises(ValueError):
            SynthConfig(**bad)
    with pytest.raises(ValueError):
        SynthConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError):
        synthesize_pair(-1, SHORT)
