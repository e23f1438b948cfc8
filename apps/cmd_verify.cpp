// aegis verify: verified accuracy of a saved model on test examples of a dataset (chosen by
// --skip, --max and --shard as in `aegis certify`) at radius ε, by interval bound propagation
// and/or the CROWN-style linear bound (certify/bounds.h), beside its clean accuracy; optionally a
// per-example TSV (certify/verify_run.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "certify/bounds.h"
#include "certify/verify_run.h"
#include "commands.h"
#include "nn/model_file.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct VerifyArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", norm = "linf", method = "both", relu = "adaptive", shard = "0/1";
  std::string per_example;
  double eps = -1.0;
  std::int64_t max = 0, skip = 1, batch = 256;
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
  cmd->add_option("--norm", a->norm, "linf | l2")->capture_default_str()->check(one_of({"linf", "l2"}));
  cmd->add_option("--method", a->method, "ibp | crown | both")
      ->capture_default_str()
      ->check(one_of({"ibp", "crown", "both"}));
  cmd->add_option("--relu", a->relu, "CROWN's ReLU lower line: adaptive (CROWN) | wong-kolter (slope u/(u-l))")
      ->capture_default_str()
      ->check(one_of({"adaptive", "wong-kolter"}));
  cmd->add_option("--max", a->max, "verify only test examples with index < N (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cmd->add_option("--skip", a->skip, "verify every N-th test example (index ≡ 0 mod N), as certify")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  cmd->add_option("--shard", a->shard, "i/k: of the selected examples, verify those at positions ≡ i (mod k)")
      ->capture_default_str();
  cmd->add_option("--per-example", a->per_example,
                  "write a TSV: idx, label, verified, margin_lower and one margin column per method");
  cmd->add_option("--batch", a->batch, "examples per bound computation")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  add_common_options(*cmd, a->common);
  return [a]() {
    certify::VerifyRunOptions o;
    o.methods.clear();
    if (a->method != "crown") o.methods.push_back(certify::BoundMethod::Interval);
    if (a->method != "ibp") o.methods.push_back(certify::BoundMethod::Linear);
    o.bound.norm = parse_norm(a->norm);
    o.bound.eps = a->eps;
    o.bound.relu = a->relu == "wong-kolter" ? certify::ReluRelaxation::WongKolter : certify::ReluRelaxation::Adaptive;
    o.batch_size = a->batch;
    o.inputs = {a->skip, a->max, certify::parse_shard(a->shard)};
    o.per_example_path = a->per_example;
    const Device device = resolve_device(a->common);
    nn::LoadedClassifier loaded = nn::load_classifier(a->model);
    certify::check_supported(*loaded.model);
    const nn::DatasetSplit split = nn::load_dataset(a->data, data_dir_hint(a->common));
    check_data_fits(split.test, loaded.spec, a->model, a->data);
    loaded.model->to(device);

    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<Progress> bar;  // of the method running now
    std::size_t bar_method = o.methods.size();
    const certify::VerifyRun run =
        certify::run_verify(*loaded.model, split.test, o, [&](std::size_t m, std::int64_t done, std::int64_t total) {
          if (m != bar_method) {
            if (bar) bar->finish();
            bar = std::make_unique<Progress>(std::string("verify ") + certify::bound_method_name(o.methods[m]), total,
                                             "examples", !a->common.quiet);
            bar_method = m;
          }
          bar->update(done);
        });
    if (bar) bar->finish();
    const std::int64_t examples = static_cast<std::int64_t>(run.indices.size());
    nlohmann::json j{{"command", "verify"},   {"model_file", a->model}, {"model", loaded.spec.name},
                     {"dataset", a->data},    {"eps", a->eps},          {"norm", a->norm},
                     {"method", a->method},   {"relu", a->relu},        {"examples", examples},
                     {"skip", a->skip},       {"max", a->max},          {"shard", a->shard},
                     {"device", device.str()}};
    if (!a->per_example.empty()) j["per_example"] = a->per_example;
    for (std::size_t m = 0; m < o.methods.size(); ++m) {
      const std::string name = certify::bound_method_name(o.methods[m]);
      const certify::VerifyResult& r = run.results[m];
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
                a->norm.c_str(), a->eps, static_cast<long long>(examples), j["clean_accuracy"].get<double>());
    for (const certify::BoundMethod m : o.methods) {
      const std::string name = certify::bound_method_name(m);
      std::printf("  %-5s verified accuracy %.4f (%.2f s)\n", name.c_str(),
                  j["verified_accuracy_" + name].get<double>(), j["seconds_" + name].get<double>());
    }
    if (!a->per_example.empty()) std::printf("per-example results: %s\n", a->per_example.c_str());
    return 0;
  };
}

}  // namespace aegis::app
