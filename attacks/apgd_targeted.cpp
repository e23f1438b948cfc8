// APGD-T (Croce & Hein 2020, §4 "AutoAttack"): APGD with the targeted DLR loss
//   DLR-T(x, y, t) = −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2),   π sorting z in decreasing order,
// run once per target class t_r, r = 1..T, where t_r is the example's r-th highest non-true class
// by clean logit (for a correctly classified example: the classes ranked 2..T+1, as in the
// reference). Each run attacks only the examples no earlier run broke, and success means
// misclassification (argmax ≠ y), not reaching t_r: the targets only diversify the search.
#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/rows.h"
#include "kernels/attack_step.h"
#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::attacks {

AttackResult apgd_targeted(nn::Module& model, const Tensor& x, const Tensor& labels, const ApgdOptions& options,
                           int target_classes) {
  check_attack_input(x, "apgd-t input x");
  AEGIS_CHECK(target_classes >= 1, "apgd-t: target classes " << target_classes << " must be at least 1");
  AEGIS_CHECK(options.attack.eps.defined(), "apgd-t: options.eps is required (one value or one per example)");
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  check_dtype(labels, DType::I32, "labels");
  check_shape(labels, {n}, "labels");
  const std::vector<std::int32_t> y = labels.to(Device::cpu()).to_vector<std::int32_t>();
  const std::vector<float> eps = broadcast_per_example(options.attack.eps, n, "eps").to_vector<float>();
  const Device dev = x.device();
  const Tensor x0 = x.reshape({n, d});
  AttackResult result;
  result.adversarial = x0.clone();
  std::vector<std::int32_t> success(static_cast<std::size_t>(n), 0);
  std::vector<float> final_loss(static_cast<std::size_t>(n), -std::numeric_limits<float>::infinity());
  if (n > 0) {
    std::vector<float> z;
    std::int64_t k = 0;
    {
      nn::FrozenScope frozen(model);
      const Tensor logits = model.forward(autograd::Var(x, false)).value();
      AEGIS_CHECK_AS(
          ShapeError, logits.dim() == 2 && logits.size(0) == n && logits.size(1) >= 4,
          "apgd-t: the targeted DLR loss needs logits [" << n << ", K] with K ≥ 4, got " << logits.describe());
      k = logits.size(1);
      z = logits.to(Device::cpu()).to_vector<float>();
    }
    for (std::size_t i = 0; i < y.size(); ++i)
      AEGIS_CHECK(y[i] >= 0 && y[i] < k, "labels[" << i << "] = " << y[i] << " is outside [0, " << k << ")");
    // Per example, the non-true classes by decreasing clean logit.
    std::vector<std::vector<std::int32_t>> ranked(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      const float* zi = &z[static_cast<std::size_t>(i * k)];
      auto& r = ranked[static_cast<std::size_t>(i)];
      for (std::int32_t c = 0; c < k; ++c)
        if (c != y[static_cast<std::size_t>(i)]) r.push_back(c);
      std::stable_sort(r.begin(), r.end(), [&](std::int32_t a, std::int32_t b) { return zi[a] > zi[b]; });
      const std::int64_t top = std::max_element(zi, zi + k) - zi;
      success[static_cast<std::size_t>(i)] = top != y[static_cast<std::size_t>(i)];
    }
    const int runs = static_cast<int>(std::min<std::int64_t>(target_classes, k - 1));
    Shape shape = x.shape();
    for (int run = 0; run < runs; ++run) {
      std::vector<std::int32_t> ids;
      for (std::int32_t i = 0; i < n; ++i)
        if (!success[static_cast<std::size_t>(i)]) ids.push_back(i);
      if (ids.empty()) break;
      const auto m = static_cast<std::int64_t>(ids.size());
      std::vector<std::int32_t> sub_rows(ids.size()), sub_y, sub_t;
      std::iota(sub_rows.begin(), sub_rows.end(), 0);
      std::vector<float> sub_eps;
      for (std::int32_t i : ids) {
        sub_y.push_back(y[static_cast<std::size_t>(i)]);
        sub_t.push_back(ranked[static_cast<std::size_t>(i)][static_cast<std::size_t>(run)]);
        sub_eps.push_back(eps[static_cast<std::size_t>(i)]);
      }
      const Tensor sub_x = Tensor::empty({m, d}, DType::F32, dev);
      copy_rows(x0, ids, sub_x, sub_rows, d);
      shape[0] = m;
      ApgdOptions o = options;
      o.loss = ApgdLoss::Dlr;
      o.succeed_on_misclassification = true;
      o.attack.targeted = true;
      o.attack.targets = Tensor::from_vector(sub_t, {m});
      o.attack.eps = Tensor::from_vector(sub_eps, {m});
      // A fresh random start per target run: the run index goes into the high half of the seed.
      o.attack.seed = options.attack.seed + (static_cast<std::uint64_t>(run) << 32);
      const AttackResult r = apgd(model, sub_x.reshape(shape), Tensor::from_vector(sub_y, {m}).to(dev), o);
      result.gradient_evaluations += r.gradient_evaluations;
      const std::vector<std::int32_t> ok = r.success.to_vector<std::int32_t>();
      const std::vector<float> loss = r.final_loss.to_vector<float>();
      // Broken examples take this run's point; an unbroken one keeps the first run's best point.
      std::vector<std::int32_t> take_rows, take_ids;
      for (std::size_t j = 0; j < ids.size(); ++j) {
        if (!ok[j] && run > 0) continue;
        take_rows.push_back(static_cast<std::int32_t>(j));
        take_ids.push_back(ids[j]);
        success[static_cast<std::size_t>(ids[j])] = ok[j];
        final_loss[static_cast<std::size_t>(ids[j])] = loss[j];
      }
      copy_rows(r.adversarial.reshape({m, d}), take_rows, result.adversarial, take_ids, d);
    }
  }
  Tensor norms = Tensor::zeros({n}, DType::F32, dev);
  if (n > 0)
    AEGIS_DISPATCH(dev, perturbation_norms(options.attack.norm, result.adversarial.data<float>(), x0.data<float>(),
                                           norms.data<float>(), n, d));
  result.adversarial = result.adversarial.reshape(x.shape());
  result.success = Tensor::from_vector(success, {n});
  result.perturbation_norm = norms.to(Device::cpu());
  result.final_loss = Tensor::from_vector(final_loss, {n});
  return result;
}

}  // namespace aegis::attacks
