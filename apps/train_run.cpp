#include "train_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "nn/model_file.h"
#include "privacy/ledger_digest.h"
#include "core/checked_math.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct Trained {
  std::shared_ptr<nn::Module> model;
  nn::ModelSpec spec;
  nlohmann::json summary;
  std::map<std::string, std::string> metadata;
};

// One progress bar per epoch, fed step by step.
class EpochBars {
 public:
  EpochBars(std::int64_t epochs, std::int64_t steps_per_epoch, bool enabled)
      : m_epochs(epochs), m_steps(steps_per_epoch), m_enabled(enabled) {}
  void step(std::int64_t epoch, std::int64_t global_step, double loss, const std::string& extra = "") {
    const std::int64_t in_epoch = global_step - epoch * m_steps;
    if (in_epoch == 1 || !m_bar) {
      m_bar = std::make_unique<Progress>("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(m_epochs),
                                         m_steps, "steps", m_enabled);
      m_running = loss;
    }
    m_running = 0.95 * m_running + 0.05 * loss;
    char text[128];
    std::snprintf(text, sizeof text, "loss %.4f%s", m_running, extra.c_str());
    m_bar->update(in_epoch, text);
  }
  void finish(const std::string& text) {
    if (m_bar) m_bar->finish(text);
    m_bar.reset();
  }

 private:
  std::int64_t m_epochs, m_steps;
  bool m_enabled;
  double m_running = 0.0;
  std::unique_ptr<Progress> m_bar;
};

void train_standard(const TrainArgs& a, const nn::Dataset& train, const nn::TrainOptions& opt, Trained& t) {
  const std::int64_t steps_per_epoch = ceil_div(train.size(), opt.batch_size);
  EpochBars bars(opt.epochs, steps_per_epoch, !a.common.quiet);
  const nn::TrainResult tr = nn::train_classifier(
      *t.model, train, opt, [&](const nn::StepInfo& s) { bars.step(s.epoch, s.step, s.loss); },
      [&](const nn::EpochResult& e) {
        char text[96];
        std::snprintf(text, sizeof text, "loss %.4f  train acc %.4f", e.train_loss, e.train_accuracy);
        bars.finish(text);
      });
  t.summary["steps"] = tr.steps;
  t.summary["train_loss"] = tr.epochs.back().train_loss;
  t.summary["train_accuracy"] = tr.epochs.back().train_accuracy;
  t.summary["train_seconds"] = tr.seconds;
}

void train_robust(const TrainArgs& a, const nn::Dataset& train, const nn::TrainOptions& opt, Trained& t) {
  attacks::AdvTrainOptions adv = a.adv_options;
  adv.method = attacks::parse_adv_method(a.adv);
  const attacks::AdvPlan plan = attacks::plan_adversarial(train.size(), opt, adv);
  EpochBars bars(plan.epochs, plan.steps_per_epoch, !a.common.quiet);
  std::size_t epochs_done = 0;
  const attacks::AdvTrainResult r = attacks::train_adversarial(
      *t.model, train, opt, adv, [&](const nn::StepInfo& s) { bars.step(s.epoch, s.step, s.loss); },
      [&](const nn::EpochResult& e) {
        char text[128];
        std::snprintf(text, sizeof text, "adv loss %.4f  adv train acc %.4f", e.train_loss, e.train_accuracy);
        bars.finish(text);
        ++epochs_done;
      });
  if (r.stopped_early && !a.common.quiet)
    std::cerr << "aegis: catastrophic overfitting: held-out PGD-10 accuracy fell more than " << adv.overfit_drop * 100
              << " points; stopped after "
              << epochs_done << " epoch(s) and restored epoch " << r.best_epoch << "\n";
  t.summary["steps"] = r.steps;
  t.summary["train_loss"] = r.epochs.back().train_loss;
  t.summary["train_accuracy"] = r.epochs.back().train_accuracy;
  t.summary["train_seconds"] = r.seconds;
  t.summary["adv_method"] = attacks::adv_method_name(adv.method);
  t.summary["adv_eps"] = adv.eps;
  t.summary["adv_steps"] = adv.steps;
  t.summary["adv_epochs_run"] = r.epochs.size();
  if (!r.check_robust_accuracy.empty()) {
    t.summary["adv_check_robust_accuracy"] = r.check_robust_accuracy;
    t.summary["adv_stopped_early"] = r.stopped_early;
    t.summary["adv_best_epoch"] = r.best_epoch;
  }
  t.metadata["aegis.adv_method"] = attacks::adv_method_name(adv.method);
  t.metadata["aegis.adv_eps"] = std::to_string(adv.eps);
}

void train_private(const TrainArgs& a, const nn::Dataset& train, const nn::TrainOptions& opt,
                   const privacy::PrivacyLedger* previous, Trained& t) {
  privacy::DpTrainOptions dp = a.dp_options;
  const double n = static_cast<double>(train.size());
  if (dp.delta >= 1.0 / n && !a.common.quiet)
    std::cerr << "aegis: warning: delta " << dp.delta << " is not below 1/N = " << 1.0 / n
              << "; such a delta permits releasing an example outright\n";
  if (dp.sampling == privacy::Sampling::Shuffle && !a.common.quiet)
    std::cerr << "aegis: warning: --sampling shuffle: the reported epsilon assumes Poisson sampling and is not a "
                 "proven guarantee for shuffled fixed-size batches\n";
  const privacy::DpPlan plan = privacy::plan_dp(train.size(), opt, dp, previous);
  EpochBars bars(opt.epochs, plan.steps_per_epoch, !a.common.quiet);
  double eps_so_far = previous ? previous->epsilon : 0.0;
  const privacy::DpTrainResult r = privacy::train_dp_classifier(
      *t.model, train, opt, dp, plan, previous,
      [&](const privacy::DpStepInfo& s) {
        char extra[64];
        std::snprintf(extra, sizeof extra, "  eps %.3f", eps_so_far);
        bars.step(s.epoch, s.step, s.loss, extra);
      },
      [&](const privacy::DpEpochResult& e) {
        eps_so_far = e.epsilon;
        char text[128];
        std::snprintf(text, sizeof text, "loss %.4f  train acc %.4f  eps %.4f", e.train_loss, e.train_accuracy,
                      e.epsilon);
        bars.finish(text);
      });
  t.metadata = privacy::sealed_ledger_metadata(r.ledger, *t.model);
  t.summary["steps"] = r.steps;
  t.summary["train_loss"] = r.epochs.back().train_loss;
  t.summary["train_accuracy"] = r.epochs.back().train_accuracy;
  t.summary["train_seconds"] = r.seconds;
  t.summary["epsilon"] = r.ledger.epsilon;
  t.summary["delta"] = r.ledger.delta;
  t.summary["noise_multiplier"] = r.noise_multiplier;
  t.summary["sampling_rate"] = r.sampling_rate;
  t.summary["max_grad_norm"] = r.ledger.max_grad_norm;
  t.summary["accountant"] = privacy::accountant_name(r.ledger.accountant);
  t.summary["clipping"] = privacy::clipping_name(r.ledger.clipping);
  t.summary["sampling"] = privacy::sampling_name(r.ledger.sampling);
  t.summary["total_steps"] = r.ledger.steps();
}

// A resumed run composes the file's ledger into the new one and seals the result, so the ledger
// must be the one the DP run wrote for these weights (privacy/ledger_digest.h). A file without a
// digest (written before aegis stored them) cannot be checked: resuming it needs
// --trust-unverified-ledger, because the new file's digest would vouch for the old ledger.
void check_resumable_ledger(const TrainArgs& a, const privacy::LedgerCheck& check) {
  using privacy::LedgerStatus;
  AEGIS_CHECK(check.status != LedgerStatus::None, a.resume << " carries no privacy ledger: it was not trained with --dp");
  AEGIS_CHECK_AS(IoError, check.status != LedgerStatus::Mismatch, a.resume << ": " << check.detail);
  if (check.status == LedgerStatus::Verified) return;
  AEGIS_CHECK_AS(IoError, a.trust_unverified_ledger,
                 a.resume << ": " << check.detail << "; pass --trust-unverified-ledger to resume from it anyway");
  if (!a.common.quiet)
    std::cerr << "aegis: warning: " << a.resume << ": " << check.detail
              << "; resuming on trust (--trust-unverified-ledger)\n";
}

}  // namespace

nlohmann::json run_training(const TrainArgs& a, const nn::DatasetSplit& split, const std::string& data_label) {
  AEGIS_CHECK(a.adv.empty() || !a.dp, "--adv and --dp are mutually exclusive");
  AEGIS_CHECK(a.adv.empty() || (std::isfinite(a.adv_options.eps) && a.adv_options.eps > 0.0f),
              "--adv needs --eps > 0 (got " << a.adv_options.eps << ")");
  AEGIS_CHECK(!a.adv.empty() || a.adv_options.eps == 0.0f, "--eps needs --adv");
  AEGIS_CHECK(std::isfinite(a.train.noise_sigma) && a.train.noise_sigma >= 0.0f,
              "--noise-sigma " << a.train.noise_sigma << " must be non-negative and finite");
  AEGIS_CHECK(a.train.noise_sigma == 0.0f || (!a.dp && a.adv.empty()),
              "--noise-sigma (Gaussian augmentation) applies to standard training, not to --dp or --adv");
  const Device device = resolve_device(a.common);
  nn::TrainOptions opt = a.train;
  opt.device = device;
  nn::check_train_options(opt);  // before the progress bars divide by the batch size
  Trained t;
  privacy::PrivacyLedger previous;
  const Shape& s = split.train.images.shape();
  AEGIS_CHECK(!a.trust_unverified_ledger || !a.resume.empty(), "--trust-unverified-ledger needs --resume");
  if (!a.resume.empty()) {
    AEGIS_CHECK(a.dp, "--resume continues a DP run: add --dp");
    nn::LoadedClassifier loaded = nn::load_classifier(a.resume);
    t.model = loaded.model;
    t.spec = loaded.spec;
    check_resumable_ledger(a, privacy::verify_ledger(loaded.metadata, *loaded.model));
    previous = privacy::PrivacyLedger::from_metadata(loaded.metadata, a.resume);
    AEGIS_CHECK_AS(IoError, !previous.phases.empty(), a.resume << ": the privacy ledger has no phases");
    AEGIS_CHECK(t.spec.input_shape == (Shape{s[1], s[2], s[3]}),
                a.resume << " takes inputs " << shape_str(t.spec.input_shape) << ", not the dataset's");
  } else {
    t.spec.name = a.model;
    t.spec.activation = a.activation;
    t.spec.num_classes = split.train.num_classes;
    t.spec.input_shape = {s[1], s[2], s[3]};
    t.spec.seed = opt.seed;
    t.model = nn::build_model(t.spec);
    if (t.spec.activation.empty()) t.spec.activation = nn::default_activation(t.spec.name);
  }
  if (!a.common.quiet)
    std::cerr << "aegis: training " << t.spec.name << " (" << t.model->num_parameters() << " parameters) on "
              << data_label << " (" << split.train.size() << " train / " << split.test.size() << " test) for "
              << opt.epochs << " epoch(s), batch " << opt.batch_size << ", " << nn::optimizer_name(opt.optimizer) << " lr " << opt.lr
              << (a.dp ? ", DP-SGD" : "") << (a.adv.empty() ? "" : ", adversarial " + a.adv) << ", on " << device.str() << "\n";
  if (a.dp) train_private(a, split.train, opt, a.resume.empty() ? nullptr : &previous, t);
  else if (!a.adv.empty()) train_robust(a, split.train, opt, t);
  else train_standard(a, split.train, opt, t);

  Progress eval_bar("test", split.test.size(), "examples", !a.common.quiet);
  const nn::EvalResult ev = nn::evaluate(*t.model, split.test, device, 1000,
                                         [&](std::int64_t done, std::int64_t) { eval_bar.update(done); });
  eval_bar.finish();
  t.metadata["aegis.dataset"] = data_label;
  if (opt.noise_sigma > 0.0f) t.metadata["aegis.noise_sigma"] = std::to_string(opt.noise_sigma);
  nn::save_classifier(a.out, *t.model, t.spec, t.metadata);

  nlohmann::json& j = t.summary;
  j["model"] = t.spec.name;
  j["activation"] = t.spec.activation;
  j["parameters"] = t.model->num_parameters();
  j["dataset"] = data_label;
  j["device"] = device.str();
  j["epochs"] = opt.epochs;
  j["batch_size"] = opt.batch_size;
  j["optimizer"] = nn::optimizer_name(opt.optimizer);
  j["momentum"] = opt.momentum;
  j["schedule"] = nn::schedule_name(opt.schedule);
  j["lr"] = opt.lr;
  j["seed"] = opt.seed;
  j["noise_sigma"] = opt.noise_sigma;
  j["test_loss"] = ev.loss;
  j["test_accuracy"] = ev.accuracy;
  j["seconds_per_epoch"] = j["train_seconds"].get<double>() / static_cast<double>(opt.epochs);
  j["out"] = a.out;
  return j;
}

void add_train_options(CLI::App* cmd, TrainArgs& a) {
  add_common_options(*cmd, a.common);
  cmd->add_option("--model", a.model, "mlp | cnn-fmnist | lenet-2conv | resnet20 | cnn-res")->capture_default_str();
  cmd->add_option("--activation", a.activation, "relu | tanh | sigmoid (default: the model's own)");
  cmd->add_option("--epochs", a.train.epochs, "passes over the training set")
      ->capture_default_str()
      ->check(integer_in(1, kMaxEpochs));
  cmd->add_option("--batch-size", a.train.batch_size, "examples per step (DP: the expected batch size)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--lr", a.train.lr, "learning rate (peak rate for onecycle)")
      ->capture_default_str()
      ->check(positive(FLT_MAX));
  add_optimizer_option(cmd, a.train);
  cmd->add_option("--momentum", a.train.momentum, "sgd momentum (heavy ball)")
      ->capture_default_str()
      ->check(real_in(0.0, 1.0, false, true));
  add_schedule_option(cmd, a.train);
  cmd->add_option("--seed", a.train.seed, "seed for initialization, data order, sampling and noise")
      ->capture_default_str()
      ->check(seed_value());
  cmd->add_option("--noise-sigma", a.train.noise_sigma,
                  "train on x + N(0, sigma^2) in [0, 1] pixel space (Gaussian augmentation for randomized smoothing)")
      ->capture_default_str()
      ->check(non_negative(FLT_MAX));
  cmd->add_option("--out", a.out, "where to write the trained model (safetensors)")->capture_default_str();
  cmd->add_option("--adv", a.adv, "adversarial training: pgd | fgsm-rs | free (L-infinity, radius --eps)")
      ->check(one_of({"pgd", "fgsm-rs", "free"}));
  cmd->add_option("--eps", a.adv_options.eps, "adversarial training: L-infinity radius (inputs in [0, 1])")
      ->check(positive(FLT_MAX));
  cmd->add_option("--adv-steps", a.adv_options.steps, "adversarial training: PGD steps")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_option("--adv-overfit-drop", a.adv_options.overfit_drop,
                  "fgsm-rs: stop and restore the best epoch when held-out PGD-10 accuracy falls more than this "
                  "fraction below the best")
      ->capture_default_str()
      ->check(unit_closed());
  cmd->add_option("--adv-replays", a.adv_options.replays, "free adversarial training: minibatch replays m")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
}

void add_dp_options(CLI::App* cmd, TrainArgs& a) {
  auto& d = a.dp_options;
  cmd->add_flag("--dp", a.dp, "train with DP-SGD (Poisson sampling, per-example clipping, Gaussian noise)");
  auto* sigma = cmd->add_option("--noise-multiplier", d.noise.noise_multiplier, "DP: noise std / clipping norm (sigma)")
                    ->check(positive());
  auto* eps = cmd->add_option("--target-epsilon", d.target_epsilon, "DP: calibrate sigma to spend this epsilon")
                  ->check(positive());
  sigma->excludes(eps);
  cmd->add_option("--delta", d.delta, "DP: delta of the (epsilon, delta) guarantee")
      ->capture_default_str()
      ->check(open_unit());
  cmd->add_option("--max-grad-norm", d.noise.max_grad_norm, "DP: per-example clipping norm C")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option_function<double>(
         "--sampling-rate", [&d](const double& q) { d.sampling_rate = q; },
         "DP: Poisson sampling rate q (default batch-size / N)")
      ->check(unit_open_closed());
  cmd->add_option_function<std::string>(
         "--clipping", [&d](const std::string& v) { d.clipping = privacy::parse_clipping(v); },
         "DP: flat | per-layer | adaptive")
      ->default_str("flat")
      ->check(one_of({"flat", "per-layer", "adaptive"}));
  cmd->add_option("--target-quantile", d.adaptive.target_quantile, "DP adaptive clipping: quantile of norms to track")
      ->capture_default_str()
      ->check(open_unit());
  cmd->add_option("--clip-lr", d.adaptive.clip_lr, "DP adaptive clipping: geometric learning rate of C")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option("--count-noise", d.adaptive.count_noise, "DP adaptive clipping: noise std of the unclipped count "
                                                  "(default expected batch / 20)")
      ->check(positive());
  cmd->add_option_function<std::string>(
         "--accountant", [&d](const std::string& v) { d.accountant = privacy::parse_accountant(v); }, "DP: rdp | prv")
      ->default_str("rdp")
      ->check(one_of({"rdp", "prv"}));
  cmd->add_flag("--secure", d.noise.secure, "DP: OS-seeded cryptographic sampling and noise");
  cmd->add_option_function<std::string>(
         "--sampling", [&d](const std::string& v) { d.sampling = privacy::parse_sampling(v); },
         "DP: poisson | shuffle (shuffle: fixed-size batches, NOT covered by the accountants' guarantee)")
      ->default_str("poisson")
      ->check(one_of({"poisson", "shuffle"}));
  cmd->add_option("--resume", a.resume, "DP: continue training this model file, composing its privacy ledger");
  cmd->add_flag("--trust-unverified-ledger", a.trust_unverified_ledger,
                "DP: --resume from a file whose ledger has no digest to check (older aegis) instead of refusing");
}

void print_result(const nlohmann::json& j, bool json) {
  if (json) {
    std::cout << j.dump() << std::endl;
    return;
  }
  std::printf("model %s on %s: test accuracy %.4f (loss %.4f), train accuracy %.4f, %.1f s training (%.1f s/epoch)\n",
              j["model"].get<std::string>().c_str(), j["dataset"].get<std::string>().c_str(),
              j["test_accuracy"].get<double>(), j["test_loss"].get<double>(), j["train_accuracy"].get<double>(),
              j["train_seconds"].get<double>(), j["seconds_per_epoch"].get<double>());
  if (j.contains("epsilon"))
    std::printf("privacy: epsilon %.4f at delta %g (%s; noise multiplier %.4f, sampling rate %.6f, %lld steps)\n",
                j["epsilon"].get<double>(), j["delta"].get<double>(), j["accountant"].get<std::string>().c_str(),
                j["noise_multiplier"].get<double>(), j["sampling_rate"].get<double>(),
                static_cast<long long>(j["total_steps"].get<std::int64_t>()));
  std::printf("wrote %s\n", j["out"].get<std::string>().c_str());
}

}  // namespace aegis::app
