// End-to-end tests of the `aegis` command-line tool: JSON output, exit codes and messages for
// bad input, model files that round-trip through train and eval, and the Fashion-MNIST
// accuracy bar of the training loop.
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/device.h"
#include "support/testing.h"

namespace aegis {
namespace {

struct CliRun {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

CliRun run_cli(const std::string& args) {
  const auto dir = std::filesystem::temp_directory_path() / "aegis_cli_test";
  std::filesystem::create_directories(dir);
  const std::string err_path = (dir / "stderr.txt").string();
  const std::string cmd = std::string(AEGIS_CLI_PATH) + " " + args + " 2>" + err_path;
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p)) r.out += buf.data();
  const int raw = pclose(p);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  return r;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / name).string();
}

TEST(Cli, InfoReportsBackendsAsJson) {
  const CliRun r = run_cli("info --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["version"], AEGIS_VERSION);
  EXPECT_EQ(j["backends"][0], "cpu");
  EXPECT_EQ(j["backends"].size(), cuda_compiled() ? 2u : 1u);
  EXPECT_GE(j["devices"].size(), 1u);
}

TEST(Cli, TrainThenEvalOnBundledDigits) {
  const std::string model = temp_path("aegis_cli_digits.safetensors");
  const CliRun t = run_cli("train --data digits --model mlp --epochs 15 --batch-size 32 --device cpu --json "
                        "--quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const auto j = nlohmann::json::parse(t.out);
  // An MLP separates the 8x8 digits easily; 0.85 leaves room for the small 297-example test set.
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.85);
  EXPECT_EQ(j["model"], "mlp");
  const CliRun e = run_cli("eval --model " + model + " --data digits --device cpu --json --quiet");
  ASSERT_EQ(e.status, 0) << e.err;
  const auto k = nlohmann::json::parse(e.out);
  // The saved model evaluates to exactly the accuracy reported at the end of training.
  EXPECT_DOUBLE_EQ(k["test_accuracy"].get<double>(), j["test_accuracy"].get<double>());
  std::filesystem::remove(model);
}

TEST(Cli, BadInputGivesClearErrors) {
  struct Case {
    std::string args, needle;
  };
  const std::string model = temp_path("aegis_cli_never_written.safetensors");
  const Case cases[] = {
      {"train --data digits --model mlp --epochs 0 --quiet --out " + model, "epochs 0"},
      {"train --data digits --model mlp --lr -1 --quiet --out " + model, "learning rate -1"},
      {"train --data digits --model nosuch --quiet --out " + model, "unknown model 'nosuch'"},
      {"train --data nosuch --quiet --out " + model, "nosuch"},
      {"train --data mnist:/nonexistent/dir --quiet --out " + model, "/nonexistent/dir"},
      {"train --data digits --model cnn-fmnist --quiet --out " + model, "too small"},
      {"train --data digits --model mlp --device tpu --quiet --out " + model, "unknown device 'tpu'"},
      {"eval --model /nonexistent/model.safetensors --data digits --quiet", "/nonexistent/model.safetensors"},
  };
  for (const Case& c : cases) {
    const CliRun r = run_cli(c.args);
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find("aegis: error:"), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\nexpected '" << c.needle << "' in:\n" << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(model));
}

TEST(Cli, CorruptModelFileIsRejected) {
  const std::string path = temp_path("aegis_cli_corrupt.safetensors");
  std::ofstream(path, std::ios::binary) << "this is not a safetensors file";
  const CliRun r = run_cli("eval --model " + path + " --data digits --quiet");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  std::filesystem::remove(path);
}

TEST(Cli, CudaWithoutGpuIsAnErrorAndAutoFallsBack) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present: the fallback path cannot be exercised";
  const CliRun r = run_cli("train --data digits --model mlp --epochs 1 --device cuda --quiet --out " +
                        temp_path("aegis_cli_cuda.safetensors"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cuda"), std::string::npos) << r.err;
  const std::string model = temp_path("aegis_cli_auto.safetensors");
  const CliRun a = run_cli("train --data digits --model mlp --epochs 1 --device auto --out " + model);
  EXPECT_EQ(a.status, 0) << a.err;
  EXPECT_NE(a.err.find("running on the CPU"), std::string::npos) << a.err;
  std::filesystem::remove(model);
}

// The acceptance bar of the training loop: cnn-fmnist on Fashion-MNIST reaches 88% test accuracy
// within 5 epochs on the CPU with the CLI's defaults.
TEST(CliEndToEnd, FashionMnistCnnReaches88PercentIn5Epochs) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist") && !std::getenv("AEGIS_FASHION_MNIST_DIR"))
    GTEST_SKIP() << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  const std::string model = temp_path("aegis_cli_fmnist.safetensors");
  const CliRun r = run_cli("train --data fashion-mnist --model cnn-fmnist --epochs 5 --device cpu --json --quiet --out " +
                        model);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::printf("fashion-mnist cnn-fmnist: test accuracy %.4f in %.1f s (%.1f s/epoch)\n",
              j["test_accuracy"].get<double>(), j["train_seconds"].get<double>(),
              j["seconds_per_epoch"].get<double>());
  EXPECT_GE(j["test_accuracy"].get<double>(), 0.88);
  std::filesystem::remove(model);
}

}  // namespace
}  // namespace aegis
