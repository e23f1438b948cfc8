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
#include "attacks/evaluate.h"
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

// The names --attack takes: an attack method and its norm (pgd-linf, pgd-l2), or the suite.
struct CliAttack {
  const char* name;
  attacks::AttackMethod method;
  Norm norm;
};
constexpr CliAttack kAttacks[] = {{"fgsm", attacks::AttackMethod::Fgsm, Norm::Linf},
                                  {"bim", attacks::AttackMethod::Bim, Norm::Linf},
                                  {"pgd-linf", attacks::AttackMethod::Pgd, Norm::Linf},
                                  {"pgd-l2", attacks::AttackMethod::Pgd, Norm::L2},
                                  {"mifgsm", attacks::AttackMethod::Mifgsm, Norm::Linf},
                                  {"cw-l2", attacks::AttackMethod::CwL2, Norm::L2},
                                  {"apgd-ce", attacks::AttackMethod::ApgdCe, Norm::Linf},
                                  {"apgd-dlr", attacks::AttackMethod::ApgdDlr, Norm::Linf}};

const CliAttack& cli_attack(const std::string& name) {
  for (const CliAttack& c : kAttacks)
    if (name == c.name) return c;
  AEGIS_THROW(InvalidArgument, "unknown attack '" << name
                                                  << "' (one of fgsm, bim, pgd-linf, pgd-l2, mifgsm, cw-l2, apgd-ce, "
                                                     "apgd-dlr, suite)");
}

nlohmann::json run_suite_command(const AttackArgs& a, nn::Module& model, const nn::Dataset& test, Device device) {
  attacks::SuiteOptions so;
  so.eps = a.eps;
  so.steps = a.steps;
  so.restarts = a.restarts;
  so.seed = a.seed;
  so.batch_size = a.batch;
  CliProgress progress(!a.common.quiet);
  const attacks::SuiteResult r = attacks::run_suite(model, test, device, so, &progress);
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
  const CliAttack& c = cli_attack(a.attack);
  attacks::EvaluationOptions o;
  o.method = c.method;
  o.attack.norm = c.norm;
  o.attack.eps = Tensor::full({1}, a.eps);
  if (a.step_size > 0) o.attack.step_size = Tensor::full({1}, a.step_size);
  o.attack.steps = a.steps;
  o.attack.restarts = a.restarts;
  o.attack.seed = a.seed;
  o.attack.targeted = a.targeted;
  o.batch_size = a.batch;
  o.keep_adversarial = !a.save_adv.empty();
  CliProgress progress(!a.common.quiet);
  const attacks::Evaluation r = attacks::evaluate(model, test, device, num_classes, o, &progress);
  if (!a.save_adv.empty())
    nn::save_safetensors(a.save_adv, {{"adversarial", r.adversarial}, {"labels", test.labels.clone()}},
                         {{"aegis.attack", a.attack}, {"aegis.eps", std::to_string(a.eps)}});
  return nlohmann::json{{"clean_accuracy", r.clean_accuracy},
                        {"robust_accuracy", r.robust_accuracy},
                        {"attack_success_rate", r.attack_success_rate},
                        {"mean_perturbation_norm", r.mean_perturbation_norm},
                        {"median_perturbation_norm", r.median_perturbation_norm},
                        {"norm", norm_name(c.norm)},
                        {"seconds", r.seconds}};
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
    if (a->attack != "suite") cli_attack(a->attack);  // an unknown name fails before any work
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
