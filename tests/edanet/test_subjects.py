"""A model that generates people: the subject table training builds from a cohort, each sample a
person drawn from it (held for the clip, with its own start level), the same whatever the number
of samples, in one call, a stream or a corpus."""
import dataclasses

import numpy as np
import pytest
import torch

import edanet
from edanet import EDANetConfig
from edanet.generation.people import draw_people
from edanet.synth import SynthConfig, write_cohort
from edanet.training import TRAIN_PRESETS, train
from edanet.training.data import PairedData

CFG = EDANetConfig.from_preset("tiny", subject_dim=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("subjects")
    write_cohort(root / "data", 4, 5, SynthConfig(seconds=30.0, audio_sample_rate=8000), seed=8, progress=False)
    tcfg = dataclasses.replace(TRAIN_PRESETS["tiny"], steps=6, batch_size=2, val_every=3, ckpt_every=6,
                               val_fraction=0.25, workers=0)
    train(root / "data", root / "run", CFG, tcfg, device="cpu", progress=False, cache=root / "cache")
    return root, edanet.load_model(root / "run")


def test_training_builds_the_subject_table(trained):
    root, model = trained
    data = PairedData(root / "data", CFG, "train", val_fraction=0.25)
    assert model.config.subject_count == len(data.subjects) == 5
    starts = {s: [r.start_us for r in data.recordings if r.subject == s] for s in data.subjects}
    want = [np.median(starts[s]) for s in data.subjects]
    np.testing.assert_allclose(model.subject_levels.numpy(), want, rtol=1e-6)
    logs = {s: np.log(v) - np.log(v).mean() for s, v in starts.items()}
    pooled = np.sqrt(sum((d ** 2).sum() for d in logs.values()) / sum(len(d) - 1 for d in logs.values()))
    assert model.config.subject_level_log_sd == pytest.approx(pooled, abs=1e-4)


def test_each_sample_is_a_person_whatever_the_number_of_samples(trained):
    root, model = trained
    clip = sorted((root / "data").glob("*.wav"))[0]
    many = edanet.generate(clip, model=model, num_samples=6, seed=3)
    few = edanet.generate(clip, model=model, num_samples=2, seed=3)
    np.testing.assert_array_equal(many.values[:2], few.values)
    people = draw_people(model, 6, 3)
    assert len(set(people.rows.tolist())) > 1                           # several people
    # each starts at its person's level: the first step changes it by at most delta_range_us
    assert np.all(np.abs(many.values[:, 0] - people.levels) <= model.config.delta_range_us + 1e-9)
    # the start level is drawn around the person's own
    ratio = people.levels / model.subject_levels.numpy()[people.rows]
    assert np.all(np.abs(np.log(ratio)) < 5 * model.config.subject_level_log_sd + 1e-9)
    fixed = edanet.generate(clip, model=model, num_samples=3, seed=3, initial_eda_us=2.0)
    assert np.allclose(fixed.values[:, 0], 2.0, atol=1.0) and not np.allclose(fixed.values, many.values[:3])
    with edanet.EDAStream(model, 8000, num_samples=6, seed=3) as s:
        import soundfile as sf
        audio, _ = sf.read(clip, dtype="float32")
        got = np.concatenate([s.push(audio[i:i + 3001]) for i in range(0, len(audio), 3001)] + [s.close()], 1)
    np.testing.assert_array_equal(got, many.values)
    for c, res in edanet.generate_many([clip], model=model, num_samples=6, seed=0):
        np.testing.assert_array_equal(res.values, edanet.generate(clip, model=model, num_samples=6,
                                                                 seed=edanet.clip_seed(0, c.rel)).values)


def test_people_change_what_is_generated(trained):
    root, model = trained
    clip = sorted((root / "data").glob("*.wav"))[0]
    frames = torch.from_numpy(edanet.features.features(str(clip), None, model.config)[0])[None]
    with torch.no_grad():
        a = model.with_subject(frames, torch.tensor([0]))
        b = model.with_subject(frames, torch.tensor([1]))
    assert a.shape[1] == model.config.model_channels and not torch.equal(a, b)
