// Adversarial training (attacks/adv_train.h) is nn::train_classifier — same batches, optimizer,
// schedule, callbacks and NaN check — with its hooks set: the input of each step is PGD examples
// (attacks::pgd), an FGSM step from a random start (the fused L∞ step of
// kernels/attack_step.h), or the free-training perturbation, which is updated after each
// backward pass and carried across replays; the overfitting check runs after each epoch.
#include "attacks/adv_train.h"

#include <algorithm>
#include <cmath>

#include "attacks/attacks.h"
#include "kernels/attack_step.h"
#include "core/checked_math.h"
#include "runtime/dispatch.h"
#include "core/named_enum.h"

namespace aegis::attacks {

using autograd::Var;

namespace {

std::vector<Tensor> snapshot(const nn::Module& m) {
  std::vector<Tensor> s;
  for (const Var& p : m.parameters()) s.push_back(p.value().clone());
  return s;
}

void restore(nn::Module& m, const std::vector<Tensor>& s) {
  std::vector<Var> params = m.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) params[i].mutable_value() = s[i].clone();
}

// A distinct Philox seed per training step, so random starts never repeat.
std::uint64_t step_seed(std::uint64_t seed, std::int64_t step) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(step) + 1;
}

// Madry et al. 2018: PGD-K with a uniform random start; every example takes all K steps.
Tensor pgd_examples(nn::Module& model, const Tensor& x, const Tensor& y, const AdvTrainOptions& adv, std::uint64_t seed,
                    std::int64_t first_row = 0) {
  AttackOptions ao;
  ao.eps = Tensor::full({1}, adv.eps);
  if (adv.step_size > 0) ao.step_size = Tensor::full({1}, adv.step_size);
  ao.steps = adv.steps;
  ao.seed = seed;
  ao.start_offset = first_row;
  ao.early_stop = false;
  return pgd(model, x, y, ao).adversarial;
}

// Wong et al. 2020, Alg. 3: x + δ with δ ~ U(−ε, ε) (clipped to [0, 1]), then one step
// α·sign ∇ₓ CE, projected onto the ε-ball around x and onto [0, 1].
Tensor fgsm_rs_examples(nn::Module& model, const Tensor& x, const Tensor& y, float eps, float alpha, std::uint64_t seed,
                        std::int64_t first_row = 0) {
  const std::int64_t n = x.size(0), d = x.numel() / n;
  const Device dev = x.device();
  Tensor adv = random_start(x, Tensor::full({1}, eps), Norm::Linf, seed, 0, first_row);
  Tensor grad;
  {
    nn::FrozenScope frozen(model);  // the attack pass needs only ∂loss/∂x
    Var input(adv, true);
    autograd::backward(nn::F::cross_entropy(model.forward(input), y, nn::Reduction::Sum));
    grad = input.grad();
  }
  const Tensor d_eps = Tensor::full({n}, eps).to(dev), d_alpha = Tensor::full({n}, alpha).to(dev);
  kernels::AttackStepArgs args;
  args.n = n;
  args.d = d;
  AEGIS_DISPATCH(dev, attack_step(args, adv.data<float>(), x.data<float>(), grad.data<float>(), nullptr,
                                  d_eps.data<float>(), d_alpha.data<float>()));
  return adv;
}

// PGD-10 (α = ε/4, one random start) robust accuracy on `data`, in batches of 256.
double pgd10_accuracy(nn::Module& model, const nn::Dataset& data, float eps, Device dev, std::uint64_t seed) {
  AttackOptions ao;
  ao.eps = Tensor::full({1}, eps);
  ao.step_size = Tensor::full({1}, eps / 4.0f);
  ao.steps = 10;
  ao.seed = seed;
  std::int64_t broken = 0;
  for (std::int64_t b = 0; b < data.size(); b += 256) {
    const std::int64_t e = std::min(data.size(), b + 256);
    const AttackResult r =
        pgd(model, data.images.rows(b, e).clone().to(dev), data.labels.rows(b, e).clone().to(dev), ao);
    for (std::int32_t s : r.success.to_vector<std::int32_t>()) broken += s;
  }
  return 1.0 - static_cast<double>(broken) / static_cast<double>(data.size());
}

}  // namespace

const char* adv_method_name(AdvMethod method) noexcept {
  switch (method) {
    case AdvMethod::Pgd: return "pgd";
    case AdvMethod::FgsmRs: return "fgsm-rs";
    case AdvMethod::Free: return "free";
  }
  return "?";
}

AdvMethod parse_adv_method(const std::string& name) {
  return parse_named(name, {AdvMethod::Pgd, AdvMethod::FgsmRs, AdvMethod::Free}, adv_method_name,
                     "adversarial training method");
}

namespace {

void check_adv_options(const AdvTrainOptions& adv) {
  AEGIS_CHECK(std::isfinite(adv.eps) && adv.eps > 0.0f, "adversarial training eps " << adv.eps << " must be positive");
  AEGIS_CHECK(adv.steps >= 1, "adversarial training steps " << adv.steps << " must be at least 1");
  AEGIS_CHECK(std::isfinite(adv.step_size) && adv.step_size >= 0.0f,
              "adversarial training step size " << adv.step_size << " must be ≥ 0 (0: the method's default)");
  AEGIS_CHECK(adv.replays >= 1, "free adversarial training replays " << adv.replays << " must be at least 1");
  AEGIS_CHECK(adv.overfit_drop >= 0.0f && adv.overfit_drop <= 1.0f,
              "overfitting-check threshold " << adv.overfit_drop << " must lie in [0, 1]");
}

}  // namespace

std::function<Tensor(nn::Module&, const Tensor&, const Tensor&, std::uint64_t, std::int64_t)> dp_adversarial_inputs(
    const AdvTrainOptions& adv, std::uint64_t seed) {
  check_adv_options(adv);
  AEGIS_CHECK(adv.method != AdvMethod::Free,
              "free adversarial training cannot run under DP-SGD: its perturbation carries over from other "
              "minibatches' examples, so an example's gradient would depend on other examples (use pgd or fgsm-rs)");
  const float fgsm_alpha = adv.step_size > 0 ? adv.step_size : 1.25f * adv.eps;
  return [adv, seed, fgsm_alpha](nn::Module& model, const Tensor& x, const Tensor& y, std::uint64_t step,
                                 std::int64_t first_row) {
    const std::uint64_t s = step_seed(seed, static_cast<std::int64_t>(step));
    return adv.method == AdvMethod::Pgd ? pgd_examples(model, x, y, adv, s, first_row)
                                        : fgsm_rs_examples(model, x, y, adv.eps, fgsm_alpha, s, first_row);
  };
}

std::map<std::string, std::string> adv_metadata(const AdvTrainOptions& adv) {
  return {{"aegis.adv_method", adv_method_name(adv.method)}, {"aegis.adv_eps", std::to_string(adv.eps)}};
}

AdvPlan plan_adversarial(std::int64_t dataset_size, const nn::TrainOptions& o, const AdvTrainOptions& adv) {
  check_adv_options(adv);
  nn::check_train_options(o);
  const bool is_free = adv.method == AdvMethod::Free;
  AdvPlan plan;
  plan.epochs = is_free ? ceil_div(o.epochs, static_cast<std::int64_t>(adv.replays)) : o.epochs;
  plan.held_out = adv.method == AdvMethod::FgsmRs && adv.check_overfitting
                      ? std::min<std::int64_t>(512, dataset_size / 10)
                      : 0;
  plan.steps_per_epoch = ceil_div(dataset_size - plan.held_out, o.batch_size) * (is_free ? adv.replays : 1);
  return plan;
}

AdvTrainResult train_adversarial(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& o,
                                 const AdvTrainOptions& adv, const std::function<void(const nn::StepInfo&)>& on_step,
                                 const std::function<void(const nn::EpochResult&)>& on_epoch) {
  check_adv_options(adv);
  nn::check_train_options(o);
  AEGIS_CHECK(train.size() > 0, "training set '" << train.name << "' is empty");

  AdvTrainResult result;
  const bool is_free = adv.method == AdvMethod::Free;
  const bool check = adv.method == AdvMethod::FgsmRs && adv.check_overfitting;
  nn::Dataset fit = train, held;
  if (check) {
    result.held_out = std::min<std::int64_t>(512, train.size() / 10);
    AEGIS_CHECK(result.held_out >= 1, "the overfitting check holds out a tenth of the training set, but '"
                                          << train.name << "' has only " << train.size() << " examples");
    fit = nn::take(train, 0, train.size() - result.held_out);
    held = nn::take(train, train.size() - result.held_out, result.held_out);
  }
  const int replays = is_free ? adv.replays : 1;
  const std::int64_t epochs = is_free ? ceil_div(o.epochs, replays) : o.epochs;
  const float fgsm_alpha = adv.step_size > 0 ? adv.step_size : 1.25f * adv.eps;

  nn::TrainOptions t = o;
  t.epochs = epochs;
  t.replays = replays;
  Tensor delta;  // free: the perturbation carried across replays and minibatches, on the device
  t.make_input = [&](const nn::Batch& batch, std::int64_t step) -> Var {
    const std::uint64_t seed = step_seed(o.seed, step);
    if (adv.method == AdvMethod::Pgd) return Var(pgd_examples(model, batch.images, batch.labels, adv, seed), false);
    if (adv.method == AdvMethod::FgsmRs)
      return Var(fgsm_rs_examples(model, batch.images, batch.labels, adv.eps, fgsm_alpha, seed), false);
    // Free AT (Shafahi et al. 2019, Alg. 1): x + δ clipped to [0, 1]; δ restarts at 0 when the
    // minibatch size changes.
    if (!delta.defined() || delta.numel() != batch.images.numel())
      delta = Tensor::zeros(batch.images.shape(), DType::F32, o.device);
    Tensor input = Tensor::empty_like(batch.images);
    AEGIS_DISPATCH(o.device,
                   free_input(batch.images.data<float>(), delta.data<float>(), input.data<float>(), input.numel()));
    return Var(input, true);
  };
  if (is_free)  // δ ← clip[−ε,ε](δ + ε·sign ∇ₓ) after each backward pass
    t.after_backward = [&](const Var& input) {
      AEGIS_DISPATCH(o.device, free_update(delta.data<float>(), input.grad().data<float>(), adv.eps, delta.numel()));
    };
  std::vector<Tensor> best_weights;
  double best_accuracy = -1.0;
  t.stop_after_epoch = [&](const nn::EpochResult& er) {
    result.best_epoch = er.epoch;
    if (!check) return false;
    const double acc = pgd10_accuracy(model, held, adv.eps, o.device, o.seed);
    model.train(true);
    result.check_robust_accuracy.push_back(acc);
    if (acc > best_accuracy) {
      best_accuracy = acc;
      best_weights = snapshot(model);
      return false;
    }
    if (best_accuracy - acc <= adv.overfit_drop) return false;
    restore(model, best_weights);
    result.stopped_early = true;
    const auto best =
        std::find(result.check_robust_accuracy.begin(), result.check_robust_accuracy.end(), best_accuracy);
    result.best_epoch = static_cast<std::int64_t>(best - result.check_robust_accuracy.begin()) + 1;
    return true;
  };
  nn::TrainResult trained = nn::train_classifier(model, fit, t, on_step, on_epoch);
  result.epochs = std::move(trained.epochs);
  result.steps = trained.steps;
  result.seconds = trained.seconds;
  return result;
}

}  // namespace aegis::attacks
