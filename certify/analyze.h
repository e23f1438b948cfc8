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
// The plot (certified accuracy against radius, one curve per σ) is drawn by gnuplot (Debian
// package gnuplot-nox) run as a child process on a generated script and data file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "certify/sweep.h"

namespace aegis::certify {

struct AnalyzeOptions {
  std::vector<double> radii;    // empty: 0, 0.25, 0.5, ... up to the largest radius seen
  std::optional<double> sigma;  // overrides the σ of every file
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
  double max_radius = 0.0;  // over correct rows
};

struct Analysis {
  std::vector<double> radii;
  std::vector<SweepCurve> curves;     // by σ, unknown σ last
  std::vector<std::string> warnings;  // e.g. shards missing from a sweep
};

double certified_accuracy(const std::vector<SweepRow>& rows, double radius);
double average_certified_radius(const std::vector<SweepRow>& rows);
// 0, 0.25, 0.5, ... ≤ max_radius; the step doubles until there are at most 41 radii.
std::vector<double> default_radii(double max_radius);

// Reads, groups, merges and summarizes the files. IoError naming file:line for malformed rows;
// InvalidArgument for bad radii (negative, NaN) or σ (≤ 0, NaN).
Analysis analyze_sweeps(const std::vector<std::string>& paths, const AnalyzeOptions& options);

// Rows: curves; columns: inputs, certified accuracy at each radius, ACR, abstention rate.
std::string markdown_table(const Analysis& analysis);

// Writes a PNG of certified accuracy against radius, one curve per σ, with gnuplot. IoError when
// gnuplot is not on PATH (naming the package gnuplot-nox) or fails (with its message).
void plot_certified_accuracy(const Analysis& analysis, const std::string& png_path);

}  // namespace aegis::certify
