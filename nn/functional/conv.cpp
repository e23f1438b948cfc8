// Conv2d: y = conv(x, w) + b with x [N,C,H,W], w [O,C,kh,kw], b [O] (PyTorch's semantics).
// Backward: dx (adjoint of the convolution in x), dw = Σ_n gy_n·cols(x_n)ᵀ, db = Σ_{n,h',w'} gy —
// each formed only when that Var requires a gradient, so an input-only attack pays for no dw.
#include "kernels/conv.h"

#include "nn/functional.h"
#include "nn/functional/conv_geometry.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions opt, LayerCapture* capture) {
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  check_dim(xv, 4, "conv2d input");
  check_dim(wv, 4, "conv2d weight");
  check_dtype(xv, DType::F32, "conv2d input");
  check_dtype(wv, DType::F32, "conv2d weight");
  check_same_device(xv, wv, "conv2d");
  AEGIS_CHECK(opt.stride > 0, "conv2d: stride must be positive, got " << opt.stride);
  AEGIS_CHECK(opt.padding >= 0, "conv2d: padding must be non-negative, got " << opt.padding);
  AEGIS_CHECK(opt.dilation > 0, "conv2d: dilation must be positive, got " << opt.dilation);

  const kernels::Conv2dGeometry g = conv2d_geometry(xv, wv, opt);
  AEGIS_CHECK_AS(ShapeError, g.out_channels > 0 && g.in_channels > 0 && g.kernel_h > 0 && g.kernel_w > 0,
                 "conv2d: empty weight " << wv.describe() << " or input " << xv.describe());
  AEGIS_CHECK_AS(ShapeError, wv.size(1) == g.in_channels,
                 "conv2d: input " << xv.describe() << " has " << g.in_channels << " channels but weight "
                                  << wv.describe() << " expects " << wv.size(1));
  AEGIS_CHECK_AS(ShapeError, g.height + 2 * g.padding >= g.extent_h() && g.width + 2 * g.padding >= g.extent_w(),
                 "conv2d: kernel " << g.kernel_h << "x" << g.kernel_w << " (dilation " << g.dilation
                                   << ") is larger than the input " << xv.describe() << " padded by " << g.padding);
  if (b.defined()) {
    check_shape(b.value(), {g.out_channels}, "conv2d bias");
    check_dtype(b.value(), DType::F32, "conv2d bias");
    check_same_device(xv, b.value(), "conv2d bias");
  }

  const Device dev = xv.device();
  Tensor y = Tensor::empty({g.batch, g.out_channels, g.out_height(), g.out_width()}, DType::F32, dev);
  const float* bias = b.defined() ? b.value().data<float>() : nullptr;
  AEGIS_DISPATCH(dev, conv2d_forward(g, xv.data<float>(), wv.data<float>(), bias, y.data<float>()));

  std::vector<Var> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return autograd::make_result(std::move(y), std::move(inputs), "conv2d", [x, w, b, g, opt, capture](const Tensor& gy) {
    const Device d = x.value().device();
    // With per-example clipping on, dw and db come later as clipped sums formed from the capture.
    const bool param_grads = !(capture && capture->skips_param_grads());
    if (capture) capture->record(CaptureOp::Conv2d, x.value(), gy, w, b, opt);
    if (x.requires_grad()) {
      Tensor dx = Tensor::empty(x.value().shape(), DType::F32, d);
      AEGIS_DISPATCH(d, conv2d_backward_data(g, gy.data<float>(), w.value().data<float>(), dx.data<float>()));
      x.accumulate_grad_owned(std::move(dx));
    }
    if (param_grads && w.requires_grad()) {
      Tensor dw = Tensor::empty(w.value().shape(), DType::F32, d);
      AEGIS_DISPATCH(d, conv2d_backward_filter(g, x.value().data<float>(), gy.data<float>(), dw.data<float>()));
      w.accumulate_grad_owned(std::move(dw));
    }
    if (param_grads && b.defined() && b.requires_grad()) {
      Tensor db = Tensor::empty({g.out_channels}, DType::F32, d);
      AEGIS_DISPATCH(d, conv2d_backward_bias(g, gy.data<float>(), db.data<float>()));
      b.accumulate_grad_owned(std::move(db));
    }
  });
}

}  // namespace aegis::nn::F
