// aegis.privacy: the accountants, DP-SGD training, and a step-level DP-SGD object from Python.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>

#include "bindings.h"
#include "core/error.h"
#include "nn/data/augment.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "privacy/accountant.h"
#include "privacy/dp_job.h"
#include "privacy/dp_stepper.h"
#include "privacy/dp_train.h"
#include "privacy/ledger_digest.h"

namespace aegis::python {

namespace {

nb::dict epsilon_dict(const privacy::EpsilonResult& r) {
  nb::dict out;
  out["epsilon"] = r.epsilon;
  out["delta"] = r.delta;
  out["accountant"] = privacy::accountant_name(r.accountant);
  if (r.accountant == privacy::Accountant::Rdp) {
    out["best_order"] = r.best_order;
  } else {
    out["epsilon_estimate"] = r.epsilon_estimate;
    out["epsilon_lower"] = r.epsilon_lower;
    out["epsilon_upper"] = r.epsilon_upper;
    out["eps_error"] = r.eps_error;
    out["delta_error"] = r.delta_error;
  }
  return out;
}

nb::dict ledger_dict(const privacy::PrivacyLedger& l) {
  nb::dict out;
  out["epsilon"] = l.epsilon;
  out["delta"] = l.delta;
  out["steps"] = l.steps();
  out["max_grad_norm"] = l.max_grad_norm;
  out["accountant"] = privacy::accountant_name(l.accountant);
  out["clipping"] = privacy::clipping_name(l.clipping);
  out["sampling"] = privacy::sampling_name(l.sampling);
  nb::list phases;
  for (const auto& p : l.phases) {
    nb::dict d;
    d["noise_multiplier"] = p.noise_multiplier;
    d["sampling_rate"] = p.sampling_rate;
    d["steps"] = p.steps;
    phases.append(d);
  }
  out["phases"] = phases;
  return out;
}

nb::dict epsilon(double noise_multiplier, double sampling_rate, std::int64_t steps, double delta,
                 const std::string& accountant, double eps_error) {
  const std::vector<privacy::SgmPhase> phases{{noise_multiplier, sampling_rate, steps}};
  privacy::PrvAccuracy accuracy;
  accuracy.eps_error = eps_error;
  privacy::EpsilonResult r;
  {
    nb::gil_scoped_release release;
    r = privacy::compute_epsilon(privacy::parse_accountant(accountant), phases, delta, accuracy);
  }
  return epsilon_dict(r);
}

double noise_multiplier_for(double target_epsilon, double sampling_rate, std::int64_t steps, double delta,
                            const std::string& accountant) {
  nb::gil_scoped_release release;
  return privacy::calibrate_noise_multiplier(privacy::parse_accountant(accountant), target_epsilon, sampling_rate,
                                             steps, delta);
}

struct TrainArgs {
  std::int64_t epochs = 5;
  std::int64_t batch_size = 256;  // expected batch size qN
  float lr = 0.1f;
  std::string optimizer = "sgd";
  float momentum = 0.0f;
  std::string schedule = "constant";
  double noise_multiplier = 0.0;  // 0: calibrate to target_epsilon
  double target_epsilon = 0.0;
  double max_grad_norm = 1.0;
  double delta = 1e-5;
  std::string accountant = "rdp";
  std::string clipping = "flat";
  std::string sampling = "poisson";
  std::uint64_t seed = 0;
  // Private and robust training (privacy/dp_augment.h): copies per example, Gaussian noise on each,
  // and DP-CERT's consistency regularizer (unset: off) with its entropy weight.
  std::int64_t augmult = 1;
  float noise_sigma = 0.0f;
  std::optional<float> consistency;
  float consistency_entropy = privacy::ConsistencyOptions{}.eta;
  std::string augment = "none";  // crops and flips of every copy (nn::parse_image_augment)
};

nb::dict train(Model& model, const Array& x, const Array& y, const TrainArgs& a, nb::object progress) {
  const nn::Dataset d = array_dataset(model, x, y, "x_train", "y_train");
  nn::TrainOptions o;
  o.epochs = a.epochs;
  o.batch_size = a.batch_size;
  o.lr = a.lr;
  o.optimizer = nn::parse_optimizer(a.optimizer);
  o.momentum = a.momentum;
  o.schedule = nn::parse_schedule(a.schedule);
  o.seed = a.seed;
  o.device = model.device;
  o.noise_sigma = a.noise_sigma;
  o.augment = nn::parse_image_augment(a.augment);
  privacy::DpTrainOptions dp;
  dp.augmult = a.augmult;
  if (a.consistency) dp.consistency = privacy::ConsistencyOptions{*a.consistency, a.consistency_entropy};
  dp.noise.noise_multiplier = a.noise_multiplier;
  dp.noise.max_grad_norm = a.max_grad_norm;
  dp.target_epsilon = a.target_epsilon;
  dp.delta = a.delta;
  dp.accountant = privacy::parse_accountant(a.accountant);
  dp.clipping = privacy::parse_clipping(a.clipping);
  dp.sampling = privacy::parse_sampling(a.sampling);
  AEGIS_CHECK(a.noise_multiplier > 0.0 || a.target_epsilon > 0.0,
              "give noise_multiplier (σ > 0) or target_epsilon (ε > 0)");
  PyProgress sink(progress);
  privacy::DpTrainResult r;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    // A model whose file carries a ledger continues it: its phases compose with this run's.
    const privacy::PrivacyLedger previous = privacy::PrivacyLedger::from_metadata(model.metadata, model.path);
    const privacy::PrivacyLedger* prev = previous.phases.empty() ? nullptr : &previous;
    const privacy::DpPlan plan = privacy::plan_dp(d.size(), o, dp, prev);
    sink.begin("dp-sgd", plan.steps, "steps");
    r = privacy::train_dp_classifier(
        *model.module, d, o, dp, plan, prev,
        [&](const privacy::DpStepInfo& s) {
          char extra[64];
          std::snprintf(extra, sizeof extra, "loss %.4f", s.loss);
          sink.update(s.step, extra);
        },
        {});
    sink.end("epsilon " + std::to_string(r.ledger.epsilon));
    model.module->train(false);
    for (auto& [key, value] : privacy::sealed_ledger_metadata(r.ledger, *model.module)) model.metadata[key] = value;
    for (auto& [key, value] : privacy::dp_transform_metadata(dp, o.noise_sigma)) model.metadata[key] = value;
    if (o.augment.any()) model.metadata["aegis.augment"] = nn::image_augment_name(o.augment);
  }
  nb::dict out = ledger_dict(r.ledger);
  out["noise_multiplier"] = r.noise_multiplier;
  out["sampling_rate"] = r.sampling_rate;
  out["run_steps"] = r.steps;
  out["seconds"] = r.seconds;
  nb::list epochs;
  for (const auto& e : r.epochs) {
    nb::dict ed;
    ed["epoch"] = e.epoch;
    ed["train_loss"] = e.train_loss;
    ed["train_accuracy"] = e.train_accuracy;
    ed["epsilon"] = e.epsilon;
    ed["seconds"] = e.seconds;
    epochs.append(ed);
  }
  out["epochs"] = epochs;
  return out;
}

// The step-level object: holds the model (and its lock's owner) for its lifetime.
struct Stepper {
  std::shared_ptr<Model> model;
  std::unique_ptr<privacy::DpStepper> stepper;
};

std::unique_ptr<Stepper> make_stepper(std::shared_ptr<Model> model, double noise_multiplier, double max_grad_norm,
                                      double sampling_rate, std::int64_t dataset_size, double delta,
                                      const std::string& accountant, const std::string& optimizer, float lr,
                                      float momentum, std::uint64_t seed) {
  privacy::DpStepperOptions o;
  o.noise_multiplier = noise_multiplier;
  o.max_grad_norm = max_grad_norm;
  o.sampling_rate = sampling_rate;
  o.dataset_size = dataset_size;
  o.delta = delta;
  o.accountant = privacy::parse_accountant(accountant);
  o.optimizer = nn::parse_optimizer(optimizer);
  o.lr = lr;
  o.momentum = momentum;
  o.seed = seed;
  auto s = std::make_unique<Stepper>();
  s->model = std::move(model);
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(s->model->mutex);
  s->stepper = std::make_unique<privacy::DpStepper>(*s->model->module, o);
  return s;
}

nb::dict step(Stepper& s, const Array& x, const Array& y) {
  Model& model = *s.model;
  const Tensor input = model_input(model, x);
  const Tensor labels = label_tensor(y, input.shape()[0], model.spec.num_classes, "y");
  privacy::DpStepResult r;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    r = s.stepper->step(input, labels);
  }
  nb::dict out;
  out["step"] = r.step;
  out["batch_size"] = r.batch_size;
  out["clipped"] = r.clipped;
  out["loss"] = r.loss;
  return out;
}

// Writes the stepper's ledger (sealed over the parameters as they are now) into the model's
// metadata, so that model.save() records what was spent.
nb::dict seal(Stepper& s) {
  Model& model = *s.model;
  privacy::PrivacyLedger l;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    l = s.stepper->ledger();
    for (auto& [key, value] : privacy::sealed_ledger_metadata(l, *model.module)) model.metadata[key] = value;
  }
  return ledger_dict(l);
}

}  // namespace

void register_privacy(nb::module_& m) {
  m.def("epsilon", &epsilon, nb::arg("noise_multiplier"), nb::arg("sampling_rate"), nb::arg("steps"),
        nb::arg("delta"), nb::arg("accountant"), nb::arg("eps_error"));
  m.def("noise_multiplier_for", &noise_multiplier_for, nb::arg("target_epsilon"), nb::arg("sampling_rate"),
        nb::arg("steps"), nb::arg("delta"), nb::arg("accountant"));
  nb::class_<TrainArgs>(m, "TrainArgs")
      .def(nb::init<>())
      .def_rw("epochs", &TrainArgs::epochs)
      .def_rw("batch_size", &TrainArgs::batch_size)
      .def_rw("lr", &TrainArgs::lr)
      .def_rw("optimizer", &TrainArgs::optimizer)
      .def_rw("momentum", &TrainArgs::momentum)
      .def_rw("schedule", &TrainArgs::schedule)
      .def_rw("noise_multiplier", &TrainArgs::noise_multiplier)
      .def_rw("target_epsilon", &TrainArgs::target_epsilon)
      .def_rw("max_grad_norm", &TrainArgs::max_grad_norm)
      .def_rw("delta", &TrainArgs::delta)
      .def_rw("accountant", &TrainArgs::accountant)
      .def_rw("clipping", &TrainArgs::clipping)
      .def_rw("sampling", &TrainArgs::sampling)
      .def_rw("seed", &TrainArgs::seed)
      .def_rw("augmult", &TrainArgs::augmult)
      .def_rw("noise_sigma", &TrainArgs::noise_sigma)
      .def_rw("consistency", &TrainArgs::consistency)
      .def_rw("consistency_entropy", &TrainArgs::consistency_entropy)
      .def_rw("augment", &TrainArgs::augment);
  m.def("train", &train, nb::arg("model"), nb::arg("x"), nb::arg("y"), nb::arg("args"), nb::arg("progress").none());
  nb::class_<Stepper>(m, "Stepper")
      .def("step", &step, nb::arg("x"), nb::arg("y"))
      .def("seal", &seal)
      .def_prop_ro("steps", [](const Stepper& s) { return s.stepper->steps(); })
      .def_prop_ro("epsilon", [](const Stepper& s) { return s.stepper->ledger().epsilon; });
  m.def("make_stepper", &make_stepper, nb::arg("model"), nb::arg("noise_multiplier"), nb::arg("max_grad_norm"),
        nb::arg("sampling_rate"), nb::arg("dataset_size"), nb::arg("delta"), nb::arg("accountant"),
        nb::arg("optimizer"), nb::arg("lr"), nb::arg("momentum"), nb::arg("seed"));
}

}  // namespace aegis::python
