// fastgen fused CPU backend, the torch-free part: packed weights, microkernels, the loop.
//
// Weights are packed once (pack) into a layout made for the microkernels:
//   - every channel count is padded to a multiple of 8 floats (one AVX2 vector; padded
//     weights, biases and therefore activations are zero);
//   - every matrix used as "rows x in @ in x out" is stored in column panels of 16 output
//     channels (the last one 8 wide where the padded count is an odd number of vectors): a
//     panel is (in x 16) contiguous, so the register-blocked kernel streams it linearly;
//   - the dilated conv has its filter and gate channels interleaved per 8-channel group, so
//     one 16-wide panel yields 8 filter and the matching 8 gate pre-activations and the gate
//     is applied in registers; the conditioning (cond_emb @ cond_w^T + cond_b + dil_b) is
//     folded into a per-layer table over classes in the same interleaved order.
// Generation keeps one ring buffer per layer and sequence of (dilation + K) frames.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

// Internal to the extension module, and hidden like the pybind11 internals that wrap these
// types (else GCC warns about the visibility of PackedWeights' Python class).
#pragma GCC visibility push(hidden)

namespace fastgen {
namespace cpu {

constexpr int kVectorWidth = 8;  // floats per vector: channel counts are padded to a multiple
constexpr int kPanel = 16;       // output channels per weight panel

// What the native code can represent (fastgen.NetworkSpec's plausible ranges are tighter and
// refuse a spec first): every size fits the int the microkernels take, any product of a few
// of them fits int64 (checked regardless, see checked_size.h).
constexpr int64_t kMaxDim = int64_t(1) << 20;       // any channel count, class count, F or K
constexpr int64_t kMaxLayers = int64_t(1) << 16;
constexpr int64_t kMaxDilation = int64_t(1) << 30;
constexpr int64_t kMaxStepRows = int64_t(1) << 30;  // K * F * padded C_o: the kernels' int row math

// A zero-initialized, 64-byte aligned float array.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n);
  AlignedBuffer(AlignedBuffer&&) noexcept = default;
  AlignedBuffer& operator=(AlignedBuffer&&) noexcept = default;
  float* data() { return ptr_.get(); }
  const float* data() const { return ptr_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> ptr_;
  size_t n_ = 0;
};

struct PackedWeights {
  // Network sizes (from the weight shapes) and their padded versions.
  int64_t Cin = 0, F = 0, K = 0, Cr = 0, Ch = 0, Cs = 0, Co = 0, Q = 0, Qc = 0, E = 0, L = 0;
  int64_t Crp = 0, Chp = 0, Csp = 0, Cop = 0, Qp = 0;
  std::vector<int64_t> dilations;

  AlignedBuffer in_w;        // (Cin, Crp)
  AlignedBuffer in_b;        // (Crp)
  AlignedBuffer dil_w;       // L x panels of (2*Crp) x 16, filter/gate interleaved
  AlignedBuffer cond_table;  // L x Qc x 2*Chp, same interleaved order, biases folded in
  AlignedBuffer skip_w;      // L x panels of Chp -> Csp
  AlignedBuffer res_w;       // (L - 1) x panels of Chp -> Crp (the last layer has none)
  AlignedBuffer res_b;       // (L - 1) x Crp
  AlignedBuffer skip_b;      // Csp: the sum of every layer's skip bias
  AlignedBuffer head1_w, head1_b;  // panels Csp -> Cop, (Cop)
  AlignedBuffer head2_w, head2_b;  // panels Cop -> Cop, (Cop)
  AlignedBuffer down_w, down_b;    // panels (K*F*Cop) -> Qp, input index (k*F + f)*Cop + c; (Qp)

  // From plan_layout: element counts of the packed buffers above, and the history ring layout
  // of one sequence (per layer: its offset in elements and its capacity in frames, d + K).
  int64_t n_in_w = 0, n_dil_w = 0, n_cond_table = 0, n_skip_w = 0, n_res_w = 0, n_res_b = 0, n_head1_w = 0,
          n_head2_w = 0, n_down_w = 0;
  std::vector<int64_t> ring_off, ring_cap;
  int64_t ring_stride = 0;  // ring elements per sequence

  size_t nbytes() const;
  double flops = 0;  // per step of one sequence: NetworkSpec.flops_per_step, given at packing
  double flops_per_step() const { return flops; }
  std::string repr() const;
};

// One call: generate (uniforms and samples set), teacher forced (classes and logits_out set) or
// forced (classes set, force): the classes given, nothing output, only the layers run (the
// history advances; no skip sums, last layer's conv, head, output conv or sampling).
struct Job {
  const PackedWeights& pw;
  const float* frames;  // (B, Cin, T, F) contiguous
  int64_t B, n, T;      // T = n * K
  const float* uniforms = nullptr;   // (B, n)
  double temperature = 1.0;
  int64_t* samples = nullptr;        // (B, n)
  const int64_t* classes = nullptr;  // (B, n)
  float* logits_out = nullptr;       // (B, n, Q)
  bool force = false;
  int64_t start_class = 0;
  // Continuing a generation (optional): the caller's history rings (B x ring_stride floats,
  // else fresh zeroed ones are allocated), the absolute index of the first step (the ring
  // slots are taken modulo the capacity of absolute frame indices), and the class that
  // conditions each sequence's first step (B; else start_class).
  float* rings = nullptr;
  int64_t step0 = 0;
  const int64_t* first_class = nullptr;
};

// Checks the network sizes and dilations set in p (Cin .. F, L, dilations) against the limits
// above, then derives the padded sizes, the buffer element counts and the ring layout, every
// product overflow-checked. Returns "" or what is wrong; allocates nothing.
std::string plan_layout(PackedWeights& p);

// Allocates p's packed buffers (zeroed) at the sizes plan_layout set.
void allocate_buffers(PackedWeights& p);

// "" when a job of B sequences x n steps fits p's sizes (rings, scratch, logits: every
// product overflow-checked), else what is wrong. run_job checks it too.
std::string check_job(const PackedWeights& p, int64_t B, int64_t n);

// Run the whole loop on num_threads OpenMP threads (call without the GIL). split: with fewer
// sequences than threads, split each sequence's F positions across threads: 1 always, 0 never,
// -1 (auto) only where a step has enough work for the barrier each step then needs to cost
// little, and only while the threads do not wait long at it (a busy machine): else one thread
// per sequence goes on alone. -2 (for tests) splits, then goes on alone after a few steps.
void run_job(const Job& job, int num_threads, int split);

// Pack get(o, i) (o < nout valid, padded to nout_pad; i < nin_pad) into panels of kPanel.
template <typename Get>
void pack_panels(float* dst, int64_t nin_pad, int64_t nout, int64_t nout_pad, Get get) {
  for (int64_t c0 = 0; c0 < nout_pad; c0 += kPanel) {
    const int64_t w = nout_pad - c0 < kPanel ? nout_pad - c0 : kPanel;
    float* p = dst + c0 * nin_pad;
    for (int64_t i = 0; i < nin_pad; ++i)
      for (int64_t c = 0; c < w; ++c) p[i * w + c] = (c0 + c < nout) ? (float)get(c0 + c, i) : 0.0f;
  }
}

}  // namespace cpu
}  // namespace fastgen

#pragma GCC visibility pop
