"""The bundled default model and example clip: the model is the small preset's recipe, and what it
generates looks like skin conductance in µS (fine steps, no flat runs, no jumps) and depends on
the audio."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edanet
from edanet import EDANetConfig

ASSETS = Path(edanet.__file__).parent / "assets"


@pytest.fixture(scope="module")
def example():
    """Four samples on the bundled 60 s example clip."""
    return edanet.generate(str(ASSETS / "example.wav"), seed=0, num_samples=4)


def test_bundled_model_is_the_small_preset_and_small():
    model = edanet.default_model()
    cfg = model.config
    # training sets the start level to its data's median first value and sizes the subject table
    # from its data (a person each, with their start level); all else is the preset
    assert 1.0 <= cfg.initial_eda_us <= 20.0
    assert cfg.subject_count >= 50 and 0 < cfg.subject_level_log_sd < 1
    assert replace(cfg, initial_eda_us=None, subject_count=0, subject_level_log_sd=0.0) == \
        EDANetConfig.from_preset("small")
    levels = model.subject_levels.numpy()
    assert levels.shape == (cfg.subject_count,) and 0.1 < levels.min() and levels.max() < 50
    total = sum(p.stat().st_size for p in (ASSETS / "default").iterdir())
    assert total < 5 * 2 ** 20


def test_generated_eda_is_in_us_from_the_start_level(example):
    cfg = edanet.default_model().config
    assert example.values.shape == (4, 240)                   # 60 s at 4 Hz
    v = example.values
    assert np.isfinite(v).all() and (v >= 0).all()
    # each sample starts at its person's level: the first step moves it by one delta class at most
    from edanet.generation.people import draw_people
    levels = draw_people(edanet.default_model(), 4, 0).levels
    assert np.abs(v[:, 0] - levels).max() <= cfg.delta_range_us
    assert np.ptp(levels) > 0                                  # four people, four levels
    assert v.std() > 0


def test_generated_eda_has_the_texture_of_skin_conductance(example):
    v = example.values
    steps = np.diff(v, axis=1)
    assert (steps == 0).mean() <= 0.05                        # no staircase
    distinct_per_min = np.mean([len(np.unique(np.round(s, 6))) for s in v]) / 1.0
    assert distinct_per_min >= 150                            # 60 s clip: per minute
    assert np.abs(steps).max() <= edanet.default_model().config.delta_range_us + 1e-9
    assert 0.1 <= np.median(np.ptp(v, axis=1)) <= 5.0         # µS over a minute, not a range to guess


def test_initial_eda_sets_the_level():
    low = edanet.generate(str(ASSETS / "example.wav"), seed=1, initial_eda_us=2.0)
    high = edanet.generate(str(ASSETS / "example.wav"), seed=1, initial_eda_us=12.0)
    # the same uniforms from another start: the levels differ by about the start's difference
    assert 8.0 < np.mean(high.values - low.values) < 12.0


def test_bundled_model_uses_the_audio(tmp_path):
    """Teacher-forced on synthetic pairs from seeds it never saw, the bundled model predicts each
    recording's EDA better from that recording's audio than from another recording's: the audio,
    not only the EDA's own past, informs it."""
    import torch
    import torch.nn.functional as F

    from edanet.training.data import find_pairs, load_recording
    from edanet.synth import SynthConfig, write_dataset

    write_dataset(tmp_path, 6, SynthConfig(seconds=120.0), seed=2000, progress=False)
    model = edanet.default_model()
    recs = [load_recording(n, a, c, model.config) for n, a, c in find_pairs(tmp_path)]
    N = min(r.steps for r in recs)
    K = model.config.spectral_frames_per_eda_step

    def nll(frames, classes):
        e = torch.from_numpy(classes[:N])[None]
        with torch.no_grad():
            return F.cross_entropy(model(torch.from_numpy(frames[:, : N * K])[None], e), e).item()

    own = np.mean([nll(r.frames, r.classes) for r in recs])
    other = np.mean([nll(recs[(i + 1) % len(recs)].frames, r.classes) for i, r in enumerate(recs)])
    print(f"own-audio NLL {own:.4f}, other-audio NLL {other:.4f}, margin {other - own:.4f}")
    assert own < other - 0.02, (own, other)


def test_bundled_model_has_a_card_that_names_its_weights():
    """The model card (README.md with front matter) describes these weights: its sha256 is theirs,
    so replacing the weights without the card fails here."""
    import hashlib
    card = (ASSETS / "default" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    front = dict(line.split(": ", 1) for line in card.split("---\n")[1].splitlines() if ": " in line)
    weights = (ASSETS / "default" / "model.safetensors").read_bytes()
    assert front["model_sha256"] == hashlib.sha256(weights).hexdigest()
    assert front["license"] == "mit" and front["edanet_version"]
    for section in ("## Training data", "## Intended use", "## Evaluation", "## Limits", "## License"):
        assert section in card
