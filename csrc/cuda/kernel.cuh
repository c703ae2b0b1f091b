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
// Forced steps (FG_MODE_FORCE: the classes given, nothing output) stop once the last layer's
// input is in its ring: no skip sums (the residual GEMM alone), no last layer's GEMMs, head,
// downsampling or hand-off (the blocks never meet).
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

#include "block_ops.cuh"
#include "compat.cuh"
#include "fastgen_cuda.h"

namespace fastgen_cuda {

// ---------------------------------------------------------------------------------------------
// One block's view of the launch: its rows, its shared-memory regions and its weight pointers,
// set up once; a step's phases are the member functions, called by the kernel below in order
// (as nv-wavenet splits its persistent kernel into per-layer device functions). Everything is
// force-inlined: the split is for the reader, the generated code is one function.
// ---------------------------------------------------------------------------------------------
template <class T, bool MMA>
struct FgBlock {
  static constexpr long long es = (long long)sizeof(T);
  const FgParams& p;
  const int tid, nthr, lane, warp, nwarps, fs, grp;
  const int K, F, Cr, Ch, Cs, Co, Q, L;
  const int f0, Fc, s0, Sc;
  const int KF;             // rows per sequence
  const int M, Mp;          // rows of this block (Mp: padded to the mma tile)
  const bool leader, force;
  const int nsteps;
  const long long Tn;       // frames per sequence in this launch
  const long long sstride;  // samples per sequence (generate mode)
  const FgRowSplit rsr, rss;

  unsigned char* core_s;
  T* down_s;
  float* xs;    // M x Cr   residual stream
  float* sk;    // M x Cs   skip sum
  float* hs;    // M x Co   head output (in sk's region)
  T* As;        // Mp x ldA GEMM operand
  T* Zs;        // Mp x ldZ GEMM operand
  float* red;   // threads  GEMV scratch
  float* part;  // S x Q    partial logits / logits
  int* cls;     // S        conditioning classes
  const float *in_w, *in_b, *down_b, *h1b, *h2b;
  const T *h1w, *h2w, *Wd;
  unsigned* gflags;  // [0] done, [fs] partial of block fs

  FG_DEVICE FgBlock(const FgParams& p_, unsigned char* smem)
      : p(p_), tid((int)threadIdx.x), nthr((int)blockDim.x), lane(tid & 31), warp(tid >> 5), nwarps(nthr >> 5),
        fs((int)blockIdx.x), grp((int)blockIdx.y), K(p.K), F(p.F), Cr(p.Cr), Ch(p.Ch), Cs(p.Cs), Co(p.Co),
        Q(p.Q), L(p.L), f0(fs * p.Fb), Fc(fg_imin(p.Fb, F - f0)), s0(grp * p.S), Sc(fg_imin(p.S, p.batch - s0)),
        KF(K * Fc), M(Sc * KF), Mp(MMA ? (M + 15) & ~15 : M), leader(fs == 0), force(p.mode == FG_MODE_FORCE),
        nsteps(p.steps),
        Tn((long long)nsteps * K), sstride((long long)nsteps + 1), rsr(fg_row_split(Cr, lane, warp, nwarps)),
        rss(fg_row_split(Cs, lane, warp, nwarps)) {
    core_s = smem + p.sm_core;
    down_s = reinterpret_cast<T*>(smem + p.sm_down);
    xs = reinterpret_cast<float*>(smem + p.sm_x);
    sk = reinterpret_cast<float*>(smem + p.sm_skip);
    hs = reinterpret_cast<float*>(smem + p.sm_h);
    As = reinterpret_cast<T*>(smem + p.sm_a);
    Zs = reinterpret_cast<T*>(smem + p.sm_z);
    red = reinterpret_cast<float*>(smem + p.sm_red);
    part = reinterpret_cast<float*>(smem + p.sm_part);
    cls = reinterpret_cast<int*>(smem + p.sm_cls);
    in_w = reinterpret_cast<const float*>(wseg(p.off_in_w, 4LL * Cr * p.Cin));
    in_b = reinterpret_cast<const float*>(wseg(p.off_in_b, 4LL * Cr));
    down_b = reinterpret_cast<const float*>(wseg(p.off_down_b, 4LL * Q));
    h1w = reinterpret_cast<const T*>(wseg(p.off_h1w, es * Co * Cs));
    h1b = reinterpret_cast<const float*>(wseg(p.off_h1b, 4LL * Co));
    h2w = reinterpret_cast<const T*>(wseg(p.off_h2w, es * Co * Co));
    h2b = reinterpret_cast<const float*>(wseg(p.off_h2b, 4LL * Co));
    Wd = p.down_resident ? down_s : static_cast<const T*>(p.down) + (long long)f0 * K * Co * Q;
    gflags = p.flags + (long long)grp * (p.nf + 1);
  }

  // A weight segment from shared memory when it lies in the resident prefix, else global.
  FG_DEVICE const unsigned char* wseg(long long off, long long bytes) const {
    return off + bytes <= p.core_resident ? core_s + off : p.core + off;
  }

  // Once: resident weights into shared memory, operands zeroed (padding rows stay zero).
  FG_DEVICE void load_resident() {
    const uint4* src = reinterpret_cast<const uint4*>(p.core);
    uint4* dst = reinterpret_cast<uint4*>(core_s);
    for (long long i = tid; i < p.core_resident / 16; i += nthr) dst[i] = src[i];
    if (p.down_resident && !force) {  // forced steps never downsample
      const T* dsrc = static_cast<const T*>(p.down) + (long long)f0 * K * Co * Q;
      const long long nd = (long long)Fc * K * Co * Q;
      for (long long i = tid; i < nd; i += nthr) down_s[i] = dsrc[i];
    }
    for (int i = tid; i < Mp * p.ldA; i += nthr) As[i] = fg_zero<T>();
    for (int i = tid; i < Mp * p.ldZ; i += nthr) Zs[i] = fg_zero<T>();
  }

  // (1) input projection x = W_in frame + b_in (fp32) of step j's frames (tj: its first).
  FG_DEVICE void input_projection(long long tj) {
    for (int m = rsr.r0; rsr.on && m < M; m += rsr.rstep) {
      const int s = m / KF, r = m - s * KF, k = r / Fc, fl = r - k * Fc;
      const T* fr = static_cast<const T*>(p.frames) + ((long long)(s0 + s) * p.Cin * Tn + tj + k) * F + f0 + fl;
      for (int c = rsr.c0; c < Cr; c += 32) {
        float acc = in_b[c];
        for (int ci = 0; ci < p.Cin; ++ci) acc = fmaf(in_w[c * p.Cin + ci], fg_to_float(fr[ci * Tn * F]), acc);
        xs[m * Cr + c] = acc;
      }
    }
  }

  // The conditioning class of each sequence for step j (published by the caller's barrier).
  FG_DEVICE void step_classes(int j) {
    if (tid != 0) return;
    for (int s = 0; s < Sc; ++s) {
      const long long b = s0 + s;
      int c;
      if (p.mode == FG_MODE_TEACHER) c = j == 0 ? p.start_class : (int)p.classes[b * nsteps + j - 1];
      else if (force) c = (int)p.classes[b * nsteps + j];  // shifted by the op: column 0 the state's class
      else if (j == 0) c = (int)p.samples[b * sstride];  // the host's, before the launch
      else if (leader) c = cls[s];  // sampled by this block at the end of step j-1
      else {
        if (s == 0) { fg_wait_geq(gflags, (unsigned)j, "the leader's sample", p.spin_timeout_ns); fg_fence(); }
        c = (int)fg_ldcg(p.samples + b * sstride + j);
      }
      cls[s] = c;
    }
  }

  // (2) A = [x(t-d) | x(t)] and the history write of x(t), for layer l of the step whose
  // first frame has index t0 in the generation.
  FG_DEVICE void layer_operands(int l, long long t0) {
    const int d = p.dil[l], R = d + K;
    const int slot0 = (int)(t0 % R);  // ring slot of frame t0 (one 64-bit remainder per layer)
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
        As[m * p.ldA + c] = past;
        As[m * p.ldA + Cr + c] = cur;
        cur_ring[c] = cur;  // slots of frames t0..t0+K-1: never read above
      }
    }
  }

  // (3) dilated conv (both taps) + conditioning + gate -> Z, then (4) skip and residual in one
  // GEMM (the last layer's residual is never used), each after a barrier. A forced step (never
  // the last layer) takes the residual columns alone: W_sr's rows [C_s, C_s + C_r), at column
  // C_s of W^T (fma) or past the C_s / 8 n-tiles of the fragments (mma: C_s x C_h elements),
  // each output column computed as in the whole GEMM, so the history is the same.
  FG_DEVICE void layer_gemms(int l) {
    const long long lbase = p.off_layers + (long long)l * p.layer_stride;
    const T* wdil = reinterpret_cast<const T*>(wseg(lbase + p.loff_wdil, es * 4 * Ch * Cr));
    const T* wsr = reinterpret_cast<const T*>(wseg(lbase + p.loff_wsr, es * (Cs + Cr) * Ch));
    const float* bsr = reinterpret_cast<const float*>(wseg(lbase + p.loff_bsr, 4LL * (Cs + Cr)));
    const float* cond_l = p.cond + (long long)l * p.Qc * 2 * Ch;
    const int ldZ = p.ldZ;
    fg_gemm_pair<T, MMA>(As, p.ldA, Mp, M, 2 * Cr, wdil, Ch, [&](int m, int n, float af, float ag) {
      // one sequence per block (the common case): no division per element
      const float* crow = cond_l + (long long)cls[Sc == 1 ? 0 : m / KF] * (2 * Ch);
      af += fg_ldg(crow + n);
      ag += fg_ldg(crow + Ch + n);
      Zs[m * ldZ + n] = fg_from_float<T>(fg_tanh(af) * fg_sigmoid(ag));
    });
    fg_sync();

    // (4) skip and residual
    if (force) {
      const T* wres = wsr + (MMA ? (long long)Cs * Ch : (long long)Cs);
      fg_gemm<T, MMA>(Zs, ldZ, Mp, M, Ch, wres, Cs + Cr, Cr,
                      [&](int m, int n, float acc) { xs[m * Cr + n] += acc + bsr[Cs + n]; });
      return;
    }
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
  }

  // (5) head: h = W_h2 relu(W_h1 relu(skip) + b_h1) + b_h2
  FG_DEVICE void head() {
    const int ldA = p.ldA, ldZ = p.ldZ;
    for (int m = rss.r0; rss.on && m < M; m += rss.rstep)
      for (int c = rss.c0; c < Cs; c += 32) As[m * ldA + c] = fg_from_float<T>(fmaxf(sk[m * Cs + c], 0.f));
    fg_sync();
    fg_gemm<T, MMA>(As, ldA, Mp, M, Cs, h1w, Co, Co, [&](int m, int n, float acc) {
      Zs[m * ldZ + n] = fg_from_float<T>(fmaxf(acc + h1b[n], 0.f));
    });
    fg_sync();
    fg_gemm<T, MMA>(Zs, ldZ, Mp, M, Co, h2w, Co, Co, [&](int m, int n, float acc) { hs[m * Co + n] = acc + h2b[n]; });
  }

  // (6) this block's share of the downsampling: part[s][q] = sum_{fl,k,c} Wd[fl][k][c][q] h.
  // A thread owns one q (and a chunk of the (fl, k) pairs) for up to FG_SMAX sequences at
  // once, so each weight (streamed from L2 when down_w is not resident) is read once per
  // FG_SMAX sequences of the block instead of once per sequence.
  FG_DEVICE void downsample() {
    const int items = Sc * Q;
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
  }

  // (7) a follower hands its partial logits of step j to the leader.
  FG_DEVICE void send_partials(int j) {
    const int items = Sc * Q;
    if (tid == 0 && j > 0) { fg_wait_geq(gflags, (unsigned)j, "the leader to consume partials", p.spin_timeout_ns); fg_fence(); }
    fg_sync();
    float* gp = p.partials + ((long long)grp * p.nf + fs) * p.S * Q;
    for (int r = tid; r < items; r += nthr) gp[r] = part[r];
    fg_sync();
    if (tid == 0) { fg_fence(); fg_store_release(gflags + fs, (unsigned)(j + 1)); }
  }

  // (7) the leader sums the partial logits of step j in block order, then writes the
  // teacher-forced logits or samples, and releases the followers.
  FG_DEVICE void reduce_and_sample(int j) {
    const int items = Sc * Q;
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
};

// ---------------------------------------------------------------------------------------------
// The kernel: the phases of every step, with the barriers between them.
// ---------------------------------------------------------------------------------------------
template <class T, bool MMA>
FG_GLOBAL void FG_LAUNCH_BOUNDS(FG_MAX_THREADS) fg_persistent_kernel(const FG_GRID_CONSTANT FgParams p) {
  static_assert(!MMA || sizeof(T) == 2, "the tensor-core path is for 16-bit types");
  FG_DECLARE_SMEM(smem);
  FgBlock<T, MMA> blk(p, smem);
  blk.load_resident();
  fg_sync();
  for (int j = 0; j < p.steps; ++j) {
    const long long t0 = (p.step0 + j) * p.K;   // the step's first frame in the generation (rings)
    blk.input_projection((long long)j * p.K);
    blk.step_classes(j);
    fg_sync();
    for (int l = 0; l < p.L; ++l) {
      blk.layer_operands(l, t0);
      fg_sync();
      if (blk.force && l + 1 == p.L) break;  // the last layer's output feeds only the skip sums
      blk.layer_gemms(l);
      fg_sync();
    }
    if (blk.force) continue;
    blk.head();
    fg_sync();
    blk.downsample();
    fg_sync();
    if (blk.leader) blk.reduce_and_sample(j);
    else blk.send_partials(j);
  }
}

}  // namespace fastgen_cuda
