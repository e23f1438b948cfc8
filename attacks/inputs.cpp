// What attacks take and give besides the attack itself: the input check, per-example ε and step
// sizes broadcast from one value, the public random start, and the robust accuracy of a result.
#include <climits>
#include <cmath>
#include <numeric>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/rows.h"
#include "kernels/attack_step.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::attacks {

Tensor broadcast_per_example(float value, std::int64_t n) {
  AEGIS_CHECK(n >= 0, "broadcast_per_example: example count " << n << " must be non-negative");
  return Tensor::full({n}, value);
}

Tensor broadcast_per_example(const Tensor& per_example, std::int64_t n, const char* what) {
  AEGIS_CHECK_AS(ShapeError, per_example.defined(), what << " is undefined; give one value or one per example");
  check_dtype(per_example, DType::F32, what);
  const Tensor host = per_example.to(Device::cpu());
  if (host.numel() == 1) return broadcast_per_example(host.data<float>()[0], n);
  AEGIS_CHECK_AS(ShapeError, host.shape() == Shape{n},
                 what << " has shape " << host.describe() << "; expected one value or [" << n << "] (one per example)");
  return host.clone();
}

void check_attack_input(const Tensor& x, const char* what) {
  AEGIS_CHECK_AS(ShapeError, x.defined(), what << " is undefined");
  check_dtype(x, DType::F32, what);
  AEGIS_CHECK_AS(ShapeError, x.dim() >= 2,
                 what << " must be [N, ...] with the examples along dimension 0, got " << x.describe());
  ops::check_finite(x, what);
  const Tensor host = x.to(Device::cpu());
  const float* p = host.data<float>();
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  for (std::int64_t i = 0; i < x.numel(); ++i)
    if (!(p[i] >= 0.0f && p[i] <= 1.0f))
      AEGIS_THROW(InvalidArgument, what << ": example " << i / d << ", element " << i % d << " is " << p[i]
                                        << ", outside the box [0, 1] that attacks clip to (scale inputs to [0, 1])");
}

Tensor random_start(const Tensor& x, const Tensor& eps, Norm norm, std::uint64_t seed, std::uint32_t restart,
                    std::int64_t first_id) {
  check_attack_input(x, "random_start x");
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  const Tensor eps_host = broadcast_per_example(eps, n, "random_start eps");
  const float* e = eps_host.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    AEGIS_CHECK_AS(NumericError, std::isfinite(e[i]), "random_start: eps[" << i << "] = " << e[i] << " is not finite");
    AEGIS_CHECK(e[i] >= 0.0f, "random_start: eps[" << i << "] = " << e[i] << " must be ≥ 0");
  }
  AEGIS_CHECK(first_id >= 0 && first_id + n <= INT32_MAX,
              "random_start: examples keyed " << first_id << " … " << first_id + n << " exceed the 2^31 start keys");
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  std::iota(ids.begin(), ids.end(), static_cast<std::int32_t>(first_id));
  const Device dev = x.device();
  const Tensor d_ids = Tensor::from_vector(ids, {n}).to(dev);
  const Tensor d_eps = eps_host.to(dev);
  Tensor out = Tensor::empty_like(x);
  const philox::Key key{seed, philox::kPurposeAttackStart, restart};
  AEGIS_DISPATCH(dev, attack_random_start(norm, out.data<float>(), x.data<float>(), d_eps.data<float>(),
                                          d_ids.data<std::int32_t>(), n, d, key));
  return out;
}

double robust_accuracy(const AttackResult& result) {
  if (!result.success.defined() || result.success.numel() == 0) return 1.0;
  const auto s = result.success.to(Device::cpu()).to_vector<std::int32_t>();
  const double broken = static_cast<double>(std::accumulate(s.begin(), s.end(), std::int64_t{0}));
  return 1.0 - broken / static_cast<double>(s.size());
}

Tensor upload_rows(const std::vector<std::int32_t>& rows, Device dev) {
  return Tensor::from_vector(rows, {static_cast<std::int64_t>(rows.size())}).to(dev);
}

void copy_rows(const Tensor& src, const std::vector<std::int32_t>& src_rows, const Tensor& dst,
               const std::vector<std::int32_t>& dst_rows, std::int64_t d) {
  if (src_rows.empty()) return;
  const Device dev = dst.device();
  const Tensor d_src = upload_rows(src_rows, dev), d_dst = upload_rows(dst_rows, dev);
  AEGIS_DISPATCH(dev, copy_rows(src.data<float>(), d_src.data<std::int32_t>(), dst.data<float>(),
                                d_dst.data<std::int32_t>(), static_cast<std::int64_t>(src_rows.size()), d));
}

}  // namespace aegis::attacks
