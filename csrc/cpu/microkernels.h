// fastgen fused CPU backend: the microkernels -- 8-float vectors, the register-blocked GEMM on
// row pointers (with the gate, ReLU or plain store applied in registers) and the output conv
// over a step's positions. Included by step_kernels.cpp only (internal linkage), which is
// compiled once per instruction-set path (isa.h): the vector code follows the flags of each.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // with AVX, _mm256_{min,max,rcp}_ps
#endif

#include "cpu/wavenet_kernels.h"

namespace fastgen {
namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------------
// Vectors: GCC/Clang vector extensions of 8 floats (one AVX register on the avx2 path; the
// compiler splits them in two SSE registers on the baseline path).
constexpr int VW = kVectorWidth;
constexpr int PANEL = kPanel;
constexpr int MAX_ROWS = 6;  // rows (positions) per register block

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(int32_t))));

inline vf vload(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static_assert(VW == 8, "vset below spells out 8 lanes");
inline vf vset(float x) { return vf{x, x, x, x, x, x, x, x}; }  // one vbroadcastss
#if defined(__AVX__)
inline vf vmax(vf a, vf b) { return (vf)_mm256_max_ps((__m256)a, (__m256)b); }
inline vf vmin(vf a, vf b) { return (vf)_mm256_min_ps((__m256)a, (__m256)b); }
#else
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
#endif

// exp(x) for x in [-87, 88] (callers clamp; Cephes' expf: range reduction by ln 2 and a
// degree-6 polynomial, about 1 ulp).
inline vf vexp(vf x) {
  const vf magic = vset(12582912.0f);               // 1.5 * 2^23: adding it rounds to an integer
  vf n = (x * vset(1.44269504088896341f) + magic) - magic;
  vf r = x - n * vset(0.693359375f);
  r = r - n * vset(-2.12194440e-4f);
  vf p = vset(1.9875691500e-4f);
  p = p * r + vset(1.3981999507e-3f);
  p = p * r + vset(8.3334519073e-3f);
  p = p * r + vset(4.1665795894e-2f);
  p = p * r + vset(1.6666665459e-1f);
  p = p * r + vset(5.0000001201e-1f);
  vf y = p * (r * r) + r + vset(1.0f);
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;  // 2^n, n in [-126, 127]
  return y * (vf)e;
}

// a / b for b in [1, 1e22]: the reciprocal estimate and one Newton step (~1 ulp) where AVX has it.
inline vf vdiv(vf a, vf b) {
#if defined(__AVX__)
  vf r = (vf)_mm256_rcp_ps((__m256)b);
  r = r * (vset(2.0f) - b * r);
  return a * r;
#else
  return a / b;
#endif
}

// tanh(a) * sigmoid(g) with one division: with ea = exp(-2a), eg = exp(-g),
// tanh(a) = (1 - ea) / (1 + ea) and sigmoid(g) = 1 / (1 + eg). The clamps keep the denominator
// finite and far from overflow (tanh(10) is 1 in float32, sigmoid(-30) is below 1e-13).
inline vf vgate(vf a, vf g) {
  const vf ea = vexp(vmax(vmin(vset(-2.0f) * a, vset(20.0f)), vset(-87.0f)));
  const vf eg = vexp(vmax(vmin(-g, vset(30.0f)), vset(-87.0f)));
  return vdiv(vset(1.0f) - ea, (vset(1.0f) + ea) * (vset(1.0f) + eg));
}

// ---------------------------------------------------------------------------------------------
// Register-blocked GEMM on row pointers: Out[r][o] = epi(bias[o] + Init[r][o] + sum_i A[r][i] W[i][o])
// for R rows and NV vectors of output channels, the input given as two segments (A0: n0
// values, A1: n1 values; the dilated conv's past and current taps). W is one panel: row i holds
// NV*VW contiguous floats.
enum Epi { kStore = 0, kRelu = 1, kGate = 2 };

template <int R, int NV, int EPI>
inline void gemm_block(int n0, const float* const* A0, int n1, const float* const* A1, const float* W,
                       const float* bias, const float* const* Init, float* const* Out, int out_col) {
  const float* a0[R];
  const float* a1[R];
  for (int r = 0; r < R; ++r) {
    a0[r] = A0[r];
    a1[r] = n1 ? A1[r] : nullptr;
  }
  vf acc[R][NV];
  for (int v = 0; v < NV; ++v) {
    const vf b = bias ? vload(bias + v * VW) : vf{};
    for (int r = 0; r < R; ++r) acc[r][v] = Init ? b + vload(Init[r] + out_col + v * VW) : b;
  }
  // The two segments' loops are written out: one loop over an array of both measured 4% slower
  // per step on the bundled model (batch 2, one thread).
  for (int i = 0; i < n0; ++i, W += NV * VW) {
    vf w[NV];
    for (int v = 0; v < NV; ++v) w[v] = vload(W + v * VW);
    for (int r = 0; r < R; ++r) {
      const vf x = vset(a0[r][i]);
      for (int v = 0; v < NV; ++v) acc[r][v] += x * w[v];
    }
  }
  for (int i = 0; i < n1; ++i, W += NV * VW) {
    vf w[NV];
    for (int v = 0; v < NV; ++v) w[v] = vload(W + v * VW);
    for (int r = 0; r < R; ++r) {
      const vf x = vset(a1[r][i]);
      for (int v = 0; v < NV; ++v) acc[r][v] += x * w[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    if constexpr (EPI == kGate) {
      for (int v = 0; v < NV; v += 2) vstore(Out[r] + out_col + v / 2 * VW, vgate(acc[r][v], acc[r][v + 1]));
    } else {
      for (int v = 0; v < NV; ++v) {
        vf y = acc[r][v];
        if constexpr (EPI == kRelu) y = vmax(y, vf{});
        vstore(Out[r] + out_col + v * VW, y);
      }
    }
  }
}

template <int NV, int EPI>
inline void gemm_rows(int R, int n0, const float* const* A0, int n1, const float* const* A1, const float* W,
                      const float* bias, const float* const* Init, float* const* Out, int out_col) {
  switch (R) {
    case 6: gemm_block<6, NV, EPI>(n0, A0, n1, A1, W, bias, Init, Out, out_col); break;
    case 5: gemm_block<5, NV, EPI>(n0, A0, n1, A1, W, bias, Init, Out, out_col); break;
    case 4: gemm_block<4, NV, EPI>(n0, A0, n1, A1, W, bias, Init, Out, out_col); break;
    case 3: gemm_block<3, NV, EPI>(n0, A0, n1, A1, W, bias, Init, Out, out_col); break;
    case 2: gemm_block<2, NV, EPI>(n0, A0, n1, A1, W, bias, Init, Out, out_col); break;
    default: gemm_block<1, NV, EPI>(n0, A0, n1, A1, W, bias, Init, Out, out_col); break;
  }
}

// The whole matrix: ncols output channels (a multiple of VW) in panels of PANEL, for `rows`
// rows. With kGate, ncols counts the interleaved filter+gate channels and the output has
// ncols / 2 channels. Init (optional) is read at the same columns as Out.
template <int EPI>
void gemm(int rows, int n0, const float* const* A0, int n1, const float* const* A1, const float* W, int ncols,
          const float* bias, const float* const* Init, float* const* Out) {
  const int nin = n0 + n1;
  for (int c0 = 0; c0 < ncols; c0 += PANEL) {
    const float* Wp = W + (int64_t)c0 * nin;
    const float* b = bias ? bias + c0 : nullptr;
    const int out_col = EPI == kGate ? c0 / 2 : c0;
    const bool full = ncols - c0 >= PANEL;
    // Row blocks of at most MAX_ROWS, balanced (32 rows: 6,6,5,5,5,5 rather than 6,6,6,6,6,2).
    const int nblocks = (rows + MAX_ROWS - 1) / MAX_ROWS;
    for (int blk = 0, r0 = 0; blk < nblocks; ++blk) {
      const int R = rows / nblocks + (blk < rows % nblocks);
      const float* const* a1 = n1 ? A1 + r0 : nullptr;
      const float* const* init = Init ? Init + r0 : nullptr;
      if constexpr (EPI == kGate) {
        gemm_rows<2, EPI>(R, n0, A0 + r0, n1, a1, Wp, b, init, Out + r0, out_col);
      } else if (full) {
        gemm_rows<2, EPI>(R, n0, A0 + r0, n1, a1, Wp, b, init, Out + r0, out_col);
      } else {
        gemm_rows<1, EPI>(R, n0, A0 + r0, n1, a1, Wp, b, init, Out + r0, out_col);
      }
      r0 += R;
    }
  }
}

// The output conv for R sequences on one panel of NV vectors of classes:
// Out[r][col + ...] = bias + sum over the thread's positions rr and channels c of
// H[r][rr*Cop + c] * W[pos[rr]][c]. U independent accumulator sets hide the FMA latency when
// there are few sequences.
template <int R, int NV, int U>
inline void down_block(int npos, const int* pos, int Cop, const float* const* H, const float* W, const float* bias,
                       float* const* Out, int col) {
  vf acc[U][R][NV];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[u][r][v] = vf{};
  const float* h[R];
  for (int r = 0; r < R; ++r) h[r] = H[r];
  for (int rr = 0; rr < npos; ++rr) {
    const float* w = W + (int64_t)pos[rr] * Cop * NV * VW;
    const int hb = rr * Cop;
    for (int c = 0; c < Cop; c += U) {
      for (int u = 0; u < U; ++u) {
        vf wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = vload(w + (c + u) * NV * VW + v * VW);
        for (int r = 0; r < R; ++r) {
          const vf x = vset(h[r][hb + c + u]);
          for (int v = 0; v < NV; ++v) acc[u][r][v] += x * wv[v];
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      vf y = bias ? vload(bias + v * VW) : vf{};
      for (int u = 0; u < U; ++u) y += acc[u][r][v];
      vstore(Out[r] + col + v * VW, y);
    }
}

template <int NV>
inline void down_rows(int R, int npos, const int* pos, int Cop, const float* const* H, const float* W,
                      const float* bias, float* const* Out, int col) {
  switch (R) {
    case 6: down_block<6, NV, 1>(npos, pos, Cop, H, W, bias, Out, col); break;
    case 5: down_block<5, NV, 1>(npos, pos, Cop, H, W, bias, Out, col); break;
    case 4: down_block<4, NV, 1>(npos, pos, Cop, H, W, bias, Out, col); break;
    case 3: down_block<3, NV, 2>(npos, pos, Cop, H, W, bias, Out, col); break;
    case 2: down_block<2, NV, 2>(npos, pos, Cop, H, W, bias, Out, col); break;
    default: down_block<1, NV, 4>(npos, pos, Cop, H, W, bias, Out, col); break;
  }
}
}  // namespace
}  // namespace cpu
}  // namespace fastgen
