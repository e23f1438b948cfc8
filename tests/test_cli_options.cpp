// The command line's error contract for values that never reach a command: CLI11's own parse
// errors (missing option, unknown flag, a value that is not a number) and every numeric option of
// every command given a value outside its range end in one line `aegis: error: ...` on stderr and
// exit status 1, while --help still exits 0. Every bad value must fail while the options are
// parsed, before any file is read, so each case takes milliseconds.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/testing.h"

namespace aegis {
namespace {

using testing::CliRun;
using testing::run_cli;

// stderr is exactly one line that starts with the contract's prefix.
::testing::AssertionResult follows_error_contract(const CliRun& r) {
  if (r.status != 1) return ::testing::AssertionFailure() << "exit status " << r.status << ", stderr:\n" << r.err;
  if (r.err.rfind("aegis: error: ", 0) != 0)
    return ::testing::AssertionFailure() << "stderr does not start with 'aegis: error: ':\n" << r.err;
  if (r.err.find('\n') != r.err.size() - 1)
    return ::testing::AssertionFailure() << "stderr is not one line:\n" << r.err;
  return ::testing::AssertionSuccess();
}

TEST(CliOptions, ParseErrorsFollowTheErrorContract) {
  const std::string dir = testing::make_temp_dir("aegis_cli_parse");
  const std::vector<std::string> cases = {
      "account --sampling-rate 0.1 --noise-multiplier 1 --delta 1e-5",                          // missing --steps
      "account --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5 --frobnicate",  // unknown flag
      "account --sampling-rate 0.1 --noise-multiplier 1 --steps 1e12 --delta 1e-5",
      "account --sampling-rate 0.1 --noise-multiplier 1 --steps abc --delta 1e-5",
      "account --sampling-rate 0.1 --noise-multiplier 1 --steps 9223372036854775808 --delta 1e-5",
      "train --epochs '' --data nosuch --out " + dir + "/m.safetensors",
      "train --seed -1 --data nosuch --out " + dir + "/m.safetensors",
      "nosuchcommand",
      "",  // no command at all
  };
  for (const std::string& args : cases) EXPECT_TRUE(follows_error_contract(run_cli(args))) << args;
}

TEST(CliOptions, HelpStillSucceeds) {
  for (const std::string args : {"--help", "train --help", "pixeldp certify --help"}) {
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << args << "\n" << r.out;
  }
}

// What a numeric option accepts decides which hostile values it must refuse.
enum class Kind {
  Count,         // integer ≥ 1
  CountOrZero,   // integer ≥ 0 (0: all)
  Seed,          // unsigned 64-bit
  Position,      // integer in [0, 2]
  Positive,      // real > 0, stored as double
  PositiveF,     // real > 0, stored as float
  NonNegative,   // real ≥ 0 (double)
  NonNegativeF,  // real ≥ 0 (float)
  Fraction,      // real in (0, 1), (0, 1] or [0, 1] (the tests stay outside all three)
};

std::vector<std::string> hostile_values(Kind kind) {
  const std::vector<std::string> never = {"nan", "-nan", "inf", "-inf", "abc", "''", "1x", " 1"};
  std::vector<std::string> v = never;
  auto add = [&](std::initializer_list<const char*> more) { v.insert(v.end(), more.begin(), more.end()); };
  switch (kind) {
    case Kind::Count:
      add({"0", "-1", "1.5", "1e12", "9223372036854775807", "9223372036854775808", "99999999999999999999"});
      break;
    case Kind::CountOrZero:
      add({"-1", "1.5", "9223372036854775807", "9223372036854775808", "99999999999999999999"});
      break;
    case Kind::Seed:
      add({"-1", "+-1", "1.5", "18446744073709551616", "99999999999999999999999"});
      break;
    case Kind::Position:
      add({"-1", "3", "9223372036854775807", "9223372036854775808"});
      break;
    case Kind::Positive:
      add({"0", "-1", "-0", "1e999"});
      break;
    case Kind::PositiveF:
      add({"0", "-1", "1e39", "1e999"});
      break;
    case Kind::NonNegative:
      add({"-1", "-1e-300", "1e999"});
      break;
    case Kind::NonNegativeF:
      add({"-1", "1e39"});
      break;
    case Kind::Fraction:
      add({"-1", "1.5", "9223372036854775807", "9223372036854775808"});
      break;
  }
  return v;
}

// The values that check one more option of a kind already checked in full: a non-number, NaN,
// and one value past each end of the kind's range. Options of a kind share their checks, so the
// whole list once per kind and these four per option cover every option without a thousand
// launches of the tool.
std::vector<std::string> hostile_sample(Kind kind) {
  std::vector<std::string> v = {"abc", "nan"};
  switch (kind) {
    case Kind::Count:
      v.insert(v.end(), {"0", "99999999999999999999"});
      break;
    case Kind::CountOrZero:
      v.insert(v.end(), {"-1", "99999999999999999999"});
      break;
    case Kind::Seed:
      v.insert(v.end(), {"-1", "18446744073709551616"});
      break;
    case Kind::Position:
      v.insert(v.end(), {"-1", "3"});
      break;
    case Kind::Positive:
      v.insert(v.end(), {"0", "1e999"});
      break;
    case Kind::PositiveF:
      v.insert(v.end(), {"0", "1e39"});
      break;
    case Kind::NonNegative:
      v.insert(v.end(), {"-1", "1e999"});
      break;
    case Kind::NonNegativeF:
      v.insert(v.end(), {"-1", "1e39"});
      break;
    case Kind::Fraction:
      v.insert(v.end(), {"-1", "1.5"});
      break;
  }
  return v;
}

struct NumericOption {
  std::string command;  // the subcommand with every other required option, valid
  std::string option;
  Kind kind;
};

std::vector<NumericOption> numeric_options(const std::string& dir) {
  // Files that do not exist: should a bad value slip through, the command fails on the file,
  // with a message that does not name the option, and the test reports it.
  const std::string model = " --model " + dir + "/absent.safetensors";
  const std::string train = "train --data nosuch --quiet --out " + dir + "/never.safetensors";
  const std::string train_dp = train + " --dp";
  const std::string account_base = "account";
  const std::string attack = "attack --attack pgd-linf" + model;
  const std::string pixeldp_train = "pixeldp train --data nosuch --quiet --out " + dir + "/never.safetensors";
  const std::string pixeldp_certify = "pixeldp certify --data nosuch --quiet" + model;
  const std::string verify = "verify --data nosuch --quiet" + model;
  const std::string certify = "certify --data nosuch --quiet --out " + dir + "/never.tsv" + model;
  const std::string analyze = "analyze " + dir + "/absent.tsv";
  const std::string audit_mia = "audit mia --data nosuch --quiet --out-dir " + dir + "/never";
  const std::string audit_dp = "audit dp --data nosuch --quiet --target-epsilon 1 --out " + dir + "/never.safetensors";
  const std::string audit_invert = "audit invert --data nosuch --quiet" + model;
  return {
      {train, "--epochs", Kind::Count},
      {train, "--batch-size", Kind::Count},
      {train, "--lr", Kind::PositiveF},
      {train, "--momentum", Kind::Fraction},
      {train, "--seed", Kind::Seed},
      {train, "--noise-sigma", Kind::NonNegativeF},
      {train + " --adv pgd", "--eps", Kind::PositiveF},
      {train + " --adv pgd --eps 0.1", "--adv-steps", Kind::Count},
      {train + " --adv fgsm-rs --eps 0.1", "--adv-overfit-drop", Kind::Fraction},
      {train + " --adv free --eps 0.1", "--adv-replays", Kind::Count},
      {train_dp, "--noise-multiplier", Kind::Positive},
      {train_dp, "--target-epsilon", Kind::Positive},
      {train_dp + " --noise-multiplier 1", "--delta", Kind::Fraction},
      {train_dp + " --noise-multiplier 1", "--max-grad-norm", Kind::Positive},
      {train_dp + " --noise-multiplier 1", "--sampling-rate", Kind::Fraction},
      {train_dp + " --noise-multiplier 1", "--augmult", Kind::Count},
      {train_dp + " --noise-multiplier 1 --clipping adaptive", "--target-quantile", Kind::Fraction},
      {train_dp + " --noise-multiplier 1 --clipping adaptive", "--clip-lr", Kind::Positive},
      {train_dp + " --noise-multiplier 1 --clipping adaptive", "--count-noise", Kind::Positive},
      {"demo --quiet --out " + dir + "/never.safetensors", "--epochs", Kind::Count},
      {"demo --quiet --out " + dir + "/never.safetensors", "--dp-epochs", Kind::Count},
      {"account --noise-multiplier 1 --steps 10 --delta 1e-5", "--sampling-rate", Kind::Fraction},
      {"account --sampling-rate 0.1 --steps 10 --delta 1e-5", "--noise-multiplier", Kind::Positive},
      {"account --sampling-rate 0.1 --steps 10 --delta 1e-5", "--target-epsilon", Kind::Positive},
      {"account --sampling-rate 0.1 --noise-multiplier 1 --delta 1e-5", "--steps", Kind::CountOrZero},
      {"account --sampling-rate 0.1 --noise-multiplier 1 --steps 10", "--delta", Kind::Fraction},
      {attack, "--eps", Kind::NonNegativeF},
      {attack + " --eps 0.1", "--steps", Kind::Count},
      {attack + " --eps 0.1", "--step-size", Kind::PositiveF},
      {attack + " --eps 0.1", "--restarts", Kind::Count},
      {attack + " --eps 0.1", "--max", Kind::CountOrZero},
      {attack + " --eps 0.1", "--seed", Kind::Seed},
      {"attack --attack suite --eps 0.1" + model, "--batch", Kind::Count},
      {pixeldp_train, "--position", Kind::Position},
      {pixeldp_train, "--L", Kind::Positive},
      {pixeldp_train, "--eps", Kind::Positive},
      {pixeldp_train, "--delta", Kind::Fraction},
      {pixeldp_train, "--epochs", Kind::Count},
      {pixeldp_train, "--batch-size", Kind::Count},
      {pixeldp_train, "--lr", Kind::PositiveF},
      {pixeldp_train, "--momentum", Kind::Fraction},
      {pixeldp_train, "--seed", Kind::Seed},
      {pixeldp_train, "--power-iterations", Kind::Count},
      {pixeldp_train, "--max-train", Kind::CountOrZero},
      {pixeldp_certify, "--draws", Kind::Count},
      {pixeldp_certify, "--confidence", Kind::Fraction},
      {pixeldp_certify, "--max", Kind::CountOrZero},
      {pixeldp_certify, "--batch", Kind::Count},
      {pixeldp_certify, "--seed", Kind::Seed},
      {pixeldp_certify, "--attack-max", Kind::Count},
      {pixeldp_certify, "--attack-batch", Kind::Count},
      {pixeldp_certify, "--attack-draws", Kind::Count},
      {pixeldp_certify, "--cw-steps", Kind::Count},
      {pixeldp_certify, "--cw-search-steps", Kind::Count},
      {pixeldp_certify, "--cw-const", Kind::PositiveF},
      {pixeldp_certify, "--cw-lr", Kind::PositiveF},
      {pixeldp_certify, "--cw-confidence", Kind::NonNegativeF},
      {verify, "--eps", Kind::NonNegative},
      {verify + " --eps 0.1", "--max", Kind::CountOrZero},
      {verify + " --eps 0.1", "--batch", Kind::Count},
      {certify, "--sigma", Kind::Positive},
      {certify + " --sigma 0.25", "--n0", Kind::Count},
      {certify + " --sigma 0.25", "--n", Kind::Count},
      {certify + " --sigma 0.25", "--alpha", Kind::Fraction},
      {certify + " --sigma 0.25", "--batch", Kind::Count},
      {certify + " --sigma 0.25", "--skip", Kind::Count},
      {certify + " --sigma 0.25", "--max", Kind::CountOrZero},
      {certify + " --sigma 0.25", "--seed", Kind::Seed},
      {analyze, "--sigma", Kind::Positive},
      {analyze, "--radii", Kind::NonNegative},
      {audit_mia, "--shadows", Kind::Count},
      {audit_mia, "--pool", Kind::CountOrZero},
      {audit_mia, "--audit-seed", Kind::Seed},
      {audit_mia, "--epochs", Kind::Count},
      {audit_mia, "--batch-size", Kind::Count},
      {audit_mia, "--lr", Kind::PositiveF},
      {audit_mia, "--momentum", Kind::Fraction},
      {audit_mia, "--seed", Kind::Seed},
      {audit_mia, "--augment", Kind::Count},
      {audit_mia, "--population", Kind::CountOrZero},
      {audit_mia, "--rmia-gamma", Kind::Positive},
      {audit_mia, "--rmia-a", Kind::Fraction},
      {audit_mia + " --dp", "--target-epsilon", Kind::Positive},
      {audit_mia + " --dp --target-epsilon 1", "--delta", Kind::Fraction},
      {audit_mia + " --dp --target-epsilon 1", "--max-grad-norm", Kind::Positive},
      {audit_mia + " --dp --target-epsilon 1", "--sampling-rate", Kind::Fraction},
      {audit_dp, "--canaries", Kind::Count},
      {audit_dp, "--guesses", Kind::Count},
      {audit_dp, "--confidence", Kind::Fraction},
      {audit_dp, "--audit-seed", Kind::Seed},
      {"audit dp --data nosuch --quiet --out " + dir + "/never.safetensors", "--noise-multiplier", Kind::Positive},
      {audit_dp, "--runs", Kind::CountOrZero},
      {audit_invert, "--steps", Kind::Count},
      {audit_invert, "--patience", Kind::Count},
      {audit_invert, "--lr", Kind::Positive},
      {audit_invert, "--tv", Kind::NonNegative},
      {audit_invert, "--min-cost", Kind::Fraction},
      {audit_invert, "--seed", Kind::Seed},
  };
}

TEST(CliOptions, EveryNumericOptionRefusesValuesOutsideItsRange) {
  const std::string dir = testing::make_temp_dir("aegis_cli_options");
  std::set<Kind> checked;
  for (const NumericOption& o : numeric_options(dir)) {
    const bool first = checked.insert(o.kind).second;
    for (const std::string& value : first ? hostile_values(o.kind) : hostile_sample(o.kind)) {
      // --option=value, quoted for the shell: a value that starts with '-' cannot be taken for an
      // option, and values with a space or an empty value stay one argument.
      const std::string shown = value == "''" ? value : "'" + value + "'";
      const std::string args = o.command + " " + o.option + "=" + shown;
      const CliRun r = run_cli(args);
      EXPECT_TRUE(follows_error_contract(r)) << args;
      EXPECT_NE(r.err.find(o.option + ":"), std::string::npos) << args << "\nthe message does not name the option:\n"
                                                               << r.err;
    }
  }
}

// Values at the edge of each range still parse (the failure is then about the absent model).
TEST(CliOptions, ValuesAtTheEdgesAreAccepted) {
  const std::string dir = testing::make_temp_dir("aegis_cli_edges");
  const std::string model = " --model " + dir + "/absent.safetensors --data nosuch --quiet";
  const std::vector<std::string> cases = {
      "attack --attack pgd-linf --eps 0 --max 0 --seed 18446744073709551615" + model,
      "verify --eps 0 --max 0 --batch 1" + model,
      "certify --sigma 0.12,0.25 --alpha 0.5 --n 1 --out " + dir + "/x.tsv" + model,
      "pixeldp certify --draws 1 --confidence 0.999 --cw-confidence 0" + model,
  };
  for (const std::string& args : cases) {
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find("absent.safetensors"), std::string::npos) << args << "\n" << r.err;
  }
}

// A device given as a file is refused at once, not read until memory runs out.
TEST(CliOptions, DevicesAreRefusedAsInputFiles) {
  for (const std::string args : {"eval --model /dev/zero --data digits --quiet", "analyze /dev/zero"}) {
    const CliRun r = run_cli(args);
    EXPECT_TRUE(follows_error_contract(r)) << args;
    EXPECT_NE(r.err.find("/dev/zero: not a regular file"), std::string::npos) << args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace aegis
