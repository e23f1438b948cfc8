// Group normalization: x [N, C, *] viewed as [N, C, S]; per (example, group) statistics, then
// the per-channel affine map. The forward pass saves x̂ and rstd [N, groups] only when a backward
// pass can follow (x̂ aliases the output when there is no affine map); inference keeps nothing.
// Backward: dx by the group-norm formula (kernels/cpu/norm.cpp), dγ = Σ g·x̂, dβ = Σ g, each only
// when that Var requires a gradient. With capture enabled, the capture receives (x̂, g): the
// per-example gradients are dγ_i[c] = Σ_s x̂_i[c,s]·g_i[c,s] and dβ_i[c] = Σ_s g_i[c,s].
#include "kernels/norm.h"

#include <cmath>

#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn::F {

namespace {
const float* data_or_null(const Var& v) { return v.defined() ? v.value().data<float>() : nullptr; }

void check_affine(const Var& p, std::int64_t channels, const Tensor& x, const char* what) {
  check_shape(p.value(), {channels}, what);
  check_dtype(p.value(), DType::F32, what);
  check_same_device(x, p.value(), what);
}
}  // namespace

Var group_norm(const Var& x, std::int64_t groups, const Var& gamma, const Var& beta, float eps, LayerCapture* capture) {
  const Tensor& xv = x.value();
  check_dtype(xv, DType::F32, "group_norm input");
  AEGIS_CHECK_AS(ShapeError, xv.dim() >= 2, "group_norm: input must be [N, C, *], got " << xv.describe());
  AEGIS_CHECK(groups > 0, "group_norm: groups must be positive, got " << groups);
  AEGIS_CHECK(eps >= 0.0f && std::isfinite(eps), "group_norm: eps must be finite and non-negative, got " << eps);
  const std::int64_t n = xv.size(0), c = xv.size(1);
  AEGIS_CHECK_AS(
      ShapeError, c % groups == 0,
      "group_norm: " << c << " channels of input " << xv.describe() << " do not split into " << groups << " groups");
  AEGIS_CHECK_AS(ShapeError, gamma.defined() == beta.defined(),
                 "group_norm: gamma and beta must both be given or both be omitted (gamma "
                     << (gamma.defined() ? "given" : "omitted") << ", beta " << (beta.defined() ? "given" : "omitted")
                     << ")");
  const bool affine = gamma.defined();
  if (affine) {
    check_affine(gamma, c, xv, "group_norm gamma");
    check_affine(beta, c, xv, "group_norm beta");
  }
  const std::int64_t spatial = shape_numel(Shape(xv.shape().begin() + 2, xv.shape().end()));

  const Device dev = xv.device();
  std::vector<Var> inputs{x};
  if (affine) {
    inputs.push_back(gamma);
    inputs.push_back(beta);
  }
  const bool tracked = autograd::any_requires_grad(inputs);
  Tensor y = Tensor::empty_like(xv);
  Tensor rstd = Tensor::empty({n, groups}, DType::F32, dev);
  // Without the affine map y is x̂ itself; with it, x̂ is stored only for a backward pass.
  Tensor xhat = affine && tracked ? Tensor::empty_like(xv) : y;
  AEGIS_DISPATCH(dev, group_norm_forward(xv.data<float>(), data_or_null(gamma), data_or_null(beta), y.data<float>(),
                                         affine && tracked ? xhat.data<float>() : nullptr, rstd.data<float>(), n, c,
                                         spatial, groups, eps));

  return autograd::make_result(
      std::move(y), std::move(inputs), "group_norm",
      [x, gamma, beta, xhat, rstd, n, c, spatial, groups, capture](const Tensor& gy) {
        const Device d = xhat.device();
        // With per-example clipping on, dγ and dβ come later as clipped sums formed from the capture.
        const bool param_grads = !(capture && capture->skips_param_grads());
        if (capture) capture->record(CaptureOp::GroupNorm, xhat, gy, gamma, beta);
        const bool want_dx = x.requires_grad();
        const bool want_dgamma = param_grads && gamma.defined() && gamma.requires_grad();
        const bool want_dbeta = param_grads && beta.defined() && beta.requires_grad();
        if (!want_dx && !want_dgamma && !want_dbeta) return;
        Tensor dx = want_dx ? Tensor::empty(xhat.shape(), DType::F32, d) : Tensor();
        Tensor dgamma = want_dgamma ? Tensor::empty({c}, DType::F32, d) : Tensor();
        Tensor dbeta = want_dbeta ? Tensor::empty({c}, DType::F32, d) : Tensor();
        AEGIS_DISPATCH(
            d, group_norm_backward(gy.data<float>(), xhat.data<float>(), rstd.data<float>(), data_or_null(gamma),
                                   want_dx ? dx.data<float>() : nullptr, want_dgamma ? dgamma.data<float>() : nullptr,
                                   want_dbeta ? dbeta.data<float>() : nullptr, n, c, spatial, groups));
        if (want_dx) x.accumulate_grad_owned(std::move(dx));
        if (want_dgamma) gamma.accumulate_grad_owned(std::move(dgamma));
        if (want_dbeta) beta.accumulate_grad_owned(std::move(dbeta));
      });
}

}  // namespace aegis::nn::F
