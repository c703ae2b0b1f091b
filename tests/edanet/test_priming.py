"""Priming: a recording of the person from the start of the audio, kept as it is, then continued
by the model as that person; the same in one call, in a stream of any chunks, from a file."""
import numpy as np
import pytest
import torch

import edanet
from edanet import EDANet, EDANetConfig
from edanet.generation.people import people_for_prime
from edanet.io import write_eda_csv

RATE = 8000


def _audio(seconds, seed=0):
    rng = np.random.default_rng(seed)
    a = 0.01 * rng.standard_normal(int(seconds * RATE))
    for t in (x for x in (2.0, 9.0, 15.0) if x + 0.4 < seconds):
        a[int(t * RATE):int((t + 0.4) * RATE)] += 0.4 * rng.standard_normal(int(0.4 * RATE))
    return a.astype(np.float32)


def _prime(n, seed=1):
    rng = np.random.default_rng(seed)
    return 3.0 + np.cumsum(0.01 * rng.standard_normal(n))


@pytest.mark.parametrize("subjects", [0, 3])
def test_the_prime_is_kept_and_continued(tiny_model, subjects):
    model = tiny_model if not subjects else _subject_model(subjects)
    audio, prime = _audio(20.0), _prime(30)
    res = edanet.generate(audio, RATE, model=model, prime=prime, num_samples=3, seed=5)
    n = res.values.shape[1]
    assert n == 80
    np.testing.assert_array_equal(res.values[:, :30], np.broadcast_to(prime, (3, 30)))
    codec = edanet.generation.core.codec_for(model.config)
    np.testing.assert_array_equal(res.classes[:, :30], np.broadcast_to(codec.encode(prime, prime[0]), (3, 30)))
    # the rest starts from the prime's last value: a first step moves it by at most delta_range_us
    assert np.all(np.abs(res.values[:, 30] - prime[-1]) <= model.config.delta_range_us + 1e-9)
    assert not np.array_equal(res.values[0, 30:], res.values[1, 30:])     # samples differ after it
    # a stream of odd chunks gives the same
    with edanet.EDAStream(model, RATE, prime=prime, num_samples=3, seed=5) as s:
        got = np.concatenate([s.push(audio[i:i + 1777]) for i in range(0, audio.size, 1777)] + [s.close()], 1)
    np.testing.assert_array_equal(got, res.values)


def test_a_prime_from_a_file_at_another_rate(tiny_model, tmp_path):
    audio, prime = _audio(20.0), _prime(30)
    fine = np.repeat(prime, 8)                       # the same values at 32 Hz (held per step)
    write_eda_csv(tmp_path / "p.csv", fine, 32.0)
    res = edanet.generate(audio, RATE, model=tiny_model, prime=tmp_path / "p.csv", seed=2)
    assert res.values.shape[1] == 80
    np.testing.assert_allclose(res.values[0, 2:28], prime[2:28], atol=0.02)   # resampled to 4 Hz


def test_a_prime_longer_than_the_audio_is_all_there_is(tiny_model):
    prime = _prime(200)
    res = edanet.generate(_audio(10.0), RATE, model=tiny_model, prime=prime, seed=2)
    np.testing.assert_array_equal(res.values[0], prime[:40])


@pytest.mark.parametrize("prime,match", [(np.zeros((2, 5)), "1-D"), (np.array([3.0, np.nan]), "NaN"),
                                         (np.array([3.0, -1.0]), "negative"), (np.zeros(0), "empty")])
def test_a_bad_prime_is_refused(tiny_model, prime, match):
    with pytest.raises(ValueError, match=match):
        edanet.generate(_audio(5.0), RATE, model=tiny_model, prime=prime)


def _subject_model(n, scale=3.0):
    torch.manual_seed(4)
    model = EDANet(EDANetConfig.from_preset("tiny", subject_dim=2, subject_count=n)).eval()
    with torch.no_grad():
        model.subjects.weight.mul_(scale / 0.1)        # subjects far apart: each changes the output a lot
        model.subject_levels.copy_(torch.linspace(1.0, 5.0, n))
    return model


class _SubjectEcho:
    """An engine stand-in whose teacher-forced logits favour, at every step, the class equal to
    the row's subject value (the first subject channel): the prime of class c is subject c's."""

    def __init__(self, cfg):
        self.channel, self.q = cfg.feature_channels, cfg.quantization_bins

    def teacher_forced(self, rows, classes):
        z = rows[:, self.channel, 0, 0].round().long()                # each row's subject value
        logits = torch.zeros(rows.shape[0], classes.shape[1], self.q, dtype=torch.float64)
        logits[torch.arange(rows.shape[0]), :, z] = 4.0
        return logits


def test_the_prime_chooses_the_person_it_is_of():
    torch.manual_seed(0)
    model = EDANet(EDANetConfig.from_preset("tiny", subject_dim=1, subject_count=5)).eval()
    with torch.no_grad():
        model.subjects.weight.copy_(torch.arange(5.0)[:, None])         # subject r's vector: [r]
        model.subject_levels.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    frames = torch.zeros(1, model.config.feature_channels, 20 * model.config.spectral_frames_per_eda_step,
                         model.config.num_mfccs)
    for row in range(5):
        classes = torch.full((20,), row)
        classes[::7] = (row + 1) % 5                                       # not every step: still the best row
        people = people_for_prime(model, _SubjectEcho(model.config), frames, classes, 6, seed=1)
        assert people.rows.tolist() == [row] * 6
        np.testing.assert_allclose(people.levels, row + 1.0)
    # a prime that fits two people equally: the samples are drawn between them, reproducibly
    classes = torch.tensor([1, 3] * 10)
    a = people_for_prime(model, _SubjectEcho(model.config), frames, classes, 40, seed=2)
    assert set(a.rows.tolist()) == {1, 3}
    b = people_for_prime(model, _SubjectEcho(model.config), frames, classes, 40, seed=2)
    assert a.rows.tolist() == b.rows.tolist()
