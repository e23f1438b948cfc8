// Carlini & Wagner 2017 L2 attack ("Towards Evaluating the Robustness of Neural Networks", §V).
// Per example it minimizes ‖x' − x‖₂² + c·f(x') over w with the change of variables
// x' = (tanh(w)/s + 1)/2, s = 1 − 10⁻⁶ (§V, "change of variables"; the factor s keeps
// w = atanh((2x − 1)·s) finite for x ∈ {0, 1}, and x' is clipped to [0, 1] against the float
// excess), using Adam (Kingma & Ba 2015, Alg. 1) on w and the margin objective f₆ of §IV:
//   untargeted  f = max(Z_y − max_{i≠y} Z_i, −κ)      targeted  f = max(max_{i≠t} Z_i − Z_t, −κ)
// with the "other" maximum taken over i ≠ y directly (never by zeroing Z_y, which is wrong when
// every logit is negative). c comes from a per-example binary search (§V): after an inner loop
// that found an adversarial c becomes the upper bound, otherwise the lower bound, and the next c
// is the midpoint, or 10·c while no upper bound exists. An inner loop stops early for an example
// whose loss has not fallen by 0.01% over the last steps/10 iterations. Every iterate that is
// adversarial with confidence κ (argmax ≠ y and max_{i≠y} Z_i − Z_y ≥ κ; targeted argmax = t and
// Z_t − max_{i≠t} Z_i ≥ κ) and closer than the best so far is kept. The objective is the SUM of
// the per-example losses and the search, the abort and Adam are per example, so an example's
// result does not depend on the batch.
// The per-iteration work on [·, d] buffers (the start from w0, Adam on w and the iterate x' with
// its squared distance) is one fused kernel (kernels/attack_opt.h) on the model's device; w and
// the Adam moments stay there in double, indexed by example, and only logits, their gradient,
// the per-row squared distances and row indices cross to the host each iteration.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/rows.h"
#include "kernels/attack_opt.h"
#include "kernels/attack_step.h"
#include "nn/functional.h"
#include "nn/quantize.h"
#include "runtime/dispatch.h"

namespace aegis::attacks {

using autograd::Var;

namespace {

constexpr double kNoUpperBound = 1e10;  // c above this is "no upper bound found yet" (§V)

// Forward passes over device rows on the model's device, and ∇ₓ of Σ_i ⟨dlogits_i, Z_i⟩.
class Runner {
 public:
  Runner(nn::Module& model, const Shape& x_shape, Device dev) : m_model(model), m_shape(x_shape), m_dev(dev) {}

  // Logits [m, K] of `rows` ([m, d] on the device) on the host; keeps the graph when with_grad.
  std::vector<float> logits(const Tensor& rows, std::int64_t m, bool with_grad) {
    Shape shape = m_shape;
    shape[0] = m;
    m_input = Var(rows.reshape(shape), with_grad);
    m_logits = m_model.forward(m_input);
    const Tensor& z = m_logits.value();
    AEGIS_CHECK_AS(
        ShapeError, z.dim() == 2 && z.size(0) == m && z.size(1) >= 2,
        "cw_l2: the model must map " << m << " examples to logits [" << m << ", K] with K ≥ 2, got " << z.describe());
    m_k = z.size(1);
    return z.to(Device::cpu()).to_vector<float>();
  }
  std::int64_t classes() const { return m_k; }

  // ∇ₓ Σ_i ⟨dlogits_i, Z_i(x_i)⟩ for the rows of the last logits() call: [m, d] on the device.
  Tensor input_gradient(const std::vector<float>& dlogits, std::int64_t m) {
    autograd::backward(m_logits, Tensor::from_vector(dlogits, {m, m_k}).to(m_dev));
    const Tensor& g = m_input.grad();
    return g.reshape({m, g.numel() / m});
  }

 private:
  nn::Module& m_model;
  Shape m_shape;
  Device m_dev;
  Var m_input, m_logits;
  std::int64_t m_k = 0;
};

// The margin term of one example: f, whether it is adversarial with confidence κ, and the indices
// whose logits f depends on (∂f/∂Z = +1 at `plus`, −1 at `minus` while f > −κ).
struct Margin {
  double f = 0.0;
  bool adversarial = false;
  bool active = false;
  std::int64_t plus = 0, minus = 0;
};

Margin margin(const float* z, std::int64_t k, std::int32_t goal, bool targeted, double kappa) {
  std::int64_t other = -1, top = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    if (z[i] > z[top]) top = i;
    if (i != goal && (other < 0 || z[i] > z[other])) other = i;
  }
  Margin m;
  const double gap = static_cast<double>(z[goal]) - z[other];  // Z_goal − max_{i≠goal} Z_i
  const double raw = targeted ? -gap : gap;
  m.f = std::max(raw, -kappa);
  m.active = raw > -kappa;
  m.plus = targeted ? other : goal;
  m.minus = targeted ? goal : other;
  m.adversarial = targeted ? (top == goal && gap >= kappa) : (top != goal && -gap >= kappa);
  return m;
}

std::vector<std::int32_t> label_vector(const Tensor& t, std::int64_t n, const char* what) {
  AEGIS_CHECK_AS(ShapeError, t.defined(), what << " is undefined; expected i32 [" << n << "]");
  check_dtype(t, DType::I32, what);
  check_shape(t, {n}, what);
  return t.to(Device::cpu()).to_vector<std::int32_t>();
}

void check_ranges(const std::vector<std::int32_t>& v, std::int64_t k, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i)
    AEGIS_CHECK(v[i] >= 0 && v[i] < k, what << "[" << i << "] = " << v[i] << " is outside [0, " << k
                                            << ") for a model with " << k << " classes");
}

}  // namespace

AttackResult cw_l2(nn::Module& model, const Tensor& x, const Tensor& labels, const CwOptions& opt) {
  const AttackOptions& attack = opt.attack;
  check_attack_input(x, "cw_l2 input x");
  AEGIS_CHECK(attack.norm == Norm::L2, "cw_l2: the attack's norm is " << norm_name(attack.norm) << ", not l2");
  AEGIS_CHECK(attack.steps >= 1, "cw_l2: steps " << attack.steps << " must be at least 1");
  AEGIS_CHECK(attack.eot_draws == 1,
              "cw_l2: eot_draws " << attack.eot_draws << " is not supported (C&W has no EOT here)");
  AEGIS_CHECK(opt.binary_search_steps >= 1,
              "cw_l2: binary_search_steps " << opt.binary_search_steps << " must be at least 1");
  AEGIS_CHECK(std::isfinite(opt.confidence) && opt.confidence >= 0.0f,
              "cw_l2: confidence " << opt.confidence << " must be finite and ≥ 0");
  AEGIS_CHECK(std::isfinite(opt.initial_const) && opt.initial_const > 0.0f,
              "cw_l2: initial_const " << opt.initial_const << " must be finite and > 0");
  AEGIS_CHECK(std::isfinite(opt.lr) && opt.lr > 0.0f, "cw_l2: lr " << opt.lr << " must be finite and > 0");
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  AEGIS_CHECK_AS(ShapeError, n <= std::numeric_limits<std::int32_t>::max(),
                 "cw_l2: " << n << " examples exceed the int32 row indices; split the batch");
  const std::vector<std::int32_t> y = label_vector(labels, n, "labels");
  if (attack.targeted) AEGIS_CHECK(attack.targets.defined(), "cw_l2: a targeted attack needs options.targets (i32 [N])");
  const std::vector<std::int32_t> goal = attack.targeted ? label_vector(attack.targets, n, "targets") : y;
  const Device dev = x.device();
  for (const Var& p : model.parameters())
    AEGIS_CHECK_AS(DeviceError, p.device() == dev,
                   "cw_l2: the model's parameters are on " << p.device().str() << " but x is on " << dev.str());

  nn::FrozenScope frozen(model);
  nn::BpdaScope bpda(model, attack.bpda);
  Runner runner(model, x.shape(), dev);
  const Tensor x0 = x.reshape({n, d});  // the clean rows, read only
  const double kappa = opt.confidence;
  const auto un = static_cast<std::size_t>(n);

  Tensor best = x0.clone();  // kept rows: clean until an adversarial is found
  std::vector<double> best_l2(un, std::numeric_limits<double>::infinity());
  std::vector<double> c(un, opt.initial_const), lower(un, 0.0), upper(un, kNoUpperBound);
  // Adam's variable and moments, row i for example i, in double (kernels/attack_opt.h).
  Tensor w, m1, m2;
  if (n > 0) {
    w = Tensor::empty({n, d}, DType::F64, dev);
    m1 = Tensor::empty({n, d}, DType::F64, dev);
    m2 = Tensor::empty({n, d}, DType::F64, dev);
  }
  AttackResult result;
  bool ranges_checked = false;

  for (int search = 0; search < opt.binary_search_steps && n > 0; ++search) {
    // Each search step restarts from w0 = atanh((2x − 1)·s) with fresh Adam moments (§V). `batch`
    // holds the iterates of the examples in `active` (row r is example active[r]) and `l2_sq`
    // their squared distances to x.
    Tensor batch = Tensor::empty({n, d}, DType::F32, dev);
    Tensor l2_sq = Tensor::empty({n}, DType::F64, dev);
    AEGIS_DISPATCH(dev, cw_start(x0.data<float>(), w.data<double>(), m1.data<double>(), m2.data<double>(),
                                 batch.data<float>(), l2_sq.data<double>(), n, d));
    std::vector<char> found(un, 0);
    std::vector<double> previous(un, std::numeric_limits<double>::infinity());
    std::vector<std::int32_t> active(un);
    std::iota(active.begin(), active.end(), 0);
    const int abort_period = std::max(1, attack.steps / 10);
    for (int it = 0; it <= attack.steps && !active.empty(); ++it) {
      const bool last = it == attack.steps;  // the final iterate is evaluated, not stepped
      const std::int64_t m = static_cast<std::int64_t>(active.size());
      const std::vector<float> z = runner.logits(batch, m, !last);
      const std::vector<double> l2sq = l2_sq.to(Device::cpu()).to_vector<double>();
      const std::int64_t k = runner.classes();
      if (!ranges_checked) {
        check_ranges(y, k, "labels");
        if (attack.targeted) check_ranges(goal, k, "targets");
        ranges_checked = true;
      }
      std::vector<float> dlogits(static_cast<std::size_t>(m * k), 0.0f);
      std::vector<std::int32_t> improved_rows, improved_examples, next, next_rows;
      for (std::size_t r = 0; r < active.size(); ++r) {
        const auto i = static_cast<std::size_t>(active[r]);
        const Margin mg = margin(&z[r * static_cast<std::size_t>(k)], k, goal[i], attack.targeted, kappa);
        if (mg.adversarial) {
          found[i] = 1;
          if (l2sq[r] < best_l2[i] * best_l2[i]) {
            best_l2[i] = std::sqrt(l2sq[r]);
            improved_rows.push_back(static_cast<std::int32_t>(r));
            improved_examples.push_back(active[r]);
          }
        }
        const double loss = l2sq[r] + c[i] * mg.f;
        // Early abort (§V): every steps/10 iterations, stop unless the loss fell by 0.01%.
        bool keep = true;
        if (opt.abort_early && it > 0 && it % abort_period == 0) {
          if (loss > previous[i] - 1e-4 * std::fabs(previous[i])) keep = false;
          previous[i] = loss;
        } else if (it == 0) {
          previous[i] = loss;
        }
        if (keep) {
          next.push_back(active[r]);
          next_rows.push_back(static_cast<std::int32_t>(r));
        }
        if (mg.active) {
          dlogits[r * static_cast<std::size_t>(k) + static_cast<std::size_t>(mg.plus)] = static_cast<float>(c[i]);
          dlogits[r * static_cast<std::size_t>(k) + static_cast<std::size_t>(mg.minus)] = static_cast<float>(-c[i]);
        }
      }
      copy_rows(batch, improved_rows, best, improved_examples, d);
      if (last) break;
      const Tensor g = runner.input_gradient(dlogits, m);
      result.gradient_evaluations += m;
      if (!next.empty()) {
        // Adam on w (Kingma & Ba 2015, Alg. 1), bias corrections for step t = it + 1.
        const double t = it + 1;
        const kernels::CwAdamArgs args{static_cast<std::int64_t>(next.size()), d, opt.lr,
                                       1.0 - std::pow(kernels::kAdamBeta1, t), 1.0 - std::pow(kernels::kAdamBeta2, t)};
        const Tensor d_examples = upload_rows(next, dev), d_rows = upload_rows(next_rows, dev);
        Tensor next_batch = Tensor::empty({args.count, d}, DType::F32, dev);
        Tensor next_l2_sq = Tensor::empty({args.count}, DType::F64, dev);
        AEGIS_DISPATCH(
            dev, cw_adam_step(args, d_examples.data<std::int32_t>(), d_rows.data<std::int32_t>(), w.data<double>(),
                              m1.data<double>(), m2.data<double>(), x0.data<float>(), batch.data<float>(),
                              g.data<float>(), next_batch.data<float>(), next_l2_sq.data<double>()));
        batch = next_batch;
        l2_sq = next_l2_sq;
      }
      active = std::move(next);
    }
    // Binary search on c, per example (§V).
    for (std::size_t i = 0; i < un; ++i) {
      if (found[i]) {
        upper[i] = std::min(upper[i], c[i]);
        c[i] = (lower[i] + upper[i]) / 2.0;
      } else {
        lower[i] = std::max(lower[i], c[i]);
        c[i] = upper[i] < kNoUpperBound ? (lower[i] + upper[i]) / 2.0 : c[i] * 10.0;
      }
    }
  }

  // Success is what the model says about the returned rows (one full-batch pass); a row that no
  // longer passes (a margin of float rounding) goes back to the clean input.
  std::vector<std::int32_t> success(un, 0);
  std::vector<float> final_loss(un, 0.0f);
  Tensor norms = Tensor::zeros({n}, DType::F32, dev);
  if (n > 0) {
    const std::vector<float> z = runner.logits(best, n, false);
    const std::int64_t k = runner.classes();
    if (!ranges_checked) {
      check_ranges(y, k, "labels");
      if (attack.targeted) check_ranges(goal, k, "targets");
    }
    std::vector<std::int32_t> reverted;
    for (std::size_t i = 0; i < un; ++i) {
      const Margin mg = margin(&z[i * static_cast<std::size_t>(k)], k, goal[i], attack.targeted, kappa);
      if (best_l2[i] < std::numeric_limits<double>::infinity() && !mg.adversarial) {
        reverted.push_back(static_cast<std::int32_t>(i));
        best_l2[i] = std::numeric_limits<double>::infinity();
      }
      success[i] = best_l2[i] < std::numeric_limits<double>::infinity();
      final_loss[i] = static_cast<float>(mg.f);
    }
    copy_rows(x0, reverted, best, reverted, d);
    AEGIS_DISPATCH(dev, perturbation_norms(kernels::AttackNorm::L2, best.data<float>(), x0.data<float>(),
                                           norms.data<float>(), n, d));
    // The rows reverted above were evaluated as adversarial; recompute their f at x.
    if (std::find(success.begin(), success.end(), 0) != success.end()) {
      const std::vector<float> zc = runner.logits(best, n, false);
      for (std::size_t i = 0; i < un; ++i)
        if (!success[i])
          final_loss[i] =
              static_cast<float>(margin(&zc[i * static_cast<std::size_t>(k)], k, goal[i], attack.targeted, kappa).f);
    }
  }
  result.adversarial = best.reshape(x.shape());
  result.success = Tensor::from_vector(success, {n});
  result.perturbation_norm = norms.to(Device::cpu());
  result.final_loss = Tensor::from_vector(final_loss, {n});
  return result;
}

}  // namespace aegis::attacks
