#include "certify/analyze.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"

namespace aegis::certify {

namespace {

std::string base_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

struct Group {
  bool has_settings = false;
  SweepSettings settings;
  double sigma = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::string> files;
  std::map<std::int64_t, std::pair<SweepRow, std::string>> rows;  // idx → (row, file)
  std::set<std::int64_t> shards;
};

// The group a file joins: shards of one sweep (sidecars equal but for the shard index), or
// sidecar-less files of one known σ; otherwise a group of its own.
Group& group_for(std::vector<Group>& groups, bool has, const SweepSettings& s, double sigma) {
  for (Group& g : groups) {
    if (g.has_settings != has) continue;
    if (has ? settings_difference(g.settings, s, true).empty() : (!std::isnan(sigma) && g.sigma == sigma)) return g;
  }
  Group g;
  g.has_settings = has;
  g.settings = s;
  g.sigma = sigma;
  groups.push_back(std::move(g));
  return groups.back();
}

void merge_file(Group& g, const std::string& path, const std::vector<SweepRow>& rows) {
  g.files.push_back(path);
  if (g.has_settings) g.shards.insert(read_settings(path).inputs.shard.index);
  for (const SweepRow& r : rows) {
    const auto it = g.rows.find(r.idx);
    if (it == g.rows.end()) {
      g.rows.emplace(r.idx, std::make_pair(r, path));
      continue;
    }
    AEGIS_CHECK_AS(IoError, same_result(it->second.first, r),
                   "idx " << r.idx << " is in " << it->second.second << " and " << path << " with different results: '"
                          << format_row(it->second.first).substr(0, 40) << "' vs '" << format_row(r).substr(0, 40)
                          << "'");
  }
}

SweepCurve curve_of(const Group& g) {
  SweepCurve c;
  c.sigma = g.sigma;
  c.files = g.files;
  if (g.has_settings) c.settings = g.settings;
  for (const auto& entry : g.rows) c.rows.push_back(entry.second.first);
  return c;
}

void summarize(SweepCurve& c, const std::vector<double>& radii) {
  std::int64_t correct = 0, abstained = 0;
  c.max_radius = 0.0;
  for (const SweepRow& r : c.rows) {
    correct += r.correct;
    abstained += r.predict < 0;
    if (r.correct) c.max_radius = std::max(c.max_radius, r.radius);
  }
  const double n = c.rows.empty() ? 1.0 : static_cast<double>(c.rows.size());
  c.clean_accuracy = static_cast<double>(correct) / n;
  c.abstention_rate = static_cast<double>(abstained) / n;
  c.acr = average_certified_radius(c.rows);
  c.certified_accuracy.clear();
  for (double r : radii) c.certified_accuracy.push_back(certified_accuracy(c.rows, r));
}

void check_options(const AnalyzeOptions& options) {
  if (options.sigma)
    AEGIS_CHECK(std::isfinite(*options.sigma) && *options.sigma > 0,
                "sigma " << *options.sigma << " must be > 0 and finite");
  for (double r : options.radii) AEGIS_CHECK(std::isfinite(r) && r >= 0, "radius " << r << " must be ≥ 0 and finite");
}

std::vector<std::int64_t> input_ids(const SweepCurve& c) {
  std::vector<std::int64_t> ids;
  for (const SweepRow& r : c.rows) ids.push_back(r.idx);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The radii, each curve's numbers at them, the order by σ, the labels and the envelope.
void finish(Analysis& a, const AnalyzeOptions& options) {
  double max_radius = 0.0;
  for (const SweepCurve& c : a.curves)
    for (const SweepRow& r : c.rows)
      if (r.correct) max_radius = std::max(max_radius, r.radius);
  a.radii = options.radii.empty() ? default_radii(max_radius) : options.radii;
  std::sort(a.radii.begin(), a.radii.end());
  a.radii.erase(std::unique(a.radii.begin(), a.radii.end()), a.radii.end());
  for (SweepCurve& c : a.curves) summarize(c, a.radii);
  std::stable_sort(a.curves.begin(), a.curves.end(), [](const SweepCurve& x, const SweepCurve& y) {
    if (std::isnan(x.sigma) || std::isnan(y.sigma)) return !std::isnan(x.sigma) && std::isnan(y.sigma);
    return x.sigma < y.sigma;
  });
  for (SweepCurve& c : a.curves) {
    const bool repeated =
        std::count_if(a.curves.begin(), a.curves.end(), [&](const SweepCurve& o) { return o.sigma == c.sigma; }) > 1;
    c.label = std::isnan(c.sigma) ? base_name(c.files.front())
              : repeated          ? format_g(c.sigma) + " (" + base_name(c.files.front()) + ")"
                                  : format_g(c.sigma);
  }
  if (!options.envelope || a.curves.empty()) return;
  a.envelope.assign(a.radii.size(), 0.0);
  for (const SweepCurve& c : a.curves)
    for (std::size_t i = 0; i < a.radii.size(); ++i) a.envelope[i] = std::max(a.envelope[i], c.certified_accuracy[i]);
  const std::vector<std::int64_t> first = input_ids(a.curves.front());
  for (const SweepCurve& c : a.curves)
    if (input_ids(c) != first) {
      a.warnings.push_back("the envelope takes the best of curves certified on different inputs (" +
                           a.curves.front().label + ": " + std::to_string(first.size()) + ", " + c.label + ": " +
                           std::to_string(c.rows.size()) + "); it is then no certified accuracy of one test set");
      break;
    }
}

// Steps of max_c A_c(r) over the curves (for one curve, its own): A_c drops only at radii of
// correct rows, so the max does too, and it is evaluated just there, at r and right after r.
std::vector<CurvePoint> steps_of(const std::vector<const SweepCurve*>& curves) {
  struct Sorted {
    std::vector<double> radii;  // of the correct rows, ascending
    double inputs = 1.0;
  };
  std::vector<Sorted> sorted;
  std::vector<double> drops;
  for (const SweepCurve* c : curves) {
    Sorted s;
    for (const SweepRow& r : c->rows)
      if (r.correct) s.radii.push_back(r.radius);
    std::sort(s.radii.begin(), s.radii.end());
    s.inputs = c->rows.empty() ? 1.0 : static_cast<double>(c->rows.size());
    drops.insert(drops.end(), s.radii.begin(), s.radii.end());
    sorted.push_back(std::move(s));
  }
  std::sort(drops.begin(), drops.end());
  drops.erase(std::unique(drops.begin(), drops.end()), drops.end());
  // Certified at r: radius ≥ r (lower_bound); right after r: radius > r (upper_bound).
  const auto best = [&](double r, bool after) {
    double v = 0.0;
    for (const Sorted& s : sorted) {
      const auto it = after ? std::upper_bound(s.radii.begin(), s.radii.end(), r)
                            : std::lower_bound(s.radii.begin(), s.radii.end(), r);
      v = std::max(v, static_cast<double>(s.radii.end() - it) / s.inputs);
    }
    return v;
  };
  std::vector<CurvePoint> points{{0.0, best(0.0, false)}};
  for (double r : drops) {
    const double at = best(r, false), past = best(r, true);
    if (past >= at) continue;
    if (points.back().radius != r || points.back().accuracy != at) points.push_back({r, at});
    points.push_back({r, past});
  }
  return points;
}

}  // namespace

double certified_accuracy(const std::vector<SweepRow>& rows, double radius) {
  if (rows.empty()) return 0.0;
  std::int64_t hits = 0;
  for (const SweepRow& r : rows) hits += r.correct && r.radius >= radius;
  return static_cast<double>(hits) / static_cast<double>(rows.size());
}

double average_certified_radius(const std::vector<SweepRow>& rows) {
  if (rows.empty()) return 0.0;
  double sum = 0.0;
  for (const SweepRow& r : rows) sum += r.correct ? r.radius : 0.0;
  return sum / static_cast<double>(rows.size());
}

std::vector<double> default_radii(double max_radius) {
  AEGIS_CHECK(std::isfinite(max_radius) && max_radius >= 0, "max radius " << max_radius << " must be ≥ 0");
  double step = 0.25;
  while (std::floor(max_radius / step) + 1 > 41) step *= 2;
  std::vector<double> radii;
  for (std::int64_t k = 0; static_cast<double>(k) * step <= max_radius; ++k)
    radii.push_back(static_cast<double>(k) * step);
  return radii;
}

Analysis analyze_sweeps(const std::vector<std::string>& paths, const AnalyzeOptions& options) {
  AEGIS_CHECK(!paths.empty(), "no sweep files given");
  check_options(options);
  Analysis a;
  std::vector<Group> groups;
  for (const std::string& path : paths) {
    const SweepTsv tsv = read_sweep_tsv(path, false);
    const bool has = has_settings(path);
    SweepSettings s = has ? read_settings(path) : SweepSettings{};
    const double sigma = options.sigma ? *options.sigma : has ? s.smoothing.sigma : std::numeric_limits<double>::quiet_NaN();
    if (has && options.sigma && s.smoothing.sigma != *options.sigma)
      a.warnings.push_back(path + " records sigma " + format_g(s.smoothing.sigma) + "; --sigma " + format_g(sigma) +
                           " overrides it");
    s.smoothing.sigma = sigma;
    merge_file(group_for(groups, has, s, sigma), path, tsv.rows);
    if (tsv.rows.empty()) a.warnings.push_back(path + " holds no rows");
  }
  for (const Group& g : groups) {
    a.curves.push_back(curve_of(g));
    if (g.has_settings && static_cast<std::int64_t>(g.shards.size()) < g.settings.inputs.shard.count) {
      std::string have;
      for (std::int64_t i : g.shards) have += (have.empty() ? "" : ", ") + std::to_string(i);
      a.warnings.push_back("sigma " + format_g(g.sigma) + ": only shard(s) " + have + " of " +
                           std::to_string(g.settings.inputs.shard.count) + " given; the numbers cover part of the sweep");
    }
  }
  finish(a, options);
  return a;
}

Analysis analyze_rows(const std::vector<SweepRows>& sweeps, const AnalyzeOptions& options) {
  AEGIS_CHECK(!sweeps.empty(), "no sweeps given");
  check_options(options);
  Analysis a;
  for (const SweepRows& s : sweeps) {
    SweepCurve c;
    c.sigma = options.sigma ? *options.sigma : s.settings.smoothing.sigma;
    c.files = {s.file};
    c.settings = s.settings;
    c.settings->smoothing.sigma = c.sigma;
    c.rows = s.rows;
    std::sort(c.rows.begin(), c.rows.end(), [](const SweepRow& x, const SweepRow& y) { return x.idx < y.idx; });
    a.curves.push_back(std::move(c));
  }
  finish(a, options);
  return a;
}

std::vector<CurvePoint> accuracy_steps(const SweepCurve& curve) {
  return steps_of({&curve});
}

std::vector<CurvePoint> envelope_steps(const std::vector<SweepCurve>& curves) {
  std::vector<const SweepCurve*> all;
  for (const SweepCurve& c : curves) all.push_back(&c);
  return steps_of(all);
}

std::string markdown_table(const Analysis& a) {
  std::ostringstream t;
  t << "| σ | inputs |";
  for (double r : a.radii) t << " r = " << format_g(r) << " |";
  t << " ACR | abstain |\n| --- | ---: |";
  for (std::size_t i = 0; i < a.radii.size(); ++i) t << " ---: |";
  t << " ---: | ---: |\n";
  char buf[32];
  for (const SweepCurve& c : a.curves) {
    t << "| " << c.label << " | " << c.rows.size() << " |";
    for (double v : c.certified_accuracy) {
      std::snprintf(buf, sizeof buf, " %.3f |", v);
      t << buf;
    }
    std::snprintf(buf, sizeof buf, " %.3f |", c.acr);
    t << buf;
    std::snprintf(buf, sizeof buf, " %.3f |\n", c.abstention_rate);
    t << buf;
  }
  if (a.envelope.empty()) return t.str();
  t << "| best |  |";
  for (double v : a.envelope) {
    std::snprintf(buf, sizeof buf, " %.3f |", v);
    t << buf;
  }
  t << "  |  |\n";
  return t.str();
}

std::string format_g(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

nlohmann::json to_json(const Analysis& r, bool envelope) {
  nlohmann::json curves = nlohmann::json::array();
  for (const SweepCurve& c : r.curves)
    curves.push_back({{"label", c.label},
                      {"sigma", std::isnan(c.sigma) ? nlohmann::json() : nlohmann::json(c.sigma)},
                      {"files", c.files},
                      {"inputs", c.rows.size()},
                      {"certified_accuracy", c.certified_accuracy},
                      {"acr", c.acr},
                      {"abstention_rate", c.abstention_rate},
                      {"clean_accuracy", c.clean_accuracy},
                      {"max_radius", c.max_radius}});
  nlohmann::json j{{"radii", r.radii}, {"curves", curves}, {"warnings", r.warnings}};
  if (envelope) j["envelope"] = r.envelope;
  return j;
}

}  // namespace aegis::certify
