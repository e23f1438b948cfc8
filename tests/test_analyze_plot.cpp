// The certified-accuracy plot (certify/analyze.h): the curves as drawn, ending where they reach
// zero; the best-over-σ envelope as the pointwise max; the settings in the title and legend; the
// format chosen by the extension, each giving a file of its type; and settings files whose text
// tries to run gnuplot commands.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "certify/analyze.h"
#include "core/error.h"
#include "support/sweep_fixtures.h"
#include "support/testing.h"

namespace aegis::certify {
namespace {

using fixtures::fake_sweep;
using fixtures::kHandMade;
using fixtures::settings_for;
using fixtures::write_text;
using testing::expect_error;
using testing::make_temp_dir;

// The value the drawn curve shows at r, for r at no drop: the level of the last corner before r;
// nothing (NaN) past the curve's end.
double drawn_at(const std::vector<CurvePoint>& points, double r) {
  if (r > points.back().radius) return std::nan("");
  double v = points.front().accuracy;
  for (const CurvePoint& p : points)
    if (p.radius < r) v = p.accuracy;
  return v;
}

TEST(AnalyzePlot, CurvesStopWhereTheirAccuracyReachesZero) {
  const std::string dir = make_temp_dir("analyze_steps");
  write_text(dir + "/hand.tsv", kHandMade);
  const Analysis a = analyze_sweeps({dir + "/hand.tsv"}, {});
  // Correct rows have radii 0, 0.25, 0.3, 0.9, 1.5 of 8 inputs: a drop of 1/8 at each.
  const std::vector<CurvePoint> steps = accuracy_steps(a.curves[0]);
  const std::vector<std::pair<double, double>> expected = {
      {0.0, 5.0 / 8}, {0.0, 4.0 / 8}, {0.25, 4.0 / 8}, {0.25, 3.0 / 8}, {0.3, 3.0 / 8},
      {0.3, 2.0 / 8}, {0.9, 2.0 / 8}, {0.9, 1.0 / 8},  {1.5, 1.0 / 8},  {1.5, 0.0}};
  ASSERT_EQ(steps.size(), expected.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].radius, expected[i].first) << i;
    EXPECT_EQ(steps[i].accuracy, expected[i].second) << i;
  }
  // On a larger sweep: the drawn curve is certified_accuracy wherever it is drawn, it ends at
  // the largest certified radius, and it touches zero only at its last point.
  const Analysis b = analyze_sweeps({fake_sweep(dir + "/fake.tsv", 0.5, {})}, {});
  const SweepCurve& c = b.curves[0];
  const std::vector<CurvePoint> fake = accuracy_steps(c);
  EXPECT_EQ(fake.back().radius, c.max_radius);
  EXPECT_EQ(fake.back().accuracy, 0.0);
  for (std::size_t i = 0; i + 1 < fake.size(); ++i) EXPECT_GT(fake[i].accuracy, 0.0) << i;
  // The fake's radii are multiples of σ/8; test between them.
  for (double r = 0.03125; r < c.max_radius; r += 0.0625)
    EXPECT_EQ(drawn_at(fake, r), certified_accuracy(c.rows, r)) << r;
  EXPECT_TRUE(std::isnan(drawn_at(fake, c.max_radius + 0.01)));
  // Nothing certified: one point at the origin.
  write_text(dir + "/none.tsv", "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t-1\t0\t0\t0:00:01\n");
  const std::vector<CurvePoint> none = accuracy_steps(analyze_sweeps({dir + "/none.tsv"}, {}).curves[0]);
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].radius, 0.0);
  EXPECT_EQ(none[0].accuracy, 0.0);
}

// Two σ whose curves cross, as in practice: the small σ is more accurate at small radii, the
// large σ certifies larger radii.
struct CrossingSweeps {
  std::string small_sigma, large_sigma;
};
CrossingSweeps crossing_sweeps(const std::string& dir) {
  const std::string header = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n";
  CrossingSweeps s{dir + "/s25.tsv", dir + "/s100.tsv"};
  // σ = 0.25: 4 of 4 correct, radii 0.2, 0.4, 0.6, 0.8.
  const std::string small_rows =
      "0\t1\t1\t0.2\t1\t0:00:01\n1\t1\t1\t0.4\t1\t0:00:01\n2\t1\t1\t0.6\t1\t0:00:01\n3\t1\t1\t0.8\t1\t0:00:01\n";
  write_text(s.small_sigma, header + small_rows);
  // σ = 1: 2 of 4 correct, radii 0.5 and 3.
  const std::string large_rows =
      "0\t1\t1\t3\t1\t0:00:01\n1\t1\t-1\t0\t0\t0:00:01\n2\t1\t2\t0.1\t0\t0:00:01\n3\t1\t1\t0.5\t1\t0:00:01\n";
  write_text(s.large_sigma, header + large_rows);
  write_settings(s.small_sigma, settings_for(0.25));
  write_settings(s.large_sigma, settings_for(1.0));
  return s;
}

TEST(AnalyzePlot, EnvelopeIsThePointwiseMaxOverSigma) {
  const std::string dir = make_temp_dir("analyze_envelope");
  const CrossingSweeps s = crossing_sweeps(dir);
  AnalyzeOptions o;
  o.envelope = true;
  o.radii = {0.0, 0.3, 0.5, 0.7, 1.0, 3.0, 3.5};
  const Analysis a = analyze_sweeps({s.large_sigma, s.small_sigma}, o);
  ASSERT_EQ(a.curves.size(), 2u);
  EXPECT_EQ(a.curves[0].certified_accuracy, (std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0}));
  EXPECT_EQ(a.curves[1].certified_accuracy, (std::vector<double>{0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.0}));
  EXPECT_EQ(a.envelope, (std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.25, 0.25, 0.0}));
  EXPECT_TRUE(a.warnings.empty());  // both curves cover inputs 0-3
  EXPECT_NE(markdown_table(a).find("| best |  | 1.000 | 0.750 | 0.500 | 0.250 | 0.250 | 0.250 | 0.000 |"),
            std::string::npos)
      << markdown_table(a);
  EXPECT_TRUE(analyze_sweeps({s.small_sigma}, {}).envelope.empty());  // only when asked for
  // Drawn: the max of the two step functions at every radius, ending at the largest radius.
  const std::vector<CurvePoint> env = envelope_steps(a.curves);
  EXPECT_EQ(env.front().radius, 0.0);
  EXPECT_EQ(env.front().accuracy, 1.0);
  EXPECT_EQ(env.back().radius, 3.0);
  EXPECT_EQ(env.back().accuracy, 0.0);
  for (double r = 0.05; r < 3.0; r += 0.1) {
    const double best = std::max(certified_accuracy(a.curves[0].rows, r), certified_accuracy(a.curves[1].rows, r));
    EXPECT_EQ(drawn_at(env, r), best) << r;
  }
  // With one curve the envelope is that curve.
  const std::vector<CurvePoint> one = envelope_steps({a.curves[0]});
  const std::vector<CurvePoint> own = accuracy_steps(a.curves[0]);
  ASSERT_EQ(one.size(), own.size());
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].radius, own[i].radius);
    EXPECT_EQ(one[i].accuracy, own[i].accuracy);
  }
  // Curves over different inputs make an envelope of no single test set: a warning says so.
  const Analysis mixed = analyze_sweeps({s.small_sigma, fake_sweep(dir + "/f.tsv", 0.5, {})}, o);
  ASSERT_EQ(mixed.warnings.size(), 1u);
  EXPECT_NE(mixed.warnings[0].find("different inputs (0.25: 4, 0.5: 200)"), std::string::npos) << mixed.warnings[0];
}

TEST(AnalyzePlot, PlotTextCarriesTheSettings) {
  const std::string dir = make_temp_dir("analyze_text");
  const std::string s25 = fake_sweep(dir + "/s25.tsv", 0.25, {}), s50 = fake_sweep(dir + "/s50.tsv", 0.5, {});
  const PlotText same = plot_text(analyze_sweeps({s50, s25}, {}));
  EXPECT_EQ(same.title, "model m, digits, 200 inputs, n = 100, α = 0.001");
  EXPECT_EQ(same.curve_titles, (std::vector<std::string>{"σ = 0.25", "σ = 0.5"}));
  EXPECT_EQ(same.envelope_title, "best over σ");
  // A setting that differs moves into the legend; the model is named by its file, the data
  // by its kind without the directory; bytes other than printable ASCII become '?'.
  SweepSettings other = settings_for(1.0);
  other.smoothing.n = 1000;
  other.model = "/models/n\xc3\xa9w\n.safetensors";
  other.data = "fashion-mnist:/data/fm";
  const std::string s100 = dir + "/s100.tsv";
  std::filesystem::copy_file(s25, s100);
  write_settings(s100, other);
  const std::string plain = dir + "/plain\x01.tsv";
  write_text(plain, kHandMade);
  const PlotText mixed = plot_text(analyze_sweeps({s100, s25, plain}, {}));
  EXPECT_EQ(mixed.title, "");  // the plain file has no settings and 8 inputs
  EXPECT_EQ(mixed.curve_titles,
            (std::vector<std::string>{"σ = 0.25, model m, digits, 200 inputs, n = 100, α = 0.001",
                                      "σ = 1, model n??w?.safetensors, fashion-mnist, 200 inputs, n = 1000, α = 0.001",
                                      "plain?.tsv, 8 inputs"}));
  const PlotText two = plot_text(analyze_sweeps({s100, s25}, {}));
  EXPECT_EQ(two.title, "200 inputs, α = 0.001");
  EXPECT_EQ(two.curve_titles, (std::vector<std::string>{"σ = 0.25, model m, digits, n = 100",
                                                        "σ = 1, model n??w?.safetensors, fashion-mnist, n = 1000"}));
}

TEST(AnalyzePlot, PlotFormatFollowsTheExtension) {
  EXPECT_EQ(plot_format("a/b.pdf"), PlotFormat::Pdf);
  EXPECT_EQ(plot_format("b.PDF"), PlotFormat::Pdf);
  EXPECT_EQ(plot_format("b.svg"), PlotFormat::Svg);
  EXPECT_EQ(plot_format("b.Png"), PlotFormat::Png);
  expect_error<InvalidArgument>([] { plot_format("out.jpg"); }, "out.jpg", "must be .pdf, .svg or .png, not '.jpg'");
  expect_error<InvalidArgument>([] { plot_format("png"); }, "png", "must be .pdf, .svg or .png, not ''");
  // Refused before gnuplot is looked for or anything is written.
  const std::string dir = make_temp_dir("analyze_format");
  write_text(dir + "/a.tsv", kHandMade);
  const Analysis a = analyze_sweeps({dir + "/a.tsv"}, {});
  expect_error<InvalidArgument>([&] { plot_certified_accuracy(a, dir + "/out.eps"); }, dir + "/out.eps", ".eps");
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.eps"));
}

// A gnuplot built without the format's terminal: the error names the terminal and the formats
// that gnuplot-nox draws, not only gnuplot's own message.
TEST(AnalyzePlot, AMissingTerminalIsNamed) {
  const std::string dir = make_temp_dir("analyze_no_terminal");
  write_text(dir + "/gnuplot",
             "#!/bin/sh\necho 'line 1: unknown or ambiguous terminal type; type just \"set terminal\" for a list' >&2\n"
             "exit 1\n");
  std::filesystem::permissions(dir + "/gnuplot", std::filesystem::perms::owner_all);
  write_text(dir + "/a.tsv", kHandMade);
  const Analysis a = analyze_sweeps({dir + "/a.tsv"}, {});
  const char* path_env = std::getenv("PATH");
  const std::string saved = path_env ? path_env : "";
  setenv("PATH", dir.c_str(), 1);
  expect_error<IoError>([&] { plot_certified_accuracy(a, dir + "/out.pdf"); }, dir + "/out.pdf",
                        "has no pdfcairo terminal (gnuplot-nox has pdfcairo, svg and pngcairo");
  setenv("PATH", saved.c_str(), 1);
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.pdf"));
}

std::string head_of(const std::string& path, std::size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string head(bytes, '\0');
  in.read(head.data(), static_cast<std::streamsize>(bytes));
  head.resize(static_cast<std::size_t>(in.gcount()));
  return head;
}

TEST(AnalyzePlot, EachFormatGivesAFileOfItsType) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot (gnuplot-nox) is not installed";
  const std::string dir = make_temp_dir("analyze_formats");
  const CrossingSweeps s = crossing_sweeps(dir);
  AnalyzeOptions o;
  o.envelope = true;
  const Analysis a = analyze_sweeps({s.small_sigma, s.large_sigma}, o);
  plot_certified_accuracy(a, dir + "/p.pdf", {true});
  plot_certified_accuracy(a, dir + "/p.svg", {true});
  plot_certified_accuracy(a, dir + "/p.PNG", {true});
  EXPECT_EQ(head_of(dir + "/p.pdf", 5), "%PDF-");
  const std::string svg = head_of(dir + "/p.svg", 4096);
  EXPECT_TRUE(svg.rfind("<?xml", 0) == 0 || svg.rfind("<svg", 0) == 0) << svg.substr(0, 80);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_EQ(head_of(dir + "/p.PNG", 8), "\x89PNG\r\n\x1a\n");
  for (const char* name : {"/p.pdf", "/p.svg", "/p.PNG"}) EXPECT_GT(std::filesystem::file_size(dir + name), 1000u);
}

// The settings sidecar is text too (the model path, the data spec) and reaches the plot's title:
// it must not run gnuplot commands either.
TEST(AnalyzePlot, HostileSettingsNeverRunGnuplotCommands) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot (gnuplot-nox) is not installed";
  const std::string dir = make_temp_dir("analyze_hostile_settings");
  const std::string pwned = dir + "/pwned";
  std::vector<std::string> files;
  const std::vector<std::pair<std::string, std::string>> hostile = {
      {"m'\nsystem(\"touch " + pwned + "\")\n#", "d'\nsystem('touch " + pwned + "')\n'"},
      {"x\\'; system(\"touch " + pwned + "\"); '", "`touch " + pwned + "`"}};
  for (std::size_t i = 0; i < hostile.size(); ++i) {
    files.push_back(dir + "/h" + std::to_string(i) + ".tsv");
    write_text(files.back(), kHandMade);
    SweepSettings s = settings_for(0.25 * static_cast<double>(i + 1));
    s.model = hostile[i].first;
    s.data = hostile[i].second;
    write_settings(files.back(), s);
  }
  for (const auto& names : {std::vector<std::string>{files[0]}, files}) {
    AnalyzeOptions o;
    o.envelope = true;
    const Analysis a = analyze_sweeps(names, o);
    plot_certified_accuracy(a, dir + "/out.svg", {true});
    EXPECT_FALSE(std::filesystem::exists(pwned)) << "a setting ran a gnuplot command";
    EXPECT_GT(std::filesystem::file_size(dir + "/out.svg"), 1000u);
  }
}

}  // namespace
}  // namespace aegis::certify
