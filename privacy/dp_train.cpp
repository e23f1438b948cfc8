#include "privacy/dp_train.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>

#include "nn/optim.h"
#include "nn/schedule.h"
#include "privacy/noise.h"
#include "privacy/sampling.h"
#include "core/checked_math.h"

namespace aegis::privacy {

std::int64_t PrivacyLedger::steps() const {
  std::int64_t t = 0;
  for (const SgmPhase& p : phases) t += p.steps;
  return t;
}

std::map<std::string, std::string> PrivacyLedger::to_metadata() const {
  nlohmann::json ph = nlohmann::json::array();
  for (const SgmPhase& p : phases)
    ph.push_back({{"noise_multiplier", p.noise_multiplier}, {"sampling_rate", p.sampling_rate}, {"steps", p.steps}});
  auto num = [](double v) { return nlohmann::json(v).dump(); };  // shortest round-trip text
  std::map<std::string, std::string> m;
  m["aegis.dp.phases"] = ph.dump();
  m["aegis.dp.max_grad_norm"] = num(max_grad_norm);
  m["aegis.dp.delta"] = num(delta);
  m["aegis.dp.epsilon"] = num(epsilon);
  m["aegis.dp.accountant"] = accountant;
  m["aegis.dp.clipping"] = clipping;
  m["aegis.dp.secure"] = secure ? "true" : "false";
  m["aegis.dp.sampling"] = sampling;
  m["aegis.dp.steps"] = std::to_string(steps());
  if (!phases.empty()) {
    m["aegis.dp.noise_multiplier"] = num(phases.back().noise_multiplier);
    m["aegis.dp.sampling_rate"] = num(phases.back().sampling_rate);
  }
  return m;
}

PrivacyLedger PrivacyLedger::from_metadata(const std::map<std::string, std::string>& meta, const std::string& source) {
  PrivacyLedger l;
  auto it = meta.find("aegis.dp.phases");
  if (it == meta.end()) return l;
  try {
    for (const auto& p : nlohmann::json::parse(it->second))
      l.phases.push_back({p.at("noise_multiplier").get<double>(), p.at("sampling_rate").get<double>(),
                          p.at("steps").get<std::int64_t>()});
    l.max_grad_norm = std::stod(meta.at("aegis.dp.max_grad_norm"));
    l.delta = std::stod(meta.at("aegis.dp.delta"));
    l.epsilon = std::stod(meta.at("aegis.dp.epsilon"));
    l.accountant = meta.at("aegis.dp.accountant");
    l.clipping = meta.at("aegis.dp.clipping");
    l.secure = meta.at("aegis.dp.secure") == "true";
    if (auto sm = meta.find("aegis.dp.sampling"); sm != meta.end()) l.sampling = sm->second;
    check_phases(l.phases);
  } catch (const std::exception& e) {
    AEGIS_THROW(IoError, source << ": malformed privacy ledger in the metadata (" << e.what() << ")");
  }
  return l;
}

std::int64_t dp_steps_per_epoch(double q) {
  AEGIS_CHECK(q > 0.0 && q <= 1.0, "sampling rate " << q << " must be in (0, 1]");
  return std::max<std::int64_t>(1, std::llround(1.0 / q));
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

DpTrainResult train_dp_classifier(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& o,
                                  const DpTrainOptions& dp, const PrivacyLedger* previous,
                                  const std::function<void(const DpStepInfo&)>& on_step,
                                  const std::function<void(const DpEpochResult&)>& on_epoch) {
  const std::int64_t n = train.size();
  AEGIS_CHECK(n > 0, "training set '" << train.name << "' is empty");
  nn::check_train_options(o);
  check_delta(dp.delta);
  AEGIS_CHECK(std::isfinite(dp.max_grad_norm) && dp.max_grad_norm > 0.0,
              "max grad norm " << dp.max_grad_norm << " must be positive and finite");
  AEGIS_CHECK(dp.clipping == "flat" || dp.clipping == "per-layer" || dp.clipping == "adaptive",
              "clipping '" << dp.clipping << "' is not supported (expected flat, per-layer or adaptive)");
  const bool adaptive = dp.clipping == "adaptive";
  AEGIS_CHECK(dp.sampling == "poisson" || dp.sampling == "shuffle",
              "sampling '" << dp.sampling << "' is unknown (expected poisson or shuffle)");
  const bool shuffle = dp.sampling == "shuffle";
  AEGIS_CHECK(!(shuffle && dp.secure), "secure mode samples with Poisson sampling only");
  if (adaptive) {
    AEGIS_CHECK(dp.target_quantile > 0.0 && dp.target_quantile < 1.0,
                "target quantile " << dp.target_quantile << " must be in (0, 1)");
    AEGIS_CHECK(std::isfinite(dp.clip_lr) && dp.clip_lr > 0.0, "clip learning rate " << dp.clip_lr << " must be positive");
    AEGIS_CHECK(dp.count_noise >= 0.0 && std::isfinite(dp.count_noise),
                "count noise " << dp.count_noise << " must be non-negative (0: expected batch size / 20)");
    AEGIS_CHECK(!dp.secure, "adaptive clipping is not available in secure mode");
  }
  AEGIS_CHECK(dp.accountant == "rdp" || dp.accountant == "prv",
              "accountant '" << dp.accountant << "' is unknown (expected rdp or prv)");
  double q = 0.0;
  if (dp.sampling_rate) {
    q = *dp.sampling_rate;
    AEGIS_CHECK(q > 0.0 && q <= 1.0, "sampling rate " << q << " must be in (0, 1]");
  } else {
    AEGIS_CHECK(o.batch_size <= n, "batch size " << o.batch_size << " must be in [1, " << n << "] (the dataset size)");
    q = static_cast<double>(o.batch_size) / static_cast<double>(n);
  }
  if (previous && !previous->phases.empty()) {
    AEGIS_CHECK(previous->delta == dp.delta,
                "resuming a ledger with delta " << previous->delta << " under a different delta " << dp.delta);
    AEGIS_CHECK(previous->max_grad_norm == dp.max_grad_norm, "resuming a ledger with max grad norm "
                                                                 << previous->max_grad_norm << " under a different one, "
                                                                 << dp.max_grad_norm);
  }
  const std::int64_t steps_per_epoch = dp_steps_per_epoch(q);
  const std::int64_t total_steps = checked_mul(steps_per_epoch, o.epochs, "DP-SGD steps per epoch × epochs");

  std::vector<SgmPhase> phases = previous ? previous->phases : std::vector<SgmPhase>{};
  double sigma = dp.noise_multiplier;
  if (sigma == 0.0) {
    AEGIS_CHECK(std::isfinite(dp.target_epsilon) && dp.target_epsilon > 0.0,
                "target epsilon " << dp.target_epsilon << " must be positive (or give a noise multiplier)");
    AEGIS_CHECK(phases.empty(), "calibrating to a target epsilon while resuming is not supported: give "
                                "--noise-multiplier for the new phase");
    sigma = calibrate_noise_multiplier(dp.accountant, dp.target_epsilon, q, total_steps, dp.delta);
  }
  AEGIS_CHECK(std::isfinite(sigma) && sigma > 0.0, "noise multiplier " << sigma << " must be positive and finite");
  const double expected_batch = q * static_cast<double>(n);
  // Adaptive clipping splits σ between the gradient sum (σ_Δ) and the unclipped count (σ_b).
  const double count_sigma = dp.count_noise > 0.0 ? dp.count_noise : expected_batch / 20.0;
  double gradient_sigma = sigma;
  if (adaptive) {
    AEGIS_CHECK(2.0 * count_sigma > sigma, "adaptive clipping needs count noise σ_b = "
                                               << count_sigma << " above σ/2 = " << sigma / 2
                                               << " (raise --count-noise or the batch size)");
    gradient_sigma = 1.0 / std::sqrt(1.0 / (sigma * sigma) - 1.0 / (4.0 * count_sigma * count_sigma));
  }

  model.to(o.device);
  model.train(true);
  model.set_requires_grad(true);
  enable_per_example_capture(model, true);
  ClipOptions clip;
  clip.max_grad_norm = static_cast<float>(dp.max_grad_norm);
  clip.method = dp.norm_method;
  clip.per_layer = dp.clipping == "per-layer";

  DpNoiseOptions noise;
  noise.noise_multiplier = gradient_sigma;
  noise.max_grad_norm = dp.max_grad_norm;
  noise.expected_batch_size = expected_batch;
  noise.seed = o.seed;
  noise.secure = dp.secure;
  // Noise and sampling are keyed by the full 64-bit global step (philox::step_key); a step beyond
  // what the key holds would reuse an earlier step's noise and sample, so refuse such a run.
  const std::int64_t steps_before = previous ? previous->steps() : 0;
  constexpr auto kMaxStep = static_cast<std::int64_t>(philox::kMaxKeyedStep);
  AEGIS_CHECK(steps_before >= 0 && steps_before <= kMaxStep && total_steps <= kMaxStep - steps_before,
              "DP-SGD: " << steps_before << " earlier steps + " << total_steps << " new ones exceed the " << kMaxStep
                         << " steps whose noise and sampling keys are distinct");
  noise.first_step = static_cast<std::uint64_t>(steps_before);
  std::unique_ptr<DpOptimizer> optimizer =
      make_dp_optimizer(*nn::make_optimizer(o.optimizer, model.parameters(), o.lr, o.momentum), noise);
  // The accountant composes the mechanism's overall multiplier: σ itself under adaptive clipping
  // (gradient and count noise together), else what the optimizer really adds.
  const double accounted_sigma = adaptive ? sigma : optimizer->effective_noise_multiplier();
  double clip_norm = dp.max_grad_norm;
  auto schedule = nn::make_schedule(o.schedule, o.lr, total_steps);
  // Sampling continues the step counter of the ledger too: a resumed run draws fresh batches.
  const PoissonSampler sampler(n, q, o.seed, dp.secure);
  const std::int64_t capacity = sampler.capacity();

  DpTrainResult result;
  result.noise_multiplier = sigma;
  result.sampling_rate = q;
  const auto t_start = std::chrono::steady_clock::now();
  DpStepInfo info;
  info.total_steps = total_steps;
  for (std::int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const auto t_epoch = std::chrono::steady_clock::now();
    double loss_sum = 0.0;
    std::int64_t correct = 0, seen = 0;
    std::vector<std::vector<std::int64_t>> epoch_batches;
    if (shuffle) {
      const auto batch = std::max<std::int64_t>(1, std::llround(q * static_cast<double>(n)));
      epoch_batches = shuffled_batches(n, batch, o.seed, static_cast<std::uint32_t>(epoch + (previous ? previous->steps() : 0)));
    }
    for (std::int64_t s = 0; s < steps_per_epoch; ++s) {
      const float lr = schedule->lr_at(result.steps);
      optimizer->set_lr(lr);
      optimizer->zero_grad();
      const std::uint64_t global_step = noise.first_step + static_cast<std::uint64_t>(result.steps);
      const std::vector<std::int64_t> sample =
          shuffle ? epoch_batches[static_cast<std::size_t>(s) % epoch_batches.size()] : sampler.sample(global_step);
      double step_loss = 0.0;
      std::int64_t clipped = 0, unclipped = 0;
      clip.max_grad_norm = static_cast<float>(clip_norm);
      // On the CPU a batch is exactly the sample; on the GPU shapes stay fixed at `capacity`
      // (padding rows have mask 0 and contribute nothing). A sample larger than the capacity is
      // processed in chunks whose clipped sums add up before the one noisy update.
      const std::int64_t chunk_cap =
          o.device.is_cuda() ? capacity : std::max<std::int64_t>(1, static_cast<std::int64_t>(sample.size()));
      if (!sample.empty()) {
        for (const auto& chunk : split_into_chunks(sample, chunk_cap)) {
          MaskedBatch b = gather_masked(train, chunk, chunk_cap, o.device);
          nn::Var logits = model.forward(nn::Var(b.images, false));
          // The summed loss makes row i of every captured output gradient example i's own.
          nn::Var loss = nn::F::cross_entropy(logits, b.labels, nn::Reduction::None);
          nn::Var total = nn::F::linear(nn::F::reshape(loss, {1, b.labels.numel()}), nn::Var(b.mask.reshape({1, -1}), false),
                                        nn::Var());
          autograd::backward(total);
          const bool padded = b.size < b.labels.numel();
          const ClipStats st = clip_and_accumulate(model, clip, padded ? &b.mask : nullptr);
          clipped += st.clipped;
          if (adaptive) unclipped += st.unclipped;
          const double chunk_loss = total.value().item();
          if (!std::isfinite(chunk_loss))
            AEGIS_THROW(NumericError, "training loss became " << chunk_loss << " at step " << result.steps + 1
                                                              << " (learning rate " << lr << " may be too large)");
          step_loss += chunk_loss;
          // Padding rows (mask 0) sit after the b.size real ones: count the real rows only.
          correct += nn::count_correct(logits.value().rows(0, b.size), b.labels.rows(0, b.size));
        }
      }
      optimizer->step();
      if (adaptive) {
        // The count's noise: this step's key at the first index past every gradient element
        // (the gradient draws use indices 0 … P−1; Box–Muller's two outputs of one block are
        // independent, so sharing a block with index P−1 is harmless).
        const philox::Key key = philox::step_key(o.seed, philox::kPurposeDpNoise, global_step);
        const double z = philox::normal_double(key, static_cast<std::uint64_t>(model.num_parameters()));
        const double fraction = (static_cast<double>(unclipped) + count_sigma * z) / expected_batch;
        clip_norm *= std::exp(-dp.clip_lr * (fraction - dp.target_quantile));
        optimizer->set_noise(gradient_sigma, clip_norm);
      }
      const auto bsize = static_cast<std::int64_t>(sample.size());
      loss_sum += step_loss;
      seen += bsize;
      ++result.steps;
      if (on_step) {
        info.epoch = epoch;
        info.step = result.steps;
        info.batch_size = bsize;
        info.clipped = clipped;
        info.max_grad_norm = clip.max_grad_norm;
        info.loss = bsize ? step_loss / static_cast<double>(bsize) : 0.0;
        info.lr = lr;
        on_step(info);
      }
    }
    std::vector<SgmPhase> so_far = phases;
    so_far.push_back({accounted_sigma, q, result.steps});
    DpEpochResult er;
    er.epoch = epoch + 1;
    er.train_loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
    er.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
    er.epsilon = compute_epsilon(dp.accountant, so_far, dp.delta).epsilon;
    er.seconds = seconds_since(t_epoch);
    result.epochs.push_back(er);
    if (on_epoch) on_epoch(er);
  }
  enable_per_example_capture(model, false);
  phases.push_back({accounted_sigma, q, result.steps});
  result.ledger.phases = phases;
  result.ledger.max_grad_norm = dp.max_grad_norm;
  result.ledger.delta = dp.delta;
  result.ledger.accountant = dp.accountant;
  result.ledger.clipping = dp.clipping;
  result.ledger.sampling = shuffle || (previous && previous->sampling == "shuffle") ? "shuffle" : "poisson";
  result.ledger.secure = dp.secure && (!previous || previous->phases.empty() || previous->secure);
  result.ledger.epsilon = result.epochs.back().epsilon;
  result.seconds = seconds_since(t_start);
  return result;
}

}  // namespace aegis::privacy
