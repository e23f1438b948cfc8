// aegis attack: runs one gradient attack (or the suite of attacks/suite.h) on the first N test
// examples of a dataset against a saved model, and reports clean and robust accuracy, the attack
// success rate among the examples the model got right, and the size of successful perturbations.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "attacks/attacks.h"
#include "attacks/suite.h"
#include "options.h"
#include "core/checked_math.h"
#include "nn/functional.h"
#include "nn/model_file.h"
#include "nn/serialize.h"
#include "commands.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct AttackArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", attack, save_adv;
  float eps = -1.0f, step_size = 0.0f;
  int steps = 10, restarts = 1;
  bool targeted = false;
  std::int64_t max = 0, batch = 256;
  std::uint64_t seed = 0;
};

const char* const kAttacks[] = {"fgsm", "bim", "pgd-linf", "pgd-l2", "mifgsm", "cw-l2", "apgd-ce", "apgd-dlr", "suite"};

// C&W (Carlini & Wagner 2017) and APGD (Croce & Hein 2020) have their own option sets; --eps is
// APGD's L∞ radius, and C&W (minimal-norm, unbounded) ignores it: its success counts any
// perturbation size, which the reported norms then describe.
attacks::AttackResult run_named(const std::string& attack, const std::string& name, nn::Module& model, const Tensor& x,
                                const Tensor& y, const attacks::AttackOptions& ao) {
  if (attack == "cw-l2") {
    attacks::CwOptions co;
    co.steps = ao.steps;
    co.targeted = ao.targeted;
    co.targets = ao.targets;
    return attacks::cw_l2(model, x, y, co);
  }
  if (attack.rfind("apgd", 0) == 0) {
    attacks::ApgdOptions po;
    po.loss = attack == "apgd-dlr" ? "dlr" : "ce";
    po.eps = attacks::broadcast_per_example(ao.eps, x.size(0), "eps");
    po.steps = ao.steps;
    po.restarts = ao.restarts;
    po.targeted = ao.targeted;
    po.targets = ao.targets;
    po.seed = ao.seed;
    return attacks::apgd(model, x, y, po);
  }
  return attacks::run_attack(name, model, x, y, ao);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

nlohmann::json run_suite_command(const AttackArgs& a, nn::Module& model, const nn::Dataset& test, Device device) {
  attacks::SuiteOptions so;
  so.eps = a.eps;
  so.steps = a.steps;
  so.restarts = a.restarts;
  so.seed = a.seed;
  so.batch_size = a.batch;
  const std::int64_t total = ceil_div(test.size(), a.batch) * static_cast<std::int64_t>(so.attacks.size());
  Progress bar("suite", total, "attack-batches", !a.common.quiet);
  const attacks::SuiteResult r = attacks::run_suite(
      model, test, device, so, [&](std::int64_t done, std::int64_t) { bar.update(done); });
  bar.finish();
  nlohmann::json per = nlohmann::json::object();
  for (const auto& [name, acc] : r.per_attack) per[name] = acc;
  const double broken_correct = r.clean_accuracy - r.robust_accuracy;
  nlohmann::json j{{"clean_accuracy", r.clean_accuracy},
                   {"robust_accuracy", r.robust_accuracy},
                   {"attack_success_rate", r.clean_accuracy > 0 ? broken_correct / r.clean_accuracy : 0.0},
                   {"mean_perturbation_norm", nullptr},
                   {"median_perturbation_norm", nullptr},
                   {"per_attack", per},
                   {"warnings", r.warnings},
                   {"seconds", r.seconds}};
  if (!a.common.quiet)
    for (const std::string& w : r.warnings) std::cerr << "aegis: warning: " << w << "\n";
  return j;
}

nlohmann::json run_one(const AttackArgs& a, nn::Module& model, const nn::Dataset& test, Device device,
                       std::int64_t num_classes) {
  const std::string name = a.attack.rfind("pgd", 0) == 0 ? "pgd" : a.attack;
  attacks::AttackOptions ao;
  ao.norm = a.attack == "pgd-l2" || a.attack == "cw-l2" ? "l2" : "linf";
  ao.eps = Tensor::full({1}, a.eps);
  if (a.step_size > 0) ao.step_size = Tensor::full({1}, a.step_size);
  ao.steps = a.steps;
  ao.restarts = name == "pgd" || name.rfind("apgd", 0) == 0 ? a.restarts : 1;
  ao.seed = a.seed;
  ao.targeted = a.targeted;
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t n = test.size();
  const Shape& shape = test.images.shape();
  Tensor adversarial = a.save_adv.empty() ? Tensor() : Tensor::empty(shape);
  const std::int64_t d = n > 0 ? test.images.numel() / n : 0;
  std::int64_t clean_correct = 0, robust_correct = 0, successes = 0;
  std::vector<double> norms;
  Progress bar("attack " + a.attack, n, "examples", !a.common.quiet);
  for (std::int64_t b = 0; b < n; b += a.batch) {
    const std::int64_t e = std::min(n, b + a.batch);
    const Tensor x = test.images.rows(b, e).clone().to(device);
    const Tensor y = test.labels.rows(b, e).clone();
    if (a.targeted) {
      std::vector<std::int32_t> t = y.to_vector<std::int32_t>();
      for (std::int32_t& v : t) v = static_cast<std::int32_t>((v + 1) % num_classes);
      ao.targets = Tensor::from_vector(t, {e - b});
    }
    const attacks::AttackResult r = run_named(a.attack, name, model, x, y.to(device), ao);
    std::vector<std::int32_t> clean_pred, adv_pred;
    {
      model.train(false);
      clean_pred = nn::argmax(model.forward(autograd::Var(x, false)).value()).to(Device::cpu()).to_vector<std::int32_t>();
      adv_pred = nn::argmax(model.forward(autograd::Var(r.adversarial, false)).value())
                     .to(Device::cpu())
                     .to_vector<std::int32_t>();
    }
    const std::vector<std::int32_t> label = y.to_vector<std::int32_t>();
    const std::vector<std::int32_t> success = r.success.to_vector<std::int32_t>();
    const std::vector<float> norm = r.perturbation_norm.to_vector<float>();
    for (std::int64_t i = 0; i < e - b; ++i) {
      const auto k = static_cast<std::size_t>(i);
      robust_correct += adv_pred[k] == label[k];
      if (clean_pred[k] != label[k]) continue;
      ++clean_correct;
      if (success[k]) {
        ++successes;
        norms.push_back(norm[k]);
      }
    }
    if (adversarial.defined())
      std::memcpy(adversarial.data<float>() + b * d, r.adversarial.to(Device::cpu()).data<float>(),
                  static_cast<std::size_t>((e - b) * d) * sizeof(float));
    bar.update(e);
  }
  bar.finish();
  if (adversarial.defined())
    nn::save_safetensors(a.save_adv, {{"adversarial", adversarial}, {"labels", test.labels.clone()}},
                         {{"aegis.attack", a.attack}, {"aegis.eps", std::to_string(a.eps)}});
  double mean = 0.0;
  for (double v : norms) mean += v;
  if (!norms.empty()) mean /= static_cast<double>(norms.size());
  const double total = n > 0 ? static_cast<double>(n) : 1.0;
  return nlohmann::json{
      {"clean_accuracy", static_cast<double>(clean_correct) / total},
      {"robust_accuracy", static_cast<double>(robust_correct) / total},
      {"attack_success_rate",
       clean_correct > 0 ? static_cast<double>(successes) / static_cast<double>(clean_correct) : 0.0},
      {"mean_perturbation_norm", mean},
      {"median_perturbation_norm", median(norms)},
      {"norm", ao.norm},
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
}

}  // namespace

Runner add_attack(CLI::App& app) {
  auto a = std::make_shared<AttackArgs>();
  auto* cmd = app.add_subcommand("attack", "attack a saved model on test examples and report robust accuracy");
  cmd->add_option("--model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->data, "dataset spec, as for train")->capture_default_str();
  cmd->add_option("--attack", a->attack, "fgsm | bim | pgd-linf | pgd-l2 | mifgsm | cw-l2 | apgd-ce | apgd-dlr | suite")->required();
  cmd->add_option("--eps", a->eps, "perturbation radius in the attack's norm (inputs are in [0, 1])")
      ->required()
      ->check(non_negative(FLT_MAX));
  cmd->add_option("--steps", a->steps, "iterations of iterative attacks")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_option("--step-size", a->step_size, "step size (default: the attack's own, from eps and steps)")
      ->check(positive(FLT_MAX));
  cmd->add_option("--restarts", a->restarts, "PGD random restarts")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_flag("--targeted", a->targeted, "targeted attack with target (label + 1) mod K");
  cmd->add_option("--max", a->max, "attack only the first N test examples (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cmd->add_option("--seed", a->seed, "seed of random starts")->capture_default_str()->check(seed_value());
  cmd->add_option("--batch", a->batch, "examples per attack batch")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--save-adv", a->save_adv, "write the adversarial examples and labels here (safetensors)");
  add_common_options(*cmd, a->common);
  return [a]() {
    AEGIS_CHECK(std::find(std::begin(kAttacks), std::end(kAttacks), a->attack) != std::end(kAttacks),
                "unknown attack '" << a->attack << "' (one of fgsm, bim, pgd-linf, pgd-l2, mifgsm, cw-l2, apgd-ce, apgd-dlr, suite)");
    AEGIS_CHECK(std::isfinite(a->eps) && a->eps >= 0.0f, "eps " << a->eps << " must be ≥ 0 and finite");
    AEGIS_CHECK(a->steps >= 1, "steps " << a->steps << " must be at least 1");
    AEGIS_CHECK(std::isfinite(a->step_size) && a->step_size >= 0.0f, "step size " << a->step_size << " must be > 0");
    AEGIS_CHECK(a->restarts >= 1, "restarts " << a->restarts << " must be at least 1");
    AEGIS_CHECK(a->max >= 0, "--max " << a->max << " must be ≥ 0");
    AEGIS_CHECK(a->batch >= 1, "batch " << a->batch << " must be at least 1");
    AEGIS_CHECK(!(a->targeted && a->attack == "suite"), "--targeted does not apply to the suite");
    AEGIS_CHECK(a->save_adv.empty() || a->attack != "suite", "--save-adv needs a single attack, not the suite");
    const Device device = resolve_device(a->common);
    nn::LoadedClassifier loaded = nn::load_classifier(a->model);
    const nn::DatasetSplit split = nn::load_dataset(a->data, data_dir_hint(a->common));
    check_data_fits(split.test, loaded.spec, a->model, a->data);
    const nn::Dataset test = first_examples(split.test, a->max);
    loaded.model->to(device);
    nlohmann::json j = a->attack == "suite" ? run_suite_command(*a, *loaded.model, test, device)
                                            : run_one(*a, *loaded.model, test, device, loaded.spec.num_classes);
    j["command"] = "attack";
    j["attack"] = a->attack;
    j["eps"] = a->eps;
    j["steps"] = a->steps;
    j["restarts"] = a->restarts;
    j["targeted"] = a->targeted;
    j["examples"] = test.size();
    j["model_file"] = a->model;
    j["model"] = loaded.spec.name;
    j["dataset"] = a->data;
    j["device"] = device.str();
    if (!a->save_adv.empty()) j["save_adv"] = a->save_adv;
    if (a->common.json) {
      std::cout << j.dump() << std::endl;
      return 0;
    }
    std::printf("%s on %s, %s eps %g (%lld examples): clean accuracy %.4f, robust accuracy %.4f, attack success "
                "rate %.4f, %.1f s\n",
                a->attack.c_str(), a->data.c_str(), a->model.c_str(), static_cast<double>(a->eps),
                static_cast<long long>(test.size()), j["clean_accuracy"].get<double>(),
                j["robust_accuracy"].get<double>(), j["attack_success_rate"].get<double>(),
                j["seconds"].get<double>());
    if (j.contains("per_attack"))
      for (const auto& [name, acc] : j["per_attack"].items())
        std::printf("  %-8s robust accuracy %.4f\n", name.c_str(), acc.get<double>());
    return 0;
  };
}

}  // namespace aegis::app
