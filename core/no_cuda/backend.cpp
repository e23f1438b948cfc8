// The CUDA runtime services of a CPU-only build (core/cuda_backend.h; the CUDA build compiles
// core/cuda/backend.cpp instead). There are no devices: memory and copies throw DeviceError saying
// that this build has no CUDA backend, and a graph never captures, so that code above the kernels
// calls these functions without testing for CUDA itself.
#include "core/cuda_backend.h"

#include "core/device.h"
#include "core/error.h"

namespace aegis::cuda_backend {

namespace {
constexpr const char* kNoBackend = "this build of aegis has no CUDA backend";
}  // namespace

int device_count() noexcept {
  return 0;
}

void make_current(int) {
  throw_no_cuda("choosing a CUDA device");
}

std::string device_description(int) {
  return "";
}

std::string version_string() {
  return "";
}

void* allocate(std::size_t, int) {
  throw_no_cuda("allocating device memory");
}

std::uint64_t pool_release_threshold(int) {
  throw_no_cuda("the device memory pool");
}

void release(void*, int) noexcept {}

void copy(void*, const void*, std::size_t, Copy) {
  throw_no_cuda("copying to or from device memory");
}

void memset_zero(void*, std::size_t) {
  throw_no_cuda("zeroing device memory");
}

void synchronize() {}

void copy_to_device_async(void*, const void*, std::size_t) {
  throw_no_cuda("copying to device memory");
}

Graph::~Graph() = default;

bool Graph::capture(const std::function<void()>&) {
  // Nothing is captured and `work` is not run here: after a failed capture the caller runs it eagerly.
  m_failure = kNoBackend;
  return false;
}

void Graph::launch() {
  throw_no_cuda("launch of a CUDA graph");
}

}  // namespace aegis::cuda_backend
