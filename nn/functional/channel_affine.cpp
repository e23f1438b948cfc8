// y = x·scale[c] + shift[c] over dimension 1 of x [N, C, ...], scale and shift constants [C]
// (kernels/channel_affine.h); the gradient flows to x only.
#include "kernels/channel_affine.h"

#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

Var channel_affine(const Var& x, const Tensor& scale, const Tensor& shift) {
  const Tensor& xv = x.value();
  AEGIS_CHECK_AS(ShapeError, xv.dim() >= 2, "channel_affine: needs [N, C, ...] inputs, got " << xv.describe());
  check_dtype(xv, DType::F32, "channel_affine input");
  const std::int64_t n = xv.size(0), c = xv.size(1), s = n * c > 0 ? xv.numel() / (n * c) : 0;
  check_shape(scale, {c}, "channel_affine scale");
  check_shape(shift, {c}, "channel_affine shift");
  check_dtype(scale, DType::F32, "channel_affine scale");
  check_dtype(shift, DType::F32, "channel_affine shift");
  check_same_device(xv, scale, "channel_affine scale");
  check_same_device(xv, shift, "channel_affine shift");
  Tensor y = Tensor::empty(xv.shape(), DType::F32, xv.device());
  AEGIS_DISPATCH(xv.device(), channel_affine_forward(n, c, s, xv.data<float>(), scale.data<float>(),
                                                      shift.data<float>(), y.data<float>()));
  return autograd::make_result(std::move(y), {x}, "channel_affine", [x, scale, n, c, s](const Tensor& gy) {
    if (!x.requires_grad()) return;
    Tensor dx = Tensor::empty(x.value().shape(), DType::F32, x.value().device());
    AEGIS_DISPATCH(dx.device(), channel_affine_backward(n, c, s, gy.data<float>(), scale.data<float>(), dx.data<float>()));
    x.accumulate_grad_owned(std::move(dx));
  });
}

}  // namespace aegis::nn::F
