// The certified-accuracy plot of certify/analyze.h: the curves' step points, the words on the
// plot, and the gnuplot child process that draws them.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "certify/analyze.h"
#include "core/error.h"

extern char** environ;

namespace aegis::certify {

namespace {

// A gnuplot single-quoted string: a quote inside is written twice, and nothing else is special
// there (no backslash escapes, no macro or backquote substitution). A newline (or any control
// character) would end the command inside the string, and whatever follows would run as gnuplot
// commands (`system("...")`), so the strings given here are our own: fixed names in our
// temporary directory, and text passed through printable() first.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    const auto byte = static_cast<unsigned char>(ch);
    AEGIS_CHECK(byte >= 0x20 && byte != 0x7f, "gnuplot string with a control character: " << s);
    out += ch == '\'' ? std::string("''") : std::string(1, ch);
  }
  return out + "'";
}

// Text from a file (a name, a model path, a data spec), which the user chose: printable ASCII
// stays, every other byte (control characters, bytes of UTF-8 or of no encoding) becomes '?'.
std::string printable(const std::string& text) {
  std::string out;
  for (char ch : text) {
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

struct Terminal {
  const char* name;       // gnuplot's terminal
  const char* extension;  // of the temporary image
  const char* settings;   // size and font
};

Terminal terminal_for(PlotFormat format) {
  switch (format) {
    case PlotFormat::Pdf:
      return {"pdfcairo", "pdf", "size 5in,3.4in font 'sans,9'"};
    case PlotFormat::Svg:
      return {"svg", "svg", "size 800,540 dynamic font 'sans,13' background rgb 'white'"};
    case PlotFormat::Png:
      break;
  }
  return {"pngcairo", "png", "size 960,640 font 'sans,13'"};
}

// Distinct colours that stay apart in print and for the common colour-vision deficiencies
// (Okabe & Ito 2008), the envelope in black.
const char* const kColours[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442"};

}  // namespace

PlotText plot_text(const Analysis& a) {
  // Per curve, in title order: model file, dataset, inputs, n, α ("" when not known).
  constexpr std::size_t kFields = 5;
  std::vector<std::vector<std::string>> fields;
  for (const SweepCurve& c : a.curves) {
    std::vector<std::string> f(kFields);
    if (c.settings) {
      f[0] = "model " + printable(std::filesystem::path(c.settings->model).filename().string());
      f[1] = printable(c.settings->data.substr(0, c.settings->data.find(':')));  // the name, not its directory
      f[3] = "n = " + std::to_string(c.settings->smoothing.n);
      f[4] = "α = " + format_g(c.settings->smoothing.alpha);
    }
    f[2] = std::to_string(c.rows.size()) + (c.rows.size() == 1 ? " input" : " inputs");
    fields.push_back(std::move(f));
  }
  PlotText t;
  std::vector<bool> shared(kFields, !fields.empty());
  for (std::size_t k = 0; k < kFields; ++k)
    for (const auto& f : fields) shared[k] = shared[k] && !f[k].empty() && f[k] == fields.front()[k];
  for (std::size_t k = 0; k < kFields; ++k)
    if (shared[k]) t.title += (t.title.empty() ? "" : ", ") + fields.front()[k];
  for (std::size_t i = 0; i < a.curves.size(); ++i) {
    const SweepCurve& c = a.curves[i];
    std::string title = std::isnan(c.sigma) ? printable(c.label) : "σ = " + printable(c.label);
    for (std::size_t k = 0; k < kFields; ++k)
      if (!shared[k] && !fields[i][k].empty()) title += ", " + fields[i][k];
    t.curve_titles.push_back(title);
  }
  t.envelope_title = "best over σ";
  return t;
}

PlotFormat plot_format(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (ext == ".pdf") return PlotFormat::Pdf;
  if (ext == ".svg") return PlotFormat::Svg;
  AEGIS_CHECK(ext == ".png", "plot file " << path << ": the format follows the extension, which must be .pdf, .svg or "
                                          << ".png, not '" << ext << "'");
  return PlotFormat::Png;
}

void plot_certified_accuracy(const Analysis& a, const std::string& path, const PlotOptions& options) {
  const Terminal terminal = terminal_for(plot_format(path));
  AEGIS_CHECK(!a.curves.empty(), "nothing to plot");
  const std::string gnuplot = find_on_path("gnuplot");
  AEGIS_CHECK_AS(IoError, !gnuplot.empty(),
                 "cannot draw " << path << ": gnuplot is not on PATH (install the Debian package gnuplot-nox)");
  double x_max = a.radii.empty() ? 0.0 : a.radii.back();
  for (const SweepCurve& c : a.curves) x_max = std::max(x_max, c.max_radius);
  x_max = x_max > 0 ? x_max * 1.05 : 1.0;
  const TempDir dir;
  // gnuplot sees only names inside our temporary directory; the image is copied to `path`
  // afterwards, so the user's path never enters the script.
  const std::string data = dir.path + "/curves.dat", script = dir.path + "/plot.gp", log = dir.path + "/gnuplot.log",
                    image = dir.path + "/plot." + terminal.extension;
  {
    // One block per curve, then the envelope (blocks separated by two blank lines, gnuplot's
    // `index`), each the exact corners of its step function.
    std::ofstream out(data);
    char line[64];
    const auto write_block = [&](const std::vector<CurvePoint>& points) {
      for (const CurvePoint& p : points) {
        std::snprintf(line, sizeof line, "%.9g %.9g\n", p.radius, p.accuracy);
        out << line;
      }
      out << "\n\n";
    };
    for (const SweepCurve& c : a.curves) write_block(accuracy_steps(c));
    if (options.envelope) write_block(envelope_steps(a.curves));
    AEGIS_CHECK_AS(IoError, out.good(), data << ": write failed");
  }
  const PlotText text = plot_text(a);
  // Long legend entries (settings that differ between curves) go below the axes, where they
  // cover no curve; short ones sit in the empty top right corner (certified accuracy falls).
  std::size_t longest = 0;
  for (const std::string& t : text.curve_titles)
    longest = std::max<std::size_t>(longest, std::count_if(t.begin(), t.end(), [](char ch) {
                                      return (static_cast<unsigned char>(ch) & 0xc0) != 0x80;  // UTF-8 characters
                                    }));
  const bool long_titles = longest > 32;
  {
    std::ofstream gp(script);
    gp << "set terminal " << terminal.name << " " << terminal.settings << " noenhanced\n"
       << "set encoding utf8\nset output " << gp_quote(image) << "\n";
    if (!text.title.empty()) gp << "set title " << gp_quote(text.title) << "\n";
    gp << "set xlabel 'L2 radius'\nset ylabel 'certified accuracy'\n"
       << "set xrange [0:" << x_max
       << "]\nset yrange [0:1]\nset border 3\nset tics nomirror\nset grid lc rgb '#b8b8b8'\n"
       << "set key ";
    if (long_titles)  // one entry a line, under the axis label, in a margin made for them
      gp << "below vertical maxcols 1 Left reverse nobox\nset bmargin "
         << 5 + a.curves.size() + (options.envelope ? 1 : 0) << "\nplot ";
    else
      gp << "top right opaque box lc rgb '#d0d0d0'\nplot ";
    // The envelope first, wide and half transparent, so the curve that makes it up at each
    // radius shows through on top.
    const std::size_t colours = sizeof kColours / sizeof kColours[0];
    if (options.envelope)
      gp << gp_quote(data) << " index " << a.curves.size() << " using 1:2 with lines lw 8 lc rgb '#70000000' title "
         << gp_quote(text.envelope_title) << ", \\\n     ";
    for (std::size_t i = 0; i < a.curves.size(); ++i)
      gp << (i ? ", \\\n     " : "") << gp_quote(data) << " index " << i << " using 1:2 with lines lw 2 lc rgb '"
         << kColours[i % colours] << "' title " << gp_quote(text.curve_titles[i]);
    gp << "\n";
    AEGIS_CHECK_AS(IoError, gp.good(), script << ": write failed");
  }
  const int status = run_program(gnuplot, script, log);
  std::ifstream log_in(log);
  const std::string message((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  AEGIS_CHECK_AS(IoError, message.find("unknown or ambiguous terminal") == std::string::npos,
                 "cannot draw " << path << ": " << gnuplot << " has no " << terminal.name
                                << " terminal (gnuplot-nox has pdfcairo, svg and pngcairo for .pdf, .svg and .png)");
  AEGIS_CHECK_AS(IoError, status == 0, "gnuplot failed (status " << status << ") drawing " << path << ": " << message);
  std::error_code ec;
  AEGIS_CHECK_AS(IoError, std::filesystem::file_size(image, ec) > 0 && !ec,
                 "gnuplot wrote no image for " << path << ": " << message);
  std::filesystem::copy_file(image, path, std::filesystem::copy_options::overwrite_existing, ec);
  AEGIS_CHECK_AS(IoError, !ec, path << ": cannot write the plot: " << ec.message());
}

}  // namespace aegis::certify
