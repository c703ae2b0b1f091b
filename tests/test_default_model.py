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
