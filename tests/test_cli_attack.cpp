// End-to-end tests of `aegis attack` and `aegis train --adv`: JSON keys and their invariants,
// PGD at least as strong as FGSM on a trained digits mlp, --save-adv files that load, and exit
// status 1 with a message for bad input.
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/serialize.h"
#include "support/testing.h"

namespace aegis {
namespace {

using testing::CliRun;
using testing::run_cli;

// One folder per test program, removed at exit: two runs at once never share a path.
std::string temp_path(const std::string& name) {
  static const std::string dir = testing::make_temp_dir("aegis_tests");
  return (std::filesystem::path(dir) / name).string();
}

// One standard digits mlp shared by the tests of this file.
const std::string& trained_model() {
  static const std::string path = [] {
    const std::string p = temp_path("aegis_cli_attack_digits.safetensors");
    const CliRun t = run_cli("train --data digits --model mlp --epochs 15 --batch-size 32 --device cpu --quiet --out " + p);
    EXPECT_EQ(t.status, 0) << t.err;
    return p;
  }();
  return path;
}

nlohmann::json attack_json(const std::string& args) {
  const CliRun r = run_cli("attack --model " + trained_model() + " --data digits --device cpu --json --quiet " + args);
  EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

TEST(CliAttack, JsonKeysAndInvariants) {
  const auto j = attack_json("--attack pgd-linf --eps 0.1 --steps 10 --max 200");
  for (const char* key : {"clean_accuracy", "robust_accuracy", "attack_success_rate", "mean_perturbation_norm",
                          "median_perturbation_norm", "seconds", "attack", "eps", "steps"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["examples"].get<int>(), 200);
  EXPECT_EQ(j["attack"], "pgd-linf");
  const double clean = j["clean_accuracy"], robust = j["robust_accuracy"], rate = j["attack_success_rate"];
  EXPECT_LE(robust, clean);
  EXPECT_GE(rate, 0.0);
  EXPECT_LE(rate, 1.0);
  // Untargeted: the broken clean-correct examples are exactly the accuracy lost
  // (1e-12: a few double divisions of counts ≤ 200).
  EXPECT_NEAR(clean - robust, rate * clean, 1e-12);
  // Successful L∞ perturbations lie in the ball (float rounding is kept inside, kernels/attack_step.h).
  EXPECT_LE(j["median_perturbation_norm"].get<double>(), 0.1 + 1e-6);
  EXPECT_LE(j["mean_perturbation_norm"].get<double>(), 0.1 + 1e-6);
  if (rate > 0) {
    EXPECT_GT(j["median_perturbation_norm"].get<double>(), 0.0);
  }
}

TEST(CliAttack, PgdIsAtLeastAsStrongAsFgsm) {
  const auto fgsm = attack_json("--attack fgsm --eps 0.1");
  const auto pgd = attack_json("--attack pgd-linf --eps 0.1 --steps 20");
  EXPECT_DOUBLE_EQ(fgsm["clean_accuracy"].get<double>(), pgd["clean_accuracy"].get<double>());
  EXPECT_LE(pgd["robust_accuracy"].get<double>(), fgsm["robust_accuracy"].get<double>());
  const auto targeted = attack_json("--attack pgd-linf --eps 0.2 --steps 20 --targeted --max 100");
  EXPECT_TRUE(targeted["targeted"].get<bool>());
  EXPECT_LE(targeted["robust_accuracy"].get<double>(), targeted["clean_accuracy"].get<double>());
}

TEST(CliAttack, SuiteReportsWorstCase) {
  const auto j = attack_json("--attack suite --eps 0.1 --steps 5 --max 100");
  ASSERT_TRUE(j.contains("per_attack"));
  for (const auto& [name, acc] : j["per_attack"].items()) EXPECT_LE(j["robust_accuracy"].get<double>(), acc.get<double>()) << name;
  EXPECT_TRUE(j["warnings"].is_array());
}

TEST(CliAttack, SaveAdvWritesLoadableSafetensors) {
  const std::string path = temp_path("aegis_cli_attack_adv.safetensors");
  const auto j = attack_json("--attack bim --eps 0.05 --steps 5 --max 50 --save-adv " + path);
  const nn::SafetensorsFile f = nn::load_safetensors(path);
  ASSERT_EQ(f.tensors.count("adversarial"), 1u);
  ASSERT_EQ(f.tensors.count("labels"), 1u);
  EXPECT_EQ(f.tensors.at("adversarial").shape(), (Shape{50, 1, 8, 8}));
  EXPECT_EQ(f.tensors.at("adversarial").dtype(), DType::F32);
  EXPECT_EQ(f.tensors.at("labels").shape(), (Shape{50}));
  EXPECT_EQ(f.tensors.at("labels").dtype(), DType::I32);
  for (float v : f.tensors.at("adversarial").to_vector<float>()) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LE(v, 1.0f);
  }
  std::filesystem::remove(path);
}

TEST(CliAttack, AdversarialTrainingReportsMethodAndEps) {
  const std::string model = temp_path("aegis_cli_attack_adv_model.safetensors");
  const CliRun t = run_cli("train --data digits --model mlp --epochs 2 --batch-size 32 --adv fgsm-rs --eps 0.1 "
                           "--device cpu --json --quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const auto j = nlohmann::json::parse(t.out);
  EXPECT_EQ(j["adv_method"], "fgsm-rs");
  EXPECT_FLOAT_EQ(j["adv_eps"].get<float>(), 0.1f);
  std::filesystem::remove(model);
}

TEST(CliAttack, BadInputGivesClearErrors) {
  struct Case {
    std::string args, needle;
  };
  const std::string m = trained_model();
  const std::string not_a_model = temp_path("aegis_cli_attack_not_a_model.safetensors");
  std::ofstream(not_a_model, std::ios::binary) << "definitely not safetensors";
  const std::string out = temp_path("aegis_cli_attack_never.safetensors");
  const Case cases[] = {
      {"attack --model " + m + " --data digits --attack pgd-linf --eps -0.1 --quiet", "--eps: -0.1 is not in [0, "},
      {"attack --model " + m + " --data digits --attack pgd-linf --eps 0.1 --steps 0 --quiet",
       "--steps: 0 is not in [1, "},
      {"attack --model " + m + " --data digits --attack sideways --eps 0.1 --quiet", "unknown attack 'sideways'"},
      {"attack --model " + not_a_model + " --data digits --attack fgsm --eps 0.1 --quiet", not_a_model},
      {"train --data digits --model mlp --adv free --eps 0.1 --dp --noise-multiplier 1 --quiet --out " + out,
       "free adversarial training cannot run under DP-SGD"},
      {"train --data digits --model mlp --adv pgd --eps 0.1 --noise-sigma 0.25 --quiet --out " + out,
       "--adv and --noise-sigma"},
      {"train --data digits --model mlp --augmult 4 --quiet --out " + out, "--augmult needs --dp"},
      {"train --data digits --model mlp --adv pgd --quiet --out " + out, "--adv needs --eps"},
      {"train --data digits --model mlp --adv sideways --eps 0.1 --quiet --out " + out, "'sideways'"},
  };
  for (const Case& c : cases) {
    const CliRun r = run_cli(c.args);
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find("aegis: error:"), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\nexpected '" << c.needle << "' in:\n" << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(out));
  std::filesystem::remove(not_a_model);
}

std::vector<std::vector<std::string>> read_tsv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::size_t start = 0;
    for (std::size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
      cells.push_back(line.substr(start, tab - start));
    cells.push_back(line.substr(start));
    rows.push_back(cells);
  }
  return rows;
}

TEST(CliAttack, FgsmReportsNoStepsAndApgdDefaultsToOneHundred) {
  const auto fgsm = attack_json("--attack fgsm --eps 0.1 --max 20");
  EXPECT_FALSE(fgsm.contains("steps"));
  EXPECT_FALSE(fgsm.contains("restarts"));
  const auto apgd = attack_json("--attack apgd-ce --eps 0.1 --max 5");
  EXPECT_EQ(apgd["steps"].get<int>(), 100);
  EXPECT_EQ(apgd["restarts"].get<int>(), 1);
}

TEST(CliAttack, CwL2RunsWithoutEpsAndReportsItsControls) {
  const auto j = attack_json(
      "--attack cw-l2 --steps 20 --binary-search-steps 2 --c 0.5 --kappa 0.1 --lr 0.05 "
      "--no-abort --max 10");
  EXPECT_TRUE(j["eps"].is_null());
  EXPECT_EQ(j["steps"].get<int>(), 20);
  EXPECT_EQ(j["binary_search_steps"].get<int>(), 2);
  EXPECT_FLOAT_EQ(j["c"].get<float>(), 0.5f);
  EXPECT_FLOAT_EQ(j["kappa"].get<float>(), 0.1f);
  EXPECT_FLOAT_EQ(j["lr"].get<float>(), 0.05f);
  EXPECT_FALSE(j["abort_early"].get<bool>());
  EXPECT_LE(j["robust_accuracy"].get<double>(), j["clean_accuracy"].get<double>());
}

TEST(CliAttack, ApgdTFabTAndSquareWithPerExampleRows) {
  const std::string tsv = temp_path("aegis_cli_attack_apgdt.tsv");
  const auto t = attack_json("--attack apgd-t --eps 0.1 --steps 10 --target-classes 3 --max 20 --per-example " + tsv);
  EXPECT_EQ(t["target_classes"].get<int>(), 3);
  const auto rows = read_tsv(tsv);
  ASSERT_EQ(rows.size(), 21u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"idx", "label", "clean_predict", "adv_predict", "broken_by",
                                               "perturbation_norm"}));
  std::int64_t robust = 0;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 6u);
    EXPECT_EQ(rows[i][0], std::to_string(i - 1));
    robust += rows[i][4] == "-";
    if (rows[i][4] == "-") {
      EXPECT_EQ(rows[i][1], rows[i][3]);
    }
    if (rows[i][4] == "apgd-t") {
      EXPECT_NE(rows[i][1], rows[i][3]);
    }
    EXPECT_LE(std::stod(rows[i][5]), 0.1 + 1e-6);
  }
  EXPECT_NEAR(t["robust_accuracy"].get<double>(), robust / 20.0, 1e-12);
  const auto fab = attack_json("--attack fab-t --norm l2 --eps 0.5 --steps 10 --target-classes 2 --max 20");
  EXPECT_EQ(fab["norm"], "l2");
  EXPECT_EQ(fab["target_classes"].get<int>(), 2);
  EXPECT_LE(fab["median_perturbation_norm"].get<double>(), 0.5 + 1e-6);
  EXPECT_EQ(fab["final_search_steps"].get<int>(), 3);
  EXPECT_EQ(fab["restarts"].get<int>(), 1);
  const auto fab2 = attack_json("--attack fab-t --norm l2 --eps 0.5 --steps 10 --target-classes 2 --max 20 "
                                "--restarts 2 --final-search 0");
  EXPECT_EQ(fab2["final_search_steps"].get<int>(), 0);
  EXPECT_EQ(fab2["restarts"].get<int>(), 2);
  EXPECT_LE(fab2["median_perturbation_norm"].get<double>(), 0.5 + 1e-6);
  const auto sq = attack_json("--attack square --eps 0.1 --queries 40 --max 20");
  EXPECT_EQ(sq["queries"].get<int>(), 40);
  EXPECT_EQ(sq["square_proposals"], "shared");
  EXPECT_FALSE(sq.contains("steps"));
  const auto own = attack_json("--attack square --eps 0.1 --queries 40 --max 20 --square-proposals per-example");
  EXPECT_EQ(own["square_proposals"], "per-example");
  EXPECT_LE(own["robust_accuracy"].get<double>(), own["clean_accuracy"].get<double>());
  EXPECT_LE(sq["robust_accuracy"].get<double>(), sq["clean_accuracy"].get<double>());
  std::filesystem::remove(tsv);
}

TEST(CliAttack, AutoAttackWritesWorstCasePointsAndRows) {
  const std::string adv = temp_path("aegis_cli_attack_aa.safetensors"), tsv = temp_path("aegis_cli_attack_aa.tsv");
  const auto j = attack_json("--attack autoattack --eps 0.1 --steps 10 --queries 30 --max 30 --save-adv " + adv +
                             " --per-example " + tsv);
  EXPECT_EQ(j["version"], "standard");
  EXPECT_TRUE(j["missing"].empty());
  EXPECT_EQ(j["sequence"], nlohmann::json::array({"apgd-ce", "apgd-t", "fab-t", "square"}));
  EXPECT_EQ(j["square_proposals"], "shared");
  const auto rows = read_tsv(tsv);
  ASSERT_EQ(rows.size(), 31u);
  std::int64_t robust = 0;
  for (std::size_t i = 1; i < rows.size(); ++i) robust += rows[i][4] == "-";
  EXPECT_NEAR(j["robust_accuracy"].get<double>(), robust / 30.0, 1e-12);
  const nn::SafetensorsFile f = nn::load_safetensors(adv);
  EXPECT_EQ(f.tensors.at("adversarial").shape(), (Shape{30, 1, 8, 8}));
  for (float v : f.tensors.at("adversarial").to_vector<float>()) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LE(v, 1.0f);
  }
  // The suite's worst-case points as well.
  const auto s = attack_json("--attack suite --eps 0.1 --steps 5 --max 30 --save-adv " + adv);
  EXPECT_EQ(s["steps"].get<int>(), 5);
  EXPECT_EQ(nn::load_safetensors(adv).tensors.at("adversarial").shape(), (Shape{30, 1, 8, 8}));
  const auto rand = attack_json("--attack autoattack --version rand --eot 2 --eps 0.1 --steps 5 --max 10");
  EXPECT_EQ(rand["sequence"], nlohmann::json::array({"apgd-ce", "apgd-dlr"}));
  EXPECT_EQ(rand["eot_draws"].get<int>(), 2);
  std::filesystem::remove(adv);
  std::filesystem::remove(tsv);
}

TEST(CliAttack, BpdaBreaksTheBitDepthReductionDefense) {
  const auto masked = attack_json("--attack bim --eps 0.3 --steps 10 --input-bits 1 --max 60");
  const auto bpda = attack_json("--attack bim --eps 0.3 --steps 10 --input-bits 1 --bpda --max 60");
  EXPECT_EQ(masked["input_bits"].get<int>(), 1);
  EXPECT_TRUE(bpda["bpda"].get<bool>());
  EXPECT_DOUBLE_EQ(masked["clean_accuracy"].get<double>(), bpda["clean_accuracy"].get<double>());
  // Without BPDA the gradient through the rounding is 0: BIM cannot move, nothing breaks.
  EXPECT_DOUBLE_EQ(masked["robust_accuracy"].get<double>(), masked["clean_accuracy"].get<double>());
  EXPECT_LT(bpda["robust_accuracy"].get<double>(), masked["robust_accuracy"].get<double>());
}

TEST(CliAttack, PgdWithEotAgainstAPixelDpNetwork) {
  const std::string model = temp_path("aegis_cli_attack_pixeldp.safetensors");
  const CliRun t = run_cli("pixeldp train --data digits --model mlp --epochs 2 --quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const CliRun r = run_cli("attack --model " + model +
                           " --pixeldp --data digits --attack pgd-linf --eps 0.1 "
                           "--steps 5 --eot 4 --max 30 --device cpu --json --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["pixeldp"].get<bool>());
  EXPECT_EQ(j["eot_draws"].get<int>(), 4);
  EXPECT_LE(j["median_perturbation_norm"].get<double>(), 0.1 + 1e-6);
  // --eot does not apply to score-based or minimal-norm attacks.
  const CliRun bad = run_cli("attack --model " + model +
                             " --pixeldp --data digits --attack square --eps 0.1 --eot 4 "
                             "--quiet");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--eot applies to"), std::string::npos) << bad.err;
  // --vote judges the predictions by the majority over K noisy passes.
  const CliRun voted = run_cli("attack --model " + model +
                               " --pixeldp --data digits --attack pgd-linf --eps 0.1 --steps 5 --eot 4 --vote 9 "
                               "--max 30 --device cpu --json --quiet");
  ASSERT_EQ(voted.status, 0) << voted.err;
  EXPECT_EQ(nlohmann::json::parse(voted.out)["vote_draws"].get<int>(), 9);
  const CliRun suite = run_cli("attack --model " + model +
                               " --pixeldp --data digits --attack suite --eps 0.1 --vote 9 --quiet");
  EXPECT_EQ(suite.status, 1);
  EXPECT_NE(suite.err.find("--vote applies to single attacks"), std::string::npos) << suite.err;
  std::filesystem::remove(model);
}

TEST(CliAttack, EveryParseErrorIsOneLineWithStatusOne) {
  const std::string m = trained_model();
  const std::string cases[] = {
      "attack --data digits --attack fgsm --eps 0.1",      // missing --model
      "attack --model " + m + " --data digits --eps 0.1",  // missing --attack
      "attack --model " + m + " --data digits --attack pgd-linf --eps 0.1 --step-size 0",
      "attack --model " + m + " --data digits --attack fgsm --eps 0.1 --no-such-option",
      "attack --model " + m + " --data digits --attack fgsm --eps",  // value missing
      "attack --model " + m + " --data digits --attack pgd-linf",    // --eps required here
      "attack --model " + m + " --data digits --attack fgsm --eps 0.1 --version rand",
      "attack --model " + m + " --data digits --attack apgd-t --eps 0.1 --targeted",
      "attack --model " + m + " --data digits --attack pgd-linf --eps 0.1 --norm l2",
      "attack --model " + m + " --data digits --attack pgd-linf --eps 0.1 --square-proposals shared",
      "attack --model " + m + " --data digits --attack square --eps 0.1 --square-proposals sideways",
      "attack --model " + m + " --data digits --attack pgd-linf --eps 0.1 --final-search 2",
  };
  for (const std::string& args : cases) {
    const CliRun r = run_cli(args + " --quiet");
    EXPECT_EQ(r.status, 1) << args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("aegis: error: ", 0), 0u) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace aegis
