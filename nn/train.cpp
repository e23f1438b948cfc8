#include "nn/train.h"

#include <chrono>
#include <cmath>
#include <numeric>

#include "core/checked_math.h"
#include "core/mpi.h"
#include "core/timing.h"
#include "nn/data_parallel.h"
#include "nn/fixed_features.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "runtime/ops.h"

namespace aegis::nn {

void check_train_options(const TrainOptions& o) {
  AEGIS_CHECK(o.epochs >= 1, "epochs " << o.epochs << " must be at least 1");
  AEGIS_CHECK(o.batch_size >= 1, "batch size " << o.batch_size << " must be at least 1");
  AEGIS_CHECK(std::isfinite(o.lr) && o.lr > 0.0f, "learning rate " << o.lr << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0f && o.momentum < 1.0f,
              "momentum " << o.momentum << " must be in [0, 1)");
  AEGIS_CHECK(std::isfinite(o.noise_sigma) && o.noise_sigma >= 0.0f,
              "noise sigma " << o.noise_sigma << " must be non-negative and finite");
  AEGIS_CHECK(o.replays >= 1, "replays " << o.replays << " must be at least 1");
}

std::int64_t total_train_steps(std::int64_t examples, const TrainOptions& o) {
  check_train_options(o);
  const std::int64_t per_epoch = checked_mul(ceil_div(examples, o.batch_size), o.replays, "steps per epoch × replays");
  return checked_mul(per_epoch, o.epochs, "steps per epoch × epochs");
}

TrainResult train_classifier(Module& model, const Dataset& train, const TrainOptions& o,
                             const std::function<void(const StepInfo&)>& on_step,
                             const std::function<void(const EpochResult&)>& on_epoch) {
  check_train_options(o);
  AEGIS_CHECK(train.size() > 0, "training set '" << train.name << "' is empty");
  // Under mpirun each rank takes its slice of every batch (nn/data_parallel.h). The hooks that
  // transform the input (adversarial training) see the whole batch and key their randomness by an
  // example's place in it, so they are not split.
  const bool split = mpi::world().size > 1;
  AEGIS_CHECK(!split || (!o.make_input && !o.after_backward),
              "adversarial training runs in one process; under mpirun, train shares plain training (with or without "
              "--noise-sigma) and --dp over the ranks");

  if (o.noise_sigma == 0.0f && !o.augment.any() && !o.make_input && !o.after_backward) {
    // A fixed front end (nn/fixed_features.h) is computed once per example.
    const FixedSplit fixed = split_fixed_prefix(model);
    if (fixed.rest)
      return train_classifier(*fixed.rest, fixed_features(fixed.prefix, train, o.device), o, on_step, on_epoch);
  }
  model.to(o.device);
  model.train(true);
  model.set_requires_grad(true);
  BatchOptions bo;
  bo.batch_size = o.batch_size;
  bo.shuffle = true;
  bo.seed = o.seed;
  bo.device = o.device;
  BatchIterator batches(train, bo, 0);
  const std::int64_t steps_per_epoch = batches.num_batches();
  const std::int64_t total_steps = checked_mul(checked_mul(steps_per_epoch, o.replays, "steps per epoch × replays"),
                                               o.epochs, "steps per epoch × epochs");
  auto optimizer = make_optimizer(o.optimizer, model.parameters(), o.lr, o.momentum);
  auto schedule = make_schedule(o.schedule, o.lr, total_steps);

  TrainResult result;
  const auto t_start = std::chrono::steady_clock::now();
  StepInfo info;
  info.total_steps = total_steps;
  for (std::int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const auto t_epoch = std::chrono::steady_clock::now();
    batches.start_epoch(static_cast<std::uint32_t>(epoch));
    double loss_sum = 0.0;
    std::int64_t correct = 0, seen = 0;
    Batch batch;
    while (batches.next(batch)) {
      for (int replay = 0; replay < o.replays; ++replay) {
        const float lr = schedule->lr_at(result.steps);
        Var input;
        if (o.make_input) {
          input = o.make_input(batch, result.steps);
        } else {
          Tensor images = batch.images;
          if (o.augment.any()) {  // crops and flips, then the same noise draws as below
            std::vector<std::uint64_t> rows(static_cast<std::size_t>(images.size(0)));
            std::iota(rows.begin(), rows.end(), std::uint64_t{0});
            const auto step = static_cast<std::uint32_t>(result.steps);
            images = augment_images(images, o.augment, o.noise_sigma, rows,
                                    philox::Key{o.seed, philox::kPurposeAugmentGeometry, step},
                                    philox::Key{o.seed, philox::kPurposeAugmentNoise, step});
          } else if (o.noise_sigma > 0.0f) {
            Tensor noise = Tensor::empty_like(images);
            ops::fill_normal(
                noise, philox::Key{o.seed, philox::kPurposeAugmentNoise, static_cast<std::uint32_t>(result.steps)},
                0.0f, o.noise_sigma);
            images = ops::add(images, noise);
          }
          input = Var(images, false);
        }
        optimizer->set_lr(lr);
        optimizer->zero_grad();
        const std::int64_t b = batch.labels.numel();
        double loss_value = 0.0;
        std::int64_t step_correct = 0;
        if (!split) {
          Var logits = model.forward(input);
          Var loss = F::cross_entropy(logits, batch.labels, Reduction::Mean);
          const Tensor correct_here = count_correct_on_device(logits.value(), batch.labels);
          autograd::backward(loss);
          // The loss is read once the backward pass is queued, so that on a GPU the step waits for
          // the device once here (and for the optimizer's finite check) instead of between the
          // forward and the backward pass. A non-finite loss still stops before any update.
          loss_value = loss.value().item();
          step_correct = static_cast<std::int64_t>(correct_here.item());
        } else {
          // This rank's rows of the batch: the sum of their losses, backward, then the gradient
          // sums added over the ranks and divided by the whole batch's size, which is the
          // gradient of the batch's mean loss, as in one process (up to float32 summation order).
          // No zoo layer keeps batch statistics (GroupNorm is per example; an imported graph's
          // BatchNorm is frozen: nn::announce_training), so a slice's gradient is its own.
          const auto [begin, end] = rank_rows(b);
          std::vector<double> sums{0.0, 0.0};
          if (end > begin) {
            const Tensor labels = batch.labels.rows(begin, end);
            Var logits = model.forward(Var(input.value().rows(begin, end), false));
            Var loss = F::cross_entropy(logits, labels, Reduction::Sum);
            const Tensor correct_here = count_correct_on_device(logits.value(), labels);
            autograd::backward(loss);
            sums = {loss.value().item(), correct_here.item()};
          }
          sums = sum_gradients_over_ranks(model.parameters(), sums, 1.0 / static_cast<double>(b));
          loss_value = sums[0] / static_cast<double>(b);
          step_correct = std::llround(sums[1]);
        }
        if (!std::isfinite(loss_value))
          AEGIS_THROW(NumericError, "training loss became " << loss_value << " at epoch " << epoch + 1 << ", step "
                                                            << result.steps + 1 << " (learning rate " << lr
                                                            << " may be too large)");
        if (o.after_backward) o.after_backward(input);
        optimizer->step();
        if (o.after_step) o.after_step();
        loss_sum += loss_value * static_cast<double>(b);
        correct += step_correct;
        seen += b;
        ++result.steps;
        if (on_step) {
          info.epoch = epoch;
          info.step = result.steps;
          info.examples += b;
          info.loss = loss_value;
          info.lr = lr;
          on_step(info);
        }
      }
    }
    EpochResult er;
    er.epoch = epoch + 1;
    er.train_loss = loss_sum / static_cast<double>(seen);
    er.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
    er.seconds = seconds_since(t_epoch);
    result.epochs.push_back(er);
    const bool stop = o.stop_after_epoch && o.stop_after_epoch(er);
    if (on_epoch) on_epoch(er);
    if (stop) break;
  }
  result.seconds = seconds_since(t_start);
  return result;
}

EvalResult evaluate(Module& model, const Dataset& data, Device device, std::int64_t batch_size,
                    const std::function<void(std::int64_t, std::int64_t)>& on_batch) {
  AEGIS_CHECK(batch_size >= 1, "batch size " << batch_size << " must be at least 1");
  AEGIS_CHECK(data.size() > 0, "evaluation set '" << data.name << "' is empty");
  const auto t0 = std::chrono::steady_clock::now();
  model.to(device);
  FrozenScope frozen(model);
  BatchOptions bo;
  bo.batch_size = batch_size;
  bo.device = device;
  BatchIterator batches(data, bo, 0);
  EvalResult r;
  double loss_sum = 0.0;
  Batch batch;
  while (batches.next(batch)) {
    Var logits = model.forward(Var(batch.images, false));
    loss_sum += F::cross_entropy(logits, batch.labels, Reduction::Sum).value().item();
    r.correct += count_correct(logits.value(), batch.labels);
    r.total += batch.labels.numel();
    if (on_batch) on_batch(r.total, data.size());
  }
  r.loss = loss_sum / static_cast<double>(r.total);
  r.accuracy = static_cast<double>(r.correct) / static_cast<double>(r.total);
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace aegis::nn
