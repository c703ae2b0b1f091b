// fastgen fused CPU backend: which instruction-set path of the kernels runs (isa.h). Compiled
// with the extension's portable flags: it runs on any CPU the extension loads on.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/isa.h"

// The paths compiled in, best last: FASTGEN_PATH(name) each (setup.py passes the list).
#ifndef FASTGEN_CPU_PATHS
#define FASTGEN_CPU_PATHS FASTGEN_PATH(baseline)
#endif

namespace fastgen {
namespace cpu {

#define FASTGEN_PATH(name) \
  namespace isa_##name {   \
  extern const Kernels kernels; \
  }
FASTGEN_CPU_PATHS
#undef FASTGEN_PATH

namespace {

struct Path {
  const char* name;
  const Kernels* kernels;
};

#define FASTGEN_PATH(name) {#name, &isa_##name::kernels},
constexpr Path kPaths[] = {FASTGEN_CPU_PATHS};
#undef FASTGEN_PATH
constexpr int kNumPaths = sizeof kPaths / sizeof kPaths[0];

// Whether this CPU (and its OS, which must save the wider registers: __builtin_cpu_supports
// checks that too) has every instruction set a path's flags allow. The other paths -- baseline,
// or the single path of a FASTGEN_CPU_ARCH build -- have the flags of the whole extension.
bool can_run(const char* name) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (std::strcmp(name, "avx2") == 0)  // -mavx2 -mfma
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return true;
}

struct Choice {
  const Path* path = nullptr;
  std::string error;
};

Choice choose() {
  Choice c;
  const char* env = std::getenv("FASTGEN_CPU_ISA");
  const std::string want = env ? env : "";
  if (want.empty() || want == "auto") {
    for (const Path& p : kPaths)
      if (can_run(p.name)) c.path = &p;  // best last
    return c;
  }
  for (const Path& p : kPaths) {
    if (want != p.name) continue;
    if (can_run(p.name))
      c.path = &p;
    else
      c.error = "FASTGEN_CPU_ISA=" + want + ": this CPU cannot run the " + want + " path";
    return c;
  }
  c.error = "FASTGEN_CPU_ISA=" + want + " is not one of the paths this build has (" + compiled_isas() +
            ", or auto)";
  return c;
}

const Choice& choice() {
  static const Choice c = choose();  // once: thread-safe initialization
  return c;
}

}  // namespace

const char* compiled_isas() {
  static const std::string names = [] {
    std::string s;
    for (const Path& p : kPaths) s += (s.empty() ? "" : ",") + std::string(p.name);
    return s;
  }();
  return names.c_str();
}

const char* active_isa(const char** error) {
  const Choice& c = choice();
  if (error) *error = c.error.c_str();
  return c.path ? c.path->name : "";
}

const Kernels& kernels() {
  const Choice& c = choice();
  if (!c.path) throw std::runtime_error("fastgen cpu: " + c.error);
  return *c.path->kernels;
}

}  // namespace cpu
}  // namespace fastgen
