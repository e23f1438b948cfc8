// aegis account: the (ε, δ) that DP-SGD spends for given hyperparameters, or the noise
// multiplier that meets a target ε.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "options.h"
#include "privacy/accountant.h"
#include "privacy/dp_train.h"
#include "core/error.h"

namespace aegis::app {

namespace {

// Numbers are taken as text and parsed here, so that a bad value is an `aegis: error:` naming
// the option, and an integer beyond 2^63 is an error rather than a saturated number.
struct AccountArgs {
  std::string sampling_rate, noise_multiplier, target_epsilon, steps, delta;
  std::string epochs, batch_size, dataset_size, eps_error, delta_error;
  std::vector<std::string> phases;
  std::string accountant = "rdp";
  bool json = false;
};

double parse_real(const std::string& option, const std::string& text) {
  double v = 0.0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  AEGIS_CHECK(ec == std::errc() && ptr == end && std::isfinite(v),
              option << " '" << text << "' is not a finite number");
  return v;
}

// Integers, also written as 1e5; anything not an integer in [−2^63, 2^63) is an error.
std::int64_t parse_count(const std::string& option, const std::string& text) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec == std::errc() && ptr == end) return v;
  AEGIS_CHECK(ec != std::errc::result_out_of_range, option << " " << text << " is out of range (at most 2^63 - 1)");
  const double d = parse_real(option, text);
  AEGIS_CHECK(d == std::floor(d), option << " " << text << " is not an integer");
  AEGIS_CHECK(std::fabs(d) < 9223372036854775808.0, option << " " << text << " is out of range (at most 2^63 - 1)");
  return static_cast<std::int64_t>(d);
}

// --phase q,sigma,T.
privacy::SgmPhase parse_phase(const std::string& text) {
  const auto c1 = text.find(','), c2 = c1 == std::string::npos ? c1 : text.find(',', c1 + 1);
  AEGIS_CHECK(c2 != std::string::npos && text.find(',', c2 + 1) == std::string::npos,
              "--phase '" << text << "' must be sampling_rate,noise_multiplier,steps");
  privacy::SgmPhase p;
  p.sampling_rate = parse_real("--phase sampling rate", text.substr(0, c1));
  p.noise_multiplier = parse_real("--phase noise multiplier", text.substr(c1 + 1, c2 - c1 - 1));
  p.steps = parse_count("--phase steps", text.substr(c2 + 1));
  return p;
}

// Sampling rate and steps from --epochs, --batch-size and --dataset-size as training computes them.
void steps_from_epochs(const AccountArgs& a, nlohmann::json& j, double& q, std::int64_t& steps) {
  const std::int64_t epochs = parse_count("--epochs", a.epochs), batch = parse_count("--batch-size", a.batch_size),
                     n = parse_count("--dataset-size", a.dataset_size);
  AEGIS_CHECK(n >= 1, "--dataset-size " << n << " must be positive");
  AEGIS_CHECK(batch >= 1 && batch <= n, "--batch-size " << batch << " must be in [1, dataset size " << n << "]");
  AEGIS_CHECK(epochs >= 0, "--epochs " << epochs << " must be non-negative");
  q = static_cast<double>(batch) / static_cast<double>(n);
  const std::int64_t per_epoch = privacy::dp_steps_per_epoch(q);
  AEGIS_CHECK(epochs <= std::numeric_limits<std::int64_t>::max() / per_epoch,
              "--epochs " << epochs << " × " << per_epoch << " steps per epoch is out of range (at most 2^63 - 1)");
  steps = epochs * per_epoch;
  j["epochs"] = epochs;
  j["batch_size"] = batch;
  j["dataset_size"] = n;
}

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
  if (j.contains("phases"))
    for (const auto& p : j["phases"])
      std::printf("phase: %lld steps at sampling rate %g with noise multiplier %.6g\n",
                  static_cast<long long>(p["steps"].get<std::int64_t>()), p["sampling_rate"].get<double>(),
                  p["noise_multiplier"].get<double>());
  else
    std::printf("for %lld steps at sampling rate %g with noise multiplier %.6g\n",
                static_cast<long long>(j["steps"].get<std::int64_t>()), j["sampling_rate"].get<double>(),
                j["noise_multiplier"].get<double>());
}

int run_account(const AccountArgs& a) {
  const bool has_noise = !a.noise_multiplier.empty(), has_target = !a.target_epsilon.empty();
  const bool has_rate = !a.sampling_rate.empty() || !a.steps.empty();
  const bool has_epochs = !a.epochs.empty() || !a.batch_size.empty() || !a.dataset_size.empty();
  AEGIS_CHECK(!a.delta.empty(), "--delta is required");
  const privacy::Accountant accountant = privacy::parse_accountant(a.accountant);
  nlohmann::json j{{"command", "account"}, {"accountant", a.accountant}, {"delta", parse_real("--delta", a.delta)}};
  const double delta = j["delta"].get<double>();
  privacy::PrvAccuracy accuracy;
  if (!a.eps_error.empty()) accuracy.eps_error = parse_real("--eps-error", a.eps_error);
  if (!a.delta_error.empty()) accuracy.delta_error = parse_real("--delta-error", a.delta_error);

  std::vector<privacy::SgmPhase> phases;
  if (!a.phases.empty()) {
    AEGIS_CHECK(!has_noise && !has_target && !has_rate && !has_epochs,
                "--phase describes the whole run: give it without --sampling-rate, --steps, --epochs, --batch-size, "
                "--dataset-size, --noise-multiplier and --target-epsilon");
    std::int64_t total = 0;
    for (const std::string& text : a.phases) {
      phases.push_back(parse_phase(text));
      privacy::check_phases({phases.back()});
      AEGIS_CHECK(phases.back().steps <= std::numeric_limits<std::int64_t>::max() - total,
                  "--phase steps add up beyond 2^63 - 1");
      total += phases.back().steps;
      j["phases"].push_back({{"sampling_rate", phases.back().sampling_rate},
                             {"noise_multiplier", phases.back().noise_multiplier},
                             {"steps", phases.back().steps}});
    }
    j["steps"] = total;
  } else {
    AEGIS_CHECK(has_noise != has_target,
                "give exactly one of --noise-multiplier (to compute epsilon) and --target-epsilon (to calibrate the "
                "noise multiplier), or the whole run as --phase q,sigma,T");
    AEGIS_CHECK(has_rate != has_epochs,
                "give either --sampling-rate and --steps, or --epochs, --batch-size and "
                "--dataset-size");
    double q = 0.0;
    std::int64_t steps = 0;
    if (has_rate) {
      AEGIS_CHECK(!a.sampling_rate.empty() && !a.steps.empty(), "--sampling-rate and --steps go together");
      q = parse_real("--sampling-rate", a.sampling_rate);
      steps = parse_count("--steps", a.steps);
    } else {
      AEGIS_CHECK(!a.epochs.empty() && !a.batch_size.empty() && !a.dataset_size.empty(),
                  "--epochs, --batch-size and --dataset-size go together");
      steps_from_epochs(a, j, q, steps);
    }
    double sigma = has_noise ? parse_real("--noise-multiplier", a.noise_multiplier) : 0.0;
    if (has_target) {
      const double target = parse_real("--target-epsilon", a.target_epsilon);
      sigma = privacy::calibrate_noise_multiplier(accountant, target, q, steps, delta, 1e-3, accuracy);
      j["target_epsilon"] = target;
    }
    phases.push_back({sigma, q, steps});
    j["sampling_rate"] = q;
    j["steps"] = steps;
    j["noise_multiplier"] = sigma;
  }
  const privacy::EpsilonResult r = privacy::compute_epsilon(accountant, phases, delta, accuracy);
  j["epsilon"] = r.epsilon;
  if (r.accountant == privacy::Accountant::Prv) {
    j["epsilon_estimate"] = r.epsilon_estimate;
    j["epsilon_lower"] = r.epsilon_lower;
    j["epsilon_upper"] = r.epsilon_upper;
    j["eps_error"] = r.eps_error;
    j["delta_error"] = r.delta_error;
  } else {
    j["best_order"] = r.best_order;
    const std::vector<double> orders = privacy::default_rdp_orders();
    if (r.best_order > 0.0 && (r.best_order == orders.front() || r.best_order == orders.back()))
      std::cerr << "aegis: warning: the best RDP order " << r.best_order << " is at the edge of the order grid ["
                << orders.front() << ", " << orders.back() << "]; orders beyond it might give a smaller epsilon\n";
  }
  if (a.json)
    std::cout << j.dump() << std::endl;
  else
    print_human(j);
  return 0;
}

}  // namespace

Runner add_account(CLI::App& app) {
  auto a = std::make_shared<AccountArgs>();
  auto* cmd = app.add_subcommand("account", "privacy spent by DP-SGD (epsilon), or the noise for a target epsilon");
  // The values of the single-phase form are checked as they are parsed (apps/options.h), like every
  // other command's; --phase, --epochs and the accuracy options are parsed in run_account.
  cmd->add_option("--sampling-rate", a->sampling_rate, "probability q that an example is in a batch, in (0, 1]")
      ->check(unit_open_closed());
  cmd->add_option("--steps", a->steps, "number of DP-SGD steps")->check(integer_in(0, kMaxDpSteps));
  cmd->add_option("--epochs", a->epochs, "with --batch-size and --dataset-size instead of --sampling-rate and --steps");
  cmd->add_option("--batch-size", a->batch_size, "expected batch size B: q = B/N");
  cmd->add_option("--dataset-size", a->dataset_size, "number of training examples N; steps = epochs × round(N/B)");
  cmd->add_option("--noise-multiplier", a->noise_multiplier,
                  "noise standard deviation / clipping norm (sigma); or give --target-epsilon")
      ->check(positive());
  cmd->add_option("--target-epsilon", a->target_epsilon,
                  "print the smallest noise multiplier whose epsilon is at most this")
      ->check(positive());
  cmd->add_option("--phase", a->phases,
                  "q,sigma,T: T steps at sampling rate q with noise multiplier sigma; repeat for a schedule")
      ->expected(1)
      ->take_all();
  cmd->add_option("--delta", a->delta, "target delta, in (0, 1)")->check(open_unit());
  cmd->add_option("--accountant", a->accountant, "rdp | prv")->capture_default_str()->check(one_of({"rdp", "prv"}));
  cmd->add_option("--eps-error", a->eps_error, "prv: the accuracy eps_error (default 0.01)");
  cmd->add_option("--delta-error", a->delta_error, "prv: the accuracy delta_error (default delta/1000)");
  cmd->add_flag("--json", a->json, "print one JSON object with the results on stdout");
  return [a]() { return run_account(*a); };
}

}  // namespace aegis::app
