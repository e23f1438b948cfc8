#include "privacy/audit_canary.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/philox.h"
#include "nn/functional.h"
#include "runtime/autograd.h"

namespace aegis::privacy::audit_detail {

namespace {

// How much the data move each coordinate: Σ over batches of |∂(mean loss)/∂θ| at the model's
// initial weights (the same seed, so the same initialization as the audited run).
std::vector<double> data_activity(const DpJob& training, const nn::Dataset& train) {
  nn::TrainedModel t = nn::start_model(training.job, train);
  const Device device = training.job.train.device;
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

}  // namespace

void check_training(const DpJob& training, bool gradient_canaries) {
  const DpTrainOptions& dp = training.dp;
  AEGIS_CHECK(!gradient_canaries || dp.clipping == Clipping::Flat,
              "the DP audit needs flat clipping (a canary is a record of gradient norm C), not --clipping "
                  << clipping_name(dp.clipping));
  AEGIS_CHECK(dp.sampling == Sampling::Poisson,
              "the DP audit needs Poisson sampling (canaries are sampled like records), not --sampling "
                  << sampling_name(dp.sampling));
  AEGIS_CHECK(!dp.noise.secure, "the DP audit runs the reproducible (Philox) noise path, not --secure");
  AEGIS_CHECK(training.resume.empty(), "the DP audit trains a fresh model; it cannot resume " << training.resume);
}

// The m coordinates the data move least (ties, such as the weights of an input pixel that is 0 in
// every example, broken by a random key from the seed): there the score sees the canary and the
// noise rather than the data. The choice uses the data and the seed only, never the canaries'
// inclusion, so the audits' theorems still apply.
std::vector<std::int64_t> quiet_coordinates(const DpJob& training, const nn::Dataset& train, std::int64_t m,
                                            std::uint64_t seed) {
  const std::vector<double> activity = data_activity(training, train);
  AEGIS_CHECK(m >= 1 && m <= static_cast<std::int64_t>(activity.size()),
              "canaries " << m << " must lie in [1, " << activity.size() << "], the model's parameter count");
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

DpReport train_with_canaries(const DpJob& training, const nn::DatasetSplit& split, std::vector<Canary>& canaries,
                             std::int64_t parameters, std::uint64_t seed, std::uint64_t key_offset, double noise_scale,
                             ProgressSink* progress) {
  // The canaries by parameter tensor, found from the optimizer's parameters at the first step.
  std::vector<std::vector<std::size_t>> by_param;
  std::vector<Shape> shapes;
  double sampling_rate = 0.0;
  const double max_grad_norm = training.dp.noise.max_grad_norm;

  DpJob j = training;
  j.dp.before_update = [&](DpOptimizer& optimizer, std::int64_t step) {
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
      AEGIS_CHECK(offset == parameters,
                  "DP audit: the optimizer holds " << offset << " parameters, the model " << parameters);
      for (std::size_t i = 0; i < canaries.size(); ++i) {
        Canary& c = canaries[i];
        c.param =
            static_cast<std::size_t>(std::upper_bound(starts.begin(), starts.end(), c.coordinate) - starts.begin() - 1);
        c.element = c.coordinate - starts[c.param];
        by_param[c.param].push_back(i);
      }
      // q·N over N: the expected batch size is the plan's, and N the training set's.
      sampling_rate = optimizer.noise_options().expected_batch_size / static_cast<double>(split.train.size());
      if (noise_scale != 1.0)
        optimizer.set_noise(optimizer.noise_options().noise_multiplier * noise_scale, max_grad_norm);
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
    const philox::Key key =
        philox::step_key(seed, philox::kPurposeAuditSampling, key_offset + static_cast<std::uint64_t>(step));
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

  return run_dp_training(j, split, progress);
}

}  // namespace aegis::privacy::audit_detail
