#include "train_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "attacks/adv_job.h"
#include "core/mpi.h"
#include "nn/train_job.h"
#include "options.h"
#include "privacy/dp_job.h"
#include "progress.h"

namespace aegis::app {

nlohmann::json run_training(const TrainArgs& a, const nn::DatasetSplit& split, const std::string& data_label) {
  AEGIS_CHECK(!a.adv.empty() || a.adv_options.eps == 0.0f, "--eps needs --adv");
  AEGIS_CHECK(a.dp || a.dp_options.augmult == 1, "--augmult needs --dp");
  AEGIS_CHECK(a.dp || a.adv.empty() || !a.train.augment.any(),
              "--augment with --adv needs --dp (plain adversarial training makes its inputs from the batch as is)");
  AEGIS_CHECK(a.adv.empty() || a.train.noise_sigma == 0.0f,
              "--adv and --noise-sigma train for two different robustness notions: give one");
  AEGIS_CHECK(a.resume.empty() || a.dp, "--resume continues a DP run: add --dp");
  if (a.consistency) {
    AEGIS_CHECK(a.dp, "--consistency regularizes DP-SGD with noisy copies: add --dp");
    AEGIS_CHECK(a.dp_options.augmult >= 2, "--consistency compares an example's copies: it needs --augmult K >= 2 (got "
                                               << a.dp_options.augmult << ")");
    AEGIS_CHECK(a.train.noise_sigma > 0.0f,
                "--consistency compares an example's noisy copies: it needs --noise-sigma > 0");
  }
  nn::TrainJob job;
  job.model = a.model;
  job.activation = a.activation;
  job.train = a.train;
  job.train.device = resolve_device(a.common);
  job.out = a.out;
  job.init = a.init;
  job.dataset = data_label;
  CliProgress progress(!a.common.quiet);
  if (a.dp) {
    privacy::DpJob dp{job, a.dp_options, a.resume, a.trust_unverified_ledger, {}};
    if (a.consistency) dp.dp.consistency = privacy::ConsistencyOptions{*a.consistency, a.consistency_eta};
    if (!a.adv.empty()) {  // adversarial examples of each sampled example, clipped as that example's
      attacks::AdvTrainOptions adv = a.adv_options;
      adv.method = attacks::parse_adv_method(a.adv);
      AEGIS_CHECK(std::isfinite(adv.eps) && adv.eps > 0.0f, "--adv needs --eps > 0 (got " << adv.eps << ")");
      dp.dp.make_input = attacks::dp_adversarial_inputs(adv, a.train.seed);
      dp.metadata = attacks::adv_metadata(adv);
    }
    nlohmann::json j = privacy::to_json(privacy::run_dp_training(dp, split, &progress));
    if (!a.adv.empty()) {
      j["adv_method"] = a.adv;
      j["adv_eps"] = a.adv_options.eps;
    }
    return j;
  }
  AEGIS_CHECK(!a.trust_unverified_ledger, "--trust-unverified-ledger needs --resume");
  // Under mpirun plain training (and Gaussian augmentation) is data-parallel (nn/data_parallel.h);
  // adversarial examples are formed over the whole batch, so adversarial training stays in one process.
  AEGIS_CHECK(a.adv.empty() || mpi::world().size == 1, "--adv runs in one process (this run has "
                                                           << mpi::world().size
                                                           << " processes); under mpirun, train shares plain training, "
                                                              "--noise-sigma and --dp over the ranks");
  if (!a.adv.empty()) {
    attacks::AdvTrainOptions adv = a.adv_options;
    adv.method = attacks::parse_adv_method(a.adv);
    return attacks::to_json(attacks::run_adversarial_training(job, adv, split, &progress));
  }
  return nn::to_json(nn::run_training(job, split, &progress));
}

void add_train_options(CLI::App* cmd, TrainArgs& a) {
  add_common_options(*cmd, a.common);
  auto* model =
      cmd->add_option("--model", a.model, "mlp | cnn-fmnist | lenet-2conv | resnet20 | cnn-res | scatter-linear")
          ->capture_default_str();
  auto* activation = cmd->add_option("--activation", a.activation, "relu | tanh | sigmoid (default: the model's own)");
  cmd->add_option("--init", a.init,
                  "fine-tune this model instead of a fresh --model: an ONNX file (then --out must end in .onnx) or "
                  "an aegis model file")
      ->excludes(model)
      ->excludes(activation);
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
  cmd->add_option_function<std::string>(
         "--augment", [&a](const std::string& v) { a.train.augment = nn::parse_image_augment(v); },
         "random crops and flips of every training image (with --dp: of every copy; De et al. 2022): flip, "
         "crop[:PAD[:zero|mirror]] joined by commas, e.g. flip,crop:4 (PAD default 4, mirror padding); applied "
         "before --noise-sigma")
      ->default_str("none")
      ->check(CLI::Validator(
          [](std::string& v) {
            try {
              nn::parse_image_augment(v);
              return std::string();
            } catch (const Error& e) {
              return e.message();
            }
          },
          "SPEC"));
  cmd->add_option("--out", a.out, "where to write the trained model (safetensors; .onnx after --init net.onnx)")
      ->capture_default_str();
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

void add_dp_noise_options(CLI::App* cmd, privacy::DpTrainOptions& d) {
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
         "--accountant", [&d](const std::string& v) { d.accountant = privacy::parse_accountant(v); }, "DP: rdp | prv")
      ->default_str("rdp")
      ->check(one_of({"rdp", "prv"}));
}

void add_dp_options(CLI::App* cmd, TrainArgs& a) {
  auto& d = a.dp_options;
  cmd->add_flag("--dp", a.dp, "train with DP-SGD (Poisson sampling, per-example clipping, Gaussian noise)");
  add_dp_noise_options(cmd, d);
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
  cmd->add_option("--count-noise", d.adaptive.count_noise,
                  "DP adaptive clipping: noise std of the unclipped count "
                  "(default expected batch / 20)")
      ->check(positive());
  cmd->add_flag("--secure", d.noise.secure, "DP: OS-seeded cryptographic sampling and noise");
  cmd->add_option_function<std::string>(
         "--sampling", [&d](const std::string& v) { d.sampling = privacy::parse_sampling(v); },
         "DP: poisson | shuffle (shuffle: fixed-size batches, NOT covered by the accountants' guarantee)")
      ->default_str("poisson")
      ->check(one_of({"poisson", "shuffle"}));
  cmd->add_option("--augmult", d.augmult,
                  "DP: augmentation multiplicity K, copies of each sampled example (each with its own --augment crop "
                  "and flip, --noise-sigma noise or adversarial start), their gradients averaged before clipping")
      ->capture_default_str()
      ->check(integer_in(1, 1024));
  auto* consistency =
      cmd->add_option_function<float>(
             "--consistency", [&a](const float& v) { a.consistency = v; },
             "DP: DP-CERT's consistency regularizer, weight LAMBDA of the copies' KL divergence from their mean "
             "prediction (needs --augmult K >= 2 and --noise-sigma)")
          ->check(non_negative(FLT_MAX));
  cmd->add_option("--consistency-entropy", a.consistency_eta,
                  "DP: weight ETA of the entropy of the copies' mean prediction in the consistency regularizer")
      ->capture_default_str()
      ->check(non_negative(FLT_MAX))
      ->needs(consistency);
  cmd->add_option("--resume", a.resume, "DP: continue training this model file, composing its privacy ledger");
  cmd->add_flag("--trust-unverified-ledger", a.trust_unverified_ledger,
                "DP: --resume from a file whose ledger has no digest to check (older aegis) instead of refusing");
}

void print_training_text(const nlohmann::json& j) {
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
