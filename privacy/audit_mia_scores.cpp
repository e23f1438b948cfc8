// The scores of the attacks of privacy/audit_mia.h: the loss attack on a given model, and the
// shadow-model attacks LiRA (with its query-time augmentations) and RMIA from the per-model
// statistics alone.
#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "privacy/audit_mia.h"
#include "privacy/audit_mia_query.h"

namespace aegis::privacy {

namespace {

double log_normal_pdf(double x, double mean, double sd) {
  const double t = (x - mean) / sd;
  return -0.5 * t * t - std::log(sd);
}

// log(mean_k e^{v_k}) over the values in `v`, stable for very negative v (log-probabilities).
double log_mean_exp(const std::vector<double>& v) {
  const double top = *std::max_element(v.begin(), v.end());
  if (top == -INFINITY) return -INFINITY;
  double sum = 0.0;
  for (double x : v) sum += std::exp(x - top);
  return top + std::log(sum / static_cast<double>(v.size()));
}

// log Pr(x) from log Pr_OUT(x) by the linear approximation of RMIA's offline attack (Zarifzadeh,
// Liu & Shokri 2024, the offline variant of §3): Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a)), with a a
// slope the paper fits once per setting from reference models (0.3 its value for offline attacks);
// here a is given by the caller, not fitted.
double offline_log_marginal(double log_out, double a) {
  const double scaled = std::log1p(a) + log_out;  // log((1 + a)·Pr_OUT)
  if (a >= 1.0) return std::log(0.5) + scaled;
  const double rest = std::log1p(-a);  // log(1 − a)
  const double top = std::max(scaled, rest);
  return std::log(0.5) + top + std::log(std::exp(scaled - top) + std::exp(rest - top));
}

}  // namespace

std::vector<std::vector<double>> lira_scores(const std::vector<std::vector<double>>& phi,
                                             const std::vector<std::vector<bool>>& in_model,
                                             const std::vector<double>& target_phi, std::int64_t queries) {
  const std::size_t k_models = phi.size();
  AEGIS_CHECK(queries >= 1 && target_phi.size() % static_cast<std::size_t>(queries) == 0,
              "LiRA: " << target_phi.size() << " target statistics are not " << queries << " queries per example");
  const std::size_t views = static_cast<std::size_t>(queries), n = target_phi.size() / views;
  AEGIS_CHECK(k_models == in_model.size(),
              "LiRA: " << k_models << " models of scores, " << in_model.size() << " of membership");
  for (std::size_t k = 0; k < k_models; ++k)
    AEGIS_CHECK(phi[k].size() == n * views && in_model[k].size() == n,
                "LiRA: model " << k << " scores another number of examples");
  std::vector<std::vector<double>> out(4, std::vector<double>(n, 0.0));
  // Each view is one coordinate of a Gaussian with diagonal covariance (Carlini et al. 2022,
  // §VI-A: the augmented queries' statistics are fitted per coordinate and the log-likelihood
  // ratios add up); one view is their Alg. 1. The offline score adds the per-view z-scores.
  std::vector<double> mu_in(n), mu_out(n), var_in(n), var_out(n);
  for (std::size_t a = 0; a < views; ++a) {
    double pooled_in = 0.0, pooled_out = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      double s_in = 0, s_out = 0, ss_in = 0, ss_out = 0, c_in = 0, c_out = 0;
      for (std::size_t k = 0; k < k_models; ++k) {
        const double x = phi[k][a * n + i];
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
    const double examples = static_cast<double>(std::max<std::size_t>(n, 1));
    const double global_in = std::max(kMinSd, std::sqrt(pooled_in / examples));
    const double global_out = std::max(kMinSd, std::sqrt(pooled_out / examples));
    for (std::size_t i = 0; i < n; ++i) {
      const double x = target_phi[a * n + i];
      const double sd_in = std::max(kMinSd, std::sqrt(var_in[i])), sd_out = std::max(kMinSd, std::sqrt(var_out[i]));
      out[0][i] += log_normal_pdf(x, mu_in[i], sd_in) - log_normal_pdf(x, mu_out[i], sd_out);
      out[1][i] += log_normal_pdf(x, mu_in[i], global_in) - log_normal_pdf(x, mu_out[i], global_out);
      out[2][i] += (x - mu_out[i]) / sd_out;
      out[3][i] += (x - mu_out[i]) / global_out;
    }
  }
  return out;
}

std::vector<std::vector<double>> rmia_scores(const std::vector<std::vector<double>>& log_prob,
                                             const std::vector<std::vector<bool>>& in_model,
                                             const std::vector<double>& target_log_prob,
                                             const std::vector<std::vector<double>>& population_log_prob,
                                             const std::vector<double>& target_population_log_prob,
                                             const RmiaOptions& options) {
  const std::size_t k_models = log_prob.size(), n = target_log_prob.size(), m = target_population_log_prob.size();
  AEGIS_CHECK(options.gamma > 0.0 && std::isfinite(options.gamma), "RMIA: gamma " << options.gamma << " must be > 0");
  AEGIS_CHECK(options.offline_a >= 0.0 && options.offline_a <= 1.0,
              "RMIA: the offline slope a = " << options.offline_a << " must lie in [0, 1]");
  AEGIS_CHECK(k_models >= 1 && in_model.size() == k_models && population_log_prob.size() == k_models,
              "RMIA: " << k_models << " reference models of scores, " << in_model.size() << " of membership, "
                       << population_log_prob.size() << " of population scores");
  AEGIS_CHECK(m >= 1, "RMIA needs population samples (z), got none");
  for (std::size_t k = 0; k < k_models; ++k)
    AEGIS_CHECK(log_prob[k].size() == n && in_model[k].size() == n && population_log_prob[k].size() == m,
                "RMIA: reference model " << k << " scores another number of examples");
  const double log_gamma = std::log(options.gamma);

  // log(Pr(z|θ)/Pr(z)) for every population sample, sorted: no z is in any reference model, so
  // Pr(z) is the mean over all of them (online), or its offline approximation.
  std::vector<double> z_online(m), z_offline(m), values(k_models);
  for (std::size_t j = 0; j < m; ++j) {
    for (std::size_t k = 0; k < k_models; ++k) values[k] = population_log_prob[k][j];
    const double marginal = log_mean_exp(values);
    z_online[j] = target_population_log_prob[j] - marginal;
    z_offline[j] = target_population_log_prob[j] - offline_log_marginal(marginal, options.offline_a);
  }
  std::sort(z_online.begin(), z_online.end());
  std::sort(z_offline.begin(), z_offline.end());
  // Score_MIA(x) = Pr_z(LR(x, z) ≥ γ) with LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) (their §3):
  // the share of z whose log ratio is at most x's minus log γ.
  const auto share = [&](const std::vector<double>& sorted_z, double log_ratio_x) {
    const auto at_most = std::upper_bound(sorted_z.begin(), sorted_z.end(), log_ratio_x - log_gamma) - sorted_z.begin();
    return static_cast<double>(at_most) / static_cast<double>(m);
  };
  std::vector<std::vector<double>> out(2, std::vector<double>(n));
  std::vector<double> out_values;
  for (std::size_t i = 0; i < n; ++i) {
    out_values.clear();
    for (std::size_t k = 0; k < k_models; ++k) {
      values[k] = log_prob[k][i];
      if (!in_model[k][i]) out_values.push_back(log_prob[k][i]);
    }
    AEGIS_CHECK(!out_values.empty(),
                "RMIA offline: example " << i << " is in every reference model; it needs one without it");
    // Online: Pr(x) = the mean of Pr(x|θ') over the reference models, half of them trained on x
    // (the balanced design); offline: from the models without x only.
    out[0][i] = share(z_online, target_log_prob[i] - log_mean_exp(values));
    out[1][i] =
        share(z_offline, target_log_prob[i] - offline_log_marginal(log_mean_exp(out_values), options.offline_a));
  }
  return out;
}

double fit_rmia_offline_a(const std::vector<std::vector<double>>& log_prob,
                          const std::vector<std::vector<bool>>& in_model,
                          const std::vector<std::vector<double>>& population_log_prob, double gamma) {
  const std::size_t k_models = log_prob.size();
  AEGIS_CHECK(
      k_models >= 3 && in_model.size() == k_models && population_log_prob.size() == k_models,
      "RMIA: fitting a needs at least 3 reference models with membership and population scores, got " << k_models);
  constexpr int kSteps = 20;
  std::vector<double> total_auc(kSteps + 1, 0.0);
  for (std::size_t t = 0; t < k_models; ++t) {
    std::vector<std::vector<double>> refs, refs_population;
    std::vector<std::vector<bool>> refs_in;
    for (std::size_t k = 0; k < k_models; ++k) {
      if (k == t) continue;
      refs.push_back(log_prob[k]);
      refs_in.push_back(in_model[k]);
      refs_population.push_back(population_log_prob[k]);
    }
    const auto members = std::count(in_model[t].begin(), in_model[t].end(), true);
    AEGIS_CHECK(members > 0 && members < static_cast<std::ptrdiff_t>(in_model[t].size()),
                "RMIA: reference model " << t << " has no members or no non-members to fit a on");
    for (int step = 0; step <= kSteps; ++step) {
      RmiaOptions o;
      o.gamma = gamma;
      o.offline_a = static_cast<double>(step) / kSteps;
      const std::vector<std::vector<double>> s =
          rmia_scores(refs, refs_in, log_prob[t], refs_population, population_log_prob[t], o);
      total_auc[static_cast<std::size_t>(step)] += roc_curve(s[1], in_model[t]).auc;
    }
  }
  const auto best = std::max_element(total_auc.begin(), total_auc.end()) - total_auc.begin();  // first maximum
  return static_cast<double>(best) / kSteps;
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
    const std::vector<float> z = audit_detail::logits_of(model, *d, device);
    const std::vector<std::int32_t> y = d->labels.to(Device::cpu()).to_vector<std::int32_t>();
    std::vector<double> phi, loss;
    std::vector<bool> correct;
    audit_detail::phi_and_loss(z, y, static_cast<std::int64_t>(z.size() / y.size()), phi, loss, correct);
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

}  // namespace aegis::privacy
