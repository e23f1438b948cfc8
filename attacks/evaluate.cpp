// One attack over a dataset (attacks/evaluate.h), and the dispatch from a method to its attack.
#include "attacks/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "core/error.h"
#include "nn/functional.h"
#include "core/named_enum.h"

namespace aegis::attacks {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

}  // namespace

const char* attack_method_name(AttackMethod method) noexcept {
  switch (method) {
    case AttackMethod::Fgsm: return "fgsm";
    case AttackMethod::Bim: return "bim";
    case AttackMethod::Pgd: return "pgd";
    case AttackMethod::Mifgsm: return "mifgsm";
    case AttackMethod::CwL2: return "cw-l2";
    case AttackMethod::ApgdCe: return "apgd-ce";
    case AttackMethod::ApgdDlr: return "apgd-dlr";
    case AttackMethod::ApgdT:
      return "apgd-t";
    case AttackMethod::FabT:
      return "fab-t";
    case AttackMethod::Square:
      return "square";
  }
  return "?";
}

AttackMethod parse_attack_method(const std::string& name) {
  return parse_named(
      name,
      {AttackMethod::Fgsm, AttackMethod::Bim, AttackMethod::Pgd, AttackMethod::Mifgsm, AttackMethod::CwL2,
       AttackMethod::ApgdCe, AttackMethod::ApgdDlr, AttackMethod::ApgdT, AttackMethod::FabT, AttackMethod::Square},
      attack_method_name, "attack");
}

bool has_restarts(AttackMethod method) noexcept {
  return method == AttackMethod::Pgd || method == AttackMethod::ApgdCe || method == AttackMethod::ApgdDlr ||
         method == AttackMethod::ApgdT || method == AttackMethod::FabT;
}

AttackResult run_attack(AttackMethod method, nn::Module& model, const Tensor& x, const Tensor& labels,
                        const AttackOptions& options, bool cw_unbounded, const MethodOptions& mo) {
  switch (method) {
    case AttackMethod::Fgsm: return fgsm(model, x, labels, options);
    case AttackMethod::Bim: return bim(model, x, labels, options);
    case AttackMethod::Pgd: return pgd(model, x, labels, options);
    case AttackMethod::Mifgsm: return mifgsm(model, x, labels, options);
    case AttackMethod::ApgdCe:
    case AttackMethod::ApgdDlr: {
      ApgdOptions ao;
      ao.attack = options;
      ao.loss = method == AttackMethod::ApgdCe ? ApgdLoss::Ce : ApgdLoss::Dlr;
      ao.rho = mo.apgd_rho;
      return apgd(model, x, labels, ao);
    }
    case AttackMethod::ApgdT: {
      ApgdOptions ao;
      ao.attack = options;
      ao.rho = mo.apgd_rho;
      return apgd_targeted(model, x, labels, ao, mo.target_classes);
    }
    case AttackMethod::FabT: {
      FabOptions fo;
      fo.attack = options;
      fo.target_classes = mo.target_classes;
      fo.final_search_steps = mo.fab_final_search_steps;
      return fab_targeted(model, x, labels, fo);
    }
    case AttackMethod::Square: {
      SquareOptions so;
      so.attack = options;
      so.queries = mo.queries;
      so.p_init = mo.p_init;
      so.proposals = mo.square_proposals;
      so.rescale_schedule = mo.square_rescale_schedule;
      return square(model, x, labels, so);
    }
    case AttackMethod::CwL2: {
      AEGIS_CHECK(options.norm == Norm::L2, "cw-l2 is an L2 attack; it runs with norm l2 only");
      CwOptions co;
      co.attack = options;
      co.confidence = mo.cw_confidence;
      co.initial_const = mo.cw_initial_const;
      co.lr = mo.cw_lr;
      co.binary_search_steps = mo.cw_binary_search_steps;
      co.abort_early = mo.cw_abort_early;
      AttackResult r = cw_l2(model, x, labels, co);
      if (cw_unbounded) return r;
      // A minimal-norm attack breaks an example at radius ε only if its perturbation fits in the ball.
      const std::vector<float> eps = broadcast_per_example(options.eps, x.size(0), "eps").to_vector<float>();
      const std::vector<float> norm = r.perturbation_norm.to_vector<float>();
      std::int32_t* ok = r.success.data<std::int32_t>();
      for (std::size_t i = 0; i < eps.size(); ++i)
        if (norm[i] > eps[i]) ok[i] = 0;
      return r;
    }
  }
  AEGIS_THROW(InvalidArgument, "unknown attack method " << static_cast<int>(method));
}

std::vector<std::int32_t> predict_classes(nn::Module& model, const Tensor& x, int draws) {
  AEGIS_CHECK(draws >= 1, "prediction draws " << draws << " must be at least 1");
  model.train(false);
  std::vector<std::int32_t> first =
      nn::argmax(model.forward(autograd::Var(x, false)).value()).to(Device::cpu()).to_vector<std::int32_t>();
  if (draws <= 1) return first;
  std::vector<std::map<std::int32_t, int>> counts(first.size());
  for (std::size_t i = 0; i < first.size(); ++i) ++counts[i][first[i]];
  for (int d = 1; d < draws; ++d) {
    const std::vector<std::int32_t> p =
        nn::argmax(model.forward(autograd::Var(x, false)).value()).to(Device::cpu()).to_vector<std::int32_t>();
    for (std::size_t i = 0; i < p.size(); ++i) ++counts[i][p[i]];
  }
  for (std::size_t i = 0; i < first.size(); ++i) {
    int best = 0;
    for (const auto& [cls, c] : counts[i])  // ascending class: a tie keeps the smaller
      if (c > best) {
        best = c;
        first[i] = cls;
      }
  }
  return first;
}

Evaluation evaluate(nn::Module& model, const nn::Dataset& data, Device device, std::int64_t num_classes,
                    const EvaluationOptions& options, ProgressSink* progress) {
  AEGIS_CHECK(options.batch_size >= 1, "attack batch size " << options.batch_size << " must be at least 1");
  AEGIS_CHECK(options.predict_draws >= 1, "prediction draws " << options.predict_draws << " must be at least 1");
  AEGIS_CHECK(!options.attack.targeted || num_classes >= 2,
              "a targeted attack needs a model of at least 2 classes, not " << num_classes);
  AEGIS_CHECK(
      !options.attack.targeted || (options.method != AttackMethod::ApgdT && options.method != AttackMethod::FabT &&
                                   options.method != AttackMethod::Square),
      attack_method_name(options.method) << " has no targeted variant here (apgd-t picks its own targets)");
  ProgressSink& report = progress_or_silent(progress);
  AttackOptions ao = options.attack;
  if (!has_restarts(options.method)) ao.restarts = 1;
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t n = data.size();
  Evaluation result;
  result.examples = n;
  result.robust.assign(static_cast<std::size_t>(n), 0);
  if (options.keep_adversarial) result.adversarial = Tensor::empty(data.images.shape());
  const std::int64_t d = n > 0 ? data.images.numel() / n : 0;
  std::int64_t clean_correct = 0, successes = 0;
  std::vector<double> norms;
  report.begin(std::string("attack ") + attack_method_name(options.method), n, "examples");
  for (std::int64_t b = 0; b < n; b += options.batch_size) {
    const std::int64_t e = std::min(n, b + options.batch_size);
    const Tensor x = data.images.rows(b, e).clone().to(device);
    const Tensor y = data.labels.rows(b, e).clone();
    if (ao.targeted) {
      std::vector<std::int32_t> t = y.to_vector<std::int32_t>();
      for (std::int32_t& v : t) v = static_cast<std::int32_t>((v + 1) % num_classes);
      ao.targets = Tensor::from_vector(t, {e - b});
    }
    // C&W at the command line reports any perturbation size (its norms describe them).
    const AttackResult r = run_attack(options.method, model, x, y.to(device), ao, true, options.method_options);
    const std::vector<std::int32_t> clean_pred = predict_classes(model, x, options.predict_draws);
    const std::vector<std::int32_t> adv_pred = predict_classes(model, r.adversarial, options.predict_draws);
    const std::vector<std::int32_t> label = y.to_vector<std::int32_t>();
    const std::vector<std::int32_t> success = r.success.to_vector<std::int32_t>();
    const std::vector<float> norm = r.perturbation_norm.to_vector<float>();
    for (std::int64_t i = 0; i < e - b; ++i) {
      const auto k = static_cast<std::size_t>(i);
      result.robust[static_cast<std::size_t>(b + i)] = adv_pred[k] == label[k];
      PerExampleRow row;
      row.index = b + i;
      row.label = label[k];
      row.clean_prediction = clean_pred[k];
      row.adversarial_prediction = adv_pred[k];
      row.broken_by = clean_pred[k] != label[k] ? "clean"
                      : adv_pred[k] != label[k] ? attack_method_name(options.method)
                                                : "-";
      row.perturbation_norm = norm[k];
      result.per_example.push_back(row);
      if (clean_pred[k] != label[k]) continue;
      ++clean_correct;
      if (success[k]) {
        ++successes;
        norms.push_back(norm[k]);
      }
    }
    if (options.keep_adversarial)
      std::memcpy(result.adversarial.data<float>() + b * d, r.adversarial.to(Device::cpu()).data<float>(),
                  static_cast<std::size_t>((e - b) * d) * sizeof(float));
    report.update(e, "");
  }
  report.end("");
  double mean = 0.0;
  for (double v : norms) mean += v;
  if (!norms.empty()) mean /= static_cast<double>(norms.size());
  const double total = n > 0 ? static_cast<double>(n) : 1.0;
  result.clean_accuracy = static_cast<double>(clean_correct) / total;
  result.robust_accuracy =
      static_cast<double>(std::count(result.robust.begin(), result.robust.end(), 1)) / total;
  result.attack_success_rate =
      clean_correct > 0 ? static_cast<double>(successes) / static_cast<double>(clean_correct) : 0.0;
  result.mean_perturbation_norm = mean;
  result.median_perturbation_norm = median(norms);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace aegis::attacks
