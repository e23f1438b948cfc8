// Tests of certify::run_verify and `aegis verify`'s input selection and per-example file: the
// examples are those certify::select_inputs chooses (--skip, --max, --shard), shards partition a
// run and together give its rows, each row agrees with certify::verify on that example, the file
// replaces its path whole and leaves no temporary file, and bad options are errors naming them.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "certify/verify_run.h"
#include "nn/data/dataset.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::BoundMethod;

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  for (std::string f; std::getline(in, f, '\t');) out.push_back(f);
  return out;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  return names;
}

certify::VerifyRunOptions options(double eps) {
  certify::VerifyRunOptions o;
  o.bound.eps = eps;
  o.batch_size = 1;  // one example per bound computation: rows do not depend on the batch
  return o;
}

TEST(VerifyRun, SelectsLikeCertifyAndWritesOneRowPerExample) {
  const auto& t = testing::trained_digits_mlp();
  const std::string dir = testing::make_temp_dir("aegis_verify_run");
  certify::VerifyRunOptions o = options(0.03);
  o.inputs.skip = 3;
  o.inputs.max = 40;
  o.inputs.shard = certify::parse_shard("1/2");
  o.per_example_path = dir + "/rows.tsv";
  const certify::VerifyRun run = certify::run_verify(*t.model, t.test, o);
  EXPECT_EQ(run.indices, certify::select_inputs(t.test.size(), 3, 40, o.inputs.shard));
  EXPECT_EQ(run.indices, (std::vector<std::int64_t>{3, 9, 15, 21, 27, 33, 39}));
  ASSERT_EQ(run.results.size(), 2u);
  const std::vector<std::string> lines = read_lines(o.per_example_path);
  ASSERT_EQ(lines.size(), run.indices.size() + 1);
  EXPECT_EQ(lines[0], "idx\tlabel\tverified\tmargin_lower\tmargin_ibp\tmargin_crown");
  const std::vector<std::int32_t> labels = t.test.labels.to_vector<std::int32_t>();
  int verified_rows = 0;
  for (std::size_t i = 0; i < run.indices.size(); ++i) {
    SCOPED_TRACE("row " + lines[i + 1]);
    const std::vector<std::string> f = fields(lines[i + 1]);
    ASSERT_EQ(f.size(), 6u);
    const std::int64_t idx = run.indices[i];
    EXPECT_EQ(std::stoll(f[0]), idx);
    EXPECT_EQ(std::stoi(f[1]), labels[static_cast<std::size_t>(idx)]);
    const double lower = std::stod(f[3]), ibp = std::stod(f[4]), crown = std::stod(f[5]);
    EXPECT_EQ(lower, std::max(ibp, crown));
    EXPECT_GE(crown, ibp);  // CROWN's margins are intersected with IBP's
    // The same example alone through certify::verify gives the same verdict and margin.
    const nn::Dataset one = nn::take(t.test, idx, 1);
    const certify::VerifyResult direct = certify::verify(*t.model, one, {Norm::Linf, 0.03, BoundMethod::Linear}, 1);
    EXPECT_EQ(f[2], direct.verified.to_vector<std::int32_t>()[0] ? "1" : "0");
    EXPECT_FLOAT_EQ(static_cast<float>(crown), direct.margin_lower.to_vector<float>()[0]);
    if (f[2] == "1") {
      EXPECT_GT(lower, 0.0);
      ++verified_rows;
    }
  }
  EXPECT_GT(verified_rows, 0);  // a trained mlp at a small radius: not a vacuous check
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"rows.tsv"});  // no temporary file left
}

TEST(VerifyRun, ShardsPartitionTheRunAndTheFileIsReplacedWhole) {
  const auto& t = testing::trained_digits_mlp();
  const std::string dir = testing::make_temp_dir("aegis_verify_shards");
  certify::VerifyRunOptions o = options(0.01);
  o.inputs.skip = 2;
  o.inputs.max = 30;
  o.per_example_path = dir + "/all.tsv";
  // A longer file at the path first: the run must replace it, not write over its beginning.
  {
    std::ofstream junk(o.per_example_path);
    for (int i = 0; i < 1000; ++i) junk << "junk line " << i << "\n";
  }
  certify::run_verify(*t.model, t.test, o);
  const std::vector<std::string> all = read_lines(o.per_example_path);
  ASSERT_EQ(all.size(), 16u);  // header + idx 0, 2, …, 28
  std::vector<std::string> merged;
  for (int i = 0; i < 3; ++i) {
    o.inputs.shard = certify::parse_shard(std::to_string(i) + "/3");
    o.per_example_path = dir + "/shard" + std::to_string(i) + ".tsv";
    certify::run_verify(*t.model, t.test, o);
    const std::vector<std::string> part = read_lines(o.per_example_path);
    ASSERT_GE(part.size(), 1u);
    EXPECT_EQ(part[0], all[0]);
    merged.insert(merged.end(), part.begin() + 1, part.end());
  }
  std::vector<std::string> rows(all.begin() + 1, all.end());
  std::sort(rows.begin(), rows.end());
  std::sort(merged.begin(), merged.end());
  EXPECT_EQ(merged, rows);

  o.per_example_path = dir + "/missing/rows.tsv";
  testing::expect_error<IoError>([&] { certify::run_verify(*t.model, t.test, o); }, "missing/rows.tsv", "per-example");
  o.per_example_path.clear();
  o.inputs.skip = 0;
  testing::expect_error<InvalidArgument>([&] { certify::run_verify(*t.model, t.test, o); }, "skip 0", "≥ 1");
  o.inputs.skip = 1;
  o.methods = {BoundMethod::Linear, BoundMethod::Linear};
  testing::expect_error<InvalidArgument>([&] { certify::run_verify(*t.model, t.test, o); }, "crown", "twice");
}

TEST(VerifyCli, SkipShardAndPerExampleFile) {
  const std::string dir = testing::make_temp_dir("aegis_verify_cli");
  const std::string model = dir + "/mlp.safetensors";
  const testing::CliRun t =
      testing::run_cli("train --data digits --model mlp --epochs 1 --device cpu --quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const std::string base = "verify --model " + model + " --data digits --device cpu --quiet --eps 0.01 ";
  const std::string tsv = dir + "/per_example.tsv";
  const testing::CliRun r = testing::run_cli(base + "--skip 2 --max 20 --shard 0/2 --per-example " + tsv + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["examples"].get<int>(), 5);  // idx 0, 4, 8, 12, 16
  EXPECT_EQ(j["skip"].get<int>(), 2);
  EXPECT_EQ(j["shard"], "0/2");
  EXPECT_EQ(j["per_example"], tsv);
  const std::vector<std::string> lines = read_lines(tsv);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0], "idx\tlabel\tverified\tmargin_lower\tmargin_ibp\tmargin_crown");
  for (std::size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(fields(lines[i])[0], std::to_string(4 * (i - 1)));

  const testing::CliRun ibp = testing::run_cli(base + "--method ibp --max 3 --per-example " + tsv);
  ASSERT_EQ(ibp.status, 0) << ibp.err;
  const std::vector<std::string> ibp_lines = read_lines(tsv);
  ASSERT_EQ(ibp_lines.size(), 4u);
  EXPECT_EQ(ibp_lines[0], "idx\tlabel\tverified\tmargin_lower\tmargin_ibp");
  EXPECT_EQ(files_in(dir).size(), 2u);  // the model and the TSV, no temporary file

  for (const auto& [args, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"--shard 2/2", "shard '2/2'"}, {"--shard x", "shard 'x'"}, {"--skip 0", "--skip: 0 is not in"}}) {
    const testing::CliRun bad = testing::run_cli(base + args);
    EXPECT_EQ(bad.status, 1) << args;
    EXPECT_NE(bad.err.find(fragment), std::string::npos) << args << ": " << bad.err;
  }
}

}  // namespace
}  // namespace aegis
