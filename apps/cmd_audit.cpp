// aegis audit mia: membership inference (loss attack, LiRA, RMIA) against a recipe, with shadow models
// trained by aegis itself (privacy/audit_mia.h).
// aegis audit dp: the one-run (or with --runs, many-run) empirical-ε audit of DP-SGD with gradient or input canaries
// (privacy/audit_dp.h); exit status 3 with --strict when the audit fails.
// aegis audit invert: MI-Face model inversion of a model file, compared with the class means of
// the training data (privacy/audit_invert.h).
#include <cfloat>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/mpi.h"
#include "options.h"
#include "privacy/audit_dp.h"
#include "privacy/audit_invert.h"
#include "privacy/audit_mia.h"
#include "progress.h"
#include "train_run.h"

namespace aegis::app {

namespace {

struct AuditArgs {
  CommonOptions common;
  std::string data = "digits", model = "mlp", activation;
  nn::TrainOptions train = default_train();
  privacy::DpTrainOptions dp;
  bool use_dp = false;
  // mia
  std::int64_t shadows = 16, pool = 0;
  std::string out_dir, roc_plot;
  std::vector<std::string> attacks = {"loss", "lira", "rmia"};
  std::int64_t augment = 1, population = 0;
  privacy::RmiaOptions rmia;
  // dp
  privacy::DpAuditOptions audit;
  std::string scores_out, model_out = "audit-dp.safetensors", canary = "gradient", runs_dir;
  bool strict = false;
  std::uint64_t audit_seed = 0;

  // Small enough that the bundled digits set audits in seconds: mlp, 2 epochs, Adam.
  static nn::TrainOptions default_train() {
    nn::TrainOptions t;
    t.epochs = 2;
    t.batch_size = 64;
    t.lr = 0.002f;
    t.optimizer = nn::OptimizerKind::Adam;
    return t;
  }
};

void add_recipe_options(CLI::App* cmd, AuditArgs& a) {
  add_common_options(*cmd, a.common);
  cmd->add_option("--data", a.data, "dataset spec, as for train (its training split is the pool)")
      ->capture_default_str();
  cmd->add_option("--model", a.model, "mlp | cnn-fmnist | lenet-2conv | resnet20 | cnn-res | scatter-linear")
      ->capture_default_str();
  cmd->add_option("--activation", a.activation, "relu | tanh | sigmoid (default: the model's own)");
  cmd->add_option("--epochs", a.train.epochs, "passes over each model's training set")
      ->capture_default_str()
      ->check(integer_in(1, kMaxEpochs));
  cmd->add_option("--batch-size", a.train.batch_size, "examples per step (DP: the expected batch size)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--lr", a.train.lr, "learning rate")->capture_default_str()->check(positive(FLT_MAX));
  add_optimizer_option(cmd, a.train);
  cmd->add_option("--momentum", a.train.momentum, "sgd momentum")
      ->capture_default_str()
      ->check(real_in(0.0, 1.0, false, true));
  add_schedule_option(cmd, a.train);
  cmd->add_option("--seed", a.train.seed, "training seed (of the target; shadow k uses seed + k)")
      ->capture_default_str()
      ->check(seed_value());
  add_dp_noise_options(cmd, a.dp);
}

nn::TrainJob recipe(const AuditArgs& a) {
  nn::TrainJob job;
  job.model = a.model;
  job.activation = a.activation;
  job.train = a.train;
  job.train.device = resolve_device(a.common);
  job.dataset = a.data;
  return job;
}

void check_dp_recipe(const AuditArgs& a) {
  AEGIS_CHECK(a.dp.noise.noise_multiplier > 0.0 || a.dp.target_epsilon > 0.0,
              "a DP recipe needs --noise-multiplier or --target-epsilon");
}

const char* const kDpOptions[] = {"--noise-multiplier", "--target-epsilon", "--delta",
                                  "--max-grad-norm",    "--sampling-rate",  "--accountant"};

nlohmann::json run_mia(const AuditArgs& a, const CLI::App& cmd) {
  privacy::MiaJob j;
  j.job = recipe(a);
  if (a.use_dp) {
    check_dp_recipe(a);
    j.dp = a.dp;
  } else {
    for (const char* name : kDpOptions)
      AEGIS_CHECK(cmd.count(name) == 0, name << " sets the DP recipe: add --dp, or leave it out");
  }
  j.shadows = a.shadows;
  j.pool = a.pool;
  j.seed = a.audit_seed;
  j.out_dir = a.out_dir;
  j.roc_plot = a.roc_plot;
  j.attacks = a.attacks;
  j.augment = a.augment;
  j.population = a.population;
  j.rmia = a.rmia;
  AEGIS_CHECK(!(a.rmia.fit_a && cmd.count("--rmia-a") > 0), "--rmia-fit-a fits a: leave out --rmia-a, or the fit");
  const nn::DatasetSplit split = nn::load_dataset(a.data, data_dir_hint(a.common));
  CliProgress progress(!a.common.quiet && mpi::world().rank == 0);  // under mpirun, rank 0 reports
  return privacy::to_json(privacy::run_mia_audit(j, split, &progress));
}

void print_mia(const nlohmann::json& j) {
  std::printf(
      "membership inference on %s (%s recipe), pool %lld (%lld members), %lld shadow models "
      "(%lld trained, %lld reused, %.2f s per model)\n",
      j["model"].get<std::string>().c_str(), j["recipe"].get<std::string>().c_str(), j["pool"].get<long long>(),
      j["members"].get<long long>(), j["shadows"].get<long long>(), j["models_trained"].get<long long>(),
      j["models_reused"].get<long long>(), j["seconds_per_model"].get<double>());
  if (j["augment"].get<long long>() > 1)
    std::printf("LiRA queries %lld views of each example (shifted, then mirrored)\n", j["augment"].get<long long>());
  if (j["population"].get<long long>() > 0)
    std::printf("RMIA compares with %lld population samples from the test split; offline a = %.2f\n",
                j["population"].get<long long>(), j["rmia_a"].get<double>());
  std::printf("target: train accuracy %.4f, test accuracy %.4f", j["target_train_accuracy"].get<double>(),
              j["target_test_accuracy"].get<double>());
  if (j["recipe"] == "dp") std::printf(", epsilon %.4g", j["target_epsilon"].get<double>());
  std::printf("\n%-20s %8s %10s %14s %12s\n", "attack", "AUC", "bal. acc", "TPR@0.1%FPR", "TPR@1%FPR");
  for (const auto& [name, m] : j["attacks"].items())
    std::printf("%-20s %8.4f %10.4f %14.4f %12.4f\n", name.c_str(), m["auc"].get<double>(),
                m["balanced_accuracy"].get<double>(), m["tpr_at_0.1%_fpr"].get<double>(),
                m["tpr_at_1%_fpr"].get<double>());
  std::printf("per-example scores: %s\n", j["scores_out"].get<std::string>().c_str());
  if (!j["roc_plot"].get<std::string>().empty())
    std::printf("ROC curves: %s\n", j["roc_plot"].get<std::string>().c_str());
}

nlohmann::json run_dp(const AuditArgs& a) {
  check_dp_recipe(a);
  privacy::DpAuditJob j;
  j.training.job = recipe(a);
  j.training.job.out = a.model_out;
  j.training.dp = a.dp;
  j.audit = a.audit;
  j.audit.seed = a.audit_seed;
  j.audit.canary = privacy::parse_canary_kind(a.canary);
  j.scores_out = a.scores_out;
  AEGIS_CHECK(a.runs_dir.empty() || a.audit.runs > 0,
              "--out-dir holds the run records of the many-run audit: add --runs R, or leave it out");
  j.runs_dir = a.runs_dir;
  const nn::DatasetSplit split = nn::load_dataset(a.data, data_dir_hint(a.common));
  CliProgress progress(!a.common.quiet && mpi::world().rank == 0);  // under mpirun, rank 0 reports
  if (a.audit.runs > 0) return privacy::to_json(privacy::run_many_run_dp_audit(j, split, &progress));
  return privacy::to_json(privacy::run_dp_audit(j, split, &progress));
}

void print_dp(const nlohmann::json& j) {
  if (j.contains("runs")) {
    std::printf(
        "many-run audit: %lld DP-SGD runs with the %s canary and %lld without (%lld trained, %.2f s per run; "
        "%lld reused)\n",
        j["runs"].get<long long>(), j["canary"].get<std::string>().c_str(), j["runs"].get<long long>(),
        j["runs_trained"].get<long long>(), j["seconds_per_run"].get<double>(), j["runs_reused"].get<long long>());
    std::printf(
        "threshold %.6g chosen on half of the runs; on the other half: %lld of %lld false positives, %lld of "
        "%lld false negatives (upper bounds %.4f, %.4f)\n",
        j["threshold"].get<double>(), j["false_positives"].get<long long>(), j["negatives"].get<long long>(),
        j["false_negatives"].get<long long>(), j["positives"].get<long long>(), j["fpr_upper"].get<double>(),
        j["fnr_upper"].get<double>());
  } else {
    std::printf("one-run audit with %lld %s canaries (%lld included), %lld guesses, %lld right\n",
                j["canaries"].get<long long>(), j["canary"].get<std::string>().c_str(), j["included"].get<long long>(),
                j["guesses"].get<long long>(), j["correct"].get<long long>());
  }
  std::printf("epsilon lower bound %.4f at %.0f%% confidence (delta %g; at most %.4f with these %s)\n",
              j["epsilon_lower"].get<double>(), 100.0 * j["confidence"].get<double>(), j["delta"].get<double>(),
              j["epsilon_ceiling"].get<double>(), j.contains("runs") ? "runs" : "guesses");
  std::printf("accounted epsilon   %.4f\n", j["epsilon_accounted"].get<double>());
  std::printf("%s\n", j["failed"].get<bool>() ? "AUDIT FAILED: the measured lower bound exceeds the accounted epsilon"
                                              : "audit passed: the lower bound does not exceed the accounted epsilon");
}

struct InvertArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", start = "zero", plot_out;
  privacy::InversionOptions options;
};

nlohmann::json run_invert(const InvertArgs& a) {
  privacy::InversionJob j;
  j.model_path = a.model;
  j.dataset = a.data;
  j.options = a.options;
  j.options.start = privacy::parse_inversion_start(a.start);
  j.plot_out = a.plot_out;
  j.device = resolve_device(a.common);
  const nn::DatasetSplit split = nn::load_dataset(a.data, data_dir_hint(a.common));
  CliProgress progress(!a.common.quiet);
  return privacy::to_json(privacy::run_inversion(j, split.train, &progress));
}

void print_invert(const nlohmann::json& j) {
  std::printf(
      "model inversion (MI-Face, %s start, %lld steps at most, lr %g, TV weight %g) of %s against the "
      "class means of %s\n",
      j["start"].get<std::string>().c_str(), j["steps"].get<long long>(), j["lr"].get<double>(),
      j["tv_weight"].get<double>(), j["model"].get<std::string>().c_str(), j["dataset"].get<std::string>().c_str());
  std::printf("%6s %9s %9s %8s %11s %6s  %s\n", "class", "pearson", "mse", "nearest", "confidence", "steps", "stopped");
  for (const auto& c : j["classes"])
    std::printf("%6lld %9.4f %9.5f %8lld %11.4f %6lld  %s\n", c["class"].get<long long>(), c["pearson"].get<double>(),
                c["mse"].get<double>(), c["nearest_class_mean"].get<long long>(), c["confidence"].get<double>(),
                c["steps"].get<long long>(), c["stopped"].get<std::string>().c_str());
  std::printf("mean Pearson correlation %.4f, mean MSE %.5f, mean confidence %.4f, identified %.0f%% of classes\n",
              j["mean_pearson"].get<double>(), j["mean_mse"].get<double>(), j["mean_confidence"].get<double>(),
              100.0 * j["identification_rate"].get<double>());
  if (!j["plot_out"].get<std::string>().empty()) std::printf("grid: %s\n", j["plot_out"].get<std::string>().c_str());
}

}  // namespace

Runner add_audit(CLI::App& app) {
  auto mia = std::make_shared<AuditArgs>();
  auto dp = std::make_shared<AuditArgs>();
  auto inv = std::make_shared<InvertArgs>();
  auto* cmd = app.add_subcommand(
      "audit", "privacy audits: membership inference (mia), empirical epsilon (dp), model inversion (invert)");
  cmd->require_subcommand(1);

  auto* m = cmd->add_subcommand("mia",
                                "membership inference (loss attack, LiRA and RMIA online/offline) against a training "
                                "recipe, with shadow models; resumable in --out-dir");
  add_recipe_options(m, *mia);
  m->add_flag("--dp", mia->use_dp, "the recipe is DP-SGD (with the DP options)");
  m->add_option("--shadows", mia->shadows, "shadow models K (even, at least 4)")
      ->capture_default_str()
      ->check(integer_in(4, 1 << 20));
  m->add_option("--pool", mia->pool, "examples of the training split in the pool (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  m->add_option("--audit-seed", mia->audit_seed, "seed of the target's and the shadow models' halves")
      ->capture_default_str()
      ->check(seed_value());
  m->add_option("--out-dir", mia->out_dir, "model files and scores.tsv; a rerun reuses the models already there")
      ->required();
  m->add_option("--attack", mia->attacks, "attacks to run, comma-separated: loss, lira, rmia")
      ->delimiter(',')
      ->capture_default_str()
      ->check(one_of({"loss", "lira", "rmia"}));
  m->add_option(
       "--augment", mia->augment,
       "LiRA queries per example: the example, its 8 one-pixel shifts, then all 9 mirrored (1 to 18; images only)")
      ->capture_default_str()
      ->check(integer_in(1, 18));
  m->add_option("--population", mia->population, "RMIA's population samples: the first N of the test split (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  m->add_option("--rmia-gamma", mia->rmia.gamma, "RMIA's threshold gamma on the pairwise likelihood ratio")
      ->capture_default_str()
      ->check(positive(1e6));
  m->add_option("--rmia-a", mia->rmia.offline_a, "RMIA offline: a of Pr(x) = ((1+a) Pr_OUT(x) + 1 - a)/2")
      ->capture_default_str()
      ->check(real_in(0.0, 1.0, false, false));
  m->add_flag("--rmia-fit-a", mia->rmia.fit_a,
              "RMIA offline: fit a on the shadow models (each in turn as the target) instead of --rmia-a");
  m->add_option("--roc", mia->roc_plot, "draw the ROC curves on log-log axes (.png, .svg or .pdf; needs gnuplot)");

  auto* d =
      cmd->add_subcommand("dp",
                          "empirical epsilon of DP-SGD with gradient or input canaries (one run, or --runs R), beside "
                          "the accounted epsilon; exit status 3 with --strict when the audit fails");
  add_recipe_options(d, *dp);
  d->add_option("--canary", dp->canary,
                "gradient: a Dirac gradient of norm C (white box); input: a mislabelled test example (black box)")
      ->capture_default_str()
      ->check(one_of({"gradient", "input"}));
  d->add_option("--canaries", dp->audit.canaries,
                "canaries m (gradient: at most the model's parameters; input: at most the test split's size)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  d->add_option("--guesses", dp->audit.guesses, "guesses r (even): r/2 highest scores in, r/2 lowest out")
      ->capture_default_str()
      ->check(integer_in(2, kMaxExamples));
  d->add_option("--confidence", dp->audit.confidence, "confidence of the epsilon lower bound")
      ->capture_default_str()
      ->check(open_unit());
  d->add_option("--audit-seed", dp->audit_seed, "seed of the canaries' coordinates, signs and inclusion")
      ->capture_default_str()
      ->check(seed_value());
  d->add_option("--out", dp->model_out, "the audited model file (it carries the canaries: not for release)")
      ->capture_default_str();
  d->add_option("--scores", dp->scores_out, "TSV of every canary's score and inclusion");
  d->add_option("--runs", dp->audit.runs,
                "many-run audit: R runs with one gradient canary and R without (even, at least 4; 0: the one-run "
                "audit)")
      ->capture_default_str()
      ->check(integer_in(0, 1 << 20));
  d->add_option("--out-dir", dp->runs_dir,
                "many-run audit: one record per run here; a rerun reuses them (a killed audit resumes); required "
                "under mpirun");
  d->add_flag("--strict", dp->strict, "exit with status 3 when the audit fails");

  auto* v = cmd->add_subcommand("invert",
                                "model inversion (MI-Face: gradient descent on the input towards each class), "
                                "compared with the training data's class means; draws a grid with --plot");
  add_common_options(*v, inv->common);
  v->add_option("--model", inv->model, "model file (aegis safetensors or ONNX) with image inputs")->required();
  v->add_option("--data", inv->data, "dataset spec, as for train (its training split gives the class means)")
      ->capture_default_str();
  v->add_option("--classes", inv->options.classes, "classes to invert, comma-separated (default: all)")
      ->delimiter(',')
      ->check(integer_in(0, kMaxExamples));
  v->add_option("--steps", inv->options.steps, "most gradient steps per class")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  v->add_option("--lr", inv->options.lr, "step size")->capture_default_str()->check(positive(1e6));
  v->add_option("--tv", inv->options.tv, "weight of the total-variation prior")
      ->capture_default_str()
      ->check(non_negative(1e6));
  v->add_option("--patience", inv->options.patience, "stop after this many steps without a lower cost")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  v->add_option("--min-cost", inv->options.min_cost, "stop once the cost is at most this")
      ->capture_default_str()
      ->check(real_in(0.0, 1.0, false, true));
  v->add_option("--start", inv->start, "first image: zero | grey | random")
      ->capture_default_str()
      ->check(one_of({"zero", "grey", "random"}));
  v->add_option("--seed", inv->options.seed, "seed of the random start")->capture_default_str()->check(seed_value());
  v->add_option("--plot", inv->plot_out, "draw reconstructions over class means (.png, .svg or .pdf; needs gnuplot)");

  return [mia, dp, inv, m, d, v]() {
    if (m->parsed()) {
      const nlohmann::json j = run_mia(*mia, *m);
      if (mpi::world().rank != 0) return 0;  // under mpirun, rank 0 prints the run's result
      return print_result(j, mia->common.json, print_mia);
    }
    if (v->parsed()) return print_result(run_invert(*inv), inv->common.json, print_invert);
    const nlohmann::json j = run_dp(*dp);
    if (mpi::world().rank != 0) return 0;
    print_result(j, dp->common.json, print_dp);
    // The library has already warned on stderr ("aegis: warning: AUDIT FAILED ...").
    return j["failed"].get<bool>() && dp->strict ? 3 : 0;
  };
}

}  // namespace aegis::app
