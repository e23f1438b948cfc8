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
  const kernels::Conv2dGeometry g = checked_conv2d_geometry(xv, wv, b, opt, groups, "grouped conv2d");
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
