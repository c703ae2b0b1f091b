// fastgen fused CPU backend: the instruction-set sensitive part of a step -- input conv, layers,
// head and output conv on the microkernels -- compiled once per path (isa.h) with
// -DFASTGEN_ISA=<path> and that path's flags (setup.py, cpu_build_flags). Defines
// fastgen::cpu::isa_<path>::kernels; nothing else here has external linkage.
#include "cpu/isa.h"
#include "cpu/microkernels.h"

#ifndef FASTGEN_ISA
#error "compile step_kernels.cpp with -DFASTGEN_ISA=<path> (see setup.py)"
#endif

namespace fastgen {
namespace cpu {
namespace {

void step(const KernelWeights& p, const float* fr, int64_t T, int64_t j, int64_t tabs, int64_t cls, float* ring,
          int64_t f0, int64_t f1, bool force, const StepRows& s) {
  const int64_t nf = f1 - f0, Pt = p.K * nf, F = p.F, Crp = p.Crp, K = p.K;
  const int rows = (int)Pt;

  // Input conv of the K new frames into layer 0's ring.
  {
    float* r0 = ring + p.ring_off[0];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = j * K + k, slot = (tabs + k) % p.ring_cap[0];
      for (int64_t f = f0; f < f1; ++f) {
        float* dst = r0 + (slot * F + f) * Crp;
        for (int64_t c = 0; c < Crp; c += VW) {
          vf acc = vload(p.in_b + c);
          for (int64_t ci = 0; ci < p.Cin; ++ci) acc += vset(fr[(ci * T + t) * F + f]) * vload(p.in_w + ci * Crp + c);
          vstore(dst + c, acc);
        }
      }
    }
  }

  const int64_t dil_stride = 2 * Crp * 2 * p.Chp, skip_stride = p.Chp * p.Csp, res_stride = p.Chp * Crp;
  for (int64_t l = 0; l < (force ? p.L - 1 : p.L); ++l) {
    const int64_t d = p.dilations[l], cap = p.ring_cap[l];
    const bool last = l + 1 == p.L;
    float* rl = ring + p.ring_off[l];
    float* rn = last ? nullptr : ring + p.ring_off[l + 1];
    const int64_t capn = last ? 1 : p.ring_cap[l + 1];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = tabs + k;
      // Frames before 0 map to slots not written yet, which hold zeros.
      const int64_t sc = t % cap, sp = ((t - d) % cap + cap) % cap, sn = last ? 0 : t % capn;
      for (int64_t fi = 0; fi < nf; ++fi) {
        const int64_t r = k * nf + fi, f = f0 + fi;
        s.cur[r] = rl + (sc * F + f) * Crp;
        s.past[r] = rl + (sp * F + f) * Crp;
        s.nxt[r] = last ? nullptr : rn + (sn * F + f) * Crp;
      }
    }
    // a = W0 x[t-d] + W1 x[t] + cond row; z = tanh * sigmoid
    gemm<kGate>(rows, (int)Crp, s.past, (int)Crp, s.cur, p.dil_w + l * dil_stride, (int)(2 * p.Chp),
                p.cond_table + (l * p.Qc + cls) * 2 * p.Chp, nullptr, s.zw);
    // skip += Ws z (+ all skip biases at layer 0); relu after the last layer
    const float* sbias = l == 0 ? p.skip_b : nullptr;
    const float* const* sinit = l == 0 ? nullptr : s.sr;
    if (last)
      gemm<kRelu>(rows, (int)p.Chp, s.zr, 0, nullptr, p.skip_w + l * skip_stride, (int)p.Csp, sbias, sinit, s.sw);
    else if (!force)
      gemm<kStore>(rows, (int)p.Chp, s.zr, 0, nullptr, p.skip_w + l * skip_stride, (int)p.Csp, sbias, sinit, s.sw);
    // next layer's input x + Wr z + br, straight into its ring
    if (!last)
      gemm<kStore>(rows, (int)p.Chp, s.zr, 0, nullptr, p.res_w + l * res_stride, (int)Crp, p.res_b + l * Crp, s.cur,
                   s.nxt);
  }
  if (force) return;
  gemm<kRelu>(rows, (int)p.Csp, s.sr, 0, nullptr, p.head1_w, (int)p.Cop, p.head1_b, nullptr, s.h1w);
  gemm<kStore>(rows, (int)p.Cop, s.h1r, 0, nullptr, p.head2_w, (int)p.Cop, p.head2_b, nullptr, s.hw);
}

// Sequences blocked by MAX_ROWS, classes by panels.
void output_conv(const KernelWeights& p, int64_t nseq, int npos, const int* pos, const float* const* H,
                 float* const* out, bool bias) {
  for (int64_t i0 = 0; i0 < nseq; i0 += MAX_ROWS) {
    const int R = (int)(nseq - i0 < MAX_ROWS ? nseq - i0 : MAX_ROWS);
    for (int64_t c0 = 0; c0 < p.Qp; c0 += PANEL) {
      const float* W = p.down_w + c0 * p.K * p.F * p.Cop;
      const float* b = bias ? p.down_b + c0 : nullptr;
      if (p.Qp - c0 >= PANEL)
        down_rows<2>(R, npos, pos, (int)p.Cop, H + i0, W, b, out + i0, (int)c0);
      else
        down_rows<1>(R, npos, pos, (int)p.Cop, H + i0, W, b, out + i0, (int)c0);
    }
  }
}

}  // namespace

#define FASTGEN_CAT2(a, b) a##b
#define FASTGEN_CAT(a, b) FASTGEN_CAT2(a, b)
namespace FASTGEN_CAT(isa_, FASTGEN_ISA) {
// Constant-initialized (no code runs at load: this file may hold instructions the CPU lacks).
extern const Kernels kernels;
const Kernels kernels = {&step, &output_conv};
}  // namespace FASTGEN_CAT(isa_, FASTGEN_ISA)

}  // namespace cpu
}  // namespace fastgen
