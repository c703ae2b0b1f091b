"""How fastgen._C is built: portable by default (a wheel built on one machine runs on any CPU of
its architecture), the hot kernels once more per wider instruction-set path with the best one
picked at load, ``FASTGEN_CPU_ARCH=native`` the opt-in for local builds; and what
``fastgen.build_info()`` says of it. The flags are read from setup.py (``cpu_build_flags``,
``cpu_extension``) without building; .ci/run builds a wheel and uses it from a fresh venv."""
from __future__ import annotations

import json
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastgen
from fastgen.backends import cpu as cpu_backend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup_py():
    """setup.py's functions (its setup() call runs only as __main__)."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="fastgen_build_flags")


def _all_flags(ext) -> list[str]:
    return list(ext.extra_compile_args["cxx"]) + [f for flags in ext.isa_paths.values() for f in flags]


def _march(flags) -> set[str]:
    return {f for f in flags if f.startswith("-march=")}


@pytest.mark.parametrize("machine", ["x86_64", "AMD64", "aarch64", "ppc64le"])
def test_portable_flags(setup_py, machine):
    b = setup_py["cpu_build_flags"]("portable", machine)
    assert b["arch"] == "portable"
    flags = b["common"] + [f for extra in b["paths"].values() for f in extra]
    assert not any("native" in f for f in flags), flags
    assert list(b["paths"])[0] == "baseline" and b["paths"]["baseline"] == []
    if machine.lower() in ("x86_64", "amd64"):
        assert _march(b["common"]) == {"-march=x86-64-v2"}
        assert b["paths"] == {"baseline": [], "avx2": ["-mavx2", "-mfma"]}   # dispatch.cpp's can_run checks these
    elif machine == "aarch64":
        assert _march(b["common"]) == {"-march=armv8-a"} and list(b["paths"]) == ["baseline"]
    else:
        assert not _march(b["common"]) and list(b["paths"]) == ["baseline"]   # the compiler's default
    # dispatch.cpp learns the list of paths, best last, from the common flags
    assert f"-DFASTGEN_CPU_PATHS={''.join(f'FASTGEN_PATH({p})' for p in b['paths'])}" in b["common"]


@pytest.mark.parametrize("value", [None, "", "portable"])
def test_default_build_is_portable(setup_py, monkeypatch, value):
    # what `pip install .` / `pip wheel .` compile without FASTGEN_CPU_ARCH: no -march=native anywhere
    if value is None:
        monkeypatch.delenv("FASTGEN_CPU_ARCH", raising=False)
    else:
        monkeypatch.setenv("FASTGEN_CPU_ARCH", value)
    monkeypatch.chdir(ROOT)   # setup.py globs csrc/ relative to the project, as pip runs it
    ext = setup_py["cpu_extension"]()
    assert not any("native" in f for f in _all_flags(ext)), _all_flags(ext)
    assert ext.isa_source == "csrc/cpu/step_kernels.cpp" and ext.isa_source not in ext.sources
    base = ext.extra_compile_args["cxx"]
    for name, flags in ext.isa_paths.items():   # a path's flags: the common ones plus its own
        assert flags[:len(base) - 1] == base[:-1], name          # (the last common flag is the build record)
        if platform.machine().lower() in ("x86_64", "amd64"):
            assert flags[len(base) - 1:] == {"baseline": [], "avx2": ["-mavx2", "-mfma"]}[name]
    info = json.loads(re.search(r'-DFASTGEN_BUILD_INFO="(.*)"$', base[-1]).group(1).replace('\\"', '"'))
    assert info["cpu_arch"] == "portable" and info["isa_paths"] == list(ext.isa_paths)
    assert "native" not in info["cxx_flags"]


@pytest.mark.parametrize("value", ["native", "x86-64-v3"])
def test_cpu_arch_opt_in(setup_py, monkeypatch, value):
    # FASTGEN_CPU_ARCH=native (or any -march): everything for that -march, one path of kernels
    monkeypatch.setenv("FASTGEN_CPU_ARCH", value)
    monkeypatch.chdir(ROOT)
    ext = setup_py["cpu_extension"]()
    name = re.sub(r"\W", "_", value)
    assert list(ext.isa_paths) == [name]
    for flags in [ext.extra_compile_args["cxx"], *ext.isa_paths.values()]:
        assert _march(flags) == {f"-march={value}"}, flags
    assert f"-DFASTGEN_CPU_PATHS=FASTGEN_PATH({name})" in ext.extra_compile_args["cxx"]


# -- the installed extension --------------------------------------------------------------------
needs_ext = pytest.mark.skipif(cpu_backend.unavailable_reason() is not None,
                               reason=f"cpu backend not built: {cpu_backend.unavailable_reason()}")


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split("\nflags", 1)[1].split("\n", 1)[0].split())
    except (OSError, IndexError):
        return set()


@needs_ext
def test_build_info_says_which_paths_and_which_runs():
    info = fastgen.build_info()["cpu"]
    paths = info["isa_paths"]
    assert paths == cpu_backend._C.cpu_isa_paths().split(",") and set(info["isa_flags"]) == set(paths)
    assert info["isa"] == cpu_backend._C.cpu_isa() and info["isa"] in paths
    if info["cpu_arch"] == "portable":
        assert "native" not in info["cxx_flags"] and paths[0] == "baseline"
    if os.environ.get("FASTGEN_CPU_ISA"):
        assert info["isa"] == os.environ["FASTGEN_CPU_ISA"]
    elif "avx2" in paths and {"avx2", "fma"} <= _cpu_flags():
        assert info["isa"] == "avx2"   # the best this CPU has
    elif "avx2" in paths and _cpu_flags():
        assert info["isa"] == "baseline"


def _import_with(isa: str):   # (the same cwd and environment: the same fastgen as this process)
    code = "import json, fastgen, fastgen._C as c; print(c.cpu_isa(), json.dumps(fastgen.build_info()['cpu']))"
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FASTGEN_CPU_ISA=isa),
                          capture_output=True, text=True)


@needs_ext
def test_forcing_a_path():
    first = cpu_backend._C.cpu_isa_paths().split(",")[0]   # baseline, which any CPU runs
    r = _import_with(first)
    assert r.returncode == 0, r.stderr[-3000:]
    isa, info = r.stdout.split(" ", 1)
    assert isa == first and json.loads(info)["isa"] == first
    r = _import_with("sse1")   # refused at import, with the paths there are
    assert r.returncode != 0 and "FASTGEN_CPU_ISA=sse1 is not one of the paths this build has" in r.stderr, r.stderr
    if not os.environ.get("FASTGEN_CPU_ISA"):
        r = _import_with("auto")
        assert r.returncode == 0 and r.stdout.split(" ", 1)[0] == cpu_backend._C.cpu_isa(), r.stderr[-3000:]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 paths")
def test_path_objects_define_only_their_kernel_table(setup_py, tmp_path):
    # A path's translation unit must not define anything the linker could merge with the other
    # paths' code (an inline or template function compiled with AVX2, picked for every caller,
    # would crash a CPU without it): its one global symbol is its table of kernels.
    cxx, nm = shutil.which(os.environ.get("CXX", "c++")), shutil.which("nm")
    if cxx is None or nm is None:
        pytest.skip("needs a C++ compiler and nm")
    b = setup_py["cpu_build_flags"]("portable", "x86_64")
    for name, extra in b["paths"].items():
        obj = tmp_path / f"{name}.o"
        cmd = [cxx, *b["common"], *extra, f"-DFASTGEN_ISA={name}", "-fPIC", "-I", str(ROOT / "csrc"), "-c",
               str(ROOT / "csrc" / "cpu" / "step_kernels.cpp"), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-4000:]}"
        syms = subprocess.run([nm, "-C", "--defined-only", "-g", str(obj)], capture_output=True, text=True,
                              check=True).stdout.split("\n")
        assert [ln.split(" ", 2)[2] for ln in syms if ln.strip()] == [f"fastgen::cpu::isa_{name}::kernels"], syms
