"""What the Triton kernels would use on an NVIDIA GPU, found by compiling them here (no GPU
needed; ``benchmarks/triton_aot.py``): registers, spills and shared memory of every launch the
``triton`` and ``triton_persistent`` backends make for the ``small`` and ``base`` presets, per
dtype, batch size and architecture (sm_80, sm_90). Batch sizes: 1, 256 and 4096; the
sequences per program follow the architecture's SM count (``triton_aot.SM_COUNT``): one at
batch 1 and, on sm_90's 132 SMs, at 256 (two on sm_80's 108), 16 at 4096 in bf16/fp16.

    python -m benchmarks.triton_resources [--out benchmarks/results/triton-resources.md]
    python -m benchmarks.triton_resources --cases-json < cases.json   # JSON rows, one per line

Run with ``TRITON_INTERPRET`` unset. The table says what to look at before a GPU is at hand:
spilled bytes (local memory) and how many blocks fit on an SM. A case is a dict with
``preset`` (a name) or ``spec`` (``NetworkSpec.to_dict()``), ``variant``, ``dtype`` (a key of
``DTYPES``), ``batch``, ``arch`` and optionally ``teacher`` or ``force``; tests/fastgen/test_triton_compile.py
passes its own cases that way.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm import tqdm

from benchmarks.engines.common import environment, spec_and_weights
from fastgen import NetworkSpec
from benchmarks.triton_aot import VARIANTS, compile_launch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _compile(case: dict) -> dict:
    spec = spec_and_weights(case["preset"])[0] if "preset" in case else NetworkSpec.from_dict(case["spec"])
    r = compile_launch(case["variant"], spec, DTYPES[case["dtype"]], case["batch"], case["arch"],
                       teacher=case.get("teacher", False), force=case.get("force", False))
    return dict({k: v for k, v in case.items() if k != "spec"}, **r.to_dict())


def compile_cases(cases: list[dict], workers: int | None = None, progress: bool = True) -> list[dict]:
    """One row per case (the case's fields and ``KernelResources.to_dict()``), in order; the
    compiles are single-threaded, so they run in ``workers`` processes (default: a process per
    core, at most 8)."""
    workers = workers or max(1, min(8, len(os.sched_getaffinity(0))))
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(_compile, cases), total=len(cases), desc="compiling", unit="kernel",
                         disable=not progress))


def measure(presets=("small", "base"), variants=VARIANTS, dtypes=tuple(DTYPES), batches=(1, 256, 4096),
            archs=(80, 90)) -> list[dict]:
    return compile_cases([dict(preset=p, variant=v, dtype=d, batch=b, arch=a)
                          for p, v, d, b, a in itertools.product(presets, variants, dtypes, batches, archs)])


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
    ap.add_argument("--cases-json", action="store_true",
                    help="compile the cases read from stdin (a JSON list) and print one JSON row per line")
    a = ap.parse_args(argv)
    if a.cases_json:
        for row in compile_cases(json.load(sys.stdin), progress=False):
            print(json.dumps(row))
        return 0
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
