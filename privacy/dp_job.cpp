#include "privacy/dp_job.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/mpi.h"
#include "nn/model_file.h"
#include "privacy/ledger_digest.h"

namespace aegis::privacy {

nlohmann::json to_json(const DpReport& r) {
  nlohmann::json j = nn::to_json(r.training);
  j["epsilon"] = r.epsilon;
  j["delta"] = r.delta;
  j["noise_multiplier"] = r.noise_multiplier;
  j["sampling_rate"] = r.sampling_rate;
  j["max_grad_norm"] = r.max_grad_norm;
  j["accountant"] = r.accountant;
  j["clipping"] = r.clipping;
  j["sampling"] = r.sampling;
  j["total_steps"] = r.total_steps;
  j["augmult"] = r.augmult;
  if (r.consistency) {
    j["consistency_lambda"] = r.consistency->lambda;
    j["consistency_eta"] = r.consistency->eta;
  }
  return j;
}

namespace {

// A resumed run composes the file's ledger into the new one and seals the result, so the ledger
// must be the one the DP run wrote for these weights. A file without a digest cannot be checked:
// resuming it needs trust_unverified_ledger, because the new file's digest would vouch for the old
// ledger.
void check_resumable_ledger(const DpJob& j, const LedgerCheck& check, ProgressSink& progress) {
  AEGIS_CHECK(check.status != LedgerStatus::None,
              j.resume << " carries no privacy ledger: it was not trained with --dp");
  AEGIS_CHECK_AS(IoError, check.status != LedgerStatus::Mismatch, j.resume << ": " << check.detail);
  if (check.status == LedgerStatus::Verified) return;
  AEGIS_CHECK_AS(IoError, j.trust_unverified_ledger,
                 j.resume << ": " << check.detail << "; pass --trust-unverified-ledger to resume from it anyway");
  progress.warning(j.resume + ": " + check.detail + "; resuming on trust (--trust-unverified-ledger)");
}

}  // namespace

std::map<std::string, std::string> dp_transform_metadata(const DpTrainOptions& dp, float noise_sigma) {
  std::map<std::string, std::string> m;
  if (dp.augmult > 1) m["aegis.augmult"] = std::to_string(dp.augmult);
  if (noise_sigma > 0.0f) m["aegis.noise_sigma"] = std::to_string(noise_sigma);
  if (dp.consistency) {
    // Shortest round-trip text, as the ledger writes its numbers.
    m["aegis.consistency.lambda"] = nlohmann::json(dp.consistency->lambda).dump();
    m["aegis.consistency.eta"] = nlohmann::json(dp.consistency->eta).dump();
  }
  return m;
}

DpReport run_dp_training(const DpJob& j, const nn::DatasetSplit& split, ProgressSink* progress) {
  // Under mpirun every rank runs this (privacy/dp_ranks.h); rank 0 reports and writes the model.
  ProgressSink& p = progress_or_silent(mpi::world().rank == 0 ? progress : nullptr);
  const nn::TrainOptions& opt = j.job.train;
  AEGIS_CHECK(!j.trust_unverified_ledger || !j.resume.empty(), "--trust-unverified-ledger needs --resume");
  AEGIS_CHECK(j.resume.empty() || j.job.init.empty(), "--resume and --init both name the model to start from ("
                                                          << j.resume << ", " << j.job.init << "): give one");
  nn::check_train_options(opt);
  nn::TrainedModel t;
  PrivacyLedger previous;
  if (!j.resume.empty()) {
    nn::LoadedClassifier loaded = nn::load_classifier(j.resume);
    t.model = loaded.model;
    t.spec = loaded.spec;
    const LedgerCheck check = verify_ledger(loaded.metadata, *loaded.model);
    AEGIS_CHECK(check.status != LedgerStatus::None,
                j.resume << " carries no privacy ledger: it was not trained with --dp");
    previous = PrivacyLedger::from_metadata(loaded.metadata, j.resume);
    AEGIS_CHECK_AS(IoError, !previous.phases.empty(), j.resume << ": the privacy ledger has no phases");
    check_resumable_ledger(j, check, p);
    const Shape& s = split.train.images.shape();
    AEGIS_CHECK(t.spec.input_shape == (Shape{s[1], s[2], s[3]}),
                j.resume << " takes inputs " << shape_str(t.spec.input_shape) << ", not the dataset's");
    nn::check_classifier_path(j.job.out, *t.model);
  } else {
    t = nn::start_model(j.job, split.train);
    // A fresh ledger would leave out what the earlier DP run spent on (possibly) the same data.
    AEGIS_CHECK(!t.init_has_ledger, j.job.init << " carries a privacy ledger from an earlier DP run: continue it with "
                                                  "--resume, which composes the two ledgers, instead of --init");
  }
  std::string kind = ", DP-SGD";
  if (j.dp.augmult > 1) kind += " with " + std::to_string(j.dp.augmult) + " copies per example";
  if (opt.augment.any()) kind += " (" + image_augment_name(opt.augment) + ")";
  if (j.dp.consistency) {
    char text[96];
    std::snprintf(text, sizeof text, " and the consistency regularizer (lambda %g, eta %g)",
                  static_cast<double>(j.dp.consistency->lambda), static_cast<double>(j.dp.consistency->eta));
    kind += text;
  }
  nn::announce_training(j.job, t, split, kind, progress);
  const double n = static_cast<double>(split.train.size());
  if (j.dp.delta >= 1.0 / n) {
    std::ostringstream os;
    os << "delta " << j.dp.delta << " is not below 1/N = " << 1.0 / n
       << "; such a delta permits releasing an example outright";
    p.warning(os.str());
  }
  if (j.dp.sampling == Sampling::Shuffle)
    p.warning(
        "--sampling shuffle: the reported epsilon assumes Poisson sampling and is not a proven guarantee for "
        "shuffled fixed-size batches");
  const PrivacyLedger* prev = j.resume.empty() ? nullptr : &previous;
  const DpPlan plan = plan_dp(split.train.size(), opt, j.dp, prev);
  nn::EpochProgress bars(progress, opt.epochs, plan.steps_per_epoch);
  double eps_so_far = prev ? prev->epsilon : 0.0;
  const DpTrainResult r = train_dp_classifier(
      *t.model, split.train, opt, j.dp, plan, prev,
      [&](const DpStepInfo& s) {
        char extra[64];
        std::snprintf(extra, sizeof extra, "  eps %.3f", eps_so_far);
        bars.step(s.epoch, s.step, s.loss, extra);
      },
      [&](const DpEpochResult& e) {
        eps_so_far = e.epsilon;
        char text[128];
        std::snprintf(text, sizeof text, "loss %.4f  train acc %.4f  eps %.4f", e.train_loss, e.train_accuracy,
                      e.epsilon);
        bars.finish(text);
      });
  for (auto& [key, value] : sealed_ledger_metadata(r.ledger, *t.model)) t.metadata[key] = value;
  for (const auto& [key, value] : j.metadata) {
    AEGIS_CHECK(key.rfind("aegis.dp.", 0) != 0, "DP job metadata key '" << key << "' would overwrite the ledger");
    t.metadata[key] = value;
  }
  for (auto& [key, value] : dp_transform_metadata(j.dp, opt.noise_sigma)) t.metadata[key] = value;
  nn::TrainResult loop;
  loop.steps = r.steps;
  loop.seconds = r.seconds;
  for (const DpEpochResult& e : r.epochs) loop.epochs.push_back({e.epoch, e.train_loss, e.train_accuracy, e.seconds});
  DpReport report;
  report.training = nn::finish_training(j.job, t, split.test, loop, progress);
  report.epsilon = r.ledger.epsilon;
  report.delta = r.ledger.delta;
  report.noise_multiplier = r.noise_multiplier;
  report.sampling_rate = r.sampling_rate;
  report.max_grad_norm = r.ledger.max_grad_norm;
  report.accountant = accountant_name(r.ledger.accountant);
  report.clipping = clipping_name(r.ledger.clipping);
  report.sampling = sampling_name(r.ledger.sampling);
  report.total_steps = r.ledger.steps();
  report.augmult = j.dp.augmult;
  report.consistency = j.dp.consistency;
  return report;
}

}  // namespace aegis::privacy
