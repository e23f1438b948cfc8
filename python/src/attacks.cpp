// aegis.attacks: the evasion attacks (attacks/attacks.h), the suite and AutoAttack from Python.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "attacks/attacks.h"
#include "attacks/autoattack.h"
#include "attacks/evaluate.h"
#include "attacks/suite.h"
#include "bindings.h"
#include "core/error.h"

namespace aegis::python {

namespace {

struct AttackArgs {
  std::string method;
  float eps = 0.0f;
  std::string norm = "linf";
  int steps = 10;
  std::optional<float> step_size;
  int restarts = 1;
  bool random_start = true;
  std::optional<Array> targets;
  float momentum = 1.0f;
  std::uint64_t seed = 0;
  bool early_stop = true;
  int eot = 1;
  bool bpda = false;
  bool unbounded = false;  // C&W: the minimal-norm result, not judged against eps
  attacks::MethodOptions method_options;
};

nb::dict result_dict(const attacks::AttackResult& r) {
  nb::dict out;
  out["adversarial"] = to_array(r.adversarial);
  out["success"] = to_array(r.success);
  out["norm"] = to_array(r.perturbation_norm);
  out["loss"] = to_array(r.final_loss);
  out["gradient_evaluations"] = r.gradient_evaluations;
  if (r.queries.defined()) out["queries"] = to_array(r.queries);
  return out;
}

nb::dict attack(Model& model, const Array& x, const Array& y, const AttackArgs& a) {
  const attacks::AttackMethod method = attacks::parse_attack_method(a.method);
  const Tensor input = model_input(model, x);
  const std::int64_t n = input.shape()[0];
  const Tensor labels = label_tensor(y, n, model.spec.num_classes, "y");
  attacks::AttackOptions o;
  o.norm = parse_norm(a.norm);
  AEGIS_CHECK(std::isfinite(a.eps) && a.eps >= 0.0f, "eps " << a.eps << " must be finite and non-negative");
  o.eps = attacks::broadcast_per_example(a.eps, n);
  if (a.step_size) {
    AEGIS_CHECK(std::isfinite(*a.step_size) && *a.step_size > 0.0f,
                "step_size " << *a.step_size << " must be positive (leave it out for the attack's default)");
    o.step_size = attacks::broadcast_per_example(*a.step_size, n);
  }
  o.steps = a.steps;
  o.restarts = a.restarts;
  o.random_start = a.random_start;
  if (a.targets) {
    o.targeted = true;
    o.targets = label_tensor(*a.targets, n, model.spec.num_classes, "targets");
  }
  o.momentum = a.momentum;
  o.seed = a.seed;
  o.early_stop = a.early_stop;
  o.eot_draws = a.eot;
  o.bpda = a.bpda;
  attacks::AttackResult r;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    nn::FrozenScope frozen(*model.module);
    const Tensor xd = input.to(model.device);
    const Tensor yd = labels.to(model.device);
    r = attacks::run_attack(method, *model.module, xd, yd, o, a.unbounded, a.method_options);
  }
  r.adversarial = r.adversarial.to(input.device());  // where the input lives
  return result_dict(r);
}

nb::dict per_example_dict(const std::vector<attacks::PerExampleRow>& rows) {
  std::vector<std::int64_t> index;
  std::vector<std::int32_t> label, clean, adv;
  std::vector<double> norm;
  nb::list broken;
  for (const auto& r : rows) {
    index.push_back(r.index);
    label.push_back(r.label);
    clean.push_back(r.clean_prediction);
    adv.push_back(r.adversarial_prediction);
    norm.push_back(r.perturbation_norm);
    broken.append(r.broken_by);
  }
  nb::dict out;
  out["index"] = vector_array(index);
  out["label"] = vector_array(label);
  out["clean_prediction"] = vector_array(clean);
  out["adversarial_prediction"] = vector_array(adv);
  out["broken_by"] = broken;
  out["norm"] = vector_array(norm);
  return out;
}

nb::dict suite(Model& model, const Array& x, const Array& y, float eps, const std::string& norm,
               const std::vector<std::string>& names, int steps, int restarts, std::uint64_t seed,
               std::int64_t batch, bool bpda, bool keep_adversarial, nb::object progress) {
  const nn::Dataset d = array_dataset(model, x, y);
  attacks::SuiteOptions o;
  if (!names.empty()) {
    o.attacks.clear();
    for (const auto& name : names) o.attacks.push_back(attacks::parse_attack_method(name));
  }
  o.norm = parse_norm(norm);
  o.eps = eps;
  o.steps = steps;
  o.restarts = restarts;
  o.seed = seed;
  o.batch_size = batch;
  o.bpda = bpda;
  o.keep_adversarial = keep_adversarial;
  PyProgress sink(progress);
  attacks::SuiteResult r;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    r = attacks::run_suite(*model.module, d, model.device, o, &sink);
  }
  nb::dict out;
  out["examples"] = r.examples;
  out["clean_accuracy"] = r.clean_accuracy;
  out["robust_accuracy"] = r.robust_accuracy;
  nb::dict per_attack;
  for (const auto& [name, acc] : r.per_attack) per_attack[name.c_str()] = acc;
  out["per_attack"] = per_attack;
  nb::list warnings;
  for (const auto& w : r.warnings) warnings.append(w);
  out["warnings"] = warnings;
  out["robust"] = vector_array(r.robust);
  out["per_example"] = per_example_dict(r.per_example);
  out["adversarial"] = r.adversarial.defined() ? to_array(r.adversarial) : nb::none();
  out["seconds"] = r.seconds;
  return out;
}

nb::dict autoattack(Model& model, const Array& x, const Array& y, float eps, const std::string& norm,
                    const std::string& version, int steps, int target_classes, int queries, int eot,
                    std::uint64_t seed, std::int64_t batch, bool bpda, bool keep_adversarial, nb::object progress) {
  const nn::Dataset d = array_dataset(model, x, y);
  attacks::AutoAttackOptions o;
  o.version = attacks::parse_autoattack_version(version);
  o.norm = parse_norm(norm);
  o.eps = eps;
  o.steps = steps;
  o.target_classes = target_classes;
  o.queries = queries;
  o.eot_draws = eot;
  o.seed = seed;
  o.batch_size = batch;
  o.bpda = bpda;
  o.keep_adversarial = keep_adversarial;
  PyProgress sink(progress);
  attacks::AutoAttackResult r;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    r = attacks::run_autoattack(*model.module, d, model.device, o, &sink);
  }
  nb::dict out;
  out["examples"] = r.examples;
  out["clean_accuracy"] = r.clean_accuracy;
  out["robust_accuracy"] = r.robust_accuracy;
  nb::list after;
  for (const auto& [name, acc] : r.robust_after) after.append(nb::make_tuple(name, acc));
  out["robust_after"] = after;
  out["per_example"] = per_example_dict(r.per_example);
  out["adversarial"] = r.adversarial.defined() ? to_array(r.adversarial) : nb::none();
  out["seconds"] = r.seconds;
  return out;
}

}  // namespace

void register_attacks(nb::module_& m) {
  nb::class_<AttackArgs>(m, "AttackArgs")
      .def(nb::init<>())
      .def_rw("method", &AttackArgs::method)
      .def_rw("eps", &AttackArgs::eps)
      .def_rw("norm", &AttackArgs::norm)
      .def_rw("steps", &AttackArgs::steps)
      .def_rw("step_size", &AttackArgs::step_size)
      .def_rw("restarts", &AttackArgs::restarts)
      .def_rw("random_start", &AttackArgs::random_start)
      .def_rw("targets", &AttackArgs::targets)
      .def_rw("momentum", &AttackArgs::momentum)
      .def_rw("seed", &AttackArgs::seed)
      .def_rw("early_stop", &AttackArgs::early_stop)
      .def_rw("eot", &AttackArgs::eot)
      .def_rw("bpda", &AttackArgs::bpda)
      .def_rw("unbounded", &AttackArgs::unbounded)
      .def_prop_rw(
          "rho", [](const AttackArgs& a) { return a.method_options.apgd_rho; },
          [](AttackArgs& a, float v) { a.method_options.apgd_rho = v; })
      .def_prop_rw(
          "cw_c", [](const AttackArgs& a) { return a.method_options.cw_initial_const; },
          [](AttackArgs& a, float v) { a.method_options.cw_initial_const = v; })
      .def_prop_rw(
          "cw_kappa", [](const AttackArgs& a) { return a.method_options.cw_confidence; },
          [](AttackArgs& a, float v) { a.method_options.cw_confidence = v; })
      .def_prop_rw(
          "cw_lr", [](const AttackArgs& a) { return a.method_options.cw_lr; },
          [](AttackArgs& a, float v) { a.method_options.cw_lr = v; })
      .def_prop_rw(
          "cw_binary_search_steps", [](const AttackArgs& a) { return a.method_options.cw_binary_search_steps; },
          [](AttackArgs& a, int v) { a.method_options.cw_binary_search_steps = v; })
      .def_prop_rw(
          "cw_abort_early", [](const AttackArgs& a) { return a.method_options.cw_abort_early; },
          [](AttackArgs& a, bool v) { a.method_options.cw_abort_early = v; })
      .def_prop_rw(
          "target_classes", [](const AttackArgs& a) { return a.method_options.target_classes; },
          [](AttackArgs& a, int v) { a.method_options.target_classes = v; })
      .def_prop_rw(
          "queries", [](const AttackArgs& a) { return a.method_options.queries; },
          [](AttackArgs& a, int v) { a.method_options.queries = v; })
      .def_prop_rw(
          "p_init", [](const AttackArgs& a) { return a.method_options.p_init; },
          [](AttackArgs& a, float v) { a.method_options.p_init = v; });
  m.def("attack", &attack, nb::arg("model"), nb::arg("x"), nb::arg("y"), nb::arg("args"));
  m.def("suite", &suite, nb::arg("model"), nb::arg("x"), nb::arg("y"), nb::arg("eps"), nb::arg("norm"),
        nb::arg("attacks"), nb::arg("steps"), nb::arg("restarts"), nb::arg("seed"), nb::arg("batch"), nb::arg("bpda"),
        nb::arg("keep_adversarial"), nb::arg("progress").none());
  m.def("autoattack", &autoattack, nb::arg("model"), nb::arg("x"), nb::arg("y"), nb::arg("eps"), nb::arg("norm"),
        nb::arg("version"), nb::arg("steps"), nb::arg("target_classes"), nb::arg("queries"), nb::arg("eot"),
        nb::arg("seed"), nb::arg("batch"), nb::arg("bpda"), nb::arg("keep_adversarial"), nb::arg("progress").none());
}

}  // namespace aegis::python
