#include "attacks/attack_job.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "attacks/per_example.h"
#include "core/error.h"
#include "nn/serialize.h"

namespace aegis::attacks {

const char* const kAttackJobNames =
    "fgsm | bim | pgd-linf | pgd-l2 | mifgsm | cw-l2 | apgd-ce | apgd-dlr | apgd-t | fab-t | square | suite | "
    "autoattack";

namespace {

// The names --attack takes: an attack method and its norm (pgd-linf, pgd-l2), or the suite and
// autoattack. `norm_choice`: --norm may change the norm (the APGD family, Square).
struct CliAttack {
  const char* name;
  AttackMethod method;
  Norm norm;
  bool norm_choice;
  int default_steps;
};
constexpr CliAttack kAttacks[] = {{"fgsm", AttackMethod::Fgsm, Norm::Linf, false, 1},
                                  {"bim", AttackMethod::Bim, Norm::Linf, false, 10},
                                  {"pgd-linf", AttackMethod::Pgd, Norm::Linf, false, 10},
                                  {"pgd-l2", AttackMethod::Pgd, Norm::L2, false, 10},
                                  {"mifgsm", AttackMethod::Mifgsm, Norm::Linf, false, 10},
                                  {"cw-l2", AttackMethod::CwL2, Norm::L2, false, 100},
                                  {"apgd-ce", AttackMethod::ApgdCe, Norm::Linf, true, 100},
                                  {"apgd-dlr", AttackMethod::ApgdDlr, Norm::Linf, true, 100},
                                  {"apgd-t", AttackMethod::ApgdT, Norm::Linf, true, 100},
                                  {"fab-t", AttackMethod::FabT, Norm::Linf, true, 100},
                                  {"square", AttackMethod::Square, Norm::Linf, true, 0}};

const CliAttack& cli_attack(const std::string& name) {
  for (const CliAttack& c : kAttacks)
    if (name == c.name) return c;
  AEGIS_THROW(InvalidArgument, "unknown attack '" << name << "' (one of " << kAttackJobNames << ")");
}

bool is_group(const std::string& name) {
  return name == "suite" || name == "autoattack";
}

Norm chosen_norm(const AttackJob& a, Norm fallback) {
  return a.norm.empty() ? fallback : parse_norm(a.norm);
}

void write_outputs(const AttackJob& a, const std::vector<PerExampleRow>& rows, const Tensor& adversarial,
                   const nn::Dataset& test, Norm norm) {
  if (!a.per_example.empty()) write_per_example_tsv(a.per_example, rows);
  if (!a.save_adv.empty())
    nn::save_safetensors(
        a.save_adv, {{"adversarial", adversarial}, {"labels", test.labels.clone()}},
        {{"aegis.attack", a.attack}, {"aegis.eps", std::to_string(a.eps)}, {"aegis.norm", norm_name(norm)}});
}

SquareProposals proposals(const AttackJob& a) {
  return a.square_proposals.empty() ? SquareProposals::Shared : parse_square_proposals(a.square_proposals);
}

double success_rate(double clean, double robust) {
  return clean > 0 ? (clean - robust) / clean : 0.0;
}

nlohmann::json suite_json(const AttackReport& rep) {
  const SuiteResult& r = *rep.suite;
  nlohmann::json per = nlohmann::json::object();
  for (const auto& [name, acc] : r.per_attack) per[name] = acc;
  return {{"clean_accuracy", r.clean_accuracy},
          {"robust_accuracy", r.robust_accuracy},
          {"attack_success_rate", success_rate(r.clean_accuracy, r.robust_accuracy)},
          {"mean_perturbation_norm", nullptr},
          {"median_perturbation_norm", nullptr},
          {"norm", norm_name(rep.norm)},
          {"steps", rep.job.steps},
          {"restarts", rep.job.restarts},
          {"per_attack", per},
          {"warnings", r.warnings},
          {"seconds", r.seconds}};
}

nlohmann::json autoattack_json(const AttackReport& rep) {
  const AutoAttackResult& r = *rep.autoattack;
  const AutoAttackVersion version = parse_autoattack_version(rep.job.version);
  nlohmann::json after = nlohmann::json::object();
  for (const auto& [name, acc] : r.robust_after) after[name] = acc;
  nlohmann::json j{{"clean_accuracy", r.clean_accuracy},
                   {"robust_accuracy", r.robust_accuracy},
                   {"attack_success_rate", success_rate(r.clean_accuracy, r.robust_accuracy)},
                   {"norm", norm_name(rep.norm)},
                   {"version", rep.job.version},
                   {"sequence", autoattack_sequence(version)},
                   {"missing", r.missing},
                   {"robust_after", after},
                   {"steps", rep.job.steps},
                   {"seconds", r.seconds}};
  if (version == AutoAttackVersion::Standard) {
    j["target_classes"] = rep.job.target_classes;
    j["queries"] = rep.job.queries;
    j["square_proposals"] = square_proposals_name(proposals(rep.job));
  } else {
    j["eot_draws"] = rep.job.eot > 0 ? rep.job.eot : AutoAttackOptions{}.eot_draws;
  }
  return j;
}

nlohmann::json single_json(const AttackReport& rep) {
  const Evaluation& r = *rep.single;
  const AttackJob& a = rep.job;
  const AttackMethod method = cli_attack(a.attack).method;
  nlohmann::json j{{"clean_accuracy", r.clean_accuracy},
                   {"robust_accuracy", r.robust_accuracy},
                   {"attack_success_rate", r.attack_success_rate},
                   {"mean_perturbation_norm", r.mean_perturbation_norm},
                   {"median_perturbation_norm", r.median_perturbation_norm},
                   {"norm", norm_name(rep.norm)},
                   {"seconds", r.seconds}};
  // Only what the method reads: FGSM takes one step, Square counts queries instead.
  if (method == AttackMethod::Square) {
    j["queries"] = a.queries;
    j["square_proposals"] = square_proposals_name(proposals(a));
  } else if (method != AttackMethod::Fgsm) {
    j["steps"] = a.steps;
  }
  if (has_restarts(method)) j["restarts"] = a.restarts;
  if (method == AttackMethod::ApgdT || method == AttackMethod::FabT) j["target_classes"] = a.target_classes;
  if (method == AttackMethod::FabT) j["final_search_steps"] = a.final_search;
  if (method == AttackMethod::CwL2) {
    j["c"] = a.method.cw_initial_const;
    j["kappa"] = a.method.cw_confidence;
    j["lr"] = a.method.cw_lr;
    j["binary_search_steps"] = a.method.cw_binary_search_steps;
    j["abort_early"] = a.method.cw_abort_early;
  }
  return j;
}

}  // namespace

void check_attack_job(AttackJob& a) {
  const bool group = is_group(a.attack);
  const CliAttack* c = group ? nullptr : &cli_attack(a.attack);  // an unknown name fails here
  const bool cw = c && c->method == AttackMethod::CwL2;
  AEGIS_CHECK(cw || a.eps >= 0, "--eps is required for --attack " << a.attack);
  if (!a.norm.empty()) {
    parse_norm(a.norm);
    AEGIS_CHECK(group || c->norm_choice || parse_norm(a.norm) == c->norm,
                "--norm does not apply to " << a.attack << " (its norm is " << norm_name(c->norm) << ")");
  }
  AEGIS_CHECK(!(a.targeted && group), "--targeted does not apply to the " << a.attack);
  AEGIS_CHECK(!(a.targeted && c &&
                (c->method == AttackMethod::ApgdT || c->method == AttackMethod::FabT ||
                 c->method == AttackMethod::Square)),
              "--targeted does not apply to "
                  << a.attack
                  << (c && c->method == AttackMethod::ApgdT ? " (it picks its targets: --target-classes)" : ""));
  AEGIS_CHECK(a.attack == "autoattack" || a.version == "standard", "--version applies to --attack autoattack only");
  if (!a.square_proposals.empty()) {
    parse_square_proposals(a.square_proposals);
    AEGIS_CHECK((c && c->method == AttackMethod::Square) || (a.attack == "autoattack" && a.version == "standard"),
                "--square-proposals applies to square and autoattack --version standard, not " << a.attack);
  }
  const bool gradient =
      c && c->method != AttackMethod::CwL2 && c->method != AttackMethod::FabT && c->method != AttackMethod::Square;
  AEGIS_CHECK(
      a.eot == 0 || gradient || (a.attack == "autoattack" && a.version == "rand"),
      "--eot applies to fgsm, bim, pgd, mifgsm, the APGD family and autoattack --version rand, not " << a.attack);
  AEGIS_CHECK(a.final_search < 0 || (c && c->method == AttackMethod::FabT),
              "--final-search applies to fab-t, not " << a.attack);
  if (c && c->method == AttackMethod::FabT && a.final_search < 0) a.final_search = 3;
  AEGIS_CHECK(a.vote >= 1, "--vote " << a.vote << " must be at least 1");
  AEGIS_CHECK(a.vote == 1 || !group, "--vote applies to single attacks, not the " << a.attack);
  if (a.steps == 0) a.steps = group ? 100 : std::max(c->default_steps, 1);
}

nlohmann::json to_json(const AttackReport& rep) {
  const AttackJob& a = rep.job;
  nlohmann::json j = rep.suite ? suite_json(rep) : rep.autoattack ? autoattack_json(rep) : single_json(rep);
  j["bpda"] = a.bpda;
  if (a.eot > 0) j["eot_draws"] = a.eot;
  if (a.vote > 1) j["vote_draws"] = a.vote;
  j["attack"] = a.attack;
  j["eps"] = a.eps >= 0 ? nlohmann::json(a.eps) : nlohmann::json(nullptr);
  j["targeted"] = a.targeted;
  j["examples"] = rep.examples;
  j["model"] = rep.model;
  j["device"] = rep.device;
  if (!a.save_adv.empty()) j["save_adv"] = a.save_adv;
  if (!a.per_example.empty()) j["per_example"] = a.per_example;
  return j;
}

AttackReport run_attack_job(nn::Module& model, const nn::ModelSpec& spec, const nn::Dataset& test, Device device,
                            const AttackJob& a, ProgressSink* progress) {
  AttackReport rep;
  rep.job = a;
  rep.model = spec.name;
  rep.device = device.str();
  rep.examples = test.size();
  if (a.attack == "suite") {
    SuiteOptions so;
    so.norm = chosen_norm(a, Norm::Linf);
    so.eps = a.eps;
    so.steps = a.steps;
    so.restarts = a.restarts;
    so.seed = a.seed;
    so.batch_size = a.batch;
    so.keep_adversarial = !a.save_adv.empty();
    so.bpda = a.bpda;
    rep.suite = run_suite(model, test, device, so, progress);
    rep.norm = so.norm;
    write_outputs(a, rep.suite->per_example, rep.suite->adversarial, test, so.norm);
    for (const std::string& w : rep.suite->warnings) progress_or_silent(progress).warning(w);
  } else if (a.attack == "autoattack") {
    AutoAttackOptions o;
    o.version = parse_autoattack_version(a.version);
    o.norm = chosen_norm(a, Norm::Linf);
    o.eps = a.eps;
    o.steps = a.steps;
    o.target_classes = a.target_classes;
    o.queries = a.queries;
    o.square_proposals = proposals(a);
    if (a.eot > 0) o.eot_draws = a.eot;
    o.seed = a.seed;
    o.batch_size = a.batch;
    o.keep_adversarial = !a.save_adv.empty();
    o.bpda = a.bpda;
    rep.autoattack = run_autoattack(model, test, device, o, progress);
    rep.norm = o.norm;
    write_outputs(a, rep.autoattack->per_example, rep.autoattack->adversarial, test, o.norm);
    for (const std::string& name : rep.autoattack->missing)
      progress_or_silent(progress).warning(name + " is not implemented");
  } else {
    const CliAttack& c = cli_attack(a.attack);
    EvaluationOptions o;
    o.method = c.method;
    o.attack.norm = chosen_norm(a, c.norm);
    // C&W is minimal-norm: without eps it reports every perturbation it finds.
    o.attack.eps = Tensor::full({1}, a.eps >= 0 ? a.eps : 0.0f);
    if (a.step_size > 0) o.attack.step_size = Tensor::full({1}, a.step_size);
    o.attack.steps = a.steps;
    o.attack.restarts = a.restarts;
    o.attack.seed = a.seed;
    o.attack.targeted = a.targeted;
    o.attack.bpda = a.bpda;
    o.method_options = a.method;
    o.method_options.queries = a.queries;
    o.method_options.square_proposals = proposals(a);
    o.method_options.target_classes = a.target_classes;
    o.method_options.fab_final_search_steps = std::max(a.final_search, 0);
    if (a.eot > 0) o.attack.eot_draws = a.eot;
    o.batch_size = a.batch;
    o.keep_adversarial = !a.save_adv.empty();
    o.predict_draws = a.vote;
    rep.single = evaluate(model, test, device, spec.num_classes, o, progress);
    rep.norm = o.attack.norm;
    write_outputs(a, rep.single->per_example, rep.single->adversarial, test, o.attack.norm);
  }
  return rep;
}

}  // namespace aegis::attacks
