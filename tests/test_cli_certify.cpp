// End-to-end tests of `aegis certify` and `aegis analyze` on a small digits mlp: Cohen-format rows
// and the settings sidecar, a SIGKILLed sweep that resumes to exactly the rows of an
// uninterrupted one, shards that analyze to the unsharded result, several σ, certify's JSON
// summary equal to analyze's, plots in each format with the envelope, and exit status 1 with a
// message for bad input.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "support/testing.h"

extern char** environ;

namespace aegis {
namespace {

using testing::CliRun;
using testing::run_cli;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Complete lines of a sweep file without the time column (the only column allowed to differ
// between an interrupted and an uninterrupted run).
std::vector<std::string> rows_without_time(const std::string& path) {
  std::vector<std::string> rows;
  std::istringstream in(read_text(path));
  for (std::string line; std::getline(in, line);) rows.push_back(line.substr(0, line.rfind('\t')));
  return rows;
}

const std::string& dir() {
  static const std::string d = testing::make_temp_dir("cli_certify");
  return d;
}

// One quickly trained digits mlp shared by the tests of this file.
const std::string& model() {
  static const std::string path = [] {
    const std::string p = dir() + "/mlp.safetensors";
    const CliRun t = run_cli("train --data digits --model mlp --epochs 2 --device cpu --quiet --out " + p);
    EXPECT_EQ(t.status, 0) << t.err;
    return p;
  }();
  return path;
}

// Small n so the tests run in seconds; `sampling` replaces it where a test sets its own.
std::string certify_args(const std::string& out, const std::string& extra,
                         const std::string& sampling = "--n0 20 --n 200") {
  return "certify --model " + model() + " --data digits --device cpu --seed 3 " + sampling + " --out " + out + " " +
         extra;
}

nlohmann::json run_json(const std::string& args) {
  const CliRun r = run_cli(args + " --json");
  EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

TEST(CliCertify, WritesCohenRowsSettingsAndSummary) {
  const std::string out = dir() + "/plain.tsv";
  const auto j = run_json(certify_args(out, "--sigma 0.25 --max 40 --quiet"));
  ASSERT_EQ(j["sweeps"].size(), 1u);
  const auto& s = j["sweeps"][0];
  EXPECT_EQ(s["file"], out);
  EXPECT_EQ(s["inputs"], 40);
  EXPECT_EQ(s["written"], 40);
  EXPECT_EQ(s["samples"], 40 * 220);
  EXPECT_GT(s["samples_per_second"].get<double>(), 0.0);
  EXPECT_EQ(j["chunk"], 4);  // batch 1000 / (20 + 200)
  // A trained model under σ = 0.25 noise is right well above chance (0.1) on digits.
  EXPECT_GT(s["certified_accuracy_r0"].get<double>(), 0.3);
  const std::vector<std::string> rows = rows_without_time(out);
  ASSERT_EQ(rows.size(), 41u);
  EXPECT_EQ(read_text(out).substr(0, 38), "idx\tlabel\tpredict\tradius\tcorrect\ttime\n");
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(rows[i].substr(0, rows[i].find('\t')), std::to_string(i - 1));
  const auto settings = nlohmann::json::parse(read_text(out + ".json"));
  EXPECT_EQ(settings["sigma"], 0.25);
  EXPECT_EQ(settings["n"], 200);
  EXPECT_EQ(settings["shard"], "0/1");
  EXPECT_EQ(settings["precision"], "fp32");
  EXPECT_EQ(j["precision"], "fp32");
  // Refuses to overwrite; --force starts over and, with the same seed, writes the same rows.
  const CliRun again = run_cli(certify_args(out, "--sigma 0.25 --max 40 --quiet"));
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;
  ASSERT_EQ(run_cli(certify_args(out, "--sigma 0.25 --max 40 --quiet --force")).status, 0);
  EXPECT_EQ(rows_without_time(out), rows);
  // Resuming a finished sweep certifies nothing.
  const auto resumed = run_json(certify_args(out, "--sigma 0.25 --max 40 --quiet --resume"));
  EXPECT_EQ(resumed["sweeps"][0]["resumed"], 40);
  EXPECT_EQ(resumed["sweeps"][0]["written"], 0);
  EXPECT_EQ(rows_without_time(out), rows);
}

TEST(CliCertify, SigkilledSweepResumesToTheUninterruptedRows) {
  // n large enough that the kill lands in the middle; chunks of 2 inputs (4096 / 2020), so the
  // resumed run also certifies a half-written chunk again.
  const std::string flags = "--sigma 0.5 --batch 4096 --max 150 --quiet", sampling = "--n0 20 --n 2000";
  const std::string whole = dir() + "/whole.tsv", killed = dir() + "/killed.tsv";
  ASSERT_EQ(run_cli(certify_args(whole, flags, sampling)).status, 0);
  const std::vector<std::string> expected = rows_without_time(whole);
  ASSERT_EQ(expected.size(), 151u);

  std::vector<std::string> args = {testing::cli_path()};
  std::istringstream words(certify_args(killed, flags, sampling));
  for (std::string w; words >> w;) args.push_back(w);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (rows_without_time(killed).size() < 6 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  const std::size_t before = rows_without_time(killed).size();
  ASSERT_GE(before, 6u);
  ASSERT_LT(before, expected.size()) << "the sweep finished before the kill; the test needs a longer sweep";

  const auto j = run_json(certify_args(killed, flags + " --resume", sampling));
  EXPECT_EQ(j["sweeps"][0]["inputs"], 150);
  EXPECT_EQ(j["sweeps"][0]["resumed"].get<std::size_t>() + j["sweeps"][0]["written"].get<std::size_t>(), 150u);
  // `before` counts the header and maybe a cut-off last line, which resuming drops.
  EXPECT_GE(j["sweeps"][0]["resumed"].get<std::size_t>() + 2, before);
  EXPECT_EQ(rows_without_time(killed), expected);  // no row lost, none repeated, same values
}

TEST(CliCertify, ShardsAnalyzeToTheUnshardedResult) {
  const std::string flags = "--sigma 0.25 --skip 2 --max 120 --quiet";
  const std::string whole = dir() + "/sh_whole.tsv";
  ASSERT_EQ(run_cli(certify_args(whole, flags)).status, 0);
  std::string parts;
  for (int i = 0; i < 3; ++i) {
    const std::string part = dir() + "/sh_part" + std::to_string(i) + ".tsv";
    ASSERT_EQ(run_cli(certify_args(part, flags + " --shard " + std::to_string(i) + "/3")).status, 0);
    EXPECT_EQ(rows_without_time(part).size(), 21u);  // 60 inputs in 3 interleaved parts, plus the header
    parts += " " + part;
  }
  const auto a = run_json("analyze " + whole);
  const auto b = run_json("analyze" + parts);
  ASSERT_EQ(a["curves"].size(), 1u);
  ASSERT_EQ(b["curves"].size(), 1u);
  EXPECT_EQ(a["radii"], b["radii"]);
  EXPECT_EQ(b["curves"][0]["inputs"], 60);
  EXPECT_EQ(b["curves"][0]["sigma"], 0.25);
  EXPECT_EQ(a["curves"][0]["certified_accuracy"], b["curves"][0]["certified_accuracy"]);
  EXPECT_DOUBLE_EQ(a["curves"][0]["acr"].get<double>(), b["curves"][0]["acr"].get<double>());
  EXPECT_DOUBLE_EQ(a["curves"][0]["abstention_rate"].get<double>(), b["curves"][0]["abstention_rate"].get<double>());
  EXPECT_TRUE(b["warnings"].empty());
  const CliRun table_whole = run_cli("analyze " + whole), table_parts = run_cli("analyze" + parts);
  EXPECT_EQ(table_whole.out, table_parts.out);
  EXPECT_EQ(table_whole.out.rfind("| σ | inputs | r = 0 |", 0), 0u) << table_whole.out;
}

TEST(CliCertify, SeveralSigmasWriteOneFileEachAndPlot) {
  const std::string out = dir() + "/multi.tsv";
  const auto j = run_json(certify_args(out, "--sigma 0.12,0.5 --max 30 --quiet"));
  ASSERT_EQ(j["sweeps"].size(), 2u);
  const std::string f12 = dir() + "/multi_sigma0.12.tsv", f50 = dir() + "/multi_sigma0.5.tsv";
  EXPECT_EQ(j["sweeps"][0]["file"], f12);
  EXPECT_EQ(j["sweeps"][1]["file"], f50);
  EXPECT_EQ(rows_without_time(f12).size(), 31u);
  EXPECT_EQ(nlohmann::json::parse(read_text(f50 + ".json"))["sigma"], 0.5);
  const bool have_gnuplot = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
  const std::string png = dir() + "/multi.png";
  const auto a = run_json("analyze " + f50 + " " + f12 + " --radii 0,0.5,1" + (have_gnuplot ? " --plot " + png : ""));
  ASSERT_EQ(a["curves"].size(), 2u);
  EXPECT_EQ(a["curves"][0]["label"], "0.12");
  EXPECT_EQ(a["curves"][1]["label"], "0.5");
  EXPECT_EQ(a["radii"], nlohmann::json::parse("[0.0, 0.5, 1.0]"));
  if (have_gnuplot) {
    EXPECT_GT(std::filesystem::file_size(png), 2000u);
  }
}

std::string head_of(const std::string& path, std::size_t bytes) {
  return read_text(path).substr(0, bytes);
}

// certify --json carries the table `analyze --json` prints for the same files: the same radii,
// certified accuracy at each, ACR and clean accuracy per σ, for fresh and for resumed rows.
TEST(CliCertify, JsonSummaryIsTheAnalyzeTable) {
  const std::string tmp = testing::make_temp_dir("cli_certify_json");
  const std::string out = tmp + "/s.tsv", f25 = tmp + "/s_sigma0.25.tsv", f50 = tmp + "/s_sigma0.5.tsv";
  for (const std::string& radii : {std::string(), std::string(" --radii 0.5,0,1")}) {
    const std::string resume = radii.empty() ? "" : " --resume";
    const auto j = run_json(certify_args(out, "--sigma 0.25,0.5 --max 30 --quiet" + resume + radii));
    const auto a = run_json("analyze " + f50 + " " + f25 + radii);
    ASSERT_EQ(j["sweeps"].size(), 2u);
    ASSERT_EQ(a["curves"].size(), 2u);
    EXPECT_EQ(j["radii"], a["radii"]);
    if (!radii.empty()) {
      EXPECT_EQ(j["radii"], nlohmann::json::parse("[0.0, 0.5, 1.0]"));
    }
    EXPECT_GE(j["radii"].size(), 2u);
    for (std::size_t k = 0; k < 2; ++k) {
      const auto& sw = j["sweeps"][k];
      const auto& c = a["curves"][k];
      EXPECT_EQ(sw["sigma"], c["sigma"]);
      EXPECT_EQ(sw["resumed"], radii.empty() ? 0 : 30);
      EXPECT_EQ(sw["certified_accuracy"], c["certified_accuracy"]);
      EXPECT_DOUBLE_EQ(sw["acr"].get<double>(), c["acr"].get<double>());
      EXPECT_DOUBLE_EQ(sw["clean_accuracy"].get<double>(), c["clean_accuracy"].get<double>());
      EXPECT_DOUBLE_EQ(sw["max_radius"].get<double>(), c["max_radius"].get<double>());
      EXPECT_DOUBLE_EQ(sw["certified_accuracy"][0].get<double>(), sw["certified_accuracy_r0"].get<double>());
      EXPECT_GT(sw["acr"].get<double>(), 0.0);
    }
    // The keys that were there before stay.
    EXPECT_EQ(j["cuda_graph"], false);  // never on the CPU
    EXPECT_EQ(j["cuda_graph_launches"], 0);
    EXPECT_TRUE(j["cuda_graph_failure"].is_string());
  }
  const CliRun text = run_cli(certify_args(out, "--sigma 0.25,0.5 --max 30 --quiet --resume"));
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find(", ACR "), std::string::npos) << text.out;
  const CliRun bad = run_cli(certify_args(tmp + "/r.tsv", "--sigma 0.25 --max 4 --radii 0,-1"));
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--radii: -1 is not in [0, inf)"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(tmp + "/r.tsv"));
}

// analyze --envelope: the best over σ at each radius in the JSON and the table; --plot draws PDF,
// SVG or PNG by the extension, and refuses any other before doing anything.
TEST(CliCertify, AnalyzeEnvelopeAndPlotFormats) {
  const std::string tmp = testing::make_temp_dir("cli_certify_plot");
  ASSERT_EQ(run_cli(certify_args(tmp + "/e.tsv", "--sigma 0.12,0.5 --max 30 --quiet")).status, 0);
  const std::string files = " " + tmp + "/e_sigma0.12.tsv " + tmp + "/e_sigma0.5.tsv";
  const auto a = run_json("analyze" + files + " --envelope");
  ASSERT_EQ(a["curves"].size(), 2u);
  ASSERT_EQ(a["envelope"].size(), a["radii"].size());
  for (std::size_t i = 0; i < a["radii"].size(); ++i)
    EXPECT_EQ(a["envelope"][i], std::max(a["curves"][0]["certified_accuracy"][i].get<double>(),
                                         a["curves"][1]["certified_accuracy"][i].get<double>()))
        << i;
  EXPECT_FALSE(run_json("analyze" + files).contains("envelope"));
  const CliRun table = run_cli("analyze" + files + " --envelope");
  EXPECT_NE(table.out.find("\n| best |"), std::string::npos) << table.out;
  const CliRun jpg = run_cli("analyze" + files + " --plot " + tmp + "/p.jpg");
  EXPECT_EQ(jpg.status, 1);
  EXPECT_EQ(jpg.err.rfind("aegis: error: ", 0), 0u) << jpg.err;
  EXPECT_NE(jpg.err.find("must be .pdf, .svg or .png, not '.jpg'"), std::string::npos) << jpg.err;
  EXPECT_FALSE(std::filesystem::exists(tmp + "/p.jpg"));
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot (gnuplot-nox) is not installed";
  for (const std::string name : {"p.pdf", "p.svg", "p.png"}) {
    const CliRun r = run_cli("analyze" + files + " --envelope --plot " + tmp + "/" + name);
    EXPECT_EQ(r.status, 0) << r.err;
  }
  EXPECT_EQ(head_of(tmp + "/p.pdf", 5), "%PDF-");
  EXPECT_NE(head_of(tmp + "/p.svg", 4096).find("<svg"), std::string::npos);
  EXPECT_EQ(head_of(tmp + "/p.png", 8), "\x89PNG\r\n\x1a\n");
}

TEST(CliCertify, BadInputGivesClearErrors) {
  const std::string out = dir() + "/bad.tsv";
  ASSERT_EQ(run_cli(certify_args(out, "--sigma 0.25 --max 8 --quiet")).status, 0);
  struct Case {
    std::string args, needle;
  };
  const std::string fresh = dir() + "/fresh.tsv";
  const std::vector<Case> cases = {
      {certify_args(fresh, "--sigma 0.25 --shard 3/3"), "shard '3/3'"},
      {certify_args(fresh, "--sigma 0.25 --shard 1"), "shard '1'"},
      {certify_args(fresh, "--sigma 0"), "--sigma: 0 is not in (0, inf)"},
      {certify_args(fresh, "--sigma 0.25,-1"), "--sigma: -1 is not in (0, inf)"},
      {certify_args(fresh, "--sigma 0.25", "--n0 20 --n 0"), "--n: 0 is not in [1, "},
      {certify_args(fresh, "--sigma 0.25", "--n0 0 --n 200"), "--n0: 0 is not in [1, "},
      {certify_args(fresh, "--sigma 0.25 --alpha 0"), "--alpha: 0 is not in (0, 1)"},
      {certify_args(fresh, "--sigma 0.25 --alpha 1.5"), "--alpha: 1.5 is not in (0, 1)"},
      {certify_args(fresh, "--sigma 0.25 --skip 0"), "--skip: 0 is not in [1, "},
      {certify_args(fresh, "--sigma 0.25,0.25"), "twice"},
      {certify_args(fresh, "--sigma 0.25 --batch 0"), "--batch: 0 is not in [1, "},
      {certify_args(fresh, "--sigma 0.25 --max -1"), "--max: -1 is not in [0, "},
      {certify_args(fresh, "--sigma 0.25 --tensor-cores"), "--tensor-cores needs a CUDA device"},
      {certify_args(fresh, "--sigma 0.25 --precision tf32"), "--precision tf32 needs a CUDA device"},
      {certify_args(fresh, "--sigma 0.25 --precision bf16"),
       "--precision bf16 needs a CUDA device; this run is on cpu"},
      {certify_args(fresh, "--sigma 0.25 --precision fp16"), "--precision fp16 needs a CUDA device"},
      {certify_args(fresh, "--sigma 0.25 --precision foo"), "precision 'foo' is not one of fp32, tf32, bf16, fp16"},
      {certify_args(fresh, "--sigma 0.25 --precision BF16"), "precision 'BF16' is not one of"},
      {certify_args(fresh, "--sigma 0.25 --precision bf16 --tensor-cores"), "contradicts --precision bf16"},
      // A bad name is refused before the device is looked at, so on a GPU machine too.
      {"certify --model " + model() + " --data digits --device cuda --sigma 0.25 --precision foo --out " + fresh,
       "precision 'foo' is not one of"},
      {certify_args(out, "--sigma 0.5 --max 8 --resume"), "sigma 0.5 vs 0.25"},
      {certify_args(out, "--sigma 0.25 --max 9 --resume"), "max 9 vs 8"},
      {certify_args(out, "--sigma 0.25 --max 8 --resume --force"), "--force"},
      {certify_args(out, "--sigma 0.25 --max 8"), "--resume"},
      {"analyze " + dir() + "/nothing.tsv", "nothing.tsv: cannot open"},
      {"analyze " + out + " --radii 0,-1", "--radii: -1 is not in [0, inf)"},
      {"analyze " + out + " --sigma -2", "--sigma: -2 is not in (0, inf)"},
  };
  for (const Case& c : cases) {
    const CliRun r = run_cli(c.args);
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(fresh)) << "a rejected command created its output";
  std::ofstream(out, std::ios::app) << "8\t1\t1\t0.5\tmaybe\t0:00:01\n";
  const CliRun r = run_cli("analyze " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(out + ":10: correct 'maybe'"), std::string::npos) << r.err;
}

// A settings sidecar edited by hand with a value of the wrong JSON type is a clear error naming
// the file and the key, for --resume and for analyze alike, never an internal error.
TEST(CliCertify, SidecarWithAWrongTypeNamesTheFileAndKey) {
  const std::string out = dir() + "/typed.tsv";
  ASSERT_EQ(run_cli(certify_args(out, "--sigma 0.25 --max 4 --quiet")).status, 0);
  const nlohmann::json good = nlohmann::json::parse(read_text(out + ".json"));
  for (const auto& [key, bad] : std::vector<std::pair<std::string, nlohmann::json>>{{"batch", "x"},
                                                                                    {"device", 3},
                                                                                    {"format", 1},
                                                                                    {"n", 1.5},
                                                                                    {"seed", -1},
                                                                                    {"sigma", "0.25"},
                                                                                    {"shard", nullptr}}) {
    nlohmann::json j = good;
    j[key] = bad;
    std::ofstream(out + ".json", std::ios::binary) << j.dump(2);
    for (const std::string& args : {certify_args(out, "--sigma 0.25 --max 4 --quiet --resume"), "analyze " + out}) {
      const CliRun r = run_cli(args);
      EXPECT_EQ(r.status, 1) << key << ": " << args << "\n" << r.err;
      EXPECT_EQ(r.err.rfind("aegis: error: ", 0), 0u) << r.err;
      EXPECT_NE(r.err.find(out + ".json"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("'" + key + "'"), std::string::npos) << key << ": " << r.err;
    }
  }
}

// Soundness at the edges: a σ whose noise overflows float32 is refused, and resumed rows must be
// rows these settings can produce (a class of the model, a radius no larger than σ·Φ⁻¹ of the
// bound with all n votes).
TEST(CliCertify, OverflowingSigmaAndImpossibleResumedRowsAreRefused) {
  const std::string fresh = dir() + "/huge_sigma.tsv";
  const CliRun huge = run_cli(certify_args(fresh, "--sigma 1e308 --max 4 --quiet"));
  EXPECT_EQ(huge.status, 1) << huge.err;
  EXPECT_NE(huge.err.find("sigma=1e+308 exceeds"), std::string::npos) << huge.err;
  const std::string out = dir() + "/forged.tsv";
  ASSERT_EQ(run_cli(certify_args(out, "--sigma 0.25 --max 4 --quiet")).status, 0);
  const std::string rows = read_text(out);
  const std::string header = rows.substr(0, rows.find('\n') + 1);
  for (const auto& [row, needle] : std::vector<std::pair<std::string, std::string>>{
           {"0\t7\t7\t1e+308\t1\t0:00:01\n", "above the largest"},
           {"0\t7\t7\t0.6\t1\t0:00:01\n", "above the largest"},  // 0.25·Φ⁻¹(0.001^(1/200)) ≈ 0.46
           {"0\t7\t99\t0.1\t0\t0:00:01\n", "predicts class 99 but the model has 10 classes"}}) {
    std::ofstream(out, std::ios::binary | std::ios::trunc) << header << row;
    const CliRun r = run_cli(certify_args(out, "--sigma 0.25 --max 4 --quiet --resume"));
    EXPECT_EQ(r.status, 1) << row << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << row << r.err;
  }
}

}  // namespace
}  // namespace aegis
