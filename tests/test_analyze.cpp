// Sweep analysis (certify/analyze.h): certified accuracy, ACR and abstention on a hand-made
// file checked against numbers worked out by hand, shards merged back into the unsharded
// result, grouping by σ, errors for conflicting or malformed files, the curves as drawn (ending
// where they reach zero), the best-over-σ envelope, the words on the plot, and the gnuplot plot
// in each format.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "certify/analyze.h"
#include "runtime/error.h"
#include "support/testing.h"

namespace aegis::certify {
namespace {

using testing::expect_error;
using testing::make_temp_dir;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// 8 inputs: 5 correct (radii 0.9, 0.3, 0.25, 1.5, 0), 1 wrong with a radius, 2 abstentions.
const char* const kHandMade =
    "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
    "0\t1\t1\t0.9\t1\t0:00:01.5\n"
    "1\t2\t2\t0.3\t1\t0:00:01.5\n"
    "2\t3\t-1\t0.0\t0\t0:00:01.5\n"
    "3\t4\t5\t0.7\t0\t0:00:01.5\n"
    "4\t0\t0\t0.25\t1\t0:00:01.5\n"
    "5\t1\t1\t1.5\t1\t0:00:01.5\n"
    "6\t2\t-1\t0.0\t0\t0:00:01.5\n"
    "7\t3\t3\t0.0\t1\t0:00:01.5\n";

SweepSettings settings_for(double sigma, Shard shard = {}) {
  SweepSettings s;
  s.sigma = sigma;
  s.n0 = 10;
  s.n = 100;
  s.model = "m";
  s.model_fingerprint = "fnv1a64:00000000000000aa";
  s.data = "digits";
  s.shard = shard;
  return s;
}

// Certificates that depend on idx alone, as real ones do for a fixed model and seed.
std::string fake_sweep(const std::string& path, double sigma, Shard shard) {
  SweepFile file(path, settings_for(sigma, shard), OpenMode::Create);
  std::vector<SweepInput> inputs;
  for (std::int64_t i : select_inputs(200, 1, 0, shard)) inputs.push_back({i, i % 10});
  run_sweep(file, inputs, 3, [sigma](const std::vector<std::int64_t>& idx) {
    std::vector<Certificate> out(idx.size());
    for (std::size_t k = 0; k < idx.size(); ++k) {
      if (idx[k] % 9 == 4) continue;  // abstain
      out[k].prediction = idx[k] % 6 == 0 ? (idx[k] + 3) % 10 : idx[k] % 10;
      out[k].radius = sigma * static_cast<double>(idx[k] % 17) / 8.0;
    }
    return out;
  });
  return path;
}

TEST(Analyze, HandMadeFileGivesHandComputedNumbers) {
  const std::string dir = make_temp_dir("analyze_hand");
  const std::string path = dir + "/cohen.tsv";
  write_text(path, kHandMade);
  AnalyzeOptions o;
  o.radii = {1.0, 0.0, 0.5, 0.25, 2.0, 0.5};  // sorted and deduplicated
  const Analysis a = analyze_sweeps({path}, o);
  EXPECT_EQ(a.radii, (std::vector<double>{0.0, 0.25, 0.5, 1.0, 2.0}));
  ASSERT_EQ(a.curves.size(), 1u);
  const SweepCurve& c = a.curves[0];
  EXPECT_TRUE(std::isnan(c.sigma));  // no sidecar, no --sigma
  EXPECT_EQ(c.label, "cohen.tsv");
  ASSERT_EQ(c.rows.size(), 8u);
  // Certified at r: correct and radius ≥ r. The wrong row with radius 0.7 never counts.
  EXPECT_EQ(c.certified_accuracy, (std::vector<double>{5.0 / 8, 4.0 / 8, 2.0 / 8, 1.0 / 8, 0.0}));
  EXPECT_DOUBLE_EQ(c.acr, (0.9 + 0.3 + 0.25 + 1.5 + 0.0) / 8);
  EXPECT_DOUBLE_EQ(c.abstention_rate, 2.0 / 8);
  EXPECT_DOUBLE_EQ(c.clean_accuracy, 5.0 / 8);
  EXPECT_DOUBLE_EQ(c.max_radius, 1.5);
  // Default radii: 0.25 steps up to the largest certified radius.
  const Analysis d = analyze_sweeps({path}, {});
  EXPECT_EQ(d.radii, (std::vector<double>{0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5}));
  AnalyzeOptions with_sigma;
  with_sigma.sigma = 0.5;
  with_sigma.radii = {0.0, 0.5};
  const std::string table = markdown_table(analyze_sweeps({path}, with_sigma));
  EXPECT_EQ(table,
            "| σ | inputs | r = 0 | r = 0.5 | ACR | abstain |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: |\n"
            "| 0.5 | 8 | 0.625 | 0.250 | 0.369 | 0.250 |\n");
}

TEST(Analyze, DefaultRadiiStayReadable) {
  EXPECT_EQ(default_radii(0.0), (std::vector<double>{0.0}));
  EXPECT_EQ(default_radii(0.6), (std::vector<double>{0.0, 0.25, 0.5}));
  const std::vector<double> wide = default_radii(100.0);
  EXPECT_EQ(wide.size(), 26u);  // step 4 (0.25 doubled until ≤ 41 radii)
  EXPECT_DOUBLE_EQ(wide.back(), 100.0);
}

TEST(Analyze, ShardsMergeIntoTheUnshardedResult) {
  const std::string dir = make_temp_dir("analyze_shards");
  const std::string whole = fake_sweep(dir + "/whole.tsv", 0.25, {});
  std::vector<std::string> shards;
  for (std::int64_t i = 0; i < 3; ++i)
    shards.push_back(fake_sweep(dir + "/part" + std::to_string(i) + ".tsv", 0.25, {i, 3}));
  const Analysis a = analyze_sweeps({whole}, {});
  const Analysis b = analyze_sweeps({shards[2], shards[0], shards[1], shards[0]}, {});  // a repeat is harmless
  ASSERT_EQ(b.curves.size(), 1u);
  EXPECT_TRUE(b.warnings.empty());
  EXPECT_EQ(a.radii, b.radii);
  EXPECT_EQ(a.curves[0].certified_accuracy, b.curves[0].certified_accuracy);
  EXPECT_DOUBLE_EQ(a.curves[0].acr, b.curves[0].acr);
  EXPECT_DOUBLE_EQ(a.curves[0].abstention_rate, b.curves[0].abstention_rate);
  ASSERT_EQ(b.curves[0].rows.size(), 200u);
  for (std::size_t i = 0; i < 200; ++i) EXPECT_TRUE(same_result(a.curves[0].rows[i], b.curves[0].rows[i])) << i;
  EXPECT_EQ(markdown_table(a), markdown_table(b));
  EXPECT_GT(a.curves[0].acr, 0.0);
  // A missing shard is reported.
  const Analysis partial = analyze_sweeps({shards[0], shards[2]}, {});
  ASSERT_EQ(partial.warnings.size(), 1u);
  EXPECT_NE(partial.warnings[0].find("0, 2 of 3"), std::string::npos) << partial.warnings[0];
  // The same idx with another result in two files is an error naming both.
  const std::string forged = dir + "/forged.tsv";
  std::filesystem::copy_file(shards[1], forged);
  std::filesystem::copy_file(settings_path(shards[1]), settings_path(forged));
  std::ifstream in(forged);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  // idx 1 (in shard 1 of 3): label 1, predict 1, radius 0.25·1/8; forge another radius.
  const std::string row = "\n1\t1\t1\t0.03125\t1\t";
  const std::size_t at = text.find(row);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, row.size(), "\n1\t1\t1\t0.5\t1\t");
  write_text(forged, text);
  expect_error<IoError>(
      [&] {
        analyze_sweeps({shards[1], forged}, {});
      },
      "idx 1 is in " + shards[1] + " and " + forged, "different results");
}

TEST(Analyze, CurvesAreGroupedBySigma) {
  const std::string dir = make_temp_dir("analyze_sigma");
  const std::string s50 = fake_sweep(dir + "/s50.tsv", 0.5, {});
  const std::string s25 = fake_sweep(dir + "/s25.tsv", 0.25, {});
  const std::string plain = dir + "/plain.tsv";
  write_text(plain, kHandMade);
  const Analysis a = analyze_sweeps({plain, s50, s25}, {});
  ASSERT_EQ(a.curves.size(), 3u);
  EXPECT_EQ(a.curves[0].label, "0.25");
  EXPECT_EQ(a.curves[1].label, "0.5");
  EXPECT_EQ(a.curves[2].label, "plain.tsv");  // unknown σ last
  // Radii scale with σ in the fake, so the σ = 0.5 curve certifies larger radii.
  EXPECT_DOUBLE_EQ(a.curves[1].max_radius, 2 * a.curves[0].max_radius);
  // Two sweeps of one σ with other settings (another model) stay apart, labelled by file.
  SweepSettings other = settings_for(0.25);
  other.model_fingerprint = "fnv1a64:00000000000000bb";
  write_text(dir + "/other.tsv", kHandMade);
  write_settings(dir + "/other.tsv", other);
  AnalyzeOptions override_sigma;
  override_sigma.sigma = 1.0;
  const Analysis o = analyze_sweeps({s25}, override_sigma);
  EXPECT_EQ(o.curves[0].label, "1");
  ASSERT_EQ(o.warnings.size(), 1u);
  EXPECT_NE(o.warnings[0].find("records sigma 0.25; --sigma 1 overrides it"), std::string::npos) << o.warnings[0];
  const Analysis b = analyze_sweeps({s25, dir + "/other.tsv"}, {});
  ASSERT_EQ(b.curves.size(), 2u);
  EXPECT_EQ(b.curves[0].label, "0.25 (s25.tsv)");
  EXPECT_EQ(b.curves[1].label, "0.25 (other.tsv)");
}

TEST(Analyze, BadInputIsRejected) {
  const std::string dir = make_temp_dir("analyze_bad");
  const std::string path = dir + "/a.tsv";
  write_text(path, kHandMade);
  AnalyzeOptions neg;
  neg.radii = {0.0, -0.5};
  expect_error<InvalidArgument>([&] { analyze_sweeps({path}, neg); }, "radius -0.5", "≥ 0");
  AnalyzeOptions zero_sigma;
  zero_sigma.sigma = 0.0;
  expect_error<InvalidArgument>([&] { analyze_sweeps({path}, zero_sigma); }, "sigma 0", "> 0");
  expect_error<InvalidArgument>([&] { analyze_sweeps({}, {}); }, "no sweep files", "");
  write_text(path, std::string(kHandMade) + "8\t1\t1\tfar\t1\t0:00:01\n");
  expect_error<IoError>([&] { analyze_sweeps({path}, {}); }, path + ":10", "radius 'far'");
  expect_error<IoError>([&] { analyze_sweeps({dir + "/missing.tsv"}, {}); }, dir + "/missing.tsv", "cannot open");
}

// The value the drawn curve shows at r, for r at no drop: the level of the last corner before r;
// nothing (NaN) past the curve's end.
double drawn_at(const std::vector<CurvePoint>& points, double r) {
  if (r > points.back().radius) return std::nan("");
  double v = points.front().accuracy;
  for (const CurvePoint& p : points)
    if (p.radius < r) v = p.accuracy;
  return v;
}

TEST(Analyze, CurvesStopWhereTheirAccuracyReachesZero) {
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

TEST(Analyze, EnvelopeIsThePointwiseMaxOverSigma) {
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

TEST(Analyze, PlotTextCarriesTheSettings) {
  const std::string dir = make_temp_dir("analyze_text");
  const std::string s25 = fake_sweep(dir + "/s25.tsv", 0.25, {}), s50 = fake_sweep(dir + "/s50.tsv", 0.5, {});
  const PlotText same = plot_text(analyze_sweeps({s50, s25}, {}));
  EXPECT_EQ(same.title, "model m, digits, 200 inputs, n = 100, α = 0.001");
  EXPECT_EQ(same.curve_titles, (std::vector<std::string>{"σ = 0.25", "σ = 0.5"}));
  EXPECT_EQ(same.envelope_title, "best over σ");
  // A setting that differs moves into the legend; the model is named by its file, the data
  // by its kind without the directory; bytes other than printable ASCII become '?'.
  SweepSettings other = settings_for(1.0);
  other.n = 1000;
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

TEST(Analyze, PlotFormatFollowsTheExtension) {
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

std::string head_of(const std::string& path, std::size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string head(bytes, '\0');
  in.read(head.data(), static_cast<std::streamsize>(bytes));
  head.resize(static_cast<std::size_t>(in.gcount()));
  return head;
}

TEST(Analyze, EachFormatGivesAFileOfItsType) {
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

TEST(Analyze, PlotIsDrawnByGnuplot) {
  const std::string dir = make_temp_dir("analyze_plot");
  const Analysis a = analyze_sweeps({fake_sweep(dir + "/a.tsv", 0.25, {}), fake_sweep(dir + "/b.tsv", 0.5, {})}, {});
  const std::string png = dir + "/curve's.png";  // a quote survives gnuplot's quoting
  const char* path_env = std::getenv("PATH");
  const std::string saved = path_env ? path_env : "";
  setenv("PATH", dir.c_str(), 1);  // no gnuplot here
  expect_error<IoError>([&] { plot_certified_accuracy(a, png); }, png, "gnuplot-nox");
  setenv("PATH", saved.c_str(), 1);
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot (gnuplot-nox) is not installed";
  plot_certified_accuracy(a, png);
  std::ifstream in(png, std::ios::binary);
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  EXPECT_EQ(magic, "\x89PNG\r\n\x1a\n");
  EXPECT_GT(std::filesystem::file_size(png), 2000u);
}

// File names are the user's: newlines, quotes, backslashes, ';' or bytes of no encoding in a
// sweep's name or in the image's path must not end a string in the gnuplot script and run
// `system(...)`.
TEST(Analyze, HostileNamesNeverRunGnuplotCommands) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot (gnuplot-nox) is not installed";
  const std::string dir = make_temp_dir("analyze_hostile");
  const std::string pwned = dir + "/pwned";
  const std::vector<std::string> names = {
      "a'\nsystem(\"touch pwned\")\n#.tsv",
      "b\"; system(\"touch pwned\"); \".tsv",
      "c\\'\nsystem('touch pwned')\n'.tsv",
      "d\xff\xfe\x01;`touch pwned`.tsv",
  };
  std::vector<std::string> files;
  for (const std::string& name : names) {
    files.push_back(dir + "/" + name);
    write_text(files.back(), kHandMade);
  }
  const Analysis a = analyze_sweeps(files, {});
  ASSERT_EQ(a.curves.size(), names.size());
  // The image's directory holds the same kind of text, slashes included.
  const std::string png_dir = dir + "/p'\n system(\"touch " + pwned + "\") \"\n#";
  std::filesystem::create_directories(png_dir);
  const std::string png = png_dir + "/out'\n.png";
  // gnuplot's relative `touch pwned` would land in its working directory: make it `dir`.
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir);
  plot_certified_accuracy(a, png);
  std::filesystem::current_path(cwd);
  EXPECT_FALSE(std::filesystem::exists(pwned)) << "a name ran a gnuplot command";
  std::ifstream in(png, std::ios::binary);
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  EXPECT_EQ(magic, "\x89PNG\r\n\x1a\n");
}

// The settings sidecar is text too (the model path, the data spec) and reaches the plot's title:
// it must not run gnuplot commands either.
TEST(Analyze, HostileSettingsNeverRunGnuplotCommands) {
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
