// fastgen fused CPU backend: the sizes of a packed network and of a job -- every padded
// dimension, buffer element count and ring offset derived and overflow-checked once -- and the
// aligned buffers that hold them. Plain C++: no torch headers.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>

#include "cpu/checked_size.h"
#include "cpu/wavenet_kernels.h"

namespace fastgen {
namespace cpu {
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
  p.n_res_w = checked_product({p.L - 1, p.Chp, p.Crp});  // none for the last layer
  p.n_res_b = checked_product({p.L - 1, p.Crp});
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
