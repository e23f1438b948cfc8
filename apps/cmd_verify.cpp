// aegis verify: verified accuracy of a saved model on the first N test examples of a dataset at
// radius ε, by interval bound propagation and/or the CROWN-style linear bound
// (certify/bounds.h), beside its clean accuracy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "certify/bounds.h"
#include "commands.h"
#include "nn/model_file.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct VerifyArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", norm = "linf", method = "both", relu = "adaptive";
  double eps = -1.0;
  std::int64_t max = 0, batch = 256;
};

}  // namespace

Runner add_verify(CLI::App& app) {
  auto a = std::make_shared<VerifyArgs>();
  auto* cmd = app.add_subcommand("verify", "verified accuracy of a saved model by deterministic bound propagation");
  cmd->add_option("--model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->data, "dataset spec, as for train")->capture_default_str();
  cmd->add_option("--eps", a->eps, "radius of the ball in the norm (inputs are in [0, 1])")
      ->required()
      ->check(non_negative());
  cmd->add_option("--norm", a->norm, "linf | l2")->capture_default_str();
  cmd->add_option("--method", a->method, "ibp | crown | both")->capture_default_str();
  cmd->add_option("--relu", a->relu, "CROWN's ReLU lower line: adaptive (CROWN) | wong-kolter (slope u/(u-l))")
      ->capture_default_str();
  cmd->add_option("--max", a->max, "verify only the first N test examples (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cmd->add_option("--batch", a->batch, "examples per bound computation")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  add_common_options(*cmd, a->common);
  return [a]() {
    AEGIS_CHECK(std::isfinite(a->eps) && a->eps >= 0.0, "--eps " << a->eps << " must be ≥ 0 and finite");
    AEGIS_CHECK(a->norm == "linf" || a->norm == "l2", "--norm '" << a->norm << "' must be linf or l2");
    AEGIS_CHECK(a->method == "ibp" || a->method == "crown" || a->method == "both",
                "--method '" << a->method << "' must be ibp, crown or both");
    AEGIS_CHECK(a->relu == "adaptive" || a->relu == "wong-kolter",
                "--relu '" << a->relu << "' must be adaptive or wong-kolter");
    AEGIS_CHECK(a->max >= 0, "--max " << a->max << " must be ≥ 0");
    AEGIS_CHECK(a->batch >= 1, "--batch " << a->batch << " must be at least 1");
    const Device device = resolve_device(a->common);
    nn::LoadedClassifier loaded = nn::load_classifier(a->model);
    certify::check_supported(*loaded.model);
    const nn::DatasetSplit split = nn::load_dataset(a->data, data_dir_hint(a->common));
    check_data_fits(split.test, loaded.spec, a->model, a->data);
    const nn::Dataset test = first_examples(split.test, a->max);
    loaded.model->to(device);

    std::vector<certify::BoundMethod> methods;
    if (a->method != "crown") methods.push_back(certify::BoundMethod::Interval);
    if (a->method != "ibp") methods.push_back(certify::BoundMethod::Linear);
    const auto t0 = std::chrono::steady_clock::now();
    nlohmann::json j{{"command", "verify"},   {"model_file", a->model}, {"model", loaded.spec.name},
                     {"dataset", a->data},    {"eps", a->eps},          {"norm", a->norm},
                     {"method", a->method},   {"relu", a->relu},        {"examples", test.size()},
                     {"device", device.str()}};
    for (const certify::BoundMethod m : methods) {
      certify::BoundOptions o;
      o.norm = a->norm;
      o.eps = a->eps;
      o.method = m;
      o.relu = a->relu == "wong-kolter" ? certify::ReluRelaxation::WongKolter : certify::ReluRelaxation::Adaptive;
      const std::string name = certify::bound_method_name(m);
      Progress bar("verify " + name, test.size(), "examples", !a->common.quiet);
      const certify::VerifyResult r =
          certify::verify(*loaded.model, test, o, a->batch, [&](std::int64_t done, std::int64_t) { bar.update(done); });
      bar.finish();
      j["clean_accuracy"] = r.clean_accuracy;
      j["verified_accuracy_" + name] = r.verified_accuracy;
      j["seconds_" + name] = r.seconds;
      if (!r.non_finite_parameters.empty() && !j.contains("non_finite_parameters")) {
        j["non_finite_parameters"] = r.non_finite_parameters;
        std::string names;
        for (const std::string& p : r.non_finite_parameters) names += (names.empty() ? "" : ", ") + p;
        std::cerr << "aegis: warning: " << a->model << " has parameters holding NaN or Inf: " << names
                  << "; no example is verified\n";
      }
    }
    j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a->common.json) {
      std::cout << j.dump() << std::endl;
      return 0;
    }
    std::printf("verify %s on %s, %s eps %g (%lld examples): clean accuracy %.4f\n", a->model.c_str(), a->data.c_str(),
                a->norm.c_str(), a->eps, static_cast<long long>(test.size()), j["clean_accuracy"].get<double>());
    for (const certify::BoundMethod m : methods) {
      const std::string name = certify::bound_method_name(m);
      std::printf("  %-5s verified accuracy %.4f (%.2f s)\n", name.c_str(),
                  j["verified_accuracy_" + name].get<double>(), j["seconds_" + name].get<double>());
    }
    return 0;
  };
}

}  // namespace aegis::app
