// aegis report MODEL: what a model file holds (privacy/model_report.h), as text or JSON.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "options.h"
#include "privacy/model_report.h"
#include "progress.h"
#include "trust/trust_report.h"

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

void print_trust(const nlohmann::json& j) {
  std::printf("model         %s (%s) on %lld %s test examples\n", j["model_file"].get<std::string>().c_str(),
              j["model"].get<std::string>().c_str(), j["examples"].get<long long>(), j["data"].get<std::string>().c_str());
  std::printf("accuracy      %.4f\n", j["accuracy"].get<double>());
  const char* label = "training      ";
  for (const auto& [key, value] : j["training"].items()) {
    std::printf("%s%s = %s\n", label, key.c_str(), value.get<std::string>().c_str());
    label = "              ";
  }
  if (j["epsilon"].is_null())
    std::printf("privacy       no DP ledger (%s)\n", j["ledger_status"].get<std::string>().c_str());
  else
    std::printf("privacy       epsilon %.4g at delta %g, ledger %s\n", j["epsilon"].get<double>(),
                j["delta"].get<double>(), j["ledger_status"].get<std::string>().c_str());
  if (j["sigma"].is_null()) {
    std::printf("certified     skipped: %s\n", j["certification_skipped"].get<std::string>().c_str());
  } else {
    std::printf("certified     sigma %g:", j["sigma"].get<double>());
    for (const auto& [radius, acc] : j["certified_accuracy"].items())
      std::printf(" r=%s %.4f", radius.c_str(), acc.get<double>());
    std::printf(", ACR %.3f, abstained %.4f\n", j["acr"].get<double>(), j["abstention_rate"].get<double>());
  }
  std::printf("robust        L-inf eps %g: PGD %.4f", j["eps"].get<double>(), j["pgd_robust_accuracy"].get<double>());
  if (!j["suite_robust_accuracy"].is_null())
    std::printf(", suite (worst case) %.4f", j["suite_robust_accuracy"].get<double>());
  std::printf("\n");
  if (!j["mia_auc"].is_null())
    std::printf("membership    loss attack AUC %.4f, TPR %.4f at 1%% FPR, %.4f at 0.1%% FPR\n",
                j["mia_auc"].get<double>(), j["mia_tpr_at_1_fpr"].get<double>(), j["mia_tpr_at_0_1_fpr"].get<double>());
}

}  // namespace

Runner add_report(CLI::App& app) {
  struct ReportArgs {
    std::string model;
    CommonOptions common;
    trust::TrustOptions trust;
    bool no_membership = false;
  };
  auto a = std::make_shared<ReportArgs>();
  auto* cmd = app.add_subcommand("report",
                                 "what a model file holds: architecture, training metadata and the privacy ledger "
                                 "with its verification; with --data, its whole trust profile measured on test data "
                                 "(accuracy, epsilon, certified accuracy, PGD and suite robust accuracy, membership "
                                 "inference)");
  cmd->add_option("model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->trust.data, "measure the trust profile on this dataset's test split");
  cmd->add_option("--max", a->trust.max, "test examples per measurement (and as many training examples)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  cmd->add_option("--sigma", a->trust.sigma, "certify at this sigma (default: the model's Gaussian augmentation)")
      ->check(positive());
  cmd->add_option("--n0", a->trust.n0, "CERTIFY's selection samples")->capture_default_str()->check(integer_in(1, kMaxSamples));
  cmd->add_option("--n", a->trust.n, "CERTIFY's estimation samples")->capture_default_str()->check(integer_in(1, kMaxSamples));
  cmd->add_option("--alpha", a->trust.alpha, "CERTIFY's failure probability")->capture_default_str()->check(open_unit());
  cmd->add_option("--batch", a->trust.batch, "noisy inputs per forward pass")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--radii", a->trust.radii, "radii of the certified accuracy, comma-separated")
      ->delimiter(',')
      ->check(non_negative());
  cmd->add_option("--eps", a->trust.eps, "L-inf radius of PGD and the suite")->capture_default_str()->check(non_negative());
  cmd->add_option("--pgd-steps", a->trust.pgd_steps, "PGD iterations")->capture_default_str()->check(integer_in(1, 1000000));
  cmd->add_option("--suite-steps", a->trust.suite_steps, "iterations of the suite's attacks (0: no suite)")
      ->capture_default_str()
      ->check(integer_in(0, 1000000));
  cmd->add_flag("--no-membership", a->no_membership, "leave out the membership-inference loss attack");
  cmd->add_option("--seed", a->trust.seed, "seed of the smoothing noise and the random starts")
      ->capture_default_str()
      ->check(seed_value());
  cmd->add_option("--plot", a->trust.plot, "draw certified accuracy against radius into this .png, .svg or .pdf");
  add_common_options(*cmd, a->common);
  CLI::Option* data = cmd->get_option("--data");
  return [a, data]() {
    if (data->count() == 0) {
      const privacy::ModelReport r = privacy::describe_model_file(a->model);
      nlohmann::json j = privacy::to_json(r);
      j["command"] = "report";
      return print_result(j, a->common.json, [&](const nlohmann::json&) { print_text(r); });
    }
    trust::TrustOptions o = a->trust;
    o.model_file = a->model;
    o.data_dir = data_dir_hint(a->common);
    o.device = resolve_device(a->common);
    o.membership = !a->no_membership;
    CliProgress progress(!a->common.quiet);
    nlohmann::json j = trust::to_json(trust::trust_report(o, &progress));
    j["command"] = "report";
    return print_result(j, a->common.json, print_trust);
  };
}

}  // namespace aegis::app
