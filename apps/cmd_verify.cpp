// aegis verify: verified accuracy of a saved model on test examples of a dataset (chosen by
// --skip, --max and --shard as in `aegis certify`) at radius ε, by interval bound propagation
// and/or the CROWN-style linear bound (certify/bounds.h), beside its clean accuracy; optionally a
// per-example TSV (certify/verify_run.h).
#include <cstdio>
#include <memory>

#include "certify/bounds.h"
#include "certify/verify_run.h"
#include "commands.h"
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
    o.methods = certify::parse_bound_methods(a->method);
    o.bound.norm = parse_norm(a->norm);
    o.bound.eps = a->eps;
    o.bound.relu = certify::parse_relu_relaxation(a->relu);
    o.batch_size = a->batch;
    o.inputs = {a->skip, a->max, certify::parse_shard(a->shard)};
    o.per_example_path = a->per_example;
    const Device device = resolve_device(a->common);
    CliProgress progress(!a->common.quiet);
    nlohmann::json j =
        certify::to_json(certify::verify_file(a->model, a->data, data_dir_hint(a->common), o, device, &progress));
    j["command"] = "verify";
    j["shard"] = a->shard;
    return print_result(j, a->common.json, [&](const nlohmann::json& r) {
      std::printf("verify %s on %s, %s eps %g (%lld examples): clean accuracy %.4f\n", a->model.c_str(),
                  a->data.c_str(), a->norm.c_str(), a->eps, r["examples"].get<long long>(),
                  r["clean_accuracy"].get<double>());
      for (const certify::BoundMethod m : o.methods) {
        const std::string name = certify::bound_method_name(m);
        std::printf("  %-5s verified accuracy %.4f (%.2f s)\n", name.c_str(),
                    r["verified_accuracy_" + name].get<double>(), r["seconds_" + name].get<double>());
      }
      if (!a->per_example.empty()) std::printf("per-example results: %s\n", a->per_example.c_str());
    });
  };
}

}  // namespace aegis::app
