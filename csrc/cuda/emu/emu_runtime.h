// A small CUDA execution emulator, for tests only: it runs the persistent kernel of
// csrc/cuda/kernel.cuh on a CPU so its indexing, the GEMM fragment layouts, the barriers and
// the cross-block flag protocol are checked without a GPU.
//
// Every CUDA thread is an OS thread; __syncthreads is a block barrier, warp collectives
// (shuffles, mma.sync) exchange values through a per-warp area between two warp barriers,
// mma.sync m16n8k16 is evaluated from the fragment layouts of the PTX ISA ("Matrix Fragments
// for mma.m16n8k16 with floating point type"), written here independently of the weight
// packing. Global memory is host memory; flags use C++ acquire/release atomics. A barrier or
// flag wait that does not complete within the timeout aborts the launch (a deadlock shows up
// as an error, not a hang). Not emulated: weak memory ordering beyond C++'s, and speed.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#define FG_DEVICE inline
#define FG_GLOBAL
#define FG_LAUNCH_BOUNDS(n)
#define FG_GRID_CONSTANT
#define FG_DECLARE_SMEM(name) unsigned char* name = fg_emu::ctx().smem

struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
struct fg_emu_dim3 { unsigned x, y, z; };

namespace fg_emu {

struct Aborted : std::exception {
  const char* what() const noexcept override { return "emulated launch aborted"; }
};

struct Global {
  std::atomic<bool> abort{false};
  std::mutex mu;
  std::string message;
  double timeout_s = 120.0;
  void fail(const std::string& msg) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (message.empty()) message = msg;
    }
    abort.store(true);
  }
};
inline Global& global() { static Global g; return g; }

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait(const char* what) {
    std::unique_lock<std::mutex> lk(mu_);
    const unsigned gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    while (gen_ == gen) {
      if (global().abort.load()) throw Aborted();
      cv_.wait_for(lk, std::chrono::milliseconds(50));
      if (gen_ == gen && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
                             global().timeout_s) {
        global().fail(std::string("deadlock: ") + what + " barrier never completed");
        throw Aborted();
      }
    }
  }
  void poke() { std::lock_guard<std::mutex> lk(mu_); cv_.notify_all(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  unsigned gen_ = 0;
};

struct Warp {
  Barrier bar{32};
  uint32_t u[32][8];
  float f[32][8];
};

struct Block {
  Barrier bar;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<uint4> smem;  // 16-byte aligned; no slack, so AddressSanitizer sees an overrun
  Block(int threads, size_t smem_bytes) : bar(threads), smem(smem_bytes ? (smem_bytes + 15) / 16 : 1) {
    for (int w = 0; w < threads / 32; ++w) warps.emplace_back(new Warp);
    std::memset(smem.data(), 0xCD, smem.size() * sizeof(uint4));  // garbage, as on a GPU
  }
};

struct Ctx {
  fg_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
  Block* block;
  unsigned char* smem;
};
inline Ctx*& ctx_ptr() { static thread_local Ctx* c = nullptr; return c; }
inline Ctx& ctx() { return *ctx_ptr(); }
inline int lane() { return (int)(ctx().threadIdx.x & 31); }
inline Warp& warp() { return *ctx().block->warps[ctx().threadIdx.x >> 5]; }

inline void spin_pause() {
  if (global().abort.load()) throw Aborted();
  std::this_thread::yield();
}

// Runs fn() on grid x block threads; returns "" or the failure message.
inline std::string launch(fg_emu_dim3 grid, int threads, size_t smem_bytes, const std::function<void()>& fn) {
  Global& g = global();
  g.abort.store(false);
  g.message.clear();
  const int nblocks = (int)(grid.x * grid.y);
  std::vector<std::unique_ptr<Block>> blocks;
  for (int b = 0; b < nblocks; ++b) blocks.emplace_back(new Block(threads, smem_bytes));
  std::vector<std::thread> pool;
  pool.reserve((size_t)nblocks * threads);
  for (int b = 0; b < nblocks; ++b) {
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, b, t]() {
        Ctx c;
        c.threadIdx = {(unsigned)t, 0, 0};
        c.blockIdx = {(unsigned)(b % grid.x), (unsigned)(b / grid.x), 0};
        c.blockDim = {(unsigned)threads, 1, 1};
        c.gridDim = {grid.x, grid.y, 1};
        c.block = blocks[b].get();
        c.smem = reinterpret_cast<unsigned char*>(blocks[b]->smem.data());
        ctx_ptr() = &c;
        try {
          fn();
        } catch (const Aborted&) {
        } catch (const std::exception& e) {
          g.fail(std::string("exception in emulated thread: ") + e.what());
        }
        ctx_ptr() = nullptr;
      });
    }
  }
  for (auto& th : pool) th.join();
  return g.abort.load() ? g.message : std::string();
}

// ---- numeric types --------------------------------------------------------------------------
struct bf16 { uint16_t bits; };
struct f16 { uint16_t bits; };

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bf16_to_float(uint16_t b) { return bits_to_float((uint32_t)b << 16); }
inline uint16_t float_to_bf16(float f) {  // round to nearest even
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
inline float f16_to_float(uint16_t h) { _Float16 x; std::memcpy(&x, &h, 2); return (float)x; }
inline uint16_t float_to_f16(float f) { _Float16 x = (_Float16)f; uint16_t h; std::memcpy(&h, &x, 2); return h; }

// ---- warp collectives ------------------------------------------------------------------------
inline float shfl_xor_f(float v, int m) {
  Warp& w = warp(); const int l = lane();
  w.f[l][0] = v; w.bar.wait("warp");
  const float r = w.f[l ^ m][0]; w.bar.wait("warp");
  return r;
}
inline int shfl_xor_i(int v, int m) {
  Warp& w = warp(); const int l = lane();
  w.u[l][0] = (uint32_t)v; w.bar.wait("warp");
  const int r = (int)w.u[l ^ m][0]; w.bar.wait("warp");
  return r;
}
inline float shfl_f(float v, int src) {
  Warp& w = warp(); const int l = lane();
  w.f[l][0] = v; w.bar.wait("warp");
  const float r = w.f[src & 31][0]; w.bar.wait("warp");
  return r;
}

template <class Elem> inline float elem_to_float(uint16_t b);
template <> inline float elem_to_float<bf16>(uint16_t b) { return bf16_to_float(b); }
template <> inline float elem_to_float<f16>(uint16_t b) { return f16_to_float(b); }

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32, from the PTX ISA layouts:
//   A: groupID = lane>>2, tig = lane%4; a_i (i = 2*reg + half): row = groupID + 8*(i in {2,3,6,7}),
//      col = tig*2 + (i&1) + 8*(i >= 4)
//   B: b_i (i = 2*reg + half): row(k) = tig*2 + (i&1) + 8*(i >= 2), col(n) = groupID
//   C/D: c_i: row = groupID + 8*(i >= 2), col = tig*2 + (i&1)
template <class Elem>
inline void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  Warp& w = warp(); const int l = lane();
  for (int r = 0; r < 4; ++r) w.u[l][r] = a[r];
  w.u[l][4] = b0; w.u[l][5] = b1;
  w.bar.wait("warp (mma)");
  float A[16][16], B[16][8];
  for (int ln = 0; ln < 32; ++ln) {
    const int gid = ln >> 2, tig = ln & 3;
    for (int i = 0; i < 8; ++i) {
      const uint32_t reg = w.u[ln][i >> 1];
      const uint16_t bits = (uint16_t)((i & 1) ? reg >> 16 : reg & 0xffffu);
      const int row = gid + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0);
      const int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = elem_to_float<Elem>(bits);
    }
    for (int i = 0; i < 4; ++i) {
      const uint32_t reg = w.u[ln][4 + (i >> 1)];
      const uint16_t bits = (uint16_t)((i & 1) ? reg >> 16 : reg & 0xffffu);
      B[tig * 2 + (i & 1) + (i >= 2 ? 8 : 0)][gid] = elem_to_float<Elem>(bits);
    }
  }
  w.bar.wait("warp (mma)");
  const int gid = l >> 2, tig = l & 3;
  for (int i = 0; i < 4; ++i) {
    const int row = gid + (i >= 2 ? 8 : 0), col = tig * 2 + (i & 1);
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
    c[i] = acc;
  }
}

}  // namespace fg_emu

// CUDA built-ins the kernel uses.
#define threadIdx (fg_emu::ctx().threadIdx)
#define blockIdx (fg_emu::ctx().blockIdx)
#define blockDim (fg_emu::ctx().blockDim)
#define gridDim (fg_emu::ctx().gridDim)

namespace fastgen_cuda {

typedef fg_emu::bf16 fg_bf16;
typedef fg_emu::f16 fg_f16;

inline float fg_to_float(float x) { return x; }
inline float fg_to_float(fg_bf16 x) { return fg_emu::bf16_to_float(x.bits); }
inline float fg_to_float(fg_f16 x) { return fg_emu::f16_to_float(x.bits); }

template <class T> inline T fg_from_float(float x);
template <> inline float fg_from_float<float>(float x) { return x; }
template <> inline fg_bf16 fg_from_float<fg_bf16>(float x) { return fg_bf16{fg_emu::float_to_bf16(x)}; }
template <> inline fg_f16 fg_from_float<fg_f16>(float x) { return fg_f16{fg_emu::float_to_f16(x)}; }

inline uint32_t fg_ld32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint2 fg_ld64(const void* p) { uint2 v; std::memcpy(&v, p, 8); return v; }

inline void fg_sync() { fg_emu::ctx().block->bar.wait("block (__syncthreads)"); }
inline void fg_syncwarp() { fg_emu::warp().bar.wait("warp (__syncwarp)"); }
inline float fg_shfl_xor(float v, int m) { return fg_emu::shfl_xor_f(v, m); }
inline int fg_shfl_xor(int v, int m) { return fg_emu::shfl_xor_i(v, m); }
inline float fg_shfl(float v, int src) { return fg_emu::shfl_f(v, src); }

inline void fg_fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void fg_store_release(unsigned* p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline unsigned fg_load_acquire(const unsigned* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline float fg_ldcg(const float* p) { float v; __atomic_load(p, &v, __ATOMIC_RELAXED); return v; }
inline long long fg_ldcg(const long long* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline float fg_ldg(const float* p) { return *p; }
inline unsigned long long fg_clock_ns() {
  return (unsigned long long)std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline void fg_wait_timeout(const char* what, unsigned have, unsigned want) {
  fg_emu::global().fail(std::string("timed out waiting for ") + what + " (flag " + std::to_string(have) +
                        ", want >= " + std::to_string(want) + ")");
  throw fg_emu::Aborted();
}

inline float fg_exp(float x) { return std::exp(x); }
inline float fg_div(float a, float b) { return a / b; }

template <class T> inline void fg_mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> inline void fg_mma_16816<fg_bf16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  fg_emu::mma_16816<fg_emu::bf16>(c, a, b0, b1);
}
template <> inline void fg_mma_16816<fg_f16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  fg_emu::mma_16816<fg_emu::f16>(c, a, b0, b1);
}

}  // namespace fastgen_cuda
