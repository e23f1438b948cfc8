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
#include "core/work_farm.h"
#include "nn/model_file.h"
#include "nn/train.h"
#include "privacy/audit_farm.h"
#include "privacy/audit_mia_query.h"

namespace aegis::privacy {

namespace {

// The kPurposeAuditSetup choices of this audit (the DP audit uses 0–2).
constexpr std::uint32_t kTargetHalf = 16;
constexpr std::uint32_t kShadowDesign = 17;
const char* const kTagKey = "aegis.audit.mia";
const char* const kLiraNames[] = {"lira-online", "lira-online-fixed", "lira-offline", "lira-offline-fixed"};
const char* const kRmiaNames[] = {"rmia-online", "rmia-offline"};

using audit_detail::augmented_view;
using audit_detail::logits_of;
using audit_detail::phi_and_loss;
using audit_detail::subset;

bool runs(const MiaJob& j, const char* family) {
  return std::find(j.attacks.begin(), j.attacks.end(), family) != j.attacks.end();
}

void check_attacks(const MiaJob& j, const nn::DatasetSplit& split) {
  AEGIS_CHECK(!j.attacks.empty(), "--attack names no attack (loss, lira, rmia)");
  for (std::size_t a = 0; a < j.attacks.size(); ++a) {
    const std::string& name = j.attacks[a];
    AEGIS_CHECK(name == "loss" || name == "lira" || name == "rmia",
                "--attack " << name << " is not an attack: loss, lira or rmia");
    AEGIS_CHECK(std::find(j.attacks.begin(), j.attacks.begin() + static_cast<std::ptrdiff_t>(a), name) ==
                    j.attacks.begin() + static_cast<std::ptrdiff_t>(a),
                "--attack names " << name << " twice");
  }
  AEGIS_CHECK(j.augment >= 1 && j.augment <= audit_detail::kMaxQueries,
              "--augment " << j.augment << " must lie in [1, " << audit_detail::kMaxQueries << "]");
  AEGIS_CHECK(j.augment == 1 || runs(j, "lira"), "--augment " << j.augment << " is LiRA's: add lira to --attack");
  if (j.augment > 1) {
    const Shape& s = split.train.images.shape();
    AEGIS_CHECK(s[2] >= 2 && s[3] >= 2,
                "--augment mirrors and shifts images; " << split.train.name << " has " << s[2] << "x" << s[3] << " inputs");
  }
  if (runs(j, "rmia")) {
    AEGIS_CHECK(split.test.size() > 0, "RMIA draws its population from the test split, and it is empty");
    AEGIS_CHECK(j.population >= 0 && j.population <= split.test.size(),
                "--population " << j.population << " must lie in [0, " << split.test.size()
                                << "] (the test split's size; 0: all of it)");
    AEGIS_CHECK(j.rmia.gamma > 0.0 && std::isfinite(j.rmia.gamma), "--rmia-gamma " << j.rmia.gamma << " must be > 0");
    AEGIS_CHECK(j.rmia.offline_a >= 0.0 && j.rmia.offline_a <= 1.0,
                "--rmia-a " << j.rmia.offline_a << " must lie in [0, 1]");
  }
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

std::string model_path(const MiaJob& j, std::size_t k) {
  return (std::filesystem::path(j.out_dir) / (k == 0 ? std::string("target") : "shadow-" + std::to_string(k)))
             .string() +
         ".safetensors";
}

// A model file of the audit, refused when another audit wrote it.
nn::LoadedClassifier load_audit_model(const std::string& path, const std::string& tag) {
  nn::LoadedClassifier loaded = nn::load_classifier(path);
  const auto it = loaded.metadata.find(kTagKey);
  AEGIS_CHECK(
      it != loaded.metadata.end() && it->second == tag,
      path << " was written by another audit (other recipe, pool, seed or shadow count); use a fresh --out-dir");
  return loaded;
}

// Model k of the audit (0: the target), trained on its half of the pool (`in`) and saved, tagged,
// at `path`; `seconds` gets its training time. It depends on (recipe, seeds, k) alone, so any
// rank of an MPI run can train it.
nn::TrainedModel train_audit_model(const MiaJob& j, const nn::Dataset& pool_data, const std::vector<bool>& in,
                                   std::size_t k, const std::string& path, const std::string& tag, double& seconds) {
  std::vector<std::int64_t> members;
  for (std::size_t i = 0; i < in.size(); ++i)
    if (in[i]) members.push_back(static_cast<std::int64_t>(i));
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
  seconds = seconds_since(t0);
  t.metadata[kTagKey] = tag;
  t.metadata["aegis.dataset"] = j.job.dataset;
  nn::save_classifier(path, *t.model, t.spec, t.metadata);
  return t;
}

void write_scores(const std::string& path, const std::vector<std::int32_t>& labels, const std::vector<bool>& members,
                  const std::vector<std::string>& names, const std::vector<std::vector<double>>& scores) {
  std::ostringstream os;
  os << "idx\tlabel\tmember";
  for (const std::string& name : names) os << '\t' << name;
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
          {"augment", r.augment},
          {"population", r.population},
          {"rmia_a", r.rmia_a},
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
  check_attacks(j, split);
  if (!j.roc_plot.empty()) plot_format(j.roc_plot);  // a wrong extension fails before any training
  nn::check_train_options(j.job.train);
  if (audit_detail::is_rank0()) {  // under mpirun the other ranks must see rank 0's (audit_farm.h)
    std::error_code ec;
    std::filesystem::create_directories(j.out_dir, ec);
    AEGIS_CHECK_AS(IoError, !ec && std::filesystem::is_directory(j.out_dir),
                   "cannot create the audit directory " << j.out_dir << (ec ? ": " + ec.message() : std::string()));
  }
  ProgressSink& p = progress_or_silent(progress);

  const nn::Dataset pool_data = nn::take(split.train, 0, pool);
  const std::vector<std::int32_t> labels = pool_data.labels.to_vector<std::int32_t>();
  const auto n = static_cast<std::size_t>(pool);
  const auto K = static_cast<std::size_t>(j.shadows);
  // The queries: the pool's views for LiRA (view 0 is the pool itself) and RMIA's population.
  std::vector<nn::Dataset> views = {pool_data};
  for (std::int64_t a = 1; a < j.augment; ++a) views.push_back(augmented_view(pool_data, a));
  const bool rmia = runs(j, "rmia");
  const nn::Dataset population =
      rmia ? nn::take(split.test, 0, j.population == 0 ? split.test.size() : j.population) : nn::Dataset{};
  const std::vector<std::int32_t> population_labels =
      rmia ? population.labels.to_vector<std::int32_t>() : std::vector<std::int32_t>{};

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
  report.augment = j.augment;
  report.population = population.size();
  // phi[k]: model k's φ on every view, view-major (LiRA's layout); population_log_prob[k]: its
  // log Pr(y|z) on the population.
  std::vector<std::vector<double>> phi(K + 1), loss(K + 1), population_log_prob(K + 1);
  std::vector<bool> target_correct, correct;
  double train_seconds = 0.0;
  // Under mpirun the missing models are trained over the ranks first (privacy/audit_farm.h); rank
  // 0 then reads every model back from out_dir, as a resumed one-process audit would.
  audit_detail::FarmOutcome farmed;
  farmed.trained.assign(K + 1, false);
  if (audit_detail::several_ranks()) {
    const auto tag_of = [&](std::int64_t k) { return model_tag(j, pool, k); };
    farmed = audit_detail::farm_models(
        static_cast<std::int64_t>(K + 1),
        [&](std::int64_t k) {
          const std::string path = model_path(j, static_cast<std::size_t>(k));
          if (!std::filesystem::exists(path)) return false;
          load_audit_model(path, tag_of(k));  // a file of another audit is refused before any training
          return true;
        },
        [&](std::int64_t k, bool) {
          const auto index = static_cast<std::size_t>(k);
          double seconds = 0.0;
          train_audit_model(j, pool_data, in[index], index, model_path(j, index), tag_of(k), seconds);
          return seconds;
        },
        j.out_dir, p, "training the target and shadow models");
    if (!audit_detail::is_rank0()) {
      mpi::idle_barrier();  // rank 0 scores the models; this rank's result is rank 0's
      return {};
    }
    train_seconds = farmed.seconds;
  }
  p.begin(audit_detail::several_ranks() ? "scoring the target and shadow models" : "target and shadow models",
          static_cast<std::int64_t>(K + 1), "models");
  for (std::size_t k = 0; k <= K; ++k) {
    const std::string path = model_path(j, k);
    const std::string tag = model_tag(j, pool, static_cast<std::int64_t>(k));
    std::shared_ptr<nn::Module> model;
    std::map<std::string, std::string> metadata;
    AEGIS_CHECK_AS(IoError, !audit_detail::several_ranks() || std::filesystem::exists(path),
                   "rank 0 does not see " << path << " after the ranks trained the models: under mpirun --out-dir "
                                          << "must be a directory every rank shares");
    if (std::filesystem::exists(path)) {
      nn::LoadedClassifier loaded = load_audit_model(path, tag);
      model = loaded.model;
      metadata = loaded.metadata;
      ++(farmed.trained[k] ? report.models_trained : report.models_reused);
    } else {
      double seconds = 0.0;
      nn::TrainedModel t = train_audit_model(j, pool_data, in[k], k, path, tag, seconds);
      train_seconds += seconds;
      model = t.model;
      metadata = t.metadata;
      ++report.models_trained;
    }
    const std::vector<float> z = logits_of(*model, pool_data, j.job.train.device);
    phi_and_loss(z, labels, pool_data.num_classes, phi[k], loss[k], correct);
    for (std::size_t a = 1; a < views.size(); ++a) {
      std::vector<double> view_phi, view_loss;
      std::vector<bool> view_correct;
      phi_and_loss(logits_of(*model, views[a], j.job.train.device), labels, pool_data.num_classes, view_phi, view_loss,
                   view_correct);
      phi[k].insert(phi[k].end(), view_phi.begin(), view_phi.end());
    }
    if (rmia) {
      std::vector<double> population_phi, population_loss;
      std::vector<bool> population_correct;
      phi_and_loss(logits_of(*model, population, j.job.train.device), population_labels, population.num_classes,
                   population_phi, population_loss, population_correct);
      for (double& l : population_loss) l = -l;
      population_log_prob[k] = std::move(population_loss);
    }
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

  std::vector<std::string> names;
  std::vector<std::vector<double>> scores;
  const std::vector<std::vector<bool>> shadow_in(in.begin() + 1, in.end());
  if (runs(j, "loss")) {
    std::vector<double> loss_score(n);
    for (std::size_t i = 0; i < n; ++i) loss_score[i] = -loss[0][i];
    names.emplace_back("loss");
    scores.push_back(std::move(loss_score));
  }
  if (runs(j, "lira")) {
    const std::vector<std::vector<double>> shadow_phi(phi.begin() + 1, phi.end());
    std::vector<std::vector<double>> s = lira_scores(shadow_phi, shadow_in, phi[0], j.augment);
    for (std::size_t v = 0; v < s.size(); ++v) {
      names.emplace_back(kLiraNames[v]);
      scores.push_back(std::move(s[v]));
    }
  }
  if (rmia) {
    // log Pr(y|x, θ) = −loss on the pool (the example itself, not its views).
    std::vector<std::vector<double>> log_prob(K + 1);
    for (std::size_t k = 0; k <= K; ++k) {
      log_prob[k] = loss[k];
      for (double& l : log_prob[k]) l = -l;
    }
    const std::vector<std::vector<double>> shadow_log_prob(log_prob.begin() + 1, log_prob.end());
    const std::vector<std::vector<double>> shadow_population(population_log_prob.begin() + 1, population_log_prob.end());
    RmiaOptions rmia_options = j.rmia;
    if (rmia_options.fit_a)
      rmia_options.offline_a = fit_rmia_offline_a(shadow_log_prob, shadow_in, shadow_population, rmia_options.gamma);
    report.rmia_a = rmia_options.offline_a;
    std::vector<std::vector<double>> s =
        rmia_scores(shadow_log_prob, shadow_in, log_prob[0], shadow_population, population_log_prob[0], rmia_options);
    for (std::size_t v = 0; v < s.size(); ++v) {
      names.emplace_back(kRmiaNames[v]);
      scores.push_back(std::move(s[v]));
    }
  }
  std::vector<std::pair<std::string, RocCurve>> curves;
  for (std::size_t a = 0; a < scores.size(); ++a) {
    curves.emplace_back(names[a], roc_curve(scores[a], in[0]));
    report.attacks.push_back({names[a], attack_metrics(curves.back().second)});
  }
  report.scores_out = (std::filesystem::path(j.out_dir) / "scores.tsv").string();
  write_scores(report.scores_out, labels, in[0], names, scores);
  if (!j.roc_plot.empty()) {
    plot_roc_curves(curves,
                    j.job.model + " (" + report.recipe + ") on " + j.job.dataset + ", pool " + std::to_string(pool) +
                        ", " + std::to_string(j.shadows) + " shadow models",
                    j.roc_plot);
    report.roc_plot = j.roc_plot;
  }
  mpi::idle_barrier();
  return report;
}

}  // namespace aegis::privacy
