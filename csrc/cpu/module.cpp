// fastgen._C: Python bindings of the fused C++ CPU backend.
#include <torch/extension.h>

#include "cpu/wavenet_cpu.h"

#ifndef FASTGEN_BUILD_INFO
#define FASTGEN_BUILD_INFO "{}"
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgen fused CPU backend";
  m.def("build_info", []() { return std::string(FASTGEN_BUILD_INFO); },
        "JSON describing how this module was built");
  fastgen::cpu::register_bindings(m);
}
