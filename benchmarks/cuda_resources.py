"""Registers, spills and static shared memory of every CUDA kernel build, from ptxas's report:
compile-time facts (no GPU needed), to compare a kernel change before and after.

    python -m benchmarks.cuda_resources --out benchmarks/results/cuda-resources-DATE.md

compiles ``csrc/cuda/*.cu`` with setup.py's nvcc flags and those torch's CUDAExtension adds,
for sm_80 and sm_90, with ``-Xptxas -v``, and writes one row per kernel instantiation and
architecture (``.md`` and ``.json``). tests/fastgen/test_cuda_compile.py compiles with the same flags.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
ARCHS = ("-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90")
SETUP_FLAGS = ("-O3", "-std=c++17", "--use_fast_math", "-lineinfo")   # setup.py's nvcc flags
# what torch's CUDAExtension adds to every nvcc call (no implicit half/bf16 conversions)
TORCH_FLAGS = ("-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
               "-D__CUDA_NO_HALF2_OPERATORS__", "--expt-relaxed-constexpr")


def nvcc_command(nvcc: str, src: Path, out: Path) -> list[str]:
    """The compile of one ``csrc/cuda/*.cu`` (``src``; its includes resolve beside it)."""
    return [nvcc, *SETUP_FLAGS, *TORCH_FLAGS, *ARCHS, "--threads", "2", "-Werror", "all-warnings", "-Xptxas", "-v",
            "-I", str(src.parent.parent), "-c", str(src), "-o", str(out)]


def _demangle(names: list[str]) -> list[str]:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if tool is None:
        return names
    r = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    out = r.stdout.splitlines()
    return out if r.returncode == 0 and len(out) == len(names) else names


def parse_ptxas(log: str) -> list[dict]:
    """One dict per "Compiling entry function" block of a ``ptxas -v`` log."""
    rows = []
    blocks = re.split(r"ptxas info\s*: Compiling entry function '(\w+)' for '(sm_\d+)'", log)
    for i in range(1, len(blocks) - 2, 3):
        name, arch, body = blocks[i], blocks[i + 1], blocks[i + 2]
        row = {"kernel": name, "arch": arch}
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", body)
        if m:
            row.update(stack=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
        m = re.search(r"Used (\d+) registers", body)
        row["registers"] = int(m[1]) if m else None
        m = re.search(r"(\d+) bytes smem", body)
        row["smem_static"] = int(m[1]) if m else 0
        rows.append(row)
    for row, pretty in zip(rows, _demangle([r["kernel"] for r in rows])):
        row["kernel"] = pretty
    return rows


def measure(nvcc: str, cuda_dir: Path = CUDA_DIR) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(Path(cuda_dir).glob("*.cu")):
            r = subprocess.run(nvcc_command(nvcc, src, Path(tmp) / (src.stem + ".o")), capture_output=True, text=True,
                               timeout=1800)
            if r.returncode != 0:
                raise SystemExit(f"nvcc failed on {src.name}:\n{(r.stdout + r.stderr)[-4000:]}")
            rows += [dict(row, source=src.name) for row in parse_ptxas(r.stdout + r.stderr)]
    return rows


def to_markdown(rows: list[dict], label: str) -> str:
    lines = [f"# CUDA kernel resources ({label})", "",
             "ptxas -v for every kernel instantiation (setup.py's nvcc flags); registers per thread, spills and "
             "stack in bytes per thread, static shared memory in bytes per block (the kernel's dynamic shared "
             "memory is planned at launch: benchmarks/cuda_plans.py).", "",
             "| kernel | arch | registers | spill stores | spill loads | stack | static smem |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['kernel']}` | {r['arch']} | {r['registers']} | {r.get('spill_stores', '')} | "
                     f"{r.get('spill_loads', '')} | {r.get('stack', '')} | {r['smem_static']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="FILE.md (FILE.json beside it)")
    ap.add_argument("--label", default="", help="what this build is, e.g. a commit")
    ap.add_argument("--commit", help="measure csrc/cuda as it was at this commit (git archive), not the tree")
    a = ap.parse_args(argv)
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SystemExit("nvcc not found on PATH")
    if a.commit:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.commit, "csrc"], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            rows = measure(nvcc, Path(tmp) / "csrc" / "cuda")
    else:
        rows = measure(nvcc)
    out = Path(a.out)
    out.write_text(to_markdown(rows, a.label or "this tree"))
    out.with_suffix(".json").write_text(json.dumps({"label": a.label, "rows": rows}, indent=1))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
