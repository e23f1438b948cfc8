// The names of DP-SGD's modes and the privacy ledger's model-file form (privacy/dp_train.h).
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/named_enum.h"
#include "privacy/dp_train.h"

namespace aegis::privacy {

const char* clipping_name(Clipping clipping) noexcept {
  switch (clipping) {
    case Clipping::Flat:
      return "flat";
    case Clipping::PerLayer:
      return "per-layer";
    case Clipping::Adaptive:
      return "adaptive";
  }
  return "?";
}

Clipping parse_clipping(const std::string& name) {
  return parse_named(name, {Clipping::Flat, Clipping::PerLayer, Clipping::Adaptive}, clipping_name, "clipping");
}

const char* sampling_name(Sampling sampling) noexcept {
  return sampling == Sampling::Poisson ? "poisson" : "shuffle";
}

Sampling parse_sampling(const std::string& name) {
  return parse_named(name, {Sampling::Poisson, Sampling::Shuffle}, sampling_name, "sampling");
}

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
  m["aegis.dp.accountant"] = accountant_name(accountant);
  m["aegis.dp.clipping"] = clipping_name(clipping);
  m["aegis.dp.secure"] = secure ? "true" : "false";
  m["aegis.dp.sampling"] = sampling_name(sampling);
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
    l.accountant = parse_accountant(meta.at("aegis.dp.accountant"));
    l.clipping = parse_clipping(meta.at("aegis.dp.clipping"));
    l.secure = meta.at("aegis.dp.secure") == "true";
    if (auto sm = meta.find("aegis.dp.sampling"); sm != meta.end()) l.sampling = parse_sampling(sm->second);
    check_phases(l.phases);
  } catch (const std::exception& e) {
    AEGIS_THROW(IoError, source << ": malformed privacy ledger in the metadata (" << e.what() << ")");
  }
  return l;
}

}  // namespace aegis::privacy
