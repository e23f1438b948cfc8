// The audits' model farms under mpirun (privacy/audit_farm.h over core/work_farm.h), on the
// bundled digits with tiny recipes and 2 and 3 ranks oversubscribed on this machine's cores:
// `audit mia` and `audit dp --runs` leave the one-process run's files byte for byte and report its
// numbers; an audit whose rank is SIGKILLed resumes (with one process, with the same ranks or with
// more) to the same files, training only the models that were missing; the other audits stay
// refused. Built
// only with -DAEGIS_MPI.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/mpi_run.h"
#include "support/testing.h"

namespace aegis {
namespace {

using testing::CliRun;
using testing::run_cli;
using testing::run_mpi;
using testing::run_one_process;

// The one-process runs use one thread too, as mpirun_words gives every rank.
const std::string& dir() {
  static const std::string d = [] {
    setenv("OMP_NUM_THREADS", "1", 1);
    return testing::make_temp_dir("mpi_farm");
  }();
  return d;
}

nlohmann::json json_of(const CliRun& r, const std::string& what) {
  EXPECT_EQ(r.status, 0) << what << "\n" << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::set<std::string> names_in(const std::string& d) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(d)) names.insert(e.path().filename().string());
  return names;
}

// Every file of directory `a` equals its namesake in `b`, byte for byte, and they hold the same names.
void expect_same_files(const std::string& a, const std::string& b) {
  ASSERT_EQ(names_in(a), names_in(b)) << a << " vs " << b;
  for (const std::string& name : names_in(a))
    EXPECT_TRUE(bytes_of(a + "/" + name) == bytes_of(b + "/" + name)) << name << " differs: " << a << " vs " << b;
}

// A report without what differs between any two runs: times and the paths that name each run's files.
nlohmann::json without_times(nlohmann::json j) {
  for (const char* key : {"seconds", "seconds_per_model", "seconds_per_run", "scores_out", "runs_dir"}) j.erase(key);
  if (j.contains("training"))
    for (const char* key : {"train_seconds", "seconds_per_epoch", "out"}) j["training"].erase(key);
  return j;
}

// 5 models (target + 4 shadows) of an mlp on 150 digits each, one epoch: about 15 ms per model.
std::string mia_args(const std::string& out_dir, const std::string& extra = "--shadows 4 --pool 300 --epochs 1") {
  return "audit mia --data digits --model mlp --batch-size 64 --population 100 --device cpu --quiet --json " + extra +
         " --out-dir " + out_dir;
}

TEST(MpiFarm, MembershipAuditOverRanksEqualsOneProcess) {
  const std::string one = dir() + "/mia1";
  const auto j1 = json_of(run_one_process(mia_args(one)), "one process");
  ASSERT_EQ(j1["models_trained"], 5);
  for (int ranks : {2, 3}) {
    const std::string out = dir() + "/mia_ranks" + std::to_string(ranks);
    const auto j = json_of(run_mpi(ranks, mia_args(out)), "mpirun");
    // The report is rank 0's alone (one JSON line), with the one-process run's numbers and counts.
    EXPECT_EQ(without_times(j), without_times(j1)) << ranks << " ranks";
    expect_same_files(one, out);  // the models and scores.tsv
    // Run again over the ranks: every model is reused, nothing trained, the same result.
    const auto again = json_of(run_mpi(ranks, mia_args(out)), "mpirun again");
    EXPECT_EQ(again["models_reused"], 5);
    EXPECT_EQ(again["models_trained"], 0);
    EXPECT_EQ(again["attacks"], j1["attacks"]);
  }
}

std::string dp_args(const std::string& d) {
  return "audit dp --runs 4 --data digits --model mlp --noise-multiplier 1 --max-grad-norm 1 --epochs 1 "
         "--batch-size 128 --device cpu --quiet --json --out-dir " +
         d + "/runs --out " + d + "/audit.safetensors --scores " + d + "/scores.tsv";
}

// A run record without its times and model path (each run names its own model file).
nlohmann::json record_of(const std::string& path) {
  nlohmann::json r = nlohmann::json::parse(bytes_of(path));
  r.erase("seconds");
  for (const char* key : {"train_seconds", "seconds_per_epoch", "out"}) r["training"].erase(key);
  return r;
}

TEST(MpiFarm, ManyRunDpAuditOverRanksEqualsOneProcess) {
  const std::string one = dir() + "/dp1";
  const auto j1 = json_of(run_one_process(dp_args(one)), "one process");
  ASSERT_EQ(j1["runs_trained"], 8);
  for (int ranks : {2, 3}) {
    const std::string out = dir() + "/dp_ranks" + std::to_string(ranks);
    const auto j = json_of(run_mpi(ranks, dp_args(out)), "mpirun");
    EXPECT_EQ(without_times(j), without_times(j1)) << ranks << " ranks";
    // The scores (exact to 9 digits), and the model file: the last run's, as one process leaves it.
    EXPECT_EQ(bytes_of(out + "/scores.tsv"), bytes_of(one + "/scores.tsv"));
    EXPECT_TRUE(bytes_of(out + "/audit.safetensors") == bytes_of(one + "/audit.safetensors"));
    // The run records (scores exact in hexadecimal), and no scratch file left behind.
    ASSERT_EQ(names_in(out + "/runs"), names_in(one + "/runs"));
    for (const std::string& name : names_in(one + "/runs"))
      EXPECT_EQ(record_of(out + "/runs/" + name), record_of(one + "/runs/" + name)) << name;
  }
}

std::size_t models_in(const std::string& d) {
  std::size_t n = 0;
  if (std::filesystem::is_directory(d))
    for (const auto& e : std::filesystem::directory_iterator(d)) n += e.path().extension() == ".safetensors" ? 1 : 0;
  return n;
}

TEST(MpiFarm, SigkilledRankResumesToTheOneProcessAudit) {
  // 13 models (target + 12 shadows) of about 0.15 s each: the kill lands after the third.
  const std::string extra = "--shadows 12 --pool 600 --epochs 8";
  const std::string whole = dir() + "/mia_whole";
  const auto expected = json_of(run_one_process(mia_args(whole, extra)), "one process");
  ASSERT_EQ(expected["models_trained"], 13);

  for (int victim : {1, 0}) {  // a rank that trains, then the one that hands out
    const std::string killed = dir() + "/mia_killed" + std::to_string(victim);
    const pid_t pid = testing::spawn_mpi(2, mia_args(killed, extra));
    ASSERT_GT(pid, 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (models_in(killed) < 3 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const pid_t rank = testing::rank_pid(pid, victim);
    ASSERT_GT(rank, 0) << "rank " << victim << " not found";
    ASSERT_EQ(kill(rank, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);  // mpirun ends the other rank and fails
    EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    const auto before = static_cast<std::int64_t>(models_in(killed));
    ASSERT_GE(before, 3);
    ASSERT_LT(before, 13) << "the audit finished before the kill; the test needs more models";

    // Resume with one process after rank 1's death, with the 2 ranks after rank 0's.
    const std::string args = mia_args(killed, extra);
    const auto j = json_of(victim == 1 ? run_one_process(args) : run_mpi(2, args), "resume");
    EXPECT_EQ(j["models_reused"], before) << "rank " << victim << " killed";  // nothing lost
    EXPECT_EQ(j["models_trained"], 13 - before);                              // nothing repeated
    nlohmann::json a = without_times(j), b = without_times(expected);
    for (const char* key : {"models_trained", "models_reused"}) a.erase(key), b.erase(key);
    EXPECT_EQ(a, b);
    // A write cut short by the kill may leave its temporary file (<model>.tmp.XXXXXX); the models
    // and scores are the uninterrupted run's.
    for (const std::string& name : names_in(whole))
      EXPECT_TRUE(bytes_of(killed + "/" + name) == bytes_of(whole + "/" + name)) << name << ", rank " << victim;
  }
}

TEST(MpiFarm, SigkilledDpAuditResumesWithMoreRanks) {
  // 12 runs of about 0.2 s each; rank 1 is killed after the third record, 3 ranks resume.
  const std::string args =
      "audit dp --runs 6 --data digits --model mlp --noise-multiplier 1 --max-grad-norm 1 "
      "--epochs 2 --batch-size 128 --device cpu --quiet --json";
  const auto files = [&](const std::string& d) {
    return " --out-dir " + d + "/runs --out " + d + "/audit.safetensors --scores " + d + "/scores.tsv";
  };
  const std::string whole = dir() + "/dp_whole", killed = dir() + "/dp_killed";
  const auto expected = json_of(run_one_process(args + files(whole)), "one process");
  const pid_t pid = testing::spawn_mpi(2, args + files(killed));
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  const auto records = [&] {
    return std::filesystem::is_directory(killed + "/runs") ? names_in(killed + "/runs").size() : std::size_t{0};
  };
  while (records() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const pid_t rank = testing::rank_pid(pid, 1);
  ASSERT_GT(rank, 0);
  ASSERT_EQ(kill(rank, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::set<std::string> left;  // the records, without a temporary file that the kill cut short
  for (const std::string& name : names_in(killed + "/runs"))
    if (name.rfind("run-", 0) == 0 && name.find(".tmp.") == std::string::npos) left.insert(name);
  const auto before = static_cast<std::int64_t>(left.size());
  ASSERT_GE(before, 3);
  ASSERT_LT(before, 12) << "the audit finished before the kill; the test needs more runs";

  const auto j = json_of(run_mpi(3, args + files(killed)), "resume");
  EXPECT_EQ(j["runs_reused"], before);        // nothing lost
  EXPECT_EQ(j["runs_trained"], 12 - before);  // nothing repeated
  nlohmann::json a = without_times(j), b = without_times(expected);
  for (const char* key : {"runs_trained", "runs_reused"}) a.erase(key), b.erase(key);
  EXPECT_EQ(a, b);
  EXPECT_EQ(bytes_of(killed + "/scores.tsv"), bytes_of(whole + "/scores.tsv"));
  for (const std::string& name : names_in(whole + "/runs"))
    EXPECT_EQ(record_of(killed + "/runs/" + name), record_of(whole + "/runs/" + name)) << name;
  // The model file holds the last run trained: the uninterrupted run's when the kill came before it.
  if (left.count("run-11.json") == 0) {
    EXPECT_TRUE(bytes_of(killed + "/audit.safetensors") == bytes_of(whole + "/audit.safetensors"));
  }
}

TEST(MpiFarm, OtherAuditsAreRefused) {
  const CliRun one_run = run_mpi(2,
                                 "audit dp --data digits --model mlp --noise-multiplier 1 --epochs 1 --device cpu "
                                 "--quiet --out " +
                                     dir() + "/one_run.safetensors");
  EXPECT_NE(one_run.status, 0);
  EXPECT_NE(one_run.err.find("aegis: error: aegis audit dp without --runs (the one-run audit) runs in one process"),
            std::string::npos)
      << one_run.err;
  const CliRun no_dir = run_mpi(2,
                                "audit dp --runs 4 --data digits --model mlp --noise-multiplier 1 --epochs 1 "
                                "--device cpu --quiet --out " +
                                    dir() + "/no_dir.safetensors");
  EXPECT_NE(no_dir.status, 0);
  EXPECT_NE(no_dir.err.find("under mpirun the many-run audit needs --out-dir"), std::string::npos) << no_dir.err;
  const CliRun invert = run_mpi(2, "audit invert --model " + dir() + "/none.safetensors --data digits");
  EXPECT_NE(invert.status, 0);
  EXPECT_NE(invert.err.find("aegis: error: aegis audit invert runs in one process"), std::string::npos) << invert.err;
}

}  // namespace
}  // namespace aegis
