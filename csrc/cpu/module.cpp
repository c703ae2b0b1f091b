// fastgen._C: the fused C++ CPU backend. Loading it registers the torch.ops.fastgen.cpu_* ops
// (ops.cpp) and the schemas of the cuda_* ops (csrc/cuda/schema/ops.cpp); the module itself only
// says how it was built.
#include <torch/extension.h>

#ifndef FASTGEN_BUILD_INFO
#define FASTGEN_BUILD_INFO "{}"
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgen fused CPU backend";
  m.def("build_info", []() { return std::string(FASTGEN_BUILD_INFO); },
        "JSON describing how this module was built");
}
