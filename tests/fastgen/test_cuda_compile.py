"""Every CUDA source of the ``cuda`` backend compiles cleanly with nvcc for sm_80 and sm_90.

- ``csrc/cuda/*.cu`` (the kernels and their launcher; torch-free): one nvcc call per file for
  both architectures (``--threads`` compiles them in parallel), with the flags setup.py uses
  (``-O3 -std=c++17 --use_fast_math -lineinfo``) and those torch's CUDAExtension adds (no
  implicit half/bfloat16 conversions), plus ``-Werror all-warnings`` and
  ``-Xptxas -v``; the test also fails on register spills in the kernels (ptxas's report).
- ``csrc/cuda/*.cpp`` (the torch binding): syntax-checked with the host compiler against
  torch's headers and the CUDA toolkit's. A CPU-only torch wheel lacks one generated CUDA
  header (``c10/cuda/impl/cuda_cmake_macros.h``); the test supplies an empty stand-in for it
  and says so in its skip/assert messages. Skipped where torch's headers or a host compiler
  are missing.
- setup.py's ``TORCH_CUDA_ARCH_LIST`` handling (no nvcc needed): entries below sm_80 dropped.

Skipped where ``nvcc`` is not on PATH (the compile tests).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.cuda_resources import nvcc_command

ROOT = Path(__file__).resolve().parents[2]
CUDA_DIR = ROOT / "csrc" / "cuda"
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")


def _cu_sources():
    return sorted(CUDA_DIR.glob("*.cu"))


def _nvcc(src: Path, out_dir: Path):
    cmd = nvcc_command(NVCC, src, out_dir / (src.stem + ".o"))     # setup.py's flags, -Xptxas -v
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return cmd, r


@needs_nvcc
def test_cuda_sources_exist():
    assert _cu_sources(), "no csrc/cuda/*.cu sources"
    for p in CUDA_DIR.glob("*.cu"):
        text = p.read_text()
        assert "torch/" not in text and "ATen/" not in text, f"{p.name} must stay torch-free"


@needs_nvcc
def test_nvcc_compiles_cleanly_for_sm80_and_sm90(tmp_path):
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as ex:
        results = list(ex.map(lambda s: (s, *_nvcc(s, tmp_path)), _cu_sources()))
    for src, cmd, r in results:
        log = r.stdout + r.stderr
        assert r.returncode == 0, f"nvcc failed on {src.name}:\n{' '.join(cmd)}\n{log[-8000:]}"
        assert not re.search(r"\bwarning\b", log, re.IGNORECASE), f"warnings compiling {src.name}:\n{log[-8000:]}"
        # ptxas -v: one "Compiling entry function" per kernel and arch, then its resource use
        entries = re.findall(r"Compiling entry function '(\w+)' for '(sm_\d+)'", log)
        archs = {a for _, a in entries}
        if "kernel" in src.read_text():
            assert {"sm_80", "sm_90"} <= archs, f"no kernels compiled for both archs in {src.name}:\n{log[-4000:]}"
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
        assert all(int(s) == 0 and int(l) == 0 for s, l in spills), f"register spills in {src.name}:\n{log[-8000:]}"
        regs = sorted({int(n) for n in re.findall(r"Used (\d+) registers", log)})
        print(f"{src.name}: {len(entries)} kernel builds, registers per thread {regs}")


def _torch_include_args():
    try:
        from torch.utils.cpp_extension import include_paths
    except ImportError:
        return None
    paths = include_paths()
    if not any((Path(p) / "torch" / "extension.h").exists() for p in paths):
        return None
    return [a for p in paths for a in ("-isystem", p)]


def _cuda_include_dir():
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), str(Path(NVCC).resolve().parents[1])]
    try:  # nvcc may be a wrapper script: ask it where its headers are
        r = subprocess.run([NVCC, "--dryrun", "-E", "-x", "cu", os.devnull], capture_output=True, text=True, timeout=60)
        homes += re.findall(r'TOP=(\S+)', r.stdout + r.stderr)
    except (OSError, subprocess.SubprocessError):
        pass
    homes.append("/usr/local/cuda")
    for h in homes:
        if h and (Path(h.strip('"')) / "include" / "cuda_runtime_api.h").exists():
            return Path(h.strip('"')) / "include"
    return None


@needs_nvcc
def test_binding_syntax_checks_against_torch_and_cuda_headers(tmp_path):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    torch_inc = _torch_include_args()
    if cxx is None or torch_inc is None:
        pytest.skip("no host C++ compiler or no torch headers to check the binding against")
    cuda_inc = _cuda_include_dir()
    if cuda_inc is None:
        pytest.skip("CUDA toolkit headers (cuda_runtime_api.h) not found")
    # A CPU-only torch wheel ships c10/cuda headers but not the generated cuda_cmake_macros.h;
    # an empty stand-in is enough for a syntax check (a CUDA build of torch has the real one).
    stub = tmp_path / "stub"
    macros = stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    have_real = any((Path(p) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists()
                    for p in torch_inc[1::2])
    if not have_real:
        macros.parent.mkdir(parents=True)
        macros.write_text("#pragma once\n")
    py_inc = sysconfig.get_paths()["include"]
    for src in sorted(CUDA_DIR.glob("*.cpp")):
        cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-isystem", str(stub), *torch_inc,
               "-isystem", py_inc, "-isystem", str(cuda_inc), "-I", str(ROOT / "csrc"),
               "-DTORCH_EXTENSION_NAME=_cuda", str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        note = "" if have_real else " (with an empty stand-in for c10/cuda/impl/cuda_cmake_macros.h)"
        assert r.returncode == 0, f"{src.name} does not compile{note}:\n{' '.join(cmd)}\n{r.stderr[-8000:]}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-s"]))


def _setup_function(name):
    """One top-level function of setup.py, without running setup() (which builds)."""
    import ast
    tree = ast.parse((ROOT / "setup.py").read_text())
    keep = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Assign)) and
            (getattr(n, "name", None) == name or any(getattr(t, "id", "").startswith(("_NAMED", "_MIN")) for t in
                                                     getattr(n, "targets", [])))]
    import runpy
    ns = {"os": os, "sys": sys, "runpy": runpy, "__file__": str(ROOT / "setup.py")}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "setup.py", "exec"), ns)
    return ns[name]


@pytest.mark.parametrize("given,want", [
    (None, "8.0;9.0a"),
    ("9.0a", "9.0a"),
    ("5.2 6.0 6.1 7.0 7.5 8.0 8.6 9.0+PTX", "8.0;8.6;9.0+PTX"),   # a CUDA image's list
    ("7.5;8.9;10.0;12.0a", "8.9;10.0;12.0a"),
    ("Turing Ampere Hopper", "Ampere;Hopper"),
    ("7 8", "8"),                                                   # a major version alone
])
def test_setup_keeps_the_architectures_the_kernel_runs_on(monkeypatch, capsys, given, want):
    arch_list = _setup_function("_cuda_arch_list")
    if given is None:
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    else:
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", given)
    assert arch_list() == want
    dropped = capsys.readouterr().err
    assert ("dropped" in dropped) == (given is not None and len(want.split(";")) < len(given.replace(";", " ").split()))


def test_setup_refuses_a_list_without_sm80(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "6.0;7.5")
    with pytest.raises(SystemExit, match="8.0 or newer"):
        _setup_function("_cuda_arch_list")()


def test_ptxas_report_is_parsed_per_entry_and_arch():
    from benchmarks.cuda_resources import parse_ptxas
    log = ("ptxas info    : Compiling entry function '_Z3fooi' for 'sm_80'\n"
           "ptxas info    : Function properties for _Z3fooi\n"
           "    24 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 167 registers, 1024 bytes smem, 400 bytes cmem[0]\n"
           "ptxas info    : Compiling entry function '_Z3fooi' for 'sm_90'\n"
           "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Used 40 registers, 400 bytes cmem[0]\n")
    rows = parse_ptxas(log)
    assert [(r["arch"], r["registers"], r["spill_stores"], r["spill_loads"], r["stack"], r["smem_static"])
            for r in rows] == [("sm_80", 167, 8, 12, 24, 1024), ("sm_90", 40, 0, 0, 0, 0)]
    assert all(r["kernel"] in ("foo(int)", "_Z3fooi") for r in rows)
