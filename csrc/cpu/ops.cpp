// The fused CPU backend in the torch dispatcher, beside the Triton ops: torch.ops.fastgen.cpu_pack,
// cpu_generate, cpu_force and cpu_teacher_forced, the packed weights a TorchScript class
// (torch.classes.fastgen.CpuPacked). fastgen/backends/cpu.py registers their fake versions.
#include <torch/custom_class.h>
#include <torch/library.h>

#include "cpu/wavenet_cpu.h"

namespace fastgen {
namespace cpu {
namespace {

// The packed weights, opaque to Python (its few properties aside). Immutable once packed, so
// an engine may share it between threads.
struct CpuPacked : torch::CustomClassHolder {
  explicit CpuPacked(std::shared_ptr<PackedWeights> w) : w(std::move(w)) {}
  std::shared_ptr<PackedWeights> w;
};
using Packed = c10::intrusive_ptr<CpuPacked>;

Packed pack_op(const c10::Dict<std::string, at::Tensor>& weights, const std::vector<int64_t>& dilations,
               double flops_per_step) {
  std::map<std::string, at::Tensor> w;
  for (const auto& kv : weights) w.emplace(kv.key(), kv.value());
  return c10::make_intrusive<CpuPacked>(pack(w, dilations, flops_per_step));
}

at::Tensor generate_op(const Packed& p, const at::Tensor& frames, const at::Tensor& uniforms, double temperature,
                       int64_t start_class, int64_t num_threads, int64_t split, const std::optional<at::Tensor>& rings,
                       int64_t step0, const std::optional<at::Tensor>& first_class) {
  return generate(*p->w, frames, uniforms, temperature, start_class, num_threads, split, rings, step0, first_class);
}

void force_op(const Packed& p, const at::Tensor& frames, const at::Tensor& classes, const at::Tensor& rings,
              int64_t step0, const at::Tensor& first_class, int64_t num_threads, int64_t split) {
  force(*p->w, frames, classes, rings, step0, first_class, num_threads, split);
}

at::Tensor teacher_forced_op(const Packed& p, const at::Tensor& frames, const at::Tensor& classes, int64_t start_class,
                             int64_t num_threads, int64_t split) {
  return teacher_forced(*p->w, frames, classes, start_class, num_threads, split);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgen, m) {
  m.class_<CpuPacked>("CpuPacked")
      .def("nbytes", [](const Packed& p) { return (int64_t)p->w->nbytes(); })
      .def("num_classes", [](const Packed& p) { return p->w->Q; })
      .def("cond_classes", [](const Packed& p) { return p->w->Qc; })
      .def("ring_stride", [](const Packed& p) { return p->w->ring_stride; })
      .def("__repr__", [](const Packed& p) { return p->w->repr(); })
      // What tracing (torch.compile, FakeTensor) sees of it: the sizes the fake ops need; its
      // Python fake class is in fastgen/backends/cpu.py.
      .def("__obj_flatten__", [](const Packed& p) {
        return std::make_tuple(std::make_tuple(std::string("num_classes"), p->w->Q),
                               std::make_tuple(std::string("cond_classes"), p->w->Qc),
                               std::make_tuple(std::string("ring_stride"), p->w->ring_stride),
                               std::make_tuple(std::string("nbytes"), (int64_t)p->w->nbytes()));
      });
  // Pack a fastgen weight dict (fastgen.spec.weight_shapes, with fastgen.packing.folded's tensors);
  // flops_per_step (NetworkSpec.flops_per_step) sizes the automatic position split.
  m.def("cpu_pack(Dict(str, Tensor) weights, int[] dilations, float flops_per_step) "
        "-> __torch__.torch.classes.fastgen.CpuPacked",
        pack_op);
  // Sample classes int64 (B, n) for frames float32 (B, C_in, n*K, F) with uniforms float32 (B, n);
  // rings (B, ring_stride) float32 (updated in place), step0 and first_class (B,) int64 continue a
  // generation (default: fresh rings, step 0, start_class). temperature 0 is argmax. num_threads <= 0
  // uses torch.get_num_threads(). split: with fewer sequences than threads, split each sequence's
  // positions across threads: 1 always, 0 never, -1 (auto) where a step has enough work and while the
  // threads do not wait long for each other; -2 (for tests) splits, then stops after a few steps.
  m.def("cpu_generate(__torch__.torch.classes.fastgen.CpuPacked packed, Tensor frames, Tensor uniforms, "
        "float temperature, int start_class, int num_threads=0, int split=-1, Tensor(a!)? rings=None, "
        "int step0=0, Tensor? first_class=None) -> Tensor");
  // Forced steps (priming): continue the generation whose history rings (B, ring_stride) float32 hold
  // (updated in place) from step step0, its first step conditioned on first_class (B,) int64, with
  // the given classes int64 (B, n) in place of samples; frames as for cpu_generate. Outputs nothing:
  // only the layers run. num_threads and split as for cpu_generate.
  m.def("cpu_force(__torch__.torch.classes.fastgen.CpuPacked packed, Tensor frames, Tensor classes, "
        "Tensor(a!) rings, int step0, Tensor first_class, int num_threads=0, int split=-1) -> ()");
  // Logits float32 (B, n, Q) for frames float32 (B, C_in, n*K, F) and classes int64 (B, n); step j is
  // conditioned on classes[:, j-1] (start_class for j = 0). num_threads and split as for cpu_generate.
  m.def("cpu_teacher_forced(__torch__.torch.classes.fastgen.CpuPacked packed, Tensor frames, Tensor classes, "
        "int start_class, int num_threads=0, int split=-1) -> Tensor");
}

// Their CPU kernels (a fake kernel for tracing comes from Python).
TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("cpu_generate", generate_op);
  m.impl("cpu_force", force_op);
  m.impl("cpu_teacher_forced", teacher_forced_op);
}

}  // namespace cpu
}  // namespace fastgen
