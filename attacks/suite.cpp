// The attack suite (attacks/suite.h): per-example worst case over attacks plus the
// gradient-masking sanity checks. Everything runs batch by batch through the public attacks.
#include "attacks/suite.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>

#include "attacks/rows.h"
#include "core/checked_math.h"
#include "kernels/attack_step.h"
#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::attacks {

using autograd::Var;

namespace {

double fraction_robust(const std::vector<std::int32_t>& robust) {
  if (robust.empty()) return 1.0;
  std::int64_t k = 0;
  for (std::int32_t r : robust) k += r;
  return static_cast<double>(k) / static_cast<double>(robust.size());
}

std::string percent(double v) {
  std::ostringstream s;
  s.precision(4);
  s << 100.0 * v << "%";
  return s.str();
}

void check_gradients(nn::Module& model, const Tensor& x, const Tensor& y, SuiteResult& r) {
  nn::FrozenScope scope(model);
  Var input(x, true);
  Var logits = model.forward(input);
  autograd::backward(nn::F::cross_entropy(logits, y, nn::Reduction::Sum));
  const std::int64_t n = x.size(0), d = x.numel() / n;
  const std::vector<float> g = input.grad().to(Device::cpu()).to_vector<float>();
  const std::vector<std::int32_t> pred = nn::argmax(logits.value()).to(Device::cpu()).to_vector<std::int32_t>();
  const std::vector<std::int32_t> label = y.to(Device::cpu()).to_vector<std::int32_t>();
  std::int64_t nan = 0, zero = 0, correct = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    bool all_zero = true;
    for (std::int64_t j = 0; j < d; ++j) {
      const float v = g[static_cast<std::size_t>(i * d + j)];
      if (!std::isfinite(v)) ++nan;
      if (v != 0.0f) all_zero = false;
    }
    if (pred[static_cast<std::size_t>(i)] == label[static_cast<std::size_t>(i)]) {
      ++correct;
      if (all_zero) ++zero;
    }
  }
  if (nan > 0)
    r.warnings.push_back("gradient masking? " + std::to_string(nan) + " NaN/Inf input-gradient entries on a sample of " +
                         std::to_string(n) + " examples");
  if (correct > 0 && zero * 10 > correct)
    r.warnings.push_back("gradient masking? " + std::to_string(zero) + " of " + std::to_string(correct) +
                         " correctly classified examples have an all-zero input gradient");
}

void check_randomness(nn::Module& model, const Tensor& x, SuiteResult& r) {
  nn::FrozenScope scope(model);
  const std::vector<float> a = model.forward(Var(x, false)).value().to(Device::cpu()).to_vector<float>();
  const std::vector<float> b = model.forward(Var(x, false)).value().to(Device::cpu()).to_vector<float>();
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
  if (worst > 0.0) {
    std::ostringstream s;
    s << "randomized model: two forward passes on the same input differ (max logit difference " << worst
      << "); gradient attacks may be weakened — use expectation over transformation (Athalye et al. 2018)";
    r.warnings.push_back(s.str());
  }
}

void check_eps_monotone(nn::Module& model, const Tensor& x, const Tensor& y, const SuiteOptions& o, SuiteResult& r) {
  if (o.eps <= 0.0f) return;
  const float radii[3] = {o.eps / 2, o.eps, 2 * o.eps};
  double acc[3];
  for (int k = 0; k < 3; ++k) {
    AttackOptions ao;
    ao.norm = o.norm;
    ao.eps = Tensor::full({1}, radii[k]);
    ao.steps = o.steps;
    ao.seed = o.seed;
    ao.bpda = o.bpda;
    acc[k] = robust_accuracy(pgd(model, x, y, ao));
  }
  if (acc[1] > acc[0] || acc[2] > acc[1]) {
    std::ostringstream s;
    s << "gradient masking? PGD robust accuracy does not decrease with eps: " << percent(acc[0]) << " at "
      << radii[0] << ", " << percent(acc[1]) << " at " << radii[1] << ", " << percent(acc[2]) << " at " << radii[2];
    r.warnings.push_back(s.str());
  }
}

}  // namespace

SuiteResult run_suite(nn::Module& model, const nn::Dataset& data, Device device, const SuiteOptions& o,
                      ProgressSink* progress) {
  ProgressSink& report = progress_or_silent(progress);
  AEGIS_CHECK(!o.attacks.empty(), "the attack suite needs at least one attack");
  AEGIS_CHECK(std::isfinite(o.eps) && o.eps >= 0.0f, "suite eps " << o.eps << " must be ≥ 0 and finite");
  AEGIS_CHECK(o.steps >= 1, "suite steps " << o.steps << " must be at least 1");
  AEGIS_CHECK(o.batch_size >= 1, "suite batch size " << o.batch_size << " must be at least 1");
  for (AttackMethod a : o.attacks)
    AEGIS_CHECK(a != AttackMethod::CwL2 || o.norm == Norm::L2,
                "cw-l2 is an L2 attack; the suite runs it with norm l2 only, not " << norm_name(o.norm));
  const auto t0 = std::chrono::steady_clock::now();
  model.to(device);
  SuiteResult r;
  const std::int64_t n = data.size();
  r.examples = n;
  r.robust.assign(static_cast<std::size_t>(n), 1);
  std::vector<std::vector<std::int32_t>> robust_by_attack(o.attacks.size(),
                                                          std::vector<std::int32_t>(static_cast<std::size_t>(n), 1));
  AttackOptions ao;
  ao.norm = o.norm;
  ao.eps = Tensor::full({1}, o.eps);
  ao.steps = o.steps;
  ao.seed = o.seed;
  ao.bpda = o.bpda;
  if (o.keep_adversarial) r.adversarial = data.images.clone();
  std::int64_t clean_correct = 0, done = 0;
  const std::int64_t batches = ceil_div(n, o.batch_size);
  const std::int64_t total = batches * static_cast<std::int64_t>(o.attacks.size());
  report.begin("suite", total, "attack-batches");
  for (std::int64_t b = 0; b < n; b += o.batch_size) {
    const std::int64_t e = std::min(n, b + o.batch_size);
    const Tensor x = data.images.rows(b, e).clone().to(device);
    const Tensor y = data.labels.rows(b, e).clone().to(device);
    const std::int64_t m = e - b, d = x.numel() / std::max<std::int64_t>(m, 1);
    const Tensor x_rows = x.reshape({m, d});
    const Tensor kept = x_rows.clone();
    const std::vector<std::int32_t> label = y.to(Device::cpu()).to_vector<std::int32_t>();
    std::vector<std::int32_t> clean_pred;
    {
      nn::FrozenScope scope(model);
      const Tensor logits = model.forward(Var(x, false)).value();
      clean_correct += nn::count_correct(logits, y);
      clean_pred = nn::argmax(logits).to(Device::cpu()).to_vector<std::int32_t>();
    }
    std::vector<std::string> broken_by(static_cast<std::size_t>(m), "-");
    for (std::size_t i = 0; i < broken_by.size(); ++i)
      if (clean_pred[i] != label[i]) broken_by[i] = "clean";
    for (std::size_t a = 0; a < o.attacks.size(); ++a) {
      AttackOptions this_ao = ao;
      this_ao.restarts = has_restarts(o.attacks[a]) ? o.restarts : 1;
      if (o.attacks[a] == AttackMethod::CwL2) this_ao.steps = std::max(o.steps, 100);
      const AttackResult result = run_attack(o.attacks[a], model, x, y, this_ao);
      const std::vector<std::int32_t> success = result.success.to_vector<std::int32_t>();
      std::vector<std::int32_t> first_rows;
      for (std::int64_t i = 0; i < e - b; ++i)
        if (success[static_cast<std::size_t>(i)]) {
          robust_by_attack[a][static_cast<std::size_t>(b + i)] = 0;
          r.robust[static_cast<std::size_t>(b + i)] = 0;
          if (broken_by[static_cast<std::size_t>(i)] == "-") {
            broken_by[static_cast<std::size_t>(i)] = attack_method_name(o.attacks[a]);
            first_rows.push_back(static_cast<std::int32_t>(i));
          }
        }
      copy_rows(result.adversarial.reshape({m, d}), first_rows, kept, first_rows, d);
      report.update(++done, "");
    }
    std::vector<std::int32_t> adv_pred;
    {
      nn::FrozenScope scope(model);
      adv_pred = nn::argmax(model.forward(Var(kept.reshape(x.shape()), false)).value())
                     .to(Device::cpu())
                     .to_vector<std::int32_t>();
    }
    append_batch_rows(r.per_example, b, o.norm, kept, x_rows, label, clean_pred, adv_pred, broken_by);
    if (o.keep_adversarial)
      std::memcpy(r.adversarial.data<float>() + b * d, kept.to(Device::cpu()).data<float>(),
                  static_cast<std::size_t>(m * d) * sizeof(float));
  }
  r.clean_accuracy = n > 0 ? static_cast<double>(clean_correct) / static_cast<double>(n) : 1.0;
  r.robust_accuracy = fraction_robust(r.robust);
  double fgsm_acc = -1.0, pgd_acc = -1.0;
  for (std::size_t a = 0; a < o.attacks.size(); ++a) {
    const double acc = fraction_robust(robust_by_attack[a]);
    r.per_attack.emplace_back(attack_method_name(o.attacks[a]), acc);
    if (o.attacks[a] == AttackMethod::Fgsm) fgsm_acc = acc;
    if (o.attacks[a] == AttackMethod::Pgd) pgd_acc = acc;
  }
  if (fgsm_acc >= 0.0 && pgd_acc >= 0.0 && fgsm_acc < pgd_acc)
    r.warnings.push_back("gradient masking? FGSM (one step) is stronger than PGD: robust accuracy " +
                         percent(fgsm_acc) + " vs " + percent(pgd_acc));
  if (o.sanity_checks && n > 0) {
    const std::int64_t small = std::min<std::int64_t>(64, n), sample = std::min<std::int64_t>(256, n);
    const Tensor xs = data.images.rows(0, small).clone().to(device);
    check_gradients(model, xs, data.labels.rows(0, small).clone().to(device), r);
    check_randomness(model, xs, r);
    check_eps_monotone(model, data.images.rows(0, sample).clone().to(device),
                       data.labels.rows(0, sample).clone().to(device), o, r);
  }
  report.end("");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace aegis::attacks
