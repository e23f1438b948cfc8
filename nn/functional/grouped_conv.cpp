// Grouped (and depthwise) Conv2d: x [N,C,H,W], w [O, C/G, kh, kw], b [O] → y [N,O,H',W'], each
// group of O/G output channels reading only its C/G input channels (kernels/grouped_conv.h has
// the sums). Backward: dx, dw and db from the grouped kernels, each only when needed.
#include "kernels/grouped_conv.h"

#include "nn/functional.h"
#include "nn/functional/conv_geometry.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

Var grouped_conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions opt, std::int64_t groups) {
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  check_dim(xv, 4, "grouped conv2d input");
  check_dim(wv, 4, "grouped conv2d weight");
  check_dtype(xv, DType::F32, "grouped conv2d input");
  check_dtype(wv, DType::F32, "grouped conv2d weight");
  check_same_device(xv, wv, "grouped conv2d");
  AEGIS_CHECK(opt.stride > 0, "grouped conv2d: stride must be positive, got " << opt.stride);
  AEGIS_CHECK(opt.padding >= 0, "grouped conv2d: padding must be non-negative, got " << opt.padding);
  AEGIS_CHECK(groups >= 1, "grouped conv2d: groups must be at least 1, got " << groups);
  const kernels::Conv2dGeometry g = conv2d_geometry(xv, wv, opt);
  AEGIS_CHECK_AS(ShapeError, g.out_channels > 0 && g.in_channels > 0 && g.kernel_h > 0 && g.kernel_w > 0,
                 "grouped conv2d: empty weight " << wv.describe() << " or input " << xv.describe());
  AEGIS_CHECK_AS(ShapeError,
                 g.in_channels % groups == 0 && g.out_channels % groups == 0 && wv.size(1) * groups == g.in_channels,
                 "grouped conv2d: input " << xv.describe() << " and weight " << wv.describe() << " do not split into "
                                          << groups << " groups (C and O divisible by the groups, weight [O, C/groups, kh, kw])");
  AEGIS_CHECK_AS(ShapeError, g.height + 2 * g.padding >= g.kernel_h && g.width + 2 * g.padding >= g.kernel_w,
                 "grouped conv2d: kernel " << g.kernel_h << "x" << g.kernel_w << " is larger than the input "
                                           << xv.describe() << " padded by " << g.padding);
  if (b.defined()) {
    check_shape(b.value(), {g.out_channels}, "grouped conv2d bias");
    check_dtype(b.value(), DType::F32, "grouped conv2d bias");
    check_same_device(xv, b.value(), "grouped conv2d bias");
  }
  const Device dev = xv.device();
  Tensor y = Tensor::empty({g.batch, g.out_channels, g.out_height(), g.out_width()}, DType::F32, dev);
  const float* bias = b.defined() ? b.value().data<float>() : nullptr;
  AEGIS_DISPATCH(dev, grouped_conv2d_forward(g, groups, xv.data<float>(), wv.data<float>(), bias, y.data<float>()));

  std::vector<Var> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return autograd::make_result(std::move(y), std::move(inputs), "grouped_conv2d", [x, w, b, g, groups](const Tensor& gy) {
    const Device d = x.value().device();
    if (x.requires_grad()) {
      Tensor dx = Tensor::empty(x.value().shape(), DType::F32, d);
      AEGIS_DISPATCH(d, grouped_conv2d_backward_data(g, groups, gy.data<float>(), w.value().data<float>(),
                                                     dx.data<float>()));
      x.accumulate_grad_owned(std::move(dx));
    }
    if (w.requires_grad()) {
      Tensor dw = Tensor::empty(w.value().shape(), DType::F32, d);
      AEGIS_DISPATCH(d, grouped_conv2d_backward_filter(g, groups, x.value().data<float>(), gy.data<float>(),
                                                       dw.data<float>()));
      w.accumulate_grad_owned(std::move(dw));
    }
    if (b.defined() && b.requires_grad()) {
      Tensor db = Tensor::empty({g.out_channels}, DType::F32, d);
      AEGIS_DISPATCH(d, conv2d_backward_bias(g, gy.data<float>(), db.data<float>()));
      b.accumulate_grad_owned(std::move(db));
    }
  });
}

}  // namespace aegis::nn::F
