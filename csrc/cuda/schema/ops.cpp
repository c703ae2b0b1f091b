// The schemas of the cuda backend's ops, torch.ops.fastgen.cuda_generate, cuda_force and
// cuda_teacher_forced.
// Compiled into fastgen._C, which every build has, GPU or not, so that tracing (FakeTensor,
// torch.compile) and the CPU tests see them without a CUDA build. Their CUDA kernels are in
// fastgen._cuda (csrc/cuda/binding.cpp), their fake versions in fastgen/backends/cuda/ops.py.
// The named int arguments are FG_OP_INTS (csrc/cuda/fastgen_cuda.h), from which binding.cpp
// generates its kernels' parameters too.
#include <torch/library.h>

#include "cuda/fastgen_cuda.h"

#define FG_SCHEMA_INT(name) ", int " #name

TORCH_LIBRARY_FRAGMENT(fastgen, m) {
  // One launch of the persistent kernel over the steps of `frames` (B, C_in, n*K, F), in the
  // compute dtype (down's): sampled classes int64 (B, n) with uniforms float32 (B, n).
  // first_class (B,) int64: the class conditioning the first step; rings (B * ring elements per
  // sequence, the compute dtype) the history, updated in place; step0 the generation's index of
  // the first step. B is at most one launch's batch (fastgen/backends/cuda/plan.py).
  m.def("cuda_generate(Tensor core, Tensor down, Tensor cond_table, Tensor frames, Tensor uniforms, "
        "Tensor first_class, Tensor(a!) rings, float temperature, int step0, int[] dilations, *" FG_OP_INTS(
            FG_SCHEMA_INT) ") -> Tensor");
  // Forced steps (priming): continue the generation whose history `rings` hold (updated in place)
  // from step step0 with the given classes int64 (B, n) in place of samples, the first step
  // conditioned on first_class (B,) int64, step j > 0 on classes[:, j - 1]; frames as above.
  // Outputs nothing: only the layers run (no skip sums, head, downsampling or sampling).
  m.def("cuda_force(Tensor core, Tensor down, Tensor cond_table, Tensor frames, Tensor classes, "
        "Tensor first_class, Tensor(a!) rings, int step0, int[] dilations, *" FG_OP_INTS(FG_SCHEMA_INT) ") -> ()");
  // Logits float32 (B, n, Q) for frames as above and classes int64 (B, n): step j conditioned on
  // classes[:, j - 1], step 0 on start_class; a fresh history.
  m.def("cuda_teacher_forced(Tensor core, Tensor down, Tensor cond_table, Tensor frames, Tensor classes, "
        "int[] dilations, *" FG_OP_INTS(FG_SCHEMA_INT) ") -> Tensor");
}
