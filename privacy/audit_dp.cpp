#include "privacy/audit_dp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/philox.h"
#include "nn/functional.h"
#include "privacy/audit_canary.h"
#include "privacy/audit_farm.h"
#include "privacy/audit_stats.h"
#include "runtime/autograd.h"

namespace aegis::privacy {

namespace {

using audit_detail::Canary;

using audit_detail::kInclusion;
using audit_detail::kSigns;

void check_options(const DpAuditJob& j, std::int64_t parameters, std::int64_t held_out) {
  const DpAuditOptions& a = j.audit;
  if (a.canary == CanaryKind::Gradient)
    AEGIS_CHECK(a.canaries >= 1 && a.canaries <= parameters,
                "--canaries " << a.canaries << " must lie in [1, " << parameters
                              << "], the model's parameter count (one coordinate per canary)");
  else
    AEGIS_CHECK(a.canaries >= 1 && a.canaries <= held_out,
                "--canaries " << a.canaries << " must lie in [1, " << held_out
                              << "], the test split's size (input canaries are held-out examples)");
  AEGIS_CHECK(a.guesses >= 2 && a.guesses <= a.canaries && a.guesses % 2 == 0,
              "--guesses " << a.guesses << " must be even and lie in [2, canaries=" << a.canaries << "]");
  AEGIS_CHECK(a.confidence > 0.0 && a.confidence < 1.0, "--confidence " << a.confidence << " must lie in (0, 1)");
  AEGIS_CHECK(a.noise_scale > 0.0 && a.noise_scale <= 1.0, "noise_scale " << a.noise_scale << " must lie in (0, 1]");
  audit_detail::check_training(j.training, a.canary == CanaryKind::Gradient);
}

// Input canaries have no parameter, element or sign: those columns hold "-".
void write_scores(const std::string& path, const std::vector<Canary>& canaries, bool gradient) {
  std::ostringstream os;
  os << "idx\tparameter\telement\tsign\tincluded\tscore\n";
  char score[32];
  for (std::size_t i = 0; i < canaries.size(); ++i) {
    const Canary& c = canaries[i];
    std::snprintf(score, sizeof score, "%.9g", c.score);
    if (gradient)
      os << i << '\t' << c.param << '\t' << c.element << '\t' << (c.sign > 0 ? "+" : "-");
    else
      os << i << "\t-\t-\t-";
    os << '\t' << (c.included ? 1 : 0) << '\t' << score << '\n';
  }
  const std::string text = os.str();
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

}  // namespace

CanaryKind parse_canary_kind(const std::string& name) {
  if (name == "gradient") return CanaryKind::Gradient;
  if (name == "input") return CanaryKind::Input;
  AEGIS_THROW(InvalidArgument, "--canary " << name << " is not a canary kind: gradient or input");
}

const char* canary_kind_name(CanaryKind kind) { return kind == CanaryKind::Input ? "input" : "gradient"; }

nlohmann::json to_json(const DpAuditReport& r) {
  return {{"command", "audit dp"},
          {"method", "one-run, " + r.canary + " canaries"},
          {"canary", r.canary},
          {"canaries", r.canaries},
          {"included", r.included},
          {"guesses", r.guesses},
          {"correct", r.correct},
          {"confidence", r.confidence},
          {"epsilon_lower", r.epsilon_lower},
          {"epsilon_ceiling", r.epsilon_ceiling},
          {"epsilon_accounted", r.epsilon_accounted},
          {"delta", r.delta},
          {"failed", r.failed},
          {"scores_out", r.scores_out},
          {"training", to_json(r.training)}};
}

DpAuditReport run_dp_audit(const DpAuditJob& job, const nn::DatasetSplit& split, ProgressSink* progress) {
  const DpAuditOptions& a = job.audit;
  AEGIS_CHECK(!audit_detail::several_ranks(),
              "aegis audit dp without --runs (the one-run audit) runs in one process; "
              "under mpirun the many-run audit (--runs R) shares its runs over the ranks");
  const std::int64_t parameters = nn::start_model(job.training.job, split.train).model->num_parameters();
  check_options(job, parameters, split.test.size());
  const std::int64_t m = a.canaries;
  const bool gradient = a.canary == CanaryKind::Gradient;

  // Each canary is included with probability ½, keyed by the seed alone (fixed before training).
  std::vector<Canary> canaries(static_cast<std::size_t>(m));
  {
    const std::vector<std::int64_t> coords =
        gradient ? audit_detail::quiet_coordinates(job.training, split.train, m, a.seed) : std::vector<std::int64_t>{};
    const philox::Key signs{a.seed, philox::kPurposeAuditSetup, kSigns};
    const philox::Key inclusion{a.seed, philox::kPurposeAuditSetup, kInclusion};
    for (std::int64_t i = 0; i < m; ++i) {
      Canary& c = canaries[static_cast<std::size_t>(i)];
      if (gradient) {
        c.coordinate = coords[static_cast<std::size_t>(i)];
        c.sign = (philox::bits(signs, static_cast<std::uint64_t>(i)) & 1u) ? 1.0f : -1.0f;
      }
      c.included = (philox::bits(inclusion, static_cast<std::uint64_t>(i)) & 1u) != 0;
    }
  }

  DpAuditReport r;
  r.canary = canary_kind_name(a.canary);
  if (gradient)
    r.training = audit_detail::train_with_canaries(job.training, split, canaries, parameters, a.seed, 0,
                                                   a.noise_scale, progress);
  else
    r.training = audit_detail::train_with_input_canaries(
        job.training, split, audit_detail::input_canaries(split, m, a.seed), canaries, a.noise_scale, progress);

  // Guess the r/2 highest scores in and the r/2 lowest out (ties broken by index: fixed in advance).
  std::vector<std::size_t> order(canaries.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return canaries[x].score > canaries[y].score; });
  const std::int64_t half = a.guesses / 2;
  for (std::int64_t k = 0; k < half; ++k) {
    r.correct += canaries[order[static_cast<std::size_t>(k)]].included ? 1 : 0;
    r.correct += canaries[order[order.size() - 1 - static_cast<std::size_t>(k)]].included ? 0 : 1;
  }
  for (const Canary& c : canaries) r.included += c.included ? 1 : 0;
  r.canaries = m;
  r.guesses = a.guesses;
  r.confidence = a.confidence;
  r.delta = r.training.delta;
  r.epsilon_accounted = r.training.epsilon;
  r.epsilon_lower = one_run_epsilon(m, a.guesses, r.correct, r.delta, a.confidence);
  r.epsilon_ceiling = one_run_epsilon(m, a.guesses, a.guesses, r.delta, a.confidence);
  r.failed = r.epsilon_lower > r.epsilon_accounted;
  if (!job.scores_out.empty()) {
    write_scores(job.scores_out, canaries, gradient);
    r.scores_out = job.scores_out;
  }
  ProgressSink& p = progress_or_silent(progress);
  if (r.failed) {
    std::ostringstream os;
    os << "AUDIT FAILED: the run leaks more than it accounts for: epsilon >= " << r.epsilon_lower << " with "
       << 100.0 * a.confidence << "% confidence, but the ledger says epsilon = " << r.epsilon_accounted;
    p.warning(os.str());
  }
  return r;
}

}  // namespace aegis::privacy
