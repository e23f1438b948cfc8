// Constant 2-d padding (ONNX Pad over H and W): the forward pass writes x into a larger tensor
// filled with the pad value; the backward pass crops the output gradient back to x's shape.
#include "kernels/pad.h"

#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

Var pad2d(const Var& x, Pad2dOptions opt) {
  const Tensor& xv = x.value();
  check_dim(xv, 4, "pad2d");
  check_dtype(xv, DType::F32, "pad2d");
  AEGIS_CHECK(opt.top >= 0 && opt.left >= 0 && opt.bottom >= 0 && opt.right >= 0,
              "pad2d: pads must be non-negative, got top " << opt.top << ", left " << opt.left << ", bottom "
                                                           << opt.bottom << ", right " << opt.right);
  kernels::Pad2dGeometry g;
  g.planes = xv.size(0) * xv.size(1);
  g.height = xv.size(2);
  g.width = xv.size(3);
  g.top = opt.top;
  g.left = opt.left;
  g.bottom = opt.bottom;
  g.right = opt.right;
  const Device dev = xv.device();
  Tensor y = Tensor::empty({xv.size(0), xv.size(1), g.out_height(), g.out_width()}, DType::F32, dev);
  AEGIS_DISPATCH(dev, pad2d_forward(g, xv.data<float>(), opt.value, y.data<float>()));
  return autograd::make_result(std::move(y), {x}, "pad2d", [x, g](const Tensor& gy) {
    Tensor dx = Tensor::empty(x.value().shape(), DType::F32, x.value().device());
    AEGIS_DISPATCH(dx.device(), pad2d_backward(g, gy.data<float>(), dx.data<float>()));
    x.accumulate_grad_owned(std::move(dx));
  });
}

}  // namespace aegis::nn::F
