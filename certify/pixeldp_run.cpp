// PixelDP's evaluation over a dataset (certify/pixeldp_run.h): certificates, accuracies at the
// thresholds, and the CW-L2 attack on the expected scores.
#include "certify/pixeldp_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/timing.h"

namespace aegis::certify {

namespace {

// Certificates for the rows of `images`, in chunks of about one forward batch of noisy rows.
std::vector<PixelDpCertificate> certify_all(PixelDpNet& net, const PixelDpMechanism& m, const Tensor& images,
                                            const PixelDpCertifyOptions& o, Device device, ProgressSink& report) {
  const std::int64_t n = images.size(0), chunk = std::max<std::int64_t>(1, o.batch / o.draws);
  report.begin("certify", n, "examples");
  std::vector<PixelDpCertificate> out;
  for (std::int64_t b = 0; b < n; b += chunk) {
    const std::int64_t e = std::min(n, b + chunk);
    auto part = certify_pixeldp(net, m, images.rows(b, e), static_cast<std::uint64_t>(b), o, device);
    out.insert(out.end(), part.begin(), part.end());
    report.update(e, "");
  }
  report.end("");
  return out;
}

PixelDpAttackResult attack_cw(const std::shared_ptr<PixelDpNet>& net, const PixelDpMechanism& m,
                              const nn::Dataset& test, const std::vector<PixelDpCertificate>& clean,
                              const std::vector<double>& thresholds, const PixelDpAttackOptions& a,
                              PixelDpCertifyOptions o, Device device, ProgressSink& report) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t n = std::min(a.max, test.size());
  ExpectedScoresModel target(net, a.draws, true, 2);  // phase 2: the attack's fixed draws
  o.phase = 1;  // fresh noise for judging the adversarial inputs
  const std::vector<std::int32_t> labels = test.labels.to_vector<std::int32_t>();
  std::vector<double> broken_at(static_cast<std::size_t>(n), std::numeric_limits<double>::infinity());
  report.begin("attack cw-l2", n, "examples");
  for (std::int64_t b = 0; b < n; b += a.batch) {
    const std::int64_t e = std::min(n, b + a.batch);
    const Tensor x = test.images.rows(b, e).clone().to(device);
    const attacks::AttackResult r = attacks::cw_l2(target, x, test.labels.rows(b, e).clone().to(device), a.cw);
    const auto adv = certify_pixeldp(*net, m, r.adversarial, static_cast<std::uint64_t>(b), o, device);
    const std::vector<std::int32_t> success = r.success.to_vector<std::int32_t>();
    const std::vector<float> norm = r.perturbation_norm.to_vector<float>();
    for (std::int64_t i = 0; i < e - b; ++i) {
      const auto k = static_cast<std::size_t>(i), g = static_cast<std::size_t>(b + i);
      if (success[k] && adv[k].prediction != labels[g]) broken_at[g] = norm[k];
    }
    report.update(e, "");
  }
  report.end("");
  std::int64_t clean_correct = 0;
  std::vector<double> norms;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto g = static_cast<std::size_t>(i);
    if (clean[g].prediction != labels[g]) continue;
    ++clean_correct;
    if (std::isfinite(broken_at[g])) norms.push_back(broken_at[g]);
  }
  PixelDpAttackResult r;
  r.examples = n;
  for (double t : thresholds) {
    std::int64_t correct = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const auto g = static_cast<std::size_t>(i);
      correct += clean[g].prediction == labels[g] && !(broken_at[g] <= t);
    }
    r.accuracy_at.push_back(static_cast<double>(correct) / static_cast<double>(n));
  }
  std::sort(norms.begin(), norms.end());
  r.clean_accuracy = static_cast<double>(clean_correct) / static_cast<double>(n);
  r.accuracy_unbounded =
      static_cast<double>(clean_correct - static_cast<std::int64_t>(norms.size())) / static_cast<double>(n);
  r.median_norm = norms.empty() ? 0.0 : norms[norms.size() / 2];
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace

PixelDpRun run_pixeldp_certify(const std::shared_ptr<PixelDpNet>& net, const PixelDpMechanism& mechanism,
                               const nn::Dataset& test, const PixelDpRunOptions& options, Device device,
                               ProgressSink* progress) {
  const PixelDpCertifyOptions& o = options.certify;
  AEGIS_CHECK(o.draws >= 1, "pixeldp certify: draws " << o.draws << " must be at least 1");
  AEGIS_CHECK(o.batch >= 1, "pixeldp certify: batch " << o.batch << " must be at least 1");
  AEGIS_CHECK(!options.thresholds.empty(), "pixeldp certify: no robustness threshold given");
  for (double t : options.thresholds)
    AEGIS_CHECK(std::isfinite(t) && t >= 0.0, "pixeldp certify: threshold " << t << " must be ≥ 0 and finite");
  if (options.attack) {
    const PixelDpAttackOptions& a = *options.attack;
    AEGIS_CHECK(a.max >= 1 && a.batch >= 1 && a.draws >= 1,
                "pixeldp certify: the attack's max, batch and draws must be at least 1");
    AEGIS_CHECK(mechanism.norm == PixelDpNorm::L2,
                "pixeldp certify: the CW-L2 attack evaluates L2 robustness, but the model is an L1 (Laplace) model");
  }
  ProgressSink& report = progress_or_silent(progress);
  PixelDpRun run;
  run.certificates = certify_all(*net, mechanism, test.images, o, device, report);
  const std::vector<std::int32_t> labels = test.labels.to_vector<std::int32_t>();
  const auto n = static_cast<double>(test.size());
  std::int64_t correct = 0;
  double size_sum = 0.0;
  for (std::size_t i = 0; i < run.certificates.size(); ++i) {
    correct += run.certificates[i].prediction == labels[i];
    size_sum += run.certificates[i].robustness_size;
  }
  for (double t : options.thresholds) {
    std::int64_t c = 0;
    for (std::size_t i = 0; i < run.certificates.size(); ++i)
      c += run.certificates[i].prediction == labels[i] && run.certificates[i].robustness_size >= t;
    run.certified_accuracy.push_back(static_cast<double>(c) / n);
  }
  run.conventional_accuracy = static_cast<double>(correct) / n;
  run.mean_robustness_size = size_sum / n;
  if (options.attack)
    run.attack = attack_cw(net, mechanism, test, run.certificates, options.thresholds, *options.attack, o, device,
                           report);
  return run;
}

}  // namespace aegis::certify
