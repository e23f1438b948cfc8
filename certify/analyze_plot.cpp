// The certified-accuracy plot of certify/analyze.h: the curves' step points, the words on the
// plot, and the gnuplot script that draws them (run by core/gnuplot.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "certify/analyze.h"
#include "core/error.h"
#include "core/gnuplot.h"

namespace aegis::certify {

namespace {

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
      f[0] = "model " + printable_ascii(std::filesystem::path(c.settings->model).filename().string());
      f[1] = printable_ascii(c.settings->data.substr(0, c.settings->data.find(':')));  // the name, not its directory
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
    std::string title = std::isnan(c.sigma) ? printable_ascii(c.label) : "σ = " + printable_ascii(c.label);
    for (std::size_t k = 0; k < kFields; ++k)
      if (!shared[k] && !fields[i][k].empty()) title += ", " + fields[i][k];
    t.curve_titles.push_back(title);
  }
  t.envelope_title = "best over σ";
  return t;
}

void plot_certified_accuracy(const Analysis& a, const std::string& path, const PlotOptions& options) {
  plot_format(path);  // a wrong extension is named before anything else
  AEGIS_CHECK(!a.curves.empty(), "nothing to plot");
  double x_max = a.radii.empty() ? 0.0 : a.radii.back();
  for (const SweepCurve& c : a.curves) x_max = std::max(x_max, c.max_radius);
  x_max = x_max > 0 ? x_max * 1.05 : 1.0;
  draw_with_gnuplot(path, [&](GnuplotCanvas& canvas) {
    const std::string data = canvas.dir + "/curves.dat";
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
    std::ostream& gp = canvas.script;
    if (!text.title.empty()) gp << "set title " << gnuplot_quote(text.title) << "\n";
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
      gp << gnuplot_quote(data) << " index " << a.curves.size()
         << " using 1:2 with lines lw 8 lc rgb '#70000000' title " << gnuplot_quote(text.envelope_title)
         << ", \\\n     ";
    for (std::size_t i = 0; i < a.curves.size(); ++i)
      gp << (i ? ", \\\n     " : "") << gnuplot_quote(data) << " index " << i << " using 1:2 with lines lw 2 lc rgb '"
         << kColours[i % colours] << "' title " << gnuplot_quote(text.curve_titles[i]);
    gp << "\n";
  });
}

}  // namespace aegis::certify
