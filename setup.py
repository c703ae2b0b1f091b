"""Builds fastgen's native extensions with torch's cpp_extension (pybind11 + ninja).

- ``fastgen._C``: the fused C++ CPU backend, and the schemas of the CUDA backend's ops; always built.
- ``fastgen._cuda``: the CUDA backend, built when torch has CUDA and nvcc is found.
  ``FASTGEN_BUILD_CUDA=auto|0|1`` overrides (1 fails loudly if it cannot be built);
  ``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures (default "8.0;9.0a"; entries below 8.0,
  which CUDA images often export, are dropped with a message: the kernel needs sm_80).
- The CPU code is portable by default (a wheel runs on any CPU of its architecture): x86-64-v2
  (SSE4.2) on x86-64, armv8-a on aarch64, the compiler's default elsewhere. The hot kernels
  (csrc/cpu/step_kernels.cpp) are compiled once more per wider instruction-set path (x86-64:
  avx2, with -mavx2 -mfma), and the extension picks the best one the running CPU has when
  it loads (csrc/cpu/isa.h; ``FASTGEN_CPU_ISA=baseline|avx2`` forces one, for tests).
  ``FASTGEN_CPU_ARCH=native`` compiles everything with ``-march=native`` instead, one path, for
  the machine that builds it only (any other value is passed to ``-march`` the same way).
  ``cpu_build_flags()`` below says which flags a build uses.

What was built and how is compiled into each module (``fastgen.build_info()`` reports it).
Install with ``pip install --no-build-isolation -e .`` so the build uses the torch you have.
"""
import glob
import json
import os
import platform
import re
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


# The one source compiled once per instruction-set path (csrc/cpu/isa.h).
KERNEL_SOURCE = "csrc/cpu/step_kernels.cpp"
# The wider paths on x86-64, best last, each with the flags it adds to the portable ones. The
# runtime checks of csrc/cpu/dispatch.cpp (can_run) match these flags.
X86_PATHS = {"avx2": ["-mavx2", "-mfma"]}


def cpu_build_flags(arch: str | None = None, machine: str | None = None) -> dict:
    """The compile flags of fastgen._C for ``FASTGEN_CPU_ARCH`` = ``arch`` (default: the
    environment's) on ``machine`` (default: this one's, ``platform.machine()``): ``arch`` (what
    was asked: "portable" or the -march value), ``common`` (every source), ``paths`` (path name
    -> the flags ``KERNEL_SOURCE`` adds for it, best last; the first is the baseline)."""
    arch = (os.environ.get("FASTGEN_CPU_ARCH", "") if arch is None else arch).strip() or "portable"
    machine = (platform.machine() if machine is None else machine).lower()
    # (-Wno-psabi: the baseline kernels pass 8-float vectors between their internal functions)
    common = ["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"]
    if arch != "portable":   # one path, everything for -march=arch (native: this machine)
        name = re.sub(r"\W", "_", arch)
        return {"arch": arch, "common": common + [f"-march={arch}", f"-DFASTGEN_CPU_PATHS=FASTGEN_PATH({name})"],
                "paths": {name: []}}
    paths = {"baseline": []}
    if machine in ("x86_64", "amd64"):
        common.append("-march=x86-64-v2")
        paths.update(X86_PATHS)
    elif machine in ("aarch64", "arm64"):
        common.append("-march=armv8-a")
    common.append("-DFASTGEN_CPU_PATHS=" + "".join(f"FASTGEN_PATH({p})" for p in paths))
    return {"arch": arch, "common": common, "paths": paths}


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """torch's BuildExtension, and for an extension with ``isa_paths`` (name -> flags) its
    ``isa_source`` compiled once per path (-DFASTGEN_ISA=name, in a folder of its own) and linked in."""

    def build_extension(self, ext):
        paths = getattr(ext, "isa_paths", None)
        if paths:
            objects = []
            for name, flags in paths.items():
                objects += self.compiler.compile(
                    [ext.isa_source], output_dir=os.path.join(self.build_temp, f"isa_{name}"),
                    include_dirs=ext.include_dirs, extra_postargs={"cxx": [*flags, f"-DFASTGEN_ISA={name}"]})
            ext.extra_objects = [o for o in ext.extra_objects if o not in objects] + objects
        super().build_extension(ext)


def cpu_extension(arch: str | None = None) -> CppExtension:
    """fastgen._C as the build compiles it (flags: ``cpu_build_flags(arch)``)."""
    cpu = cpu_build_flags(arch)
    recorded = [f for f in cpu["common"] if not f.startswith("-DFASTGEN_CPU_PATHS=")]
    info = _info(module="fastgen._C", cpu_arch=cpu["arch"], cxx_flags=" ".join(recorded), isa_paths=list(cpu["paths"]),
                 isa_flags={p: " ".join(f) for p, f in cpu["paths"].items()})
    # _C also declares the cuda backend's ops (csrc/cuda/schema/): every build has their schemas,
    # so tracing and the CPU tests see them; _cuda registers their CUDA kernels.
    ext = CppExtension(
        "fastgen._C", sorted(set(glob.glob("csrc/cpu/*.cpp")) - {KERNEL_SOURCE}) + ["csrc/cuda/schema/ops.cpp"],
        include_dirs=[os.path.join(ROOT, "csrc")], depends=sorted(glob.glob("csrc/cpu/*.h")) + [KERNEL_SOURCE],
        extra_compile_args={"cxx": cpu["common"] + [info]}, extra_link_args=["-fopenmp"])
    ext.isa_source = KERNEL_SOURCE
    ext.isa_paths = {p: cpu["common"] + f for p, f in cpu["paths"].items()}
    return ext


def extensions() -> list:
    ext_modules = [cpu_extension()]
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
    return ext_modules


if __name__ == "__main__":   # (tests/fastgen/test_build.py reads cpu_build_flags and cpu_extension: no build)
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
