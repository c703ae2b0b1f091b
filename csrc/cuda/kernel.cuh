// The persistent generation kernel: one launch runs every step of a batch of sequences.
//
// Grid (nf, G): block (fs, g) owns the positions f in [fs*Fb, fs*Fb + Fb) (all K frames of a
// step) of the sequences [g*S, g*S + S). Positions do not interact before the output conv, so
// the nf blocks of a group run their layer stacks independently; per step they meet once:
// every block reduces its rows' share of the learned downsampling to partial logits (Q per
// sequence); the group's leader (fs == 0) sums them in block order, samples (or writes the
// teacher-forced logits) and hands the sampled class to the others through a flag.
//
// Rows of a block: m = (s*K + k)*Fc + fl for its Sc sequences, K frames and Fc positions.
// Per step and layer l (dilation d), with x the residual stream (fp32, shared memory):
//   A[m] = [x(t-d) | x(t)] as T                (x(t-d) from shared memory when it lies in the
//                                               current group, else from the history ring)
//   ring[t mod (d+K)] = x(t)                   (per-layer ring of d+K frames x F x C_r, global)
//   z    = tanh(a_f) * sigmoid(a_g),  a = A W_dil^T + cond_table[l][class]   (GEMM + gate)
//   skip (+)= z W_s^T + b_s;  x += z W_r^T + b_r                              (one GEMM, N = C_s+C_r)
// then h = W_h2 relu(W_h1 relu(skip) + b_h1) + b_h2 and the partial logits sum_{rows,c} W_down h.
//
// GEMMs: MMA = true uses mma.sync m16n8k16 (bf16/fp16 in, fp32 accumulate) with weights
// pre-packed in per-lane fragment order (one 8-byte load per lane per 16x8 tile); MMA = false
// is a plain fp32-FMA path (any channel counts, any T; the float32 engine uses it for parity).
//
// Shared memory (per block): the packed weight blob or as much of its prefix as fits (the
// rest is read from global memory / L2 through the same generic pointers), this block's
// slice of down_w when it fits, and the activations (x, skip, h in fp32; the GEMM A operands
// in T). Biases and the conditioning table stay fp32.
//
// Hand-off protocol (nf > 1), flags are per group and step-indexed (monotone, never reset
// during a launch, zeroed by the launcher before it):
//   done[g]      = j+1 after the leader consumed the partials of step j and (generate mode)
//                  wrote the sampled classes of step j to `samples`.
// Generate mode: `samples` is (batch, steps + 1): column 0, written by the host, holds the class
// that conditions each sequence's first step; step j's sample goes to column j + 1. A launch can
// so continue an earlier one: with the rings it left and step0 (the generation's index of this
// launch's first step), which places frames in the rings by their index in the generation.
//   part[g][fs]  = j+1 after follower fs wrote its partial logits of step j.
// A follower waits for done >= j before it reads the classes of step j-1 (generate mode) and
// before it overwrites its partial slot with step j's (all modes), so one slot suffices.
// Writers: bar.sync; thread 0: __threadfence(); st.release.gpu. Readers: thread 0:
// ld.acquire.gpu spin; __threadfence(); bar.sync; data read with ld.global.cg.
// Blocks spin on each other, so the grid must be co-resident: the launcher uses a cooperative
// launch (and checks the occupancy first). A wait longer than the launch's spin timeout (20 s
// unless set) prints the block and flag and traps (a broken invariant must not hang the GPU).
//
// Supported sizes (all runtime parameters, checked by fg_prepare with messages): C_in and the
// channel counts up to FG_MAX_CHANNELS (2^14), F and K up to FG_MAX_POSITIONS (2^14), Q <= Q_c
// up to FG_MAX_CLASSES; 1..FG_MAX_LAYERS layers, dilations up to 2^24; channel counts any
// positive value on the FMA path, multiples of 16 (C_r, C_h, C_s, C_o) on the tensor-core path;
// 32..FG_MAX_THREADS threads (a multiple of 32); everything bounded by the per-block shared
// memory (at most FG_MAX_SMEM): rows M = S*K*Fb need M*(C_r + max(C_s, C_o))*4 bytes of fp32
// activations plus the two GEMM operands (plan.py's plan_launch picks S and Fb, or reports the
// sizes and the limit).
// Index math: within these bounds every int product below is exact -- shared-memory indices
// are below FG_MAX_SMEM, weight indices (k * ldW + n, c * C_in + ci, fragment tiles) below
// 2^30, ring slots below d + K -- and every global index that can exceed that (frames, ring,
// logits, samples, partials, down_w) is formed in 64 bits from sizes fg_prepare checked
// against the buffers without overflow.
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

// ---------------------------------------------------------------------------------------------
// The kernel.
// ---------------------------------------------------------------------------------------------
template <class T, bool MMA>
FG_GLOBAL void FG_LAUNCH_BOUNDS(FG_MAX_THREADS) fg_persistent_kernel(const FG_GRID_CONSTANT FgParams p) {
  static_assert(!MMA || sizeof(T) == 2, "the tensor-core path is for 16-bit types");
  FG_DECLARE_SMEM(smem);
  const int tid = (int)threadIdx.x, nthr = (int)blockDim.x;
  const int lane = tid & 31, warp = tid >> 5, nwarps = nthr >> 5;
  const int fs = (int)blockIdx.x, grp = (int)blockIdx.y;
  const int K = p.K, F = p.F, Cr = p.Cr, Ch = p.Ch, Cs = p.Cs, Co = p.Co, Q = p.Q, L = p.L;
  const int f0 = fs * p.Fb, Fc = fg_imin(p.Fb, F - f0);
  const int s0 = grp * p.S, Sc = fg_imin(p.S, p.batch - s0);
  const int KF = K * Fc;                 // rows per sequence
  const int M = Sc * KF;                 // rows of this block
  const int Mp = MMA ? (M + 15) & ~15 : M;
  const bool leader = fs == 0;
  const int nsteps = p.steps;
  const long long Tn = (long long)nsteps * K;
  const long long sstride = (long long)nsteps + 1;  // samples per sequence (generate mode)
  const int ldA = p.ldA, ldZ = p.ldZ;
  constexpr long long es = (long long)sizeof(T);
  const FgRowSplit rsr = fg_row_split(Cr, lane, warp, nwarps), rss = fg_row_split(Cs, lane, warp, nwarps);

  unsigned char* core_s = smem + p.sm_core;
  T* down_s = reinterpret_cast<T*>(smem + p.sm_down);
  float* xs = reinterpret_cast<float*>(smem + p.sm_x);     // M x Cr   residual stream
  float* sk = reinterpret_cast<float*>(smem + p.sm_skip);  // M x Cs   skip sum
  float* hs = reinterpret_cast<float*>(smem + p.sm_h);     // M x Co   head output (in sk's region)
  T* As = reinterpret_cast<T*>(smem + p.sm_a);             // Mp x ldA GEMM operand
  T* Zs = reinterpret_cast<T*>(smem + p.sm_z);             // Mp x ldZ GEMM operand
  float* red = reinterpret_cast<float*>(smem + p.sm_red);  // threads  GEMV scratch
  float* part = reinterpret_cast<float*>(smem + p.sm_part);// S x Q    partial logits / logits
  int* cls = reinterpret_cast<int*>(smem + p.sm_cls);      // S        conditioning classes

  // -- once: resident weights into shared memory, operands zeroed (padding rows stay zero)
  {
    const uint4* src = reinterpret_cast<const uint4*>(p.core);
    uint4* dst = reinterpret_cast<uint4*>(core_s);
    for (long long i = tid; i < p.core_resident / 16; i += nthr) dst[i] = src[i];
    if (p.down_resident) {
      const T* dsrc = static_cast<const T*>(p.down) + (long long)f0 * K * Co * Q;
      const long long nd = (long long)Fc * K * Co * Q;
      for (long long i = tid; i < nd; i += nthr) down_s[i] = dsrc[i];
    }
    for (int i = tid; i < Mp * ldA; i += nthr) As[i] = fg_zero<T>();
    for (int i = tid; i < Mp * ldZ; i += nthr) Zs[i] = fg_zero<T>();
  }
  // A weight segment from shared memory when it lies in the resident prefix, else global.
  auto wseg = [&](long long off, long long bytes) -> const unsigned char* {
    return off + bytes <= p.core_resident ? core_s + off : p.core + off;
  };
  const float* in_w = reinterpret_cast<const float*>(wseg(p.off_in_w, 4LL * Cr * p.Cin));
  const float* in_b = reinterpret_cast<const float*>(wseg(p.off_in_b, 4LL * Cr));
  const float* down_b = reinterpret_cast<const float*>(wseg(p.off_down_b, 4LL * Q));
  const T* h1w = reinterpret_cast<const T*>(wseg(p.off_h1w, es * Co * Cs));
  const float* h1b = reinterpret_cast<const float*>(wseg(p.off_h1b, 4LL * Co));
  const T* h2w = reinterpret_cast<const T*>(wseg(p.off_h2w, es * Co * Co));
  const float* h2b = reinterpret_cast<const float*>(wseg(p.off_h2b, 4LL * Co));
  const T* Wd = p.down_resident ? down_s : static_cast<const T*>(p.down) + (long long)f0 * K * Co * Q;
  unsigned* gflags = p.flags + (long long)grp * (p.nf + 1);  // [0] done, [fs] partial of block fs
  fg_sync();

  for (int j = 0; j < nsteps; ++j) {
    const long long tj = (long long)j * K;                // this launch's first frame of the step
    const long long t0 = (p.step0 + j) * K;               // ... its index in the generation (rings)

    // (1) input projection x = W_in frame + b_in (fp32)
    for (int m = rsr.r0; rsr.on && m < M; m += rsr.rstep) {
      const int s = m / KF, r = m - s * KF, k = r / Fc, fl = r - k * Fc;
      const T* fr = static_cast<const T*>(p.frames) + ((long long)(s0 + s) * p.Cin * Tn + tj + k) * F + f0 + fl;
      for (int c = rsr.c0; c < Cr; c += 32) {
        float acc = in_b[c];
        for (int ci = 0; ci < p.Cin; ++ci) acc = fmaf(in_w[c * p.Cin + ci], fg_to_float(fr[ci * Tn * F]), acc);
        xs[m * Cr + c] = acc;
      }
    }
    // conditioning class of each sequence for this step (published by the barrier below)
    if (tid == 0) {
      for (int s = 0; s < Sc; ++s) {
        const long long b = s0 + s;
        int c;
        if (p.mode == FG_MODE_TEACHER) c = j == 0 ? p.start_class : (int)p.classes[b * nsteps + j - 1];
        else if (j == 0) c = (int)p.samples[b * sstride];  // the host's, before the launch
        else if (leader) c = cls[s];  // sampled by this block at the end of step j-1
        else {
          if (s == 0) { fg_wait_geq(gflags, (unsigned)j, "the leader's sample", p.spin_timeout_ns); fg_fence(); }
          c = (int)fg_ldcg(p.samples + b * sstride + j);
        }
        cls[s] = c;
      }
    }
    fg_sync();

    for (int l = 0; l < L; ++l) {
      const int d = p.dil[l], R = d + K;
      const int slot0 = (int)(t0 % R);  // ring slot of frame t0 (one 64-bit remainder per layer)
      // (2) A = [x(t-d) | x(t)] and the history write of x(t)
      for (int m = rsr.r0; rsr.on && m < M; m += rsr.rstep) {
        const int s = m / KF, r = m - s * KF, k = r / Fc, fl = r - k * Fc;
        T* ring = static_cast<T*>(p.ring) + (long long)(s0 + s) * p.ring_stride + p.ring_off[l]
                  + (long long)(f0 + fl) * Cr;
        int cur_slot = slot0 + k;  // k < K <= R: one wrap at most, and the same for t - d
        if (cur_slot >= R) cur_slot -= R;
        int past_slot = cur_slot - d;
        if (past_slot < 0) past_slot += R;
        const bool before = t0 + k < d, same_step = k >= d;
        T* past_ring = ring + (long long)past_slot * F * Cr;
        T* cur_ring = ring + (long long)cur_slot * F * Cr;
        for (int c = rsr.c0; c < Cr; c += 32) {
          const T cur = fg_from_float<T>(xs[m * Cr + c]);
          T past;
          if (before) past = fg_zero<T>();                                       // before the sequence
          else if (same_step) past = fg_from_float<T>(xs[(m - d * Fc) * Cr + c]);  // same step
          else past = past_ring[c];                                              // earlier step
          As[m * ldA + c] = past;
          As[m * ldA + Cr + c] = cur;
          cur_ring[c] = cur;  // slots of frames t0..t0+K-1: never read above
        }
      }
      fg_sync();

      const long long lbase = p.off_layers + (long long)l * p.layer_stride;
      const T* wdil = reinterpret_cast<const T*>(wseg(lbase + p.loff_wdil, es * 4 * Ch * Cr));
      const T* wsr = reinterpret_cast<const T*>(wseg(lbase + p.loff_wsr, es * (Cs + Cr) * Ch));
      const float* bsr = reinterpret_cast<const float*>(wseg(lbase + p.loff_bsr, 4LL * (Cs + Cr)));
      const float* cond_l = p.cond + (long long)l * p.Qc * 2 * Ch;

      // (3) dilated conv (both taps) + conditioning + gate -> Z
      fg_gemm_pair<T, MMA>(As, ldA, Mp, M, 2 * Cr, wdil, Ch, [&](int m, int n, float af, float ag) {
        // one sequence per block (the common case): no division per element
        const float* crow = cond_l + (long long)cls[Sc == 1 ? 0 : m / KF] * (2 * Ch);
        af += fg_ldg(crow + n);
        ag += fg_ldg(crow + Ch + n);
        Zs[m * ldZ + n] = fg_from_float<T>(fg_tanh(af) * fg_sigmoid(ag));
      });
      fg_sync();

      // (4) skip and residual in one GEMM (the last layer's residual is never used)
      const int Nsr = Cs + (l + 1 < L ? Cr : 0);
      const bool first = l == 0;
      fg_gemm<T, MMA>(Zs, ldZ, Mp, M, Ch, wsr, Cs + Cr, Nsr, [&](int m, int n, float acc) {
        const float v = acc + bsr[n];
        if (n < Cs) {
          float* sp = sk + m * Cs + n;
          *sp = first ? v : *sp + v;
        } else {
          xs[m * Cr + (n - Cs)] += v;
        }
      });
      fg_sync();
    }

    // (5) head: h = W_h2 relu(W_h1 relu(skip) + b_h1) + b_h2
    for (int m = rss.r0; rss.on && m < M; m += rss.rstep)
      for (int c = rss.c0; c < Cs; c += 32) As[m * ldA + c] = fg_from_float<T>(fmaxf(sk[m * Cs + c], 0.f));
    fg_sync();
    fg_gemm<T, MMA>(As, ldA, Mp, M, Cs, h1w, Co, Co, [&](int m, int n, float acc) {
      Zs[m * ldZ + n] = fg_from_float<T>(fmaxf(acc + h1b[n], 0.f));
    });
    fg_sync();
    fg_gemm<T, MMA>(Zs, ldZ, Mp, M, Co, h2w, Co, Co, [&](int m, int n, float acc) { hs[m * Co + n] = acc + h2b[n]; });
    fg_sync();

    // (6) this block's share of the downsampling: part[s][q] = sum_{fl,k,c} Wd[fl][k][c][q] h.
    // A thread owns one q (and a chunk of the (fl, k) pairs) for up to FG_SMAX sequences at
    // once, so each weight (streamed from L2 when down_w is not resident) is read once per
    // FG_SMAX sequences of the block instead of once per sequence.
    const int items = Sc * Q;
    {
      const int pairs = KF;  // (fl, k) pairs, each Co long
      int nsplit = items >= nthr ? 1 : nthr / items;  // nsplit * items <= nthr: red holds the partials
      if (nsplit > pairs) nsplit = pairs;
      const int chunk = (pairs + nsplit - 1) / nsplit;
      const int ngroups = (Sc + FG_SMAX - 1) / FG_SMAX;  // tasks: (sequence group, split, q)
      for (int task = tid; task < ngroups * nsplit * Q; task += nthr) {
        const int gq = task / Q, q = task - gq * Q, sg = gq / nsplit, sp = gq - sg * nsplit;
        const int e0 = sp * chunk, e1 = fg_imin(pairs, e0 + chunk);
        const int sa = sg * FG_SMAX, ns = fg_imin(FG_SMAX, Sc - sa);
        float acc[FG_SMAX] = {};
        for (int e = e0; e < e1; ++e) {
          const int fl = e / K, k = e - fl * K;
          const float* hrow = hs + ((long long)sa * KF + k * Fc + fl) * Co;
          const T* w = Wd + (long long)e * Co * Q + q;
          for (int c = 0; c < Co; ++c) {
            const float wv = fg_to_float(w[(long long)c * Q]);
#pragma unroll
            for (int s = 0; s < FG_SMAX; ++s)
              if (s < ns) acc[s] = fmaf(hrow[(long long)s * KF * Co + c], wv, acc[s]);
          }
        }
#pragma unroll
        for (int s = 0; s < FG_SMAX; ++s)
          if (s < ns) (nsplit <= 1 ? part : red + sp * items)[(sa + s) * Q + q] = acc[s];
      }
      if (nsplit > 1) {
        fg_sync();
        for (int r = tid; r < items; r += nthr) {
          float acc = 0.f;
          for (int sp = 0; sp < nsplit; ++sp) acc += red[sp * items + r];
          part[r] = acc;
        }
      }
      fg_sync();
    }

    // (7) cross-block reduction, logits / sampling, hand-off
    if (!leader) {
      if (tid == 0 && j > 0) { fg_wait_geq(gflags, (unsigned)j, "the leader to consume partials", p.spin_timeout_ns); fg_fence(); }
      fg_sync();
      float* gp = p.partials + ((long long)grp * p.nf + fs) * p.S * Q;
      for (int r = tid; r < items; r += nthr) gp[r] = part[r];
      fg_sync();
      if (tid == 0) { fg_fence(); fg_store_release(gflags + fs, (unsigned)(j + 1)); }
    } else {
      if (p.nf > 1) {
        if (tid == 0) {
          for (int f2 = 1; f2 < p.nf; ++f2) fg_wait_geq(gflags + f2, (unsigned)(j + 1), "partial logits", p.spin_timeout_ns);
          fg_fence();
        }
        fg_sync();
      }
      for (int r = tid; r < items; r += nthr) {
        float acc = part[r];
        for (int f2 = 1; f2 < p.nf; ++f2) acc += fg_ldcg(p.partials + ((long long)grp * p.nf + f2) * p.S * Q + r);
        part[r] = acc + down_b[r % Q];
      }
      fg_sync();
      if (p.mode == FG_MODE_TEACHER) {
        for (int r = tid; r < items; r += nthr) {
          const int s = r / Q, q = r - s * Q;
          p.logits[((long long)(s0 + s) * nsteps + j) * Q + q] = part[r];
        }
      } else {
        for (int s = warp; s < Sc; s += nwarps) {
          const long long b = s0 + s;
          const int smp = fg_sample_warp(part + s * Q, Q, p.uniforms[b * nsteps + j], p.temperature, lane);
          if (lane == 0) {
            cls[s] = smp;
            p.samples[b * sstride + j + 1] = smp;
          }
        }
      }
      fg_sync();
      if (p.nf > 1 && tid == 0) { fg_fence(); fg_store_release(gflags, (unsigned)(j + 1)); }
    }
  }
}

}  // namespace fastgen_cuda
