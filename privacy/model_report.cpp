#include "privacy/model_report.h"

#include <nlohmann/json.hpp>
#include <set>

#include "nn/job.h"
#include "nn/model_file.h"

namespace aegis::privacy {

std::map<std::string, std::string> training_metadata(const std::map<std::string, std::string>& metadata) {
  static const std::set<std::string> kArchitecture{"aegis.format",      "aegis.model",      "aegis.input_shape",
                                                   "aegis.num_classes", "aegis.activation", kLedgerDigestKey};
  std::map<std::string, std::string> training;
  for (const auto& [key, value] : metadata)
    if (!kArchitecture.count(key) && key.rfind("aegis.dp.", 0) != 0) training[key] = value;
  return training;
}

ModelReport describe_model_file(const std::string& path) {
  nn::LoadedClassifier loaded = nn::load_classifier(path);
  ModelReport r;
  r.path = path;
  r.spec = loaded.spec;
  r.parameters = loaded.model->num_parameters();
  r.tensors = static_cast<std::int64_t>(loaded.model->named_parameters().size());
  if (auto it = loaded.metadata.find("aegis.format"); it != loaded.metadata.end()) r.format = it->second;
  r.training = training_metadata(loaded.metadata);
  r.ledger_check = verify_ledger(loaded.metadata, *loaded.model);
  if (r.ledger_check.status != LedgerStatus::None) {
    try {
      PrivacyLedger ledger = PrivacyLedger::from_metadata(loaded.metadata, path);
      if (!ledger.phases.empty())
        r.ledger = std::move(ledger);
      else
        r.ledger_error = "no 'aegis.dp.phases' entry";
    } catch (const IoError& e) {
      r.ledger_error = e.message();
    }
  }
  return r;
}

namespace {

nlohmann::json ledger_json(const PrivacyLedger& l) {
  nlohmann::json phases = nlohmann::json::array();
  for (const SgmPhase& p : l.phases)
    phases.push_back(
        {{"noise_multiplier", p.noise_multiplier}, {"sampling_rate", p.sampling_rate}, {"steps", p.steps}});
  return {{"epsilon", l.epsilon},
          {"delta", l.delta},
          {"accountant", accountant_name(l.accountant)},
          {"clipping", clipping_name(l.clipping)},
          {"max_grad_norm", l.max_grad_norm},
          {"sampling", sampling_name(l.sampling)},
          {"secure", l.secure},
          {"steps", l.steps()},
          {"phases", phases}};
}

}  // namespace

nlohmann::json to_json(const ModelReport& r) {
  nlohmann::json j{{"model_file", r.path},
                   {"format", r.format},
                   {"model", r.spec.name},
                   {"activation", r.spec.activation},
                   {"num_classes", r.spec.num_classes},
                   {"input_shape", r.spec.input_shape},
                   {"parameters", r.parameters},
                   {"tensors", r.tensors},
                   {"training", r.training},
                   {"ledger_status", ledger_status_name(r.ledger_check.status)},
                   {"ledger_detail", r.ledger_check.detail},
                   {"ledger", r.ledger ? ledger_json(*r.ledger) : nlohmann::json()}};
  if (!r.ledger_error.empty()) j["ledger_error"] = r.ledger_error;
  return j;
}

EvalFileReport evaluate_model_file(const std::string& model_file, const std::string& dataset,
                                   const std::string& data_dir, Device device, ProgressSink* progress) {
  nn::LoadedClassifier loaded = nn::load_classifier(model_file);
  const nn::DatasetSplit split = nn::load_dataset(dataset, data_dir);
  nn::check_data_fits(split.test, loaded.spec, model_file, dataset);
  ProgressSink& p = progress_or_silent(progress);
  p.begin("eval", split.test.size(), "examples");
  EvalFileReport r;
  r.eval = nn::evaluate(*loaded.model, split.test, device, 1000,
                        [&](std::int64_t done, std::int64_t) { p.update(done, ""); });
  p.end("");
  r.ledger = verify_ledger(loaded.metadata, *loaded.model);
  r.model_file = model_file;
  r.model = loaded.spec.name;
  r.dataset = dataset;
  r.device = device.str();
  return r;
}

nlohmann::json to_json(const EvalFileReport& r) {
  return nlohmann::json{{"model_file", r.model_file},
                        {"model", r.model},
                        {"dataset", r.dataset},
                        {"device", r.device},
                        {"test_accuracy", r.eval.accuracy},
                        {"test_loss", r.eval.loss},
                        {"correct", r.eval.correct},
                        {"total", r.eval.total},
                        {"seconds", r.eval.seconds},
                        {"ledger_status", ledger_status_name(r.ledger.status)},
                        {"ledger_detail", r.ledger.detail}};
}

}  // namespace aegis::privacy
