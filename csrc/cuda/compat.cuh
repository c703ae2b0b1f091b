// Small device-side vocabulary the kernel is written in. With FASTGEN_CUDA_EMULATE defined the
// same names come from csrc/cuda/emu/emu_runtime.h instead, which runs the kernel on a CPU
// (one OS thread per CUDA thread) for the tests; everything else is real CUDA.
#pragma once

#include <stdint.h>

#if defined(FASTGEN_CUDA_EMULATE)
#include "emu/emu_runtime.h"
#else

#include <cstdio>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define FG_DEVICE __device__ __forceinline__
#define FG_GLOBAL __global__
#define FG_LAUNCH_BOUNDS(n) __launch_bounds__(n, 1)  // one block per SM (persistent)
#define FG_GRID_CONSTANT __grid_constant__
#define FG_DECLARE_SMEM(name)                                   \
  extern __shared__ __align__(16) unsigned char fg_smem_raw[]; \
  unsigned char* name = fg_smem_raw

namespace fastgen_cuda {

typedef __nv_bfloat16 fg_bf16;
typedef __half fg_f16;

FG_DEVICE float fg_to_float(float x) { return x; }
FG_DEVICE float fg_to_float(fg_bf16 x) { return __bfloat162float(x); }
FG_DEVICE float fg_to_float(fg_f16 x) { return __half2float(x); }

template <class T> FG_DEVICE T fg_from_float(float x);
template <> FG_DEVICE float fg_from_float<float>(float x) { return x; }
template <> FG_DEVICE fg_bf16 fg_from_float<fg_bf16>(float x) { return __float2bfloat16_rn(x); }
template <> FG_DEVICE fg_f16 fg_from_float<fg_f16>(float x) { return __float2half_rn(x); }

FG_DEVICE uint32_t fg_ld32(const void* p) { return *static_cast<const uint32_t*>(p); }
FG_DEVICE uint2 fg_ld64(const void* p) { return *static_cast<const uint2*>(p); }

FG_DEVICE void fg_sync() { __syncthreads(); }
FG_DEVICE void fg_syncwarp() { __syncwarp(); }
FG_DEVICE float fg_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
FG_DEVICE int fg_shfl_xor(int v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
FG_DEVICE float fg_shfl(float v, int src) { return __shfl_sync(0xffffffffu, v, src); }

// Cross-block hand-off. Flags are written with a gpu-scope release store after a
// __threadfence() and read with gpu-scope acquire loads; data written by other blocks is read
// with ld.global.cg (__ldcg), which bypasses the (non-coherent) L1.
FG_DEVICE void fg_fence() { __threadfence(); }
FG_DEVICE void fg_store_release(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
FG_DEVICE unsigned fg_load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
FG_DEVICE float fg_ldcg(const float* p) { return __ldcg(p); }
FG_DEVICE long long fg_ldcg(const long long* p) { return __ldcg(p); }
FG_DEVICE float fg_ldg(const float* p) { return __ldg(p); }
FG_DEVICE unsigned long long fg_clock_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// A flag wait that never ends means a broken invariant (or a grid that is not co-resident):
// report it and trap instead of hanging the GPU.
FG_DEVICE void fg_wait_timeout(const char* what, unsigned have, unsigned want) {
  printf("fastgen cuda: block (%d,%d) timed out waiting for %s (flag %u, want >= %u)\n", (int)blockIdx.x,
         (int)blockIdx.y, what, have, want);
  __trap();
}

// Math. setup.py compiles with --use_fast_math, under which expf/tanhf/division become
// approximate instructions (tanhf -> tanh.approx.f32, max relative error ~2^-11, too coarse
// for fp32 parity at 1e-4). So the kernel names its intrinsics explicitly and its results do
// not depend on that flag:
//  - fg_exp = __expf (ex2.approx): relative error ~2 ulp + |x| * 2^-24 from the scaling by
//    log2(e); for the gate's and the softmax's arguments that is < 1e-6.
//  - fg_div = __fdiv_rn: IEEE round-to-nearest division.
//  - tanh is computed below from a polynomial near 0 and 1 - 2/(e^{2|x|}+1) elsewhere
//    (relative error ~3e-7), not with tanhf.
FG_DEVICE float fg_exp(float x) { return __expf(x); }
FG_DEVICE float fg_div(float a, float b) { return __fdiv_rn(a, b); }

// D = A(16x16, row) * B(16x8, col) + C in fp32: mma.sync m16n8k16 (sm_80+).
template <class T> FG_DEVICE void fg_mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> FG_DEVICE void fg_mma_16816<fg_bf16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> FG_DEVICE void fg_mma_16816<fg_f16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace fastgen_cuda

#endif  // FASTGEN_CUDA_EMULATE
