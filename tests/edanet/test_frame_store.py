"""Training data that scales: the audio's frames computed once into a cache folder and read a
window at a time, the same windows as in memory; batches read by DataLoader workers are the
batches drawn in the training process, and a run resumed from a checkpoint continues them."""
import numpy as np
import pytest
import torch

import edanet.training.frame_store as frame_store
from edanet import EDANetConfig
from edanet.synth import SynthConfig, write_cohort
from edanet.training.data import PairedData
from edanet.training.loader import BatchPlan, batches

CFG = EDANetConfig.from_preset("tiny")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    write_cohort(d, 3, 4, SynthConfig(seconds=30.0, audio_sample_rate=8000), seed=2, progress=False)
    return d


def _counting(monkeypatch):
    calls = []
    real = frame_store.features
    monkeypatch.setattr(frame_store, "features", lambda path, *a: calls.append(path) or real(path, *a))
    return calls


def test_cached_frames_equal_those_in_memory_and_are_computed_once(cohort, tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    mem = PairedData(cohort, CFG, "all")
    assert len(calls) == 3                                      # one per audio file, not per subject (12)
    cached = PairedData(cohort, CFG, "all", cache=tmp_path / "cache")
    assert len(calls) == 6 and len(list((tmp_path / "cache").glob("*.npy"))) == 3
    again = PairedData(cohort, CFG, "all", cache=tmp_path / "cache")
    assert len(calls) == 6                                      # a later run reads the cache
    for a, b, c in zip(mem.recordings, cached.recordings, again.recordings):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.frames_window(9, 40), c.frames_window(9, 40))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for x, y in zip(mem.sample_batch(6, g1, 0.5), cached.sample_batch(6, g2, 0.5)):
        assert torch.equal(x, y)
    assert [w[3].sum() for w in mem.validation_windows()] == [w[3].sum() for w in cached.validation_windows()]


def test_a_changed_audio_file_is_featurized_again(cohort, tmp_path, monkeypatch):
    import shutil
    d = tmp_path / "data"
    shutil.copytree(cohort, d)
    PairedData(d, CFG, "all", cache=tmp_path / "cache")
    calls = _counting(monkeypatch)
    wav = sorted(d.glob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes())                           # same bytes, a new modification time
    import os
    os.utime(wav, ns=(1, 10**18))
    PairedData(d, CFG, "all", cache=tmp_path / "cache")
    assert [str(p) for p in calls] == [str(wav)]


def test_subjects_get_rows_and_windows_carry_them(cohort):
    d = PairedData(cohort, CFG, "all")
    assert len(d.subjects) == 4 and d.subject_row(d.recordings[0]) == -1     # no table given: none
    d.subject_rows = {s: i for i, s in enumerate(d.subjects)}
    *_, subject = d.collate(list(d.validation_windows()))
    want = [d.subject_rows[d.recordings[w.rec].subject] for w in d.validation_windows().specs]
    assert subject.tolist() == want and len(set(want)) == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_are_the_drawn_batches_and_resume_continues_them(cohort, tmp_path, workers):
    d = PairedData(cohort, CFG, "train", val_fraction=0.0, cache=tmp_path / "c", crop_steps=8)
    want = [d.sample_batch(3, g, 0.3) for g in [torch.Generator().manual_seed(7)] for _ in range(6)]
    plan = BatchPlan(d, 3, torch.Generator().manual_seed(7), 0.3)
    it = batches(d, plan, workers)
    got = [next(it) for _ in range(3)]
    state = plan.state_for_next()                 # what a checkpoint after 3 steps saves
    got += [next(it) for _ in range(3)]
    for w, g in zip(want, got):
        assert all(torch.equal(a, b) for a, b in zip(w, g[:4]))
    resumed = BatchPlan(d, 3, torch.Generator().set_state(state), 0.3)
    it2 = batches(d, resumed, 0)
    for w in want[3:]:
        assert all(torch.equal(a, b) for a, b in zip(w, next(it2)[:4]))
