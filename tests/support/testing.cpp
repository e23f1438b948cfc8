#include "support/testing.h"

#include "nn/train.h"
#include "nn/zoo.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nn/functional.h"
#include "runtime/ops.h"

namespace aegis::testing {

Tensor random_tensor(const Shape& shape, std::uint64_t seed, float lo, float hi) {
  Tensor t = Tensor::empty(shape);
  ops::fill_uniform(t, philox::Key{seed, philox::kPurposeGeneric, 0}, lo, hi);
  return t;
}

std::vector<double> to_double(const Tensor& t) {
  std::vector<double> out;
  if (t.dtype() == DType::F32) {
    for (float v : t.to_vector<float>()) out.push_back(v);
  } else if (t.dtype() == DType::F64) {
    out = t.to_vector<double>();
  } else {
    for (auto v : t.to_vector<std::int32_t>()) out.push_back(v);
  }
  return out;
}

std::vector<double> flat_grads(nn::Module& m) {
  std::vector<double> out;
  for (const auto& [name, p] : m.named_parameters()) {
    const std::vector<double> g =
        p.has_grad() ? to_double(p.grad()) : std::vector<double>(static_cast<std::size_t>(p.value().numel()));
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

double norm_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

::testing::AssertionResult all_close(const std::vector<double>& actual, const std::vector<double>& expected,
                                     double rtol, double atol) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "size " << actual.size() << " != expected " << expected.size();
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (std::isnan(actual[i]) != std::isnan(expected[i]))
      return ::testing::AssertionFailure() << "NaN mismatch at " << i << ": " << actual[i] << " vs " << expected[i];
    const double r = std::fabs(actual[i] - expected[i]) / (atol + rtol * std::fabs(expected[i]));
    if (r > worst) {
      worst = r;
      at = i;
    }
  }
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "element " << at << ": " << actual[at] << " vs expected " << expected[at]
                                       << " (rtol " << rtol << ", atol " << atol << ")";
}

::testing::AssertionResult all_close(const Tensor& actual, const std::vector<double>& expected, double rtol,
                                     double atol) {
  return all_close(to_double(actual), expected, rtol, atol);
}

::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << actual.describe() << " vs " << expected.describe();
  return all_close(to_double(actual), to_double(expected), rtol, atol);
}

autograd::Var weighted_sum(const autograd::Var& y, std::uint64_t seed) {
  const std::int64_t n = y.value().numel();
  const Tensor r = random_tensor({1, n}, seed, 0.5f, 1.5f).to(y.device());
  // Σ r·y as a 1×1 linear layer over the flattened output.
  return nn::F::linear(nn::F::reshape(y, {1, n}), autograd::Var(r, false), autograd::Var());
}

::testing::AssertionResult gradcheck(const std::function<autograd::Var(const std::vector<autograd::Var>&)>& f,
                                     std::vector<autograd::Var> inputs, double h, double rtol, double atol) {
  for (auto& v : inputs) v.zero_grad();
  autograd::Var out = f(inputs);
  if (out.value().numel() != 1) return ::testing::AssertionFailure() << "gradcheck needs a scalar function";
  autograd::backward(out);
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    autograd::Var& v = inputs[k];
    if (!v.requires_grad()) continue;
    if (!v.has_grad()) return ::testing::AssertionFailure() << "input " << k << " received no gradient";
    const std::vector<double> analytic = to_double(v.grad());
    std::vector<double> numeric(analytic.size());
    Tensor host = v.value().to(Device::cpu()).clone();
    float* p = host.data<float>();
    for (std::size_t i = 0; i < numeric.size(); ++i) {
      const float saved = p[i];
      auto eval = [&](float value) {
        p[i] = value;
        v.mutable_value() = host.to(v.device()).clone();
        std::vector<autograd::Var> fresh;
        for (auto& u : inputs) fresh.emplace_back(u.value(), false);
        return f(fresh).value().item();
      };
      const Device dev = v.device();
      const double plus = eval(saved + static_cast<float>(h));
      const double minus = eval(saved - static_cast<float>(h));
      numeric[i] = (plus - minus) / (2.0 * h);
      p[i] = saved;
      v.mutable_value() = host.to(dev).clone();
    }
    auto r = all_close(analytic, numeric, rtol, atol);
    if (!r) return ::testing::AssertionFailure() << "input " << k << ": analytic vs numeric gradient: " << r.message();
  }
  return ::testing::AssertionSuccess();
}

bool gpu_available() {
  return cuda_device_count() > 0;
}

std::string make_temp_dir(const std::string& prefix) {
  struct Registry {
    std::vector<std::string> paths;
    ~Registry() {
      std::error_code ignored;
      for (const std::string& p : paths) std::filesystem::remove_all(p, ignored);
    }
  };
  static Registry made;
  std::string templ = ::testing::TempDir() + prefix + "_XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + templ);
  made.paths.emplace_back(buf.data());
  return made.paths.back();
}

std::string source_dir() {
  const char* env = std::getenv("AEGIS_SOURCE_DIR");
  return env && *env ? std::string(env) : std::string(AEGIS_SOURCE_DIR);
}

std::string cli_path() {
  const char* env = std::getenv("AEGIS_CLI");
  return env && *env ? std::string(env) : std::string(AEGIS_CLI_PATH);
}

CliRun run_command(const std::string& command) {
  static int calls = 0;
  const auto err_path = std::filesystem::temp_directory_path() /
                        ("aegis_cli_" + std::to_string(getpid()) + "_" + std::to_string(calls++) + ".stderr");
  const std::string cmd = command + " 2>" + err_path.string();
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p)) r.out += buf.data();
  const int raw = pclose(p);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  e.close();
  std::filesystem::remove(err_path);
  return r;
}

CliRun run_cli(const std::string& args) {
  return run_command(cli_path() + " " + args);
}

void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

const TrainedDigits& trained_digits_mlp() {
  static const TrainedDigits trained = [] {
    TrainedDigits out;
    const nn::DatasetSplit split = nn::load_dataset("digits", source_dir() + "/data");
    out.model = nn::build_model({"mlp", {1, 8, 8}, 10, "", 3});
    nn::TrainOptions opt;
    opt.epochs = 8;
    opt.batch_size = 64;
    opt.lr = 0.01f;
    opt.optimizer = nn::OptimizerKind::Adam;
    nn::train_classifier(*out.model, split.train, opt);
    out.test = split.test;
    return out;
  }();
  return trained;
}

nn::Dataset toy_dataset(std::int64_t n, std::uint64_t seed) {
  Tensor x = random_tensor({n, 1, 4, 4}, seed, 0.0f, 1.0f);
  std::vector<std::int32_t> y(static_cast<std::size_t>(n));
  const auto xv = x.to_vector<float>();
  for (std::int64_t i = 0; i < n; ++i) y[static_cast<std::size_t>(i)] = xv[16 * i] > xv[16 * i + 15] ? 1 : 0;
  return nn::Dataset{"toy", x, Tensor::from_vector(y, {n}), 2};
}

}  // namespace aegis::testing
