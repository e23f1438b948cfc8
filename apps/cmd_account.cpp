// aegis account: the (ε, δ) that DP-SGD spends for given hyperparameters, or the noise
// multiplier that meets a target ε.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "options.h"
#include "privacy/accountant.h"
#include "runtime/error.h"

namespace aegis::app {

namespace {

struct AccountArgs {
  double sampling_rate = 0.0;
  double noise_multiplier = 0.0;
  double target_epsilon = 0.0;
  std::int64_t steps = 0;
  double delta = 0.0;
  std::string accountant = "rdp";
  bool json = false;
  CLI::Option* noise_option = nullptr;
  CLI::Option* target_option = nullptr;
};

void print_human(const nlohmann::json& j) {
  const std::string acc = j["accountant"].get<std::string>();
  if (j.contains("target_epsilon"))
    std::printf("noise multiplier %.6g gives epsilon %.4f <= %g at delta %g (%s)\n",
                j["noise_multiplier"].get<double>(), j["epsilon"].get<double>(), j["target_epsilon"].get<double>(),
                j["delta"].get<double>(), acc.c_str());
  else if (acc == "prv")
    std::printf("epsilon %.4f at delta %g (prv: estimate %.4f, true epsilon in [%.4f, %.4f])\n",
                j["epsilon"].get<double>(), j["delta"].get<double>(), j["epsilon_estimate"].get<double>(),
                j["epsilon_lower"].get<double>(), j["epsilon_upper"].get<double>());
  else
    std::printf("epsilon %.4f at delta %g (rdp, best order %g)\n", j["epsilon"].get<double>(), j["delta"].get<double>(),
                j["best_order"].get<double>());
  std::printf("for %lld steps at sampling rate %g with noise multiplier %.6g\n",
              static_cast<long long>(j["steps"].get<std::int64_t>()), j["sampling_rate"].get<double>(),
              j["noise_multiplier"].get<double>());
}

}  // namespace

Runner add_account(CLI::App& app) {
  auto a = std::make_shared<AccountArgs>();
  auto* cmd = app.add_subcommand("account", "privacy spent by DP-SGD (epsilon), or the noise for a target epsilon");
  cmd->add_option("--sampling-rate", a->sampling_rate, "probability q that an example is in a batch, in (0, 1]")
      ->required()
      ->check(unit_open_closed());
  a->noise_option = cmd->add_option("--noise-multiplier", a->noise_multiplier,
                                    "noise standard deviation / clipping norm (sigma); or give --target-epsilon")
                        ->check(positive());
  a->target_option = cmd->add_option("--target-epsilon", a->target_epsilon,
                                     "print the smallest noise multiplier whose epsilon is at most this")
                         ->check(positive());
  cmd->add_option("--steps", a->steps, "number of DP-SGD steps (0 gives epsilon 0)")
      ->required()
      ->check(integer_in(0, kMaxDpSteps));
  cmd->add_option("--delta", a->delta, "target delta, in (0, 1)")->required()->check(open_unit());
  cmd->add_option("--accountant", a->accountant, "rdp | prv")->capture_default_str();
  cmd->add_flag("--json", a->json, "print one JSON object with the results on stdout");
  return [a]() {
    const bool has_noise = a->noise_option->count() > 0, has_target = a->target_option->count() > 0;
    AEGIS_CHECK(has_noise != has_target,
                "give exactly one of --noise-multiplier (to compute epsilon) and --target-epsilon (to calibrate the "
                "noise multiplier)");
    nlohmann::json j{{"command", "account"},
                     {"accountant", a->accountant},
                     {"delta", a->delta},
                     {"sampling_rate", a->sampling_rate},
                     {"steps", a->steps}};
    double sigma = a->noise_multiplier;
    if (has_target) {
      sigma =
          privacy::calibrate_noise_multiplier(a->accountant, a->target_epsilon, a->sampling_rate, a->steps, a->delta);
      j["target_epsilon"] = a->target_epsilon;
    }
    const privacy::EpsilonResult r =
        privacy::compute_epsilon(a->accountant, {{sigma, a->sampling_rate, a->steps}}, a->delta);
    j["noise_multiplier"] = sigma;
    j["epsilon"] = r.epsilon;
    if (r.accountant == "prv") {
      j["epsilon_estimate"] = r.epsilon_estimate;
      j["epsilon_lower"] = r.epsilon_lower;
      j["epsilon_upper"] = r.epsilon_upper;
    } else {
      j["best_order"] = r.best_order;
    }
    if (a->json)
      std::cout << j.dump() << std::endl;
    else
      print_human(j);
    return 0;
  };
}

}  // namespace aegis::app
