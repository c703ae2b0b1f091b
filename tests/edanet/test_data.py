"""Training data: the split, crops with their warm-up, bad files, acoustic onsets, focused crops."""
import json
import math

import numpy as np
import pytest
import torch

from edanet import EDANetConfig
from edanet.features import MFCC_SCALE
from edanet.training.data import ONSET_RISE_DB, RESPONSE_WINDOW_S, PairedData, acoustic_onsets, find_pairs
from edanet.synth import SynthConfig, write_dataset

CFG = EDANetConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    write_dataset(d, 8, SynthConfig(seconds=40.0, audio_sample_rate=CFG.audio_sample_rate), seed=5, progress=False)
    return d


def test_split_is_by_recording_and_stable(pairs):
    tr = PairedData(pairs, CFG, "train", val_fraction=0.3)
    va = PairedData(pairs, CFG, "val", val_fraction=0.3)
    names_tr = {r.name for r in tr.recordings}
    names_va = {r.name for r in va.recordings}
    assert names_tr and names_va and not names_tr & names_va
    assert names_tr | names_va == {n for n, _, _ in find_pairs(pairs)}
    assert {r.name for r in PairedData(pairs, CFG, "train", val_fraction=0.3).recordings} == names_tr


def test_crops_have_a_warm_up_and_true_previous_value(pairs):
    d = PairedData(pairs, CFG, "all", crop_steps=5)
    K = CFG.spectral_frames_per_eda_step
    assert d.warmup_steps == math.ceil((CFG.receptive_field_frames - 1) / K)
    frames, cond, target, mask = d.sample_batch(32, torch.Generator().manual_seed(0))
    W = d.window_steps
    assert frames.shape == (32, CFG.in_channels, W * K, CFG.num_mfccs) and target.shape == (32, W)
    assert torch.equal(cond[:, 1:], target[:, :-1])          # teacher forcing: previous true class
    scored = mask.sum(1)
    assert int(scored.max()) <= W and int(scored.min()) >= 1
    # each window is an exact slice of one recording: find it and check the first conditioning
    for b in range(4):
        r, _, s = _locate(d, frames[b].numpy(), target[b].numpy())
        np.testing.assert_array_equal(r.frames[:, s * K:(s + W) * K], frames[b].numpy())
        assert int(cond[b, 0]) == (int(r.classes[s - 1]) if s > 0 else CFG.start_class)
        if s > 0:   # the warm-up is not scored, the crop is
            assert not mask[b, : d.warmup_steps].any() and mask[b, d.warmup_steps:].all()


def test_bad_file_is_named_and_skip_bad_counts(pairs, tmp_path):
    for p in pairs.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "synth_00002.csv").write_text("1500000000\n4\nnot-a-number\n")
    with pytest.raises(ValueError, match="synth_00002"):
        PairedData(tmp_path, CFG, "all")
    with pytest.warns(RuntimeWarning, match="skipped 1 bad pair"):
        d = PairedData(tmp_path, CFG, "all", skip_bad=True)
    assert len(d.recordings) == 7 and d.skipped[0][0] == "synth_00002"


def _frames_with_level(level_db: np.ndarray) -> np.ndarray:
    """MFCC-shaped frames whose c0 encodes the given mean log-mel level (dB)."""
    f = np.zeros((1, len(level_db), CFG.num_mfccs), np.float32)
    f[0, :, 0] = level_db * MFCC_SCALE * math.sqrt(CFG.num_mels)
    return f


def test_acoustic_onsets_on_constructed_levels():
    K = CFG.spectral_frames_per_eda_step
    lvl = np.full(40 * K, -60.0)
    lvl[10 * K + 1: 14 * K] = -40.0                         # a sound starting in step 10
    lvl[20 * K + 2: 20 * K + 6] = -60 + ONSET_RISE_DB - 1   # below the threshold: not an onset
    ramp_start = 30 * K
    lvl[ramp_start:] = -60 + np.arange(10 * K) * 0.05       # a slow rise: not an onset either
    assert acoustic_onsets(_frames_with_level(lvl), CFG).tolist() == [10]
    # causal: what comes after a frame never decides whether it is an onset
    cut = acoustic_onsets(_frames_with_level(lvl[: 10 * K + 2]), CFG)
    assert cut.tolist() == [10]
    assert acoustic_onsets(np.zeros((1, 0, CFG.num_mfccs), np.float32), CFG).size == 0
    with pytest.raises(ValueError, match="channels, T, F"):
        acoustic_onsets(np.zeros((3, 4)), CFG)


def test_acoustic_onsets_find_the_synthetic_events(pairs):
    d = PairedData(pairs, CFG, "all")
    hit = total = 0
    for r, on in zip(d.recordings, d.onsets):
        truth = json.loads((pairs / f"{r.name}.json").read_text())
        for ev in truth["events"]:
            if ev["kind"] == "silence" or ev["level_db"] < -40:
                continue
            total += 1
            j = int(ev["time"] * CFG.eda_sample_rate)
            hit += bool(np.any(np.abs(on - j) <= 1))
    assert total >= 10 and hit / total >= 0.9


def _locate(d, frames_b, target_b):
    """(recording, start step) of a window, found by content."""
    K, W = CFG.spectral_frames_per_eda_step, d.window_steps
    for r, on in zip(d.recordings, d.onsets):
        for s in range(max(1, r.steps - W + 1)):
            if (np.array_equal(r.classes[s:s + W], target_b[: r.steps - s])
                    and np.array_equal(r.frames[:, s * K:(s + 1) * K], frames_b[:, :K])):
                return r, on, s
    raise AssertionError("window is not a slice of any recording")


@pytest.mark.parametrize("focus", [0.0, 0.5, 1.0])
def test_onset_focus_places_that_fraction_of_crops_on_onsets(pairs, focus):
    d = PairedData(pairs, CFG, "all", crop_steps=24)
    after = round(RESPONSE_WINDOW_S * CFG.eda_sample_rate)
    n, covered = 300, 0
    frames, _, target, mask = d.sample_batch(n, torch.Generator().manual_seed(1), onset_focus=focus)
    for b in range(n):
        r, on, s = _locate(d, frames[b].numpy(), target[b].numpy())
        scored = set((s + np.flatnonzero(mask[b].numpy())).tolist())
        covered += any(j in scored and j + after - 1 in scored for j in on.tolist())
    # an onset with its response window is inside the scored crop: rarely for uniform crops
    # (about a fifth here), at least as often as asked for focused ones
    if focus == 0.0:
        assert covered / n < 0.4
    else:
        assert covered / n >= focus - 0.05
    with pytest.raises(ValueError, match="onset_focus"):
        d.sample_batch(1, torch.Generator(), onset_focus=1.5)


def _copy(pairs, dst, name, audio_suffix=".wav", src="synth_00000", csv=True, audio=True):
    """A copy of one synthetic pair under another name (and audio suffix)."""
    if audio:
        (dst / f"{name}{audio_suffix}").write_bytes((pairs / f"{src}.wav").read_bytes())
    if csv:
        (dst / f"{name}.csv").write_bytes((pairs / f"{src}.csv").read_bytes())


def test_audio_suffix_matches_in_any_case(pairs, tmp_path):
    _copy(pairs, tmp_path, "loud", ".WAV")
    _copy(pairs, tmp_path, "soft", ".Flac", audio=False)       # name only: find_pairs does not read it
    (tmp_path / "soft.Flac").write_bytes(b"")
    assert [(n, a.name, c.name) for n, a, c in find_pairs(tmp_path)] == [
        ("loud", "loud.WAV", "loud.csv"), ("soft", "soft.Flac", "soft.csv")]
    assert PairedData(tmp_path, CFG, "all", max_recordings=1).recordings[0].audio_path == tmp_path / "loud.WAV"


def test_unmatched_files_are_named_in_one_warning(pairs, tmp_path):
    _copy(pairs, tmp_path, "ok")
    for name in ("a", "b", "c", "d", "e", "f"):
        _copy(pairs, tmp_path, name, csv=False)
    _copy(pairs, tmp_path, "lonely", audio=False)
    (tmp_path / "ok.json").write_text("{}")                    # other files are not counted
    with pytest.warns(RuntimeWarning) as record:
        found = find_pairs(tmp_path)
    assert [n for n, _, _ in found] == ["ok"] and len(record) == 1
    msg = str(record[0].message)
    assert "6 audio file(s) without a .csv (a.wav, b.wav, c.wav, d.wav, e.wav, ... (1 more))" in msg
    assert "1 CSV(s) without audio (lonely.csv)" in msg and "ok.json" not in msg


def test_no_pairs_error_says_what_was_found(pairs, tmp_path):
    for name in ("a", "b", "c"):
        _copy(pairs, tmp_path, name, csv=False)
    _copy(pairs, tmp_path, "x", audio=False)
    _copy(pairs, tmp_path, "y", audio=False)
    with pytest.raises(ValueError, match=r"3 audio file\(s\) without a \.csv .*2 CSV\(s\) without audio .*"
                                         r"expected NAME\.csv \(EDA\) beside NAME\.wav"):
        find_pairs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="found no audio or .csv files; expected NAME.csv"):
        find_pairs(empty)


def test_bad_pair_hint_is_the_callers(pairs, tmp_path):
    _copy(pairs, tmp_path, "rec")
    (tmp_path / "rec.csv").write_text("1500000000\n4\nnot-a-number\n")
    with pytest.raises(ValueError, match=r"bad pair 'rec'.*\(use --skip-bad to skip such files\)$"):
        PairedData(tmp_path, CFG, "all")
    with pytest.raises(ValueError, match=r"bad pair 'rec'.*\(fix it\)$") as e:
        PairedData(tmp_path, CFG, "all", bad_pair_hint="fix it")
    assert "--skip-bad" not in str(e.value)


def test_empty_train_split_says_why_and_what_to_do(pairs, tmp_path):
    from edanet.training.data import _is_validation
    assert _is_validation("rec75", 0.1)                        # the one recording goes to validation
    _copy(pairs, tmp_path, "rec75")
    with pytest.raises(ValueError, match=r"split 'train'.*of 1 recording\(s\), 0 went to 'train' and 1 to 'val' "
                                         r"\(val_fraction 0\.1.*add recordings.*val_fraction"):
        PairedData(tmp_path, CFG, "train", val_fraction=0.1)
    assert [r.name for r in PairedData(tmp_path, CFG, "train", val_fraction=0.0).recordings] == ["rec75"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_recordings_must_be_positive(pairs, bad):
    with pytest.raises(ValueError, match="max_recordings must be None"):
        PairedData(pairs, CFG, "all", max_recordings=bad)


def test_windows_longer_than_the_recordings_score_them_whole(pairs):
    """With a warm-up + crop longer than every recording (a receptive field as long as the
    recordings), a training window is a whole recording from its start, every step scored and
    no padding past the longest; validation scores each recording once, whole."""
    d = PairedData(pairs, CFG, "all", crop_steps=400)
    longest = max(r.steps for r in d.recordings)
    assert d.window_steps > longest
    frames, cond, target, mask = d.sample_batch(6, torch.Generator().manual_seed(2))
    assert target.shape == (6, longest)
    for b in range(6):
        r = next(r for r in d.recordings if np.array_equal(r.classes, target[b, : r.steps].numpy()))
        assert int(cond[b, 0]) == CFG.start_class and int(mask[b].sum()) == r.steps
    windows = d.validation_windows()
    assert len(windows) == len(d.recordings)
    assert sum(int(w[3].sum()) for w in windows) == sum(r.steps for r in d.recordings)


def test_validation_windows_tile_every_step_once(pairs):
    d = PairedData(pairs, CFG, "all", crop_steps=7)
    for r in d.recordings[:3]:
        one = PairedData.__new__(PairedData)
        one.__dict__.update(d.__dict__, recordings=[r])
        scored = [int(w[3].sum()) for w in one.validation_windows(max_windows_per_recording=10 ** 6)]
        assert sum(scored) == r.steps                     # every step once: first window W, then crops
        assert scored[0] == min(d.window_steps, r.steps) and all(s <= 7 for s in scored[1:])
