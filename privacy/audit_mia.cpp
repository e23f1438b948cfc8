#include "privacy/audit_mia.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/gnuplot.h"
#include "core/philox.h"
#include "core/timing.h"
#include "nn/model_file.h"
#include "nn/train.h"

namespace aegis::privacy {

namespace {

// The kPurposeAuditSetup choices of this audit (the DP audit uses 0–2).
constexpr std::uint32_t kTargetHalf = 16;
constexpr std::uint32_t kShadowDesign = 17;
const char* const kTagKey = "aegis.audit.mia";
const char* const kAttackNames[] = {"loss", "lira-online", "lira-online-fixed", "lira-offline", "lira-offline-fixed"};

nn::Dataset subset(const nn::Dataset& data, const std::vector<std::int64_t>& indices, const std::string& name) {
  const Shape& s = data.images.shape();
  const std::int64_t per = s[1] * s[2] * s[3];
  const std::vector<float> images = data.images.to_vector<float>();
  const std::vector<std::int32_t> labels = data.labels.to_vector<std::int32_t>();
  std::vector<float> out_images;
  std::vector<std::int32_t> out_labels;
  out_images.reserve(indices.size() * static_cast<std::size_t>(per));
  for (std::int64_t i : indices) {
    out_images.insert(out_images.end(), images.begin() + i * per, images.begin() + (i + 1) * per);
    out_labels.push_back(labels[static_cast<std::size_t>(i)]);
  }
  nn::Dataset d;
  d.name = name;
  const auto n = static_cast<std::int64_t>(indices.size());
  d.images = Tensor::from_vector(out_images, {n, s[1], s[2], s[3]});
  d.labels = Tensor::from_vector(out_labels, {n});
  d.num_classes = data.num_classes;
  return d;
}

// Everything that decides a model of the audit, so that a file is reused only for the same one.
std::string model_tag(const MiaJob& j, std::int64_t pool, std::int64_t index) {
  const nn::TrainOptions& o = j.job.train;
  std::ostringstream os;
  os.precision(17);
  os << "v1 model=" << j.job.model << " activation=" << j.job.activation << " dataset=" << j.job.dataset
     << " pool=" << pool << " seed=" << j.seed << " shadows=" << j.shadows << " index=" << index
     << " epochs=" << o.epochs << " batch=" << o.batch_size << " lr=" << o.lr
     << " optimizer=" << nn::optimizer_name(o.optimizer) << " momentum=" << o.momentum
     << " schedule=" << nn::schedule_name(o.schedule) << " train_seed=" << o.seed << " noise_sigma=" << o.noise_sigma;
  if (j.dp) {
    const DpTrainOptions& d = *j.dp;
    os << " dp sigma=" << d.noise.noise_multiplier << " C=" << d.noise.max_grad_norm << " eps=" << d.target_epsilon
       << " delta=" << d.delta << " q=" << (d.sampling_rate ? *d.sampling_rate : 0.0)
       << " accountant=" << accountant_name(d.accountant) << " clipping=" << clipping_name(d.clipping)
       << " sampling=" << sampling_name(d.sampling) << " secure=" << d.noise.secure;
  }
  return os.str();
}

// Logits of `model` on every example of `data`, row-major [N, classes].
std::vector<float> logits_of(nn::Module& model, const nn::Dataset& data, Device device) {
  model.to(device);
  nn::FrozenScope frozen(model);
  nn::BatchOptions bo;
  bo.batch_size = 1000;
  bo.device = device;
  nn::BatchIterator batches(data, bo, 0);
  std::vector<float> out;
  nn::Batch batch;
  while (batches.next(batch)) {
    const std::vector<float> z = model.forward(autograd::Var(batch.images, false)).value().to(Device::cpu()).to_vector<float>();
    out.insert(out.end(), z.begin(), z.end());
  }
  return out;
}

// φ = z_y − logsumexp_{j≠y} z_j, the loss logsumexp_j z_j − z_y and whether the argmax is y, for
// each example.
void phi_and_loss(const std::vector<float>& logits, const std::vector<std::int32_t>& labels, std::int64_t classes,
                  std::vector<double>& phi, std::vector<double>& loss, std::vector<bool>& correct) {
  phi.assign(labels.size(), 0.0);
  loss.assign(labels.size(), 0.0);
  correct.assign(labels.size(), false);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float* z = logits.data() + i * static_cast<std::size_t>(classes);
    const auto y = static_cast<std::size_t>(labels[i]);
    double top_other = -INFINITY, top = -INFINITY;
    for (std::int64_t c = 0; c < classes; ++c) {
      top = std::max(top, static_cast<double>(z[c]));
      if (static_cast<std::size_t>(c) != y) top_other = std::max(top_other, static_cast<double>(z[c]));
    }
    double sum_other = 0.0, sum_all = 0.0;
    for (std::int64_t c = 0; c < classes; ++c) {
      sum_all += std::exp(static_cast<double>(z[c]) - top);
      if (static_cast<std::size_t>(c) != y) sum_other += std::exp(static_cast<double>(z[c]) - top_other);
    }
    phi[i] = static_cast<double>(z[y]) - (top_other + std::log(sum_other));
    loss[i] = top + std::log(sum_all) - static_cast<double>(z[y]);
    correct[i] = static_cast<double>(z[y]) > top_other;
  }
}

double log_normal_pdf(double x, double mean, double sd) {
  const double t = (x - mean) / sd;
  return -0.5 * t * t - std::log(sd);
}

void write_scores(const std::string& path, const std::vector<std::int32_t>& labels, const std::vector<bool>& members,
                  const std::vector<std::vector<double>>& scores) {
  std::ostringstream os;
  os << "idx\tlabel\tmember";
  for (const char* name : kAttackNames) os << '\t' << name;
  os << '\n';
  char value[32];
  for (std::size_t i = 0; i < labels.size(); ++i) {
    os << i << '\t' << labels[i] << '\t' << (members[i] ? 1 : 0);
    for (const auto& s : scores) {
      std::snprintf(value, sizeof value, "%.9g", s[i]);
      os << '\t' << value;
    }
    os << '\n';
  }
  const std::string text = os.str();
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

}  // namespace

std::vector<std::vector<double>> lira_scores(const std::vector<std::vector<double>>& phi,
                                             const std::vector<std::vector<bool>>& in_model,
                                             const std::vector<double>& target_phi) {
  const std::size_t k_models = phi.size(), n = target_phi.size();
  AEGIS_CHECK(k_models == in_model.size(), "LiRA: " << k_models << " models of scores, " << in_model.size() << " of membership");
  std::vector<double> mu_in(n), mu_out(n), var_in(n), var_out(n);
  double pooled_in = 0.0, pooled_out = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    double s_in = 0, s_out = 0, ss_in = 0, ss_out = 0, c_in = 0, c_out = 0;
    for (std::size_t k = 0; k < k_models; ++k) {
      AEGIS_CHECK(phi[k].size() == n && in_model[k].size() == n, "LiRA: model " << k << " scores another number of examples");
      const double x = phi[k][i];
      (in_model[k][i] ? s_in : s_out) += x;
      (in_model[k][i] ? ss_in : ss_out) += x * x;
      (in_model[k][i] ? c_in : c_out) += 1.0;
    }
    AEGIS_CHECK(c_in >= 2 && c_out >= 2, "LiRA: example " << i << " is in " << c_in << " and out of " << c_out
                                                          << " shadow models; each needs at least 2");
    mu_in[i] = s_in / c_in;
    mu_out[i] = s_out / c_out;
    // Population variances (the per-example Gaussian fit of Carlini et al. 2022, Alg. 1).
    var_in[i] = std::max(0.0, ss_in / c_in - mu_in[i] * mu_in[i]);
    var_out[i] = std::max(0.0, ss_out / c_out - mu_out[i] * mu_out[i]);
    pooled_in += var_in[i];
    pooled_out += var_out[i];
  }
  // A floor keeps identical φ (a saturated model) from dividing by zero.
  constexpr double kMinSd = 1e-6;
  const double global_in = std::max(kMinSd, std::sqrt(pooled_in / static_cast<double>(std::max<std::size_t>(n, 1))));
  const double global_out = std::max(kMinSd, std::sqrt(pooled_out / static_cast<double>(std::max<std::size_t>(n, 1))));
  std::vector<std::vector<double>> out(4, std::vector<double>(n));
  for (std::size_t i = 0; i < n; ++i) {
    const double x = target_phi[i];
    const double sd_in = std::max(kMinSd, std::sqrt(var_in[i])), sd_out = std::max(kMinSd, std::sqrt(var_out[i]));
    out[0][i] = log_normal_pdf(x, mu_in[i], sd_in) - log_normal_pdf(x, mu_out[i], sd_out);
    out[1][i] = log_normal_pdf(x, mu_in[i], global_in) - log_normal_pdf(x, mu_out[i], global_out);
    out[2][i] = (x - mu_out[i]) / sd_out;
    out[3][i] = (x - mu_out[i]) / global_out;
  }
  return out;
}

nlohmann::json to_json(const LossAttackReport& r) {
  return {{"attack", "loss"},
          {"members", r.members},
          {"non_members", r.non_members},
          {"member_loss", r.member_loss},
          {"non_member_loss", r.non_member_loss},
          {"auc", r.metrics.auc},
          {"balanced_accuracy", r.metrics.balanced_accuracy},
          {"tpr_at_0.1%_fpr", r.metrics.tpr_at_0_1_fpr},
          {"tpr_at_1%_fpr", r.metrics.tpr_at_1_fpr}};
}

LossAttackReport loss_attack(nn::Module& model, const nn::Dataset& members, const nn::Dataset& non_members,
                             Device device) {
  AEGIS_CHECK(members.size() > 0 && non_members.size() > 0,
              "loss attack: needs members and non-members, got " << members.size() << " and " << non_members.size());
  LossAttackReport r;
  std::vector<double> scores;
  std::vector<bool> is_member;
  for (const nn::Dataset* d : {&members, &non_members}) {
    const std::vector<float> z = logits_of(model, *d, device);
    const std::vector<std::int32_t> y = d->labels.to(Device::cpu()).to_vector<std::int32_t>();
    std::vector<double> phi, loss;
    std::vector<bool> correct;
    phi_and_loss(z, y, static_cast<std::int64_t>(z.size() / y.size()), phi, loss, correct);
    double total = 0.0;
    for (double l : loss) {
      scores.push_back(-l);
      is_member.push_back(d == &members);
      total += l;
    }
    (d == &members ? r.member_loss : r.non_member_loss) = total / static_cast<double>(loss.size());
  }
  r.members = members.size();
  r.non_members = non_members.size();
  r.metrics = attack_metrics(roc_curve(scores, is_member));
  return r;
}

nlohmann::json to_json(const MiaReport& r) {
  nlohmann::json attacks = nlohmann::json::object();
  for (const MiaAttackResult& a : r.attacks)
    attacks[a.name] = {{"auc", a.metrics.auc},
                       {"balanced_accuracy", a.metrics.balanced_accuracy},
                       {"tpr_at_0.1%_fpr", a.metrics.tpr_at_0_1_fpr},
                       {"tpr_at_1%_fpr", a.metrics.tpr_at_1_fpr}};
  return {{"command", "audit mia"},
          {"model", r.model},
          {"dataset", r.dataset},
          {"recipe", r.recipe},
          {"pool", r.pool},
          {"members", r.members},
          {"shadows", r.shadows},
          {"models_trained", r.models_trained},
          {"models_reused", r.models_reused},
          {"target_train_accuracy", r.target_train_accuracy},
          {"target_test_accuracy", r.target_test_accuracy},
          {"target_epsilon", r.target_epsilon},
          {"seconds", r.seconds},
          {"seconds_per_model", r.seconds_per_model},
          {"attacks", attacks},
          {"scores_out", r.scores_out},
          {"roc_plot", r.roc_plot}};
}

MiaReport run_mia_audit(const MiaJob& j, const nn::DatasetSplit& split, ProgressSink* progress) {
  AEGIS_CHECK(j.shadows >= 4 && j.shadows % 2 == 0,
              "--shadows " << j.shadows << " must be even and at least 4 (LiRA fits a Gaussian to the models "
                           << "with and to those without each example, from at least 2 each)");
  const std::int64_t available = split.train.size();
  const std::int64_t pool = j.pool == 0 ? available : j.pool;
  AEGIS_CHECK(pool >= 4 && pool <= available,
              "--pool " << j.pool << " must lie in [4, " << available << "] (the training split's size), or be 0 for all");
  AEGIS_CHECK(!j.out_dir.empty(), "the membership audit needs an output directory (--out-dir)");
  if (!j.roc_plot.empty()) plot_format(j.roc_plot);  // a wrong extension fails before any training
  nn::check_train_options(j.job.train);
  std::error_code ec;
  std::filesystem::create_directories(j.out_dir, ec);
  AEGIS_CHECK_AS(IoError, !ec && std::filesystem::is_directory(j.out_dir),
                 "cannot create the audit directory " << j.out_dir << (ec ? ": " + ec.message() : std::string()));
  ProgressSink& p = progress_or_silent(progress);

  const nn::Dataset pool_data = nn::take(split.train, 0, pool);
  const std::vector<std::int32_t> labels = pool_data.labels.to_vector<std::int32_t>();
  const auto n = static_cast<std::size_t>(pool);
  const auto K = static_cast<std::size_t>(j.shadows);

  // in[0]: the target's half (the pool/2 smallest of one uniform per example); in[1..K]: the
  // balanced design, each example in the K/2 shadow models with its smallest uniforms.
  std::vector<std::vector<bool>> in(K + 1, std::vector<bool>(n, false));
  {
    const philox::Key target_key{j.seed, philox::kPurposeAuditSetup, kTargetHalf};
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::vector<std::uint32_t> u(n);
    for (std::size_t i = 0; i < n; ++i) u[i] = philox::bits(target_key, i);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return u[a] < u[b]; });
    for (std::size_t r = 0; r < n / 2; ++r) in[0][order[r]] = true;
    const philox::Key design_key{j.seed, philox::kPurposeAuditSetup, kShadowDesign};
    std::vector<std::size_t> models(K);
    std::vector<std::uint32_t> w(K);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t k = 0; k < K; ++k) w[k] = philox::bits(design_key, i * K + k);
      std::iota(models.begin(), models.end(), std::size_t{0});
      std::stable_sort(models.begin(), models.end(), [&](std::size_t a, std::size_t b) { return w[a] < w[b]; });
      for (std::size_t r = 0; r < K / 2; ++r) in[1 + models[r]][i] = true;
    }
  }

  MiaReport report;
  report.model = j.job.model;
  report.dataset = j.job.dataset;
  report.recipe = j.dp ? "dp" : "standard";
  report.pool = pool;
  report.shadows = j.shadows;
  std::vector<std::vector<double>> phi(K + 1), loss(K + 1);
  std::vector<bool> target_correct, correct;
  double train_seconds = 0.0;
  p.begin("target and shadow models", static_cast<std::int64_t>(K + 1), "models");
  for (std::size_t k = 0; k <= K; ++k) {
    const std::string path =
        (std::filesystem::path(j.out_dir) / (k == 0 ? std::string("target") : "shadow-" + std::to_string(k))).string() +
        ".safetensors";
    const std::string tag = model_tag(j, pool, static_cast<std::int64_t>(k));
    std::shared_ptr<nn::Module> model;
    std::map<std::string, std::string> metadata;
    if (std::filesystem::exists(path)) {
      nn::LoadedClassifier loaded = nn::load_classifier(path);
      const auto it = loaded.metadata.find(kTagKey);
      AEGIS_CHECK(it != loaded.metadata.end() && it->second == tag,
                  path << " was written by another audit (other recipe, pool, seed or shadow count); use a fresh --out-dir");
      model = loaded.model;
      metadata = loaded.metadata;
      ++report.models_reused;
    } else {
      std::vector<std::int64_t> members;
      for (std::size_t i = 0; i < n; ++i)
        if (in[k][i]) members.push_back(static_cast<std::int64_t>(i));
      const nn::Dataset half = subset(pool_data, members, pool_data.name + " audit half " + std::to_string(k));
      nn::TrainJob job = j.job;
      job.train.seed = j.job.train.seed + k;  // each model its own initialization, order and noise
      nn::TrainedModel t = nn::start_model(job, half);
      const auto t0 = std::chrono::steady_clock::now();
      if (j.dp) {
        const DpTrainResult r = train_dp_classifier(*t.model, half, job.train, *j.dp);
        t.metadata = r.ledger.to_metadata();
      } else {
        nn::train_classifier(*t.model, half, job.train);
      }
      train_seconds += seconds_since(t0);
      t.metadata[kTagKey] = tag;
      t.metadata["aegis.dataset"] = j.job.dataset;
      nn::save_classifier(path, *t.model, t.spec, t.metadata);
      model = t.model;
      metadata = t.metadata;
      ++report.models_trained;
    }
    const std::vector<float> z = logits_of(*model, pool_data, j.job.train.device);
    phi_and_loss(z, labels, pool_data.num_classes, phi[k], loss[k], correct);
    if (k == 0) {
      target_correct = correct;
      report.target_test_accuracy = nn::evaluate(*model, split.test, j.job.train.device).accuracy;
      if (j.dp) report.target_epsilon = PrivacyLedger::from_metadata(metadata, path).epsilon;
    }
    p.update(static_cast<std::int64_t>(k + 1), report.models_reused ? std::to_string(report.models_reused) + " reused" : "");
  }
  p.end("");
  report.seconds = train_seconds;
  report.seconds_per_model = report.models_trained ? train_seconds / static_cast<double>(report.models_trained) : 0.0;

  // The target's training accuracy on its members.
  {
    std::int64_t right = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!in[0][i]) continue;
      ++report.members;
      right += target_correct[i] ? 1 : 0;
    }
    report.target_train_accuracy = static_cast<double>(right) / static_cast<double>(report.members);
  }

  std::vector<std::vector<double>> scores;
  {
    std::vector<double> loss_score(n);
    for (std::size_t i = 0; i < n; ++i) loss_score[i] = -loss[0][i];
    scores.push_back(std::move(loss_score));
    const std::vector<std::vector<double>> shadow_phi(phi.begin() + 1, phi.end());
    const std::vector<std::vector<bool>> shadow_in(in.begin() + 1, in.end());
    for (auto& s : lira_scores(shadow_phi, shadow_in, phi[0])) scores.push_back(std::move(s));
  }
  std::vector<std::pair<std::string, RocCurve>> curves;
  for (std::size_t a = 0; a < scores.size(); ++a) {
    curves.emplace_back(kAttackNames[a], roc_curve(scores[a], in[0]));
    report.attacks.push_back({kAttackNames[a], attack_metrics(curves.back().second)});
  }
  report.scores_out = (std::filesystem::path(j.out_dir) / "scores.tsv").string();
  write_scores(report.scores_out, labels, in[0], scores);
  if (!j.roc_plot.empty()) {
    plot_roc_curves(curves,
                    j.job.model + " (" + report.recipe + ") on " + j.job.dataset + ", pool " + std::to_string(pool) +
                        ", " + std::to_string(j.shadows) + " shadow models",
                    j.roc_plot);
    report.roc_plot = j.roc_plot;
  }
  return report;
}

}  // namespace aegis::privacy
