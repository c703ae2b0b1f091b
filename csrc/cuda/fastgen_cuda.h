// fastgen CUDA backend: the plain (torch-free, CUDA-runtime-free) interface between the
// bindings and the persistent kernel.
//
// Python (fastgen/backends/cuda/: pack.py, plan.py) packs the weights and plans the launch; it
// calls the ops torch.ops.fastgen.cuda_generate / cuda_force / cuda_teacher_forced with the kernel's integers
// as named int arguments (FG_OP_INTS below; the op derives FG_CALL_INTS from its tensors), the
// dilations, the temperature and the buffers. fg_prepare_launch() validates the integers --
// dimensions, the plan, the shared memory layout (recomputed here and compared with the plan's),
// the packed weight layout -- and fg_bind_buffers() the buffers' dtypes and sizes; together they
// fill FgParams, and fg_launch() (launcher.cu) launches the kernel. Both bindings (the ops' CUDA
// kernels in binding.cpp and the CPU emulator used by the tests, csrc/cuda/emu/) go through
// them, so everything here is exercised on a CPU.
#pragma once

#include <climits>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#define FG_MAX_LAYERS 128
#define FG_MAX_THREADS 256
// Sizes fg_prepare accepts (fastgen.NetworkSpec's ranges are tighter and refuse a spec first).
// They keep the kernel's 32-bit index math exact: a weight index k * ldW + n or c * C_in + ci
// stays below 2^30, a ring capacity d + K fits an int, and with at most FG_MAX_SMEM bytes of
// shared memory every shared-memory index (rows x channels) does too. Every size derived from
// them in 64 bits (buffers, offsets, the shared memory layout) is overflow-checked.
#define FG_MAX_CHANNELS (1 << 14)  // C_in, C_r, C_h, C_s, C_o
#define FG_MAX_POSITIONS (1 << 14) // F, K
#define FG_MAX_CLASSES (1 << 17)   // Q, Q_c (Q_c = Q + 1 for 2^16 classes)
#define FG_MAX_DILATION (1 << 24)
#define FG_MAX_SMEM (1 << 20)      // bytes per block: four times any GPU's today
#define FG_MAX_SPIN_TIMEOUT_MS 86400000LL  // a day: a wait that long is a hang, whatever the tool

// The kernel's launch integers, each named once here. FG_OP_INTS are the named int arguments of
// the ops (their schemas, csrc/cuda/schema/ops.cpp, and their CUDA kernels, binding.cpp, are
// generated from this list; fastgen/backends/cuda/plan.py's op_ints() gives them): the network's
// sizes (L too: the dilations must agree with the packed weights), the packed weight blob's
// layout, the plan. FG_CALL_INTS the op derives per call (fg_op_call): batch and steps from the
// frames, the sequence groups from the batch, the mode from the op, step0 from its argument.
#define FG_OP_INTS(X)                                                                                 \
  X(Cin) X(F) X(K) X(Cr) X(Ch) X(Cs) X(Co) X(Q) X(Qc) X(L) X(start_class)                             \
  X(nf) X(Fb) X(S) X(threads) X(mma) X(smem_bytes) X(down_resident) X(core_bytes) X(core_resident)    \
  X(off_in_w) X(off_in_b) X(off_down_b) X(off_h1w) X(off_h1b) X(off_h2w) X(off_h2b) X(off_layers)    \
  X(layer_stride) X(loff_wdil) X(loff_wsr) X(loff_bsr) X(spin_timeout_ms)
#define FG_CALL_INTS(X) X(G) X(batch) X(steps) X(mode) X(step0)

namespace fastgen_cuda {

// The only place these codes are written: the emulator's callers name dtypes (fg_dtype_code),
// binding.cpp takes them from the tensors.
enum FgDType { FG_F32 = 0, FG_BF16 = 1, FG_F16 = 2, FG_I64 = 3, FG_U8 = 4, FG_I32 = 5, FG_DTYPE_COUNT };
// Generate: sample each step. Teacher: write each step's logits. Force: the steps' classes are
// given (classes[b][j] conditions step j: the op shifts them in) and nothing is output, so only
// the layers run; the history advances as in generate mode.
enum FgMode { FG_MODE_GENERATE = 0, FG_MODE_TEACHER = 1, FG_MODE_FORCE = 2 };

// Buffers, in this order, of every launch.
enum FgBufId {
  FG_B_CORE = 0,   // uint8   packed weights (see fastgen/backends/cuda/pack.py: core_layout)
  FG_B_DOWN,       // T       down_w as [F][K][C_o][Q]
  FG_B_COND,       // float32 cond table [L][Q_c][2 C_h]
  FG_B_FRAMES,     // T       (batch, C_in, steps*K, F)
  FG_B_UNIFORMS,   // float32 (batch, steps)          generate only
  FG_B_CLASSES,    // int64   (batch, steps)          teacher-forced and forced only
  FG_B_SAMPLES,    // int64   (batch, steps)          generate only (output)
  FG_B_LOGITS,     // float32 (batch, steps, Q)       teacher-forced only (output)
  FG_B_RING,       // T       history ring buffers, batch * ring_stride
  FG_B_PARTIALS,   // float32 cross-block partial logits, G * nf * S * Q  (not forced)
  FG_B_FLAGS,      // int32   step flags, G * (nf + 1); zeroed by the launcher
  FG_B_COUNT
};

// The launch integers, as given (64-bit: fg_prepare_launch range-checks each before it narrows it).
struct FgLaunchInts {
#define FG_FIELD(name) long long name = 0;
  FG_OP_INTS(FG_FIELD) FG_CALL_INTS(FG_FIELD)
#undef FG_FIELD
};

struct FgBuf {
  void* ptr;
  long long numel;
  int dtype;  // FgDType
};

// Everything the kernel reads. Passed by value as a __grid_constant__ kernel parameter.
struct FgParams {
  // network
  int Cin, F, K, Cr, Ch, Cs, Co, Q, Qc, L, start_class;
  // plan
  int nf, Fb, S, G, threads, batch, steps, mode, dtype, mma;
  int ldA, ldZ, down_resident;
  long long step0;  // the generation's index of this launch's first step (ring slots)
  float temperature;
  // how long a block waits for another before it reports a broken invariant and traps (ns)
  unsigned long long spin_timeout_ns;
  long long core_bytes, core_resident;
  // packed weight blob: byte offsets
  long long off_in_w, off_in_b, off_down_b, off_h1w, off_h1b, off_h2w, off_h2b;
  long long off_layers, layer_stride, loff_wdil, loff_wsr, loff_bsr;
  // shared memory layout: byte offsets
  long long sm_core, sm_down, sm_x, sm_skip, sm_h, sm_a, sm_z, sm_red, sm_part, sm_cls, smem_bytes;
  // history ring buffers: elements per sequence and per-layer offsets within a sequence
  long long ring_stride;
  long long ring_off[FG_MAX_LAYERS];
  int dil[FG_MAX_LAYERS];
  // buffers
  const unsigned char* core;
  const void* down;
  const float* cond;
  const void* frames;
  const float* uniforms;
  const long long* classes;
  long long* samples;
  float* logits;
  void* ring;
  float* partials;
  unsigned* flags;
};

struct FgSmemLayout {
  long long core, down, x, skip, h, a, z, red, part, cls, total;
  int ldA, ldZ;
};

inline long long fg_align16(long long v) { return (v + 15) & ~15LL; }

// a * b and a + b for non-negative a, b; false (out untouched) on a negative term or an
// overflow. Plain C++ (no compiler builtins): nvcc parses this header too.
inline bool fg_mul(long long a, long long b, long long* out) {
  if (a < 0 || b < 0 || (a != 0 && b > LLONG_MAX / a)) return false;
  *out = a * b;
  return true;
}
inline bool fg_add(long long a, long long b, long long* out) {
  if (a < 0 || b < 0 || a > LLONG_MAX - b) return false;
  *out = a + b;
  return true;
}
// The product of non-negative factors, or -1 on a negative factor or an overflow.
inline long long fg_prod(std::initializer_list<long long> factors) {
  long long r = 1;
  for (long long f : factors)
    if (!fg_mul(r, f, &r)) return -1;
  return r;
}

// a + b, or -1 when a term is negative or the sum overflows.
inline long long fg_add_or(long long a, long long b) {
  long long r;
  return fg_add(a, b, &r) ? r : -1;
}

// Lays out consecutive 16-byte aligned regions; ok turns false on a negative size or an overflow.
struct FgRegions {
  long long end = 0;
  bool ok = true;
  long long take(long long bytes) {  // the region's offset
    const long long at = end;
    long long padded;
    if (!ok || !fg_add(bytes, 15, &padded) || !fg_add(end, padded & ~15LL, &end)) ok = false;
    return at;
  }
};

// The per-block shared memory layout. plan.py's smem_layout() mirrors this formula; the
// prepared launch fails if the two disagree. total is -1 when a size overflows.
inline FgSmemLayout fg_smem_layout(int K, int Fb, int S, int Cr, int Ch, int Cs, int Co, int Q, int esize,
                                   bool mma, int threads, long long core_resident, bool down_resident) {
  FgSmemLayout s{};
  const long long M = fg_prod({S, K, Fb});
  const long long Mp = mma && M >= 0 ? (M + 15) / 16 * 16 : M;
  const int pad = esize == 2 ? 8 : 0;  // keeps 16-bit rows 16 bytes off a bank multiple
  const long long ldA = (2LL * Cr > Cs ? 2LL * Cr : (long long)Cs) + pad;
  const long long ldZ = (long long)(Ch > Co ? Ch : Co) + pad;
  FgRegions r;
  s.core = r.take(core_resident);
  s.down = r.take(down_resident ? fg_prod({Fb, K, Co, Q, esize}) : 0);
  s.x = r.take(fg_prod({M, Cr, 4}));
  // The head's output h (M x Co) reuses the skip sums' region: the skips are dead once
  // relu(skip) is in A, and the next step's first layer rewrites them only after the
  // downsampling has read h. Saves M x Co x 4 bytes: more rows fit a block.
  s.skip = r.take(fg_prod({M, Cs > Co ? Cs : Co, 4}));
  s.h = s.skip;
  s.a = r.take(fg_prod({Mp, ldA, esize}));
  s.z = r.take(fg_prod({Mp, ldZ, esize}));
  s.red = r.take(fg_prod({threads, 4}));
  s.part = r.take(fg_prod({S, Q, 4}));
  s.cls = r.take(fg_prod({S, 4}));
  const bool fits = r.ok && ldA <= INT_MAX && ldZ <= INT_MAX;
  s.total = fits ? r.end : -1;
  s.ldA = fits ? (int)ldA : 0;
  s.ldZ = fits ? (int)ldZ : 0;
  return s;
}

inline int fg_esize(int dtype) {
  switch (dtype) {
    case FG_F32: case FG_I32: return 4;
    case FG_BF16: case FG_F16: return 2;
    case FG_I64: return 8;
    case FG_U8: return 1;
    default: return 0;
  }
}

inline const char* fg_dtype_name(int dtype) {
  switch (dtype) {
    case FG_F32: return "float32";
    case FG_BF16: return "bfloat16";
    case FG_F16: return "float16";
    case FG_I64: return "int64";
    case FG_U8: return "uint8";
    case FG_I32: return "int32";
    default: return "unknown";
  }
}

// The code of a dtype named as torch names it ("float32", ...); -1 for any other name.
inline int fg_dtype_code(const char* name) {
  for (int c = 0; c < FG_DTYPE_COUNT; ++c)
    if (std::strcmp(fg_dtype_name(c), name) == 0) return c;
  return -1;
}

inline const char* fg_buf_name(int id) {
  static const char* names[FG_B_COUNT] = {"core", "down", "cond_table", "frames", "uniforms", "classes",
                                          "samples", "logits", "ring", "partials", "flags"};
  return id >= 0 && id < FG_B_COUNT ? names[id] : "?";
}

// The launch integers from named values (the emulator's and the tests' way in): every
// FG_OP_INTS name, and with per_call the FG_CALL_INTS too. "" or the first missing name.
inline std::string fg_named_ints(const std::map<std::string, long long>& named, bool per_call, FgLaunchInts* a) {
  *a = FgLaunchInts{};
  std::string missing;
  auto take = [&](const char* name, long long* field) {
    const auto it = named.find(name);
    if (it != named.end()) *field = it->second;
    else if (missing.empty()) missing = name;
  };
#define FG_TAKE(name) take(#name, &a->name);
  FG_OP_INTS(FG_TAKE)
  if (per_call) { FG_CALL_INTS(FG_TAKE) }
#undef FG_TAKE
  return missing.empty() ? "" : "internal error: launch parameter '" + missing + "' is missing";
}

// The integers an op derives per call (FG_CALL_INTS) from its mode, step0 and the frames' shape
// (B, C_in, steps * K, F), which must match the network's. "" or why the frames do not fit.
inline std::string fg_op_call(FgLaunchInts* a, int mode, long long step0, const long long frames[4]) {
  if (frames[1] != a->Cin || frames[3] != a->F || a->K < 1 || frames[2] % a->K) {
    std::ostringstream err;
    err << "frames must have shape (batch, C_in=" << a->Cin << ", steps*K with K=" << a->K << ", F=" << a->F
        << "), got (" << frames[0] << ", " << frames[1] << ", " << frames[2] << ", " << frames[3] << ")";
    return err.str();
  }
  a->mode = mode;
  a->step0 = step0;
  a->batch = frames[0];
  a->steps = frames[2] / a->K;
  a->G = a->S >= 1 ? (a->batch + a->S - 1) / a->S : 0;  // S < 1 is refused by fg_prepare_launch
  return "";
}

// Validates the launch integers and the dilations for compute dtype `dtype` (an FgDType: the
// down weights') and fills *p, but for its buffers (fg_bind_buffers).
// Returns "" on success, else a message saying what is wrong.
inline std::string fg_prepare_launch(const FgLaunchInts& a, const std::vector<long long>& dils, double temperature,
                                     int dtype, FgParams* p) {
  std::ostringstream err;
  *p = FgParams{};
  // Every integer is range-checked before it is narrowed to the int the kernel takes (2^32 + 3
  // must not become 3); checks with a message of their own below come first where they read
  // the value in 64 bits.
  struct Range { long long value; const char* name; long long lo, hi; };
  const Range ranges[] = {
      {a.Cin, "in_channels", 1, FG_MAX_CHANNELS}, {a.F, "num_features", 1, FG_MAX_POSITIONS},
      {a.K, "frames_per_step", 1, FG_MAX_POSITIONS}, {a.Cr, "residual_channels", 1, FG_MAX_CHANNELS},
      {a.Ch, "hidden_channels", 1, FG_MAX_CHANNELS}, {a.Cs, "skip_channels", 1, FG_MAX_CHANNELS},
      {a.Co, "out_channels", 1, FG_MAX_CHANNELS}, {a.Q, "num_classes", 1, FG_MAX_CLASSES},
      {a.Qc, "cond_classes", 1, FG_MAX_CLASSES}, {a.L, "layers", LLONG_MIN, LLONG_MAX},
      {a.start_class, "start_class", LLONG_MIN, LLONG_MAX},
      {a.nf, "f-split blocks", 1, INT_MAX}, {a.Fb, "positions per block", 1, INT_MAX},
      {a.S, "sequences per block", 1, INT_MAX}, {a.G, "sequence groups", 1, INT_MAX},
      {a.threads, "threads", LLONG_MIN, LLONG_MAX}, {a.batch, "batch", LLONG_MIN, LLONG_MAX},
      {a.steps, "steps", LLONG_MIN, LLONG_MAX}, {a.mode, "mode", LLONG_MIN, LLONG_MAX},
      {a.mma, "mma", 0, 1}, {a.down_resident, "down_resident", 0, 1},
      {a.smem_bytes, "shared memory per block", 0, FG_MAX_SMEM},
      {a.spin_timeout_ms, "spin timeout (ms)", 1, FG_MAX_SPIN_TIMEOUT_MS},
      {a.step0, "the first step's index", 0, 1LL << 40},
  };
  p->core_bytes = a.core_bytes; p->core_resident = a.core_resident;
  p->off_in_w = a.off_in_w; p->off_in_b = a.off_in_b; p->off_down_b = a.off_down_b;
  p->off_h1w = a.off_h1w; p->off_h1b = a.off_h1b; p->off_h2w = a.off_h2w; p->off_h2b = a.off_h2b;
  p->off_layers = a.off_layers; p->layer_stride = a.layer_stride;
  p->loff_wdil = a.loff_wdil; p->loff_wsr = a.loff_wsr; p->loff_bsr = a.loff_bsr;
  p->temperature = (float)temperature;

  // -- network dimensions
  for (const Range& r : ranges) {
    if (r.value < r.lo || r.value > r.hi) {
      err << r.name << " must lie in [" << r.lo << ", " << r.hi << "], got " << r.value;
      return err.str();
    }
  }
  p->spin_timeout_ns = (unsigned long long)a.spin_timeout_ms * 1000000ull;
  if (a.L <= 0 || a.L > FG_MAX_LAYERS) {
    err << "the cuda backend supports 1.." << FG_MAX_LAYERS << " layers, the network has " << a.L;
    return err.str();
  }
  if ((long long)dils.size() != a.L) { err << "got " << dils.size() << " dilations for " << a.L << " layers"; return err.str(); }
  if (a.start_class < 0 || a.start_class >= a.Qc) {
    err << "start_class " << a.start_class << " outside [0, " << a.Qc << ")"; return err.str();
  }
  if (a.threads < 32 || a.threads > FG_MAX_THREADS || a.threads % 32) {
    err << "threads per block must be a multiple of 32 in [32, " << FG_MAX_THREADS << "], got " << a.threads;
    return err.str();
  }
  // j + 1 (an int) counts steps in the kernel's flags
  if (a.batch <= 0 || a.steps <= 0 || a.batch > INT_MAX || a.steps >= INT_MAX) {
    err << "batch and steps must lie in [1, " << INT_MAX - 1 << "], got " << a.batch << ", " << a.steps;
    return err.str();
  }
  if (a.mode != FG_MODE_GENERATE && a.mode != FG_MODE_TEACHER && a.mode != FG_MODE_FORCE) {
    err << "unknown mode " << a.mode;
    return err.str();
  }
  // The compute dtype is the one the down weights carry; frames and ring must match it (below).
  if (dtype != FG_F32 && dtype != FG_BF16 && dtype != FG_F16) {
    err << "down weights must be float32, bfloat16 or float16 (the compute dtype), got " << fg_dtype_name(dtype);
    return err.str();
  }
  // every value is now within int range
  p->Cin = (int)a.Cin; p->F = (int)a.F; p->K = (int)a.K; p->Cr = (int)a.Cr;
  p->Ch = (int)a.Ch; p->Cs = (int)a.Cs; p->Co = (int)a.Co; p->Q = (int)a.Q;
  p->Qc = (int)a.Qc; p->L = (int)a.L; p->start_class = (int)a.start_class;
  p->nf = (int)a.nf; p->Fb = (int)a.Fb; p->S = (int)a.S; p->G = (int)a.G;
  p->threads = (int)a.threads; p->batch = (int)a.batch; p->steps = (int)a.steps;
  p->mode = (int)a.mode; p->dtype = dtype; p->mma = (int)a.mma;
  p->down_resident = (int)a.down_resident;
  p->step0 = a.step0;
  const long long smem_plan = a.smem_bytes;
  if (p->Q > p->Qc) {
    err << "sampled classes feed back as conditioning classes, so cond_classes (" << p->Qc
        << ") must be >= num_classes (" << p->Q << ")";
    return err.str();
  }
  if (p->mma && p->dtype == FG_F32) return "the tensor-core (mma) path needs bfloat16 or float16";
  if (p->mma && (p->Cr % 16 || p->Ch % 16 || p->Cs % 16 || p->Co % 16)) {
    err << "the tensor-core (mma) path needs residual, hidden, skip and out channels that are multiples of 16, got "
        << p->Cr << ", " << p->Ch << ", " << p->Cs << ", " << p->Co << " (use path='fma')";
    return err.str();
  }
  long long ring_stride = 0;
  for (int l = 0; l < p->L; ++l) {
    if (dils[l] <= 0 || dils[l] > FG_MAX_DILATION) { err << "dilation " << dils[l] << " of layer " << l << " is not supported (1.." << FG_MAX_DILATION << ")"; return err.str(); }
    p->dil[l] = (int)dils[l];
    p->ring_off[l] = ring_stride;
    if (!fg_add(ring_stride, fg_prod({dils[l] + p->K, p->F, p->Cr}), &ring_stride))
      return "the history ring buffers' size overflows";
  }
  p->ring_stride = ring_stride;

  // -- plan
  if (p->Fb <= 0 || p->nf <= 0 || (long long)p->nf * p->Fb < p->F || (long long)(p->nf - 1) * p->Fb >= p->F) {
    err << "f-split of " << p->nf << " blocks x " << p->Fb << " positions does not tile F=" << p->F << " exactly";
    return err.str();
  }
  if (p->S <= 0 || p->G <= 0 || (long long)p->G * p->S < p->batch || (long long)(p->G - 1) * p->S >= p->batch) {
    err << p->G << " groups x " << p->S << " sequences do not tile a batch of " << p->batch << " exactly";
    return err.str();
  }
  if (p->G > 65535) { err << "too many sequence groups (" << p->G << ")"; return err.str(); }
  if ((p->step0 + p->steps) * p->K > (1LL << 40)) return "too many steps";
  if (p->mode == FG_MODE_TEACHER && p->step0 != 0) return "teacher-forced launches start at step 0";
  const int es = fg_esize(p->dtype);
  if (p->core_resident < 0 || p->core_resident > smem_plan) {
    err << "core_resident (" << p->core_resident << ") must lie in [0, shared memory per block=" << smem_plan << "]";
    return err.str();
  }
  const FgSmemLayout sl = fg_smem_layout(p->K, p->Fb, p->S, p->Cr, p->Ch, p->Cs, p->Co, p->Q, es, p->mma != 0,
                                         p->threads, p->core_resident, p->down_resident != 0);
  if (sl.total < 0) return "the shared memory layout of this plan overflows (hostile sizes?)";
  if (sl.total != smem_plan) {
    err << "internal error: the plan's shared memory size (" << smem_plan << " bytes) differs from the kernel's layout ("
        << sl.total << " bytes)";
    return err.str();
  }
  const long long M = fg_prod({p->S, p->K, p->Fb});  // fits: the layout above did not overflow
  if (sl.h != sl.skip || sl.h + M * p->Co * 4 > sl.a) {  // the head output must fit the skip region it reuses
    err << "internal error: the head output (" << M * p->Co * 4 << " bytes) does not fit the skip region";
    return err.str();
  }
  p->sm_core = sl.core; p->sm_down = sl.down; p->sm_x = sl.x; p->sm_skip = sl.skip; p->sm_h = sl.h;
  p->sm_a = sl.a; p->sm_z = sl.z; p->sm_red = sl.red; p->sm_part = sl.part; p->sm_cls = sl.cls;
  p->smem_bytes = sl.total; p->ldA = sl.ldA; p->ldZ = sl.ldZ;

  // -- packed weight layout
  if (p->core_resident < 0 || p->core_resident > p->core_bytes || p->core_resident % 16) {
    err << "core_resident (" << p->core_resident << ") must be a multiple of 16 in [0, core_bytes=" << p->core_bytes << "]";
    return err.str();
  }
  struct Seg { const char* name; long long off, bytes, align; };
  // channel counts are at most FG_MAX_CHANNELS: these products cannot overflow
  const long long wsz_dil = 2LL * p->Ch * 2 * p->Cr * es, wsz_sr = (long long)(p->Cs + p->Cr) * p->Ch * es;
  const long long all_layers = fg_prod({p->layer_stride, p->L});
  const Seg segs[] = {
      {"in_w", p->off_in_w, 4LL * p->Cr * p->Cin, 16}, {"in_b", p->off_in_b, 4LL * p->Cr, 16},
      {"down_b", p->off_down_b, 4LL * p->Q, 16},
      {"head1_w", p->off_h1w, (long long)p->Co * p->Cs * es, 16}, {"head1_b", p->off_h1b, 4LL * p->Co, 16},
      {"head2_w", p->off_h2w, (long long)p->Co * p->Co * es, 16}, {"head2_b", p->off_h2b, 4LL * p->Co, 16},
      {"layer0.dil_w", fg_add_or(p->off_layers, p->loff_wdil), wsz_dil, 16},
      {"layer0.skip_res_w", fg_add_or(p->off_layers, p->loff_wsr), wsz_sr, 16},
      {"layer0.skip_res_b", fg_add_or(p->off_layers, p->loff_bsr), 4LL * (p->Cs + p->Cr), 16},
      {"layers", p->off_layers, all_layers, 16},
  };
  for (const Seg& s : segs) {
    long long end;
    if (s.off < 0 || s.bytes < 0 || s.off % s.align || !fg_add(s.off, s.bytes, &end) || end > p->core_bytes) {
      err << "packed weight segment " << s.name << " (offset " << s.off << ", " << s.bytes
          << " bytes; -1: an overflowing value) lies outside the " << p->core_bytes << "-byte blob or is misaligned";
      return err.str();
    }
  }
  // Every layer's segments must lie within its stride: the blob is checked above to hold all
  // L strides, so then the last layer's segments lie in it too (not only layer 0's).
  auto in_stride = [&](long long off, long long bytes) {
    const long long end = fg_add_or(off, bytes);
    return end >= 0 && end <= p->layer_stride;
  };
  if (p->layer_stride % 16 || !in_stride(p->loff_wdil, wsz_dil) || !in_stride(p->loff_wsr, wsz_sr) ||
      !in_stride(p->loff_bsr, 4LL * (p->Cs + p->Cr))) {
    err << "layer stride " << p->layer_stride << " is misaligned, or a layer's segments (offsets " << p->loff_wdil
        << ", " << p->loff_wsr << ", " << p->loff_bsr << ") do not fit in it";
    return err.str();
  }
  return "";
}

// What each buffer of the launch *p must be: its dtype and how many elements it holds at least
// (0: not used in this mode). The ops allocate their outputs and workspaces from it. "" or which
// size overflows.
struct FgBufNeed { int dtype; long long numel; };
inline std::string fg_buffer_needs(const FgParams& p, FgBufNeed need[FG_B_COUNT]) {
  const bool gen = p.mode == FG_MODE_GENERATE, teacher = p.mode == FG_MODE_TEACHER;
  const long long B = p.batch, n = p.steps;
  need[FG_B_CORE] = {FG_U8, p.core_bytes};
  need[FG_B_DOWN] = {p.dtype, fg_prod({p.F, p.K, p.Co, p.Q})};
  need[FG_B_COND] = {FG_F32, fg_prod({p.L, p.Qc, 2, p.Ch})};
  need[FG_B_FRAMES] = {p.dtype, fg_prod({B, p.Cin, n, p.K, p.F})};
  need[FG_B_UNIFORMS] = {FG_F32, gen ? fg_prod({B, n}) : 0};
  need[FG_B_CLASSES] = {FG_I64, gen ? 0 : fg_prod({B, n})};
  need[FG_B_SAMPLES] = {FG_I64, gen ? fg_prod({B, n + 1}) : 0};  // column 0: the first step's conditioning
  need[FG_B_LOGITS] = {FG_F32, teacher ? fg_prod({B, n, p.Q}) : 0};
  need[FG_B_RING] = {p.dtype, fg_prod({B, p.ring_stride})};
  need[FG_B_PARTIALS] = {FG_F32, gen || teacher ? fg_prod({p.G, p.nf, p.S, p.Q}) : 0};
  need[FG_B_FLAGS] = {FG_I32, fg_prod({p.G, (long long)p.nf + 1})};
  for (int id = 0; id < FG_B_COUNT; ++id) {
    if (need[id].numel < 0) {
      std::ostringstream err;
      err << "the size of buffer " << fg_buf_name(id) << " overflows (batch " << B << ", steps " << n << ")";
      return err.str();
    }
  }
  return "";
}

// Checks the buffers (FG_B_COUNT of them, in FgBufId order; those this mode does not use may be
// empty) against the launch *p prepared by fg_prepare_launch and points *p at them.
// Returns "" on success, else a message saying what is wrong.
inline std::string fg_bind_buffers(const FgBuf* bufs, FgParams* p) {
  std::ostringstream err;
  FgBufNeed need[FG_B_COUNT];
  const std::string sizes = fg_buffer_needs(*p, need);
  if (!sizes.empty()) return sizes;
  for (int id = 0; id < FG_B_COUNT; ++id) {
    if (need[id].numel == 0) continue;  // not used in this mode
    const FgBuf& b = bufs[id];
    if (b.dtype != need[id].dtype) {
      err << "buffer " << fg_buf_name(id) << " must be " << fg_dtype_name(need[id].dtype) << ", got "
          << fg_dtype_name(b.dtype);
      return err.str();
    }
    if (b.numel < need[id].numel) {
      err << "buffer " << fg_buf_name(id) << " holds " << b.numel << " elements, the launch needs " << need[id].numel;
      return err.str();
    }
    if (need[id].numel > 0 && b.ptr == nullptr) { err << "buffer " << fg_buf_name(id) << " is null"; return err.str(); }
  }
  if (reinterpret_cast<std::uintptr_t>(bufs[FG_B_CORE].ptr) % 16) return "the packed weight blob must be 16-byte aligned";
  if (reinterpret_cast<std::uintptr_t>(bufs[FG_B_DOWN].ptr) % 4) return "down weights must be 4-byte aligned";
  p->core = static_cast<const unsigned char*>(bufs[FG_B_CORE].ptr);
  p->down = bufs[FG_B_DOWN].ptr;
  p->cond = static_cast<const float*>(bufs[FG_B_COND].ptr);
  p->frames = bufs[FG_B_FRAMES].ptr;
  p->uniforms = static_cast<const float*>(bufs[FG_B_UNIFORMS].ptr);
  p->classes = static_cast<const long long*>(bufs[FG_B_CLASSES].ptr);
  p->samples = static_cast<long long*>(bufs[FG_B_SAMPLES].ptr);
  p->logits = static_cast<float*>(bufs[FG_B_LOGITS].ptr);
  p->ring = bufs[FG_B_RING].ptr;
  p->partials = static_cast<float*>(bufs[FG_B_PARTIALS].ptr);
  p->flags = static_cast<unsigned*>(bufs[FG_B_FLAGS].ptr);
  return "";
}

// A whole raw launch (the emulator's and the tests' entry): fg_prepare_launch with the down
// weights' dtype as the compute dtype, then fg_bind_buffers.
inline std::string fg_prepare(const FgLaunchInts& a, const std::vector<long long>& dils, double temperature,
                              const FgBuf* bufs, FgParams* p) {
  const std::string err = fg_prepare_launch(a, dils, temperature, bufs[FG_B_DOWN].dtype, p);
  return err.empty() ? fg_bind_buffers(bufs, p) : err;
}
// Launches the persistent kernel on `stream` (a cudaStream_t): zeroes the flags, checks that
// the grid can be co-resident and uses a cooperative launch. Returns "" or an error message.
// Defined in launcher.cu.
std::string fg_launch(const FgParams& p, void* stream);

}  // namespace fastgen_cuda
