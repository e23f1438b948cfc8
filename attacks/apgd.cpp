// APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
// diverse parameter-free attacks", Alg. 1 and §3.1–3.3). Per example and restart, from a random
// start x⁰ uniform in the ε-ball (the PGD starts of kernels/attack_step.h, keyed by the example's
// position in the caller's batch), with step size η⁽⁰⁾ = 2ε:
//   x¹ = P(x⁰ + η∇),   z = P(xᵏ + ηᵏ∇f(xᵏ)),   xᵏ⁺¹ = P(xᵏ + α(z − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹)), α = 0.75,
// with ∇ the gradient's sign for L∞ and the gradient over its L2 norm for L2. At each checkpoint
// w_j = ⌈p_j·N_iter⌉ (apgd_checkpoints) η is halved and the iterate set to the best point so far
// when condition 1 (fewer than ρ·(w_j − w_{j−1}) increases f(xⁱ⁺¹) > f(xⁱ) for
// i ∈ [w_{j−1}, w_j − 1]) or condition 2 (η and the best loss unchanged since w_{j−1}) holds.
// P projects onto the ε-ball ∩ [0, 1]: L∞ clips per element; L2 is the exact Euclidean projection
// onto the intersection, y(s) = clip[0,1](x + s(v − x)) with the largest s ∈ [0, 1] for which
// ‖y(s) − x‖₂ ≤ ε (the KKT point of min ‖y − v‖² over ball ∩ box: per coordinate the minimizer of
// (y − v)² + λ(y − x)² over [0, 1] is clip((v + λx)/(1 + λ)), s = 1/(1 + λ)), found by bisection,
// since the norm grows with s. The radius is l2_target_radius(ε, d) so that the float result stays
// inside ε. Losses (maximized): CE of the label, or −CE of the target; DLR (§3.3)
//   −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 10⁻¹²),  targeted −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 10⁻¹²)
// with π sorting the logits in decreasing order. The clean input is evaluated first; an example
// stops at its first success (argmax ≠ y, or = t), restarts run only on examples not broken yet,
// and per example the best point by (success, loss) over all restarts is kept.
// Every [·, d] buffer (iterates, the clean rows, the best points, x_max and g_max) lives on the
// model's device; the step and both projections are one fused kernel (kernels/attack_opt.h).
// Only logits, their gradient, losses, flags, η and row indices cross to the host, where the
// checkpoint logic runs on per-example scalars.
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
#include "runtime/ops.h"

namespace aegis::attacks {

using autograd::Var;

namespace {

template <class T>
Tensor upload(const std::vector<T>& v, Device dev) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}).to(dev);
}

std::vector<std::int32_t> label_vector(const Tensor& t, std::int64_t n, const char* what) {
  AEGIS_CHECK_AS(ShapeError, t.defined(), what << " is undefined; expected i32 [" << n << "]");
  check_dtype(t, DType::I32, what);
  check_shape(t, {n}, what);
  return t.to(Device::cpu()).to_vector<std::int32_t>();
}

// The loss of one example from its logits, and ∂loss/∂z.
double loss_and_grad(const float* z, std::int64_t k, std::int32_t y, std::int32_t t, bool targeted, bool dlr,
                     float* dz) {
  std::fill(dz, dz + k, 0.0f);
  if (!dlr) {
    const std::int32_t goal = targeted ? t : y;
    const double sign = targeted ? -1.0 : 1.0;
    double top = z[0];
    for (std::int64_t i = 1; i < k; ++i) top = std::max(top, static_cast<double>(z[i]));
    double sum = 0.0;
    for (std::int64_t i = 0; i < k; ++i) sum += std::exp(z[i] - top);
    for (std::int64_t i = 0; i < k; ++i)
      dz[i] = static_cast<float>(sign * (std::exp(z[i] - top) / sum - (i == goal ? 1.0 : 0.0)));
    return sign * (top + std::log(sum) - z[goal]);
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return z[a] > z[b]; });
  const std::int64_t p1 = order[0], p3 = order[2];
  double num, den;
  std::int64_t other = -1;
  if (targeted) {
    other = t;
    den = z[p1] - (static_cast<double>(z[p3]) + z[order[3]]) / 2.0 + 1e-12;
  } else {
    for (std::int64_t i = 0; i < k; ++i)
      if (i != y && (other < 0 || z[i] > z[other])) other = i;
    den = z[p1] - static_cast<double>(z[p3]) + 1e-12;
  }
  num = static_cast<double>(z[y]) - z[other];
  // loss = −num/den: ∂/∂z_y = −1/den, ∂/∂z_other = 1/den, ∂/∂den = num/den².
  dz[y] += static_cast<float>(-1.0 / den);
  dz[other] += static_cast<float>(1.0 / den);
  const double dden = num / (den * den);
  dz[p1] += static_cast<float>(dden);
  if (targeted) {
    dz[p3] += static_cast<float>(-dden / 2.0);
    dz[order[3]] += static_cast<float>(-dden / 2.0);
  } else {
    dz[p3] += static_cast<float>(-dden);
  }
  return -num / den;
}

}  // namespace

std::vector<int> apgd_checkpoints(int n_iter) {
  AEGIS_CHECK(n_iter >= 1, "apgd_checkpoints: n_iter " << n_iter << " must be at least 1");
  // p_j in hundredths, exactly (0.41 is not a double): w_j = ⌈p_j·N/100⌉ in integers.
  std::vector<int> w;
  long long prev = 0, cur = 0;
  for (;;) {
    const long long wj = (cur * n_iter + 99) / 100;
    if (w.empty() || wj != w.back()) w.push_back(static_cast<int>(wj));
    const long long next = cur == 0 ? 22 : cur + std::max(cur - prev - 3, 6LL);
    if (next > 100) break;
    prev = cur;
    cur = next;
  }
  return w;
}

AttackResult apgd(nn::Module& model, const Tensor& x, const Tensor& labels, const ApgdOptions& options) {
  const AttackOptions& opt = options.attack;
  check_attack_input(x, "apgd input x");
  AEGIS_CHECK(opt.steps >= 1, "apgd: steps " << opt.steps << " must be at least 1");
  AEGIS_CHECK(opt.restarts >= 1, "apgd: restarts " << opt.restarts << " must be at least 1");
  AEGIS_CHECK(std::isfinite(options.rho) && options.rho >= 0.0f && options.rho <= 1.0f,
              "apgd: rho " << options.rho << " must be in [0, 1]");
  AEGIS_CHECK(opt.eot_draws >= 1, "apgd: eot_draws " << opt.eot_draws << " must be at least 1");
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  AEGIS_CHECK_AS(ShapeError, n <= std::numeric_limits<std::int32_t>::max(),
                 "apgd: " << n << " examples exceed the int32 example ids; split the batch");
  const std::vector<std::int32_t> y = label_vector(labels, n, "labels");
  if (opt.targeted) AEGIS_CHECK(opt.targets.defined(), "apgd: a targeted attack needs options.targets (i32 [N])");
  const std::vector<std::int32_t> t = opt.targeted ? label_vector(opt.targets, n, "targets") : y;
  AEGIS_CHECK(opt.eps.defined(), "apgd: options.eps is required (one value or one per example)");
  const std::vector<float> eps = broadcast_per_example(opt.eps, n, "eps").to_vector<float>();
  for (std::size_t i = 0; i < eps.size(); ++i) {
    AEGIS_CHECK_AS(NumericError, std::isfinite(eps[i]), "eps[" << i << "] = " << eps[i] << " is not finite");
    AEGIS_CHECK(eps[i] >= 0.0f, "eps[" << i << "] = " << eps[i] << " must be ≥ 0");
  }
  const Device dev = x.device();
  for (const Var& p : model.parameters())
    AEGIS_CHECK_AS(DeviceError, p.device() == dev,
                   "apgd: the model's parameters are on " << p.device().str() << " but x is on " << dev.str());
  const Norm norm = opt.norm;
  const bool dlr = options.loss == ApgdLoss::Dlr;

  nn::FrozenScope frozen(model);
  nn::BpdaScope bpda(model, opt.bpda);
  const Tensor x0 = x.reshape({n, d});  // the clean rows, read only
  Tensor best = x0.clone();
  std::vector<char> best_success(static_cast<std::size_t>(n), 0);
  std::vector<double> best_loss(static_cast<std::size_t>(n), -std::numeric_limits<double>::infinity());
  AttackResult result;
  std::int64_t k = 0;
  Var input, logits;

  // Forward over examples `ids` at `rows` ([m, d] on the device); per-example loss, success and
  // ∂loss/∂z; the graph is kept in input/logits when with_grad. Updates the kept best point of
  // every example.
  std::vector<float> dz;
  const auto evaluate = [&](const std::vector<std::int32_t>& ids, const Tensor& rows, bool with_grad,
                            std::vector<double>& loss, std::vector<char>& success) {
    const std::int64_t m = static_cast<std::int64_t>(ids.size());
    Shape shape = x.shape();
    shape[0] = m;
    input = Var(rows.reshape(shape), with_grad);
    logits = model.forward(input);
    const Tensor& zt = logits.value();
    const std::int64_t min_k = dlr ? (opt.targeted ? 4 : 3) : 2;
    AEGIS_CHECK_AS(ShapeError, zt.dim() == 2 && zt.size(0) == m && zt.size(1) >= min_k,
                   "apgd: the model must map " << m << " examples to logits [" << m << ", K] with K ≥ " << min_k
                                               << (dlr ? " (the DLR loss needs them)" : "") << ", got "
                                               << zt.describe());
    if (k == 0) {
      k = zt.size(1);
      for (std::size_t i = 0; i < y.size(); ++i)
        AEGIS_CHECK(y[i] >= 0 && y[i] < k, "labels[" << i << "] = " << y[i] << " is outside [0, " << k << ")");
      if (opt.targeted)
        for (std::size_t i = 0; i < t.size(); ++i)
          AEGIS_CHECK(t[i] >= 0 && t[i] < k && t[i] != y[i], "targets[" << i << "] = " << t[i] << " must be in [0, "
                                                                        << k << ") and differ from the label " << y[i]);
    }
    const std::vector<float> z = zt.to(Device::cpu()).to_vector<float>();
    const auto uk = static_cast<std::size_t>(k);
    dz.assign(static_cast<std::size_t>(m) * uk, 0.0f);
    loss.resize(ids.size());
    success.resize(ids.size());
    std::vector<std::int32_t> improved_rows, improved_examples;
    for (std::size_t r = 0; r < ids.size(); ++r) {
      const auto i = static_cast<std::size_t>(ids[r]);
      const float* zr = &z[r * uk];
      loss[r] = loss_and_grad(zr, k, y[i], t[i], opt.targeted, dlr, &dz[r * uk]);
      const auto top = std::max_element(zr, zr + k) - zr;
      success[r] = opt.targeted && !options.succeed_on_misclassification ? top == t[i] : top != y[i];
      const bool better = (success[r] && !best_success[i]) ||
                          (success[r] == static_cast<bool>(best_success[i]) && loss[r] > best_loss[i]);
      if (!better) continue;
      best_success[i] = success[r];
      best_loss[i] = loss[r];
      improved_rows.push_back(static_cast<std::int32_t>(r));
      improved_examples.push_back(ids[r]);
    }
    copy_rows(rows, improved_rows, best, improved_examples, d);
  };
  const auto gradient = [&](std::int64_t m) {
    autograd::backward(logits, Tensor::from_vector(dz, {m, k}).to(dev));
    result.gradient_evaluations += m;
    return input.grad().reshape({m, d});
  };
  // EOT (Athalye et al. 2018, Eq. 3): ∇E_θ[f(x; θ)] ≈ (1/K)Σ_k ∇f(x; θ_k). Draws 2..K of the
  // randomized model at `rows`, added to g (the first draw's gradient) and to loss; both are then
  // divided by K. The kept best point and the success flags come from the first draw.
  const auto expectation_over_draws = [&](const std::vector<std::int32_t>& ids, const Tensor& rows, Tensor& g,
                                          std::vector<double>& loss) {
    if (opt.eot_draws <= 1) return;
    const std::int64_t m = static_cast<std::int64_t>(ids.size());
    Shape shape = x.shape();
    shape[0] = m;
    const auto uk = static_cast<std::size_t>(k);
    Tensor sum = g.clone();
    for (int draw = 1; draw < opt.eot_draws; ++draw) {
      input = Var(rows.reshape(shape), true);
      logits = model.forward(input);
      const std::vector<float> z = logits.value().to(Device::cpu()).to_vector<float>();
      dz.assign(static_cast<std::size_t>(m) * uk, 0.0f);
      for (std::size_t r = 0; r < ids.size(); ++r) {
        const auto i = static_cast<std::size_t>(ids[r]);
        loss[r] += loss_and_grad(&z[r * uk], k, y[i], t[i], opt.targeted, dlr, &dz[r * uk]);
      }
      ops::add_inplace(sum, gradient(m));
    }
    const double scale = 1.0 / opt.eot_draws;
    ops::scale_inplace(sum, static_cast<float>(scale));
    g = sum;
    for (double& v : loss) v *= scale;
  };

  if (n > 0) {
    std::vector<std::int32_t> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    std::vector<double> loss;
    std::vector<char> success;
    evaluate(all, x0, false, loss, success);
  }
  const std::vector<int> checkpoints = apgd_checkpoints(opt.steps);
  for (int restart = 0; restart < opt.restarts; ++restart) {
    std::vector<std::int32_t> ids;
    for (std::int32_t i = 0; i < n; ++i)
      if (!best_success[static_cast<std::size_t>(i)]) ids.push_back(i);
    if (ids.empty()) break;
    const std::size_t m0 = ids.size();
    const auto rows0 = static_cast<std::int64_t>(m0);
    // Per-row state of this run (row r is example ids[r]); the [m0, d] buffers on the device.
    std::vector<std::int32_t> run_rows(m0);
    std::iota(run_rows.begin(), run_rows.end(), 0);
    std::vector<float> e(m0);
    for (std::size_t r = 0; r < m0; ++r) e[r] = eps[static_cast<std::size_t>(ids[r])];
    const Tensor d_eps = upload(e, dev);
    const Tensor clean = Tensor::empty({rows0, d}, DType::F32, dev);
    copy_rows(x0, ids, clean, run_rows, d);
    Tensor cur = Tensor::empty({rows0, d}, DType::F32, dev);
    const philox::Key key{opt.seed, philox::kPurposeAttackStart, static_cast<std::uint32_t>(restart)};
    const Tensor d_ids = upload(ids, dev);
    AEGIS_DISPATCH(dev, attack_random_start(norm, cur.data<float>(), clean.data<float>(), d_eps.data<float>(),
                                            d_ids.data<std::int32_t>(), rows0, d, key));
    const Tensor prev = cur.clone();
    const Tensor x_max = Tensor::empty({rows0, d}, DType::F32, dev), g_max = Tensor::empty({rows0, d}, DType::F32, dev);
    std::vector<double> eta(m0), f_max(m0), eta_ref(m0), f_max_ref(m0);
    std::vector<std::vector<double>> history(m0);
    for (std::size_t r = 0; r < m0; ++r) eta[r] = 2.0 * e[r];
    std::vector<std::int32_t> active = run_rows;  // rows still attacked
    std::size_t next_checkpoint = 1;              // index into checkpoints of the next w_j (j ≥ 1)
    for (int step = 0; step <= opt.steps && !active.empty(); ++step) {
      const bool last = step == opt.steps;
      const auto m = static_cast<std::int64_t>(active.size());
      std::vector<std::int32_t> batch_ids, batch_rows(active.size());
      for (std::int32_t r : active) batch_ids.push_back(ids[static_cast<std::size_t>(r)]);
      std::iota(batch_rows.begin(), batch_rows.end(), 0);
      const Tensor batch = Tensor::empty({m, d}, DType::F32, dev);
      copy_rows(cur, active, batch, batch_rows, d);
      std::vector<double> loss;
      std::vector<char> success;
      evaluate(batch_ids, batch, !last, loss, success);
      if (last) break;
      Tensor g = gradient(m);
      expectation_over_draws(batch_ids, batch, g, loss);
      // Iteration k = step − 1 of Alg. 1 has just evaluated x^{step}; checkpoint k when k = w_j.
      const int k_alg = step - 1;
      bool at_checkpoint = false;
      std::size_t j = 0;
      if (next_checkpoint < checkpoints.size() && k_alg == checkpoints[next_checkpoint]) {
        at_checkpoint = true;
        j = next_checkpoint++;
      }
      // still/still_grad: the rows stepped and their gradient rows; improved: new f_max points;
      // restored: rows set back to (x_max, g_max) by a checkpoint.
      std::vector<std::int32_t> still, still_grad, improved, improved_grad, restored, restored_grad;
      for (std::size_t a = 0; a < active.size(); ++a) {
        const auto r = static_cast<std::size_t>(active[a]);
        if (success[a]) continue;  // broken: frozen at its first success (kept by evaluate)
        still.push_back(active[a]);
        still_grad.push_back(static_cast<std::int32_t>(a));
        history[r].push_back(loss[a]);
        if (step == 0 || loss[a] > f_max[r]) {
          f_max[r] = loss[a];
          improved.push_back(active[a]);
          improved_grad.push_back(static_cast<std::int32_t>(a));
        }
        if (step == 1) {  // w_0 = 0: the reference values for the first checkpoint
          eta_ref[r] = eta[r];
          f_max_ref[r] = f_max[r];
        }
        if (at_checkpoint) {
          const int w_prev = checkpoints[j - 1], w_j = checkpoints[j];
          int increases = 0;
          for (int i = w_prev; i < w_j; ++i)
            increases += history[r][static_cast<std::size_t>(i + 1)] > history[r][static_cast<std::size_t>(i)];
          const bool condition1 = increases < options.rho * (w_j - w_prev);
          const bool condition2 = eta_ref[r] == eta[r] && f_max_ref[r] == f_max[r];
          eta_ref[r] = eta[r];
          f_max_ref[r] = f_max[r];
          if (condition1 || condition2) {
            eta[r] /= 2.0;
            restored.push_back(active[a]);
            restored_grad.push_back(static_cast<std::int32_t>(a));
            history[r].back() = f_max[r];
          }
        }
      }
      // x_max, g_max ← the improved rows; then the restored rows continue from x_max with g_max.
      copy_rows(cur, improved, x_max, improved, d);
      copy_rows(g, improved_grad, g_max, improved, d);
      copy_rows(x_max, restored, cur, restored, d);
      copy_rows(g_max, restored, g, restored_grad, d);
      if (!still.empty()) {
        const kernels::ApgdStepArgs args{norm == kernels::AttackNorm::L2, step > 0,
                                         static_cast<std::int64_t>(still.size()), d};
        const Tensor d_still = upload(still, dev), d_still_grad = upload(still_grad, dev), d_eta = upload(eta, dev);
        AEGIS_DISPATCH(dev, apgd_step(args, d_still.data<std::int32_t>(), d_still_grad.data<std::int32_t>(),
                                      cur.data<float>(), prev.data<float>(), clean.data<float>(), g.data<float>(),
                                      d_eta.data<double>(), d_eps.data<float>()));
      }
      active = std::move(still);
    }
  }

  std::vector<std::int32_t> success(best_success.begin(), best_success.end());
  std::vector<float> final_loss(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) final_loss[i] = static_cast<float>(best_loss[i]);
  Tensor norms = Tensor::zeros({n}, DType::F32, dev);
  if (n > 0)
    AEGIS_DISPATCH(dev, perturbation_norms(norm, best.data<float>(), x0.data<float>(), norms.data<float>(), n, d));
  result.adversarial = best.reshape(x.shape());
  result.success = Tensor::from_vector(success, {n});
  result.perturbation_norm = norms.to(Device::cpu());
  result.final_loss = Tensor::from_vector(final_loss, {n});
  return result;
}

}  // namespace aegis::attacks
