#include "privacy/model_report.h"

#include <set>

#include "nn/model_file.h"

namespace aegis::privacy {

ModelReport describe_model_file(const std::string& path) {
  nn::LoadedClassifier loaded = nn::load_classifier(path);
  ModelReport r;
  r.path = path;
  r.spec = loaded.spec;
  r.parameters = loaded.model->num_parameters();
  r.tensors = static_cast<std::int64_t>(loaded.model->named_parameters().size());
  if (auto it = loaded.metadata.find("aegis.format"); it != loaded.metadata.end()) r.format = it->second;
  static const std::set<std::string> kArchitecture{"aegis.format",      "aegis.model",      "aegis.input_shape",
                                                   "aegis.num_classes", "aegis.activation", kLedgerDigestKey};
  for (const auto& [key, value] : loaded.metadata)
    if (!kArchitecture.count(key) && key.rfind("aegis.dp.", 0) != 0) r.training[key] = value;
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

}  // namespace aegis::privacy
