#include "privacy/dp_train.h"

#include <chrono>
#include <cmath>

#include "core/checked_math.h"
#include "core/mpi.h"
#include "core/timing.h"
#include "nn/fixed_features.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "privacy/dp_ranks.h"
#include "privacy/noise.h"
#include "privacy/sampling.h"

namespace aegis::privacy {

std::int64_t dp_steps_per_epoch(double q) {
  AEGIS_CHECK(q > 0.0 && q <= 1.0, "sampling rate " << q << " must be in (0, 1]");
  return std::max<std::int64_t>(1, std::llround(1.0 / q));
}

DpPlan plan_dp(std::int64_t n, const nn::TrainOptions& o, const DpTrainOptions& dp, const PrivacyLedger* previous) {
  AEGIS_CHECK(n > 0, "the training set is empty");
  nn::check_train_options(o);
  check_delta(dp.delta);
  const double max_grad_norm = dp.noise.max_grad_norm;
  AEGIS_CHECK(std::isfinite(max_grad_norm) && max_grad_norm > 0.0,
              "max grad norm " << max_grad_norm << " must be positive and finite");
  const bool adaptive = dp.clipping == Clipping::Adaptive;
  AEGIS_CHECK(!(dp.sampling == Sampling::Shuffle && dp.noise.secure), "secure mode samples with Poisson sampling only");
  if (adaptive) {
    const AdaptiveClipOptions& a = dp.adaptive;
    AEGIS_CHECK(a.target_quantile > 0.0 && a.target_quantile < 1.0,
                "target quantile " << a.target_quantile << " must be in (0, 1)");
    AEGIS_CHECK(std::isfinite(a.clip_lr) && a.clip_lr > 0.0, "clip learning rate " << a.clip_lr << " must be positive");
    AEGIS_CHECK(a.count_noise >= 0.0 && std::isfinite(a.count_noise),
                "count noise " << a.count_noise << " must be non-negative (0: expected batch size / 20)");
    AEGIS_CHECK(!dp.noise.secure, "adaptive clipping is not available in secure mode");
  }
  AEGIS_CHECK(dp.augmult >= 1 && dp.augmult <= 1024, "augmentation multiplicity " << dp.augmult
                                                                                  << " must be in [1, 1024]");
  AEGIS_CHECK(dp.augmult_bytes > 0, "augmult_bytes must be positive");
  if (dp.consistency) {
    const ConsistencyOptions& c = *dp.consistency;
    AEGIS_CHECK(std::isfinite(c.lambda) && c.lambda >= 0.0f,
                "consistency regularizer: lambda " << c.lambda << " must be non-negative and finite");
    AEGIS_CHECK(std::isfinite(c.eta) && c.eta >= 0.0f,
                "consistency regularizer: entropy weight " << c.eta << " must be non-negative and finite");
    AEGIS_CHECK(dp.augmult >= 2,
                "the consistency regularizer compares an example's copies: it needs K >= 2, not " << dp.augmult);
    AEGIS_CHECK(o.noise_sigma > 0.0f,
                "the consistency regularizer compares an example's noisy copies: it needs Gaussian noise on the "
                "inputs (noise sigma > 0)");
  }
  DpPlan plan;
  double& q = plan.sampling_rate;
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
    AEGIS_CHECK(previous->max_grad_norm == max_grad_norm, "resuming a ledger with max grad norm "
                                                              << previous->max_grad_norm << " under a different one, "
                                                              << max_grad_norm);
  }
  plan.steps_per_epoch = dp_steps_per_epoch(q);
  plan.steps = checked_mul(plan.steps_per_epoch, o.epochs, "DP-SGD steps per epoch × epochs");
  double sigma = dp.noise.noise_multiplier;
  if (sigma == 0.0) {
    AEGIS_CHECK(std::isfinite(dp.target_epsilon) && dp.target_epsilon > 0.0,
                "target epsilon " << dp.target_epsilon << " must be positive (or give a noise multiplier)");
    AEGIS_CHECK(!previous || previous->phases.empty(),
                "calibrating to a target epsilon while resuming is not "
                "supported: give --noise-multiplier for the new phase");
    sigma = calibrate_noise_multiplier(dp.accountant, dp.target_epsilon, q, plan.steps, dp.delta);
  }
  AEGIS_CHECK(std::isfinite(sigma) && sigma > 0.0, "noise multiplier " << sigma << " must be positive and finite");
  plan.noise_multiplier = sigma;
  plan.expected_batch_size = q * static_cast<double>(n);
  // Adaptive clipping splits σ between the gradient sum (σ_Δ) and the unclipped count (σ_b).
  plan.count_noise = dp.adaptive.count_noise > 0.0 ? dp.adaptive.count_noise : plan.expected_batch_size / 20.0;
  plan.gradient_noise_multiplier = sigma;
  if (adaptive) {
    const double count_sigma = plan.count_noise;
    AEGIS_CHECK(2.0 * count_sigma > sigma,
                "adaptive clipping needs count noise σ_b = " << count_sigma << " above σ/2 = " << sigma / 2
                                                             << " (raise --count-noise or the batch size)");
    plan.gradient_noise_multiplier = 1.0 / std::sqrt(1.0 / (sigma * sigma) - 1.0 / (4.0 * count_sigma * count_sigma));
  }
  // Noise and sampling are keyed by the full 64-bit global step (philox::step_key); a step beyond
  // what the key holds would reuse an earlier step's noise and sample, so refuse such a run.
  plan.steps_before = previous ? previous->steps() : 0;
  constexpr auto kMaxStep = static_cast<std::int64_t>(philox::kMaxKeyedStep);
  AEGIS_CHECK(plan.steps_before >= 0 && plan.steps_before <= kMaxStep && plan.steps <= kMaxStep - plan.steps_before,
              "DP-SGD: " << plan.steps_before << " earlier steps + " << plan.steps << " new ones exceed the "
                         << kMaxStep << " steps whose noise and sampling keys are distinct");
  return plan;
}

namespace {

// What one step did, summed over the chunks of its sample.
struct StepOutcome {
  double loss = 0.0;  // summed over the sample
  std::int64_t clipped = 0, unclipped = 0, correct = 0;
};

void check_chunk_loss(double chunk_loss, std::int64_t step, float lr) {
  if (!std::isfinite(chunk_loss))
    AEGIS_THROW(NumericError, "training loss became " << chunk_loss << " at step " << step + 1 << " (learning rate "
                                                      << lr << " may be too large)");
}

// The same with the sample's examples transformed (privacy/dp_augment.h): K copies each, noise,
// an input hook. The loss weights 1/K make the K rows of an example sum to the copies' average
// gradient, which clip_and_accumulate clips as one (group_size K). `correct` counts copies.
// With the consistency regularizer the summed loss is Σ_i L_i (privacy/dp_augment.h). `first` is
// the place of the slice's first example in the step's whole sample (its rank's slice offset), so
// the input hook keys its rows as the one-process run does.
StepOutcome clip_augmented_sample(nn::Module& model, const nn::Dataset& train, const std::vector<std::int64_t>& sample,
                                  std::int64_t chunk_cap, ClipOptions clip, const AugmentOptions& augment,
                                  const std::optional<ConsistencyOptions>& consistency, Device device,
                                  std::int64_t step, std::uint64_t global_step, float lr, std::int64_t first) {
  StepOutcome out;
  if (sample.empty()) return out;
  clip.group_size = augment.copies;
  for (const auto& chunk : split_into_chunks(sample, chunk_cap)) {
    // On the CPU a batch is exactly the chunk; on the GPU shapes stay at chunk_cap.
    const std::int64_t cap =
        device.is_cuda() ? chunk_cap : std::max<std::int64_t>(1, static_cast<std::int64_t>(chunk.size()));
    const AugmentedBatch b = augmented_batch(model, train, chunk, cap, augment, global_step, device, first);
    first += static_cast<std::int64_t>(chunk.size());
    nn::Var logits = model.forward(nn::Var(b.images, false));
    nn::Var total = augmented_batch_loss(logits, b, augment.copies, consistency);
    autograd::backward(total);
    const ClipStats st = clip_and_accumulate(model, clip, &b.example_mask);
    out.clipped += st.clipped;
    out.unclipped += st.unclipped;
    const double chunk_loss = total.value().item();
    check_chunk_loss(chunk_loss, step, lr);
    out.loss += chunk_loss;
    const std::int64_t real = b.examples * augment.copies;
    out.correct += nn::count_correct(logits.value().rows(0, real), b.labels.rows(0, real));
  }
  return out;
}

// Forward, one backward pass of the summed loss, per-example clipping into the parameters'
// gradients, chunk by chunk (on the GPU at a fixed capacity, padding rows masked out).
StepOutcome clip_sample(nn::Module& model, const nn::Dataset& train, const std::vector<std::int64_t>& sample,
                        std::int64_t chunk_cap, const ClipOptions& clip, Device device, std::int64_t step, float lr) {
  StepOutcome out;
  if (sample.empty()) return out;
  for (const auto& chunk : split_into_chunks(sample, chunk_cap)) {
    MaskedBatch b = gather_masked(train, chunk, chunk_cap, device);
    nn::Var logits = model.forward(nn::Var(b.images, false));
    // The summed loss makes row i of every captured output gradient example i's own.
    nn::Var loss = nn::F::cross_entropy(logits, b.labels, nn::Reduction::None);
    nn::Var total =
        nn::F::linear(nn::F::reshape(loss, {1, b.labels.numel()}), nn::Var(b.mask.reshape({1, -1}), false), nn::Var());
    autograd::backward(total);
    const bool padded = b.size < b.labels.numel();
    const ClipStats st = clip_and_accumulate(model, clip, padded ? &b.mask : nullptr);
    out.clipped += st.clipped;
    out.unclipped += st.unclipped;
    const double chunk_loss = total.value().item();
    check_chunk_loss(chunk_loss, step, lr);
    out.loss += chunk_loss;
    // Padding rows (mask 0) sit after the b.size real ones: count the real rows only.
    out.correct += nn::count_correct(logits.value().rows(0, b.size), b.labels.rows(0, b.size));
  }
  return out;
}

// The ledger of a finished run: the earlier phases and this one.
PrivacyLedger ledger_after(const DpTrainOptions& dp, const PrivacyLedger* previous, const SgmPhase& phase,
                           double epsilon) {
  PrivacyLedger l;
  l.phases = previous ? previous->phases : std::vector<SgmPhase>{};
  l.phases.push_back(phase);
  l.max_grad_norm = dp.noise.max_grad_norm;
  l.delta = dp.delta;
  l.accountant = dp.accountant;
  l.clipping = dp.clipping;
  l.sampling = dp.sampling == Sampling::Shuffle || (previous && previous->sampling == Sampling::Shuffle)
                   ? Sampling::Shuffle
                   : Sampling::Poisson;
  l.secure = dp.noise.secure && (!previous || previous->phases.empty() || previous->secure);
  l.epsilon = epsilon;
  return l;
}

}  // namespace

DpTrainResult train_dp_classifier(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& o,
                                  const DpTrainOptions& dp, const PrivacyLedger* previous,
                                  const std::function<void(const DpStepInfo&)>& on_step,
                                  const std::function<void(const DpEpochResult&)>& on_epoch) {
  return train_dp_classifier(model, train, o, dp, plan_dp(train.size(), o, dp, previous), previous, on_step, on_epoch);
}

DpTrainResult train_dp_classifier(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& o,
                                  const DpTrainOptions& dp, const DpPlan& plan, const PrivacyLedger* previous,
                                  const std::function<void(const DpStepInfo&)>& on_step,
                                  const std::function<void(const DpEpochResult&)>& on_epoch) {
  const std::int64_t n = train.size();
  AEGIS_CHECK(n > 0, "training set '" << train.name << "' is empty");
  AEGIS_CHECK(plan.steps_per_epoch >= 1 && plan.steps == plan.steps_per_epoch * o.epochs &&
                  plan.steps_before == (previous ? previous->steps() : 0),
              "DP-SGD: the plan was made for other options (plan_dp with the same arguments)");
  const bool augmented = dp.augmult > 1 || o.noise_sigma > 0.0f || o.augment.any() || dp.make_input;
  if (!augmented) {
    // A fixed front end (nn/fixed_features.h) is computed once per example; the rest trains on
    // its outputs. Sampling, clipping, noise and ledger are those of the whole model.
    const nn::FixedSplit split = nn::split_fixed_prefix(model);
    if (split.rest)
      return train_dp_classifier(*split.rest, nn::fixed_features(split.prefix, train, o.device), o, dp, plan, previous,
                                 on_step, on_epoch);
  }
  const bool adaptive = dp.clipping == Clipping::Adaptive;
  const bool shuffle = dp.sampling == Sampling::Shuffle;
  const double q = plan.sampling_rate;

  model.to(o.device);
  model.train(true);
  model.set_requires_grad(true);
  enable_per_example_capture(model, true);
  ClipOptions clip = dp.clip;
  clip.max_grad_norm = static_cast<float>(dp.noise.max_grad_norm);
  clip.per_layer = dp.clipping == Clipping::PerLayer;

  DpNoiseOptions noise = dp.noise;
  noise.noise_multiplier = plan.gradient_noise_multiplier;
  noise.expected_batch_size = plan.expected_batch_size;
  noise.seed = o.seed;
  noise.first_step = static_cast<std::uint64_t>(plan.steps_before);
  const std::vector<nn::Var> params = model.parameters();
  AEGIS_CHECK(!(noise.secure && mpi::world().size > 1),
              "DP-SGD: secure mode draws its noise key from each process's OS randomness, so the ranks of an "
              "mpirun would add different noise; run secure training in one process");
  std::unique_ptr<DpOptimizer> optimizer = make_dp_optimizer(o.optimizer, params, o.lr, noise, o.momentum);
  // The accountant composes the mechanism's overall multiplier: σ itself under adaptive clipping
  // (gradient and count noise together), else what the optimizer really adds.
  const double accounted_sigma = adaptive ? plan.noise_multiplier : optimizer->effective_noise_multiplier();
  double clip_norm = dp.noise.max_grad_norm;
  auto schedule = nn::make_schedule(o.schedule, o.lr, plan.steps);
  // Sampling continues the step counter of the ledger too: a resumed run draws fresh batches.
  const PoissonSampler sampler(n, q, o.seed, dp.noise.secure);
  const std::int64_t capacity = sampler.capacity();
  // On the CPU a batch is exactly the sample; on the GPU shapes stay fixed at `capacity`
  // (padding rows have mask 0 and contribute nothing). A sample larger than the capacity is
  // processed in chunks whose clipped sums add up before the one noisy update.
  const auto chunk_capacity = [&](std::size_t sample_size) {
    return o.device.is_cuda() ? capacity : std::max<std::int64_t>(1, static_cast<std::int64_t>(sample_size));
  };
  // Transformed examples (privacy/dp_augment.h) take their own path; without any, the plain one.
  AugmentOptions augment;
  augment.copies = dp.augmult;
  augment.noise_sigma = o.noise_sigma;
  augment.image = o.augment;
  augment.make_input = dp.make_input;
  augment.seed = o.seed;
  // With K > 1 a chunk forms K·B rows of per-example gradients (privacy/per_example_group.cpp):
  // at most augmult_bytes of them.
  const auto param_count = static_cast<std::size_t>(std::max<std::int64_t>(1, model.num_parameters()));
  const auto augmult_cap = static_cast<std::int64_t>(std::max<std::size_t>(
      1, dp.augmult_bytes / (sizeof(float) * param_count * static_cast<std::size_t>(dp.augmult + 1))));
  // Under mpirun every rank draws its slice's transforms exactly as one process would: crops,
  // flips and noise are keyed by (dataset index, copy), the input hook's random starts by the
  // row's place in the whole sample (rank_slice_begin), both known to every rank.

  DpTrainResult result;
  result.noise_multiplier = plan.noise_multiplier;
  result.sampling_rate = q;
  const auto t_start = std::chrono::steady_clock::now();
  DpStepInfo info;
  info.total_steps = plan.steps;
  for (std::int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const auto t_epoch = std::chrono::steady_clock::now();
    double loss_sum = 0.0;
    std::int64_t correct = 0, seen = 0;
    std::vector<std::vector<std::int64_t>> epoch_batches;
    if (shuffle) {
      const auto batch = std::max<std::int64_t>(1, std::llround(q * static_cast<double>(n)));
      epoch_batches = shuffled_batches(n, batch, o.seed, static_cast<std::uint32_t>(epoch + plan.steps_before));
    }
    for (std::int64_t s = 0; s < plan.steps_per_epoch; ++s) {
      const float lr = schedule->lr_at(result.steps);
      optimizer->set_lr(lr);
      optimizer->zero_grad();
      const std::uint64_t global_step = noise.first_step + static_cast<std::uint64_t>(result.steps);
      const std::vector<std::int64_t> sample =
          shuffle ? epoch_batches[static_cast<std::size_t>(s) % epoch_batches.size()] : sampler.sample(global_step);
      clip.max_grad_norm = static_cast<float>(clip_norm);
      // Under mpirun each rank clips its slice of the sample and the sums are added over the ranks
      // (privacy/dp_ranks.h); in one process the slice is the sample and nothing is exchanged.
      const std::vector<std::int64_t> slice = rank_slice(sample);
      const std::int64_t cap = chunk_capacity(slice.size());
      StepOutcome step =
          augmented ? clip_augmented_sample(model, train, slice, dp.augmult > 1 ? std::min(cap, augmult_cap) : cap,
                                            clip, augment, dp.consistency, o.device, result.steps, global_step, lr,
                                            rank_slice_begin(sample.size()))
                    : clip_sample(model, train, slice, cap, clip, o.device, result.steps, lr);
      const std::vector<double> totals =
          sum_gradients_over_ranks(params, {step.loss, static_cast<double>(step.clipped),
                                            static_cast<double>(step.unclipped), static_cast<double>(step.correct)});
      step.loss = totals[0];
      step.clipped = std::llround(totals[1]);
      step.unclipped = std::llround(totals[2]);
      step.correct = std::llround(totals[3]);
      correct += step.correct;
      if (dp.before_update) dp.before_update(*optimizer, result.steps);
      optimizer->step();
      if (adaptive) {
        // The count's noise: this step's key at the first index past every gradient element
        // (the gradient draws use indices 0 … P−1; Box–Muller's two outputs of one block are
        // independent, so sharing a block with index P−1 is harmless).
        const philox::Key key = philox::step_key(o.seed, philox::kPurposeDpNoise, global_step);
        const double z = philox::normal_double(key, static_cast<std::uint64_t>(model.num_parameters()));
        const double fraction = (static_cast<double>(step.unclipped) + plan.count_noise * z) / plan.expected_batch_size;
        clip_norm *= std::exp(-dp.adaptive.clip_lr * (fraction - dp.adaptive.target_quantile));
        optimizer->set_noise(plan.gradient_noise_multiplier, clip_norm);
      }
      const auto bsize = static_cast<std::int64_t>(sample.size());
      loss_sum += step.loss;
      seen += bsize;
      ++result.steps;
      if (on_step) {
        info.epoch = epoch;
        info.step = result.steps;
        info.batch_size = bsize;
        info.clipped = step.clipped;
        info.max_grad_norm = clip.max_grad_norm;
        info.loss = bsize ? step.loss / static_cast<double>(bsize) : 0.0;
        info.lr = lr;
        on_step(info);
      }
    }
    std::vector<SgmPhase> so_far = previous ? previous->phases : std::vector<SgmPhase>{};
    so_far.push_back({accounted_sigma, q, result.steps});
    DpEpochResult er;
    er.epoch = epoch + 1;
    er.train_loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
    // Accuracy over the copies when there are several (each example counts K times).
    er.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen * dp.augmult) : 0.0;
    er.epsilon = compute_epsilon(dp.accountant, so_far, dp.delta).epsilon;
    er.seconds = seconds_since(t_epoch);
    result.epochs.push_back(er);
    if (on_epoch) on_epoch(er);
  }
  enable_per_example_capture(model, false);
  result.ledger = ledger_after(dp, previous, {accounted_sigma, q, result.steps}, result.epochs.back().epsilon);
  result.seconds = seconds_since(t_start);
  return result;
}

}  // namespace aegis::privacy
