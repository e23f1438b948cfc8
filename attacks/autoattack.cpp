// AutoAttack (attacks/autoattack.h): the attack sequence over a dataset, batch by batch, each
// attack on the examples still unbroken.
#include "attacks/autoattack.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "attacks/evaluate.h"
#include "attacks/rows.h"
#include "core/checked_math.h"
#include "core/named_enum.h"
#include "kernels/attack_step.h"
#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::attacks {

const char* autoattack_version_name(AutoAttackVersion version) noexcept {
  switch (version) {
    case AutoAttackVersion::Standard:
      return "standard";
    case AutoAttackVersion::Rand:
      return "rand";
  }
  return "?";
}

AutoAttackVersion parse_autoattack_version(const std::string& name) {
  return parse_named(name, {AutoAttackVersion::Standard, AutoAttackVersion::Rand}, autoattack_version_name,
                     "autoattack version");
}

namespace {

struct Stage {
  const char* name;
  bool implemented;
  AttackMethod method;
};

std::vector<Stage> stages(AutoAttackVersion version) {
  if (version == AutoAttackVersion::Rand)
    return {{"apgd-ce", true, AttackMethod::ApgdCe}, {"apgd-dlr", true, AttackMethod::ApgdDlr}};
  return {{"apgd-ce", true, AttackMethod::ApgdCe},
          {"apgd-t", true, AttackMethod::ApgdT},
          {"fab-t", true, AttackMethod::FabT},
          {"square", true, AttackMethod::Square}};
}

std::vector<std::int32_t> predict(nn::Module& model, const Tensor& x) {
  nn::FrozenScope scope(model);
  return nn::argmax(model.forward(autograd::Var(x, false)).value()).to(Device::cpu()).to_vector<std::int32_t>();
}

}  // namespace

std::vector<std::string> autoattack_sequence(AutoAttackVersion version) {
  std::vector<std::string> names;
  for (const Stage& s : stages(version)) names.emplace_back(s.name);
  return names;
}

AutoAttackResult run_autoattack(nn::Module& model, const nn::Dataset& data, Device device, const AutoAttackOptions& o,
                                ProgressSink* progress) {
  AEGIS_CHECK(std::isfinite(o.eps) && o.eps >= 0.0f, "autoattack eps " << o.eps << " must be ≥ 0 and finite");
  AEGIS_CHECK(o.steps >= 1, "autoattack steps " << o.steps << " must be at least 1");
  AEGIS_CHECK(o.target_classes >= 1, "autoattack target classes " << o.target_classes << " must be at least 1");
  AEGIS_CHECK(o.queries >= 1, "autoattack queries " << o.queries << " must be at least 1");
  AEGIS_CHECK(o.eot_draws >= 1, "autoattack EOT draws " << o.eot_draws << " must be at least 1");
  AEGIS_CHECK(o.batch_size >= 1, "autoattack batch size " << o.batch_size << " must be at least 1");
  ProgressSink& report = progress_or_silent(progress);
  const auto t0 = std::chrono::steady_clock::now();
  model.to(device);
  const std::vector<Stage> sequence = stages(o.version);
  AutoAttackResult r;
  const std::int64_t n = data.size(), d = n > 0 ? data.images.numel() / n : 0;
  r.examples = n;
  for (const Stage& s : sequence)
    if (!s.implemented) r.missing.emplace_back(s.name);
  if (o.keep_adversarial) r.adversarial = data.images.clone();
  std::vector<std::int64_t> broken_after(sequence.size(), 0);
  std::int64_t clean_correct = 0, robust = 0;
  AttackOptions ao;
  ao.norm = o.norm;
  ao.steps = o.steps;
  ao.restarts = 1;
  ao.seed = o.seed;
  ao.bpda = o.bpda;
  MethodOptions mo;
  mo.target_classes = o.target_classes;
  mo.queries = o.queries;
  mo.square_proposals = o.square_proposals;
  mo.square_rescale_schedule = false;  // the official AutoAttack builds Square with resc_schedule=False
  ao.eot_draws = o.version == AutoAttackVersion::Rand ? o.eot_draws : 1;
  report.begin("autoattack " + std::string(autoattack_version_name(o.version)), n, "examples");
  for (std::int64_t b = 0; b < n; b += o.batch_size) {
    const std::int64_t e = std::min(n, b + o.batch_size), m = e - b;
    const Tensor x = data.images.rows(b, e).clone().to(device);
    const std::vector<std::int32_t> label = data.labels.rows(b, e).clone().to_vector<std::int32_t>();
    const Tensor x_rows = x.reshape({m, d});
    const Tensor adv = x_rows.clone();
    const std::vector<std::int32_t> clean_pred = predict(model, x);
    std::vector<std::string> broken_by(static_cast<std::size_t>(m), "-");
    for (std::int64_t i = 0; i < m; ++i)
      if (clean_pred[static_cast<std::size_t>(i)] != label[static_cast<std::size_t>(i)])
        broken_by[static_cast<std::size_t>(i)] = "clean";
      else
        ++clean_correct;
    for (std::size_t s = 0; s < sequence.size(); ++s) {
      std::vector<std::int32_t> ids;
      for (std::int32_t i = 0; i < m; ++i)
        if (broken_by[static_cast<std::size_t>(i)] == "-") ids.push_back(i);
      if (sequence[s].implemented && !ids.empty()) {
        const auto k = static_cast<std::int64_t>(ids.size());
        std::vector<std::int32_t> sub_rows(ids.size()), sub_y;
        std::iota(sub_rows.begin(), sub_rows.end(), 0);
        for (std::int32_t i : ids) sub_y.push_back(label[static_cast<std::size_t>(i)]);
        const Tensor sub = Tensor::empty({k, d}, DType::F32, device);
        copy_rows(x_rows, ids, sub, sub_rows, d);
        Shape shape = x.shape();
        shape[0] = k;
        ao.eps = Tensor::full({1}, o.eps);
        const AttackResult a = run_attack(sequence[s].method, model, sub.reshape(shape),
                                          Tensor::from_vector(sub_y, {k}).to(device), ao, false, mo);
        const std::vector<std::int32_t> ok = a.success.to_vector<std::int32_t>();
        std::vector<std::int32_t> from, to;
        for (std::size_t j = 0; j < ids.size(); ++j)
          if (ok[j]) {
            from.push_back(static_cast<std::int32_t>(j));
            to.push_back(ids[j]);
            broken_by[static_cast<std::size_t>(ids[j])] = sequence[s].name;
          }
        copy_rows(a.adversarial.reshape({k, d}), from, adv, to, d);
      }
      for (const std::string& v : broken_by) broken_after[s] += v != "-";
    }
    const std::vector<std::int32_t> adv_pred = predict(model, adv.reshape(x.shape()));
    append_batch_rows(r.per_example, b, o.norm, adv, x_rows, label, clean_pred, adv_pred, broken_by);
    for (std::int64_t i = 0; i < m; ++i) robust += broken_by[static_cast<std::size_t>(i)] == "-";
    if (o.keep_adversarial)
      std::memcpy(r.adversarial.data<float>() + b * d, adv.to(Device::cpu()).data<float>(),
                  static_cast<std::size_t>(m * d) * sizeof(float));
    report.update(e, "");
  }
  report.end("");
  const double total = n > 0 ? static_cast<double>(n) : 1.0;
  r.clean_accuracy = n > 0 ? static_cast<double>(clean_correct) / total : 1.0;
  r.robust_accuracy = n > 0 ? static_cast<double>(robust) / total : 1.0;
  for (std::size_t s = 0; s < sequence.size(); ++s)
    if (sequence[s].implemented)
      r.robust_after.emplace_back(sequence[s].name, n > 0 ? 1.0 - static_cast<double>(broken_after[s]) / total : 1.0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace aegis::attacks
