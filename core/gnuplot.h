// Drawing a plot with gnuplot (Debian package gnuplot-nox), run as a child process on a script
// written into a fresh temporary directory. gnuplot sees only names inside that directory; the
// image is copied to the user's path afterwards, so a user's path never enters a script. Text that
// goes into a script is quoted by gnuplot_quote, and text that came from a file or a user passes
// through printable_ascii first, so no control character can end a command inside a string.
// certify/analyze_plot.cpp (certified accuracy) and privacy/audit_plot.cpp (ROC curves) draw
// with it.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace aegis {

enum class PlotFormat { Pdf, Svg, Png };
// By the extension (case-insensitive): .pdf, .svg, .png; InvalidArgument naming the path and the
// formats otherwise.
PlotFormat plot_format(const std::string& path);

// A gnuplot single-quoted string (a quote inside is written twice). InvalidArgument for a control
// character, which would end the command inside the string.
std::string gnuplot_quote(const std::string& text);
// Printable ASCII stays; every other byte becomes '?'.
std::string printable_ascii(const std::string& text);

// What a script is given to write: the temporary directory for its data files, and the first
// lines (terminal, encoding, output) already written to `script`.
struct GnuplotCanvas {
  std::string dir;  // write data files here, and name them in the script by gnuplot_quote
  std::ostream& script;
};
// Writes the script with `draw` and runs gnuplot on it, in the format plot_format gives for
// `path`. IoError when gnuplot is not on PATH (naming the package gnuplot-nox), lacks the format's
// terminal, fails (with its message) or writes no image, or when `path` cannot be written.
void draw_with_gnuplot(const std::string& path, const std::function<void(GnuplotCanvas& canvas)>& draw);

}  // namespace aegis
