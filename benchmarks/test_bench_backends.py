"""pytest-benchmark view of the same matrix: every engine of one case shares a group, so
``pytest benchmarks/ --benchmark-group-by=group`` prints one comparison table per case.

    pytest benchmarks/ --benchmark-json=out.json
"""
import pytest
import torch

from benchmarks.engines import common

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BATCHES = common.GPU_BATCHES if DEVICE.type == "cuda" else common.CPU_BATCHES
VARIANTS = [v for v in common.default_variants(DEVICE) if v.backend != "reference"]
STEPS = 512 if DEVICE.type == "cuda" else 64


@pytest.mark.parametrize("preset", ["small", "base"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.label}:{v.dtype_name}")
def test_generate(benchmark, preset, batch, variant):
    spec, weights = common.spec_and_weights(preset)
    engine = variant.create(spec, weights, DEVICE)
    frames, uniforms = common.make_inputs(spec, batch, STEPS, DEVICE)
    benchmark.group = f"{preset} batch {batch}"
    benchmark.extra_info.update(flops_per_step=spec.flops_per_step() * batch, steps=STEPS, dtype=variant.dtype_name,
                                bytes_per_step=common.bytes_per_step(spec, batch, variant.dtype.itemsize))

    def run():
        out = engine.generate(frames, uniforms)
        common.sync(DEVICE)
        return out

    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert out.shape == (batch, STEPS)
