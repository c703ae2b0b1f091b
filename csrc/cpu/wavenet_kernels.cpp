// fastgen fused CPU backend: microkernels and the generation loop (see wavenet_cpu.h for the
// packed layout). Plain C++ and OpenMP: no torch headers, so it compiles quickly.
#include "cpu/wavenet_kernels.h"

#include <omp.h>

#include "cpu/checked_size.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // _mm_pause; with AVX, _mm256_{min,max,rcp}_ps
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>

namespace fastgen {
namespace cpu {

namespace {

// ---------------------------------------------------------------------------------------------
// Vectors: GCC/Clang vector extensions of 8 floats (one AVX2 register with -march=native; the
// compiler splits them where the target is narrower).
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

// ---------------------------------------------------------------------------------------------
// Sampling, exactly the rule of fastgen.reference.sample for float32 logits.
int64_t sample_row(const float* logits, int64_t Q, float u, double temperature, float* cdf) {
  if (temperature == 0) {  // argmax, lowest index on ties
    int64_t best = 0;
    for (int64_t i = 1; i < Q; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  float m = logits[0];
  for (int64_t i = 1; i < Q; ++i) m = std::max(m, logits[i]);
  const float T = (float)temperature;
  double acc = 0.0;  // torch's CPU cumsum of float32 accumulates in double
  for (int64_t i = 0; i < Q; ++i) {
    const float d = logits[i] - m;
    acc += (double)std::exp(d / T);
    cdf[i] = (float)acc;
  }
  const float thr = u * cdf[Q - 1];
  int64_t count = 0;
  for (int64_t i = 0; i < Q; ++i) count += cdf[i] <= thr;
  return std::min(count, Q - 1);
}

// ---------------------------------------------------------------------------------------------
// A barrier that spins briefly, then sleeps: when the machine is busy and a partner thread is
// descheduled, waiting threads give their core away instead of burning it.
class Barrier {
 public:
  void reset(int n) {
    n_ = n;
    count_.store(0);
  }
  void wait() {
    const unsigned g = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        gen_.store(g + 1, std::memory_order_release);
      }
      cv_.notify_all();
      return;
    }
    for (int i = 0; i < kSpins; ++i) {
      if (gen_.load(std::memory_order_acquire) != g) return;
      relax();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return gen_.load(std::memory_order_acquire) != g; });
  }

 private:
  static constexpr int kSpins = 1000;  // a few tens of microseconds, by the processor's pause
  static void relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }
  int n_ = 1;
  std::atomic<int> count_{0};
  std::atomic<unsigned> gen_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
};

// ---------------------------------------------------------------------------------------------
// The generation loop.

class Runner {
 public:
  // The ring layout is plan_layout's (overflow-checked once, at packing); the job's sizes are
  // checked again here, so no caller can hand the loop a batch its buffers cannot index.
  Runner(const Job& job) : job_(job), pw_(job.pw), ring_off_(job.pw.ring_off), ring_cap_(job.pw.ring_cap),
                           ring_stride_(job.pw.ring_stride) {
    const std::string err = check_job(pw_, job.B, job.n);
    if (!err.empty()) throw std::length_error("fastgen cpu: " + err);
  }

  // split: 1 splits a sequence's positions across threads whenever there are fewer sequences
  // than threads, 0 never, -1 (auto) only where each part keeps enough work per step for the
  // barrier a step then needs to cost little, and only while the barrier waits stay short (on
  // a busy machine a descheduled partner stalls every step; then one thread per sequence
  // finishes the job alone).
  void run(int num_threads, int split) {
    const PackedWeights& p = pw_;
    const int64_t B = job_.B;
    if (job_.rings) {
      ring_base_ = job_.rings;
    } else {
      rings_ = AlignedBuffer((size_t)(B * ring_stride_));  // no overflow: check_job
      ring_base_ = rings_.data();
    }
    int64_t np = 1;  // parts per sequence
    if (split != 0 && B < num_threads) {
      np = std::min<int64_t>(p.F, num_threads / B);
      if (split == -1) np = std::min<int64_t>(np, (int64_t)(p.flops_per_step() / kMinPartFlops));
      np = std::max<int64_t>(np, 1);
    }
    adaptive_ = split < 0;
    force_stop_ = split == -2;  // for tests: split, then stop splitting at the first check
    // Partial logits of each part, double-buffered by step parity: step j's are read (by
    // every part) before the barrier of step j + 1, after which step j + 2 overwrites them.
    partial_ = AlignedBuffer((size_t)(2 * B * np * p.Qp));
    const int threads = (int)(np == 1 ? std::min<int64_t>(num_threads, B) : B * np);
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
      barrier_.reset(omp_get_num_threads());
      thread_main(omp_get_thread_num(), omp_get_num_threads(), np);
    }
    if (out_of_memory_) throw std::bad_alloc();
  }

 private:
  static constexpr double kMinPartFlops = 1e7;  // auto split: least work of a part per step
  static constexpr int kCheckSteps = 8;         // auto split: steps between looks at the waits
  static constexpr double kMaxWait = 0.25;      // auto split: most waiting per unit of work

  // Thread scratch, sized for `rows` rows of `nseq` sequences; set_rows points the row
  // pointers at it for positions f in [f0, f1).
  struct Scratch {
    AlignedBuffer Z, S, H1, H, logits, cdf;
    std::vector<const float*> past, cur, zr, sr, h1r;
    std::vector<float*> nxt, zw, sw, h1w, hw;
    std::vector<int> pos;

    Scratch(const PackedWeights& p, int64_t rows, int64_t nseq) {
      rows = std::max<int64_t>(rows, 1);
      nseq = std::max<int64_t>(nseq, 1);
      Z = AlignedBuffer((size_t)(rows * p.Chp));
      S = AlignedBuffer((size_t)(rows * p.Csp));
      H1 = AlignedBuffer((size_t)(rows * p.Cop));
      H = AlignedBuffer((size_t)(nseq * rows * p.Cop));
      logits = AlignedBuffer((size_t)(nseq * p.Qp));
      cdf = AlignedBuffer((size_t)p.Q);
      for (auto* v : {&past, &cur, &zr, &sr, &h1r}) v->resize(rows);
      for (auto* v : {&nxt, &zw, &sw, &h1w, &hw}) v->resize(rows);
      pos.resize(rows);
    }
    void set_rows(const PackedWeights& p, int64_t f0, int64_t f1) {
      const int64_t nf = f1 - f0;
      for (int64_t r = 0; r < p.K * nf; ++r) {
        zr[r] = zw[r] = Z.data() + r * p.Chp;
        sr[r] = sw[r] = S.data() + r * p.Csp;
        h1r[r] = h1w[r] = H1.data() + r * p.Cop;
        pos[r] = (int)((r / nf) * p.F + f0 + r % nf);
      }
    }
  };

  void thread_main(int t, int nt, int64_t np_max) {  // np_max: parts per sequence planned
    using clock = std::chrono::steady_clock;
    const PackedWeights& p = pw_;
    const int64_t B = job_.B, n = job_.n;
    // This thread's work: sequences [b0, b1) on positions f in [f0, f1).
    int64_t np, b0, b1, f0 = 0, f1 = p.F, part = 0;
    if (np_max == 1 || B >= nt) {
      np = 1;
      b0 = t * B / nt;
      b1 = (t + 1) * B / nt;
    } else {
      np = std::max<int64_t>(1, std::min<int64_t>(nt / B, np_max));
      if (t < B * np) {
        b0 = t / np;
        b1 = b0 + 1;
        part = t % np;
        f0 = part * p.F / np;
        f1 = (part + 1) * p.F / np;
      } else {
        b0 = b1 = 0;  // idle, but still meets the barriers
      }
    }
    const int64_t nb = b1 - b0;
    const bool adaptive = adaptive_ && np > 1;
    // Everything the loop needs is allocated here; if any thread cannot, none starts it.
    // Part 0 of a sequence may have to take over all its positions (adaptive split).
    std::unique_ptr<Scratch> scratch;
    std::vector<const float*> hseq;
    std::vector<float*> lrow;
    std::vector<int64_t> cls;  // the class that conditions each sequence's next step
    try {
      scratch = std::make_unique<Scratch>(p, p.K * (adaptive && part == 0 ? p.F : f1 - f0), nb);
      hseq.resize(std::max<int64_t>(nb, 1));
      lrow.resize(std::max<int64_t>(nb, 1));
      cls.assign(std::max<int64_t>(nb, 1), job_.start_class);
      if (job_.first_class)
        for (int64_t b = b0; b < b1; ++b) cls[b - b0] = job_.first_class[b];
    } catch (const std::bad_alloc&) {
      out_of_memory_ = true;
    }
#pragma omp barrier
    if (out_of_memory_) return;
    Scratch& s = *scratch;
    s.set_rows(p, f0, f1);
    double work = 0, wait = 0;  // seconds, this check window (adaptive split)
    clock::time_point left = clock::now();

    for (int64_t j = 0; j < n; ++j) {
      const bool whole = np == 1;
      const int64_t Pt = p.K * (f1 - f0);
      for (int64_t b = b0; b < b1; ++b) {
        float* H = s.H.data() + (b - b0) * Pt * p.Cop;
        for (int64_t r = 0; r < Pt; ++r) s.hw[r] = H + r * p.Cop;
        step_positions(b, j, cls[b - b0], f0, f1, s);
        hseq[b - b0] = H;
      }
      // Output conv on this thread's positions, sequences blocked by MAX_ROWS.
      float* partial = partial_.data() + (j % 2) * B * np_max * p.Qp;
      for (int64_t i = 0; i < nb; ++i)
        lrow[i] = whole ? s.logits.data() + i * p.Qp : partial + ((b0 + i) * np_max + part) * p.Qp;
      for (int64_t i0 = 0; i0 < nb; i0 += MAX_ROWS) {
        const int R = (int)std::min<int64_t>(MAX_ROWS, nb - i0);
        for (int64_t c0 = 0; c0 < p.Qp; c0 += PANEL) {
          const float* W = pw_.down_w.data() + c0 * p.K * p.F * p.Cop;
          const float* bias = whole ? pw_.down_b.data() + c0 : nullptr;
          if (p.Qp - c0 >= PANEL)
            down_rows<2>(R, (int)Pt, s.pos.data(), (int)p.Cop, hseq.data() + i0, W, bias, lrow.data() + i0, (int)c0);
          else
            down_rows<1>(R, (int)Pt, s.pos.data(), (int)p.Cop, hseq.data() + i0, W, bias, lrow.data() + i0, (int)c0);
        }
      }
      if (whole) {
        for (int64_t b = b0; b < b1; ++b)
          cls[b - b0] = finish(b, j, s.logits.data() + (b - b0) * p.Qp, s.cdf.data(), true);
        continue;
      }
      const bool check = adaptive && j % kCheckSteps == kCheckSteps - 1;
      const clock::time_point arrived = clock::now();
      work += std::chrono::duration<double>(arrived - left).count();
      if (check && nb && (force_stop_ || wait > kMaxWait * work)) stop_split_.fetch_add(1, std::memory_order_relaxed);
      barrier_.wait();  // orders the votes above before the reads below
      left = clock::now();
      wait += std::chrono::duration<double>(left - arrived).count();
      if (nb) {  // every part sums the parts in the same order and so samples the same class
        float* out = s.logits.data();
        const float* src = partial + b0 * np_max * p.Qp;
        for (int64_t q = 0; q < p.Qp; ++q) {
          float acc = pw_.down_b.data()[q];
          for (int64_t k = 0; k < np; ++k) acc += src[k * p.Qp + q];
          out[q] = acc;
        }
        cls[0] = finish(b0, j, out, s.cdf.data(), part == 0);
      }
      if (check) {
        if (stop_split_.load(std::memory_order_relaxed) > 0) {  // the same answer in every thread
          if (part != 0 || nb == 0) return;                      // part 0 goes on alone
          np = 1;
          f0 = 0;
          f1 = p.F;
          s.set_rows(p, f0, f1);
        }
        work = wait = 0;
      }
    }
  }

  // The class that conditions step j + 1 of sequence b; with `write`, also record step j's
  // logits (teacher forced) or sample.
  int64_t finish(int64_t b, int64_t j, const float* logits, float* cdf, bool write) {
    const int64_t Q = pw_.Q, n = job_.n;
    if (job_.logits_out) {
      if (write) std::memcpy(job_.logits_out + (b * n + j) * Q, logits, Q * sizeof(float));
      return job_.classes[b * n + j];
    }
    const int64_t c = sample_row(logits, Q, job_.uniforms[b * n + j], job_.temperature, cdf);
    if (write) job_.samples[b * n + j] = c;
    return c;
  }

  // Every layer and the head for step j of sequence b on positions f in [f0, f1); h rows in
  // s.hw (row r = k * nf + (f - f0)).
  void step_positions(int64_t b, int64_t j, int64_t cls, int64_t f0, int64_t f1, Scratch& s) {
    const PackedWeights& p = pw_;
    const int64_t nf = f1 - f0, Pt = p.K * nf, F = p.F, Crp = p.Crp, K = p.K;
    float* ring = ring_base_ + b * ring_stride_;
    const int rows = (int)Pt;
    const int64_t tabs = (job_.step0 + j) * K;  // absolute frame index of the step's first frame

    // Input conv of the K new frames into layer 0's ring.
    {
      const float* fr = job_.frames + b * p.Cin * job_.T * F;
      float* r0 = ring + ring_off_[0];
      for (int64_t k = 0; k < K; ++k) {
        const int64_t t = j * K + k, slot = (tabs + k) % ring_cap_[0];
        for (int64_t f = f0; f < f1; ++f) {
          float* dst = r0 + (slot * F + f) * Crp;
          for (int64_t c = 0; c < Crp; c += VW) {
            vf acc = vload(p.in_b.data() + c);
            for (int64_t ci = 0; ci < p.Cin; ++ci)
              acc += vset(fr[(ci * job_.T + t) * F + f]) * vload(p.in_w.data() + ci * Crp + c);
            vstore(dst + c, acc);
          }
        }
      }
    }

    const int64_t dil_stride = 2 * Crp * 2 * p.Chp, skip_stride = p.Chp * p.Csp, res_stride = p.Chp * Crp;
    for (int64_t l = 0; l < p.L; ++l) {
      const int64_t d = p.dilations[l], cap = ring_cap_[l];
      const bool last = l + 1 == p.L;
      float* rl = ring + ring_off_[l];
      float* rn = last ? nullptr : ring + ring_off_[l + 1];
      const int64_t capn = last ? 1 : ring_cap_[l + 1];
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
      gemm<kGate>(rows, (int)Crp, s.past.data(), (int)Crp, s.cur.data(), p.dil_w.data() + l * dil_stride,
                  (int)(2 * p.Chp), p.cond_table.data() + (l * p.Qc + cls) * 2 * p.Chp, nullptr, s.zw.data());
      // skip += Ws z (+ all skip biases at layer 0); relu after the last layer
      const float* sbias = l == 0 ? p.skip_b.data() : nullptr;
      const float* const* sinit = l == 0 ? nullptr : s.sr.data();
      if (last)
        gemm<kRelu>(rows, (int)p.Chp, s.zr.data(), 0, nullptr, p.skip_w.data() + l * skip_stride, (int)p.Csp,
                    sbias, sinit, s.sw.data());
      else
        gemm<kStore>(rows, (int)p.Chp, s.zr.data(), 0, nullptr, p.skip_w.data() + l * skip_stride, (int)p.Csp,
                     sbias, sinit, s.sw.data());
      // next layer's input x + Wr z + br, straight into its ring
      if (!last)
        gemm<kStore>(rows, (int)p.Chp, s.zr.data(), 0, nullptr, p.res_w.data() + l * res_stride, (int)Crp,
                     p.res_b.data() + l * Crp, s.cur.data(), s.nxt.data());
    }
    gemm<kRelu>(rows, (int)p.Csp, s.sr.data(), 0, nullptr, p.head1_w.data(), (int)p.Cop, p.head1_b.data(), nullptr,
                s.h1w.data());
    gemm<kStore>(rows, (int)p.Cop, s.h1r.data(), 0, nullptr, p.head2_w.data(), (int)p.Cop, p.head2_b.data(), nullptr,
                 s.hw.data());
  }

  const Job& job_;
  const PackedWeights& pw_;
  std::vector<int64_t> ring_off_, ring_cap_;
  int64_t ring_stride_ = 0;
  AlignedBuffer rings_, partial_;
  float* ring_base_ = nullptr;  // rings_, or the caller's (job.rings)
  Barrier barrier_;
  bool adaptive_ = false, force_stop_ = false;
  std::atomic<int> stop_split_{0};
  std::atomic<bool> out_of_memory_{false};
};

}  // namespace

void run_job(const Job& job, int num_threads, int split) {
  Runner runner(job);                    // checks the sizes: an empty job is checked too
  if (job.B <= 0 || job.n <= 0) return;  // nothing to do (and no thread split to divide by B)
  runner.run(std::max(1, num_threads), split);
}

// ---------------------------------------------------------------------------------------------
// Sizes

namespace {

// "" when v lies in [lo, hi], else the message.
std::string out_of_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return "";
  std::ostringstream o;
  o << name << " must lie in [" << lo << ", " << hi << "], got " << v;
  return o.str();
}

std::string overflow(const char* what) {
  return std::string("the ") + what + " of this network overflow 64-bit sizes (hostile or damaged sizes?)";
}

}  // namespace

std::string plan_layout(PackedWeights& p) {
  const struct { const char* name; int64_t v; } dims[] = {
      {"in_channels", p.Cin}, {"num_features", p.F}, {"frames_per_step", p.K}, {"residual_channels", p.Cr},
      {"hidden_channels", p.Ch}, {"skip_channels", p.Cs}, {"out_channels", p.Co}, {"num_classes", p.Q},
      {"cond_classes", p.Qc}, {"cond_channels", p.E}};
  for (const auto& d : dims) {
    const std::string e = out_of_range(d.name, d.v, 1, kMaxDim);
    if (!e.empty()) return e;
  }
  std::string e = out_of_range("the number of layers", p.L, 1, kMaxLayers);
  if (!e.empty()) return e;
  if ((int64_t)p.dilations.size() != p.L) {
    std::ostringstream o;
    o << p.dilations.size() << " dilations for " << p.L << " layers";
    return o.str();
  }
  for (int64_t d : p.dilations) {
    e = out_of_range("every dilation", d, 1, kMaxDilation);
    if (!e.empty()) return e;
  }
  // Padded sizes: every dimension is at most kMaxDim, so these cannot overflow.
  const int64_t VWl = kVectorWidth;
  p.Crp = checked_round_up(p.Cr, VWl);
  p.Chp = checked_round_up(p.Ch, VWl);
  p.Csp = checked_round_up(p.Cs, VWl);
  p.Cop = checked_round_up(p.Co, VWl);
  p.Qp = checked_round_up(p.Q, VWl);
  const int64_t rows = checked_product({p.K, p.F, p.Cop});
  if (rows < 0 || rows >= kMaxStepRows) {
    std::ostringstream o;
    o << "frames_per_step x num_features x out_channels (" << p.K << " x " << p.F << " x " << p.Co
      << ", padded) must stay below " << kMaxStepRows;
    return o.str();
  }
  p.n_in_w = checked_product({p.Cin, p.Crp});
  p.n_dil_w = checked_product({p.L, 2 * p.Crp, 2 * p.Chp});
  p.n_cond_table = checked_product({p.L, p.Qc, 2 * p.Chp});
  p.n_skip_w = checked_product({p.L, p.Chp, p.Csp});
  p.n_res_w = checked_product({p.L, p.Chp, p.Crp});
  p.n_res_b = checked_product({p.L, p.Crp});
  p.n_head1_w = checked_product({p.Csp, p.Cop});
  p.n_head2_w = checked_product({p.Cop, p.Cop});
  p.n_down_w = checked_product({rows, p.Qp});
  for (int64_t n : {p.n_in_w, p.n_dil_w, p.n_cond_table, p.n_skip_w, p.n_res_w, p.n_res_b, p.n_head1_w,
                    p.n_head2_w, p.n_down_w})
    if (n < 0) return overflow("packed weights");
  // One ring of d + K frames x F positions x Crp channels per layer.
  const int64_t frame = checked_product({p.F, p.Crp});
  p.ring_off.assign(p.L, 0);
  p.ring_cap.assign(p.L, 0);
  int64_t off = 0;
  for (int64_t l = 0; l < p.L; ++l) {
    int64_t cap, elems;
    if (frame < 0 || !checked_add(p.dilations[l], p.K, &cap) || !checked_mul(cap, frame, &elems))
      return overflow("history ring buffers");
    p.ring_cap[l] = cap;
    p.ring_off[l] = off;
    if (!checked_add(off, elems, &off)) return overflow("history ring buffers");
  }
  p.ring_stride = off;
  return "";
}

void allocate_buffers(PackedWeights& p) {
  p.in_w = AlignedBuffer((size_t)p.n_in_w);
  p.in_b = AlignedBuffer((size_t)p.Crp);
  p.dil_w = AlignedBuffer((size_t)p.n_dil_w);
  p.cond_table = AlignedBuffer((size_t)p.n_cond_table);
  p.skip_w = AlignedBuffer((size_t)p.n_skip_w);
  p.res_w = AlignedBuffer((size_t)p.n_res_w);
  p.res_b = AlignedBuffer((size_t)p.n_res_b);
  p.skip_b = AlignedBuffer((size_t)p.Csp);
  p.head1_w = AlignedBuffer((size_t)p.n_head1_w);
  p.head1_b = AlignedBuffer((size_t)p.Cop);
  p.head2_w = AlignedBuffer((size_t)p.n_head2_w);
  p.head2_b = AlignedBuffer((size_t)p.Cop);
  p.down_w = AlignedBuffer((size_t)p.n_down_w);
  p.down_b = AlignedBuffer((size_t)p.Qp);
}

std::string check_job(const PackedWeights& p, int64_t B, int64_t n) {
  if (B < 0 || n < 0) {
    std::ostringstream o;
    o << "batch and steps must be >= 0, got " << B << " and " << n;
    return o.str();
  }
  if (p.ring_stride <= 0 || (int64_t)p.ring_off.size() != p.L || (int64_t)p.ring_cap.size() != p.L)
    return "the weights were not packed (plan_layout)";
  // rings; a thread's step activations (every position of a sequence); partial logits of the
  // position split (two step parities, at most F parts); the logits; the frames' time axis
  const int64_t sizes[] = {checked_product({B, p.ring_stride}), checked_product({B, p.K, p.F, p.Cop}),
                           checked_product({2, B, p.F, p.Qp}), checked_product({B, n, p.Qp}),
                           checked_product({n, p.K})};
  for (int64_t v : sizes) {
    if (v < 0) {
      std::ostringstream o;
      o << "a batch of " << B << " sequence(s) x " << n << " steps overflows the buffer sizes of this network "
        << "(history of one sequence: " << p.ring_stride << " values)";
      return o.str();
    }
  }
  return "";
}

// ---------------------------------------------------------------------------------------------

AlignedBuffer::AlignedBuffer(size_t n) : n_(n) {
  if (n > (SIZE_MAX - 127) / sizeof(float)) throw std::bad_alloc();  // the rounding below would wrap
  const size_t bytes = std::max<size_t>(64, (n * sizeof(float) + 63) / 64 * 64);
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  ptr_.reset(p);
}

double PackedWeights::flops_per_step() const {
  const double P = (double)(K * F);
  const double per_pos = Cin * Cr + L * (2.0 * Cr * 2 * Ch + Ch * Cs + Ch * Cr) + Cs * Co + Co * Co;
  return 2.0 * (P * per_pos + L * E * 2.0 * Ch + P * Co * Q);
}

size_t PackedWeights::nbytes() const {
  size_t n = 0;
  for (const AlignedBuffer* b : {&in_w, &in_b, &dil_w, &cond_table, &skip_w, &res_w, &res_b, &skip_b, &head1_w,
                                 &head1_b, &head2_w, &head2_b, &down_w, &down_b})
    n += b->size() * sizeof(float);
  return n;
}

std::string PackedWeights::repr() const {
  std::ostringstream o;
  o << "PackedWeights(C_in=" << Cin << ", F=" << F << ", K=" << K << ", C_r=" << Cr << ", C_h=" << Ch
    << ", C_s=" << Cs << ", C_o=" << Co << ", Q=" << Q << ", cond_classes=" << Qc << ", layers=" << L
    << ", nbytes=" << nbytes() << ")";
  return o.str();
}

}  // namespace cpu
}  // namespace fastgen
