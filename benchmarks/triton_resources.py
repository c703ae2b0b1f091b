"""What the Triton kernels would use on an NVIDIA GPU, found by compiling them here (no GPU
needed; ``fastgen/triton_aot.py``): registers, spills and shared memory of every launch the
``triton`` and ``triton_persistent`` backends make for the ``small`` and ``base`` presets, per
dtype, batch size (1: one sequence per program; 256: 16 in bf16/fp16) and architecture
(sm_80, sm_90).

    python -m benchmarks.triton_resources [--out benchmarks/results/triton-resources.md]

Run with ``TRITON_INTERPRET`` unset. The table says what to look at before a GPU is at hand:
spilled bytes (local memory) and how many blocks fit on an SM.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import torch
from tqdm import tqdm

from benchmarks.common import environment, spec_and_weights
from fastgen.triton_aot import VARIANTS, compile_launch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure(presets=("small", "base"), variants=VARIANTS, dtypes=tuple(DTYPES), batches=(1, 256),
            archs=(80, 90)) -> list[dict]:
    rows = []
    cases = list(itertools.product(presets, variants, dtypes, batches, archs))
    specs = {p: spec_and_weights(p)[0] for p in presets}
    for preset, variant, dt, batch, arch in tqdm(cases, desc="compiling", unit="kernel"):
        r = compile_launch(variant, specs[preset], DTYPES[dt], batch, arch)
        rows.append(dict(preset=preset, variant=variant, dtype=dt, batch=batch, **r.to_dict()))
    return rows


def markdown(rows: list[dict], env: dict) -> str:
    head = (f"Compiled without a GPU by Triton {env.get('triton')} (its bundled ptxas); commit {env['commit']}; "
            f"{env['date']}. Registers and spilled bytes are per thread, shared memory per block; blocks/SM is "
            "what registers and shared memory allow.\n\n"
            "| preset | backend | dtype | batch | arch | warps | registers | spilled B | shared B | blocks/SM |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['preset']} | {r['variant']} | {r['dtype']} | {r['batch']} | sm_{r['arch']} | {r['num_warps']} | "
        f"{r['registers']} | {r['spill_bytes']} | {r['shared_bytes']} | {r['blocks_per_sm']} |\n" for r in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["small", "base"])
    ap.add_argument("--archs", nargs="+", type=int, default=[80, 90])
    ap.add_argument("--out", help="write the markdown table here, and the rows beside it as .json")
    a = ap.parse_args(argv)
    rows = measure(presets=a.presets, archs=a.archs)
    env = environment(torch.device("cpu"))
    md = markdown(rows, env)
    print(md)
    if a.out:
        from edanet.io import atomic_write
        atomic_write(a.out, md)
        atomic_write(os.path.splitext(a.out)[0] + ".json", json.dumps(dict(environment=env, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
