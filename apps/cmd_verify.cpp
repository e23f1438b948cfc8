// aegis verify: verified accuracy of a saved model on test examples of a dataset (chosen by
// --skip, --max and --shard as in `aegis certify`) at radius ε, by interval bound propagation
// and/or the CROWN-style linear bound (certify/bounds.h), beside its clean accuracy; optionally a
// per-example TSV (certify/verify_run.h). With --vnnlib it answers a VNN-LIB property (sat, unsat
// or unknown; certify/vnnlib_verify.h), with --instances each row of a VNN-COMP instances.csv.
#include <cstdio>
#include <iostream>
#include <memory>

#include "certify/bounds.h"
#include "certify/verify_run.h"
#include "certify/vnnlib_verify.h"
#include "commands.h"
#include "core/atomic_file.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct VerifyArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", norm = "linf", method = "both", relu = "adaptive", shard = "0/1";
  std::string per_example, vnnlib, instances, out;
  double eps = -1.0, timeout = 0.0;
  std::int64_t max = 0, skip = 1, batch = 256;
  std::uint64_t seed = 0;
};

certify::VnnOptions vnn_options(const VerifyArgs& a) {
  certify::VnnOptions o;
  o.methods = certify::parse_bound_methods(a.method);
  o.relu = certify::parse_relu_relaxation(a.relu);
  o.timeout = a.timeout;
  o.seed = a.seed;
  return o;
}

std::string tsv_row(const certify::VnnFileReport& r) {
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%.3f", r.result.seconds);
  return r.model_file + "\t" + r.property_file + "\t" +
         (r.error.empty() ? certify::vnn_answer_name(r.result.answer) : "error") + "\t" + r.result.reason + "\t" +
         seconds + "\n";
}

int run_vnnlib(const VerifyArgs& a) {
  AEGIS_CHECK(a.vnnlib.empty() || a.instances.empty(), "verify takes --vnnlib or --instances, not both");
  AEGIS_CHECK(a.eps < 0.0 && a.per_example.empty(),
              "--eps and --per-example belong to dataset verification, not to --vnnlib / --instances");
  const Device device = resolve_device(a.common);
  if (!a.vnnlib.empty()) {
    AEGIS_CHECK(!a.model.empty(), "verify --vnnlib needs --model");
    nlohmann::json j = certify::to_json(certify::verify_vnnlib_file(a.model, a.vnnlib, vnn_options(a), device, a.out));
    j["command"] = "verify";
    return print_result(j, a.common.json, [&](const nlohmann::json& r) {
      certify::VnnResult v;
      v.answer = r["result"] == "sat"
                     ? certify::VnnAnswer::Sat
                     : (r["result"] == "unsat" ? certify::VnnAnswer::Unsat : certify::VnnAnswer::Unknown);
      if (r.contains("x")) {
        v.x = r["x"].get<std::vector<float>>();
        v.y = r["y"].get<std::vector<float>>();
      }
      std::fputs(certify::vnn_result_text(v).c_str(), stdout);
    });
  }
  AEGIS_CHECK(a.model.empty(), "--instances names the models itself; leave out --model");
  std::string table = "onnx\tvnnlib\tresult\treason\tseconds\n";
  if (!a.common.json) std::fputs(table.c_str(), stdout);
  nlohmann::json rows = nlohmann::json::array();
  for (const certify::VnnFileReport& r :
       certify::run_instances(a.instances, vnn_options(a), device, [&](const certify::VnnFileReport& r) {
         if (!a.common.json) {
           std::fputs(tsv_row(r).c_str(), stdout);
           std::fflush(stdout);
         }
       })) {
    table += tsv_row(r);
    rows.push_back(certify::to_json(r));
  }
  if (!a.out.empty()) write_file_atomically(a.out, [&](int fd) { return write_fully(fd, table.data(), table.size()); });
  if (a.common.json) std::cout << nlohmann::json{{"command", "verify"}, {"instances", rows}}.dump() << std::endl;
  std::size_t failed = 0;
  std::string first;
  for (const nlohmann::json& r : rows)
    if (r.contains("error") && failed++ == 0) first = r["error"].get<std::string>();
  AEGIS_CHECK(failed == 0,
              failed << " of " << rows.size() << " instances could not be run (result 'error'); the first: " << first);
  return 0;
}

}  // namespace

Runner add_verify(CLI::App& app) {
  auto a = std::make_shared<VerifyArgs>();
  auto* cmd = app.add_subcommand(
      "verify", "verified accuracy of a saved model by deterministic bound propagation, or VNN-LIB properties");
  cmd->add_option("--model", a->model, "model file written by `aegis train`, or an .onnx file");
  cmd->add_option("--data", a->data, "dataset spec, as for train")->capture_default_str();
  cmd->add_option("--eps", a->eps, "radius of the ball in the norm (inputs are in [0, 1]); required without --vnnlib")
      ->check(non_negative());
  cmd->add_option("--vnnlib", a->vnnlib, "answer this VNN-LIB property on --model: sat, unsat or unknown");
  cmd->add_option("--instances", a->instances, "run every row 'onnx,vnnlib,timeout' of this CSV (VNN-COMP)");
  cmd->add_option("--timeout", a->timeout, "--vnnlib: give up (unknown) after this many seconds (0: never)")
      ->capture_default_str()
      ->check(non_negative());
  cmd->add_option("--seed", a->seed, "--vnnlib: seed of the counterexample search's random starts")
      ->capture_default_str()
      ->check(seed_value());
  cmd->add_option("--out", a->out,
                  "--vnnlib: write the result (and a counterexample) here; --instances: the result table");
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
    if (!a->vnnlib.empty() || !a->instances.empty()) return run_vnnlib(*a);
    AEGIS_CHECK(!a->model.empty(), "verify needs --model (or --instances)");
    AEGIS_CHECK(a->eps >= 0.0, "verify needs --eps (or --vnnlib / --instances)");
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
