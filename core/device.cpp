#include "core/device.h"

#include "core/cuda_backend.h"
#include "core/error.h"
#include "core/mpi.h"

namespace aegis {

std::string Device::str() const {
  return is_cpu() ? "cpu" : "cuda:" + std::to_string(index);
}

int cuda_device_count() {
  return cuda_backend::device_count();
}

std::string cuda_device_description(int index) {
  return cuda_backend::device_description(index);
}

std::string cuda_version_string() {
  return cuda_backend::version_string();
}

void throw_no_cuda(const char* what) {
  if (!cuda_compiled())
    AEGIS_THROW(DeviceError, what << ": this build of aegis has no CUDA backend (configure with -DAEGIS_CUDA=ON)");
  AEGIS_THROW(DeviceError, what << ": no usable CUDA device on this machine");
}

// `cuda` and `auto` without a number take the rank's GPU under mpirun or srun (local rank mod the
// GPU count, core/mpi.h: one GPU per rank), GPU 0 in a plain process; `cuda:N` is GPU N whatever
// the rank. The chosen GPU becomes the thread's current device before any library handle exists.
DeviceChoice choose_device(const std::string& spec) {
  DeviceChoice choice;
  if (spec == "cpu") return choice;
  if (spec == "auto") {
    if (const int n = cuda_device_count(); n > 0) {
      choice.device = Device::cuda(mpi::gpu_for_local_rank(mpi::local_rank(), n));
      cuda_backend::make_current(choice.device.index);
    } else {
      choice.fell_back = true;
      choice.reason = cuda_compiled() ? "no usable CUDA device found" : "this build has no CUDA backend";
    }
    return choice;
  }
  int index = -1;  // `cuda` alone: the rank's GPU (core/mpi.h), GPU 0 of a plain process
  if (spec.rfind("cuda:", 0) == 0) {
    const std::string num = spec.substr(5);
    AEGIS_CHECK(!num.empty() && num.size() <= 6 && num.find_first_not_of("0123456789") == std::string::npos,
                "device '" << spec << "': expected cuda:N with N a device number");
    index = std::stoi(num);
  } else {
    AEGIS_CHECK(spec == "cuda", "unknown device '" << spec << "' (expected cpu, cuda, cuda:N or auto)");
  }
  if (!cuda_compiled())
    AEGIS_THROW(DeviceError, "device '" << spec << "': this build of aegis has no CUDA backend");
  const int n = cuda_device_count();
  if (n == 0) AEGIS_THROW(DeviceError, "device '" << spec << "': no usable CUDA device on this machine");
  if (index < 0) index = mpi::gpu_for_local_rank(mpi::local_rank(), n);
  AEGIS_CHECK_AS(DeviceError, index < n, "device '" << spec << "': only " << n << " CUDA device(s) present");
  choice.device = Device::cuda(index);
  cuda_backend::make_current(index);
  return choice;
}

}  // namespace aegis
