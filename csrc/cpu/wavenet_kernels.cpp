// fastgen fused CPU backend: the generation loop and its threads, and sampling (a step's
// arithmetic is in step_kernels.cpp, one copy per instruction-set path, see isa.h; the sizes
// and buffers in layout.cpp; wavenet_cpu.h describes the packed layout). Plain C++ and OpenMP:
// no torch headers, so it compiles quickly.
#include "cpu/wavenet_kernels.h"

#include <omp.h>

#include "cpu/checked_size.h"
#include "cpu/isa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // _mm_pause
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
// The generation loop.

class Runner {
 public:
  // The ring layout is plan_layout's (overflow-checked once, at packing); the job's sizes are
  // checked again here, so no caller can hand the loop a batch its buffers cannot index.
  Runner(const Job& job) : job_(job), pw_(job.pw), k_(kernels()), ring_off_(job.pw.ring_off),
                           ring_cap_(job.pw.ring_cap), ring_stride_(job.pw.ring_stride) {
    const std::string err = check_job(pw_, job.B, job.n);
    if (!err.empty()) throw std::length_error("fastgen cpu: " + err);
    const PackedWeights& p = pw_;
    kw_.Cin = p.Cin, kw_.F = p.F, kw_.K = p.K, kw_.Crp = p.Crp, kw_.Chp = p.Chp, kw_.Csp = p.Csp, kw_.Cop = p.Cop;
    kw_.Qp = p.Qp, kw_.Qc = p.Qc, kw_.L = p.L;
    kw_.dilations = p.dilations.data(), kw_.ring_off = ring_off_.data(), kw_.ring_cap = ring_cap_.data();
    kw_.in_w = p.in_w.data(), kw_.in_b = p.in_b.data(), kw_.dil_w = p.dil_w.data();
    kw_.cond_table = p.cond_table.data(), kw_.skip_w = p.skip_w.data(), kw_.res_w = p.res_w.data();
    kw_.res_b = p.res_b.data(), kw_.skip_b = p.skip_b.data(), kw_.head1_w = p.head1_w.data();
    kw_.head1_b = p.head1_b.data(), kw_.head2_w = p.head2_w.data(), kw_.head2_b = p.head2_b.data();
    kw_.down_w = p.down_w.data(), kw_.down_b = p.down_b.data();
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
    StepRows rows() {  // the vectors keep their size: the pointers stay valid
      return {past.data(), cur.data(), nxt.data(), zr.data(), zw.data(), sr.data(), sw.data(), h1r.data(), h1w.data(),
              hw.data()};
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
      if (job_.force) {  // only the layers: positions never meet, so no barrier either
        for (int64_t b = b0; b < b1; ++b) {
          step_positions(b, j, cls[b - b0], f0, f1, s);
          cls[b - b0] = job_.classes[b * n + j];
        }
        continue;
      }
      for (int64_t b = b0; b < b1; ++b) {
        float* H = s.H.data() + (b - b0) * Pt * p.Cop;
        for (int64_t r = 0; r < Pt; ++r) s.hw[r] = H + r * p.Cop;
        step_positions(b, j, cls[b - b0], f0, f1, s);
        hseq[b - b0] = H;
      }
      // Output conv on this thread's positions.
      float* partial = partial_.data() + (j % 2) * B * np_max * p.Qp;
      for (int64_t i = 0; i < nb; ++i)
        lrow[i] = whole ? s.logits.data() + i * p.Qp : partial + ((b0 + i) * np_max + part) * p.Qp;
      k_.output_conv(kw_, nb, (int)Pt, s.pos.data(), hseq.data(), lrow.data(), whole);
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
  // s.hw (row r = k * nf + (f - f0)). A forced step (job_.force) stops once the last layer's
  // input is in its ring: the skip sums and the head feed only the output.
  void step_positions(int64_t b, int64_t j, int64_t cls, int64_t f0, int64_t f1, Scratch& s) {
    const PackedWeights& p = pw_;
    k_.step(kw_, job_.frames + b * p.Cin * job_.T * p.F, job_.T, j, (job_.step0 + j) * p.K, cls,
            ring_base_ + b * ring_stride_, f0, f1, job_.force, s.rows());
  }

  const Job& job_;
  const PackedWeights& pw_;
  const Kernels& k_;  // the instruction-set path (isa.h)
  KernelWeights kw_;  // pw_ as k_ reads it
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

}  // namespace cpu
}  // namespace fastgen
