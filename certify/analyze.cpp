#include "certify/analyze.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"

extern char** environ;

namespace aegis::certify {

namespace {

std::string format_g(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

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
  if (g.has_settings) g.shards.insert(read_settings(path).shard.index);
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

SweepCurve summarize(const Group& g, const std::vector<double>& radii) {
  SweepCurve c;
  c.sigma = g.sigma;
  c.files = g.files;
  for (const auto& entry : g.rows) c.rows.push_back(entry.second.first);
  std::int64_t correct = 0, abstained = 0;
  for (const SweepRow& r : c.rows) {
    correct += r.correct;
    abstained += r.predict < 0;
    if (r.correct) c.max_radius = std::max(c.max_radius, r.radius);
  }
  const double n = c.rows.empty() ? 1.0 : static_cast<double>(c.rows.size());
  c.clean_accuracy = static_cast<double>(correct) / n;
  c.abstention_rate = static_cast<double>(abstained) / n;
  c.acr = average_certified_radius(c.rows);
  for (double r : radii) c.certified_accuracy.push_back(certified_accuracy(c.rows, r));
  return c;
}

// A gnuplot single-quoted string: a quote inside is written twice. A newline (or any control
// character) would end the command inside the string, and whatever follows would run as gnuplot
// commands (`system("...")`), so the strings given here are our own: fixed names in our
// temporary directory, and titles passed through plot_title first.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    const auto byte = static_cast<unsigned char>(ch);
    AEGIS_CHECK(byte >= 0x20 && byte != 0x7f, "gnuplot string with a control character: " << s);
    out += ch == '\'' ? std::string("''") : std::string(1, ch);
  }
  return out + "'";
}

// A curve title built from a file name, which the user chose: printable ASCII stays, every other
// byte (control characters, bytes of UTF-8 or of no encoding) becomes '?'.
std::string plot_title(const std::string& label) {
  std::string out;
  for (char ch : label) {
    const auto byte = static_cast<unsigned char>(ch);
    out += byte >= 0x20 && byte < 0x7f ? ch : '?';
  }
  return out;
}

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "aegis_plot_XXXXXX").string();
    AEGIS_CHECK_AS(IoError, ::mkdtemp(templ.data()) != nullptr,
                   templ << ": cannot create a temporary directory: " << std::strerror(errno));
    path = templ;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

// Runs `program script`, with stdout and stderr into `log`; returns the exit status (-1: signal).
int run_program(const std::string& program, const std::string& script, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), const_cast<char*>(script.c_str()), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  AEGIS_CHECK_AS(IoError, rc == 0, "cannot start " << program << ": " << std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    AEGIS_CHECK_AS(IoError, errno == EINTR, "waiting for " << program << ": " << std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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
  if (options.sigma)
    AEGIS_CHECK(std::isfinite(*options.sigma) && *options.sigma > 0,
                "sigma " << *options.sigma << " must be > 0 and finite");
  for (double r : options.radii) AEGIS_CHECK(std::isfinite(r) && r >= 0, "radius " << r << " must be ≥ 0 and finite");
  Analysis a;
  std::vector<Group> groups;
  for (const std::string& path : paths) {
    const SweepTsv tsv = read_sweep_tsv(path, false);
    const bool has = has_settings(path);
    SweepSettings s = has ? read_settings(path) : SweepSettings{};
    const double sigma = options.sigma ? *options.sigma : has ? s.sigma : std::numeric_limits<double>::quiet_NaN();
    if (has && options.sigma && s.sigma != *options.sigma)
      a.warnings.push_back(path + " records sigma " + format_g(s.sigma) + "; --sigma " + format_g(sigma) +
                           " overrides it");
    s.sigma = sigma;
    merge_file(group_for(groups, has, s, sigma), path, tsv.rows);
    if (tsv.rows.empty()) a.warnings.push_back(path + " holds no rows");
  }
  double max_radius = 0.0;
  for (const Group& g : groups)
    for (const auto& entry : g.rows)
      if (entry.second.first.correct) max_radius = std::max(max_radius, entry.second.first.radius);
  a.radii = options.radii.empty() ? default_radii(max_radius) : options.radii;
  std::sort(a.radii.begin(), a.radii.end());
  a.radii.erase(std::unique(a.radii.begin(), a.radii.end()), a.radii.end());
  for (const Group& g : groups) {
    a.curves.push_back(summarize(g, a.radii));
    if (g.has_settings && static_cast<std::int64_t>(g.shards.size()) < g.settings.shard.count) {
      std::string have;
      for (std::int64_t i : g.shards) have += (have.empty() ? "" : ", ") + std::to_string(i);
      a.warnings.push_back("sigma " + format_g(g.sigma) + ": only shard(s) " + have + " of " +
                           std::to_string(g.settings.shard.count) + " given; the numbers cover part of the sweep");
    }
  }
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
  return a;
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
  return t.str();
}

void plot_certified_accuracy(const Analysis& a, const std::string& png_path) {
  AEGIS_CHECK(!a.curves.empty(), "nothing to plot");
  const std::string gnuplot = find_on_path("gnuplot");
  AEGIS_CHECK_AS(IoError, !gnuplot.empty(),
                 "cannot draw " << png_path << ": gnuplot is not on PATH (install the Debian package gnuplot-nox)");
  double x_max = a.radii.empty() ? 0.0 : a.radii.back();
  for (const SweepCurve& c : a.curves) x_max = std::max(x_max, c.max_radius);
  x_max = x_max > 0 ? x_max * 1.05 : 1.0;
  const TempDir dir;
  // gnuplot sees only names inside our temporary directory; the image is copied to png_path
  // afterwards, so the user's path never enters the script.
  const std::string data = dir.path + "/curves.dat", script = dir.path + "/plot.gp", log = dir.path + "/gnuplot.log",
                    image = dir.path + "/plot.png";
  {
    // One block per curve (blocks separated by two blank lines, gnuplot's `index`), the step
    // function sampled finely enough that every step is visible at the plot's resolution.
    std::ofstream out(data);
    constexpr int kSamples = 1000;
    for (const SweepCurve& c : a.curves) {
      for (int k = 0; k <= kSamples; ++k) {
        const double r = x_max * k / kSamples;
        out << r << " " << certified_accuracy(c.rows, r) << "\n";
      }
      out << "\n\n";
    }
    AEGIS_CHECK_AS(IoError, out.good(), data << ": write failed");
  }
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 960,640 noenhanced font 'sans,11'\n"
       << "set output " << gp_quote(image) << "\n"
       << "set xlabel 'L2 radius'\nset ylabel 'certified accuracy'\n"
       << "set xrange [0:" << x_max << "]\nset yrange [0:1]\nset grid\nset key top right\n"
       << "plot ";
    for (std::size_t i = 0; i < a.curves.size(); ++i) {
      const SweepCurve& c = a.curves[i];
      const std::string title = std::isnan(c.sigma) ? plot_title(c.label) : "σ = " + plot_title(c.label);
      gp << (i ? ", \\\n     " : "") << gp_quote(data) << " index " << i << " using 1:2 with lines lw 2 title "
         << gp_quote(title);
    }
    gp << "\n";
    AEGIS_CHECK_AS(IoError, gp.good(), script << ": write failed");
  }
  const int status = run_program(gnuplot, script, log);
  std::ifstream log_in(log);
  const std::string message((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  AEGIS_CHECK_AS(IoError, status == 0,
                 "gnuplot failed (status " << status << ") drawing " << png_path << ": " << message);
  std::error_code ec;
  AEGIS_CHECK_AS(IoError, std::filesystem::file_size(image, ec) > 0 && !ec,
                 "gnuplot wrote no image for " << png_path << ": " << message);
  std::filesystem::copy_file(image, png_path, std::filesystem::copy_options::overwrite_existing, ec);
  AEGIS_CHECK_AS(IoError, !ec, png_path << ": cannot write the plot: " << ec.message());
}

}  // namespace aegis::certify
