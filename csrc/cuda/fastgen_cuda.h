// fastgen CUDA backend: the plain (torch-free, CUDA-runtime-free) interface between the
// bindings and the persistent kernel.
//
// Python (fastgen/backends/cuda.py) packs the weights and plans the launch; it hands the
// kernel's parameters over as a map of named integers (plus the dilations, the temperature
// and the buffers). fg_prepare() validates all of it -- dimensions, the plan, the shared
// memory layout (recomputed here and compared with the plan's), buffer dtypes and sizes --
// and fills FgParams; fg_launch() (launcher.cu) launches the kernel. Both bindings (the
// torch extension in binding.cpp and the CPU emulator used by the tests, csrc/cuda/emu/) go
// through fg_prepare, so everything here is exercised on a CPU.
#pragma once

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#define FG_MAX_LAYERS 128
#define FG_MAX_THREADS 256

namespace fastgen_cuda {

enum FgDType { FG_F32 = 0, FG_BF16 = 1, FG_F16 = 2, FG_I64 = 3, FG_U8 = 4, FG_I32 = 5 };
enum FgMode { FG_MODE_GENERATE = 0, FG_MODE_TEACHER = 1 };

// Buffers, in this order, in every run call.
enum FgBufId {
  FG_B_CORE = 0,   // uint8   packed weights (see cuda.py: core_layout)
  FG_B_DOWN,       // T       down_w as [F][K][C_o][Q]
  FG_B_COND,       // float32 cond table [L][Q_c][2 C_h]
  FG_B_FRAMES,     // T       (batch, C_in, steps*K, F)
  FG_B_UNIFORMS,   // float32 (batch, steps)          generate only
  FG_B_CLASSES,    // int64   (batch, steps)          teacher-forced only
  FG_B_SAMPLES,    // int64   (batch, steps)          generate only (output)
  FG_B_LOGITS,     // float32 (batch, steps, Q)       teacher-forced only (output)
  FG_B_RING,       // T       history ring buffers, batch * ring_stride
  FG_B_PARTIALS,   // float32 cross-block partial logits, G * nf * S * Q
  FG_B_FLAGS,      // int32   step flags, G * (nf + 1); zeroed by the launcher
  FG_B_COUNT
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
  float temperature;
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

// The per-block shared memory layout. cuda.py's smem_layout() mirrors this formula; the
// prepared launch fails if the two disagree.
inline FgSmemLayout fg_smem_layout(int K, int Fb, int S, int Cr, int Ch, int Cs, int Co, int Q, int esize,
                                   bool mma, int threads, long long core_resident, bool down_resident) {
  FgSmemLayout s{};
  const long long M = (long long)S * K * Fb;
  const long long Mp = mma ? (M + 15) / 16 * 16 : M;
  const int pad = esize == 2 ? 8 : 0;  // keeps 16-bit rows 16 bytes off a bank multiple
  s.ldA = (2 * Cr > Cs ? 2 * Cr : Cs) + pad;
  s.ldZ = (Ch > Co ? Ch : Co) + pad;
  long long off = 0;
  s.core = off; off += fg_align16(core_resident);
  s.down = off; off += down_resident ? fg_align16((long long)Fb * K * Co * Q * esize) : 0;
  s.x = off; off += fg_align16(M * Cr * 4);
  // The head's output h (M x Co) reuses the skip sums' region: the skips are dead once
  // relu(skip) is in A, and the next step's first layer rewrites them only after the
  // downsampling has read h. Saves M x Co x 4 bytes: more rows fit a block.
  s.skip = off; off += fg_align16(M * (Cs > Co ? Cs : Co) * 4);
  s.h = s.skip;
  s.a = off; off += fg_align16(Mp * s.ldA * esize);
  s.z = off; off += fg_align16(Mp * s.ldZ * esize);
  s.red = off; off += fg_align16((long long)threads * 4);
  s.part = off; off += fg_align16((long long)S * Q * 4);
  s.cls = off; off += fg_align16((long long)S * 4);
  s.total = off;
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

inline const char* fg_buf_name(int id) {
  static const char* names[FG_B_COUNT] = {"core", "down", "cond_table", "frames", "uniforms", "classes",
                                          "samples", "logits", "ring", "partials", "flags"};
  return id >= 0 && id < FG_B_COUNT ? names[id] : "?";
}

// Validates the named parameters, the dilations and the buffers and fills *p.
// Returns "" on success, else a message saying what is wrong.
inline std::string fg_prepare(const std::map<std::string, long long>& ints, const std::vector<long long>& dils,
                              double temperature, const FgBuf* bufs, FgParams* p) {
  std::ostringstream err;
  std::string missing;
  auto get = [&](const char* key) -> long long {
    auto it = ints.find(key);
    if (it == ints.end()) {
      if (missing.empty()) missing = key;
      return 0;
    }
    return it->second;
  };
  *p = FgParams{};
  p->Cin = (int)get("Cin"); p->F = (int)get("F"); p->K = (int)get("K"); p->Cr = (int)get("Cr");
  p->Ch = (int)get("Ch"); p->Cs = (int)get("Cs"); p->Co = (int)get("Co"); p->Q = (int)get("Q");
  p->Qc = (int)get("Qc"); p->L = (int)get("L"); p->start_class = (int)get("start_class");
  p->nf = (int)get("nf"); p->Fb = (int)get("Fb"); p->S = (int)get("S"); p->G = (int)get("G");
  p->threads = (int)get("threads"); p->batch = (int)get("batch"); p->steps = (int)get("steps");
  p->mode = (int)get("mode"); p->dtype = (int)get("dtype"); p->mma = (int)get("mma");
  p->down_resident = (int)get("down_resident");
  p->core_bytes = get("core_bytes"); p->core_resident = get("core_resident");
  p->off_in_w = get("off_in_w"); p->off_in_b = get("off_in_b"); p->off_down_b = get("off_down_b");
  p->off_h1w = get("off_h1w"); p->off_h1b = get("off_h1b"); p->off_h2w = get("off_h2w"); p->off_h2b = get("off_h2b");
  p->off_layers = get("off_layers"); p->layer_stride = get("layer_stride");
  p->loff_wdil = get("loff_wdil"); p->loff_wsr = get("loff_wsr"); p->loff_bsr = get("loff_bsr");
  const long long smem_plan = get("smem_bytes");
  if (!missing.empty()) return "internal error: launch parameter '" + missing + "' is missing";
  p->temperature = (float)temperature;

  // -- network dimensions
  const int dimv[] = {p->Cin, p->F, p->K, p->Cr, p->Ch, p->Cs, p->Co, p->Q, p->Qc};
  const char* dimn[] = {"in_channels", "num_features", "frames_per_step", "residual_channels", "hidden_channels",
                        "skip_channels", "out_channels", "num_classes", "cond_classes"};
  for (int i = 0; i < 9; ++i)
    if (dimv[i] <= 0) { err << dimn[i] << " must be positive, got " << dimv[i]; return err.str(); }
  if (p->L <= 0 || p->L > FG_MAX_LAYERS) {
    err << "the cuda backend supports 1.." << FG_MAX_LAYERS << " layers, the network has " << p->L;
    return err.str();
  }
  if ((long long)dils.size() != p->L) { err << "got " << dils.size() << " dilations for " << p->L << " layers"; return err.str(); }
  if (p->start_class < 0 || p->start_class >= p->Qc) {
    err << "start_class " << p->start_class << " outside [0, " << p->Qc << ")"; return err.str();
  }
  if (p->Q > p->Qc) {
    err << "sampled classes feed back as conditioning classes, so cond_classes (" << p->Qc
        << ") must be >= num_classes (" << p->Q << ")";
    return err.str();
  }
  if (p->dtype != FG_F32 && p->dtype != FG_BF16 && p->dtype != FG_F16) {
    err << "unsupported dtype code " << p->dtype; return err.str();
  }
  if (p->mma && p->dtype == FG_F32) return "the tensor-core (mma) path needs bfloat16 or float16";
  if (p->mma && (p->Cr % 16 || p->Ch % 16 || p->Cs % 16 || p->Co % 16)) {
    err << "the tensor-core (mma) path needs residual, hidden, skip and out channels that are multiples of 16, got "
        << p->Cr << ", " << p->Ch << ", " << p->Cs << ", " << p->Co << " (use path='fma')";
    return err.str();
  }
  long long ring_stride = 0;
  for (int l = 0; l < p->L; ++l) {
    if (dils[l] <= 0 || dils[l] > (1LL << 24)) { err << "dilation " << dils[l] << " of layer " << l << " is not supported"; return err.str(); }
    p->dil[l] = (int)dils[l];
    p->ring_off[l] = ring_stride;
    ring_stride += (dils[l] + p->K) * (long long)p->F * p->Cr;
  }
  p->ring_stride = ring_stride;

  // -- plan
  if (p->mode != FG_MODE_GENERATE && p->mode != FG_MODE_TEACHER) { err << "unknown mode " << p->mode; return err.str(); }
  if (p->threads < 32 || p->threads > FG_MAX_THREADS || p->threads % 32) {
    err << "threads per block must be a multiple of 32 in [32, " << FG_MAX_THREADS << "], got " << p->threads;
    return err.str();
  }
  if (p->batch <= 0 || p->steps <= 0) { err << "batch and steps must be positive, got " << p->batch << ", " << p->steps; return err.str(); }
  if (p->Fb <= 0 || p->nf <= 0 || (long long)p->nf * p->Fb < p->F || (long long)(p->nf - 1) * p->Fb >= p->F) {
    err << "f-split of " << p->nf << " blocks x " << p->Fb << " positions does not tile F=" << p->F << " exactly";
    return err.str();
  }
  if (p->S <= 0 || p->G <= 0 || (long long)p->G * p->S < p->batch || (long long)(p->G - 1) * p->S >= p->batch) {
    err << p->G << " groups x " << p->S << " sequences do not tile a batch of " << p->batch << " exactly";
    return err.str();
  }
  if (p->G > 65535) { err << "too many sequence groups (" << p->G << ")"; return err.str(); }
  if ((long long)p->steps * p->K > (1LL << 40)) return "too many steps";
  const int es = fg_esize(p->dtype);
  const FgSmemLayout sl = fg_smem_layout(p->K, p->Fb, p->S, p->Cr, p->Ch, p->Cs, p->Co, p->Q, es, p->mma != 0,
                                         p->threads, p->core_resident, p->down_resident != 0);
  if (sl.total != smem_plan) {
    err << "internal error: the plan's shared memory size (" << smem_plan << " bytes) differs from the kernel's layout ("
        << sl.total << " bytes)";
    return err.str();
  }
  const long long M = (long long)p->S * p->K * p->Fb;
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
  const long long wsz_dil = 2LL * p->Ch * 2 * p->Cr * es, wsz_sr = (long long)(p->Cs + p->Cr) * p->Ch * es;
  const Seg segs[] = {
      {"in_w", p->off_in_w, 4LL * p->Cr * p->Cin, 16}, {"in_b", p->off_in_b, 4LL * p->Cr, 16},
      {"down_b", p->off_down_b, 4LL * p->Q, 16},
      {"head1_w", p->off_h1w, (long long)p->Co * p->Cs * es, 16}, {"head1_b", p->off_h1b, 4LL * p->Co, 16},
      {"head2_w", p->off_h2w, (long long)p->Co * p->Co * es, 16}, {"head2_b", p->off_h2b, 4LL * p->Co, 16},
      {"layer0.dil_w", p->off_layers + p->loff_wdil, wsz_dil, 16},
      {"layer0.skip_res_w", p->off_layers + p->loff_wsr, wsz_sr, 16},
      {"layer0.skip_res_b", p->off_layers + p->loff_bsr, 4LL * (p->Cs + p->Cr), 16},
      {"layers", p->off_layers, p->layer_stride * p->L, 16},
  };
  for (const Seg& s : segs) {
    if (s.off < 0 || s.off % s.align || s.off + s.bytes > p->core_bytes) {
      err << "packed weight segment " << s.name << " (offset " << s.off << ", " << s.bytes
          << " bytes) lies outside the " << p->core_bytes << "-byte blob or is misaligned";
      return err.str();
    }
  }
  if (p->layer_stride % 16 || p->layer_stride < wsz_dil + wsz_sr + 4LL * (p->Cs + p->Cr)) {
    err << "layer stride " << p->layer_stride << " is too small or misaligned"; return err.str();
  }

  // -- buffers
  const bool gen = p->mode == FG_MODE_GENERATE;
  const long long B = p->batch, n = p->steps;
  struct Need { int id; int dtype; long long numel; bool used; };
  const Need needs[] = {
      {FG_B_CORE, FG_U8, p->core_bytes, true},
      {FG_B_DOWN, p->dtype, (long long)p->F * p->K * p->Co * p->Q, true},
      {FG_B_COND, FG_F32, (long long)p->L * p->Qc * 2 * p->Ch, true},
      {FG_B_FRAMES, p->dtype, B * p->Cin * n * p->K * p->F, true},
      {FG_B_UNIFORMS, FG_F32, B * n, gen},
      {FG_B_CLASSES, FG_I64, B * n, !gen},
      {FG_B_SAMPLES, FG_I64, B * n, gen},
      {FG_B_LOGITS, FG_F32, B * n * p->Q, !gen},
      {FG_B_RING, p->dtype, B * ring_stride, true},
      {FG_B_PARTIALS, FG_F32, (long long)p->G * p->nf * p->S * p->Q, true},
      {FG_B_FLAGS, FG_I32, (long long)p->G * (p->nf + 1), true},
  };
  for (const Need& nd : needs) {
    if (!nd.used) continue;
    const FgBuf& b = bufs[nd.id];
    if (b.dtype != nd.dtype) {
      err << "buffer " << fg_buf_name(nd.id) << " must be " << fg_dtype_name(nd.dtype) << ", got " << fg_dtype_name(b.dtype);
      return err.str();
    }
    if (b.numel < nd.numel) {
      err << "buffer " << fg_buf_name(nd.id) << " holds " << b.numel << " elements, the launch needs " << nd.numel;
      return err.str();
    }
    if (nd.numel > 0 && b.ptr == nullptr) { err << "buffer " << fg_buf_name(nd.id) << " is null"; return err.str(); }
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

// Launches the persistent kernel on `stream` (a cudaStream_t): zeroes the flags, checks that
// the grid can be co-resident and uses a cooperative launch. Returns "" or an error message.
// Defined in launcher.cu.
std::string fg_launch(const FgParams& p, void* stream);

}  // namespace fastgen_cuda
