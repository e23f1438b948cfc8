#include "trust/trust_report.h"

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "attacks/evaluate.h"
#include "attacks/suite.h"
#include "certify/analyze.h"
#include "certify/certify_run.h"
#include "certify/smoothing.h"
#include "certify/sweep.h"
#include "core/error.h"
#include "nn/job.h"
#include "nn/model_file.h"
#include "nn/train.h"
#include "privacy/audit_mia.h"
#include "privacy/dp_train.h"
#include "privacy/ledger_digest.h"
#include "privacy/model_report.h"

namespace aegis::trust {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void check_options(const TrustOptions& o) {
  AEGIS_CHECK(o.max >= 1, "--max " << o.max << " must be at least 1");
  AEGIS_CHECK(std::isfinite(o.sigma) && o.sigma >= 0.0, "--sigma " << o.sigma << " must be positive (0: the model's)");
  AEGIS_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, "--eps " << o.eps << " must be finite and non-negative");
  AEGIS_CHECK(o.pgd_steps >= 1, "--pgd-steps " << o.pgd_steps << " must be at least 1");
  AEGIS_CHECK(o.suite_steps >= 0, "--suite-steps " << o.suite_steps << " must be at least 0 (0: no suite)");
  for (double r : o.radii) AEGIS_CHECK(std::isfinite(r) && r >= 0.0, "radius " << r << " must be non-negative");
}

}  // namespace

TrustReport trust_report(const TrustOptions& o, ProgressSink* progress) {
  check_options(o);
  ProgressSink& report = progress_or_silent(progress);
  TrustReport r;
  r.model_file = o.model_file;
  r.data = o.data;
  r.device = o.device.str();
  r.eps = o.eps;

  nn::LoadedClassifier loaded = nn::load_classifier(o.model_file);
  r.model = loaded.spec.name;
  r.training = privacy::training_metadata(loaded.metadata);
  // The ledger as `aegis report` checks it, on the weights just loaded (not a second read).
  r.ledger_status = privacy::ledger_status_name(privacy::verify_ledger(loaded.metadata, *loaded.model).status);
  const privacy::PrivacyLedger ledger = privacy::PrivacyLedger::from_metadata(loaded.metadata, o.model_file);
  if (!ledger.phases.empty()) {
    r.epsilon = ledger.epsilon;
    r.delta = ledger.delta;
  }
  const nn::DatasetSplit split = nn::load_dataset(o.data, o.data_dir);
  nn::check_data_fits(split.test, loaded.spec, o.model_file, o.data);
  const nn::Dataset test = nn::first_examples(split.test, o.max);
  r.examples = test.size();
  nn::Module& model = *loaded.model;
  model.to(o.device);

  auto start = std::chrono::steady_clock::now();
  report.begin("accuracy", test.size(), "examples");
  r.accuracy = nn::evaluate(model, test, o.device, 1000, [&](std::int64_t done, std::int64_t) {
                 report.update(done, "");
               }).accuracy;
  report.end("");
  r.seconds["accuracy"] = seconds_since(start);

  // Certification at the model's σ.
  const double sigma = o.sigma > 0.0                               ? o.sigma
                       : loaded.metadata.count("aegis.noise_sigma") ? certify::trained_noise_sigma(loaded.metadata, o.model_file)
                                                                    : 0.0;
  if (sigma > 0.0) {
    start = std::chrono::steady_clock::now();
    certify::SmoothingOptions so;
    so.sigma = sigma;
    so.n0 = o.n0;
    so.n = o.n;
    so.alpha = o.alpha;
    so.batch = o.batch;
    so.seed = o.seed;
    certify::check_smoothing_options(so);
    certify::SmoothedClassifier smoothed(model, loaded.spec.input_shape, loaded.spec.num_classes, o.device);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(test.size()));
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(i);
    std::int64_t samples = 0;
    report.begin("certify sigma " + certify::format_g(sigma), test.size() * (o.n0 + o.n), "samples");
    const auto certs = certify::certify_examples(smoothed, test, idx, so, [&](std::int64_t rows) {
      samples += rows;
      report.update(samples, "");
    });
    report.end("");
    certify::SweepRows sweep;
    sweep.file = o.model_file;
    sweep.settings.smoothing = so;
    sweep.settings.model = o.model_file;
    sweep.settings.data = o.data;
    const auto labels = test.labels.to_vector<std::int32_t>();
    for (std::size_t i = 0; i < certs.size(); ++i)
      sweep.rows.push_back(certify::sweep_row(idx[i], labels[i], certs[i]));
    certify::AnalyzeOptions ao;
    ao.radii = o.radii;
    const certify::Analysis analysis = certify::analyze_rows({sweep}, ao);
    const certify::SweepCurve& curve = analysis.curves.front();
    r.sigma = sigma;
    r.radii = analysis.radii;
    r.certified_accuracy = curve.certified_accuracy;
    r.acr = curve.acr;
    r.abstention_rate = curve.abstention_rate;
    if (!o.plot.empty()) certify::plot_certified_accuracy(analysis, o.plot);
    r.seconds["certify"] = seconds_since(start);
  } else {
    r.certification_skipped = "the model file records no Gaussian augmentation (aegis.noise_sigma); pass --sigma";
  }

  // Attacks: PGD, then the suite's per-example worst case.
  start = std::chrono::steady_clock::now();
  attacks::EvaluationOptions eo;
  eo.method = attacks::AttackMethod::Pgd;
  eo.attack.norm = Norm::Linf;
  eo.attack.eps = attacks::broadcast_per_example(static_cast<float>(o.eps), 1);
  eo.attack.steps = o.pgd_steps;
  eo.attack.seed = o.seed;
  r.pgd_robust_accuracy = attacks::evaluate(model, test, o.device, loaded.spec.num_classes, eo, progress).robust_accuracy;
  r.seconds["pgd"] = seconds_since(start);
  if (o.suite_steps > 0) {
    start = std::chrono::steady_clock::now();
    attacks::SuiteOptions su;
    su.eps = static_cast<float>(o.eps);
    su.steps = o.suite_steps;
    su.seed = o.seed;
    const attacks::SuiteResult s = attacks::run_suite(model, test, o.device, su, progress);
    r.suite_robust_accuracy = s.robust_accuracy;
    r.suite_per_attack = s.per_attack;
    r.seconds["suite"] = seconds_since(start);
  }

  // Membership: the loss attack on as many training examples as test examples.
  if (o.membership) {
    start = std::chrono::steady_clock::now();
    const privacy::LossAttackReport m =
        privacy::loss_attack(model, nn::first_examples(split.train, test.size()), test, o.device);
    r.mia_auc = m.metrics.auc;
    r.mia_tpr_at_1_fpr = m.metrics.tpr_at_1_fpr;
    r.mia_tpr_at_0_1_fpr = m.metrics.tpr_at_0_1_fpr;
    r.seconds["membership"] = seconds_since(start);
  }
  return r;
}

nlohmann::json to_json(const TrustReport& r) {
  const auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
  nlohmann::json certified = nlohmann::json::object();
  for (std::size_t i = 0; i < r.radii.size(); ++i) certified[certify::format_g(r.radii[i])] = r.certified_accuracy[i];
  nlohmann::json per_attack = nlohmann::json::object();
  for (const auto& [name, acc] : r.suite_per_attack) per_attack[name] = acc;
  nlohmann::json j{{"model_file", r.model_file},
                   {"model", r.model},
                   {"data", r.data},
                   {"device", r.device},
                   {"examples", r.examples},
                   {"accuracy", r.accuracy},
                   {"training", r.training},
                   {"ledger_status", r.ledger_status},
                   {"epsilon", opt(r.epsilon)},
                   {"delta", opt(r.delta)},
                   {"sigma", opt(r.sigma)},
                   {"certified_accuracy", certified},
                   {"acr", r.sigma ? nlohmann::json(r.acr) : nlohmann::json()},
                   {"abstention_rate", r.sigma ? nlohmann::json(r.abstention_rate) : nlohmann::json()},
                   {"eps", r.eps},
                   {"pgd_robust_accuracy", r.pgd_robust_accuracy},
                   {"suite_robust_accuracy", opt(r.suite_robust_accuracy)},
                   {"suite_per_attack", per_attack},
                   {"mia_auc", opt(r.mia_auc)},
                   {"mia_tpr_at_1_fpr", opt(r.mia_tpr_at_1_fpr)},
                   {"mia_tpr_at_0_1_fpr", opt(r.mia_tpr_at_0_1_fpr)},
                   {"seconds", r.seconds}};
  if (!r.certification_skipped.empty()) j["certification_skipped"] = r.certification_skipped;
  return j;
}

}  // namespace aegis::trust
