// Max and average pooling over x [N,C,H,W] (PyTorch's semantics, floor or ceil output size). Max
// pooling records the argmax of each window only when a backward pass can follow, and routes each
// output gradient to it; average pooling spreads gy/divisor over the window's real elements, the
// divisor per window as kernels/pool.h defines it.
#include "kernels/pool.h"

#include <cstdint>

#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

namespace {
kernels::Pool2dGeometry pool_geometry(const Tensor& xv, const Pool2dOptions& opt, const char* name) {
  check_dim(xv, 4, name);
  check_dtype(xv, DType::F32, name);
  AEGIS_CHECK(opt.kernel > 0, name << ": kernel size must be positive, got " << opt.kernel);
  AEGIS_CHECK(opt.stride > 0, name << ": stride must be positive, got " << opt.stride);
  // PyTorch's rule: with p ≤ k/2 every window holds at least one real element.
  AEGIS_CHECK(opt.padding >= 0 && opt.padding <= opt.kernel / 2,
              name << ": padding must be in [0, kernel/2] = [0, " << opt.kernel / 2 << "], got " << opt.padding);
  kernels::Pool2dGeometry g;
  g.batch = xv.size(0);
  g.channels = xv.size(1);
  g.height = xv.size(2);
  g.width = xv.size(3);
  g.kernel = opt.kernel;
  g.stride = opt.stride;
  g.padding = opt.padding;
  g.ceil_mode = opt.ceil_mode;
  g.count_include_pad = opt.count_include_pad;
  AEGIS_CHECK_AS(
      ShapeError, g.height + 2 * g.padding >= g.kernel && g.width + 2 * g.padding >= g.kernel,
      name << ": kernel " << g.kernel << " is larger than the input " << xv.describe() << " padded by " << g.padding);
  AEGIS_CHECK_AS(ShapeError, g.height * g.width <= INT32_MAX,
                 name << ": a " << g.height << "x" << g.width << " plane is too large for int32 argmax indices");
  return g;
}
}  // namespace

Var max_pool2d(const Var& x, Pool2dOptions opt) {
  const Tensor& xv = x.value();
  const kernels::Pool2dGeometry g = pool_geometry(xv, opt, "max_pool2d");
  const Device dev = xv.device();
  const Shape out_shape{g.batch, g.channels, g.out_height(), g.out_width()};
  Tensor y = Tensor::empty(out_shape, DType::F32, dev);
  Tensor argmax;  // only when a backward pass can follow
  if (x.requires_grad()) argmax = Tensor::empty(out_shape, DType::I32, dev);
  AEGIS_DISPATCH(dev, max_pool2d_forward(g, xv.data<float>(), y.data<float>(),
                                         argmax.defined() ? argmax.data<std::int32_t>() : nullptr));
  return autograd::make_result(std::move(y), {x}, "max_pool2d", [x, g, argmax](const Tensor& gy) {
    Tensor dx = Tensor::empty(x.value().shape(), DType::F32, x.value().device());
    AEGIS_DISPATCH(dx.device(),
                   max_pool2d_backward(g, gy.data<float>(), argmax.data<std::int32_t>(), dx.data<float>()));
    x.accumulate_grad_owned(std::move(dx));
  });
}

Var avg_pool2d(const Var& x, Pool2dOptions opt) {
  const Tensor& xv = x.value();
  const kernels::Pool2dGeometry g = pool_geometry(xv, opt, "avg_pool2d");
  const Device dev = xv.device();
  Tensor y = Tensor::empty({g.batch, g.channels, g.out_height(), g.out_width()}, DType::F32, dev);
  AEGIS_DISPATCH(dev, avg_pool2d_forward(g, xv.data<float>(), y.data<float>()));
  return autograd::make_result(std::move(y), {x}, "avg_pool2d", [x, g](const Tensor& gy) {
    Tensor dx = Tensor::empty(x.value().shape(), DType::F32, x.value().device());
    AEGIS_DISPATCH(dx.device(), avg_pool2d_backward(g, gy.data<float>(), dx.data<float>()));
    x.accumulate_grad_owned(std::move(dx));
  });
}

}  // namespace aegis::nn::F
