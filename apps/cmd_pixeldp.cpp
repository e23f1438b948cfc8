// aegis pixeldp train | certify: PixelDP (Lecuyer et al. 2019). `train` builds a zoo model with
// a noise layer at position 0, 1 or 2, calibrated for (ε, δ, L), and trains it with the noise in
// place and the pre-noise layers projected to operator norm ≤ 1 after every step. `certify`
// reports, on the first N test examples, the conventional accuracy of the Monte Carlo expected
// scores, the certified accuracy at each threshold T, and, with --attack cw-l2, the accuracy under
// Carlini–Wagner L2 attacks on the expected scores (certify/pixeldp_run.h).
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "certify/pixeldp_job.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct PixelDpTrainArgs {
  CommonOptions common;
  std::string data = "fashion-mnist", model = "cnn-fmnist", activation = "relu", norm = "l2";
  std::string out = "pixeldp.safetensors";
  int position = 0;
  double L = 0.1, eps = 1.0, delta = 0.05;
  nn::TrainOptions train;
  int power_iterations = 2;
  std::int64_t max_train = 0;
  PixelDpTrainArgs() {
    train.epochs = 3;
    train.batch_size = 128;
    train.lr = 0.002f;
    train.optimizer = nn::OptimizerKind::Adam;
    train.schedule = nn::ScheduleKind::Cosine;
  }
};

struct PixelDpCertifyArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", bound = "hoeffding", thresholds = "0.05,0.1,0.2,0.3,0.5", attack = "none";
  std::int64_t draws = 300, max = 0, batch = 1000, attack_max = 100, attack_batch = 50;
  double confidence = 0.95;
  std::uint64_t seed = 0;
  // The CW-L2 attack on the expected scores; defaults as certify::PixelDpAttackOptions.
  std::int64_t attack_draws = 10;
  int cw_steps = 30, cw_search_steps = 4;
  float cw_const = 1.0f, cw_lr = 0.1f, cw_confidence = 0.5f;
};

std::vector<double> parse_thresholds(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    std::size_t used = 0;
    double v = std::numeric_limits<double>::quiet_NaN();
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    AEGIS_CHECK(used > 0 && used == item.size() && std::isfinite(v) && v >= 0.0,
                "--thresholds: '" << item << "' is not a number ≥ 0 (expected a list such as 0.1,0.2,0.5)");
    out.push_back(v);
  }
  AEGIS_CHECK(!out.empty(), "--thresholds '" << text << "' lists no threshold");
  return out;
}

int run_train(const PixelDpTrainArgs& a) {
  certify::PixelDpTrainJob job;
  job.model = a.model;
  job.activation = a.activation;
  job.position = a.position;
  job.params.norm = certify::parse_pixeldp_norm(a.norm);
  job.params.eps = a.eps;
  job.params.delta = a.delta;
  job.params.L = a.L;
  job.options.train = a.train;
  job.options.train.device = resolve_device(a.common);
  job.options.power_iterations = a.power_iterations;
  job.max_train = a.max_train;
  job.out = a.out;
  job.dataset = a.data;
  certify::check_pixeldp_params(job.params);  // before the data is read
  const nn::DatasetSplit split = nn::load_dataset(a.data, data_dir_hint(a.common));
  CliProgress progress(!a.common.quiet);
  nlohmann::json j = certify::to_json(certify::run_pixeldp_training(job, split, &progress));
  j["command"] = "pixeldp train";
  return print_result(j, a.common.json, [](const nlohmann::json& r) {
    std::printf(
        "pixeldp %s position %d, L %g, eps %g: sigma %.4f, sensitivity %.4f (bound %.4f); train acc %.4f, "
        "test acc (one draw) %.4f, %.1f s -> %s\n",
        r["norm"].get<std::string>().c_str(), r["position"].get<int>(), r["L"].get<double>(), r["eps"].get<double>(),
        r["sigma"].get<double>(), r["sensitivity"].get<double>(), r["sensitivity_bound"].get<double>(),
        r["train_accuracy"].get<double>(), r["test_accuracy_one_draw"].get<double>(), r["train_seconds"].get<double>(),
        r["out"].get<std::string>().c_str());
  });
}

int run_certify(const PixelDpCertifyArgs& a) {
  certify::PixelDpCertifyJob job;
  job.model_file = a.model;
  job.dataset = a.data;
  job.max = a.max;
  job.seed = a.seed;
  certify::PixelDpRunOptions& o = job.options;
  o.certify.draws = a.draws;
  o.certify.confidence = a.confidence;
  o.certify.bound = certify::parse_bound_kind(a.bound);
  o.certify.batch = a.batch;
  o.thresholds = parse_thresholds(a.thresholds);
  if (a.attack == "cw-l2") {
    certify::PixelDpAttackOptions attack;
    attack.max = a.attack_max;
    attack.batch = a.attack_batch;
    attack.draws = a.attack_draws;
    attack.cw.attack.steps = a.cw_steps;
    attack.cw.binary_search_steps = a.cw_search_steps;
    attack.cw.initial_const = a.cw_const;
    attack.cw.lr = a.cw_lr;
    attack.cw.confidence = a.cw_confidence;
    o.attack = attack;
  }
  job.data_dir = data_dir_hint(a.common);
  job.device = resolve_device(a.common);
  CliProgress progress(!a.common.quiet);
  const certify::PixelDpCertifyReport r = certify::run_pixeldp_certify_file(job, &progress);
  nlohmann::json j = certify::to_json(r);
  j["command"] = "pixeldp certify";
  return print_result(j, a.common.json, [&](const nlohmann::json&) {
    std::printf(
        "pixeldp certify %s on %s (%lld examples, %lld draws, %s %.2f): conventional accuracy %.4f, mean "
        "robustness size %.4f\n",
        a.model.c_str(), a.data.c_str(), static_cast<long long>(r.examples), static_cast<long long>(r.draws),
        r.bound.c_str(), r.confidence, r.run.conventional_accuracy, r.run.mean_robustness_size);
    for (std::size_t k = 0; k < r.thresholds.size(); ++k) {
      std::printf("  T = %-6g certified accuracy %.4f", r.thresholds[k], r.run.certified_accuracy[k]);
      if (r.run.attack) std::printf("   accuracy under CW-L2 %.4f", r.run.attack->accuracy_at[k]);
      std::printf("\n");
    }
  });
}

}  // namespace

Runner add_pixeldp(CLI::App& app) {
  auto* cmd = app.add_subcommand("pixeldp", "PixelDP (Lecuyer et al. 2019): train with a noise layer, certify");
  cmd->require_subcommand(1);

  auto t = std::make_shared<PixelDpTrainArgs>();
  auto* train = cmd->add_subcommand("train", "train a PixelDP network and write its model file");
  train->add_option("--data", t->data, "fashion-mnist | fashion-mnist:DIR | mnist:DIR | digits")->capture_default_str();
  train->add_option("--model", t->model, "zoo model: mlp | cnn-fmnist | lenet-2conv")->capture_default_str();
  train->add_option("--activation", t->activation, "relu | tanh | sigmoid")->capture_default_str();
  train->add_option("--position", t->position, "noise layer: 0 input, 1/2 after the first/second layer")
      ->capture_default_str()
      ->check(integer_in(0, 2));
  train->add_option("--L", t->L, "construction attack bound L")->capture_default_str()->check(positive());
  train->add_option("--eps", t->eps, "epsilon (≤ 1 for l2)")->capture_default_str()->check(positive());
  train->add_option("--delta", t->delta, "delta (l2 only)")->capture_default_str()->check(open_unit());
  train->add_option("--norm", t->norm, "attack norm: l2 (Gaussian noise) | l1 (Laplace noise)")->capture_default_str();
  train->add_option("--epochs", t->train.epochs)->capture_default_str()->check(integer_in(1, kMaxEpochs));
  train->add_option("--batch-size", t->train.batch_size)->capture_default_str()->check(integer_in(1, kMaxBatch));
  train->add_option("--lr", t->train.lr)->capture_default_str()->check(positive(FLT_MAX));
  add_optimizer_option(train, t->train);
  train->add_option("--momentum", t->train.momentum, "sgd only")
      ->capture_default_str()
      ->check(real_in(0.0, 1.0, false, true));
  add_schedule_option(train, t->train);
  train->add_option("--seed", t->train.seed, "initialization, data order and training noise")
      ->capture_default_str()
      ->check(seed_value());
  train->add_option("--power-iterations", t->power_iterations, "power-iteration steps per training step (l2)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  train->add_option("--max-train", t->max_train, "train on the first N examples only (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  train->add_option("--out", t->out, "model file to write")->capture_default_str();
  add_common_options(*train, t->common);

  auto c = std::make_shared<PixelDpCertifyArgs>();
  auto* cert =
      cmd->add_subcommand("certify", "accuracy, certified accuracy and accuracy under attack of a PixelDP model");
  cert->add_option("--model", c->model, "model file written by `aegis pixeldp train`")->required();
  cert->add_option("--data", c->data, "dataset spec, as for train")->capture_default_str();
  cert->add_option("--draws", c->draws, "noise draws per input (n)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxSamples));
  cert->add_option("--confidence", c->confidence, "confidence eta of the bounds")
      ->capture_default_str()
      ->check(open_unit());
  cert->add_option("--bound", c->bound, "hoeffding | bernstein")
      ->capture_default_str()
      ->check(one_of({"hoeffding", "bernstein"}));
  cert->add_option("--thresholds", c->thresholds, "comma-separated robustness sizes T")->capture_default_str();
  cert->add_option("--max", c->max, "first N test examples (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cert->add_option("--batch", c->batch, "noisy rows per forward pass")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cert->add_option("--seed", c->seed, "seed of the certification noise")->capture_default_str()->check(seed_value());
  cert->add_option("--attack", c->attack, "none | cw-l2")->capture_default_str()->check(one_of({"none", "cw-l2"}));
  cert->add_option("--attack-max", c->attack_max, "attack the first N of the examples")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  cert->add_option("--attack-batch", c->attack_batch, "examples per attack batch")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cert->add_option("--attack-draws", c->attack_draws, "noise draws per attack step (expected scores)")
      ->capture_default_str()
      ->check(integer_in(1, 10000));  // the attack holds attack-batch × draws noisy inputs at once
  cert->add_option("--cw-steps", c->cw_steps, "Adam steps per binary-search step")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cert->add_option("--cw-search-steps", c->cw_search_steps, "binary-search steps over c")
      ->capture_default_str()
      ->check(integer_in(1, 1000));
  cert->add_option("--cw-const", c->cw_const, "initial c")->capture_default_str()->check(positive(FLT_MAX));
  cert->add_option("--cw-lr", c->cw_lr, "Adam step size")->capture_default_str()->check(positive(FLT_MAX));
  cert->add_option("--cw-confidence", c->cw_confidence, "margin kappa in log expected scores")
      ->capture_default_str()
      ->check(non_negative(FLT_MAX));
  add_common_options(*cert, c->common);

  return [train, cert, t, c]() {
    if (train->parsed()) return run_train(*t);
    if (cert->parsed()) return run_certify(*c);
    return 0;
  };
}

}  // namespace aegis::app
