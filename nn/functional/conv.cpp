// Conv2d: y = conv(x, w) + b with x [N,C,H,W], w [O,C,kh,kw], b [O] (PyTorch's semantics).
// Backward: dx (adjoint of the convolution in x), dw = Σ_n gy_n·cols(x_n)ᵀ, db = Σ_{n,h',w'} gy —
// each formed only when that Var requires a gradient, so an input-only attack pays for no dw.
#include "kernels/conv.h"

#include <string>

#include "nn/functional.h"
#include "nn/functional/conv_geometry.h"
#include "runtime/dispatch.h"

namespace aegis::nn {

kernels::Conv2dGeometry checked_conv2d_geometry(const Tensor& xv, const Tensor& wv, const autograd::Var& b,
                                                const Conv2dOptions& opt, std::int64_t groups, const char* op) {
  const std::string name(op);
  check_dim(xv, 4, (name + " input").c_str());
  check_dim(wv, 4, (name + " weight").c_str());
  check_dtype(xv, DType::F32, (name + " input").c_str());
  check_dtype(wv, DType::F32, (name + " weight").c_str());
  check_same_device(xv, wv, op);
  AEGIS_CHECK(opt.stride > 0, op << ": stride must be positive, got " << opt.stride);
  AEGIS_CHECK(opt.padding >= 0, op << ": padding must be non-negative, got " << opt.padding);
  AEGIS_CHECK(opt.dilation > 0, op << ": dilation must be positive, got " << opt.dilation);
  AEGIS_CHECK(groups >= 1, op << ": groups must be at least 1, got " << groups);
  AEGIS_CHECK(groups == 1 || opt.dilation == 1,
              op << ": dilation " << opt.dilation << " is not supported with groups (the grouped kernel has none)");
  const kernels::Conv2dGeometry g = conv2d_geometry(xv, wv, opt);
  AEGIS_CHECK_AS(ShapeError, g.out_channels > 0 && g.in_channels > 0 && g.kernel_h > 0 && g.kernel_w > 0,
                 op << ": empty weight " << wv.describe() << " or input " << xv.describe());
  if (groups == 1)
    AEGIS_CHECK_AS(ShapeError, wv.size(1) == g.in_channels,
                   op << ": input " << xv.describe() << " has " << g.in_channels << " channels but weight "
                      << wv.describe() << " expects " << wv.size(1));
  else
    AEGIS_CHECK_AS(ShapeError,
                   g.in_channels % groups == 0 && g.out_channels % groups == 0 && wv.size(1) * groups == g.in_channels,
                   op << ": input " << xv.describe() << " and weight " << wv.describe() << " do not split into "
                      << groups << " groups (C and O divisible by the groups, weight [O, C/groups, kh, kw])");
  AEGIS_CHECK_AS(ShapeError, g.height + 2 * g.padding >= g.extent_h() && g.width + 2 * g.padding >= g.extent_w(),
                 op << ": kernel " << g.kernel_h << "x" << g.kernel_w << " (dilation " << g.dilation
                    << ") is larger than the input " << xv.describe() << " padded by " << g.padding);
  if (b.defined()) {
    check_shape(b.value(), {g.out_channels}, (name + " bias").c_str());
    check_dtype(b.value(), DType::F32, (name + " bias").c_str());
    check_same_device(xv, b.value(), (name + " bias").c_str());
  }
  return g;
}

namespace F {

Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions opt, LayerCapture* capture) {
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  const kernels::Conv2dGeometry g = checked_conv2d_geometry(xv, wv, b, opt, 1, "conv2d");

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

}  // namespace F
}  // namespace aegis::nn
