"""Builds fastgen's native extensions with torch's cpp_extension (pybind11 + ninja).

- ``fastgen._C``: the fused C++ CPU backend, and the schemas of the CUDA backend's ops; always built.
- ``fastgen._cuda``: the CUDA backend, built when torch has CUDA and nvcc is found.
  ``FASTGEN_BUILD_CUDA=auto|0|1`` overrides (1 fails loudly if it cannot be built);
  ``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures (default "8.0;9.0a"; entries below 8.0,
  which CUDA images often export, are dropped with a message: the kernel needs sm_80).
- ``FASTGEN_CPU_ARCH`` sets ``-march`` for the CPU code (default ``native``: the extension is
  compiled on the machine that runs it; set e.g. ``x86-64-v3`` to build a portable wheel).

What was built and how is compiled into each module (``fastgen.build_info()`` reports it).
Install with ``pip install --no-build-isolation -e .`` so the build uses the torch you have.
"""
import glob
import json
import os
import platform
import runpy
import shutil
import sys

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME
except ImportError:  # pragma: no cover - explained to the user
    sys.exit("fastgen's build needs torch installed first (pip install torch), then\n"
             "  pip install --no-build-isolation -e .")

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_wanted() -> bool:
    mode = os.environ.get("FASTGEN_BUILD_CUDA", "auto").lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"FASTGEN_BUILD_CUDA must be auto, 0 or 1, got {mode!r}")
    have_nvcc = CUDA_HOME is not None and shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc")) is not None
    have = torch.version.cuda is not None and have_nvcc
    if mode == "1" and not have:
        sys.exit("FASTGEN_BUILD_CUDA=1 but torch has no CUDA (torch.version.cuda is None) or nvcc was "
                 "not found (set CUDA_HOME)")
    return have if mode == "auto" else mode == "1"


# The compute capability the CUDA kernel needs, from fastgen/devices.py (the one place it is
# written), read without importing fastgen; and torch's names for the architectures that have it.
_MIN_CAPABILITY = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastgen",
                                              "devices.py"))["MIN_CAPABILITY"]
_NAMED_SM80_PLUS = {"ampere", "ampere+tegra", "ada", "hopper"}


def _cuda_arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST for the CUDA extension: "8.0;9.0a" unless set; of a given list, the
    entries of compute capability ``_MIN_CAPABILITY`` (8.0) and newer (the kernel uses bf16
    mma.sync and ld.acquire)."""
    need = ".".join(map(str, _MIN_CAPABILITY))
    given = os.environ.get("TORCH_CUDA_ARCH_LIST", "").replace(";", " ").split()
    if not given:
        return "8.0;9.0a"
    keep, drop = [], []
    for arch in given:
        version = arch.split("+")[0].rstrip("af")          # "9.0a", "8.6+PTX" -> "9.0", "8.6"
        numeric = version.replace(".", "", 1).isdigit()
        major_minor = tuple(int(x) for x in (version + ".0").split(".")[:2]) if numeric else None
        new_enough = major_minor >= tuple(_MIN_CAPABILITY) if numeric else arch.lower() in _NAMED_SM80_PLUS
        (keep if new_enough else drop).append(arch)
    if not keep:
        sys.exit(f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']!r} has no architecture of compute "
                 f"capability {need} or newer, which fastgen's CUDA kernel needs; set e.g. "
                 "TORCH_CUDA_ARCH_LIST=9.0a (H100) or 8.0 (A100), or FASTGEN_BUILD_CUDA=0 to build without CUDA")
    if drop:
        print(f"fastgen: building the CUDA kernel for {';'.join(keep)} only; {' '.join(drop)} "
              f"(not compute capability {need} or newer) dropped from TORCH_CUDA_ARCH_LIST", file=sys.stderr)
    return ";".join(keep)


def _info(**extra) -> str:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "compiler": os.environ.get("CXX", "c++"), **extra}
    # A C string literal holding JSON, passed as a macro.
    return '-DFASTGEN_BUILD_INFO="' + json.dumps(info, sort_keys=True).replace('"', '\\"') + '"'


march = os.environ.get("FASTGEN_CPU_ARCH", "native")
cpu_flags = ["-O3", "-std=c++17", f"-march={march}", "-fopenmp", "-ffp-contract=fast"]
cpu_flags.append(_info(module="fastgen._C", cxx_flags=" ".join(cpu_flags)))
# _C also declares the cuda backend's ops (csrc/cuda/schema/): every build has their schemas, so
# tracing and the CPU tests see them; _cuda registers their CUDA kernels.
ext_modules = [CppExtension(
    "fastgen._C", sorted(glob.glob("csrc/cpu/*.cpp")) + ["csrc/cuda/schema/ops.cpp"],
    include_dirs=[os.path.join(ROOT, "csrc")],
    extra_compile_args={"cxx": cpu_flags}, extra_link_args=["-fopenmp"])]

if _cuda_wanted():
    os.environ["TORCH_CUDA_ARCH_LIST"] = _cuda_arch_list()
    nvcc_flags = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo"]
    ext_modules.append(CUDAExtension(
        "fastgen._cuda", sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu")),
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": ["-O3", "-std=c++17", _info(module="fastgen._cuda", cuda=torch.version.cuda,
                                                               arch=os.environ["TORCH_CUDA_ARCH_LIST"],
                                                               nvcc_flags=" ".join(nvcc_flags))],
                            "nvcc": nvcc_flags}))

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
