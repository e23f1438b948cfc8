// The ROC curves of a membership audit on log-log axes, as Carlini et al. 2022 (Fig. 1 onwards)
// draw them so that the low-FPR regime is visible, with chance (TPR = FPR) dashed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/gnuplot.h"
#include "privacy/audit_mia.h"

namespace aegis::privacy {

void plot_roc_curves(const std::vector<std::pair<std::string, RocCurve>>& curves, const std::string& title,
                     const std::string& path) {
  plot_format(path);
  AEGIS_CHECK(!curves.empty(), "no ROC curve to plot");
  // The axes start one decade below the smallest nonzero rate the counts allow (1/negatives,
  // 1/positives); a log axis cannot show 0, so points with FPR or TPR 0 are left out.
  std::int64_t most = 1;
  for (const auto& c : curves) most = std::max({most, c.second.negatives, c.second.positives});
  const double low = std::pow(10.0, std::floor(std::log10(1.0 / static_cast<double>(most))));
  const char* const colours[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442"};
  draw_with_gnuplot(path, [&](GnuplotCanvas& canvas) {
    const std::string data = canvas.dir + "/roc.dat";
    {
      std::ofstream out(data);
      char line[64];
      for (const auto& c : curves) {
        for (const RocPoint& p : c.second.points) {
          if (p.fpr <= 0.0 || p.tpr <= 0.0) continue;
          std::snprintf(line, sizeof line, "%.9g %.9g\n", p.fpr, p.tpr);
          out << line;
        }
        out << "\n\n";
      }
      AEGIS_CHECK_AS(IoError, out.good(), data << ": write failed");
    }
    std::ostream& gp = canvas.script;
    if (!title.empty()) gp << "set title " << gnuplot_quote(printable_ascii(title)) << "\n";
    gp << "set logscale xy\nset xlabel 'false positive rate'\nset ylabel 'true positive rate'\n"
       << "set xrange [" << low << ":1]\nset yrange [" << low << ":1]\nset format xy '%g'\n"
       << "set border 3\nset tics nomirror\nset grid lc rgb '#b8b8b8'\n"
       << "set key bottom right opaque box lc rgb '#d0d0d0'\nplot x with lines dt 2 lc rgb '#808080' title 'chance'";
    for (std::size_t i = 0; i < curves.size(); ++i) {
      char auc[32];
      std::snprintf(auc, sizeof auc, " (AUC %.3f)", curves[i].second.auc);
      gp << ", \\\n     " << gnuplot_quote(data) << " index " << i << " using 1:2 with lines lw 2 lc rgb '"
         << colours[i % (sizeof colours / sizeof colours[0])] << "' title "
         << gnuplot_quote(printable_ascii(curves[i].first) + auc);
    }
    gp << "\n";
  });
}

}  // namespace aegis::privacy
