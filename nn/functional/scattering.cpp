// The 2-D scattering transform as an autograd op (kernels/scattering.h has the equations). The
// filters of each (height, width, J, L) are built once per process and shared. The transform is
// computed on the host: a CUDA input is copied there and the result copied back (the op is a
// fixed front end, computed once per example when a model trains on top of it).
#include "kernels/scattering.h"

#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "nn/functional.h"

namespace aegis::nn::F {
namespace {

std::shared_ptr<const kernels::ScatteringBank> bank_for(std::int64_t h, std::int64_t w, int J, int L) {
  static std::mutex mutex;
  static std::map<std::tuple<std::int64_t, std::int64_t, int, int>, std::shared_ptr<const kernels::ScatteringBank>>
      banks;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = banks[{h, w, J, L}];
  if (!slot) slot = std::make_shared<const kernels::ScatteringBank>(kernels::make_scattering_bank(h, w, J, L));
  return slot;
}

}  // namespace

Shape scattering2d_shape(const Shape& input, int J, int L) {
  AEGIS_CHECK_AS(ShapeError, input.size() == 4,
                 "scattering2d: needs [N, C, H, W] inputs, got " << input.size() << " dimensions");
  const auto bank = bank_for(input[2], input[3], J, L);
  return {input[0], input[1] * bank->channels(), bank->out_h, bank->out_w};
}

Var scattering2d(const Var& x, int J, int L) {
  const Tensor& xv = x.value();
  check_dim(xv, 4, "scattering2d");
  check_dtype(xv, DType::F32, "scattering2d");
  const auto bank = bank_for(xv.size(2), xv.size(3), J, L);
  const std::int64_t planes = xv.size(0) * xv.size(1);
  const Device dev = xv.device();
  const Tensor host_x = xv.to(Device::cpu());
  Tensor y =
      Tensor::empty({xv.size(0), xv.size(1) * bank->channels(), bank->out_h, bank->out_w}, DType::F32, Device::cpu());
  kernels::scattering_forward(*bank, planes, host_x.data<float>(), y.data<float>());
  return autograd::make_result(y.to(dev), {x}, "scattering2d", [x, host_x, bank, planes](const Tensor& gy) {
    const Tensor host_gy = gy.to(Device::cpu());
    Tensor dx = Tensor::empty(host_x.shape(), DType::F32, Device::cpu());
    kernels::scattering_backward(*bank, planes, host_x.data<float>(), host_gy.data<float>(), dx.data<float>());
    x.accumulate_grad_owned(dx.to(x.value().device()));
  });
}

}  // namespace aegis::nn::F
