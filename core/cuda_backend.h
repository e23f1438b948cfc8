// Internal: the CUDA runtime services aegis needs, declared without CUDA headers so that
// public headers stay CUDA-free. Defined in core/cuda/backend.cpp when the CUDA backend is built
// and in core/no_cuda/backend.cpp otherwise, where there are no devices: allocations and copies
// throw DeviceError and a graph never captures. Memory comes from the stream-ordered allocator
// (cudaMallocAsync pools) and all work is issued on the per-thread default stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/math_precision.h"

namespace aegis::cuda_backend {

int device_count() noexcept;  // 0 when the driver or a GPU is missing
// Makes `device` this thread's current device, so that library handles created lazily later
// (cuBLAS, cuDNN) belong to it: for a rank that runs on a GPU other than 0.
void make_current(int device);
std::string device_description(int device);
std::string version_string();

// Memory comes from the device's default stream-ordered pool, which keeps what it has across
// synchronizations (release threshold: UINT64_MAX, set on first use of a device).
void* allocate(std::size_t bytes, int device);
std::uint64_t pool_release_threshold(int device);  // what the pool keeps across a synchronization
void release(void* ptr, int device) noexcept;
enum class Copy { HostToDevice, DeviceToHost, DeviceToDevice };
// Device-to-host copies wait for the stream (the bytes are there on return); host-to-device and
// device-to-device copies are stream-ordered and return without waiting for the GPU.
void copy(void* dst, const void* src, std::size_t bytes, Copy kind);
void memset_zero(void* ptr, std::size_t bytes);
void synchronize();

// Stream-ordered host-to-device copy of a few bytes, without synchronizing: the bytes are staged
// before the call returns, so `h_src` may change afterwards.
void copy_to_device_async(void* d_dst, const void* h_src, std::size_t bytes);

// A sequence of work on this thread's stream captured once and replayed (CUDA graphs): for
// fixed-shape loops whose launch overhead matters, such as the randomized-smoothing batches.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  // Runs `work` under stream capture (thread-local mode) and instantiates the result. When the
  // work is not capturable (it synchronizes, or throws) the capture is abandoned, the stream is
  // left usable, and false is returned; the caller then runs the work eagerly. A CPU-only build
  // never captures (failure() says why).
  bool capture(const std::function<void()>& work);
  bool ready() const { return m_exec != nullptr; }
  void launch();  // replays the captured work on this thread's stream
  std::int64_t launches() const { return m_launches; }
  // Why the last capture failed ("" when it did not): reported, never swallowed silently.
  const std::string& failure() const { return m_failure; }

 private:
  void* m_graph = nullptr;  // cudaGraph_t
  void* m_exec = nullptr;   // cudaGraphExec_t
  std::int64_t m_launches = 0;
  std::string m_failure;
};

// The precision of matrix products and convolution forwards (TF32, bf16, fp16 for inference
// paths) is a thread-local setting shared with the CPU build: core/math_precision.h.

}  // namespace aegis::cuda_backend
