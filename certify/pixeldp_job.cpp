#include "certify/pixeldp_job.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/timing.h"
#include "nn/job.h"
#include "nn/train_job.h"

namespace aegis::certify {

namespace {

// A threshold as a JSON key: the shortest decimal that reads back ("0.1", "0.05").
std::string key_of(double t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

nlohmann::json by_threshold(const std::vector<double>& thresholds, const std::vector<double>& values) {
  nlohmann::json j = nlohmann::json::object();
  for (std::size_t k = 0; k < thresholds.size() && k < values.size(); ++k) j[key_of(thresholds[k])] = values[k];
  return j;
}

}  // namespace

nlohmann::json to_json(const PixelDpTrainReport& r) {
  return nlohmann::json{{"model", r.model},
                        {"activation", r.activation},
                        {"dataset", r.dataset},
                        {"position", r.position},
                        {"norm", r.norm},
                        {"kind", r.kind},
                        {"sigma", r.sigma},
                        {"L", r.L},
                        {"eps", r.eps},
                        {"delta", r.delta},
                        {"sensitivity_bound", r.sensitivity_bound},
                        {"sensitivity", r.sensitivity},
                        {"epochs", r.epochs},
                        {"steps", r.steps},
                        {"train_examples", r.train_examples},
                        {"train_loss", r.train_loss},
                        {"train_accuracy", r.train_accuracy},
                        {"test_accuracy_one_draw", r.test_accuracy_one_draw},
                        {"train_seconds", r.train_seconds},
                        {"device", r.device},
                        {"out", r.out}};
}

PixelDpTrainReport run_pixeldp_training(const PixelDpTrainJob& job, const nn::DatasetSplit& split,
                                        ProgressSink* progress) {
  check_pixeldp_params(job.params);
  AEGIS_CHECK(job.max_train >= 0, "--max-train " << job.max_train << " must be ≥ 0");
  nn::check_train_options(job.options.train);
  const nn::Dataset train = nn::first_examples(split.train, job.max_train);
  const Shape& s = train.images.shape();
  nn::ModelSpec spec;
  spec.name = job.model;
  spec.input_shape = {s[1], s[2], s[3]};
  spec.num_classes = train.num_classes;
  spec.activation = job.activation;
  spec.seed = job.options.train.seed;
  auto net = build_pixeldp(spec, job.position, job.params, job.options.train.seed);
  nn::EpochProgress bars(progress, job.options.train.epochs, ceil_div(train.size(), job.options.train.batch_size));
  const nn::TrainResult tr = train_pixeldp(
      *net, train, job.options, [&](const nn::StepInfo& st) { bars.step(st.epoch, st.step, st.loss); },
      [&](const nn::EpochResult& e) {
        char text[96];
        std::snprintf(text, sizeof text, "loss %.4f  train acc %.4f", e.train_loss, e.train_accuracy);
        bars.finish(text);
      });
  const Device device = job.options.train.device;
  const nn::EvalResult ev = nn::evaluate(*net, split.test, device);
  save_pixeldp(job.out, *net, spec, job.params, {{"aegis.dataset", job.dataset}});
  PixelDpTrainReport r;
  r.model = job.model;
  r.activation = job.activation;
  r.dataset = job.dataset;
  r.position = job.position;
  r.norm = pixeldp_norm_name(job.params.norm);
  r.kind = noise_kind_name(net->noise_layer().noise_kind());
  r.sigma = net->noise_layer().scale();
  r.L = job.params.L;
  r.eps = job.params.eps;
  r.delta = job.params.norm == PixelDpNorm::L2 ? job.params.delta : 0.0;
  r.sensitivity_bound = net->sensitivity_bound();
  r.sensitivity = net->sensitivity();
  r.epochs = job.options.train.epochs;
  r.steps = tr.steps;
  r.train_examples = train.size();
  r.train_loss = tr.epochs.back().train_loss;
  r.train_accuracy = tr.epochs.back().train_accuracy;
  r.test_accuracy_one_draw = ev.accuracy;
  r.train_seconds = tr.seconds;
  r.device = device.str();
  r.out = job.out;
  return r;
}

nlohmann::json to_json(const PixelDpCertifyReport& r) {
  nlohmann::json j{
      {"model_file", r.model_file},
      {"model", r.model},
      {"dataset", r.dataset},
      {"examples", r.examples},
      {"position", r.position},
      {"norm", r.norm},
      {"kind", r.kind},
      {"sigma", r.sigma},
      {"L", r.L},
      {"eps", r.eps},
      {"delta", r.delta},
      {"sensitivity", r.sensitivity},
      {"max_robustness_size", r.max_robustness_size ? nlohmann::json(*r.max_robustness_size) : nlohmann::json(nullptr)},
      {"draws", r.draws},
      {"confidence", r.confidence},
      {"bound", r.bound},
      {"conventional_accuracy", r.run.conventional_accuracy},
      {"certified_accuracy", by_threshold(r.thresholds, r.run.certified_accuracy)},
      {"mean_robustness_size", r.run.mean_robustness_size},
      {"device", r.device},
      {"seconds", r.seconds}};
  if (r.run.attack) {
    const PixelDpAttackResult& a = *r.run.attack;
    j["attack"] = {{"name", "cw-l2"},
                   {"examples", a.examples},
                   {"draws_per_step", r.attack_draws},
                   {"steps", r.attack_steps},
                   {"binary_search_steps", r.attack_binary_search_steps},
                   {"confidence", r.attack_confidence},
                   {"clean_accuracy", a.clean_accuracy},
                   {"accuracy_at", by_threshold(r.thresholds, a.accuracy_at)},
                   {"accuracy_unbounded", a.accuracy_unbounded},
                   {"median_norm", a.median_norm},
                   {"seconds", a.seconds}};
  }
  return j;
}

PixelDpCertifyReport run_pixeldp_certify_file(const PixelDpCertifyJob& job, ProgressSink* progress) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedPixelDp loaded = load_pixeldp(job.model_file);
  AEGIS_CHECK(!job.options.attack || loaded.params.norm == PixelDpNorm::L2,
              "--attack cw-l2 evaluates L2 robustness, but " << job.model_file << " is an L1 (Laplace) model");
  const nn::DatasetSplit split = nn::load_dataset(job.dataset, job.data_dir);
  nn::check_data_fits(split.test, loaded.spec, job.model_file, job.dataset);
  const nn::Dataset test = nn::first_examples(split.test, job.max);
  loaded.net->to(job.device);
  loaded.net->noise_layer().set_seed(job.seed);
  PixelDpCertifyReport r;
  r.run = run_pixeldp_certify(loaded.net, loaded.mechanism, test, job.options, job.device, progress);
  r.model_file = job.model_file;
  r.model = loaded.spec.name;
  r.dataset = job.dataset;
  r.examples = test.size();
  r.position = loaded.net->position();
  r.norm = pixeldp_norm_name(loaded.params.norm);
  r.kind = noise_kind_name(loaded.net->noise_layer().noise_kind());
  r.sigma = loaded.mechanism.scale;
  r.L = loaded.params.L;
  r.eps = loaded.params.eps;
  r.delta = loaded.mechanism.effective_delta();
  r.sensitivity = loaded.mechanism.sensitivity;
  if (loaded.params.norm == PixelDpNorm::L2) r.max_robustness_size = loaded.mechanism.size_at(1.0);
  r.draws = job.options.certify.draws;
  r.confidence = job.options.certify.confidence;
  r.bound = bound_kind_name(job.options.certify.bound);
  r.thresholds = job.options.thresholds;
  r.device = job.device.str();
  if (job.options.attack) {
    r.attack_draws = job.options.attack->draws;
    r.attack_steps = job.options.attack->cw.attack.steps;
    r.attack_binary_search_steps = job.options.attack->cw.binary_search_steps;
    r.attack_confidence = job.options.attack->cw.confidence;
  }
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace aegis::certify
