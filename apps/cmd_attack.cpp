// aegis attack: runs one attack, the suite of attacks/suite.h, or AutoAttack (attacks/autoattack.h)
// on the first N test examples of a dataset against a saved model, and reports clean and robust
// accuracy, the attack success rate among the examples the model got right, and the size of
// successful perturbations; optionally the per-example TSV and the adversarial examples.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attacks/attacks.h"
#include "attacks/autoattack.h"
#include "attacks/evaluate.h"
#include "attacks/per_example.h"
#include "attacks/suite.h"
#include "certify/pixeldp.h"
#include "commands.h"
#include "core/checked_math.h"
#include "nn/functional.h"
#include "nn/model_file.h"
#include "nn/quantize.h"
#include "nn/serialize.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct AttackArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", attack, save_adv, per_example, norm, version = "standard";
  float eps = -1.0f, step_size = 0.0f;
  int steps = 0, restarts = 1, queries = 5000, target_classes = 9, eot = 0;
  bool targeted = false;
  std::int64_t max = 0, batch = 256;
  std::uint64_t seed = 0;
  attacks::MethodOptions method;  // C&W's c, κ, learning rate, binary-search steps, abort
  bool no_abort = false;
  int input_bits = 0;
  bool bpda = false, pixeldp = false;
};

// The names --attack takes: an attack method and its norm (pgd-linf, pgd-l2), or the suite and
// autoattack. `norm_choice`: --norm may change the norm (the APGD family, Square).
struct CliAttack {
  const char* name;
  attacks::AttackMethod method;
  Norm norm;
  bool norm_choice;
  int default_steps;
};
constexpr CliAttack kAttacks[] = {{"fgsm", attacks::AttackMethod::Fgsm, Norm::Linf, false, 1},
                                  {"bim", attacks::AttackMethod::Bim, Norm::Linf, false, 10},
                                  {"pgd-linf", attacks::AttackMethod::Pgd, Norm::Linf, false, 10},
                                  {"pgd-l2", attacks::AttackMethod::Pgd, Norm::L2, false, 10},
                                  {"mifgsm", attacks::AttackMethod::Mifgsm, Norm::Linf, false, 10},
                                  {"cw-l2", attacks::AttackMethod::CwL2, Norm::L2, false, 100},
                                  {"apgd-ce", attacks::AttackMethod::ApgdCe, Norm::Linf, true, 100},
                                  {"apgd-dlr", attacks::AttackMethod::ApgdDlr, Norm::Linf, true, 100},
                                  {"apgd-t", attacks::AttackMethod::ApgdT, Norm::Linf, true, 100},
                                  {"fab-t", attacks::AttackMethod::FabT, Norm::Linf, true, 100},
                                  {"square", attacks::AttackMethod::Square, Norm::Linf, true, 0}};
constexpr const char* kAttackNames =
    "fgsm | bim | pgd-linf | pgd-l2 | mifgsm | cw-l2 | apgd-ce | apgd-dlr | apgd-t | fab-t | square | suite | "
    "autoattack";

const CliAttack& cli_attack(const std::string& name) {
  for (const CliAttack& c : kAttacks)
    if (name == c.name) return c;
  AEGIS_THROW(InvalidArgument, "unknown attack '" << name << "' (one of " << kAttackNames << ")");
}

bool is_group(const std::string& name) {
  return name == "suite" || name == "autoattack";
}

Norm chosen_norm(const AttackArgs& a, Norm fallback) {
  return a.norm.empty() ? fallback : parse_norm(a.norm);
}

void write_outputs(const AttackArgs& a, const std::vector<attacks::PerExampleRow>& rows, const Tensor& adversarial,
                   const nn::Dataset& test, Norm norm) {
  if (!a.per_example.empty()) attacks::write_per_example_tsv(a.per_example, rows);
  if (!a.save_adv.empty())
    nn::save_safetensors(
        a.save_adv, {{"adversarial", adversarial}, {"labels", test.labels.clone()}},
        {{"aegis.attack", a.attack}, {"aegis.eps", std::to_string(a.eps)}, {"aegis.norm", norm_name(norm)}});
}

nlohmann::json run_suite_command(const AttackArgs& a, nn::Module& model, const nn::Dataset& test, Device device) {
  attacks::SuiteOptions so;
  so.norm = chosen_norm(a, Norm::Linf);
  so.eps = a.eps;
  so.steps = a.steps;
  so.restarts = a.restarts;
  so.seed = a.seed;
  so.batch_size = a.batch;
  so.keep_adversarial = !a.save_adv.empty();
  so.bpda = a.bpda;
  CliProgress progress(!a.common.quiet);
  const attacks::SuiteResult r = attacks::run_suite(model, test, device, so, &progress);
  write_outputs(a, r.per_example, r.adversarial, test, so.norm);
  nlohmann::json per = nlohmann::json::object();
  for (const auto& [name, acc] : r.per_attack) per[name] = acc;
  const double broken_correct = r.clean_accuracy - r.robust_accuracy;
  nlohmann::json j{{"clean_accuracy", r.clean_accuracy},
                   {"robust_accuracy", r.robust_accuracy},
                   {"attack_success_rate", r.clean_accuracy > 0 ? broken_correct / r.clean_accuracy : 0.0},
                   {"mean_perturbation_norm", nullptr},
                   {"median_perturbation_norm", nullptr},
                   {"norm", norm_name(so.norm)},
                   {"steps", so.steps},
                   {"restarts", so.restarts},
                   {"per_attack", per},
                   {"warnings", r.warnings},
                   {"seconds", r.seconds}};
  if (!a.common.quiet)
    for (const std::string& w : r.warnings) std::cerr << "aegis: warning: " << w << "\n";
  return j;
}

nlohmann::json run_autoattack_command(const AttackArgs& a, nn::Module& model, const nn::Dataset& test, Device device) {
  attacks::AutoAttackOptions o;
  o.version = attacks::parse_autoattack_version(a.version);
  o.norm = chosen_norm(a, Norm::Linf);
  o.eps = a.eps;
  o.steps = a.steps;
  o.target_classes = a.target_classes;
  o.queries = a.queries;
  if (a.eot > 0) o.eot_draws = a.eot;
  o.seed = a.seed;
  o.batch_size = a.batch;
  o.keep_adversarial = !a.save_adv.empty();
  o.bpda = a.bpda;
  CliProgress progress(!a.common.quiet);
  const attacks::AutoAttackResult r = attacks::run_autoattack(model, test, device, o, &progress);
  write_outputs(a, r.per_example, r.adversarial, test, o.norm);
  nlohmann::json after = nlohmann::json::object();
  for (const auto& [name, acc] : r.robust_after) after[name] = acc;
  const double broken_correct = r.clean_accuracy - r.robust_accuracy;
  nlohmann::json j{{"clean_accuracy", r.clean_accuracy},
                   {"robust_accuracy", r.robust_accuracy},
                   {"attack_success_rate", r.clean_accuracy > 0 ? broken_correct / r.clean_accuracy : 0.0},
                   {"norm", norm_name(o.norm)},
                   {"version", a.version},
                   {"sequence", attacks::autoattack_sequence(o.version)},
                   {"missing", r.missing},
                   {"robust_after", after},
                   {"steps", o.steps},
                   {"seconds", r.seconds}};
  if (o.version == attacks::AutoAttackVersion::Standard) {
    j["target_classes"] = o.target_classes;
    j["queries"] = o.queries;
  } else {
    j["eot_draws"] = o.eot_draws;
  }
  if (!a.common.quiet)
    for (const std::string& name : r.missing) std::cerr << "aegis: warning: " << name << " is not implemented\n";
  return j;
}

nlohmann::json run_one(const AttackArgs& a, nn::Module& model, const nn::Dataset& test, Device device,
                       std::int64_t num_classes) {
  const CliAttack& c = cli_attack(a.attack);
  attacks::EvaluationOptions o;
  o.method = c.method;
  o.attack.norm = chosen_norm(a, c.norm);
  // C&W is minimal-norm: without --eps it reports every perturbation it finds.
  o.attack.eps = Tensor::full({1}, a.eps >= 0 ? a.eps : 0.0f);
  if (a.step_size > 0) o.attack.step_size = Tensor::full({1}, a.step_size);
  o.attack.steps = a.steps;
  o.attack.restarts = a.restarts;
  o.attack.seed = a.seed;
  o.attack.targeted = a.targeted;
  o.attack.bpda = a.bpda;
  o.method_options = a.method;
  o.method_options.cw_abort_early = !a.no_abort;
  o.method_options.queries = a.queries;
  o.method_options.target_classes = a.target_classes;
  if (a.eot > 0) o.attack.eot_draws = a.eot;
  o.batch_size = a.batch;
  o.keep_adversarial = !a.save_adv.empty();
  CliProgress progress(!a.common.quiet);
  const attacks::Evaluation r = attacks::evaluate(model, test, device, num_classes, o, &progress);
  write_outputs(a, r.per_example, r.adversarial, test, o.attack.norm);
  nlohmann::json j{{"clean_accuracy", r.clean_accuracy},
                   {"robust_accuracy", r.robust_accuracy},
                   {"attack_success_rate", r.attack_success_rate},
                   {"mean_perturbation_norm", r.mean_perturbation_norm},
                   {"median_perturbation_norm", r.median_perturbation_norm},
                   {"norm", norm_name(o.attack.norm)},
                   {"seconds", r.seconds}};
  // Only what the method reads: FGSM takes one step, Square counts queries instead.
  if (c.method == attacks::AttackMethod::Square) {
    j["queries"] = a.queries;
  } else if (c.method != attacks::AttackMethod::Fgsm) {
    j["steps"] = a.steps;
  }
  if (attacks::has_restarts(c.method)) j["restarts"] = a.restarts;
  if (c.method == attacks::AttackMethod::ApgdT || c.method == attacks::AttackMethod::FabT)
    j["target_classes"] = a.target_classes;
  if (c.method == attacks::AttackMethod::CwL2) {
    j["c"] = a.method.cw_initial_const;
    j["kappa"] = a.method.cw_confidence;
    j["lr"] = a.method.cw_lr;
    j["binary_search_steps"] = a.method.cw_binary_search_steps;
    j["abort_early"] = !a.no_abort;
  }
  return j;
}

// Checks of the options that depend on the attack, before any work.
void check_args(AttackArgs& a) {
  const bool group = is_group(a.attack);
  const CliAttack* c = group ? nullptr : &cli_attack(a.attack);  // an unknown name fails here
  const bool cw = c && c->method == attacks::AttackMethod::CwL2;
  AEGIS_CHECK(cw || a.eps >= 0, "--eps is required for --attack " << a.attack);
  if (!a.norm.empty()) {
    parse_norm(a.norm);
    AEGIS_CHECK(group || c->norm_choice || parse_norm(a.norm) == c->norm,
                "--norm does not apply to " << a.attack << " (its norm is " << norm_name(c->norm) << ")");
  }
  AEGIS_CHECK(!(a.targeted && group), "--targeted does not apply to the " << a.attack);
  AEGIS_CHECK(!(a.targeted && c &&
                (c->method == attacks::AttackMethod::ApgdT || c->method == attacks::AttackMethod::FabT ||
                 c->method == attacks::AttackMethod::Square)),
              "--targeted does not apply to "
                  << a.attack
                  << (c && c->method == attacks::AttackMethod::ApgdT ? " (it picks its targets: --target-classes)"
                                                                     : ""));
  AEGIS_CHECK(a.attack == "autoattack" || a.version == "standard", "--version applies to --attack autoattack only");
  const bool gradient = c && c->method != attacks::AttackMethod::CwL2 && c->method != attacks::AttackMethod::FabT &&
                        c->method != attacks::AttackMethod::Square;
  AEGIS_CHECK(
      a.eot == 0 || gradient || (a.attack == "autoattack" && a.version == "rand"),
      "--eot applies to fgsm, bim, pgd, mifgsm, the APGD family and autoattack --version rand, not " << a.attack);
  if (a.steps == 0) a.steps = group ? 100 : std::max(c->default_steps, 1);
}

}  // namespace

Runner add_attack(CLI::App& app) {
  auto a = std::make_shared<AttackArgs>();
  auto* cmd = app.add_subcommand("attack", "attack a saved model on test examples and report robust accuracy");
  cmd->add_option("--model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->data, "dataset spec, as for train")->capture_default_str();
  cmd->add_option("--attack", a->attack, kAttackNames)->required();
  cmd->add_option("--eps", a->eps,
                  "perturbation radius in the attack's norm (inputs are in [0, 1]); required except for cw-l2, "
                  "where it only bounds what counts as a success")
      ->check(non_negative(FLT_MAX));
  cmd->add_option("--norm", a->norm,
                  "linf | l2, for apgd-ce, apgd-dlr, apgd-t, square, suite, autoattack "
                  "(default linf; the other attacks name their norm)")
      ->check(one_of({"linf", "l2"}));
  cmd->add_option("--steps", a->steps,
                  "iterations: 100 for the APGD family, cw-l2 (Adam iterations per binary-search step, "
                  "torchattacks' `steps`), suite and autoattack; 10 for bim, pgd and mifgsm; fgsm takes one")
      ->check(integer_in(1, kMaxIterations));
  cmd->add_option("--step-size", a->step_size, "step size > 0 (default: the attack's own, from eps and steps)")
      ->check(positive(FLT_MAX));
  cmd->add_option("--restarts", a->restarts,
                  "random restarts of pgd-linf, pgd-l2, apgd-ce and apgd-dlr, per target class for apgd-t, and "
                  "of PGD in the suite; the other attacks run once")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_flag("--targeted", a->targeted, "targeted attack with target (label + 1) mod K");
  cmd->add_option("--queries", a->queries, "square (and autoattack's square): model queries per example")
      ->capture_default_str()
      ->check(integer_in(1, kMaxIterations));
  cmd->add_option("--target-classes", a->target_classes, "apgd-t, fab-t (and autoattack): target classes per example")
      ->capture_default_str()
      ->check(integer_in(1, 1000));
  cmd->add_option("--version", a->version, "autoattack: standard | rand (APGD-CE and APGD-DLR with EOT)")
      ->capture_default_str()
      ->check(one_of({"standard", "rand"}));
  cmd->add_option("--eot", a->eot,
                  "EOT draws per gradient for fgsm, bim, pgd, mifgsm and the APGD family (default 1; autoattack "
                  "--version rand: 20)")
      ->check(integer_in(1, 100000));
  cmd->add_option("--c", a->method.cw_initial_const, "cw-l2: initial constant c of the binary search")
      ->capture_default_str()
      ->check(positive(FLT_MAX));
  cmd->add_option("--kappa", a->method.cw_confidence, "cw-l2: confidence κ")
      ->capture_default_str()
      ->check(non_negative(FLT_MAX));
  cmd->add_option("--lr", a->method.cw_lr, "cw-l2: Adam learning rate")
      ->capture_default_str()
      ->check(positive(FLT_MAX));
  cmd->add_option("--binary-search-steps", a->method.cw_binary_search_steps,
                  "cw-l2: binary-search steps over c (torchattacks' CW: 1, with --c 1)")
      ->capture_default_str()
      ->check(integer_in(1, 1000));
  cmd->add_flag("--no-abort", a->no_abort, "cw-l2: run every Adam iteration (no early abort when the loss stalls)");
  cmd->add_option("--max", a->max, "attack only the first N test examples (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cmd->add_option("--seed", a->seed, "seed of random starts")->capture_default_str()->check(seed_value());
  cmd->add_option("--batch", a->batch, "examples per attack batch")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--save-adv", a->save_adv,
                  "write the adversarial examples and labels here (safetensors); suite and autoattack: the point "
                  "of the attack that broke each input, the clean input when none did");
  cmd->add_option("--per-example", a->per_example,
                  "write a TSV here: idx, label, clean_predict, adv_predict, broken_by, perturbation_norm");
  cmd->add_option("--input-bits", a->input_bits,
                  "attack the model behind a bit-depth reduction of its input to B bits (a quantization defense)")
      ->check(integer_in(1, 16));
  cmd->add_flag("--pixeldp", a->pixeldp,
                "the model file is a PixelDP network (`aegis pixeldp train`): its noise layer draws afresh at "
                "every forward pass, so attack it with --eot");
  cmd->add_flag("--bpda", a->bpda,
                "BPDA: gradients pass straight through non-differentiable layers (e.g. --input-bits)");
  add_common_options(*cmd, a->common);
  return [a]() {
    check_args(*a);
    const Device device = resolve_device(a->common);
    nn::LoadedClassifier loaded;
    if (a->pixeldp) {
      certify::LoadedPixelDp p = certify::load_pixeldp(a->model);
      loaded.model = p.net;
      loaded.spec = p.spec;
    } else {
      loaded = nn::load_classifier(a->model);
    }
    const nn::DatasetSplit split = nn::load_dataset(a->data, data_dir_hint(a->common));
    check_data_fits(split.test, loaded.spec, a->model, a->data);
    const nn::Dataset test = first_examples(split.test, a->max);
    loaded.model->to(device);
    const std::shared_ptr<nn::Module> model =
        a->input_bits > 0 ? nn::with_input_quantization(loaded.model, a->input_bits) : loaded.model;
    nlohmann::json j = a->attack == "suite"        ? run_suite_command(*a, *model, test, device)
                       : a->attack == "autoattack" ? run_autoattack_command(*a, *model, test, device)
                                                   : run_one(*a, *model, test, device, loaded.spec.num_classes);
    if (a->input_bits > 0) j["input_bits"] = a->input_bits;
    j["bpda"] = a->bpda;
    j["pixeldp"] = a->pixeldp;
    if (a->eot > 0) j["eot_draws"] = a->eot;
    j["command"] = "attack";
    j["attack"] = a->attack;
    j["eps"] = a->eps >= 0 ? nlohmann::json(a->eps) : nlohmann::json(nullptr);
    j["targeted"] = a->targeted;
    j["examples"] = test.size();
    j["model_file"] = a->model;
    j["model"] = loaded.spec.name;
    j["dataset"] = a->data;
    j["device"] = device.str();
    if (!a->save_adv.empty()) j["save_adv"] = a->save_adv;
    if (!a->per_example.empty()) j["per_example"] = a->per_example;
    if (a->common.json) {
      std::cout << j.dump() << std::endl;
      return 0;
    }
    std::printf("%s on %s, %s eps %g (%lld examples): clean accuracy %.4f, robust accuracy %.4f, attack success "
                "rate %.4f, %.1f s\n",
                a->attack.c_str(), a->data.c_str(), a->model.c_str(), static_cast<double>(a->eps),
                static_cast<long long>(test.size()), j["clean_accuracy"].get<double>(),
                j["robust_accuracy"].get<double>(), j["attack_success_rate"].get<double>(),
                j["seconds"].get<double>());
    for (const char* key : {"per_attack", "robust_after"})
      if (j.contains(key))
        for (const auto& [name, acc] : j[key].items())
          std::printf("  %-8s robust accuracy %.4f\n", name.c_str(), acc.get<double>());
    return 0;
  };
}

}  // namespace aegis::app
