"""What the ``cuda`` backend's planner picks for the presets on an H100 and an A100, and how
many weight bytes each step then streams from L2, by a model of the kernel (no GPU needed).

    python -m benchmarks.cuda_plans [--out FILE.md]

Per case: the launch plan (``fastgen.backends.cuda.plan_launch``: blocks sharing a sequence,
positions and sequences per block, launches one after another, shared memory) and the share
of the weights resident in shared memory. The traffic model follows csrc/cuda/kernel.cuh and
the GEMMs of block_ops.cuh: a tensor-core GEMM reads each non-resident weight once per warp
block of FG_MTW = 4 m-tiles (16 rows each), an FMA GEMM once per FG_TM = 4 rows, and the downsampling reads its down_w
slice (unless resident) once per FG_SMAX = 4 sequences of a block. "L2 GB/step" is that over
every block of every launch: the weight traffic of one EDA step of the whole batch. A model to
compare plans by, not a measurement. ``ALTERNATIVES`` are plans the model favours over the
default, to be timed on a GPU (``edanet bench --variants cuda:bf16@f_splits=10,seqs_per_block=8``).
"""
from __future__ import annotations

import argparse
import sys

import torch

from fastgen.backends import cuda as cb
from fastgen.devices import LIMITS

from benchmarks.engines.common import environment, spec_and_weights

# (shared memory per block, SMs) of the parts the plans are tabulated for
DEVICES = {LIMITS[cc].part: (LIMITS[cc].shared_per_block, LIMITS[cc].sms) for cc in (90, 80)}
MTW, TM, SMAX = 4, 4, 4                                             # FG_MTW, FG_TM, FG_SMAX
# (preset, dtype, batch, plan options): base at batch 256 with each block holding 2 positions of
# 8 sequences reads down_w once per 4 sequences instead of once per sequence, at the cost of a
# cross-block reduction every step.
ALTERNATIVES = [("base", torch.bfloat16, 256, dict(f_splits=10, seqs_per_block=8))]


def weight_reads_per_step(spec, plan) -> tuple[int, int]:
    """(core, down_w) bytes one block reads from global memory (L2) per step, by the model."""
    es = torch.empty((), dtype=plan.dtype).element_size()
    lay = cb.core_layout(spec, plan.dtype, plan.path)
    M = plan.seqs_per_block * spec.frames_per_step * plan.f_per_block
    reads = -(-M // (16 * MTW)) if plan.path == "mma" else -(-M // TM)   # times each GEMM weight is read
    Cr, Ch, Cs, Co, Q = (spec.residual_channels, spec.hidden_channels, spec.skip_channels, spec.out_channels,
                         spec.num_classes)
    segs = [(lay.offsets["h1w"], es * Co * Cs), (lay.offsets["h2w"], es * Co * Co)]
    for l in range(spec.num_layers):
        base = lay.offsets["layers"] + l * lay.layer_stride
        segs += [(base + lay.layer_offsets["wdil"], es * 4 * Ch * Cr), (base + lay.layer_offsets["wsr"], es * (Cs + Cr) * Ch)]
    core = sum(n * reads for off, n in segs if off + n > plan.core_resident)
    down = 0 if plan.down_resident else (plan.f_per_block * spec.frames_per_step * Co * Q * es
                                         * -(-plan.seqs_per_block // SMAX))
    return core, down


def row(preset, device, dtype, batch, **options) -> dict:
    spec = spec_and_weights(preset)[0]
    smem, sms = DEVICES[device]
    p = cb.plan_launch(spec, batch, smem, sms, dtype=dtype, **options)
    core, down = weight_reads_per_step(spec, p)
    return dict(preset=preset, device=device, dtype=str(dtype).removeprefix("torch."), batch=batch, options=options,
                path=p.path, threads=p.threads, f_splits=p.f_splits, f_per_block=p.f_per_block,
                seqs_per_block=p.seqs_per_block, blocks=p.blocks, launches=p.launches, smem_bytes=p.smem_bytes,
                resident=p.core_resident / p.core_bytes, down_resident=p.down_resident, core_read=core,
                down_read=down, l2_bytes_per_step=(core + down) * p.f_splits * -(-batch // p.seqs_per_block))


def rows(presets=("small", "base"), dtypes=(torch.float32, torch.bfloat16), batches=(1, 8, 64, 256)) -> list[dict]:
    out = [row(p, dev, dt, b) for p in presets for dev in DEVICES for dt in dtypes for b in batches]
    return out + [row(p, "H100", dt, b, **opts) for p, dt, b, opts in ALTERNATIVES]


def markdown(rs: list[dict], env: dict) -> str:
    head = (f"`python -m benchmarks.cuda_plans`, commit {env['commit']}, {env['date']}: the cuda backend's launch "
            "plans and a model of the weight bytes read from L2 per step (see the module docstring; not a "
            "measurement).\n\n"
            "| preset | GPU | dtype | batch | plan options | path | threads | f_splits x positions | seqs/block "
            "| blocks | launches | shared KiB | weights resident | down_w resident | MB/block-step | L2 GB/step |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['preset']} | {r['device']} | {r['dtype']} | {r['batch']} | "
        f"{','.join(f'{k}={v}' for k, v in r['options'].items()) or 'default'} | {r['path']} | {r['threads']} | "
        f"{r['f_splits']} x {r['f_per_block']} | {r['seqs_per_block']} | {r['blocks']} | {r['launches']} | "
        f"{r['smem_bytes'] / 1024:.0f} | {100 * r['resident']:.0f}% | {'yes' if r['down_resident'] else 'no'} | "
        f"{(r['core_read'] + r['down_read']) / 1e6:.2f} | {r['l2_bytes_per_step'] / 1e9:.3f} |\n" for r in rs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the markdown table here")
    a = ap.parse_args(argv)
    md = markdown(rows(), environment(torch.device("cpu")))
    print(md)
    if a.out:
        from edanet.io import atomic_write
        atomic_write(a.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
