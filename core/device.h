// Where a tensor lives. A CUDA build on a machine without a GPU still runs: `auto` resolves
// to the CPU there, and asking for `cuda` explicitly is a DeviceError.
#pragma once

#include <string>

#include "core/config.h"

namespace aegis {

enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// True when this build contains the CUDA backend.
constexpr bool cuda_compiled() {
  return AEGIS_HAS_CUDA != 0;
}

// AEGIS_IF_CUDA_BUILD(in_cuda_build, otherwise) expands to its first argument in a build with the
// CUDA backend and to its second in a CPU-only build. It is for naming kernels::cuda functions,
// which a CPU-only build does not compile (runtime/dispatch.h), so that code above the kernels
// needs no #if; everything else asks cuda_compiled() or cuda_device_count() at run time.
#if AEGIS_HAS_CUDA
#define AEGIS_IF_CUDA_BUILD(in_cuda_build, otherwise) in_cuda_build
#else
#define AEGIS_IF_CUDA_BUILD(in_cuda_build, otherwise) otherwise
#endif
// Number of usable CUDA devices (0 in a CPU-only build or on a machine without a GPU).
int cuda_device_count();
// A short description of each usable GPU ("NVIDIA H200, 139 GiB, sm_90"); empty when none.
std::string cuda_device_description(int index);
// The CUDA runtime and driver versions as "runtime 13.0, driver 13.0", or "" without CUDA.
std::string cuda_version_string();

struct DeviceChoice {
  Device device;
  bool fell_back = false;  // `auto` asked for, no GPU usable: running on the CPU
  std::string reason;      // why the fallback happened
};
// Parses "cpu", "cuda", "cuda:N" or "auto". `cuda` without a usable GPU throws DeviceError.
DeviceChoice choose_device(const std::string& spec);

// Throws DeviceError explaining that this build or machine has no CUDA device.
[[noreturn]] void throw_no_cuda(const char* what);

}  // namespace aegis
