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
#include "privacy/audit_stats.h"
#include "runtime/autograd.h"

namespace aegis::privacy {

namespace {

// Setup draws of the audit: which "choice" word of kPurposeAuditSetup each one uses.
enum SetupChoice : std::uint32_t { kCoordinates = 0, kSigns = 1, kInclusion = 2 };

struct Canary {
  std::int64_t coordinate = 0;  // flat index over the model's parameters, in registration order
  std::size_t param = 0;        // which parameter tensor
  std::int64_t element = 0;     // element within it
  float sign = 1.0f;
  bool included = false;
  double score = 0.0;
};

void check_options(const DpAuditJob& j, std::int64_t parameters) {
  const DpAuditOptions& a = j.audit;
  AEGIS_CHECK(a.canaries >= 1 && a.canaries <= parameters,
              "--canaries " << a.canaries << " must lie in [1, " << parameters
                            << "], the model's parameter count (one coordinate per canary)");
  AEGIS_CHECK(a.guesses >= 2 && a.guesses <= a.canaries && a.guesses % 2 == 0,
              "--guesses " << a.guesses << " must be even and lie in [2, canaries=" << a.canaries << "]");
  AEGIS_CHECK(a.confidence > 0.0 && a.confidence < 1.0, "--confidence " << a.confidence << " must lie in (0, 1)");
  AEGIS_CHECK(a.noise_scale > 0.0 && a.noise_scale <= 1.0, "noise_scale " << a.noise_scale << " must lie in (0, 1]");
  const DpTrainOptions& dp = j.training.dp;
  AEGIS_CHECK(dp.clipping == Clipping::Flat,
              "the DP audit needs flat clipping (a canary is a record of gradient norm C), not --clipping "
                  << clipping_name(dp.clipping));
  AEGIS_CHECK(dp.sampling == Sampling::Poisson,
              "the DP audit needs Poisson sampling (canaries are sampled like records), not --sampling "
                  << sampling_name(dp.sampling));
  AEGIS_CHECK(!dp.noise.secure, "the DP audit runs the reproducible (Philox) noise path, not --secure");
  AEGIS_CHECK(j.training.resume.empty(), "the DP audit trains a fresh model; it cannot resume " << j.training.resume);
}

// How much the data move each coordinate: Σ over batches of |∂(mean loss)/∂θ| at the model's
// initial weights (the same seed, so the same initialization as the audited run).
std::vector<double> data_activity(const DpAuditJob& j, const nn::Dataset& train) {
  nn::TrainedModel t = nn::start_model(j.training.job, train);
  const Device device = j.training.job.train.device;
  t.model->to(device);
  t.model->train(true);
  t.model->set_requires_grad(true);
  const std::vector<autograd::Var> params = t.model->parameters();
  std::vector<double> activity;
  for (const auto& p : params) activity.resize(activity.size() + static_cast<std::size_t>(p.value().numel()), 0.0);
  nn::BatchOptions bo;
  bo.batch_size = 256;
  bo.device = device;
  nn::BatchIterator batches(train, bo, 0);
  nn::Batch batch;
  while (batches.next(batch)) {
    for (auto p : params) p.zero_grad();
    autograd::backward(nn::F::cross_entropy(t.model->forward(autograd::Var(batch.images, false)), batch.labels));
    std::size_t offset = 0;
    for (const auto& p : params) {
      const auto n = static_cast<std::size_t>(p.value().numel());
      if (p.has_grad()) {
        const std::vector<float> g = p.grad().to(Device::cpu()).to_vector<float>();
        for (std::size_t i = 0; i < n; ++i) activity[offset + i] += std::fabs(static_cast<double>(g[i]));
      }
      offset += n;
    }
  }
  for (auto p : params) p.zero_grad();
  return activity;
}

// The m coordinates the data move least (ties, such as the weights of an input pixel that is 0 in
// every example, broken by a random key from the seed): there the score sees the canary and the
// noise rather than the data. The choice uses the data and the seed only, never the canaries'
// inclusion, so the one-run theorem still applies.
std::vector<std::int64_t> choose_coordinates(std::int64_t m, const std::vector<double>& activity, std::uint64_t seed) {
  const philox::Key key{seed, philox::kPurposeAuditSetup, kCoordinates};
  std::vector<std::int64_t> all(activity.size());
  std::iota(all.begin(), all.end(), std::int64_t{0});
  std::sort(all.begin(), all.end(), [&](std::int64_t a, std::int64_t b) {
    const double x = activity[static_cast<std::size_t>(a)], y = activity[static_cast<std::size_t>(b)];
    if (x != y) return x < y;
    const std::uint32_t ka = philox::bits(key, static_cast<std::uint64_t>(a)),
                        kb = philox::bits(key, static_cast<std::uint64_t>(b));
    return ka != kb ? ka < kb : a < b;
  });
  all.resize(static_cast<std::size_t>(m));
  return all;
}

void write_scores(const std::string& path, const std::vector<Canary>& canaries) {
  std::ostringstream os;
  os << "idx\tparameter\telement\tsign\tincluded\tscore\n";
  char score[32];
  for (std::size_t i = 0; i < canaries.size(); ++i) {
    const Canary& c = canaries[i];
    std::snprintf(score, sizeof score, "%.9g", c.score);
    os << i << '\t' << c.param << '\t' << c.element << '\t' << (c.sign > 0 ? "+" : "-") << '\t' << (c.included ? 1 : 0)
       << '\t' << score << '\n';
  }
  const std::string text = os.str();
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

}  // namespace

nlohmann::json to_json(const DpAuditReport& r) {
  return {{"command", "audit dp"},
          {"method", "one-run, gradient canaries"},
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
  const std::int64_t parameters = nn::start_model(job.training.job, split.train).model->num_parameters();
  check_options(job, parameters);
  const std::int64_t m = a.canaries;

  std::vector<Canary> canaries(static_cast<std::size_t>(m));
  {
    const std::vector<std::int64_t> coords = choose_coordinates(m, data_activity(job, split.train), a.seed);
    const philox::Key signs{a.seed, philox::kPurposeAuditSetup, kSigns};
    const philox::Key inclusion{a.seed, philox::kPurposeAuditSetup, kInclusion};
    for (std::int64_t i = 0; i < m; ++i) {
      Canary& c = canaries[static_cast<std::size_t>(i)];
      c.coordinate = coords[static_cast<std::size_t>(i)];
      c.sign = (philox::bits(signs, static_cast<std::uint64_t>(i)) & 1u) ? 1.0f : -1.0f;
      c.included = (philox::bits(inclusion, static_cast<std::uint64_t>(i)) & 1u) != 0;
    }
  }

  // The canaries by parameter tensor, found from the optimizer's parameters at the first step.
  std::vector<std::vector<std::size_t>> by_param;
  std::vector<Shape> shapes;
  double sampling_rate = 0.0, max_grad_norm = job.training.dp.noise.max_grad_norm;

  DpAuditJob j = job;
  j.training.dp.before_update = [&](DpOptimizer& optimizer, std::int64_t step) {
    if (step == 0) {
      const auto& params = optimizer.parameters();
      by_param.assign(params.size(), {});
      std::vector<std::int64_t> starts;
      std::int64_t offset = 0;
      for (const auto& p : params) {
        starts.push_back(offset);
        shapes.push_back(p.value().shape());
        offset += p.value().numel();
      }
      AEGIS_CHECK(offset == parameters, "DP audit: the optimizer holds " << offset << " parameters, the model "
                                                                         << parameters);
      for (std::size_t i = 0; i < canaries.size(); ++i) {
        Canary& c = canaries[i];
        c.param = static_cast<std::size_t>(std::upper_bound(starts.begin(), starts.end(), c.coordinate) - starts.begin() - 1);
        c.element = c.coordinate - starts[c.param];
        by_param[c.param].push_back(i);
      }
      // q·N over N: the expected batch size is the plan's, and N the training set's.
      sampling_rate = optimizer.noise_options().expected_batch_size / static_cast<double>(split.train.size());
      if (a.noise_scale != 1.0)
        optimizer.set_noise(optimizer.noise_options().noise_multiplier * a.noise_scale, max_grad_norm);
      optimizer.set_update_observer([&](std::size_t index, const Tensor& noisy_grad) {
        if (by_param[index].empty()) return;
        const std::vector<float> g = noisy_grad.to(Device::cpu()).to_vector<float>();
        for (std::size_t i : by_param[index]) {
          Canary& c = canaries[i];
          c.score += static_cast<double>(c.sign) * static_cast<double>(g[static_cast<std::size_t>(c.element)]);
        }
      });
    }
    // This step's canary gradients: every included canary joins with probability q.
    const philox::Key key = philox::step_key(a.seed, philox::kPurposeAuditSampling, static_cast<std::uint64_t>(step));
    std::vector<std::vector<float>> values(by_param.size());
    for (std::size_t i = 0; i < canaries.size(); ++i) {
      const Canary& c = canaries[i];
      if (!c.included || philox::uniform(key, i) >= sampling_rate) continue;
      std::vector<float>& v = values[c.param];
      if (v.empty()) v.assign(static_cast<std::size_t>(shape_numel(shapes[c.param])), 0.0f);
      v[static_cast<std::size_t>(c.element)] = c.sign * static_cast<float>(max_grad_norm);
    }
    std::vector<Tensor> canary(by_param.size());
    for (std::size_t p = 0; p < values.size(); ++p)
      if (!values[p].empty()) canary[p] = Tensor::from_vector(values[p], shapes[p]);
    optimizer.set_canary(std::move(canary));
  };

  DpAuditReport r;
  r.training = run_dp_training(j.training, split, progress);

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
    write_scores(job.scores_out, canaries);
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
