// Shared helpers for the test suites: random tensors, comparisons, finite-difference gradient
// checks and the skip rule for CUDA-vs-CPU tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/data/dataset.h"
#include "nn/module.h"
#include "runtime/autograd.h"
#include "runtime/tensor.h"

namespace aegis::testing {

// Uniform values in [lo, hi) from a fixed seed (never zeros: they hide unwritten outputs).
Tensor random_tensor(const Shape& shape, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<double> to_double(const Tensor& t);
// Every parameter gradient of `m`, flattened in named_parameters() order (zeros where none).
std::vector<double> flat_grads(nn::Module& m);
// The Euclidean norm of v, in double.
double norm_of(const std::vector<double>& v);

// max_i |a_i − b_i| / (atol + rtol·|b_i|) ≤ 1, reported with the worst index on failure.
::testing::AssertionResult all_close(const std::vector<double>& actual, const std::vector<double>& expected,
                                     double rtol, double atol);
::testing::AssertionResult all_close(const Tensor& actual, const std::vector<double>& expected, double rtol,
                                     double atol);
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double rtol, double atol);

// Central finite differences of the scalar f(inputs) w.r.t. every element of every input that
// requires a gradient, compared with the gradients that backward() produces. f must build a
// fresh graph from the given Vars on each call. Step h in float32: truncation O(h²) and
// rounding O(ε/h) balance near h = 1e-2 for O(1) values.
::testing::AssertionResult gradcheck(const std::function<autograd::Var(const std::vector<autograd::Var>&)>& f,
                                     std::vector<autograd::Var> inputs, double h = 1e-2, double rtol = 2e-2,
                                     double atol = 2e-3);

// A fixed random weighting r of an op's output, so that a vector-valued op is checked through
// the scalar Σ r·y (every output element contributes with its own weight).
autograd::Var weighted_sum(const autograd::Var& y, std::uint64_t seed);

bool gpu_available();

// Where the tests find the source tree (bundled data) and the aegis binary: the environment
// variables AEGIS_SOURCE_DIR and AEGIS_CLI when set (a packed build run on another machine,
// tools/gpu_check.sh), otherwise the paths this build was configured with.
std::string source_dir();
std::string cli_path();

// A fresh directory under the test temp dir whose name starts with `prefix`; every directory
// made this way is removed when the test program exits.
std::string make_temp_dir(const std::string& prefix);
// Runs the aegis command-line tool with `args` (a shell-quoted string) and collects its exit
// status, stdout and stderr (through a per-process temporary file, so suites may run in parallel).
struct CliRun {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
CliRun run_cli(const std::string& args);
// A shell command line (its stderr captured through a temporary file), as run_cli runs aegis.
CliRun run_command(const std::string& command);

// Runs f, which must throw E whose message names `path` and contains `fragment`.
template <class E, class F>
void expect_error(F&& f, const std::string& path, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an error naming " << path << " (" << fragment << ")";
  } catch (const E& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << "message does not name the file: " << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << "message lacks '" << fragment << "': " << what;
  }
}

// The bundled digits' mlp (Flatten, Linear(64, 256), ReLU, Linear(256, 10), seed 3) trained for 8
// epochs with Adam 0.01, batch 64 (about 92% test accuracy), and the digits test split; trained
// once per test program.
struct TrainedDigits {
  std::shared_ptr<nn::Module> model;
  nn::Dataset test;
};
const TrainedDigits& trained_digits_mlp();

// A two-class toy set: n random 1×4×4 images in [0, 1) (random_tensor with `seed`), labelled 1
// when the first pixel exceeds the last. Small enough for DP-SGD tests that train in seconds.
nn::Dataset toy_dataset(std::int64_t n, std::uint64_t seed);

// Writes `bytes` to `path` (truncating); a failure is a test failure naming the path.
void write_file(const std::string& path, const std::vector<unsigned char>& bytes);
}  // namespace aegis::testing

// CUDA-vs-CPU tests begin with this: it skips, printing why, when no GPU can run them.
#define AEGIS_REQUIRE_GPU()                                                                  \
  do {                                                                                       \
    if (!::aegis::testing::gpu_available())                                                  \
      GTEST_SKIP() << (::aegis::cuda_compiled() ? "no usable CUDA device on this machine"    \
                                                : "this build has no CUDA backend");         \
  } while (0)
