// Internal to CUDA translation units: CUDA_CHECK / CUBLAS_CHECK / CUDNN_CHECK throw
// aegis::DeviceError with the failing call, the CUDA error string and file:line.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "core/error.h"

#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    cudaError_t aegis_err_ = (call);                                                      \
    if (aegis_err_ != cudaSuccess)                                                        \
      AEGIS_THROW(::aegis::DeviceError, #call << " failed: " << cudaGetErrorString(aegis_err_)); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                   \
  do {                                                                                       \
    cublasStatus_t aegis_st_ = (call);                                                       \
    if (aegis_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
      AEGIS_THROW(::aegis::DeviceError, #call << " failed: " << cublasGetStatusString(aegis_st_)); \
  } while (0)

#define CUDNN_CHECK(call)                                                                  \
  do {                                                                                     \
    cudnnStatus_t aegis_st_ = (call);                                                      \
    if (aegis_st_ != CUDNN_STATUS_SUCCESS)                                                 \
      AEGIS_THROW(::aegis::DeviceError, #call << " failed: " << cudnnGetErrorString(aegis_st_)); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace aegis::cuda_backend {
// Work is issued on the per-thread default stream; handles are bound to it.
inline cudaStream_t stream() { return cudaStreamPerThread; }
cublasHandle_t cublas_handle();  // one per host thread and device, created on first use
cudnnHandle_t cudnn_handle();
// Grid size for a grid-stride loop over n elements.
inline unsigned grid_for(long long n, int block) {
  long long g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 8) g = 65535LL * 8;
  return static_cast<unsigned>(g);
}
}  // namespace aegis::cuda_backend
