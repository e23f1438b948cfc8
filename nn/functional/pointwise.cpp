// Pointwise ops: activations (derivative from the saved output), flatten (a view), the residual
// add (gradient passes to both inputs unchanged) and the scaling by a constant.
#include <cmath>

#include "kernels/elementwise.h"
#include "nn/functional.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::nn::F {

namespace {
Var activation(const Var& x, kernels::Activation f, const char* name) {
  const Tensor& xv = x.value();
  check_dtype(xv, DType::F32, name);
  Tensor y = Tensor::empty_like(xv);
  AEGIS_DISPATCH(xv.device(), activation_forward(f, xv.data<float>(), y.data<float>(), xv.numel()));
  const Tensor y_saved = y;
  return autograd::make_result(std::move(y), {x}, name, [x, y_saved, f](const Tensor& gy) {
    Tensor dx = Tensor::empty_like(y_saved);
    AEGIS_DISPATCH(y_saved.device(),
                   activation_backward(f, y_saved.data<float>(), gy.data<float>(), dx.data<float>(), dx.numel()));
    x.accumulate_grad_owned(std::move(dx));
  });
}
}  // namespace

Var relu(const Var& x) {
  return activation(x, kernels::Activation::ReLU, "relu");
}
Var tanh(const Var& x) {
  return activation(x, kernels::Activation::Tanh, "tanh");
}
Var sigmoid(const Var& x) {
  return activation(x, kernels::Activation::Sigmoid, "sigmoid");
}
Var softplus(const Var& x) {
  return activation(x, kernels::Activation::Softplus, "softplus");
}

Var reshape(const Var& x, const Shape& shape) {
  const Shape in_shape = x.value().shape();
  return autograd::make_result(x.value().reshape(shape), {x}, "reshape",
                               [x, in_shape](const Tensor& gy) { x.accumulate_grad(gy.reshape(in_shape)); });
}

Var flatten(const Var& x) {
  const Tensor& xv = x.value();
  AEGIS_CHECK_AS(ShapeError, xv.dim() >= 1, "flatten: needs a batch dimension, got " << xv.describe());
  const Shape& s = xv.shape();
  return reshape(x, {s[0], shape_numel(Shape(s.begin() + 1, s.end()))});
}

Var add(const Var& a, const Var& b) {
  Tensor y = ops::add(a.value(), b.value());
  return autograd::make_result(std::move(y), {a, b}, "add", [a, b](const Tensor& gy) {
    if (a.requires_grad()) a.accumulate_grad(gy);
    if (b.requires_grad()) b.accumulate_grad(gy);
  });
}

Var scale(const Var& x, float alpha) {
  const Tensor& xv = x.value();
  check_dtype(xv, DType::F32, "scale");
  AEGIS_CHECK(std::isfinite(alpha), "scale: factor " << alpha << " is not finite");
  Tensor y = xv.clone();
  ops::scale_inplace(y, alpha);
  return autograd::make_result(std::move(y), {x}, "scale", [x, alpha](const Tensor& gy) {
    Tensor dx = gy.clone();
    ops::scale_inplace(dx, alpha);
    x.accumulate_grad_owned(std::move(dx));
  });
}

}  // namespace aegis::nn::F
