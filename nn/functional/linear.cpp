// Linear layer: y = x·Wᵀ + b, with x [N,in], W [out,in], b [out].
// Backward: dx = g·W, dW = gᵀ·x, db = Σ_n g[n,:] — each formed only when required (dW and db not
// at all when the capture asks to skip them for per-example clipping).
#include "kernels/blas.h"
#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

Var linear(const Var& x, const Var& w, const Var& b, LayerCapture* capture) {
  const Tensor& xv = x.value();
  const Tensor& wv = w.value();
  check_dim(xv, 2, "linear input");
  check_dim(wv, 2, "linear weight");
  check_dtype(xv, DType::F32, "linear input");
  check_same_device(xv, wv, "linear");
  const std::int64_t n = xv.size(0), in = xv.size(1), out = wv.size(0);
  AEGIS_CHECK_AS(ShapeError, wv.size(1) == in,
                 "linear: input " << xv.describe() << " does not match weight " << wv.describe());
  if (b.defined()) check_shape(b.value(), {out}, "linear bias");

  const Device dev = xv.device();
  Tensor y = Tensor::empty({n, out}, DType::F32, dev);
  kernels::GemmArgs g{false, true, n, out, in, 1.0f, 0.0f};
  AEGIS_DISPATCH(dev, gemm(g, xv.data<float>(), wv.data<float>(), y.data<float>()));
  if (b.defined()) AEGIS_DISPATCH(dev, add_bias(y.data<float>(), b.value().data<float>(), n, out));

  std::vector<Var> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return autograd::make_result(std::move(y), std::move(inputs), "linear", [x, w, b, capture](const Tensor& gy) {
    const Tensor& xv2 = x.value();
    const Tensor& wv2 = w.value();
    const std::int64_t n2 = xv2.size(0), in2 = xv2.size(1), out2 = wv2.size(0);
    const Device d = xv2.device();
    // With per-example clipping on, dW and db come later as clipped sums formed from the capture.
    const bool param_grads = !(capture && capture->skips_param_grads());
    if (capture) capture->record(CaptureOp::Linear, xv2, gy, w, b);
    if (x.requires_grad()) {
      Tensor dx = Tensor::empty({n2, in2}, DType::F32, d);
      kernels::GemmArgs gx{false, false, n2, in2, out2, 1.0f, 0.0f};
      AEGIS_DISPATCH(d, gemm(gx, gy.data<float>(), wv2.data<float>(), dx.data<float>()));
      x.accumulate_grad_owned(std::move(dx));
    }
    if (param_grads && w.requires_grad()) {
      Tensor dw = Tensor::empty({out2, in2}, DType::F32, d);
      kernels::GemmArgs gw{true, false, out2, in2, n2, 1.0f, 0.0f};
      AEGIS_DISPATCH(d, gemm(gw, gy.data<float>(), xv2.data<float>(), dw.data<float>()));
      w.accumulate_grad_owned(std::move(dw));
    }
    if (param_grads && b.defined() && b.requires_grad()) {
      Tensor db = Tensor::empty({out2}, DType::F32, d);
      AEGIS_DISPATCH(d, sum_rows(gy.data<float>(), db.data<float>(), n2, out2, false));
      b.accumulate_grad_owned(std::move(db));
    }
  });
}

}  // namespace aegis::nn::F
