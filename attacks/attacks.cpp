// The attack driver shared by FGSM, BIM, PGD and MI-FGSM. Per run (restart) it gathers the
// examples still to attack into a compact batch, then alternates: forward + per-example
// cross-entropy + argmax on the batch, keep-best bookkeeping on the host (two [m] copies),
// backward of the summed objective w.r.t. the input only, dropping the rows that just succeeded
// (early stop), and one fused step (kernels/attack_step.h). The objective is +CE(true label) for
// untargeted attacks and −CE(target) for targeted ones: backward is seeded with ±1 per example,
// so the step always ascends.
#include "attacks/attacks.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/attack_step.h"
#include "nn/quantize.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::attacks {

using autograd::Var;
using kernels::AttackNorm;

namespace {

// What distinguishes the four methods.
struct Method {
  const char* name;
  bool momentum;      // MI-FGSM accumulator
  bool random_start;  // PGD with options.random_start
  int steps;
  int restarts;
  double default_step_scale;  // α = scale·ε/steps when no step size is given
};

std::vector<float> checked_values(const Tensor& t, std::int64_t n, const char* what, bool positive) {
  const std::vector<float> v = broadcast_per_example(t, n, what).to_vector<float>();
  for (std::size_t i = 0; i < v.size(); ++i) {
    AEGIS_CHECK_AS(NumericError, std::isfinite(v[i]), what << "[" << i << "] = " << v[i] << " is not finite");
    AEGIS_CHECK(positive ? v[i] > 0.0f : v[i] >= 0.0f,
                what << "[" << i << "] = " << v[i] << " must be " << (positive ? "> 0" : "≥ 0"));
  }
  return v;
}

std::vector<std::int32_t> checked_labels(const Tensor& t, std::int64_t n, const char* what) {
  AEGIS_CHECK_AS(ShapeError, t.defined(), what << " is undefined; expected i32 [" << n << "]");
  check_dtype(t, DType::I32, what);
  check_shape(t, {n}, what);
  return t.to(Device::cpu()).to_vector<std::int32_t>();
}

template <class T>
Tensor upload(const std::vector<T>& v, Device dev) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}).to(dev);
}

// The examples of one run still being attacked: row j of every tensor belongs to example ids[j]
// of the caller's batch.
struct Rows {
  std::vector<std::int32_t> ids;
  std::vector<float> eps, alpha;
  std::vector<std::int32_t> goal;
  Tensor x, x0, momentum;         // [m, d] on the device; momentum only for MI-FGSM
  Tensor d_eps, d_alpha, d_goal;  // the host vectors above, uploaded
  std::int64_t size() const { return static_cast<std::int64_t>(ids.size()); }
};

class Attack {
 public:
  Attack(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& o, const Method& method)
      : m_model(model), m_options(o), m_method(method), m_x(x) {
    m_norm = o.norm;
    AEGIS_CHECK(method.steps >= 1, method.name << ": steps " << method.steps << " must be at least 1");
    AEGIS_CHECK(method.restarts >= 1, method.name << ": restarts " << method.restarts << " must be at least 1");
    AEGIS_CHECK(method.restarts == 1 || method.random_start,
                method.name << ": restarts " << method.restarts
                            << " need random_start (without it every restart repeats the first run)");
    AEGIS_CHECK(!method.momentum || (std::isfinite(o.momentum) && o.momentum >= 0.0f),
                method.name << ": momentum decay " << o.momentum << " must be finite and ≥ 0");
    check_attack_input(x, "attack input x");
    m_n = x.size(0);
    m_d = m_n > 0 ? x.numel() / m_n : 0;
    AEGIS_CHECK_AS(ShapeError, m_n <= std::numeric_limits<std::int32_t>::max(),
                   method.name << ": " << m_n << " examples exceed the int32 row indices; split the batch");
    AEGIS_CHECK(o.start_offset >= 0 && o.start_offset <= std::numeric_limits<std::int32_t>::max() - m_n,
                method.name << ": start offset " << o.start_offset << " + " << m_n
                            << " examples exceed the int32 random-start keys");
    m_labels = checked_labels(labels, m_n, "labels");
    if (o.targeted) {
      AEGIS_CHECK(o.targets.defined(), method.name << ": a targeted attack needs options.targets (i32 [N])");
      m_goal = checked_labels(o.targets, m_n, "targets");
    } else {
      m_goal = m_labels;
    }
    AEGIS_CHECK(o.eps.defined(), method.name << ": options.eps is required (one value or one per example)");
    m_eps = checked_values(o.eps, m_n, "eps", false);
    if (o.step_size.defined()) {
      m_alpha = checked_values(o.step_size, m_n, "step_size", true);
    } else {
      m_alpha.resize(m_eps.size());
      for (std::size_t i = 0; i < m_eps.size(); ++i)
        m_alpha[i] = static_cast<float>(method.default_step_scale * m_eps[i] / method.steps);
    }
    m_dev = x.device();
    for (const Var& p : model.parameters())
      AEGIS_CHECK_AS(DeviceError, p.device() == m_dev,
                     method.name << ": the model's parameters are on " << p.device().str() << " but x is on "
                                 << m_dev.str() << "; move one of them");
    m_sign = o.targeted ? -1.0 : 1.0;
    AEGIS_CHECK(o.eot_draws >= 1, method.name << ": eot_draws " << o.eot_draws << " must be at least 1");
  }

  AttackResult run() {
    nn::FrozenScope scope(m_model);
    nn::BpdaScope bpda(m_model, m_options.bpda);
    const Tensor flat = m_x.reshape({m_n, m_d});
    m_best = flat.clone();
    m_best_success.assign(static_cast<std::size_t>(m_n), 0);
    m_best_objective.assign(static_cast<std::size_t>(m_n), -std::numeric_limits<double>::infinity());
    m_best_loss.assign(static_cast<std::size_t>(m_n), std::numeric_limits<float>::quiet_NaN());
    AttackResult result;
    if (m_n > 0) {
      // The clean input first: with early stop an example it already fools is never attacked.
      std::vector<std::int32_t> all(static_cast<std::size_t>(m_n));
      std::iota(all.begin(), all.end(), 0);
      Rows clean = gather(all);
      clean.x = clean.x0;
      Var unused;
      evaluate(clean, false, unused);
      for (int restart = 0; restart < m_method.restarts; ++restart) {
        std::vector<std::int32_t> ids;
        for (std::int32_t i = 0; i < m_n; ++i)
          if (!m_best_success[static_cast<std::size_t>(i)] || (restart == 0 && !m_options.early_stop)) ids.push_back(i);
        if (ids.empty()) break;
        run_once(static_cast<std::uint32_t>(restart), ids, result.gradient_evaluations);
      }
    }
    result.adversarial = m_best.reshape(m_x.shape());
    Tensor norms = Tensor::empty({m_n}, DType::F32, m_dev);
    AEGIS_DISPATCH(m_dev,
                   perturbation_norms(m_norm, m_best.data<float>(), flat.data<float>(), norms.data<float>(), m_n, m_d));
    result.perturbation_norm = norms.to(Device::cpu());
    std::vector<std::int32_t> success(m_best_success.begin(), m_best_success.end());
    result.success = Tensor::from_vector(success, {m_n});
    result.final_loss = Tensor::from_vector(m_best_loss, {m_n});
    return result;
  }

 private:
  // Rows for examples `ids`: x0 gathered from the caller's x, per-example values uploaded.
  Rows gather(std::vector<std::int32_t> ids) {
    Rows r;
    r.ids = std::move(ids);
    const std::int64_t m = r.size();
    for (std::int32_t i : r.ids) {
      r.eps.push_back(m_eps[static_cast<std::size_t>(i)]);
      r.alpha.push_back(m_alpha[static_cast<std::size_t>(i)]);
      r.goal.push_back(m_goal[static_cast<std::size_t>(i)]);
    }
    std::vector<std::int32_t> dst(static_cast<std::size_t>(m));
    std::iota(dst.begin(), dst.end(), 0);
    r.x0 = Tensor::empty({m, m_d}, DType::F32, m_dev);
    copy_rows(m_x.reshape({m_n, m_d}), r.ids, r.x0, dst);
    upload_values(r);
    return r;
  }

  void upload_values(Rows& r) const {
    r.d_eps = upload(r.eps, m_dev);
    r.d_alpha = upload(r.alpha, m_dev);
    r.d_goal = upload(r.goal, m_dev);
  }

  void copy_rows(const Tensor& src, const std::vector<std::int32_t>& src_rows, Tensor& dst,
                 const std::vector<std::int32_t>& dst_rows) const {
    const Tensor d_src = upload(src_rows, m_dev), d_dst = upload(dst_rows, m_dev);
    AEGIS_DISPATCH(m_dev, copy_rows(src.data<float>(), d_src.data<std::int32_t>(), dst.data<float>(),
                                    d_dst.data<std::int32_t>(), static_cast<std::int64_t>(src_rows.size()), m_d));
  }

  // Forward pass on r.x: per-example loss and prediction, keep-best bookkeeping. Returns the
  // per-example losses as a Var (for the backward pass when with_grad) and, through `input`,
  // the leaf the gradient lands on; `succeeded` gets one flag per row.
  Var evaluate(const Rows& r, bool with_grad, Var& input, std::vector<char>* succeeded = nullptr) {
    const std::int64_t m = r.size();
    Shape shape = m_x.shape();
    shape[0] = m;
    input = Var(r.x.reshape(shape), with_grad);
    const Var logits = m_model.forward(input);
    const Tensor& z = logits.value();
    AEGIS_CHECK_AS(ShapeError, z.dim() == 2 && z.size(0) == m && z.size(1) >= 2,
                   m_method.name << ": the model must map " << m << " examples to logits [" << m
                                 << ", K] with K ≥ 2 classes, got " << z.describe());
    if (!m_labels_checked) check_label_ranges(z.size(1));
    const Var losses = nn::F::cross_entropy(logits, r.d_goal, nn::Reduction::None);
    const std::vector<float> loss = losses.value().to(Device::cpu()).to_vector<float>();
    const std::vector<std::int32_t> pred = nn::argmax(z).to(Device::cpu()).to_vector<std::int32_t>();
    std::vector<std::int32_t> src, dst;
    if (succeeded) succeeded->assign(static_cast<std::size_t>(m), 0);
    for (std::size_t j = 0; j < static_cast<std::size_t>(m); ++j) {
      const std::size_t i = static_cast<std::size_t>(r.ids[j]);
      // A prediction from NaN or Inf logits (their loss is not finite) is no success: argmax
      // over NaN picks an arbitrary class.
      const bool success = std::isfinite(loss[j]) && (m_options.targeted ? pred[j] == r.goal[j] : pred[j] != r.goal[j]);
      const double objective = m_sign * loss[j];
      if (succeeded) (*succeeded)[j] = success;
      // Best by (success, objective): a success beats any failure; among equals the higher
      // objective wins, so with early stop the first success is kept.
      const bool better = (success && !m_best_success[i]) ||
                          (success == static_cast<bool>(m_best_success[i]) && objective > m_best_objective[i]);
      if (!better) continue;
      m_best_success[i] = success;
      m_best_objective[i] = objective;
      m_best_loss[i] = loss[j];
      src.push_back(static_cast<std::int32_t>(j));
      dst.push_back(r.ids[j]);
    }
    if (!src.empty()) copy_rows(r.x, src, m_best, dst);
    return losses;
  }

  void check_label_ranges(std::int64_t k) {
    for (std::size_t i = 0; i < m_labels.size(); ++i)
      AEGIS_CHECK(m_labels[i] >= 0 && m_labels[i] < k, "labels[" << i << "] = " << m_labels[i] << " is outside [0, "
                                                                 << k << ") for a model with " << k << " classes");
    if (m_options.targeted)
      for (std::size_t i = 0; i < m_goal.size(); ++i)
        AEGIS_CHECK(m_goal[i] >= 0 && m_goal[i] < k, "targets[" << i << "] = " << m_goal[i] << " is outside [0, " << k
                                                                << ") for a model with " << k << " classes");
    m_labels_checked = true;
  }

  // One run over examples `ids`: optional random start, then steps with early stop.
  void run_once(std::uint32_t restart, const std::vector<std::int32_t>& ids, std::int64_t& gradient_evaluations) {
    Rows r = gather(ids);
    if (m_method.random_start) {
      r.x = Tensor::empty_like(r.x0);
      std::vector<std::int32_t> keys = r.ids;  // example ids, shifted to the caller's numbering
      for (std::int32_t& k : keys) k += static_cast<std::int32_t>(m_options.start_offset);
      const Tensor d_ids = upload(keys, m_dev);
      const philox::Key key{m_options.seed, philox::kPurposeAttackStart, restart};
      AEGIS_DISPATCH(m_dev, attack_random_start(m_norm, r.x.data<float>(), r.x0.data<float>(), r.d_eps.data<float>(),
                                                d_ids.data<std::int32_t>(), r.size(), m_d, key));
    } else {
      r.x = r.x0.clone();
    }
    if (m_method.momentum) r.momentum = Tensor::zeros({r.size(), m_d}, DType::F32, m_dev);
    std::vector<char> succeeded;
    for (int t = 0;; ++t) {
      const bool last = t == m_method.steps;  // the final iterate is evaluated, not stepped
      Var input;
      const Var losses = evaluate(r, !last, input, &succeeded);
      if (last) break;
      const std::int64_t m = r.size();
      std::vector<std::int32_t> keep;
      for (std::int32_t j = 0; j < m; ++j)
        if (!m_options.early_stop || !succeeded[static_cast<std::size_t>(j)]) keep.push_back(j);
      if (keep.empty()) break;
      autograd::backward(losses, Tensor::full({m}, m_sign, DType::F32, m_dev));
      gradient_evaluations += m;
      Tensor grad = input.grad().reshape({m, m_d});
      if (m_options.eot_draws > 1) grad = expectation_over_draws(r, grad, gradient_evaluations);
      if (static_cast<std::int64_t>(keep.size()) < m) compact(r, keep, grad);
      const kernels::AttackStepArgs args{m_norm, m_method.momentum, m_options.momentum, r.size(), m_d};
      AEGIS_DISPATCH(m_dev, attack_step(args, r.x.data<float>(), r.x0.data<float>(), grad.data<float>(),
                                        r.momentum.defined() ? r.momentum.data<float>() : nullptr,
                                        r.d_eps.data<float>(), r.d_alpha.data<float>()));
    }
  }

  // EOT: the mean of `first` and eot_draws − 1 more input gradients of the objective at r.x.
  Tensor expectation_over_draws(const Rows& r, const Tensor& first, std::int64_t& gradient_evaluations) {
    const std::int64_t m = r.size();
    Shape shape = m_x.shape();
    shape[0] = m;
    Tensor sum = first.clone();
    for (int draw = 1; draw < m_options.eot_draws; ++draw) {
      Var input(r.x.reshape(shape), true);
      const Var losses = nn::F::cross_entropy(m_model.forward(input), r.d_goal, nn::Reduction::None);
      autograd::backward(losses, Tensor::full({m}, m_sign, DType::F32, m_dev));
      gradient_evaluations += m;
      ops::add_inplace(sum, input.grad().reshape({m, m_d}));
    }
    ops::scale_inplace(sum, 1.0f / static_cast<float>(m_options.eot_draws));
    return sum;
  }

  // Keeps rows `keep` (increasing) of r and of grad, in that order.
  void compact(Rows& r, const std::vector<std::int32_t>& keep, Tensor& grad) const {
    const std::int64_t m = static_cast<std::int64_t>(keep.size());
    std::vector<std::int32_t> dst(keep.size());
    std::iota(dst.begin(), dst.end(), 0);
    auto take = [&](Tensor& t) {
      Tensor out = Tensor::empty({m, m_d}, DType::F32, m_dev);
      copy_rows(t, keep, out, dst);
      t = out;
    };
    take(r.x);
    take(r.x0);
    take(grad);
    if (r.momentum.defined()) take(r.momentum);
    Rows kept;
    for (std::int32_t j : keep) {
      const std::size_t s = static_cast<std::size_t>(j);
      kept.ids.push_back(r.ids[s]);
      kept.eps.push_back(r.eps[s]);
      kept.alpha.push_back(r.alpha[s]);
      kept.goal.push_back(r.goal[s]);
    }
    r.ids = std::move(kept.ids);
    r.eps = std::move(kept.eps);
    r.alpha = std::move(kept.alpha);
    r.goal = std::move(kept.goal);
    upload_values(r);
  }

  nn::Module& m_model;
  const AttackOptions& m_options;
  Method m_method;
  Tensor m_x;
  AttackNorm m_norm = AttackNorm::Linf;
  std::int64_t m_n = 0, m_d = 0;
  Device m_dev;
  double m_sign = 1.0;
  std::vector<std::int32_t> m_labels, m_goal;
  std::vector<float> m_eps, m_alpha;
  bool m_labels_checked = false;
  Tensor m_best;  // [N, d]: the kept iterate per example
  std::vector<char> m_best_success;
  std::vector<double> m_best_objective;
  std::vector<float> m_best_loss;
};

}  // namespace

AttackResult fgsm(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options) {
  return Attack(model, x, labels, options, Method{"fgsm", false, false, 1, 1, 1.0}).run();
}

AttackResult bim(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options) {
  return Attack(model, x, labels, options, Method{"bim", false, false, options.steps, 1, 1.0}).run();
}

AttackResult pgd(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options) {
  const Method method{"pgd", false, options.random_start, options.steps, options.restarts, 2.5};
  return Attack(model, x, labels, options, method).run();
}

AttackResult mifgsm(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& options) {
  return Attack(model, x, labels, options, Method{"mifgsm", true, false, options.steps, 1, 1.0}).run();
}

}  // namespace aegis::attacks
