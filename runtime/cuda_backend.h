// Internal: the CUDA runtime services aegis needs, declared without CUDA headers so that
// public headers stay CUDA-free. Defined in runtime/cuda/backend.cpp, compiled only when
// AEGIS_HAS_CUDA. Memory comes from the stream-ordered allocator (cudaMallocAsync pools) and
// all work is issued on the per-thread default stream.
#pragma once

#include <cstddef>
#include <string>

namespace aegis::cuda_backend {

int device_count() noexcept;  // 0 when the driver or a GPU is missing
std::string device_description(int device);
std::string version_string();

void* allocate(std::size_t bytes, int device);
void release(void* ptr, int device) noexcept;
enum class Copy { HostToDevice, DeviceToHost, DeviceToDevice };
void copy(void* dst, const void* src, std::size_t bytes, Copy kind);  // synchronous w.r.t. host
void memset_zero(void* ptr, std::size_t bytes);
void synchronize();

}  // namespace aegis::cuda_backend
