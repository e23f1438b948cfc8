// AEGIS_DISPATCH(device, fn(args...)) calls kernels::cuda::fn on a CUDA device and
// kernels::cpu::fn on the CPU. In a CPU-only build the CUDA branch throws DeviceError, so
// code above the kernels never needs an #if.
#pragma once

#include "core/config.h"
#include "core/device.h"

#if AEGIS_HAS_CUDA
#define AEGIS_DISPATCH(device, call) \
  ((device).is_cuda() ? ::aegis::kernels::cuda::call : ::aegis::kernels::cpu::call)
#else
#define AEGIS_DISPATCH(device, call) \
  ((device).is_cuda() ? (::aegis::throw_no_cuda(#call), ::aegis::kernels::cpu::call) \
                      : ::aegis::kernels::cpu::call)
#endif
