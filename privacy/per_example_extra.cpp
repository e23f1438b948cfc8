// add_to_clipped_sum (privacy/per_example.h): an extra gradient, such as an auditing canary,
// added to the clipped sum like one more example.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/per_example.h"
#include "privacy/per_example.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::privacy {

double add_to_clipped_sum(nn::Module& model, const std::vector<Tensor>& extra, float clip_to) {
  const std::vector<std::pair<std::string, autograd::Var>> params = model.named_parameters();
  AEGIS_CHECK(extra.size() == params.size(),
              "add_to_clipped_sum: " << extra.size() << " tensors for " << params.size() << " parameters");
  AEGIS_CHECK(std::isfinite(clip_to) && clip_to >= 0.0f, "add_to_clipped_sum: clip_to must be ≥ 0, got " << clip_to);
  double sq = 0.0;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Tensor& e = extra[k];
    if (!e.defined()) continue;
    const auto& [name, p] = params[k];
    AEGIS_CHECK(p.requires_grad(), "add_to_clipped_sum: parameter '" << name << "' does not require a gradient");
    check_shape(e, p.value().shape(), "add_to_clipped_sum extra");
    check_dtype(e, DType::F32, "add_to_clipped_sum extra");
    check_same_device(e, p.value(), "add_to_clipped_sum extra");
    Tensor s = Tensor::zeros({1}, DType::F32, e.device());
    AEGIS_DISPATCH(e.device(), row_sq_norms(e.data<float>(), 1, e.numel(), s.data<float>()));
    sq += s.item();
  }
  const double norm = std::sqrt(sq);
  AEGIS_CHECK_AS(NumericError, std::isfinite(norm), "add_to_clipped_sum: the extra gradient has a NaN or Inf entry");
  const float scale = clip_to > 0.0f ? static_cast<float>(std::min(1.0, clip_to / (norm + 1e-6))) : 1.0f;
  for (std::size_t k = 0; k < params.size(); ++k) {
    if (!extra[k].defined()) continue;
    Tensor scaled = extra[k].clone();
    if (scale != 1.0f) ops::scale_inplace(scaled, scale);
    params[k].second.accumulate_grad_owned(std::move(scaled));
  }
  return norm;
}

}  // namespace aegis::privacy
