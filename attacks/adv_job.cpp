#include "attacks/adv_job.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace aegis::attacks {

nlohmann::json to_json(const AdvReport& r) {
  nlohmann::json j = nn::to_json(r.training);
  j["adv_method"] = r.adv_method;
  j["adv_eps"] = r.adv_eps;
  j["adv_steps"] = r.adv_steps;
  j["adv_epochs_run"] = r.adv_epochs_run;
  if (!r.adv_check_robust_accuracy.empty()) {
    j["adv_check_robust_accuracy"] = r.adv_check_robust_accuracy;
    j["adv_stopped_early"] = r.adv_stopped_early;
    j["adv_best_epoch"] = r.adv_best_epoch;
  }
  return j;
}

AdvReport run_adversarial_training(const nn::TrainJob& job, const AdvTrainOptions& adv, const nn::DatasetSplit& split,
                                   ProgressSink* progress) {
  const nn::TrainOptions& opt = job.train;
  AEGIS_CHECK(opt.noise_sigma == 0.0f,
              "--adv and --noise-sigma train for two different robustness notions: give one");
  AEGIS_CHECK(std::isfinite(adv.eps) && adv.eps > 0.0f, "--adv needs --eps > 0 (got " << adv.eps << ")");
  nn::check_train_options(opt);
  nn::TrainedModel t = nn::start_model(job, split.train);
  nn::announce_training(job, t, split, std::string(", adversarial ") + adv_method_name(adv.method), progress);
  const AdvPlan plan = plan_adversarial(split.train.size(), opt, adv);
  nn::EpochProgress bars(progress, plan.epochs, plan.steps_per_epoch);
  std::size_t epochs_done = 0;
  const AdvTrainResult r = train_adversarial(
      *t.model, split.train, opt, adv, [&](const nn::StepInfo& s) { bars.step(s.epoch, s.step, s.loss); },
      [&](const nn::EpochResult& e) {
        char text[128];
        std::snprintf(text, sizeof text, "adv loss %.4f  adv train acc %.4f", e.train_loss, e.train_accuracy);
        bars.finish(text);
        ++epochs_done;
      });
  if (r.stopped_early) {
    std::ostringstream os;
    os << "catastrophic overfitting: held-out PGD-10 accuracy fell more than " << adv.overfit_drop * 100
       << " points; stopped after " << epochs_done << " epoch(s) and restored epoch " << r.best_epoch;
    progress_or_silent(progress).warning(os.str());
  }
  for (const auto& [key, value] : adv_metadata(adv)) t.metadata[key] = value;
  AdvReport report;
  report.training = nn::finish_training(job, t, split.test, r, progress);
  report.adv_method = adv_method_name(adv.method);
  report.adv_eps = adv.eps;
  report.adv_steps = adv.steps;
  report.adv_epochs_run = static_cast<std::int64_t>(r.epochs.size());
  report.adv_check_robust_accuracy = r.check_robust_accuracy;
  report.adv_stopped_early = r.stopped_early;
  report.adv_best_epoch = r.best_epoch;
  return report;
}

}  // namespace aegis::attacks
