#include "core/gnuplot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "core/error.h"

extern char** environ;

namespace aegis {

namespace {

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

}  // namespace

// A gnuplot single-quoted string: a quote inside is written twice, and nothing else is special
// there (no backslash escapes, no macro or backquote substitution). A newline (or any control
// character) would end the command inside the string, and whatever follows would run as gnuplot
// commands (`system("...")`), so the strings given here are our own: fixed names in our
// temporary directory, and text passed through printable_ascii() first.
std::string gnuplot_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    const auto byte = static_cast<unsigned char>(ch);
    AEGIS_CHECK(byte >= 0x20 && byte != 0x7f, "gnuplot string with a control character: " << s);
    out += ch == '\'' ? std::string("''") : std::string(1, ch);
  }
  return out + "'";
}

std::string printable_ascii(const std::string& text) {
  std::string out;
  for (char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    out += byte >= 0x20 && byte < 0x7f ? ch : '?';
  }
  return out;
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

void draw_with_gnuplot(const std::string& path, const std::function<void(GnuplotCanvas& canvas)>& draw) {
  const Terminal terminal = terminal_for(plot_format(path));
  const std::string gnuplot = find_on_path("gnuplot");
  AEGIS_CHECK_AS(IoError, !gnuplot.empty(),
                 "cannot draw " << path << ": gnuplot is not on PATH (install the Debian package gnuplot-nox)");
  const TempDir dir;
  const std::string script = dir.path + "/plot.gp", log = dir.path + "/gnuplot.log",
                    image = dir.path + "/plot." + terminal.extension;
  {
    std::ofstream gp(script);
    gp << "set terminal " << terminal.name << " " << terminal.settings << " noenhanced\n"
       << "set encoding utf8\nset output " << gnuplot_quote(image) << "\n";
    GnuplotCanvas canvas{dir.path, gp};
    draw(canvas);
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

}  // namespace aegis
