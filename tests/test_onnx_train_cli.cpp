// `aegis train --init`: fine-tuning an imported ONNX model (plain, --dp, --adv) on the bundled
// digits and writing it back as ONNX, starting from an aegis model file, and the refusals of
// options that do not fit together. The fixture digits_bn (tests/onnx/make_fixtures.py) has the
// digits' shape, a BatchNorm folded into a bias-less convolution and a MatMul+Add.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "nn/model_file.h"
#include "nn/onnx_import.h"
#include "support/testing.h"

namespace aegis {
namespace {

#define REQUIRE_ONNX() \
  if (!nn::onnx_supported()) GTEST_SKIP() << "this build has no ONNX support (libonnx-dev was not found)"

std::string fixture_model(const std::string& name) {
  const char* env = std::getenv("AEGIS_ONNX_FIXTURES");
  const std::string dir = env && *env ? std::string(env) : testing::source_dir() + "/tests/onnx/fixtures";
  return dir + "/" + name + "/model.onnx";
}

nlohmann::json run_json(const std::string& args) {
  const testing::CliRun r = testing::run_cli(args);
  EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

// Whether any parameter of the two models differs.
bool parameters_differ(const nn::Module& a, const nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  EXPECT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < std::min(pa.size(), pb.size()); ++i)
    if (pa[i].second.value().to_vector<float>() != pb[i].second.value().to_vector<float>()) return true;
  return false;
}

const char* kTrain = "train --data digits --device cpu --batch-size 64 --seed 4 ";

TEST(TrainInit, FineTunesAnOnnxModelAndWritesOnnx) {
  REQUIRE_ONNX();
  const std::string source = fixture_model("digits_bn");
  const std::string dir = testing::make_temp_dir("train_init");
  const nlohmann::json before = run_json("eval --model " + source + " --data digits --device cpu --json --quiet");
  const nlohmann::json tuned = run_json(std::string(kTrain) + "--init " + source +
                                        " --epochs 5 --lr 0.01 --json --quiet --out " + dir + "/t.onnx");
  ASSERT_TRUE(tuned.contains("test_accuracy"));
  EXPECT_EQ(tuned["model"], source);
  // The fixture's random weights guess (measured 9.4%); five epochs on 1500 digits learn them
  // (measured 86%).
  EXPECT_GT(tuned["test_accuracy"].get<double>(), before["test_accuracy"].get<double>() + 0.5);
  const nn::LoadedClassifier a = nn::load_classifier(source), b = nn::load_classifier(dir + "/t.onnx");
  EXPECT_TRUE(parameters_differ(*a.model, *b.model));
  EXPECT_EQ(b.metadata.at("aegis.dataset"), "digits");
  EXPECT_EQ(b.metadata.at("aegis.init"), source);
  // The file holds the trained model: evaluating it gives the accuracy the run reported.
  const nlohmann::json after = run_json("eval --model " + dir + "/t.onnx --data digits --device cpu --json --quiet");
  EXPECT_NEAR(after["test_accuracy"].get<double>(), tuned["test_accuracy"].get<double>(), 1e-9);
}

TEST(TrainInit, DpWritesTheLedgerIntoTheOnnxMetadata) {
  REQUIRE_ONNX();
  const std::string source = fixture_model("digits_bn");
  const std::string dir = testing::make_temp_dir("train_init_dp");
  const std::string out = dir + "/dp.onnx";
  const testing::CliRun r =
      testing::run_cli(std::string(kTrain) + "--init " + source +
                       " --dp --noise-multiplier 1.0 --max-grad-norm 1 --epochs 1 --json --out " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("1 BatchNorm layer(s) are frozen"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("GroupNorm"), std::string::npos) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const nn::LoadedClassifier m = nn::load_classifier(out);
  for (const char* key : {"aegis.dp.phases", "aegis.dp.epsilon", "aegis.dp.delta", "aegis.dp.max_grad_norm",
                          "aegis.dp.accountant", "aegis.ledger_digest", "aegis.dataset"})
    EXPECT_TRUE(m.metadata.count(key)) << key;
  EXPECT_EQ(m.metadata.at("aegis.dp.accountant"), "rdp");
  // The digest covers the weights as written: read back, the ledger verifies, with the run's ε.
  const nlohmann::json e = run_json("eval --model " + out + " --data digits --device cpu --json --quiet");
  EXPECT_EQ(e["ledger_status"], "verified") << e.dump();
  const nlohmann::json info = run_json("report " + out + " --json");
  EXPECT_NEAR(info["ledger"]["epsilon"].get<double>(), j["epsilon"].get<double>(), 1e-9) << info.dump();
}

// A DP ONNX file is continued with --resume (the ledgers compose), not restarted with --init.
TEST(TrainInit, DpOnnxResumesAndRefusesAFreshLedger) {
  REQUIRE_ONNX();
  const std::string dir = testing::make_temp_dir("train_init_resume");
  const std::string first = dir + "/a.onnx", second = dir + "/b.onnx";
  const std::string dp = "--dp --noise-multiplier 1.0 --max-grad-norm 1 --epochs 1 --json --quiet ";
  const nlohmann::json a =
      run_json(std::string(kTrain) + dp + "--init " + fixture_model("digits_bn") + " --out " + first);
  const nlohmann::json b = run_json(std::string(kTrain) + dp + "--resume " + first + " --out " + second);
  EXPECT_EQ(b["total_steps"].get<std::int64_t>(), 2 * a["total_steps"].get<std::int64_t>());
  EXPECT_GT(b["epsilon"].get<double>(), a["epsilon"].get<double>());
  const nlohmann::json e = run_json("eval --model " + second + " --data digits --device cpu --json --quiet");
  EXPECT_EQ(e["ledger_status"], "verified") << e.dump();
  const testing::CliRun r =
      testing::run_cli(std::string(kTrain) + dp + "--init " + first + " --out " + dir + "/c.onnx");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("carries a privacy ledger from an earlier DP run: continue it with --resume"), std::string::npos)
      << r.err;
}

TEST(TrainInit, AdversarialFineTuning) {
  REQUIRE_ONNX();
  const std::string dir = testing::make_temp_dir("train_init_adv");
  const std::string out = dir + "/adv.onnx";
  const nlohmann::json j = run_json(std::string(kTrain) + "--init " + fixture_model("digits_bn") +
                                    " --adv fgsm-rs --eps 0.05 --epochs 1 --json --quiet --out " + out);
  EXPECT_EQ(j["adv_method"], "fgsm-rs");
  const nn::LoadedClassifier m = nn::load_classifier(out);
  EXPECT_EQ(m.metadata.at("aegis.adv_method"), "fgsm-rs");
}

TEST(TrainInit, StartsFromAnAegisModelFile) {
  const std::string dir = testing::make_temp_dir("train_init_st");
  const std::string first = dir + "/a.safetensors", second = dir + "/b.safetensors";
  run_json(std::string(kTrain) + "--model mlp --epochs 1 --json --quiet --out " + first);
  const nlohmann::json j =
      run_json(std::string(kTrain) + "--init " + first + " --epochs 1 --json --quiet --out " + second);
  EXPECT_EQ(j["model"], first);
  const nn::LoadedClassifier a = nn::load_classifier(first), b = nn::load_classifier(second);
  EXPECT_EQ(b.spec.name, "mlp");
  EXPECT_TRUE(parameters_differ(*a.model, *b.model));
}

TEST(TrainInit, RefusalsAreOneClearLine) {
  REQUIRE_ONNX();
  const std::string dir = testing::make_temp_dir("train_init_bad");
  const std::string digits = fixture_model("digits_bn");
  const std::string base = std::string(kTrain) + "--epochs 1 --quiet ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--model mlp --init " + digits + " --out " + dir + "/x.onnx", "--model excludes --init"},
      {"--activation tanh --init " + digits + " --out " + dir + "/x.onnx", "--activation excludes --init"},
      {"--init " + digits + " --out " + dir + "/x.safetensors", "is written back as ONNX: give a path ending in .onnx"},
      {"--model mlp --out " + dir + "/x.onnx", "aegis writes ONNX only for a model imported from an ONNX file"},
      {"--init " + fixture_model("resnet_bn") + " --out " + dir + "/x.onnx", "takes inputs [3, 8, 8]"},
      {"--init " + dir + "/missing.onnx --out " + dir + "/x.onnx", "cannot open"},
      {"--dp --noise-multiplier 1 --resume " + dir + "/r.safetensors --init " + digits + " --out " + dir + "/x.onnx",
       "--resume and --init both name the model"},
  };
  for (const auto& [args, fragment] : cases) {
    const testing::CliRun r = testing::run_cli(base + args);
    EXPECT_EQ(r.status, 1) << args;
    EXPECT_EQ(r.err.rfind("aegis: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
  }
}

}  // namespace
}  // namespace aegis
