// Summaries of certification sweeps (the TSV files of certify/sweep.h, or Cohen et al.'s own):
//   certified accuracy at radius r (Cohen, Rosenfeld, Kolter 2019, §4): the fraction of inputs
//     whose row is correct with radius ≥ r, (1/N) Σ_i 1[ŷ_i = y_i ∧ R_i ≥ r];
//   average certified radius (Zhai et al. 2020, "MACER", §4): ACR = (1/N) Σ_i R_i · 1[ŷ_i = y_i],
//     counting 0 for wrong and abstaining inputs;
//   abstention rate (1/N) Σ_i 1[ŷ_i = abstain]; clean smoothed accuracy (1/N) Σ_i 1[ŷ_i = y_i]
//     (with CERTIFY rows this is the certified accuracy at r = 0).
// Files are grouped into curves: files whose settings sidecars agree on everything but the shard
// index are shards of one sweep and are merged by idx (an idx in two files with different results
// is an error); files without a sidecar form a curve each unless --sigma names their σ, in which
// case those of the same σ merge. A curve is labelled by its σ.
// The envelope (the best over σ, as results are reported when σ may be chosen per radius, e.g. by
// Cohen et al. 2019) is, at each radius, the largest certified accuracy of any curve:
// max_c (1/N_c) Σ_i 1[ŷ_i = y_i ∧ R_i ≥ r].
// The plot (certified accuracy against radius, one curve per σ, optionally the envelope) is
// drawn by gnuplot (Debian package gnuplot-nox) run as a child process on a generated script and
// data file, as PDF, SVG or PNG.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "certify/sweep.h"
#include "core/gnuplot.h"

namespace aegis::certify {

struct AnalyzeOptions {
  std::vector<double> radii;    // empty: 0, 0.25, 0.5, ... up to the largest radius seen
  std::optional<double> sigma;  // overrides the σ of every file
  bool envelope = false;        // fill Analysis::envelope
};

struct SweepCurve {
  std::string label;                       // "0.25", or the file name when σ is unknown or repeated
  double sigma = 0.0;                      // NaN when unknown
  std::vector<std::string> files;          // in the order given
  std::vector<SweepRow> rows;              // merged, sorted by idx
  std::vector<double> certified_accuracy;  // at Analysis::radii
  double acr = 0.0;
  double abstention_rate = 0.0;
  double clean_accuracy = 0.0;
  double max_radius = 0.0;                // over correct rows
  std::optional<SweepSettings> settings;  // of its first file; none without a sidecar
};

struct Analysis {
  std::vector<double> radii;
  std::vector<SweepCurve> curves;     // by σ, unknown σ last
  std::vector<double> envelope;       // with AnalyzeOptions::envelope: at radii, the max over curves
  std::vector<std::string> warnings;  // e.g. shards missing from a sweep
};

// A sweep already in memory, e.g. the rows `aegis certify` has just written.
struct SweepRows {
  std::string file;
  SweepSettings settings;
  std::vector<SweepRow> rows;
};

double certified_accuracy(const std::vector<SweepRow>& rows, double radius);
double average_certified_radius(const std::vector<SweepRow>& rows);
// 0, 0.25, 0.5, ... ≤ max_radius; the step doubles until there are at most 41 radii.
std::vector<double> default_radii(double max_radius);

// Reads, groups, merges and summarizes the files. IoError naming file:line for malformed rows;
// InvalidArgument for bad radii (negative, NaN) or σ (≤ 0, NaN).
Analysis analyze_sweeps(const std::vector<std::string>& paths, const AnalyzeOptions& options);

// The same summary for sweeps in memory: one curve per entry, σ from its settings (or
// options.sigma), radii as in analyze_sweeps.
Analysis analyze_rows(const std::vector<SweepRows>& sweeps, const AnalyzeOptions& options);

// Rows: curves (and "best" when the envelope was asked for); columns: inputs, certified accuracy
// at each radius, ACR, abstention rate.
std::string markdown_table(const Analysis& analysis);
// `aegis analyze --json`'s object: radii, one entry per curve (label, σ or null, files, inputs,
// certified accuracy at the radii, ACR, abstention, clean accuracy, largest radius), the
// warnings, and the envelope when it was asked for.
nlohmann::json to_json(const Analysis& analysis, bool envelope);
// A number as the table, labels and plot print it (printf %g: "0.25", "1e-05").
std::string format_g(double v);

// ---- the plot --------------------------------------------------------------------------------
// Certified accuracy is a non-increasing step function of the radius: it drops at each radius of
// a correct row and is 0 past the largest. A curve as drawn: (0, A(0)), then for each drop at r
// the points (r, A(r)) and (r, A(r⁺)), joined by straight lines; it ends at (max radius, 0), so a
// curve stops where its accuracy reaches zero instead of running along the axis. One point
// (0, 0) when no row is certified.
struct CurvePoint {
  double radius = 0.0;
  double accuracy = 0.0;
};
std::vector<CurvePoint> accuracy_steps(const SweepCurve& curve);
// The envelope drawn the same way: at every radius the max of the curves' certified accuracy.
std::vector<CurvePoint> envelope_steps(const std::vector<SweepCurve>& curves);

// The words on the plot. Settings every curve shares (model file name, dataset, number of inputs,
// n, α) go into the title; those that differ go into each curve's legend entry after its σ. Text
// taken from files (names, the model path, the data spec) keeps printable ASCII only, so no
// control character reaches gnuplot.
struct PlotText {
  std::string title;
  std::vector<std::string> curve_titles;  // one per curve
  std::string envelope_title;
};
PlotText plot_text(const Analysis& analysis);

// The plot formats and plot_format (by the extension) are core/gnuplot.h's.
using aegis::PlotFormat;
using aegis::plot_format;

struct PlotOptions {
  bool envelope = false;  // draw the best-over-σ curve in bold
};
// Draws certified accuracy against radius, one curve per σ, with gnuplot, in the format that
// plot_format gives for the path. IoError when gnuplot is not on PATH (naming the package
// gnuplot-nox), lacks the format's terminal, or fails (with its message).
void plot_certified_accuracy(const Analysis& analysis, const std::string& path, const PlotOptions& options = {});

}  // namespace aegis::certify
