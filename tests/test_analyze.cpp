// Sweep analysis (certify/analyze.h): certified accuracy, ACR and abstention on a hand-made
// file checked against numbers worked out by hand, shards merged back into the unsharded
// result, grouping by σ, errors for conflicting or malformed files, and the gnuplot plot with
// hostile file names (the rest of the plot: test_analyze_plot.cpp).
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
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

}  // namespace
}  // namespace aegis::certify
