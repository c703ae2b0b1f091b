// The persistent kernel's building blocks (kernel.cuh): small math (tanh, sigmoid), how a
// block's threads split rows and channels, the cross-block flag wait, the GEMMs over a block's
// rows (tensor-core mma.sync and fp32 FMA, each with an epilogue applied in registers), and
// inverse-CDF sampling by one warp. Device code only; compiled by nvcc and by the CPU emulator.
#pragma once

#include "compat.cuh"
#include "fastgen_cuda.h"

namespace fastgen_cuda {

FG_DEVICE int fg_imin(int a, int b) { return a < b ? a : b; }

FG_DEVICE float fg_sigmoid(float x) { return fg_div(1.0f, 1.0f + fg_exp(-x)); }

FG_DEVICE float fg_tanh(float x) {
  const float ax = fabsf(x);
  if (ax < 0.625f) {  // Cephes tanhf polynomial: relative error < 3e-7
    const float s = x * x;
    const float p = (((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s +
                     1.33314422036e-1f) * s - 3.33332819422e-1f;
    return fmaf(p * s, x, x);
  }
  const float e = fg_exp(2.0f * ax);  // inf for large |x|: 2/(inf+1) = 0, tanh = +-1
  return copysignf(1.0f - fg_div(2.0f, e + 1.0f), x);
}

template <class T> FG_DEVICE T fg_zero() { return fg_from_float<T>(0.0f); }

// How a block walks an M x C (row, channel) element loop without a division per element: a
// warp takes 32 / C rows at a time (one row when C >= 32) and its lanes the channels, so a
// thread decomposes each of its rows once and steps its channels by 32.
//   for (int m = rs.r0; rs.on && m < M; m += rs.rstep) for (int c = rs.c0; c < C; c += 32) ...
struct FgRowSplit {
  int r0, rstep, c0;
  bool on;
};
FG_DEVICE FgRowSplit fg_row_split(int C, int lane, int warp, int nwarps) {
  const int w = C >= 32 ? 32 : C;  // lanes per row
  const int rpw = 32 / w;           // rows per warp at a time
  const int lr = lane / w;
  return {warp * rpw + lr, nwarps * rpw, lane - lr * w, lr < rpw};
}

// Spin until *flag >= want (thread-level; callers publish the result with a block barrier).
// After timeout_ns (FgParams::spin_timeout_ns: long under compute-sanitizer, which slows every
// block down) the wait is a broken invariant: report and trap.
FG_DEVICE void fg_wait_geq(const unsigned* flag, unsigned want, const char* what, unsigned long long timeout_ns) {
  unsigned have = fg_load_acquire(flag);
  if (have >= want) return;
  const unsigned long long t0 = fg_clock_ns();
  unsigned spins = 0;
  while ((have = fg_load_acquire(flag)) < want) {
    if ((++spins & 1023u) == 0 && fg_clock_ns() - t0 > timeout_ns) fg_wait_timeout(what, have, want);
#if defined(FASTGEN_CUDA_EMULATE)
    fg_emu::spin_pause();
#endif
  }
}

// ---------------------------------------------------------------------------------------------
// GEMMs over the block's rows: out[m][n] = sum_k A[m][k] W[n][k], handed to an epilogue.
// ---------------------------------------------------------------------------------------------

// Tensor cores. A: Mp x Kd (row-major, stride ldA, T, Mp a multiple of 16, rows >= M zero);
// W packed as fragments: uint2 at ((nt*KT + kt)*32 + lane) holds this lane's B fragment of the
// 16x8 tile (k-tile kt, n-tile nt). Kd % 16 == 0, N % 8 == 0.
//
// A warp computes a block of up to FG_MTW m-tiles x 2 n-tiles: each k-step loads the A
// fragments of its m-tiles once for both n-tiles, and the B fragments (the weights, often
// streamed from L2) once for all its m-tiles, so a GEMM reads its weights MT / FG_MTW times
// instead of MT times, and A from shared memory N / 16 times instead of N / 8.
constexpr int FG_MTW = 4;
constexpr int FG_SMAX = 4;  // sequences whose downsampling a thread accumulates at once

template <class T>
FG_DEVICE void fg_mma_block(float (&c)[FG_MTW][2][4], const T* A, int ldA, int mt0, int nmt, int KT,
                            const uint2* B, const int (&nts)[2], int nnt, int lane) {
  const int g = lane >> 2, t4 = lane & 3;
  uint32_t a[FG_MTW][4] = {};
  uint2 b[2] = {};
#pragma unroll
  for (int i = 0; i < FG_MTW; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) c[i][j][0] = c[i][j][1] = c[i][j][2] = c[i][j][3] = 0.f;
  for (int kt = 0; kt < KT; ++kt) {
#pragma unroll
    for (int i = 0; i < FG_MTW; ++i) {
      if (i < nmt) {
        const T* a0 = A + ((mt0 + i) * 16 + g) * ldA + kt * 16 + t4 * 2;
        const T* a1 = a0 + 8 * ldA;
        a[i][0] = fg_ld32(a0);
        a[i][1] = fg_ld32(a1);
        a[i][2] = fg_ld32(a0 + 8);
        a[i][3] = fg_ld32(a1 + 8);
      }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j)
      if (j < nnt) b[j] = fg_ld64(B + (nts[j] * KT + kt) * 32 + lane);
#pragma unroll
    for (int i = 0; i < FG_MTW; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        if (i < nmt && j < nnt) fg_mma_16816<T>(c[i][j], a[i], b[j].x, b[j].y);
  }
}

// Hands each of the lane's rows m < M in a warp block to row(m, f0, f1, g0, g1): f0/f1 are the
// row's two accumulators (columns col, col + 1) of the block's first n-tile, g0/g1 of its second.
// (The accumulator indices stay compile-time here, so c stays in registers.)
template <class Fn>
FG_DEVICE void fg_mma_block_rows(const float (&c)[FG_MTW][2][4], int mt0, int nmt, int M, int lane, Fn&& row) {
#pragma unroll
  for (int i = 0; i < FG_MTW; ++i) {
    if (i >= nmt) continue;
    const int r0 = (mt0 + i) * 16 + (lane >> 2);
    if (r0 < M) row(r0, c[i][0][0], c[i][0][1], c[i][1][0], c[i][1][1]);
    if (r0 + 8 < M) row(r0 + 8, c[i][0][2], c[i][0][3], c[i][1][2], c[i][1][3]);
  }
}

// The m-tiles of warp block mg of MG: nearly equal groups of at most FG_MTW (10 -> 3, 3, 4), so
// the warps' GEMM work stays even when MT is not a multiple of FG_MTW.
FG_DEVICE void fg_mma_mgroup(int MT, int MG, int mg, int& mt0, int& nmt) {
  mt0 = mg * MT / MG;
  nmt = (mg + 1) * MT / MG - mt0;
}

template <class T, class Epi>
FG_DEVICE void fg_gemm_mma(const T* A, int ldA, int Mp, int M, int Kd, const T* W, int N, Epi&& epi) {
  const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5, nwarps = (int)blockDim.x >> 5;
  const int MT = Mp >> 4, NT = N >> 3, KT = Kd >> 4;
  const int MG = (MT + FG_MTW - 1) / FG_MTW, NG = (NT + 1) / 2;  // warp blocks: up to FG_MTW x 2 tiles
  const uint2* B = reinterpret_cast<const uint2*>(W);
  for (int task = warp; task < MG * NG; task += nwarps) {
    const int mg = task % MG, ng = task / MG;
    int mt0, nmt;
    fg_mma_mgroup(MT, MG, mg, mt0, nmt);
    const int nts[2] = {2 * ng, 2 * ng + 1};
    const int nnt = fg_imin(2, NT - 2 * ng);
    float c[FG_MTW][2][4];
    fg_mma_block<T>(c, A, ldA, mt0, nmt, KT, B, nts, nnt, lane);
    const int col = 2 * ng * 8 + (lane & 3) * 2;
    fg_mma_block_rows(c, mt0, nmt, M, lane, [&](int m, float f0, float f1, float g0, float g1) {
      epi(m, col, f0);
      epi(m, col + 1, f1);
      if (nnt > 1) {
        epi(m, col + 8, g0);
        epi(m, col + 9, g1);
      }
    });
  }
}

// Two column halves at once (filter n and gate n + Nh of the dilated conv) so the gate is
// applied in registers: epi(m, n, a_filter, a_gate) for n < Nh. A warp block is up to FG_MTW
// m-tiles x (the filter n-tile, its gate n-tile).
template <class T, class Epi>
FG_DEVICE void fg_gemm_pair_mma(const T* A, int ldA, int Mp, int M, int Kd, const T* W, int Nh, Epi&& epi) {
  const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5, nwarps = (int)blockDim.x >> 5;
  const int MT = Mp >> 4, NTh = Nh >> 3, KT = Kd >> 4;
  const int MG = (MT + FG_MTW - 1) / FG_MTW;
  const uint2* B = reinterpret_cast<const uint2*>(W);
  for (int task = warp; task < MG * NTh; task += nwarps) {
    const int mg = task % MG, nt = task / MG;
    int mt0, nmt;
    fg_mma_mgroup(MT, MG, mg, mt0, nmt);
    const int nts[2] = {nt, nt + NTh};
    float c[FG_MTW][2][4];
    fg_mma_block<T>(c, A, ldA, mt0, nmt, KT, B, nts, 2, lane);
    const int col = nt * 8 + (lane & 3) * 2;
    fg_mma_block_rows(c, mt0, nmt, M, lane, [&](int m, float f0, float f1, float g0, float g1) {
      epi(m, col, f0, g0);
      epi(m, col + 1, f1, g1);
    });
  }
}

// Plain FMA. W stored transposed, Wt[k][n] (Kd x ldW, N <= ldW), so a warp's threads (consecutive n)
// read consecutive weights and share A[m][k] (broadcast). Each thread does TM rows of one
// column; the k loop runs in order (fp32 accumulation).
constexpr int FG_TM = 4;

template <class T, class Epi>
FG_DEVICE void fg_gemm_fma(const T* A, int ldA, int M, int Kd, const T* Wt, int ldW, int N, Epi&& epi) {
  const int tid = (int)threadIdx.x, nthr = (int)blockDim.x;
  const int MG = (M + FG_TM - 1) / FG_TM;
  for (int i = tid; i < MG * N; i += nthr) {
    const int mg = i / N, n = i - mg * N, m0 = mg * FG_TM;
    const T* a[FG_TM];
    float acc[FG_TM];
#pragma unroll
    for (int r = 0; r < FG_TM; ++r) { a[r] = A + fg_imin(m0 + r, M - 1) * ldA; acc[r] = 0.f; }
    for (int k = 0; k < Kd; ++k) {
      const float w = fg_to_float(Wt[k * ldW + n]);
#pragma unroll
      for (int r = 0; r < FG_TM; ++r) acc[r] = fmaf(fg_to_float(a[r][k]), w, acc[r]);
    }
#pragma unroll
    for (int r = 0; r < FG_TM; ++r)
      if (m0 + r < M) epi(m0 + r, n, acc[r]);
  }
}

template <class T, class Epi>
FG_DEVICE void fg_gemm_pair_fma(const T* A, int ldA, int M, int Kd, const T* Wt, int Nh, Epi&& epi) {
  const int tid = (int)threadIdx.x, nthr = (int)blockDim.x;
  const int MG = (M + FG_TM - 1) / FG_TM, N = 2 * Nh;
  for (int i = tid; i < MG * Nh; i += nthr) {
    const int mg = i / Nh, n = i - mg * Nh, m0 = mg * FG_TM;
    const T* a[FG_TM];
    float af[FG_TM], ag[FG_TM];
#pragma unroll
    for (int r = 0; r < FG_TM; ++r) { a[r] = A + fg_imin(m0 + r, M - 1) * ldA; af[r] = 0.f; ag[r] = 0.f; }
    for (int k = 0; k < Kd; ++k) {
      const float wf = fg_to_float(Wt[k * N + n]), wg = fg_to_float(Wt[k * N + Nh + n]);
#pragma unroll
      for (int r = 0; r < FG_TM; ++r) {
        const float av = fg_to_float(a[r][k]);
        af[r] = fmaf(av, wf, af[r]);
        ag[r] = fmaf(av, wg, ag[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < FG_TM; ++r)
      if (m0 + r < M) epi(m0 + r, n, af[r], ag[r]);
  }
}

template <class T, bool MMA, class Epi>
FG_DEVICE void fg_gemm(const T* A, int ldA, int Mp, int M, int Kd, const T* W, int ldW, int N, Epi&& epi) {
  if constexpr (MMA) fg_gemm_mma<T>(A, ldA, Mp, M, Kd, W, N, epi);  // fragment-packed: ldW unused
  else fg_gemm_fma<T>(A, ldA, M, Kd, W, ldW, N, epi);
}

template <class T, bool MMA, class Epi>
FG_DEVICE void fg_gemm_pair(const T* A, int ldA, int Mp, int M, int Kd, const T* W, int Nh, Epi&& epi) {
  if constexpr (MMA) fg_gemm_pair_mma<T>(A, ldA, Mp, M, Kd, W, Nh, epi);
  else fg_gemm_pair_fma<T>(A, ldA, M, Kd, W, Nh, epi);
}

// ---------------------------------------------------------------------------------------------
// Sampling of one sequence by one warp (reference.sample): p_i ~ exp((l_i - max)/T), running
// sum c_i in index order (sequential, fp32, lane 0), sample = #{i: c_i <= u c_{Q-1}} clamped
// to Q-1; temperature 0 is argmax with the lowest index on ties. `lg` (Q floats, shared) is
// overwritten.
// ---------------------------------------------------------------------------------------------
FG_DEVICE int fg_sample_warp(float* lg, int Q, float u, float temperature, int lane) {
  if (temperature <= 0.f) {
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int q = lane; q < Q; q += 32) {
      const float v = lg[q];
      if (bi == 0x7fffffff || v > best) { best = v; bi = q; }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = fg_shfl_xor(best, o);
      const int oi = fg_shfl_xor(bi, o);
      if (oi != 0x7fffffff && (bi == 0x7fffffff || ob > best || (ob == best && oi < bi))) { best = ob; bi = oi; }
    }
    return bi;
  }
  float mx = -INFINITY;
  for (int q = lane; q < Q; q += 32) mx = fmaxf(mx, lg[q]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, fg_shfl_xor(mx, o));
  for (int q = lane; q < Q; q += 32) lg[q] = fg_exp(fg_div(lg[q] - mx, temperature));
  fg_syncwarp();
  float total = 0.f;
  if (lane == 0) {
    float c = 0.f;
    for (int q = 0; q < Q; ++q) { c += lg[q]; lg[q] = c; }
    total = c;
  }
  fg_syncwarp();
  total = fg_shfl(total, 0);
  const float thr = u * total;
  int cnt = 0;
  for (int q = lane; q < Q; q += 32) cnt += lg[q] <= thr ? 1 : 0;
  for (int o = 16; o > 0; o >>= 1) cnt += fg_shfl_xor(cnt, o);
  return cnt < Q - 1 ? cnt : Q - 1;
}
}  // namespace fastgen_cuda
