// AEGIS_DISPATCH(device, fn(args...)) calls kernels::cuda::fn on a CUDA device and
// kernels::cpu::fn on the CPU. In a CPU-only build the CUDA branch throws DeviceError (and names
// no CUDA kernel: core/device.h's AEGIS_IF_CUDA_BUILD), so code above the kernels never needs an #if.
#pragma once

#include "core/device.h"

#define AEGIS_DISPATCH(device, call)                                                       \
  ((device).is_cuda() ? AEGIS_IF_CUDA_BUILD((::aegis::kernels::cuda::call),                \
                                            (::aegis::throw_no_cuda(#call), ::aegis::kernels::cpu::call)) \
                      : ::aegis::kernels::cpu::call)
