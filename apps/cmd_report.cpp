// aegis report MODEL: what a model file holds (privacy/model_report.h), as text or JSON.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "privacy/model_report.h"

namespace aegis::app {

namespace {

void print_text(const privacy::ModelReport& r) {
  std::printf("model file    %s%s\n", r.path.c_str(), r.format.empty() ? "" : (" (" + r.format + ")").c_str());
  // An imported ONNX graph has no single activation to name.
  const std::string activation = r.spec.activation.empty() ? "" : ", activation " + r.spec.activation;
  std::printf("architecture  %s%s, %lld classes\n", r.spec.name.c_str(), activation.c_str(),
              static_cast<long long>(r.spec.num_classes));
  std::printf("input shape   %s\n", shape_str(r.spec.input_shape).c_str());
  std::printf("parameters    %lld in %lld tensors\n", static_cast<long long>(r.parameters),
              static_cast<long long>(r.tensors));
  const char* label = "training      ";
  for (const auto& [key, value] : r.training) {
    std::printf("%s%s = %s\n", label, key.c_str(), value.c_str());
    label = "              ";
  }
  if (r.ledger) {
    const privacy::PrivacyLedger& l = *r.ledger;
    std::printf("privacy       epsilon %.6g at delta %g (%s accountant)%s\n", l.epsilon, l.delta,
                privacy::accountant_name(l.accountant),
                r.ledger_check.status == privacy::LedgerStatus::Verified ? "" : " -- NOT verified, see below");
    std::printf("              clipping %s, max grad norm %g, sampling %s%s, %lld steps in %zu phase(s)\n",
                privacy::clipping_name(l.clipping), l.max_grad_norm, privacy::sampling_name(l.sampling),
                l.secure ? ", secure" : "", static_cast<long long>(l.steps()), l.phases.size());
    for (std::size_t i = 0; i < l.phases.size(); ++i)
      std::printf("              phase %zu: noise multiplier %g, sampling rate %g, %lld steps\n", i + 1,
                  l.phases[i].noise_multiplier, l.phases[i].sampling_rate, static_cast<long long>(l.phases[i].steps));
  } else if (!r.ledger_error.empty()) {
    std::printf("privacy       unreadable ledger: %s\n", r.ledger_error.c_str());
  }
  std::printf("verification  %s\n", r.ledger_check.detail.c_str());
}

}  // namespace

Runner add_report(CLI::App& app) {
  struct ReportArgs {
    std::string model;
    bool json = false;
  };
  auto a = std::make_shared<ReportArgs>();
  auto* cmd = app.add_subcommand("report",
                                 "what a model file holds: architecture, training metadata and the "
                                 "privacy ledger with its verification");
  cmd->add_option("model", a->model, "model file written by `aegis train`")->required();
  cmd->add_flag("--json", a->json, "print one JSON object on stdout");
  return [a]() {
    const privacy::ModelReport r = privacy::describe_model_file(a->model);
    nlohmann::json j = privacy::to_json(r);
    j["command"] = "report";
    return print_result(j, a->json, [&](const nlohmann::json&) { print_text(r); });
  };
}

}  // namespace aegis::app
