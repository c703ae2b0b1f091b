// fastgen fused CPU backend: packing and argument checks (see wavenet_cpu.h; the kernels and the
// loop are in wavenet_kernels.cpp, the torch.ops registration in ops.cpp).
#include "cpu/wavenet_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>

namespace fastgen {
namespace cpu {

namespace {

constexpr int VW = kVectorWidth;
constexpr int PANEL = kPanel;

// A weight as a contiguous double tensor, its shape checked.
at::Tensor weight(const std::map<std::string, at::Tensor>& w, const std::string& name,
                  std::vector<int64_t> shape) {
  auto it = w.find(name);
  TORCH_CHECK(it != w.end(), "fastgen cpu pack: missing weight '", name, "'");
  const at::Tensor& t = it->second;
  TORCH_CHECK(t.is_floating_point(), "fastgen cpu pack: weight '", name, "' must be floating point, got ",
              t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), "fastgen cpu pack: weight '", name, "' must be on the CPU");
  TORCH_CHECK(t.sizes().vec() == shape, "fastgen cpu pack: weight '", name, "' has shape ", t.sizes(),
              ", expected ", at::IntArrayRef(shape));
  return t.detach().to(at::kDouble).contiguous();
}

void check_frames(const PackedWeights& pw, const at::Tensor& frames, const char* fn) {
  TORCH_CHECK(frames.device().is_cpu(), "fastgen._C.", fn, ": frames must be a CPU tensor");
  TORCH_CHECK(frames.scalar_type() == at::kFloat, "fastgen._C.", fn, ": frames must be float32, got ",
              frames.scalar_type());
  TORCH_CHECK(frames.dim() == 4 && frames.size(1) == pw.Cin && frames.size(3) == pw.F, "fastgen._C.", fn,
              ": frames must have shape (batch, ", pw.Cin, ", steps*", pw.K, ", ", pw.F, "), got ", frames.sizes());
  TORCH_CHECK(frames.size(2) % pw.K == 0, "fastgen._C.", fn, ": frame count ", frames.size(2),
              " is not a multiple of frames_per_step ", pw.K);
}

// A continued generation's arguments (generate, force): rings (B, ring_stride) float32, the
// first step's index step0 and the class conditioning it, first_class (B,) int64; returns
// first_class contiguous (undefined without one).
at::Tensor check_continuation(const PackedWeights& pw, int64_t B, int64_t n, const std::optional<at::Tensor>& rings,
                              int64_t step0, const std::optional<at::Tensor>& first_class, const char* fn) {
  // absolute frame indices must fit int64 (with room for t - d)
  TORCH_CHECK(step0 >= 0 && step0 <= (INT64_C(1) << 62) / pw.K - n, "fastgen._C.", fn, ": step0 ", step0, " plus ",
              n, " steps is outside what the rings can index");
  if (rings.has_value()) {
    const at::Tensor& r = *rings;
    TORCH_CHECK(r.device().is_cpu() && r.scalar_type() == at::kFloat && r.is_contiguous() && r.dim() == 2 &&
                    r.size(0) == B && r.size(1) == pw.ring_stride,
                "fastgen._C.", fn, ": rings must be a contiguous float32 CPU tensor of shape (", B, ", ",
                pw.ring_stride, ") (PackedWeights.ring_stride), got ", r.scalar_type(), " ", r.sizes());
  }
  at::Tensor first;
  if (first_class.has_value()) {
    first = first_class->contiguous();
    TORCH_CHECK(first.device().is_cpu() && first.scalar_type() == at::kLong && first.dim() == 1 &&
                    first.size(0) == B,
                "fastgen._C.", fn, ": first_class must be an int64 CPU tensor of shape (", B, "), got ",
                first.scalar_type(), " ", first.sizes());
    if (B) {
      const int64_t lo = first.min().item<int64_t>(), hi = first.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < pw.Qc, "fastgen._C.", fn, ": first_class must lie in [0, ", pw.Qc, "), got [", lo,
                  ", ", hi, "]");
    }
  }
  return first;
}

// classes int64 (B, n) within [0, Qc) (they index the conditioning table); returns them contiguous.
at::Tensor check_classes(const PackedWeights& pw, int64_t B, int64_t n, const at::Tensor& classes_in,
                         const char* fn) {
  TORCH_CHECK(classes_in.device().is_cpu() && classes_in.scalar_type() == at::kLong, "fastgen._C.", fn,
              ": classes must be an int64 CPU tensor, got ", classes_in.scalar_type());
  TORCH_CHECK(classes_in.dim() == 2 && classes_in.size(0) == B && classes_in.size(1) == n, "fastgen._C.", fn,
              ": classes must have shape (batch, steps) = (", B, ", ", n, "), got ", classes_in.sizes());
  const at::Tensor classes = classes_in.contiguous();
  if (classes.numel()) {
    const int64_t lo = classes.min().item<int64_t>(), hi = classes.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < pw.Qc, "fastgen._C.", fn, ": classes must lie in [0, ", pw.Qc, "), got values in [",
                lo, ", ", hi, "]");
  }
  return classes;
}

int resolve_threads(int64_t num_threads) {
  return (int)std::max<int64_t>(1, num_threads > 0 ? num_threads : at::get_num_threads());
}

}  // namespace

std::shared_ptr<PackedWeights> pack(const std::map<std::string, at::Tensor>& w,
                                    const std::vector<int64_t>& dilations, double flops_per_step) {
  TORCH_CHECK(std::isfinite(flops_per_step) && flops_per_step >= 0,
              "fastgen cpu pack: flops_per_step must be a finite number >= 0, got ", flops_per_step);
  auto it = w.find("in_w");
  TORCH_CHECK(it != w.end() && it->second.dim() == 2, "fastgen cpu pack: missing or malformed weight 'in_w'");
  auto cw = w.find("cond_emb");
  TORCH_CHECK(cw != w.end() && cw->second.dim() == 2, "fastgen cpu pack: missing or malformed weight 'cond_emb'");
  auto dw = w.find("dil_w0");
  TORCH_CHECK(dw != w.end() && dw->second.dim() == 3, "fastgen cpu pack: missing or malformed weight 'dil_w0'");
  auto sw = w.find("skip_w");
  TORCH_CHECK(sw != w.end() && sw->second.dim() == 3, "fastgen cpu pack: missing or malformed weight 'skip_w'");
  auto hw = w.find("head1_w");
  TORCH_CHECK(hw != w.end() && hw->second.dim() == 2, "fastgen cpu pack: missing or malformed weight 'head1_w'");
  auto ow = w.find("down_w");
  TORCH_CHECK(ow != w.end() && ow->second.dim() == 4, "fastgen cpu pack: missing or malformed weight 'down_w'");

  auto p = std::make_shared<PackedWeights>();
  p->Cr = it->second.size(0);
  p->Cin = it->second.size(1);
  p->Qc = cw->second.size(0);
  p->E = cw->second.size(1);
  p->L = dw->second.size(0);
  TORCH_CHECK(dw->second.size(1) % 2 == 0, "fastgen cpu pack: dil_w0 must have 2*C_h rows");
  p->Ch = dw->second.size(1) / 2;
  p->Cs = sw->second.size(1);
  p->Co = hw->second.size(0);
  p->K = ow->second.size(0);
  p->F = ow->second.size(1);
  p->Q = ow->second.size(3);
  p->dilations = dilations;
  p->flops = flops_per_step;
  // Sizes, dilations and every buffer size derived from them, checked before any allocation.
  const std::string err = plan_layout(*p);
  TORCH_CHECK(err.empty(), "fastgen cpu pack: ", err);
  const int64_t L = p->L, Cin = p->Cin, Cr = p->Cr, Ch = p->Ch, Cs = p->Cs, Co = p->Co, Q = p->Q, E = p->E,
                Qc = p->Qc, K = p->K, F = p->F;
  const int64_t Crp = p->Crp, Chp = p->Chp, Csp = p->Csp, Cop = p->Cop, Qp = p->Qp;

  // Shapes of fastgen.spec.weight_shapes, checked here too (the Python side does as well).
  const at::Tensor in_w = weight(w, "in_w", {Cr, Cin}), in_b = weight(w, "in_b", {Cr});
  const at::Tensor dil_w0 = weight(w, "dil_w0", {L, 2 * Ch, Cr}), dil_w1 = weight(w, "dil_w1", {L, 2 * Ch, Cr});
  const at::Tensor res_w = weight(w, "res_w", {L - 1, Cr, Ch}), res_b = weight(w, "res_b", {L - 1, Cr});
  const at::Tensor skip_w = weight(w, "skip_w", {L, Cs, Ch});
  const at::Tensor head1_w = weight(w, "head1_w", {Co, Cs}), head1_b = weight(w, "head1_b", {Co});
  const at::Tensor head2_w = weight(w, "head2_w", {Co, Co}), head2_b = weight(w, "head2_b", {Co});
  const at::Tensor down_w = weight(w, "down_w", {K, F, Co, Q}), down_b = weight(w, "down_b", {Q});
  // Checked, not read: folded by fastgen/packing.py (the rule every backend shares) into the
  // conditioning table over classes (cond_emb @ cond_w^T + cond_b + dil_b) and the skip biases
  // summed over layers, which are read.
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"cond_emb", {Qc, E}}, {"cond_w", {L, 2 * Ch, E}}, {"cond_b", {L, 2 * Ch}}, {"dil_b", {L, 2 * Ch}},
           {"skip_b", {L, Cs}}})
    weight(w, name, shape);
  const at::Tensor table = weight(w, "cond_table", {L, Qc, 2 * Ch}), skip_bias = weight(w, "skip_bias", {Cs});
  TORCH_CHECK(w.size() == 20, "fastgen cpu pack: expected the 18 weights of fastgen.spec.weight_shapes and the ",
              "2 of fastgen.packing.folded, got ", w.size());

  allocate_buffers(*p);

  // Input conv: (Cin, Crp)
  {
    auto a = in_w.accessor<double, 2>();
    auto bb = in_b.accessor<double, 1>();
    for (int64_t r = 0; r < Cr; ++r) {
      for (int64_t c = 0; c < Cin; ++c) p->in_w.data()[c * Crp + r] = (float)a[r][c];
      p->in_b.data()[r] = (float)bb[r];
    }
  }

  // Dilated conv, filter/gate interleaved per 8 channels: panel g (g < Chp / 8) holds columns
  // [filter 8g..8g+7 | gate 8g..8g+7]; input rows [past tap Crp | current tap Crp].
  auto inter = [Ch](int64_t c) -> int64_t {  // interleaved column -> conv output channel (or -1)
    const int64_t g = c / PANEL, lane = c % PANEL, ch = g * VW + lane % VW;
    if (ch >= Ch) return -1;
    return lane < VW ? ch : Ch + ch;
  };
  const int64_t dil_stride = 2 * Crp * 2 * Chp;
  {
    auto w0 = dil_w0.accessor<double, 3>(), w1 = dil_w1.accessor<double, 3>();
    auto tb = table.accessor<double, 3>();
    for (int64_t l = 0; l < L; ++l) {
      pack_panels(p->dil_w.data() + l * dil_stride, 2 * Crp, 2 * Chp, 2 * Chp, [&](int64_t c, int64_t i) {
        const int64_t o = inter(c);
        if (o < 0) return 0.0;
        if (i < Crp) return i < Cr ? w0[l][o][i] : 0.0;
        return i - Crp < Cr ? w1[l][o][i - Crp] : 0.0;
      });
      for (int64_t q = 0; q < Qc; ++q) {
        float* row = p->cond_table.data() + (l * Qc + q) * 2 * Chp;
        for (int64_t c = 0; c < 2 * Chp; ++c) {
          const int64_t o = inter(c);
          row[c] = o < 0 ? 0.0f : (float)tb[l][q][o];
        }
      }
    }
  }

  // Skip and residual 1x1 convs, and the summed skip bias.
  {
    auto sw_ = skip_w.accessor<double, 3>(), rw = res_w.accessor<double, 3>();
    auto rb = res_b.accessor<double, 2>();
    auto sb = skip_bias.accessor<double, 1>();
    for (int64_t l = 0; l < L; ++l) {
      pack_panels(p->skip_w.data() + l * Chp * Csp, Chp, Cs, Csp,
                  [&](int64_t o, int64_t i) { return i < Ch ? sw_[l][o][i] : 0.0; });
      if (l + 1 == L) continue;  // the last layer has no residual
      pack_panels(p->res_w.data() + l * Chp * Crp, Chp, Cr, Crp,
                  [&](int64_t o, int64_t i) { return i < Ch ? rw[l][o][i] : 0.0; });
      for (int64_t o = 0; o < Cr; ++o) p->res_b.data()[l * Crp + o] = (float)rb[l][o];
    }
    for (int64_t o = 0; o < Cs; ++o) p->skip_b.data()[o] = (float)sb[o];
  }

  // Head.
  {
    auto h1 = head1_w.accessor<double, 2>(), h2 = head2_w.accessor<double, 2>();
    auto b1 = head1_b.accessor<double, 1>(), b2 = head2_b.accessor<double, 1>();
    pack_panels(p->head1_w.data(), Csp, Co, Cop, [&](int64_t o, int64_t i) { return i < Cs ? h1[o][i] : 0.0; });
    pack_panels(p->head2_w.data(), Cop, Co, Cop, [&](int64_t o, int64_t i) { return i < Co ? h2[o][i] : 0.0; });
    for (int64_t o = 0; o < Co; ++o) {
      p->head1_b.data()[o] = (float)b1[o];
      p->head2_b.data()[o] = (float)b2[o];
    }
  }

  // Output conv: input index (k*F + f)*Cop + c, output q.
  {
    auto dw_ = down_w.accessor<double, 4>();
    auto db = down_b.accessor<double, 1>();
    pack_panels(p->down_w.data(), K * F * Cop, Q, Qp, [&](int64_t q, int64_t i) {
      const int64_t pos = i / Cop, c = i % Cop;
      return c < Co ? dw_[pos / F][pos % F][c][q] : 0.0;
    });
    for (int64_t q = 0; q < Q; ++q) p->down_b.data()[q] = (float)db[q];
  }
  return p;
}

at::Tensor generate(const PackedWeights& pw, const at::Tensor& frames_in, const at::Tensor& uniforms_in,
                    double temperature, int64_t start_class, int64_t num_threads, int64_t split,
                    const std::optional<at::Tensor>& rings, int64_t step0,
                    const std::optional<at::Tensor>& first_class) {
  check_frames(pw, frames_in, "generate");
  const int64_t B = frames_in.size(0), T = frames_in.size(2), n = T / pw.K;
  TORCH_CHECK(uniforms_in.device().is_cpu() && uniforms_in.scalar_type() == at::kFloat,
              "fastgen._C.generate: uniforms must be a float32 CPU tensor, got ", uniforms_in.scalar_type());
  TORCH_CHECK(uniforms_in.dim() == 2 && uniforms_in.size(0) == B && uniforms_in.size(1) == n,
              "fastgen._C.generate: uniforms must have shape (batch, steps) = (", B, ", ", n, "), got ",
              uniforms_in.sizes());
  TORCH_CHECK(std::isfinite(temperature) && temperature >= 0,
              "fastgen._C.generate: temperature must be finite and >= 0, got ", temperature);
  TORCH_CHECK(split >= -2 && split <= 1, "fastgen._C.generate: split must be -2, -1, 0 or 1, got ", split);
  TORCH_CHECK(start_class >= 0 && start_class < pw.Qc, "fastgen._C.generate: start_class ", start_class,
              " outside [0, ", pw.Qc, ")");
  TORCH_CHECK(pw.Q <= pw.Qc, "fastgen._C.generate: sampled classes condition the next step, so num_classes (",
              pw.Q, ") must not exceed cond_classes (", pw.Qc, ")");
  const std::string err = check_job(pw, B, n);  // before anything is copied or allocated
  TORCH_CHECK(err.empty(), "fastgen._C.generate: ", err);
  const at::Tensor first = check_continuation(pw, B, n, rings, step0, first_class, "generate");
  const at::Tensor frames = frames_in.contiguous(), uniforms = uniforms_in.contiguous();
  at::Tensor out = at::empty({B, n}, frames.options().dtype(at::kLong));
  if (B == 0 || n == 0) return out;
  Job job{pw, frames.data_ptr<float>(), B, n, T};
  if (rings.has_value()) job.rings = rings->data_ptr<float>();
  job.step0 = step0;
  if (first.defined()) job.first_class = first.data_ptr<int64_t>();
  job.uniforms = uniforms.data_ptr<float>();
  job.temperature = temperature;
  job.samples = out.data_ptr<int64_t>();
  job.start_class = start_class;
  run_job(job, resolve_threads(num_threads), (int)split);  // torch.ops calls run without the GIL
  return out;
}

at::Tensor teacher_forced(const PackedWeights& pw, const at::Tensor& frames_in, const at::Tensor& classes_in,
                          int64_t start_class, int64_t num_threads, int64_t split) {
  check_frames(pw, frames_in, "teacher_forced");
  const int64_t B = frames_in.size(0), T = frames_in.size(2), n = T / pw.K;
  TORCH_CHECK(split >= -2 && split <= 1, "fastgen._C.teacher_forced: split must be -2, -1, 0 or 1, got ",
              split);
  TORCH_CHECK(start_class >= 0 && start_class < pw.Qc, "fastgen._C.teacher_forced: start_class ", start_class,
              " outside [0, ", pw.Qc, ")");
  const std::string err = check_job(pw, B, n);  // before anything is copied or allocated
  TORCH_CHECK(err.empty(), "fastgen._C.teacher_forced: ", err);
  const at::Tensor frames = frames_in.contiguous(), classes = check_classes(pw, B, n, classes_in, "teacher_forced");
  at::Tensor out = at::empty({B, n, pw.Q}, frames.options());
  if (B == 0 || n == 0) return out;
  Job job{pw, frames.data_ptr<float>(), B, n, T};
  job.classes = classes.data_ptr<int64_t>();
  job.logits_out = out.data_ptr<float>();
  job.start_class = start_class;
  run_job(job, resolve_threads(num_threads), (int)split);  // torch.ops calls run without the GIL
  return out;
}

void force(const PackedWeights& pw, const at::Tensor& frames_in, const at::Tensor& classes_in, const at::Tensor& rings,
           int64_t step0, const at::Tensor& first_class, int64_t num_threads, int64_t split) {
  check_frames(pw, frames_in, "force");
  const int64_t B = frames_in.size(0), T = frames_in.size(2), n = T / pw.K;
  TORCH_CHECK(split >= -2 && split <= 1, "fastgen._C.force: split must be -2, -1, 0 or 1, got ", split);
  const std::string err = check_job(pw, B, n);  // before anything is copied or allocated
  TORCH_CHECK(err.empty(), "fastgen._C.force: ", err);
  const at::Tensor first = check_continuation(pw, B, n, rings, step0, first_class, "force");
  const at::Tensor frames = frames_in.contiguous(), classes = check_classes(pw, B, n, classes_in, "force");
  if (B == 0 || n == 0) return;
  Job job{pw, frames.data_ptr<float>(), B, n, T};
  job.classes = classes.data_ptr<int64_t>();
  job.force = true;
  job.rings = rings.data_ptr<float>();
  job.step0 = step0;
  job.first_class = first.data_ptr<int64_t>();
  run_job(job, resolve_threads(num_threads), (int)split);  // torch.ops calls run without the GIL
}

}  // namespace cpu
}  // namespace fastgen
