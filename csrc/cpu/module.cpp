// fastgen._C: the fused C++ CPU backend. Loading it registers the torch.ops.fastgen.cpu_* ops
// (ops.cpp) and the schemas of the cuda_* ops (csrc/cuda/schema/ops.cpp); the module itself
// says how it was built and which instruction-set path of the kernels runs (csrc/cpu/isa.h).
#include <torch/extension.h>

#include "cpu/isa.h"

#ifndef FASTGEN_BUILD_INFO
#define FASTGEN_BUILD_INFO "{}"
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // The path is picked here, once: a FASTGEN_CPU_ISA this build or CPU cannot honour fails the import.
  const char* error = "";
  const std::string isa = fastgen::cpu::active_isa(&error);
  if (isa.empty()) throw std::runtime_error(std::string("fastgen._C: ") + error);
  m.doc() = "fastgen fused CPU backend";
  m.def("build_info", []() { return std::string(FASTGEN_BUILD_INFO); },
        "JSON describing how this module was built");
  m.def("cpu_isa", [isa]() { return isa; },
        "the instruction-set path of the CPU kernels that runs here (the best this CPU has of those "
        "compiled in, or FASTGEN_CPU_ISA's)");
  m.def("cpu_isa_paths", []() { return std::string(fastgen::cpu::compiled_isas()); },
        "the instruction-set paths compiled in, comma-separated, best last");
}
