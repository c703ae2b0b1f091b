// fastgen fused CPU backend: the instruction-set paths of the hot kernels and their runtime dispatch.
//
// Everything whose speed depends on the vector instructions -- a step's input conv, layers and
// head, and the output conv (microkernels.h) -- is in step_kernels.cpp, which the build compiles
// once per path (setup.py, cpu_build_flags): "baseline" with the extension's own portable flags
// (x86-64-v2 on x86-64), "avx2" adding -mavx2 -mfma, and a single path named after -march in a
// FASTGEN_CPU_ARCH build (e.g. "native"). Each compilation defines fastgen::cpu::isa_<path>::kernels.
// The rest of the extension (the loop and its threads in wavenet_kernels.cpp, the sampling,
// packing, the ops) is compiled once, with the portable flags.
//
// At the first use (dispatch.cpp) the best path the running CPU supports is picked, or the one
// FASTGEN_CPU_ISA names (for tests; one this CPU cannot run is refused, never run).
//
// The interface below is plain data and function pointers: a path's translation unit uses no
// standard-library template, so no out-of-line copy compiled for wider instructions can be
// merged by the linker into code the other paths share (tests/fastgen/test_build.py checks the
// symbols of each path's object).
#pragma once

#include <cstdint>

#pragma GCC visibility push(hidden)

namespace fastgen {
namespace cpu {

// A packed network as the kernels read it (pointers into PackedWeights' buffers; the padded
// sizes; per layer its dilation and its ring's offset and capacity).
struct KernelWeights {
  int64_t Cin = 0, F = 0, K = 0, Crp = 0, Chp = 0, Csp = 0, Cop = 0, Qp = 0, Qc = 0, L = 0;
  const int64_t* dilations = nullptr;
  const int64_t* ring_off = nullptr;
  const int64_t* ring_cap = nullptr;
  const float *in_w = nullptr, *in_b = nullptr, *dil_w = nullptr, *cond_table = nullptr, *skip_w = nullptr,
              *res_w = nullptr, *res_b = nullptr, *skip_b = nullptr, *head1_w = nullptr, *head1_b = nullptr,
              *head2_w = nullptr, *head2_b = nullptr, *down_w = nullptr, *down_b = nullptr;
};

// One thread's row pointers for a step of one sequence on nf positions (rows = K * nf; row
// r = k * nf + (f - f0)): the dilated conv's taps and the next layer's input (set by the kernel),
// and the scratch rows of the gate output z, the skip sum s, the head's hidden and output h
// (set by the caller; *r read, *w written, same rows).
struct StepRows {
  const float** past;
  const float** cur;
  float** nxt;
  const float* const* zr;
  float* const* zw;
  const float* const* sr;
  float* const* sw;
  const float* const* h1r;
  float* const* h1w;
  float* const* hw;
};

struct Kernels {
  // Every layer and (unless force) the head for one step of one sequence on positions [f0, f1):
  // frames (Cin, T, F) of the sequence, j the step within them, tabs the step's absolute first
  // frame index (ring slots), cls the class that conditions it, ring the sequence's rings.
  // A forced step stops once the last layer's input is in its ring.
  void (*step)(const KernelWeights& w, const float* frames, int64_t T, int64_t j, int64_t tabs, int64_t cls,
               float* ring, int64_t f0, int64_t f1, bool force, const StepRows& rows);
  // The output conv for nseq sequences on npos positions (pos[r]: the packed input position of
  // row r): out[i][q] = (bias ? down_b[q] : 0) + sum_r,c H[i][r * Cop + c] * down_w[pos[r], c, q]
  // for q < Qp.
  void (*output_conv)(const KernelWeights& w, int64_t nseq, int npos, const int* pos, const float* const* H,
                      float* const* out, bool bias);
};

// The kernels of the path the running CPU uses (picked once, at the first call).
const Kernels& kernels();

// The path kernels() uses ("" and why not in *error when FASTGEN_CPU_ISA names a path that is
// not compiled in or that this CPU cannot run).
const char* active_isa(const char** error = nullptr);

// The paths compiled in, best last, comma-separated (e.g. "baseline,avx2").
const char* compiled_isas();

}  // namespace cpu
}  // namespace fastgen

#pragma GCC visibility pop
