// Certification sweep files (certify/sweep.h) with a deterministic fake certifier: the TSV row
// format and its parser, input selection (--skip, --max, --shard), the settings sidecar, and
// resuming after a cut-off last line or an interrupted run with no lost and no repeated rows.
#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>

#include "certify/sweep.h"
#include "core/error.h"
#include "support/testing.h"

namespace aegis::certify {
namespace {

using testing::expect_error;
using testing::make_temp_dir;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The file's rows without the time column, one string per row, in file order.
std::vector<std::string> rows_without_time(const std::string& path) {
  std::vector<std::string> out;
  for (const SweepRow& r : read_sweep_tsv(path, false).rows) {
    SweepRow copy = r;
    copy.seconds = 0;
    out.push_back(format_row(copy));
  }
  return out;
}

SweepSettings small_settings() {
  SweepSettings s;
  s.smoothing.sigma = 0.25;
  s.smoothing.n0 = 20;
  s.smoothing.n = 200;
  s.smoothing.alpha = 0.001;
  s.smoothing.seed = 7;
  s.model = "m.safetensors";
  s.model_fingerprint = "fnv1a64:0000000000000001";
  s.data = "digits";
  s.smoothing.batch = 1000;
  s.device = "cpu";
  return s;
}

std::vector<SweepInput> inputs_for(const std::vector<std::int64_t>& idx) {
  std::vector<SweepInput> in;
  for (std::int64_t i : idx) in.push_back({i, i % 10});
  return in;
}

// A function of idx alone, as a real certificate is for fixed (model, x, seed, n0, n, σ):
// abstains on every 7th input, is wrong on every 5th, radii vary in the 6th significant digit.
Certificate fake_certificate(std::int64_t idx) {
  Certificate c;
  if (idx % 7 == 3) return c;
  c.prediction = idx % 5 == 1 ? (idx + 1) % 10 : idx % 10;
  c.radius = 0.0123457 * static_cast<double>(idx % 13) + 1e-7 * static_cast<double>(idx);
  return c;
}

struct CountingCertifier {
  std::vector<std::int64_t> seen;
  std::int64_t throw_after_chunks = -1;  // simulates a process killed mid-sweep
  std::int64_t chunks = 0;
  ChunkCertifier fn() {
    return [this](const std::vector<std::int64_t>& idx) {
      if (throw_after_chunks >= 0 && chunks >= throw_after_chunks) throw std::runtime_error("killed");
      ++chunks;
      std::vector<Certificate> out;
      for (std::int64_t i : idx) {
        seen.push_back(i);
        out.push_back(fake_certificate(i));
      }
      return out;
    };
  }
};

std::string full_sweep(const std::string& path, const std::vector<SweepInput>& inputs, std::int64_t chunk) {
  SweepFile file(path, small_settings(), OpenMode::Create);
  CountingCertifier c;
  run_sweep(file, inputs, chunk, c.fn());
  return path;
}

TEST(SweepTsv, RowsRoundTripThroughTheParser) {
  SweepRow r;
  r.idx = 120;
  r.label = 3;
  r.predict = 3;
  r.radius = 0.812345678;
  r.correct = true;
  r.seconds = 3723.5;
  const std::string line = format_row(r);
  EXPECT_EQ(line, "120\t3\t3\t0.812346\t1\t1:02:03.500000\n");
  const SweepRow back = parse_row(line.substr(0, line.size() - 1), "x:2");
  EXPECT_TRUE(same_result(r, back));
  EXPECT_DOUBLE_EQ(back.seconds, 3723.5);
  SweepRow abstain;
  abstain.idx = 4;
  abstain.label = 1;
  EXPECT_EQ(format_row(abstain), "4\t1\t-1\t0\t0\t0:00:00.000000\n");
  // Python's str(timedelta) forms that Cohen et al.'s files contain.
  EXPECT_DOUBLE_EQ(parse_row("0\t1\t1\t0.5\t1\t0:00:01", "x").seconds, 1.0);
  EXPECT_DOUBLE_EQ(parse_row("0\t1\t1\t0.5\t1\t1 day, 0:00:01.5", "x").seconds, 86401.5);
  EXPECT_DOUBLE_EQ(parse_row("0\t1\t1\t0.5\t1\t2 days, 1:00:00.000001", "x").seconds, 176400.000001);
  EXPECT_EQ(format_elapsed(0.0000004), "0:00:00.000000");
  EXPECT_EQ(format_elapsed(59.9999996), "0:01:00.000000");
}

// Found by fuzz/fuzz_sweep_tsv.cpp: a time of 5.6·10^16 hours parsed, and format_row then printed
// it as "-2562047788:00:-54.-775808" (seconds·10^6 overflowed a long long), a line parse_row
// refuses. Times are now bounded by Python's timedelta.max (10^9 days as a double) and every one of
// them prints back.
TEST(SweepTsv, EveryTimeTheParserAcceptsPrintsBack) {
  expect_error<IoError>([] { parse_row("0\t1\t1\t0.5\t1\t055555555555555555:00:00.011000", "x:3"); }, "x:3",
                        "time '055555555555555555:00:00.011000'");
  expect_error<IoError>([] { parse_row("0\t1\t1\t0.5\t1\t1000000000 days, 0:00:01", "x:3"); }, "x:3",
                        "time '1000000000 days");
  const SweepRow longest = parse_row("0\t1\t1\t0.5\t1\t999999999 days, 23:59:59.999999", "x");
  for (const double seconds : {longest.seconds, 1e13 + 0.25, 3.6e9 + 0.9999996, 1e20, HUGE_VAL}) {
    SweepRow r = longest;
    r.seconds = seconds;
    const std::string line = format_row(r);
    const SweepRow back = parse_row(line.substr(0, line.size() - 1), "x");
    EXPECT_TRUE(same_result(r, back)) << line;
    // The file holds microseconds (rounding: ≤ 0.5 µs) and the parse sums in double (a few ulps:
    // 2^-6 s near 10^14).
    const double expected = std::min(seconds, longest.seconds);
    EXPECT_NEAR(back.seconds, expected, 1e-6 + 4 * std::numeric_limits<double>::epsilon() * expected) << line;
  }
  EXPECT_EQ(format_elapsed(1e13 + 0.25), "2777777777:46:40.250000");
  EXPECT_EQ(format_elapsed(3.6e9 + 0.9999996), "1000000:00:01.000000");
  EXPECT_EQ(format_elapsed(1e20), "24000000000:00:00.000000");  // clamped to 10^9 days
  EXPECT_EQ(format_elapsed(HUGE_VAL), "24000000000:00:00.000000");
  EXPECT_EQ(format_elapsed(std::nan("")), "0:00:00.000000");
  EXPECT_EQ(format_elapsed(-5.0), "0:00:00.000000");
}

TEST(SweepTsv, MalformedRowsNameFileAndLine) {
  const std::string dir = make_temp_dir("sweep_malformed");
  const std::string header = std::string(kSweepHeader) + "\n", good = "0\t1\t1\t0.5\t1\t0:00:01.000000\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"0\t1\t1\t0.5\t1\n", "expected 6"},
      {"x\t1\t1\t0.5\t1\t0:00:01\n", "idx 'x'"},
      {"0\t1\t-2\t0.5\t0\t0:00:01\n", "predict '-2'"},
      {"0\t1\t1\tnan\t1\t0:00:01\n", "radius 'nan'"},
      {"0\t1\t1\t-0.5\t1\t0:00:01\n", "radius '-0.5'"},
      {"0\t1\t1\t0.5\tyes\t0:00:01\n", "correct 'yes'"},
      {"0\t1\t2\t0.5\t1\t0:00:01\n", "contradicts"},
      {"0\t1\t1\t0.5\t1\t0:61:01\n", "time '0:61:01'"},
      {"0\t1\t1\t0.5\t1", "expected 6"},  // a cut-off last line is an error outside resuming
  };
  for (const auto& [row, fragment] : cases) {
    const std::string path = dir + "/bad.tsv";
    write_text(path, header + good + row);
    expect_error<IoError>([&] { read_sweep_tsv(path, false); }, path + ":3", fragment);
  }
  const std::string path = dir + "/header.tsv";
  write_text(path, "idx,label,predict,radius,correct,time\n" + good);
  expect_error<IoError>([&] { read_sweep_tsv(path, false); }, path + ":1", "header");
  write_text(path, "");
  expect_error<IoError>([&] { read_sweep_tsv(path, false); }, path, "empty");
  // When resuming, a cut-off last row is dropped, but a first line that is no header is an error.
  write_text(path, header + good + "1\t2\t2\t0.3");
  const SweepTsv cut = read_sweep_tsv(path, true);
  EXPECT_TRUE(cut.partial_tail);
  EXPECT_EQ(cut.rows.size(), 1u);
  EXPECT_EQ(cut.complete_bytes, header.size() + good.size());
  write_text(path, "garbage");
  expect_error<IoError>([&] { read_sweep_tsv(path, true); }, path + ":1", "header");
  // Windows line ends and blank lines are read.
  write_text(path, std::string(kSweepHeader) + "\r\n0\t1\t1\t0.5\t1\t0:00:01\r\n\n");
  EXPECT_EQ(read_sweep_tsv(path, false).rows.size(), 1u);
}

TEST(SweepInputs, SkipMaxAndShardsPartitionTheInputs) {
  EXPECT_EQ(select_inputs(10, 1, 0, {}), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(select_inputs(10, 3, 0, {}), (std::vector<std::int64_t>{0, 3, 6, 9}));
  EXPECT_EQ(select_inputs(10, 3, 7, {}), (std::vector<std::int64_t>{0, 3, 6}));
  EXPECT_EQ(select_inputs(10, 3, 6, {}), (std::vector<std::int64_t>{0, 3}));
  EXPECT_EQ(select_inputs(10, 1, 50, {}).size(), 10u);
  EXPECT_EQ(select_inputs(0, 1, 0, {}).size(), 0u);
  // Shards take positions in the skipped list, so their union is the unsharded list.
  const std::vector<std::int64_t> all = select_inputs(297, 2, 0, {});
  std::vector<std::int64_t> merged;
  for (std::int64_t i = 0; i < 4; ++i) {
    const std::vector<std::int64_t> part = select_inputs(297, 2, 0, parse_shard(std::to_string(i) + "/4"));
    EXPECT_EQ(part.front(), all[static_cast<std::size_t>(i)]);
    merged.insert(merged.end(), part.begin(), part.end());
  }
  std::sort(merged.begin(), merged.end());
  EXPECT_EQ(merged, all);
  for (const char* bad : {"4/4", "-1/4", "1", "a/b", "0/0", "1/", "/2", "1/2/3", ""})
    expect_error<InvalidArgument>([&] { parse_shard(bad); }, std::string("'") + bad + "'", "i/k");
  expect_error<InvalidArgument>([] { select_inputs(10, 0, 0, {}); }, "skip 0", "≥ 1");
  expect_error<InvalidArgument>([] { select_inputs(10, 1, -1, {}); }, "max -1", "≥ 0");
}

TEST(SweepSettings, BadValuesAreRejected) {
  const auto expect_bad = [](auto change, const std::string& name) {
    SweepSettings s = small_settings();
    change(s);
    expect_error<InvalidArgument>([&] { check_sweep_settings(s); }, name, "must");
  };
  expect_bad([](SweepSettings& s) { s.smoothing.sigma = 0; }, "sigma=0");
  expect_bad([](SweepSettings& s) { s.smoothing.sigma = -0.5; }, "sigma=-0.5");
  expect_bad([](SweepSettings& s) { s.smoothing.sigma = std::nan(""); }, "sigma=nan");
  expect_bad([](SweepSettings& s) { s.smoothing.n = 0; }, "n=0");
  expect_bad([](SweepSettings& s) { s.smoothing.n0 = 0; }, "n0=0");
  expect_bad([](SweepSettings& s) { s.smoothing.alpha = 0; }, "alpha=0");
  expect_bad([](SweepSettings& s) { s.smoothing.alpha = 1; }, "alpha=1");
  expect_bad([](SweepSettings& s) { s.smoothing.alpha = std::nan(""); }, "alpha=nan");
  expect_bad([](SweepSettings& s) { s.inputs.skip = 0; }, "skip 0");
  expect_bad([](SweepSettings& s) { s.inputs.shard = {2, 2}; }, "shard 2/2");
}

TEST(SweepSettings, SidecarRoundTripsAndComparesByFingerprint) {
  const std::string dir = make_temp_dir("sweep_settings");
  SweepSettings s = small_settings();
  s.smoothing.seed = 18446744073709551615ULL;  // the full uint64 range survives JSON
  s.inputs.shard = {2, 5};
  write_settings(dir + "/a.tsv", s);
  const SweepSettings back = read_settings(dir + "/a.tsv");
  EXPECT_EQ(settings_difference(s, back, false), "");
  EXPECT_EQ(back.model, s.model);
  SweepSettings moved = s;
  moved.model = "elsewhere/m.safetensors";  // same bytes at another path: the same sweep
  EXPECT_EQ(settings_difference(s, moved, false), "");
  moved.model_fingerprint = "fnv1a64:0000000000000002";
  EXPECT_NE(settings_difference(s, moved, false).find("model"), std::string::npos);
  SweepSettings other_shard = s;
  other_shard.inputs.shard.index = 0;
  EXPECT_EQ(settings_difference(s, other_shard, true), "");
  EXPECT_NE(settings_difference(s, other_shard, false).find("shard 2/5 vs 0/5"), std::string::npos);
  write_text(settings_path(dir + "/b.tsv"), "{\"format\": \"aegis-certify-sweep\", \"sigma\": \"x\"}");
  expect_error<IoError>([&] { read_settings(dir + "/b.tsv"); }, "b.tsv.json", "sigma");
  write_text(settings_path(dir + "/c.tsv"), "not json");
  expect_error<IoError>([&] { read_settings(dir + "/c.tsv"); }, "c.tsv.json", "JSON");
  // FNV-1a 64 test vectors: "" and "a".
  write_text(dir + "/empty", "");
  write_text(dir + "/a", "a");
  EXPECT_EQ(file_fingerprint(dir + "/empty"), "fnv1a64:cbf29ce484222325");
  EXPECT_EQ(file_fingerprint(dir + "/a"), "fnv1a64:af63dc4c8601ec8c");
  EXPECT_EQ(sigma_out_path("out/cert.tsv", 0.25), "out/cert_sigma0.25.tsv");
  EXPECT_EQ(sigma_out_path("run.d/cert", 1.0), "run.d/cert_sigma1");
  EXPECT_EQ(chunk_size(1000, 100, 100000), 1);
  EXPECT_EQ(chunk_size(1000, 20, 200), 4);
  EXPECT_EQ(chunk_size(1 << 20, 1, 1), 64);
}

TEST(SweepSettings, PrecisionIsRecordedAndComparedAndOldSidecarsReadAsBefore) {
  const std::string dir = make_temp_dir("sweep_precision");
  for (MathPrecision p : {MathPrecision::Fp32, MathPrecision::Tf32, MathPrecision::Bf16, MathPrecision::Fp16}) {
    SweepSettings s = small_settings();
    s.smoothing.precision = p;
    write_settings(dir + "/p.tsv", s);
    const nlohmann::json j = nlohmann::json::parse(read_text(settings_path(dir + "/p.tsv")));
    EXPECT_EQ(j.at("precision"), math_precision_name(p));
    EXPECT_FALSE(j.contains("tensor_cores"));
    const SweepSettings back = read_settings(dir + "/p.tsv");
    EXPECT_EQ(back.smoothing.precision, p);
    EXPECT_EQ(settings_difference(s, back, false), "");
  }
  SweepSettings bf16 = small_settings();
  bf16.smoothing.precision = MathPrecision::Bf16;
  EXPECT_EQ(settings_difference(bf16, small_settings(), false), "precision bf16 vs fp32");
  // Sidecars from before "precision": no field (fp32 sweeps) or "tensor_cores" (TF32 when true).
  nlohmann::json old = nlohmann::json::parse(read_text(settings_path(dir + "/p.tsv")));
  old.erase("precision");
  write_text(settings_path(dir + "/old.tsv"), old.dump(2));
  EXPECT_EQ(read_settings(dir + "/old.tsv").smoothing.precision, MathPrecision::Fp32);
  old["tensor_cores"] = false;
  write_text(settings_path(dir + "/old.tsv"), old.dump(2));
  EXPECT_EQ(read_settings(dir + "/old.tsv").smoothing.precision, MathPrecision::Fp32);
  old["tensor_cores"] = true;
  write_text(settings_path(dir + "/old.tsv"), old.dump(2));
  EXPECT_EQ(read_settings(dir + "/old.tsv").smoothing.precision, MathPrecision::Tf32);
  old["tensor_cores"] = "yes";
  write_text(settings_path(dir + "/old.tsv"), old.dump(2));
  expect_error<IoError>([&] { read_settings(dir + "/old.tsv"); }, "old.tsv.json", "tensor_cores");
  old.erase("tensor_cores");
  old["precision"] = "fp64";
  write_text(settings_path(dir + "/old.tsv"), old.dump(2));
  expect_error<IoError>([&] { read_settings(dir + "/old.tsv"); }, "old.tsv.json", "precision 'fp64'");
  old["precision"] = 16;
  write_text(settings_path(dir + "/old.tsv"), old.dump(2));
  expect_error<IoError>([&] { read_settings(dir + "/old.tsv"); }, "old.tsv.json", "precision");
  // Resuming with another precision is refused, as for any other setting that changes the rows.
  const std::string path = full_sweep(dir + "/s.tsv", inputs_for(select_inputs(10, 1, 0, {})), 4);
  expect_error<InvalidArgument>([&] { SweepFile f(path, bf16, OpenMode::Resume); }, path, "precision bf16 vs fp32");
  SweepFile same(path, small_settings(), OpenMode::Resume);
  EXPECT_EQ(same.resumed_rows(), 10);
}

TEST(SweepFile, RefusesToOverwriteAndChecksSettingsOnResume) {
  const std::string dir = make_temp_dir("sweep_file");
  const std::string path = full_sweep(dir + "/s.tsv", inputs_for(select_inputs(30, 1, 0, {})), 4);
  expect_error<InvalidArgument>([&] { SweepFile f(path, small_settings(), OpenMode::Create); }, path, "--resume");
  SweepSettings other = small_settings();
  other.smoothing.sigma = 0.5;
  expect_error<InvalidArgument>([&] { SweepFile f(path, other, OpenMode::Resume); }, path, "sigma 0.5 vs 0.25");
  other = small_settings();
  other.smoothing.n = 100;
  expect_error<InvalidArgument>([&] { SweepFile f(path, other, OpenMode::Resume); }, path, "n 100 vs 200");
  // Another batch size or device is allowed, with a warning that names both.
  other = small_settings();
  other.smoothing.batch = 250;
  other.device = "cuda:0";
  {
    SweepFile f(path, small_settings(), OpenMode::Resume);
    EXPECT_TRUE(f.resume_warning().empty()) << f.resume_warning();
  }
  {
    SweepFile f(path, other, OpenMode::Resume);
    EXPECT_NE(f.resume_warning().find("batch 250 (started with 1000)"), std::string::npos) << f.resume_warning();
    EXPECT_NE(f.resume_warning().find("device cuda:0 (started on cpu)"), std::string::npos) << f.resume_warning();
  }
  // Resuming a finished sweep certifies nothing and appends nothing.
  const std::string before = read_text(path);
  {
    SweepFile f(path, small_settings(), OpenMode::Resume);
    CountingCertifier c;
    const SweepSummary s = run_sweep(f, inputs_for(select_inputs(30, 1, 0, {})), 4, c.fn());
    EXPECT_TRUE(c.seen.empty());
    EXPECT_EQ(s.resumed, 30);
    EXPECT_EQ(s.written, 0);
  }
  EXPECT_EQ(read_text(path), before);
  // A file of another sweep's inputs is refused by run_sweep.
  {
    SweepFile f(path, small_settings(), OpenMode::Resume);
    CountingCertifier c;
    expect_error<IoError>([&] { run_sweep(f, inputs_for(select_inputs(30, 2, 0, {})), 4, c.fn()); }, path, "idx 1");
  }
  // One writer at a time: a second open of a file being written is refused.
  {
    SweepFile writer(path, small_settings(), OpenMode::Resume);
    expect_error<IoError>([&] { SweepFile f(path, small_settings(), OpenMode::Resume); }, path, "another process");
  }
  std::filesystem::remove(settings_path(path));
  expect_error<IoError>([&] { SweepFile f(path, small_settings(), OpenMode::Resume); }, path, "missing");
  {
    SweepFile f(path, small_settings(), OpenMode::Overwrite);  // --force starts over
    EXPECT_EQ(f.rows().size(), 0u);
  }
  EXPECT_EQ(read_text(path), std::string(kSweepHeader) + "\n");
  EXPECT_TRUE(has_settings(path));
}

TEST(SweepFile, ResumeAfterACutOffLineGivesTheUninterruptedRows) {
  const std::string dir = make_temp_dir("sweep_resume");
  const std::vector<SweepInput> inputs = inputs_for(select_inputs(100, 3, 0, {}));  // 34 inputs
  const std::string whole = full_sweep(dir + "/whole.tsv", inputs, 5);
  const std::vector<std::string> expected = rows_without_time(whole);
  ASSERT_EQ(expected.size(), inputs.size());
  const std::string text = read_text(whole);
  // Cut inside the 11th row (a kill between the bytes of a write), inside the header, and
  // exactly at a line end; each resume must give the same rows.
  std::size_t row_start = 0;
  for (int i = 0; i < 11; ++i) row_start = text.find('\n', row_start) + 1;
  for (const std::size_t cut : {row_start + 3, std::size_t{5}, row_start}) {
    const std::string path = dir + "/cut.tsv";
    std::filesystem::copy_file(whole, path, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(settings_path(whole), settings_path(path),
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(path, cut);
    SweepFile f(path, small_settings(), OpenMode::Resume);
    const std::int64_t complete = cut > 5 ? 10 : 0;
    EXPECT_EQ(f.resumed_rows(), complete);
    CountingCertifier c;
    const SweepSummary s = run_sweep(f, inputs, 5, c.fn());
    EXPECT_EQ(s.resumed, complete);
    EXPECT_EQ(s.written, static_cast<std::int64_t>(inputs.size()) - complete);
    EXPECT_EQ(c.seen.size(), inputs.size() - static_cast<std::size_t>(complete));  // nothing certified twice
    EXPECT_EQ(rows_without_time(path), expected) << "cut at byte " << cut;
  }
}

TEST(SweepFile, InterruptedRunKeepsFinishedChunksAndResumes) {
  const std::string dir = make_temp_dir("sweep_interrupt");
  const std::vector<SweepInput> inputs = inputs_for(select_inputs(60, 1, 45, {}));
  const std::vector<std::string> expected = rows_without_time(full_sweep(dir + "/whole.tsv", inputs, 4));
  const std::string path = dir + "/part.tsv";
  {
    SweepFile f(path, small_settings(), OpenMode::Create);
    CountingCertifier c;
    c.throw_after_chunks = 3;
    EXPECT_THROW(run_sweep(f, inputs, 4, c.fn()), std::runtime_error);
  }
  EXPECT_EQ(read_sweep_tsv(path, false).rows.size(), 12u);  // three chunks of 4 reached the disk
  SweepFile f(path, small_settings(), OpenMode::Resume);
  CountingCertifier c;
  std::vector<std::int64_t> progress;
  const SweepSummary s = run_sweep(f, inputs, 7, c.fn(), [&](std::int64_t done) { progress.push_back(done); });
  // Chunks of 7 are fixed slices 0–6, 7–13, ...: the one holding rows 7–11 is certified again
  // whole, and only rows 12 and 13 are appended from it.
  EXPECT_EQ(progress, (std::vector<std::int64_t>{14, 21, 28, 35, 42, 45}));
  EXPECT_EQ(c.seen.front(), 7);
  EXPECT_EQ(c.seen.size(), 38u);
  EXPECT_EQ(rows_without_time(path), expected);
  std::int64_t correct = 0, abstained = 0;
  for (const SweepInput& in : inputs) {
    correct += fake_certificate(in.idx).prediction == in.label;
    abstained += fake_certificate(in.idx).prediction < 0;
  }
  EXPECT_EQ(s.inputs, 45);
  EXPECT_EQ(s.correct, correct);
  EXPECT_EQ(s.abstained, abstained);
}

// The rows a file hands back after appending are the rows in the file (radius to 6 digits), so
// summaries of rows() equal those of the file read again.
TEST(SweepFile, RowsInMemoryAreTheRowsInTheFile) {
  const std::string path = make_temp_dir("sweep_rows") + "/rows.tsv";
  SweepFile file(path, small_settings(), OpenMode::Create);
  SweepRow row;
  row.idx = 0;
  row.label = 1;
  row.predict = 1;
  row.radius = 0.123456789;
  row.correct = true;
  row.seconds = 1.25;
  file.append(row);
  ASSERT_EQ(file.rows().size(), 1u);
  EXPECT_EQ(file.rows()[0].radius, 0.123457);
  EXPECT_TRUE(same_result(file.rows()[0], row));
  const SweepTsv back = read_sweep_tsv(path, false);
  ASSERT_EQ(back.rows.size(), 1u);
  EXPECT_EQ(back.rows[0].radius, file.rows()[0].radius);
  EXPECT_EQ(back.rows[0].seconds, file.rows()[0].seconds);
}

// A row cut short by a full disk is cut off again before the error is reported: the file stays a
// valid sweep whose rows are all whole.
TEST(SweepFile, AShortWriteLeavesNoTornRow) {
  const std::string path = make_temp_dir("sweep_full") + "/full.tsv";
  SweepFile file(path, small_settings(), OpenMode::Create);
  file.append(sweep_row(0, 1, fake_certificate(0)));
  const auto before = std::filesystem::file_size(path);
  {
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    const auto handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = saved;
    lim.rlim_cur = before + 5;  // room for part of the next row only
    ::setrlimit(RLIMIT_FSIZE, &lim);
    expect_error<IoError>([&] { file.append(sweep_row(1, 2, fake_certificate(1))); }, path, "write failed");
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, handler);
  }
  EXPECT_EQ(std::filesystem::file_size(path), before);
  EXPECT_EQ(read_sweep_tsv(path, false).rows.size(), 1u);
}

}  // namespace
}  // namespace aegis::certify
