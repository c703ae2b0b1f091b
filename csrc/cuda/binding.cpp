// fastgen._cuda: Python binding of the persistent CUDA kernel. Thin: tensors -> FgBuf, then
// fg_prepare (validation, shared with the CPU emulator) and fg_launch (launcher.cu) on the
// current stream. Called by fastgen/backends/cuda.py, which packs and plans.
#include <torch/extension.h>
#include <pybind11/stl.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/fastgen_cuda.h"

#ifndef FASTGEN_BUILD_INFO
#define FASTGEN_BUILD_INFO "{}"
#endif

namespace {

using fastgen_cuda::FgBuf;

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

FgBuf to_buf(const at::Tensor& t, const char* name, const at::Device& device) {
  if (t.numel() > 0) {
    if (t.device() != device)
      throw std::invalid_argument(std::string("fastgen cuda: tensor '") + name + "' is on " + t.device().str() +
                                  ", expected " + device.str());
    if (!t.is_contiguous())
      throw std::invalid_argument(std::string("fastgen cuda: tensor '") + name + "' must be contiguous");
  }
  return FgBuf{t.numel() > 0 ? t.data_ptr() : nullptr, (long long)t.numel(), dtype_code(t)};
}

void run(const std::map<std::string, int64_t>& ints, const std::vector<int64_t>& dilations, double temperature,
         const at::Tensor& core, const at::Tensor& down, const at::Tensor& cond_table, const at::Tensor& frames,
         const at::Tensor& uniforms, const at::Tensor& classes, const at::Tensor& samples, const at::Tensor& logits,
         const at::Tensor& ring, const at::Tensor& partials, const at::Tensor& flags) {
  if (!core.is_cuda()) throw std::invalid_argument("fastgen cuda: the packed weights must be on a CUDA device");
  const at::Device device = core.device();
  const at::Tensor* ts[fastgen_cuda::FG_B_COUNT] = {&core, &down, &cond_table, &frames, &uniforms, &classes,
                                                   &samples, &logits, &ring, &partials, &flags};
  FgBuf bufs[fastgen_cuda::FG_B_COUNT];
  for (int i = 0; i < fastgen_cuda::FG_B_COUNT; ++i) bufs[i] = to_buf(*ts[i], fastgen_cuda::fg_buf_name(i), device);
  std::map<std::string, long long> named(ints.begin(), ints.end());
  std::vector<long long> dils(dilations.begin(), dilations.end());
  fastgen_cuda::FgParams p;
  std::string err = fastgen_cuda::fg_prepare(named, dils, temperature, bufs, &p);
  if (!err.empty()) throw std::invalid_argument("fastgen cuda: " + err);
  const c10::cuda::CUDAGuard guard(device);
  err = fastgen_cuda::fg_launch(p, c10::cuda::getCurrentCUDAStream(device.index()).stream());
  if (!err.empty()) throw std::runtime_error(err);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgen persistent CUDA kernel";
  m.def("run", &run,
        "Run one launch of the persistent kernel (generate or teacher-forced); see fastgen/backends/cuda.py",
        py::arg("ints"), py::arg("dilations"), py::arg("temperature"), py::arg("core"), py::arg("down"),
        py::arg("cond_table"), py::arg("frames"), py::arg("uniforms"), py::arg("classes"), py::arg("samples"),
        py::arg("logits"), py::arg("ring"), py::arg("partials"), py::arg("flags"));
  m.def("build_info", []() { return std::string(FASTGEN_BUILD_INFO); }, "JSON describing how this module was built");
}
