"""The bundled default model and example clip: they load and generate."""
from pathlib import Path

import numpy as np

import edanet
from edanet import EDANetConfig

ASSETS = Path(edanet.__file__).parent / "assets"


def test_bundled_model_is_the_small_preset_and_small():
    model = edanet.default_model()
    assert model.config == EDANetConfig.from_preset("small")
    total = sum(p.stat().st_size for p in (ASSETS / "default").iterdir())
    assert total < 5 * 2 ** 20


def test_generate_on_the_bundled_example():
    res = edanet.generate(str(ASSETS / "example.wav"), seed=0, num_samples=2, backend="torch")
    assert res.values.shape == (2, 240)                     # 60 s at 4 Hz
    lo, hi = edanet.default_model().config.default_eda_range_us
    assert np.isfinite(res.values).all() and res.values.min() >= lo and res.values.max() <= hi
    assert res.values.std() > 0


def test_bundled_model_uses_the_audio(tmp_path):
    """Teacher-forced on synthetic pairs from seeds it never saw, the bundled model predicts each
    recording's EDA better from that recording's audio than from another recording's: the audio,
    not only the EDA's own past, informs it."""
    import torch
    import torch.nn.functional as F

    from edanet.data import find_pairs, load_recording
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
    assert own < other - 0.003, (own, other)       # measured: 0.0062 nats per step
