// Host side of the persistent kernel: instantiation per (dtype, GEMM path), the co-residency
// check and the cooperative launch. Torch-free: compiles standalone with nvcc.
#include <string>

#include "fastgen_cuda.h"
#include "kernel.cuh"

namespace fastgen_cuda {

namespace {

std::string cuda_error(const char* what, cudaError_t e) {
  return std::string("fastgen cuda: ") + what + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
}

template <class T, bool MMA>
std::string launch_impl(const FgParams& p, cudaStream_t stream) {
  auto kernel = fg_persistent_kernel<T, MMA>;
  cudaError_t e;
  int dev = 0;
  if ((e = cudaGetDevice(&dev)) != cudaSuccess) return cuda_error("cudaGetDevice", e);
  int major = 0, minor = 0, nsm = 0, optin = 0, coop = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev);
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
  if (major < 8) {
    return "fastgen cuda: the kernels need compute capability 8.0 or newer (mma.sync bf16), this GPU is " +
           std::to_string(major) + "." + std::to_string(minor);
  }
  if (!coop) return "fastgen cuda: this GPU does not support cooperative launches";
  if (p.smem_bytes > optin) {
    return "fastgen cuda: the plan needs " + std::to_string(p.smem_bytes) +
           " bytes of shared memory per block, this GPU allows " + std::to_string(optin);
  }
  if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)p.smem_bytes)) != cudaSuccess)
    return cuda_error("cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", e);
  int per_sm = 0;
  if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, p.threads, (size_t)p.smem_bytes)) != cudaSuccess)
    return cuda_error("cudaOccupancyMaxActiveBlocksPerMultiprocessor", e);
  const long long grid = (long long)p.nf * p.G;
  if ((long long)per_sm * nsm < grid) {
    return "fastgen cuda: the grid of " + std::to_string(p.nf) + " x " + std::to_string(p.G) + " blocks (" +
           std::to_string(p.threads) + " threads, " + std::to_string(p.smem_bytes) +
           " bytes of shared memory each) cannot be co-resident: " + std::to_string(per_sm) + " per SM x " +
           std::to_string(nsm) + " SMs";
  }
  if ((e = cudaMemsetAsync(p.flags, 0, sizeof(unsigned) * (size_t)p.G * (p.nf + 1), stream)) != cudaSuccess)
    return cuda_error("cudaMemsetAsync(flags)", e);
  FgParams params = p;
  void* args[] = {&params};
  e = cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3((unsigned)p.nf, (unsigned)p.G, 1),
                                  dim3((unsigned)p.threads, 1, 1), args, (size_t)p.smem_bytes, stream);
  if (e != cudaSuccess) return cuda_error("cudaLaunchCooperativeKernel", e);
  return "";
}

}  // namespace

std::string fg_launch(const FgParams& p, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case FG_F32:
      if (p.mma) return "fastgen cuda: no tensor-core path for float32";
      return launch_impl<float, false>(p, s);
    case FG_BF16:
      return p.mma ? launch_impl<fg_bf16, true>(p, s) : launch_impl<fg_bf16, false>(p, s);
    case FG_F16:
      return p.mma ? launch_impl<fg_f16, true>(p, s) : launch_impl<fg_f16, false>(p, s);
    default:
      return "fastgen cuda: unsupported dtype code " + std::to_string(p.dtype);
  }
}

}  // namespace fastgen_cuda
