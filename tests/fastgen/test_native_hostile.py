"""Hostile sizes never reach the native code's memory: the CPU backend and the CUDA backend's
parameter validation under AddressSanitizer + UndefinedBehaviorSanitizer.

The sizes of a network come from files a user downloads. A harness (HARNESS below, compiled
with g++ together with ``csrc/cpu/wavenet_kernels.cpp``, ``layout.cpp``, ``dispatch.cpp`` and
``step_kernels.cpp`` once per instruction-set path, with the flags of setup.py's portable build
-- the torch-free part of the CPU backend: its size planning, buffers, generation loop and
kernels -- and ``csrc/cuda/fastgen_cuda.h``'s ``fg_prepare``; run once per path this CPU has,
chosen with FASTGEN_CPU_ISA) feeds them extreme values: dilations of 2**59, sizes past the limits, products
that wrap around 64 bits, batches that overflow the ring buffers, values that an int cast
would truncate into plausible ones (2**32 + 5 layers -> 5), and zero-step and zero-sequence
jobs. Every hostile case must be refused with a message, never run; the valid ones (among
them a dilation of 2**20, fastgen's largest) run the real loop, with both thread layouts.
Any out-of-bounds access or signed overflow aborts the sanitized run.

The Python-level refusals that come first (``fastgen.NetworkSpec``, the memory estimate) are
in tests/fastgen/test_spec_limits.py; the extension's own checks are at the end of this file.
"""
from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import types
from pathlib import Path

import pytest
import torch

from conftest import PARITY_SPECS, make_case
from fastgen.packing import folded

ROOT = Path(__file__).resolve().parents[2]

HARNESS = r"""
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/wavenet_kernels.h"
#include "cuda/fastgen_cuda.h"

using namespace fastgen::cpu;

static int failures = 0;

static void refused(const char* name, const std::string& err) {
  if (err.empty()) { std::printf("ACCEPTED %s\n", name); ++failures; }
  else std::printf("REFUSED %s: %s\n", name, err.c_str());
}

// Small valid sizes; each case changes some.
static PackedWeights sizes(std::vector<int64_t> dil) {
  PackedWeights p;
  p.Cin = 1; p.F = 3; p.K = 2; p.Cr = 5; p.Ch = 6; p.Cs = 7; p.Co = 3; p.Q = 11; p.Qc = 12; p.E = 4;
  p.L = (int64_t)dil.size();
  p.dilations = dil;
  return p;
}

static void fill(AlignedBuffer& b, unsigned& seed) {
  for (size_t i = 0; i < b.size(); ++i) {
    seed = seed * 1664525u + 1013904223u;
    b.data()[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.5f;
  }
}

// Packs random weights for p and runs a job of B sequences x n steps (generate, then teacher
// forced) on `threads` threads with the given split; checks what comes out.
static void run(const char* name, PackedWeights p, int64_t B, int64_t n, int threads, int split) {
  const std::string err = plan_layout(p);
  if (!err.empty()) { std::printf("UNEXPECTED-REFUSAL %s: %s\n", name, err.c_str()); ++failures; return; }
  allocate_buffers(p);
  unsigned seed = 1;
  for (AlignedBuffer* b : {&p.in_w, &p.in_b, &p.dil_w, &p.cond_table, &p.skip_w, &p.res_w, &p.res_b, &p.skip_b,
                           &p.head1_w, &p.head1_b, &p.head2_w, &p.head2_b, &p.down_w, &p.down_b})
    fill(*b, seed);
  const int64_t T = n * p.K;
  std::vector<float> frames((size_t)(B * p.Cin * T * p.F) + 1, 0.25f), uniforms((size_t)(B * n) + 1, 0.5f);
  std::vector<int64_t> samples((size_t)(B * n) + 1, -1), classes((size_t)(B * n) + 1, 1);
  std::vector<float> logits((size_t)(B * n * p.Q) + 1, 0.0f);
  Job gen{p, frames.data(), B, n, T};
  gen.uniforms = uniforms.data();
  gen.samples = samples.data();
  gen.start_class = p.Qc - 1;
  run_job(gen, threads, split);
  for (int64_t i = 0; i < B * n; ++i)
    if (samples[i] < 0 || samples[i] >= p.Q) { std::printf("BAD-SAMPLE %s %lld\n", name, (long long)samples[i]); ++failures; }
  if (samples[B * n] != -1) { std::printf("WROTE-PAST-END %s\n", name); ++failures; }
  Job tf{p, frames.data(), B, n, T};
  tf.classes = classes.data();
  tf.logits_out = logits.data();
  tf.start_class = 0;
  run_job(tf, threads, split);
  double sum = 0;
  for (int64_t i = 0; i < B * n * p.Q; ++i) sum += logits[i];
  std::printf("RAN %s: %lld samples, logit sum %.4f\n", name, (long long)(B * n), sum);
}

static void cpu_cases() {
  { PackedWeights p = sizes({int64_t(1) << 59}); refused("cpu-dilation-2^59", plan_layout(p)); }
  { PackedWeights p = sizes({1, 0, 2}); refused("cpu-dilation-0", plan_layout(p)); }
  { PackedWeights p = sizes({1}); p.Cr = -8; refused("cpu-negative-channels", plan_layout(p)); }
  { PackedWeights p = sizes({1}); p.F = int64_t(1) << 40; refused("cpu-features-2^40", plan_layout(p)); }
  { PackedWeights p = sizes({1}); p.L = 2; refused("cpu-dilation-count", plan_layout(p)); }
  { PackedWeights p = sizes(std::vector<int64_t>(70000, 1)); refused("cpu-too-many-layers", plan_layout(p)); }
  // every size within the limits, their product past the kernels' int row math
  { PackedWeights p = sizes({1}); p.K = int64_t(1) << 20; p.F = int64_t(1) << 20; refused("cpu-step-rows", plan_layout(p)); }
  // 16 rings of (2^30 + 1) frames x 2^10 positions x 2^20 channels wrap int64
  {
    PackedWeights p = sizes(std::vector<int64_t>(16, int64_t(1) << 30));
    p.F = 1024; p.Cr = int64_t(1) << 20; p.K = 1; p.Co = 1;
    refused("cpu-ring-overflow", plan_layout(p));
  }
  // a layout that fits, a batch whose rings do not
  {
    PackedWeights p = sizes({int64_t(1) << 30});
    p.F = 1024; p.Cr = 1024;
    const std::string e = plan_layout(p);
    if (!e.empty()) { std::printf("UNEXPECTED-REFUSAL cpu-batch-layout: %s\n", e.c_str()); ++failures; }
    refused("cpu-batch-overflow", check_job(p, int64_t(1) << 14, 1));
    refused("cpu-negative-batch", check_job(p, -1, 1));
    // run_job refuses it too, before it allocates or reads anything
    float dummy = 0.0f;
    Job job{p, &dummy, int64_t(1) << 14, 1, p.K};
    try {
      run_job(job, 1, 0);
      refused("cpu-run-job-overflow", "");
    } catch (const std::length_error& ex) {
      refused("cpu-run-job-overflow", ex.what());
    }
    PackedWeights unplanned = sizes({1});
    Job job2{unplanned, &dummy, 1, 1, unplanned.K};
    try {
      run_job(job2, 1, 0);
      refused("cpu-unplanned-weights", "");
    } catch (const std::length_error& ex) {
      refused("cpu-unplanned-weights", ex.what());
    }
  }
  run("cpu-dilation-2^20", sizes({1, int64_t(1) << 20, 3}), 2, 5, 2, 0);
  run("cpu-split-positions", sizes({1, 2, 4, 8, 1}), 1, 12, 2, 1);
  run("cpu-split-then-alone", sizes({1, 2, 4, 8, 1}), 1, 12, 2, -2);
  run("cpu-zero-steps", sizes({1, 2}), 2, 0, 2, -1);
  run("cpu-zero-sequences", sizes({1, 2}), 0, 3, 2, 1);
}

// -- fg_prepare ------------------------------------------------------------------------------
using namespace fastgen_cuda;

static std::map<std::string, long long> base_ints;
static std::vector<long long> base_dils;

static std::string prepare(const std::map<std::string, long long>& ints, const std::vector<long long>& dils) {
  // Buffers "hold" every element the launch could want: only fg_prepare's arithmetic is tested
  // (nothing is dereferenced), so size checks cannot hide an overflow before them.
  alignas(16) static unsigned char blob[64];
  const int dt = FG_F32;  // the compute dtype comes from the down buffer's
  const int dtypes[FG_B_COUNT] = {FG_U8, dt, FG_F32, dt, FG_F32, FG_I64, FG_I64, FG_F32, dt, FG_F32, FG_I32};
  FgBuf bufs[FG_B_COUNT];
  for (int i = 0; i < FG_B_COUNT; ++i) bufs[i] = FgBuf{blob, LLONG_MAX, dtypes[i]};
  FgLaunchInts a;
  const std::string missing = fg_named_ints(ints, /*per_call=*/true, &a);
  if (!missing.empty()) return missing;
  FgParams p;
  return fg_prepare(a, dils, 1.0, bufs, &p);
}

static void hostile(const char* name, const char* key, long long value) {
  std::map<std::string, long long> ints = base_ints;
  ints[key] = value;
  refused(name, prepare(ints, base_dils));
}

static void cuda_cases() {
  const std::string ok = prepare(base_ints, base_dils);
  if (!ok.empty()) { std::printf("UNEXPECTED-REFUSAL cuda-baseline: %s\n", ok.c_str()); ++failures; }
  else std::printf("ACCEPTED cuda-baseline\n");
  const long long big = LLONG_MAX - 15;  // 2^63 - 16: a multiple of 16, passes the alignment checks
  hostile("cuda-Cin-2^32+1", "Cin", (1LL << 32) + 1);
  hostile("cuda-F-2^31", "F", 1LL << 31);
  hostile("cuda-K-2^40", "K", 1LL << 40);
  hostile("cuda-Cr-negative", "Cr", -16);
  hostile("cuda-Q-int-max", "Q", INT_MAX);
  hostile("cuda-threads-2^32+32", "threads", (1LL << 32) + 32);
  hostile("cuda-steps-2^31", "steps", 1LL << 31);
  hostile("cuda-batch-2^40", "batch", 1LL << 40);
  hostile("cuda-S-2^31+1", "S", (1LL << 31) + 1);
  hostile("cuda-G-negative", "G", -1);
  hostile("cuda-smem-huge", "smem_bytes", LLONG_MAX);
  hostile("cuda-core-resident-negative", "core_resident", -16);
  hostile("cuda-offset-wraps", "off_h1w", big);
  hostile("cuda-layer-stride-wraps", "layer_stride", 1LL << 62);
  hostile("cuda-layer-offset-wraps", "loff_bsr", big);
  // layer 0's biases still inside the blob, the last layer's far past it
  hostile("cuda-layer-offset-past-stride", "loff_bsr", 2 * base_ints["layer_stride"]);
  {  // 2^32 + L layers: an int cast would make it L again
    std::map<std::string, long long> ints = base_ints;
    ints["L"] = (1LL << 32) + (long long)base_dils.size();
    refused("cuda-layers-truncated", prepare(ints, base_dils));
  }
  for (long long d : {1LL << 59, -1LL, (1LL << 24) + 1}) {
    std::vector<long long> dils = base_dils;
    dils.back() = d;
    refused(("cuda-dilation-" + std::to_string(d)).c_str(), prepare(base_ints, dils));
  }
  // the shared memory layout on its own, with sizes no plan would give
  const FgSmemLayout sl = fg_smem_layout(INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, 4,
                                         true, 256, LLONG_MAX, true);
  refused("cuda-smem-layout-overflow", sl.total < 0 ? "total -1" : "");
}

int main(int argc, char** argv) {
  // argv: key=value ... -- dilation ...
  int i = 1;
  for (; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    const char* eq = std::strchr(argv[i], '=');
    base_ints[std::string(argv[i], (size_t)(eq - argv[i]))] = std::atoll(eq + 1);
  }
  for (++i; i < argc; ++i) base_dils.push_back(std::atoll(argv[i]));
  const char* error = "";
  const char* isa = active_isa(&error);
  if (!*isa) { std::printf("ISA-UNAVAILABLE %s\n", error); return 0; }
  std::printf("ISA %s\n", isa);
  cpu_cases();
  cuda_cases();
  std::printf(failures ? "HARNESS-FAILED\n" : "HARNESS-OK\n");
  return failures ? 1 : 0;
}
"""

# What each hostile case must be refused with (the message names the limit or the overflow).
REFUSALS = {
    "cpu-dilation-2^59": "every dilation must lie in [1, 1073741824], got 576460752303423488",
    "cpu-dilation-0": "every dilation must lie in",
    "cpu-negative-channels": "residual_channels must lie in [1, 1048576], got -8",
    "cpu-features-2^40": "num_features must lie in",
    "cpu-dilation-count": "1 dilations for 2 layers",
    "cpu-too-many-layers": "the number of layers must lie in [1, 65536], got 70000",
    "cpu-step-rows": "must stay below 1073741824",
    "cpu-ring-overflow": "history ring buffers of this network overflow",
    "cpu-batch-overflow": "a batch of 16384 sequence(s) x 1 steps overflows",
    "cpu-negative-batch": "batch and steps must be >= 0",
    "cpu-run-job-overflow": "fastgen cpu: a batch of 16384 sequence(s)",
    "cpu-unplanned-weights": "not packed",
    "cuda-Cin-2^32+1": "in_channels must lie in [1, 16384], got 4294967297",
    "cuda-F-2^31": "num_features must lie in",
    "cuda-K-2^40": "frames_per_step must lie in",
    "cuda-Cr-negative": "residual_channels must lie in",
    "cuda-Q-int-max": "num_classes must lie in",
    "cuda-threads-2^32+32": "threads per block must be a multiple of 32",
    "cuda-steps-2^31": "batch and steps must lie in",
    "cuda-batch-2^40": "batch and steps must lie in",
    "cuda-S-2^31+1": "sequences per block must lie in",
    "cuda-G-negative": "sequence groups must lie in",
    "cuda-smem-huge": "shared memory per block must lie in",
    "cuda-core-resident-negative": "core_resident",
    "cuda-offset-wraps": "segment head1_w",
    "cuda-layer-stride-wraps": "segment layers",
    "cuda-layer-offset-wraps": "segment layer0.skip_res_b",
    "cuda-layer-offset-past-stride": "do not fit in it",
    "cuda-layers-truncated": "supports 1..128 layers, the network has 4294967301",
    "cuda-dilation-576460752303423488": "is not supported",
    "cuda-dilation--1": "is not supported",
    "cuda-dilation-16777217": "is not supported",
    "cuda-smem-layout-overflow": "total -1",
}
RUNS = ["cpu-dilation-2^20", "cpu-split-positions", "cpu-split-then-alone", "cpu-zero-steps", "cpu-zero-sequences"]


def _compiler():
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None or "g++" not in Path(cxx).name:
        pytest.skip("needs g++ with its sanitizer runtimes")
    return cxx


def _baseline_launch():
    """The named integers and dilations of one valid cuda-backend launch (the round parity spec)."""
    from fastgen.backends import cuda as cb
    spec = PARITY_SPECS["round"]
    w, *_ = make_case(spec, 1, 2)
    packed = cb.pack_weights(spec, w, torch.float32)
    plan = cb.plan_launch(spec, 1, 100_000, 4, dtype=torch.float32, threads=32)
    return cb.launch_ints(spec, plan, packed.layout, 1, 2, cb.MODE_TEACHER), list(spec.dilations)


def _portable_build():
    """setup.py's flags of a portable build (cpu_build_flags), read without building."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="fastgen_build_flags")["cpu_build_flags"]("portable")


@pytest.fixture(scope="module")
def harness_output(tmp_path_factory):
    """(exit status, output) of the harness run once per instruction-set path this CPU has."""
    cxx = _compiler()
    tmp = tmp_path_factory.mktemp("hostile")
    src = tmp / "harness.cpp"
    src.write_text(HARNESS)
    exe = tmp / "harness"
    flags = ["-std=c++17", "-O1", "-g", "-fopenmp", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Wno-psabi"]
    build = _portable_build()   # its -march and list of paths; -O1 and the sanitizers instead of -O3
    flags += [f for f in build["common"] if f.startswith(("-march=", "-DFASTGEN_"))]
    cpu = ROOT / "csrc" / "cpu"
    units = [(src, []), (cpu / "wavenet_kernels.cpp", []), (cpu / "layout.cpp", []), (cpu / "dispatch.cpp", [])]
    units += [(cpu / "step_kernels.cpp", [*extra, f"-DFASTGEN_ISA={name}"]) for name, extra in build["paths"].items()]
    objects = []
    for i, (source, extra) in enumerate(units):
        objects.append(tmp / f"{i}_{source.stem}.o")
        cmd = [cxx, *flags, *extra, "-I", str(ROOT / "csrc"), "-c", str(source), "-o", str(objects[-1])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-6000:]}"
    cmd = [cxx, *flags, *map(str, objects), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and ("asan" in r.stderr.lower() or "ubsan" in r.stderr.lower()) and "cannot find" in r.stderr:
        pytest.skip(f"the sanitizer runtimes are not installed:\n{r.stderr[-2000:]}")
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-6000:]}"
    ints, dils = _baseline_launch()
    args = [f"{k}={v}" for k, v in ints.items()] + ["--"] + [str(d) for d in dils]
    rc, out = 0, ""
    for name in build["paths"]:
        env = dict(os.environ, OMP_NUM_THREADS="2", ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", FASTGEN_CPU_ISA=name)
        r = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)
        rc, out = max(rc, r.returncode), out + f"== FASTGEN_CPU_ISA={name}\n" + r.stdout + r.stderr
    return rc, out


def test_sanitized_run_is_clean(harness_output):
    rc, out = harness_output
    assert "Sanitizer" not in out and "runtime error" not in out, out[-8000:]
    assert rc == 0 and "HARNESS-FAILED" not in out, out[-8000:]
    # every path ran to the end, but one this CPU lacks (baseline never)
    ran = re.findall(r"^ISA (\w+)$", out, re.M)
    assert "baseline" in ran and out.count("HARNESS-OK") == len(ran), out[-8000:]
    assert len(ran) + out.count("ISA-UNAVAILABLE") == len(_portable_build()["paths"]), out[-8000:]


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_hostile_sizes_are_refused_with_a_message(harness_output, case):
    _, out = harness_output
    line = next((ln for ln in out.splitlines() if re.match(rf"(REFUSED|ACCEPTED) {re.escape(case)}(:|$)", ln)), None)
    assert line is not None, f"{case} did not run:\n{out[-4000:]}"
    assert line.startswith("REFUSED"), line
    assert REFUSALS[case] in line, line


@pytest.mark.parametrize("case", RUNS)
def test_valid_extremes_run(harness_output, case):
    _, out = harness_output
    ran = re.findall(r"^ISA (\w+)$", out, re.M)
    assert ran and len(re.findall(rf"^RAN {re.escape(case)}: ", out, re.M)) == len(ran), out[-4000:]


def test_cuda_baseline_is_accepted(harness_output):
    # the hostile cases above differ from it in one value each
    assert "ACCEPTED cuda-baseline" in harness_output[1]


# -- the built extension ------------------------------------------------------------------------
def _cpu_ext():
    from fastgen.backends import cpu as cpu_backend
    if cpu_backend.unavailable_reason():
        pytest.skip(cpu_backend.unavailable_reason())
    ops = torch.ops.fastgen
    return types.SimpleNamespace(pack=ops.cpu_pack, generate=ops.cpu_generate, teacher_forced=ops.cpu_teacher_forced)


def test_extension_refuses_a_huge_dilation_before_allocating():
    C = _cpu_ext()
    spec = PARITY_SPECS["round"]
    weights, *_ = make_case(spec, 1, 1)
    for bad in (2 ** 59, 2 ** 30 + 1, 0, -3):
        with pytest.raises(RuntimeError, match=rf"every dilation must lie in \[1, 1073741824\], got {bad}"):
            C.pack(folded(weights), [1, 2, 4, 8, bad], spec.flops_per_step())


def test_extension_refuses_a_batch_whose_rings_overflow():
    C = _cpu_ext()
    spec = PARITY_SPECS["round"]
    weights, frames, classes, uniforms = make_case(spec, 1, 2)
    # 671M ring values per sequence
    packed = C.pack(folded(weights), [2 ** 20] * spec.num_layers, spec.flops_per_step())
    B = 2 ** 40                                                   # views: nothing is allocated
    big_frames, big_u, big_c = (frames.expand(B, -1, -1, -1), uniforms.expand(B, -1), classes.expand(B, -1))
    with pytest.raises(RuntimeError, match=r"a batch of 1099511627776 sequence\(s\) x 2 steps overflows"):
        C.generate(packed, big_frames, big_u, 1.0, spec.start_class)
    with pytest.raises(RuntimeError, match="overflows"):
        C.teacher_forced(packed, big_frames, big_c, spec.start_class)


def test_extension_runs_zero_steps():
    C = _cpu_ext()
    spec = PARITY_SPECS["odd"]
    weights, frames, classes, uniforms = make_case(spec, 2, 0)
    packed = C.pack(folded(weights), list(spec.dilations), spec.flops_per_step())
    assert tuple(C.generate(packed, frames, uniforms, 1.0, spec.start_class).shape) == (2, 0)
    assert tuple(C.teacher_forced(packed, frames, classes, spec.start_class).shape) == (2, 0, spec.num_classes)
