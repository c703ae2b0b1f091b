// C entry points of the CPU emulator (tests only; loaded with ctypes by
// tests/fastgen/test_cuda_backend.py). Same parameters and checks as the torch binding
// (csrc/cuda/binding.cpp): fg_prepare() validates, then the kernel runs emulated.
#define FASTGEN_CUDA_EMULATE 1
#include <cstring>
#include <string>

#include "../fastgen_cuda.h"
#include "../kernel.cuh"

using namespace fastgen_cuda;

namespace {

void put_error(const std::string& msg, char* err, int errlen) {
  if (errlen <= 0) return;
  std::strncpy(err, msg.c_str(), (size_t)errlen - 1);
  err[errlen - 1] = 0;
}

template <class T, bool MMA>
std::string run_emulated(const FgParams& p) {
  fg_emu_dim3 grid{(unsigned)p.nf, (unsigned)p.G, 1};
  // The launcher zeroes the flags before every launch; so does this.
  std::memset(p.flags, 0, sizeof(unsigned) * (size_t)p.G * (p.nf + 1));
  return fg_emu::launch(grid, p.threads, (size_t)p.smem_bytes, [&p]() { fg_persistent_kernel<T, MMA>(p); });
}

}  // namespace

extern "C" {

// keys: nkeys NUL-terminated names; vals: their values. bufs: FG_B_COUNT pointers, numels and
// dtype names as torch spells them ("float32", ...). Returns 0 on success, 1 on a validation error, 2 on an emulated-launch failure.
int fg_emu_run(int nkeys, const char* const* keys, const long long* vals, int ndil, const long long* dils,
               double temperature, void* const* ptrs, const long long* numels, const char* const* dtypes, double timeout_s,
               char* err, int errlen) {
  std::map<std::string, long long> ints;
  for (int i = 0; i < nkeys; ++i) ints[keys[i]] = vals[i];
  std::vector<long long> dv(dils, dils + ndil);
  FgBuf bufs[FG_B_COUNT];
  for (int i = 0; i < FG_B_COUNT; ++i) bufs[i] = FgBuf{ptrs[i], numels[i], fg_dtype_code(dtypes[i])};
  FgParams p;
  std::string msg = fg_prepare(ints, dv, temperature, bufs, &p);
  if (!msg.empty()) { put_error(msg, err, errlen); return 1; }
  fg_emu::global().timeout_s = timeout_s;
  switch (p.dtype) {
    case FG_F32: msg = run_emulated<float, false>(p); break;
    case FG_BF16: msg = p.mma ? run_emulated<fg_bf16, true>(p) : run_emulated<fg_bf16, false>(p); break;
    case FG_F16: msg = p.mma ? run_emulated<fg_f16, true>(p) : run_emulated<fg_f16, false>(p); break;
    default: msg = "unsupported dtype";
  }
  if (!msg.empty()) { put_error(msg, err, errlen); return 2; }
  return 0;
}

// The shared-memory layout size, for cross-checking cuda.py's mirror of it.
long long fg_emu_smem_bytes(int K, int Fb, int S, int Cr, int Ch, int Cs, int Co, int Q, int esize, int mma,
                            int threads, long long core_resident, int down_resident) {
  return fg_smem_layout(K, Fb, S, Cr, Ch, Cs, Co, Q, esize, mma != 0, threads, core_resident, down_resident != 0).total;
}

}  // extern "C"
