#include "nn/train_job.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/mpi.h"
#include "nn/graph_module.h"
#include "nn/job.h"
#include "nn/model_file.h"

namespace aegis::nn {

nlohmann::json to_json(const TrainReport& r) {
  return nlohmann::json{{"model", r.model},
                        {"activation", r.activation},
                        {"parameters", r.parameters},
                        {"dataset", r.dataset},
                        {"device", r.device},
                        {"epochs", r.epochs},
                        {"batch_size", r.batch_size},
                        {"optimizer", r.optimizer},
                        {"momentum", r.momentum},
                        {"schedule", r.schedule},
                        {"lr", r.lr},
                        {"seed", r.seed},
                        {"noise_sigma", r.noise_sigma},
                        {"augment", r.augment},
                        {"steps", r.steps},
                        {"train_loss", r.train_loss},
                        {"train_accuracy", r.train_accuracy},
                        {"train_seconds", r.train_seconds},
                        {"test_loss", r.test_loss},
                        {"test_accuracy", r.test_accuracy},
                        {"seconds_per_epoch", r.seconds_per_epoch},
                        {"out", r.out}};
}

TrainedModel start_model(const TrainJob& job, const Dataset& train) {
  const Shape& s = train.images.shape();
  TrainedModel t;
  if (!job.init.empty()) {
    AEGIS_CHECK(job.activation.empty(),
                "--activation does not apply with --init: " << job.init << " fixes the model's activations");
    LoadedClassifier loaded = load_classifier(job.init);
    check_data_fits(train, loaded.spec, job.init, job.dataset);
    check_classifier_path(job.out, *loaded.model);
    t.model = std::move(loaded.model);
    t.spec = std::move(loaded.spec);
    t.metadata["aegis.init"] = job.init;
    for (const auto& [key, value] : loaded.metadata)
      t.init_has_ledger = t.init_has_ledger || key.rfind("aegis.dp.", 0) == 0;
    return t;
  }
  t.spec.name = job.model;
  t.spec.activation = job.activation;
  t.spec.num_classes = train.num_classes;
  t.spec.input_shape = {s[1], s[2], s[3]};
  t.spec.seed = job.train.seed;
  t.model = build_model(t.spec);
  if (t.spec.activation.empty()) t.spec.activation = default_activation(t.spec.name);
  check_classifier_path(job.out, *t.model);
  return t;
}

void announce_training(const TrainJob& job, const TrainedModel& t, const DatasetSplit& split, const std::string& kind,
                       ProgressSink* progress) {
  const TrainOptions& o = job.train;
  std::ostringstream os;
  os << "training " << (job.init.empty() ? t.spec.name : job.init) << " (" << t.model->num_parameters()
     << " parameters) on " << job.dataset << " (" << split.train.size() << " train / " << split.test.size()
     << " test) for " << o.epochs << " epoch(s), batch " << o.batch_size << ", " << optimizer_name(o.optimizer)
     << " lr " << o.lr << kind << ", on " << o.device.str();
  progress_or_silent(progress).info(os.str());
  if (const auto* graph = dynamic_cast<const GraphModule*>(t.model.get())) {
    const OnnxOrigin& origin = graph->onnx_origin();
    if (origin.batch_norms > 0)
      progress_or_silent(progress).info(
          std::to_string(origin.batch_norms) +
          " BatchNorm layer(s) are frozen: their statistics and affine parameters are constants (inference form, "
          "folded into the layer before or a fixed affine step), which keeps each example's gradient its own; "
          "GroupNorm is the alternative for a normalization that trains");
    if (origin.grouped_convs > 0)
      progress_or_silent(progress).info(std::to_string(origin.grouped_convs) +
                                        " grouped/depthwise convolution(s) are frozen: their weights are constants");
  }
}

TrainReport finish_training(const TrainJob& job, TrainedModel& t, const Dataset& test, const TrainResult& result,
                            ProgressSink* progress) {
  ProgressSink& p = progress_or_silent(progress);
  const TrainOptions& o = job.train;
  p.begin("test", test.size(), "examples");
  const EvalResult ev =
      evaluate(*t.model, test, o.device, 1000, [&](std::int64_t done, std::int64_t) { p.update(done, ""); });
  p.end("");
  t.metadata["aegis.dataset"] = job.dataset;
  if (o.noise_sigma > 0.0f) t.metadata["aegis.noise_sigma"] = std::to_string(o.noise_sigma);
  if (o.augment.any()) t.metadata["aegis.augment"] = image_augment_name(o.augment);
  // Under mpirun the ranks hold the same parameters (privacy/dp_ranks.h): rank 0 writes them.
  if (mpi::world().rank == 0) save_classifier(job.out, *t.model, t.spec, t.metadata);

  TrainReport r;
  r.model = job.init.empty() ? t.spec.name : job.init;
  r.activation = t.spec.activation;
  r.parameters = t.model->num_parameters();
  r.dataset = job.dataset;
  r.device = o.device.str();
  r.epochs = o.epochs;
  r.batch_size = o.batch_size;
  r.optimizer = optimizer_name(o.optimizer);
  r.momentum = o.momentum;
  r.schedule = schedule_name(o.schedule);
  r.lr = o.lr;
  r.seed = o.seed;
  r.noise_sigma = o.noise_sigma;
  r.augment = image_augment_name(o.augment);
  r.steps = result.steps;
  if (!result.epochs.empty()) {
    r.train_loss = result.epochs.back().train_loss;
    r.train_accuracy = result.epochs.back().train_accuracy;
  }
  r.train_seconds = result.seconds;
  r.seconds_per_epoch = result.seconds / static_cast<double>(o.epochs);
  r.test_loss = ev.loss;
  r.test_accuracy = ev.accuracy;
  r.out = job.out;
  return r;
}

EpochProgress::EpochProgress(ProgressSink* progress, std::int64_t epochs, std::int64_t steps_per_epoch)
    : m_progress(progress_or_silent(progress)), m_epochs(epochs), m_steps(steps_per_epoch) {}

void EpochProgress::step(std::int64_t epoch, std::int64_t global_step, double loss, const std::string& extra) {
  const std::int64_t in_epoch = global_step - epoch * m_steps;
  if (in_epoch == 1 || !m_open) {
    m_progress.begin("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(m_epochs), m_steps, "steps");
    m_open = true;
    m_running = loss;
  }
  m_running = 0.95 * m_running + 0.05 * loss;
  char text[128];
  std::snprintf(text, sizeof text, "loss %.4f%s", m_running, extra.c_str());
  m_progress.update(in_epoch, text);
}

void EpochProgress::finish(const std::string& text) {
  if (m_open) m_progress.end(text);
  m_open = false;
}

TrainReport run_training(const TrainJob& job, const DatasetSplit& split, ProgressSink* progress) {
  check_train_options(job.train);  // before the progress divides by the batch size
  // Under mpirun every rank runs this (nn/data_parallel.h); rank 0 reports and writes the model.
  if (mpi::world().rank != 0) progress = nullptr;
  TrainedModel t = start_model(job, split.train);
  announce_training(job, t, split, "", progress);
  EpochProgress bars(progress, job.train.epochs, ceil_div(split.train.size(), job.train.batch_size));
  const TrainResult result = train_classifier(
      *t.model, split.train, job.train, [&](const StepInfo& s) { bars.step(s.epoch, s.step, s.loss); },
      [&](const EpochResult& e) {
        char text[96];
        std::snprintf(text, sizeof text, "loss %.4f  train acc %.4f", e.train_loss, e.train_accuracy);
        bars.finish(text);
      });
  return finish_training(job, t, split.test, result, progress);
}

}  // namespace aegis::nn
