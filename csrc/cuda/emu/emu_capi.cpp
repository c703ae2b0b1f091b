// C entry points of the CPU emulator (tests only; loaded with ctypes by tests/cuda_emu.py).
// Same parameters and checks as the torch binding (csrc/cuda/binding.cpp): fastgen_cuda.h
// validates, then the kernel runs emulated. fg_emu_run is one raw launch; fg_emu_op one call of
// an op, as binding.cpp makes it on a GPU.
#define FASTGEN_CUDA_EMULATE 1
#include <cstring>
#include <string>
#include <vector>

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

// The prepared launch, emulated (fg_launch's stand-in): "" or what went wrong.
std::string launch(const FgParams& p, double timeout_s) {
  fg_emu::global().timeout_s = timeout_s;
  switch (p.dtype) {
    case FG_F32: return run_emulated<float, false>(p);
    case FG_BF16: return p.mma ? run_emulated<fg_bf16, true>(p) : run_emulated<fg_bf16, false>(p);
    case FG_F16: return p.mma ? run_emulated<fg_f16, true>(p) : run_emulated<fg_f16, false>(p);
    default: return "unsupported dtype";
  }
}

std::map<std::string, long long> named(int nkeys, const char* const* keys, const long long* vals) {
  std::map<std::string, long long> ints;
  for (int i = 0; i < nkeys; ++i) ints[keys[i]] = vals[i];
  return ints;
}

void to_bufs(void* const* ptrs, const long long* numels, const char* const* dtypes, FgBuf* bufs) {
  for (int i = 0; i < FG_B_COUNT; ++i) bufs[i] = FgBuf{ptrs[i], numels[i], fg_dtype_code(dtypes[i])};
}

}  // namespace

extern "C" {

// keys: nkeys NUL-terminated names (every launch integer, FG_OP_INTS and FG_CALL_INTS); vals:
// their values. bufs: FG_B_COUNT pointers, numels and dtype names as torch spells them
// ("float32", ...). Returns 0 on success, 1 on a validation error, 2 on an emulated-launch failure.
int fg_emu_run(int nkeys, const char* const* keys, const long long* vals, int ndil, const long long* dils,
               double temperature, void* const* ptrs, const long long* numels, const char* const* dtypes, double timeout_s,
               char* err, int errlen) {
  FgLaunchInts a;
  std::string msg = fg_named_ints(named(nkeys, keys, vals), /*per_call=*/true, &a);
  FgBuf bufs[FG_B_COUNT];
  to_bufs(ptrs, numels, dtypes, bufs);
  FgParams p;
  if (msg.empty()) msg = fg_prepare(a, std::vector<long long>(dils, dils + ndil), temperature, bufs, &p);
  if (!msg.empty()) { put_error(msg, err, errlen); return 1; }
  msg = launch(p, timeout_s);
  if (!msg.empty()) { put_error(msg, err, errlen); return 2; }
  return 0;
}

// One call of torch.ops.fastgen.cuda_generate (mode 0), cuda_teacher_forced (mode 1) or
// cuda_force (mode 2), as binding.cpp makes it: keys/vals the op's named integers (FG_OP_INTS),
// frames_shape the frames' four sizes, bufs the op's tensors in their FgBufId slots -- core,
// down, cond_table, frames, uniforms or classes (forced: shifted, column 0 the first step's
// class), the output (samples with column 0 set, or logits; none when forced) and in generate
// and forced mode the rings -- and empty slots for the workspaces, which are allocated here
// (the binding allocates them on the GPU). Returns as fg_emu_run.
int fg_emu_op(int mode, int nkeys, const char* const* keys, const long long* vals, int ndil, const long long* dils,
              double temperature, long long step0, const long long* frames_shape, void* const* ptrs,
              const long long* numels, const char* const* dtypes, double timeout_s, char* err, int errlen) {
  FgLaunchInts a;
  std::string msg = fg_named_ints(named(nkeys, keys, vals), /*per_call=*/false, &a);
  if (msg.empty()) msg = fg_op_call(&a, mode, step0, frames_shape);
  if (!msg.empty()) { put_error(msg, err, errlen); return 1; }
  if (a.batch == 0 || a.steps == 0) return 0;  // nothing to run
  FgBuf bufs[FG_B_COUNT];
  to_bufs(ptrs, numels, dtypes, bufs);
  FgParams p;
  msg = fg_prepare_launch(a, std::vector<long long>(dils, dils + ndil), temperature, bufs[FG_B_DOWN].dtype, &p);
  FgBufNeed need[FG_B_COUNT];
  if (msg.empty()) msg = fg_buffer_needs(p, need);
  if (!msg.empty()) { put_error(msg, err, errlen); return 1; }
  std::vector<std::vector<long long>> workspaces;  // 8-byte aligned
  workspaces.reserve(3);
  for (int id : {FG_B_RING, FG_B_PARTIALS, FG_B_FLAGS}) {
    if (id == FG_B_RING && mode != FG_MODE_TEACHER) continue;  // the caller's rings
    const long long bytes = fg_prod({need[id].numel, fg_esize(need[id].dtype), 1});
    if (bytes < 0) { put_error("the workspaces' size overflows", err, errlen); return 1; }
    workspaces.emplace_back((size_t)(bytes + 7) / 8);
    bufs[id] = FgBuf{workspaces.back().data(), need[id].numel, need[id].dtype};
  }
  msg = fg_bind_buffers(bufs, &p);
  if (!msg.empty()) { put_error(msg, err, errlen); return 1; }
  msg = launch(p, timeout_s);
  if (!msg.empty()) { put_error(msg, err, errlen); return 2; }
  return 0;
}

// The shared-memory layout size, for cross-checking plan.py's mirror of it (smem_layout).
long long fg_emu_smem_bytes(int K, int Fb, int S, int Cr, int Ch, int Cs, int Co, int Q, int esize, int mma,
                            int threads, long long core_resident, int down_resident) {
  return fg_smem_layout(K, Fb, S, Cr, Ch, Cs, Co, Q, esize, mma != 0, threads, core_resident, down_resident != 0).total;
}

}  // extern "C"
