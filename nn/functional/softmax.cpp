// Probability rows as differentiable ops (kernels/softmax.h gives the formulas): softmax and
// log-softmax over the class dimension (their gradients from the saved outputs), KL divergence and
// entropy per row, and the mean of groups of consecutive rows with its adjoint, the repetition of a
// row. They make up the consistency regularizer (nn/functional/consistency.cpp).
#include "kernels/softmax.h"

#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

namespace {
// f32 [rows, cols] with cols ≥ 1.
void check_rows(const Tensor& x, const char* what) {
  check_dim(x, 2, what);
  check_dtype(x, DType::F32, what);
  AEGIS_CHECK_AS(ShapeError, x.size(1) >= 1, what << ": needs at least one column, got " << x.describe());
}

void check_group(std::int64_t group, const char* what) {
  AEGIS_CHECK(group >= 1, what << ": group size " << group << " must be at least 1");
}

enum class Normalize { Softmax, LogSoftmax };

Var normalize(const Var& x, Normalize kind) {
  const char* name = kind == Normalize::Softmax ? "softmax" : "log_softmax";
  const Tensor& xv = x.value();
  check_rows(xv, name);
  const std::int64_t rows = xv.size(0), cols = xv.size(1);
  Tensor y = Tensor::empty_like(xv);
  if (kind == Normalize::Softmax)
    AEGIS_DISPATCH(xv.device(), softmax_forward(xv.data<float>(), y.data<float>(), rows, cols));
  else
    AEGIS_DISPATCH(xv.device(), log_softmax_forward(xv.data<float>(), y.data<float>(), rows, cols));
  const Tensor y_saved = y;
  return autograd::make_result(std::move(y), {x}, name, [x, y_saved, kind, rows, cols](const Tensor& gy) {
    Tensor dx = Tensor::empty_like(y_saved);
    if (kind == Normalize::Softmax)
      AEGIS_DISPATCH(y_saved.device(),
                     softmax_backward(y_saved.data<float>(), gy.data<float>(), dx.data<float>(), rows, cols));
    else
      AEGIS_DISPATCH(y_saved.device(),
                     log_softmax_backward(y_saved.data<float>(), gy.data<float>(), dx.data<float>(), rows, cols));
    x.accumulate_grad_owned(std::move(dx));
  });
}
}  // namespace

Var softmax(const Var& x) {
  return normalize(x, Normalize::Softmax);
}

Var log_softmax(const Var& x) {
  return normalize(x, Normalize::LogSoftmax);
}

Var kl_div(const Var& p, const Var& log_q) {
  const Tensor& pv = p.value();
  const Tensor& qv = log_q.value();
  check_rows(pv, "kl_div p");
  check_shape(qv, pv.shape(), "kl_div log_q");
  check_dtype(qv, DType::F32, "kl_div log_q");
  check_same_device(pv, qv, "kl_div");
  const std::int64_t rows = pv.size(0), cols = pv.size(1);
  Tensor out = Tensor::empty({rows}, DType::F32, pv.device());
  AEGIS_DISPATCH(pv.device(), kl_div_forward(pv.data<float>(), qv.data<float>(), out.data<float>(), rows, cols));
  return autograd::make_result(std::move(out), {p, log_q}, "kl_div", [p, log_q, rows, cols](const Tensor& g) {
    const Tensor& pin = p.value();
    Tensor dp = p.requires_grad() ? Tensor::empty_like(pin) : Tensor();
    Tensor dq = log_q.requires_grad() ? Tensor::empty_like(pin) : Tensor();
    AEGIS_DISPATCH(pin.device(), kl_div_backward(pin.data<float>(), log_q.value().data<float>(), g.data<float>(),
                                                 dp.defined() ? dp.data<float>() : nullptr,
                                                 dq.defined() ? dq.data<float>() : nullptr, rows, cols));
    if (dp.defined()) p.accumulate_grad_owned(std::move(dp));
    if (dq.defined()) log_q.accumulate_grad_owned(std::move(dq));
  });
}

Var entropy(const Var& p) {
  const Tensor& pv = p.value();
  check_rows(pv, "entropy");
  const std::int64_t rows = pv.size(0), cols = pv.size(1);
  Tensor out = Tensor::empty({rows}, DType::F32, pv.device());
  AEGIS_DISPATCH(pv.device(), entropy_forward(pv.data<float>(), out.data<float>(), rows, cols));
  return autograd::make_result(std::move(out), {p}, "entropy", [p, rows, cols](const Tensor& g) {
    const Tensor& pin = p.value();
    Tensor dp = Tensor::empty_like(pin);
    AEGIS_DISPATCH(pin.device(), entropy_backward(pin.data<float>(), g.data<float>(), dp.data<float>(), rows, cols));
    p.accumulate_grad_owned(std::move(dp));
  });
}

Var group_mean(const Var& x, std::int64_t group) {
  const Tensor& xv = x.value();
  check_rows(xv, "group_mean");
  check_group(group, "group_mean");
  const std::int64_t rows = xv.size(0), cols = xv.size(1);
  AEGIS_CHECK_AS(ShapeError, rows % group == 0,
                 "group_mean: " << rows << " rows are not whole groups of " << group << " (" << xv.describe() << ")");
  const std::int64_t groups = rows / group;
  const float inv = 1.0f / static_cast<float>(group);
  Tensor out = Tensor::empty({groups, cols}, DType::F32, xv.device());
  AEGIS_DISPATCH(xv.device(), group_sum_rows(xv.data<float>(), out.data<float>(), inv, groups, group, cols));
  return autograd::make_result(std::move(out), {x}, "group_mean", [x, inv, groups, group, cols](const Tensor& g) {
    Tensor dx = Tensor::empty_like(x.value());
    AEGIS_DISPATCH(g.device(), repeat_rows(g.data<float>(), dx.data<float>(), inv, groups, group, cols));
    x.accumulate_grad_owned(std::move(dx));
  });
}

Var repeat_rows(const Var& x, std::int64_t group) {
  const Tensor& xv = x.value();
  check_rows(xv, "repeat_rows");
  check_group(group, "repeat_rows");
  const std::int64_t groups = xv.size(0), cols = xv.size(1);
  Tensor out = Tensor::empty({groups * group, cols}, DType::F32, xv.device());
  AEGIS_DISPATCH(xv.device(), repeat_rows(xv.data<float>(), out.data<float>(), 1.0f, groups, group, cols));
  return autograd::make_result(std::move(out), {x}, "repeat_rows", [x, groups, group, cols](const Tensor& g) {
    Tensor dx = Tensor::empty_like(x.value());
    AEGIS_DISPATCH(g.device(), group_sum_rows(g.data<float>(), dx.data<float>(), 1.0f, groups, group, cols));
    x.accumulate_grad_owned(std::move(dx));
  });
}

}  // namespace aegis::nn::F
