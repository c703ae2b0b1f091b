// fastgen._cuda: the CUDA kernels of torch.ops.fastgen.cuda_generate, cuda_force and cuda_teacher_forced (their
// schemas: csrc/cuda/schema/ops.cpp, in fastgen._C; their fake versions:
// fastgen/backends/cuda/ops.py). Thin: the op's integers fill FgLaunchInts, fastgen_cuda.h
// validates (the same code the CPU emulator runs), the outputs and workspaces are allocated on
// the frames' device, and fg_launch (launcher.cu) launches on the current stream. Called by
// fastgen/backends/cuda/engine.py, which packs the weights and plans the launch.
#include <torch/extension.h>
#include <torch/library.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <string>
#include <vector>

#include "cuda/fastgen_cuda.h"

#ifndef FASTGEN_BUILD_INFO
#define FASTGEN_BUILD_INFO "{}"
#endif

namespace {

using fastgen_cuda::FgBuf;
using fastgen_cuda::FgBufNeed;
using fastgen_cuda::FgLaunchInts;
using fastgen_cuda::FgParams;
constexpr int kBufs = fastgen_cuda::FG_B_COUNT;

// The ops' named int arguments, in schema order, and their copy into FgLaunchInts.
#define FG_INT_PARAM(name) , int64_t name
#define FG_TAKE_PARAM(name) a.name = name;

int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return fastgen_cuda::FG_F32;
    case at::kBFloat16: return fastgen_cuda::FG_BF16;
    case at::kHalf: return fastgen_cuda::FG_F16;
    case at::kLong: return fastgen_cuda::FG_I64;
    case at::kByte: return fastgen_cuda::FG_U8;
    case at::kInt: return fastgen_cuda::FG_I32;
    default: return -1;
  }
}

at::ScalarType scalar_type(int code) {
  switch (code) {
    case fastgen_cuda::FG_F32: return at::kFloat;
    case fastgen_cuda::FG_BF16: return at::kBFloat16;
    case fastgen_cuda::FG_F16: return at::kHalf;
    case fastgen_cuda::FG_I64: return at::kLong;
    case fastgen_cuda::FG_U8: return at::kByte;
    default: return at::kInt;
  }
}

// A validation message becomes a ValueError in Python, as the emulator's do.
void check(const std::string& err) { TORCH_CHECK_VALUE(err.empty(), "fastgen cuda: ", err); }

FgBuf to_buf(const at::Tensor& t, int id, const at::Device& device) {
  if (t.numel() > 0) {
    TORCH_CHECK_VALUE(t.device() == device, "fastgen cuda: tensor '", fastgen_cuda::fg_buf_name(id), "' is on ",
                      t.device().str(), ", expected ", device.str());
    TORCH_CHECK_VALUE(t.is_contiguous(), "fastgen cuda: tensor '", fastgen_cuda::fg_buf_name(id),
                      "' must be contiguous");
  }
  return FgBuf{t.numel() > 0 ? t.data_ptr() : nullptr, (long long)t.numel(), dtype_code(t)};
}

// One launch of either op: the call's integers from the frames, and unless there is nothing to
// do, the validated launch, the workspaces this op does not take as arguments (ring in
// teacher-forced mode, partials, flags) and the kernel. `ts`: the op's tensors in FgBufId slots
// (undefined for the workspaces). `output` is made once the sizes are known to be sane.
template <class MakeOutput>
at::Tensor launch(FgLaunchInts& a, int mode, int64_t step0, double temperature, c10::IntArrayRef dilations,
                  at::Tensor (&ts)[kBufs], MakeOutput make_output) {
  const at::Tensor& frames = ts[fastgen_cuda::FG_B_FRAMES];
  TORCH_CHECK_VALUE(ts[fastgen_cuda::FG_B_CORE].is_cuda(), "fastgen cuda: the packed weights must be on a CUDA device");
  TORCH_CHECK_VALUE(frames.dim() == 4, "fastgen cuda: frames must be (batch, C_in, steps*K, F), got ", frames.dim(),
                    " dimensions");
  const long long shape[4] = {frames.size(0), frames.size(1), frames.size(2), frames.size(3)};
  check(fastgen_cuda::fg_op_call(&a, mode, step0, shape));
  if (a.batch == 0 || a.steps == 0) return make_output();  // nothing to run
  const std::vector<long long> dils(dilations.begin(), dilations.end());
  FgParams p;
  check(fastgen_cuda::fg_prepare_launch(a, dils, temperature, dtype_code(ts[fastgen_cuda::FG_B_DOWN]), &p));
  FgBufNeed need[kBufs];
  check(fastgen_cuda::fg_buffer_needs(p, need));
  const at::Device device = ts[fastgen_cuda::FG_B_CORE].device();
  const at::Tensor out = make_output();
  for (int id : {fastgen_cuda::FG_B_RING, fastgen_cuda::FG_B_PARTIALS, fastgen_cuda::FG_B_FLAGS})
    if (!ts[id].defined())
      ts[id] = at::empty({need[id].numel}, at::TensorOptions().dtype(scalar_type(need[id].dtype)).device(device));
  FgBuf bufs[kBufs];
  for (int id = 0; id < kBufs; ++id)
    bufs[id] = ts[id].defined() ? to_buf(ts[id], id, device) : FgBuf{nullptr, 0, need[id].dtype};
  check(fastgen_cuda::fg_bind_buffers(bufs, &p));
  const c10::cuda::CUDAGuard guard(device);
  const std::string err = fastgen_cuda::fg_launch(p, c10::cuda::getCurrentCUDAStream(device.index()).stream());
  TORCH_CHECK(err.empty(), err);
  return out;
}

// The tensors every op takes, in their FgBufId slots; the op's own are set after.
void put_model(at::Tensor (&ts)[kBufs], const at::Tensor& core, const at::Tensor& down, const at::Tensor& cond_table,
               const at::Tensor& frames) {
  ts[fastgen_cuda::FG_B_CORE] = core;
  ts[fastgen_cuda::FG_B_DOWN] = down;
  ts[fastgen_cuda::FG_B_COND] = cond_table;
  ts[fastgen_cuda::FG_B_FRAMES] = frames;
}

void check_first_class(const at::Tensor& first_class, const FgLaunchInts& a) {
  TORCH_CHECK_VALUE(first_class.dim() == 1 && first_class.size(0) == a.batch && first_class.scalar_type() == at::kLong,
                    "fastgen cuda: first_class must be ", a.batch, " int64 classes");
}

at::Tensor generate(const at::Tensor& core, const at::Tensor& down, const at::Tensor& cond_table,
                    const at::Tensor& frames, const at::Tensor& uniforms, const at::Tensor& first_class,
                    const at::Tensor& rings, double temperature, int64_t step0,
                    c10::IntArrayRef dilations FG_OP_INTS(FG_INT_PARAM)) {
  FgLaunchInts a;
  FG_OP_INTS(FG_TAKE_PARAM)
  at::Tensor ts[kBufs];
  put_model(ts, core, down, cond_table, frames);
  ts[fastgen_cuda::FG_B_UNIFORMS] = uniforms;
  ts[fastgen_cuda::FG_B_RING] = rings;
  // column 0: the class conditioning the first step; the kernel writes step j to column j + 1
  const at::Tensor samples = launch(a, fastgen_cuda::FG_MODE_GENERATE, step0, temperature, dilations, ts, [&] {
    check_first_class(first_class, a);
    at::Tensor s = at::empty({a.batch, a.steps + 1}, frames.options().dtype(at::kLong));
    s.select(1, 0).copy_(first_class);
    ts[fastgen_cuda::FG_B_SAMPLES] = s;
    return s;
  });
  return samples.narrow(1, 1, a.steps).clone(at::MemoryFormat::Contiguous);
}

void force(const at::Tensor& core, const at::Tensor& down, const at::Tensor& cond_table, const at::Tensor& frames,
           const at::Tensor& classes, const at::Tensor& first_class, const at::Tensor& rings, int64_t step0,
           c10::IntArrayRef dilations FG_OP_INTS(FG_INT_PARAM)) {
  FgLaunchInts a;
  FG_OP_INTS(FG_TAKE_PARAM)
  at::Tensor ts[kBufs];
  put_model(ts, core, down, cond_table, frames);
  ts[fastgen_cuda::FG_B_RING] = rings;
  launch(a, fastgen_cuda::FG_MODE_FORCE, step0, 0.0, dilations, ts, [&] {
    check_first_class(first_class, a);
    TORCH_CHECK_VALUE(classes.dim() == 2 && classes.size(0) == a.batch && classes.size(1) == a.steps &&
                          classes.scalar_type() == at::kLong,
                      "fastgen cuda: classes must be (", a.batch, ", ", a.steps, ") int64 classes");
    // step j's conditioning: column 0 the class the state carries, then the given classes
    if (a.batch > 0 && a.steps > 0)
      ts[fastgen_cuda::FG_B_CLASSES] =
          at::cat({first_class.unsqueeze(1), classes.narrow(1, 0, a.steps - 1)}, 1).contiguous();
    return at::Tensor();
  });
}

at::Tensor teacher_forced(const at::Tensor& core, const at::Tensor& down, const at::Tensor& cond_table,
                          const at::Tensor& frames, const at::Tensor& classes,
                          c10::IntArrayRef dilations FG_OP_INTS(FG_INT_PARAM)) {
  FgLaunchInts a;
  FG_OP_INTS(FG_TAKE_PARAM)
  at::Tensor ts[kBufs];
  put_model(ts, core, down, cond_table, frames);
  ts[fastgen_cuda::FG_B_CLASSES] = classes;
  return launch(a, fastgen_cuda::FG_MODE_TEACHER, 0, 0.0, dilations, ts, [&] {
    at::Tensor logits = at::empty({a.batch, a.steps, a.Q}, frames.options().dtype(at::kFloat));
    ts[fastgen_cuda::FG_B_LOGITS] = logits;
    return logits;
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CUDA, m) {
  m.impl("cuda_generate", generate);
  m.impl("cuda_force", force);
  m.impl("cuda_teacher_forced", teacher_forced);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgen persistent CUDA kernel: loading it registers the CUDA kernels of torch.ops.fastgen.cuda_*";
  m.def("build_info", []() { return std::string(FASTGEN_BUILD_INFO); }, "JSON describing how this module was built");
}
