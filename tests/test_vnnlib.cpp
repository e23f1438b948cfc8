// VNN-LIB properties (certify/vnnlib.h, certify/vnnlib_verify.h): the reader on good files (boxes,
// linear terms, disjunctions over outputs and over input boxes) and on malformed ones (line and
// column, what was expected; every truncation of a good file is read or refused, never a crash);
// spec_lower_bounds on a general box; unsat, sat (the counterexample checked by a forward pass)
// and unknown on the MLP fixture; robustness properties answered as certify::verify decides;
// `aegis verify --vnnlib` and `--instances`.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "certify/vnnlib.h"
#include "certify/vnnlib_verify.h"
#include "core/norm.h"
#include "nn/onnx_import.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::parse_vnnlib;
using certify::VnnAnswer;

#define REQUIRE_ONNX() \
  if (!nn::onnx_supported()) GTEST_SKIP() << "this build has no ONNX support (libonnx-dev was not found)"

std::string declarations(int inputs, int outputs) {
  std::string s;
  for (int i = 0; i < inputs; ++i) s += "(declare-const X_" + std::to_string(i) + " Real)\n";
  for (int j = 0; j < outputs; ++j) s += "(declare-const Y_" + std::to_string(j) + " Real)\n";
  return s;
}

std::string box(int inputs, double lo, double hi) {
  std::ostringstream s;
  s.precision(17);
  for (int i = 0; i < inputs; ++i)
    s << "(assert (>= X_" << i << " " << lo << "))\n(assert (<= X_" << i << " " << hi << "))\n";
  return s.str();
}

const std::string kGood = "; a property\n" + declarations(2, 3) +
                          "(assert (<= X_0 0.5))\n(assert (>= X_0 -0.5))\n(assert (<= X_1 1e-1))\n"
                          "(assert (>= X_1 (- 0.25)))\n"
                          "(assert (or (and (<= Y_0 Y_1) (>= (+ Y_2 (* 2 Y_0)) 0.3)) (and (< (- Y_1 Y_2) -1))))\n";

TEST(VnnlibParser, ReadsBoxesAndDisjunctionsOfLinearConstraints) {
  const certify::VnnProperty p = parse_vnnlib(kGood, "good.vnnlib");
  EXPECT_EQ(p.num_inputs, 2);
  EXPECT_EQ(p.num_outputs, 3);
  ASSERT_EQ(p.disjuncts.size(), 2u);
  for (const auto& d : p.disjuncts) {
    EXPECT_EQ(d.lower, (std::vector<double>{-0.5, -0.25}));
    EXPECT_EQ(d.upper, (std::vector<double>{0.5, 0.1}));
  }
  // Y_0 − Y_1 ≤ 0; 0.3 − Y_2 − 2Y_0 ≤ 0; Y_1 − Y_2 + 1 < 0.
  ASSERT_EQ(p.disjuncts[0].constraints.size(), 2u);
  EXPECT_EQ(p.disjuncts[0].constraints[0].coef, (std::vector<double>{1, -1, 0}));
  EXPECT_EQ(p.disjuncts[0].constraints[0].constant, 0.0);
  EXPECT_FALSE(p.disjuncts[0].constraints[0].strict);
  EXPECT_EQ(p.disjuncts[0].constraints[1].coef, (std::vector<double>{-2, 0, -1}));
  EXPECT_DOUBLE_EQ(p.disjuncts[0].constraints[1].constant, 0.3);
  ASSERT_EQ(p.disjuncts[1].constraints.size(), 1u);
  EXPECT_EQ(p.disjuncts[1].constraints[0].coef, (std::vector<double>{0, 1, -1}));
  EXPECT_EQ(p.disjuncts[1].constraints[0].constant, 1.0);
  EXPECT_TRUE(p.disjuncts[1].constraints[0].strict);
}

TEST(VnnlibParser, ReadsDisjunctionsOverInputBoxes) {
  const std::string text = declarations(1, 2) +
                           "(assert (or (and (>= X_0 0) (<= X_0 0.5) (>= Y_0 Y_1))\n"
                           "            (and (>= X_0 0.5) (<= X_0 1) (>= Y_1 Y_0))\n"
                           "            (and (>= X_0 2) (<= X_0 1) (>= Y_1 Y_0))))\n";  // an empty box: dropped
  const certify::VnnProperty p = parse_vnnlib(text, "boxes.vnnlib");
  ASSERT_EQ(p.disjuncts.size(), 2u);
  EXPECT_EQ(p.disjuncts[0].upper[0], 0.5);
  EXPECT_EQ(p.disjuncts[1].lower[0], 0.5);
  EXPECT_EQ(p.disjuncts[1].constraints[0].coef, (std::vector<double>{1, -1}));
}

TEST(VnnlibParser, RefusesMalformedFilesWithLineAndColumn) {
  const std::string d = declarations(1, 1);                            // lines 1-2
  const std::string b = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n";  // lines 3-4
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {d + b + "(assert (<= Y_0 1)", {"bad.vnnlib:5:1", "never closed"}},
      {d + b + "(assert (<= Y_0 1)))", {"bad.vnnlib:5:20", "unexpected ')'"}},
      {d + b + "(assert (<= Y_1 1))", {"bad.vnnlib:5:13", "'Y_1' is not declared"}},
      {d + b + "(assert (<= Z_0 1))", {"bad.vnnlib:5:13", "unknown variable 'Z_0'"}},
      {d + b + "(assert (<= (* Y_0 Y_0) 1))", {"bad.vnnlib:5:20", "non-linear"}},
      {d + b + "(assert (<= (+ Y_0 X_0) 1))", {"bad.vnnlib:5:9", "mixes inputs and outputs"}},
      {d + b + "(assert (= Y_0 1))", {"bad.vnnlib:5:10", "unknown operator '='"}},
      {d + b + "(assert (<= Y_0 1.5.2))", {"bad.vnnlib:5:17", "expected a number"}},
      {d + b + "(check-sat)", {"bad.vnnlib:5:2", "unknown command 'check-sat'"}},
      {d + b + "(assert (<= Y_0))", {"bad.vnnlib:5:9", "compares two terms"}},
      {d + "(assert (>= X_0 0))\n(assert (<= Y_0 1))", {"bad.vnnlib", "X_0 has no upper bound"}},
      {d + b + "(declare-const X_0 Real)", {"bad.vnnlib:5:16", "declared twice"}},
      {"(declare-const X_1 Real)\n(declare-const Y_0 Real)\n", {"bad.vnnlib", "X_0 is not declared"}},
      {d + b + "(declare-const X_1 Int)", {"bad.vnnlib:5:20", "sort Real"}},
      {d + b + "(assert (<= (+ X_0 X_0 (* -1 X_0) (* 2 Y_0)) 1))", {"bad.vnnlib:5:9", "mixes"}},
      {std::string(300, '('), {"bad.vnnlib:1:257", "nested more than 256"}},
  };
  for (const auto& c : cases) {  // not a structured binding: lambdas capture those only from C++20 on
    const std::string& text = c.first;
    SCOPED_TRACE(text);
    testing::expect_error<IoError>([&] { parse_vnnlib(text, "bad.vnnlib"); }, c.second[0], c.second[1]);
  }
}

TEST(VnnlibParser, EveryTruncationIsReadOrRefused) {
  // Fuzz-style: every prefix and every one-byte corruption of a good file gives a property or
  // an aegis::Error, never another exception or a crash.
  int refused = 0;
  for (std::size_t n = 0; n <= kGood.size(); ++n) {
    try {
      parse_vnnlib(kGood.substr(0, n), "cut.vnnlib");
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, static_cast<int>(kGood.size() / 2));
  for (std::size_t i = 0; i < kGood.size(); ++i)
    for (const char c : {'(', ')', 'X', '0', ' ', '\0', '-'}) {
      std::string s = kGood;
      s[i] = c;
      try {
        parse_vnnlib(s, "flip.vnnlib");
      } catch (const Error&) {
      }
    }
}

std::shared_ptr<nn::GraphModule> mlp() {
  return nn::load_onnx(testing::source_dir() + "/tests/onnx/fixtures/mlp/model.onnx").model;
}

std::vector<float> outputs(nn::Module& m, const std::vector<float>& x) {
  nn::FrozenScope frozen(m);
  return m.forward(autograd::Var(Tensor::from_vector(x, {1, static_cast<std::int64_t>(x.size())})))
      .value()
      .to_vector<float>();
}

TEST(VnnlibBounds, SpecBoundsHoldOnAGeneralBox) {
  REQUIRE_ONNX();
  auto m = mlp();
  // A box outside [0, 1] with unequal sides; two specifications.
  std::vector<float> lo(20), hi(20);
  for (int i = 0; i < 20; ++i) {
    lo[static_cast<std::size_t>(i)] = -2.0f + 0.1f * static_cast<float>(i);
    hi[static_cast<std::size_t>(i)] = lo[static_cast<std::size_t>(i)] + 0.05f * static_cast<float>(1 + i % 3);
  }
  const std::vector<float> spec{1, -1, 0, 0, 0, 0, 0.5f, 0, -2, 1};
  const Tensor s = Tensor::from_vector(spec, {2, 5});
  const std::vector<double> ibp = certify::spec_lower_bounds(
      *m, Tensor::from_vector(lo, {20}), Tensor::from_vector(hi, {20}), s, certify::BoundMethod::Interval);
  const std::vector<double> crown = certify::spec_lower_bounds(
      *m, Tensor::from_vector(lo, {20}), Tensor::from_vector(hi, {20}), s, certify::BoundMethod::Linear);
  ASSERT_EQ(crown.size(), 2u);
  const std::vector<float> r = testing::random_tensor({500, 20}, 9, 0.0f, 1.0f).to_vector<float>();
  double lowest[2] = {1e30, 1e30};
  for (int p = 0; p < 500; ++p) {
    std::vector<float> x(20);
    for (std::size_t i = 0; i < 20; ++i) {
      const float u = p % 2 ? (r[p * 20 + i] < 0.5f ? 0.0f : 1.0f) : r[p * 20 + i];  // odd: vertices
      x[i] = lo[i] + u * (hi[i] - lo[i]);
    }
    const std::vector<float> y = outputs(*m, x);
    for (int k = 0; k < 2; ++k) {
      double v = 0.0;
      for (int j = 0; j < 5; ++j) v += static_cast<double>(spec[static_cast<std::size_t>(k * 5 + j)]) * y[j];
      lowest[k] = std::min(lowest[k], v);
      ASSERT_GE(v, crown[static_cast<std::size_t>(k)] - 1e-4 * (1 + std::fabs(v))) << "spec " << k << " point " << p;
    }
  }
  for (int k = 0; k < 2; ++k) {
    EXPECT_GE(crown[static_cast<std::size_t>(k)], ibp[static_cast<std::size_t>(k)]);
    EXPECT_LT(lowest[k] - crown[static_cast<std::size_t>(k)], 10.0);  // not vacuous
  }
}

// The MLP fixture's class at the all-0.5 input, and a box of half-width w around it.
struct MlpCase {
  std::shared_ptr<nn::GraphModule> model = mlp();
  std::vector<float> center = std::vector<float>(20, 0.5f);
  int predicted = 0;
  MlpCase() {
    const std::vector<float> y = outputs(*model, center);
    predicted = static_cast<int>(std::max_element(y.begin(), y.end()) - y.begin());
  }
  // "some other class scores at least as high" (the negation of robustness).
  std::string robustness(double w) const {
    std::string s = declarations(20, 5) + box(20, 0.5 - w, 0.5 + w) + "(assert (or";
    for (int j = 0; j < 5; ++j)
      if (j != predicted) s += " (and (>= Y_" + std::to_string(j) + " Y_" + std::to_string(predicted) + "))";
    return s + "))\n";
  }
};

certify::VnnResult answer(MlpCase& s, const std::string& text, certify::VnnOptions o = {}) {
  return certify::verify_vnnlib(*s.model, {20}, parse_vnnlib(text, "p.vnnlib"), o);
}

TEST(VnnlibVerify, UnsatSatAndUnknown) {
  REQUIRE_ONNX();
  MlpCase s;
  // A tiny box: the prediction cannot change (CROWN or IBP proves every disjunct empty).
  const certify::VnnResult unsat = answer(s, s.robustness(0.001));
  EXPECT_EQ(unsat.answer, VnnAnswer::Unsat) << unsat.reason;
  EXPECT_EQ(unsat.disjuncts, 4);
  EXPECT_EQ(unsat.disjuncts_verified, 4);
  // "Y_pred ≤ c" with c below its value at the center but above a value that a random point of
  // [0, 1]^20 reaches: the center fails, a point exists, and PGD must find one.
  const std::vector<float> r = testing::random_tensor({200, 20}, 4, 0.0f, 1.0f).to_vector<float>();
  double reached = 1e30;
  for (int p = 0; p < 200; ++p)
    reached = std::min(
        reached, static_cast<double>(outputs(
                     *s.model, std::vector<float>(r.begin() + p * 20,
                                                  r.begin() + p * 20 + 20))[static_cast<std::size_t>(s.predicted)]));
  const double at_center = outputs(*s.model, s.center)[static_cast<std::size_t>(s.predicted)];
  ASSERT_LT(reached, at_center);
  const std::string below = declarations(20, 5) + box(20, 0.0, 1.0) + "(assert (<= Y_" + std::to_string(s.predicted) +
                            " " + std::to_string(reached) + "))\n";
  const certify::VnnResult sat = answer(s, below);
  ASSERT_EQ(sat.answer, VnnAnswer::Sat);
  EXPECT_EQ(sat.reason, "pgd");
  ASSERT_EQ(sat.x.size(), 20u);
  for (float v : sat.x) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, 1.0f);
  }
  const std::vector<float> y = outputs(*s.model, sat.x);
  EXPECT_EQ(y, sat.y);
  EXPECT_LE(y[static_cast<std::size_t>(s.predicted)], reached);
  const std::string text = certify::vnn_result_text(sat);
  EXPECT_EQ(text.rfind("sat\n((X_0 ", 0), 0u) << text;
  EXPECT_NE(text.find("\n (Y_4 "), std::string::npos) << text;
  // Two constraints each feasible on [0, 1]^20 (Y_pred takes values on both sides of its center
  // value) but not together: the sum of the disjunct's constraints proves it.
  const std::string both = declarations(20, 5) + box(20, 0.0, 1.0) + "(assert (and (<= Y_" +
                           std::to_string(s.predicted) + " " + std::to_string(at_center - 0.01) + ") (>= Y_" +
                           std::to_string(s.predicted) + " " + std::to_string(at_center + 0.01) + ")))\n";
  const certify::VnnResult joint = answer(s, both);
  EXPECT_EQ(joint.answer, VnnAnswer::Unsat) << joint.reason;
  // Without the search, and with a region the bounds cannot empty: unknown.
  certify::VnnOptions no_search;
  no_search.attack_steps = 0;
  const certify::VnnResult open = answer(s, below, no_search);
  EXPECT_EQ(open.answer, VnnAnswer::Unknown);
  EXPECT_EQ(open.reason, "undecided");
  // A timeout that has passed before the first step.
  certify::VnnOptions hurry;
  hurry.timeout = 1e-9;
  EXPECT_EQ(answer(s, below, hurry).reason, "timeout");
  // A model of the wrong size is refused by name.
  testing::expect_error<ShapeError>(
      [&] { certify::verify_vnnlib(*s.model, {20}, parse_vnnlib(declarations(3, 5) + box(3, 0, 1), "w.vnnlib"), {}); },
      "w.vnnlib", "declares 3 inputs");
}

// The robustness property of each digit at L∞ ε (its box clipped to [0, 1], "some other class
// scores at least as high") on the trained digits mlp: unsat exactly where certify::verify with
// CROWN verifies the digit (the same bounds, the same constraints), and a sat answer only where
// it does not, with a counterexample that the model misclassifies.
TEST(VnnlibVerify, RobustnessPropertiesAgreeWithVerify) {
  const testing::TrainedDigits& t = testing::trained_digits_mlp();
  const std::int64_t n = 40, d = 64, k = 10;
  const double eps = 0.06;
  const Tensor x = t.test.images.rows(0, n).to(Device::cpu());
  const Tensor labels = t.test.labels.rows(0, n).to(Device::cpu());
  const certify::VerifyResult v =
      certify::verify(*t.model, x, labels, {Norm::Linf, eps, certify::BoundMethod::Linear}, 64);
  const std::vector<std::int32_t> verified = v.verified.to_vector<std::int32_t>(), y = labels.to_vector<std::int32_t>();
  const std::vector<float> xs = x.to_vector<float>();
  int unsat = 0, sat = 0;
  for (std::int64_t e = 0; e < n; ++e) {
    const std::vector<float> z = outputs(*t.model, std::vector<float>(xs.begin() + e * d, xs.begin() + (e + 1) * d));
    const int predicted = static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
    if (predicted != y[static_cast<std::size_t>(e)]) continue;  // verify counts only correct digits
    certify::VnnProperty p;
    p.num_inputs = d;
    p.num_outputs = k;
    p.source = "digit " + std::to_string(e);
    for (int j = 0; j < k; ++j) {
      if (j == predicted) continue;
      certify::VnnDisjunct dj;
      for (std::int64_t i = 0; i < d; ++i) {
        dj.lower.push_back(std::max(0.0, static_cast<double>(xs[static_cast<std::size_t>(e * d + i)]) - eps));
        dj.upper.push_back(std::min(1.0, static_cast<double>(xs[static_cast<std::size_t>(e * d + i)]) + eps));
      }
      certify::OutputConstraint c;  // Y_pred − Y_j ≤ 0
      c.coef.assign(static_cast<std::size_t>(k), 0.0);
      c.coef[static_cast<std::size_t>(predicted)] = 1.0;
      c.coef[static_cast<std::size_t>(j)] = -1.0;
      dj.constraints.push_back(c);
      p.disjuncts.push_back(dj);
    }
    const certify::VnnResult r = certify::verify_vnnlib(*t.model, {1, 8, 8}, p, {});
    SCOPED_TRACE(p.source);
    EXPECT_EQ(r.answer == VnnAnswer::Unsat, verified[static_cast<std::size_t>(e)] == 1) << r.reason;
    if (r.answer == VnnAnswer::Sat) {
      ++sat;
      EXPECT_EQ(verified[static_cast<std::size_t>(e)], 0);
      const std::vector<float> zc = outputs(*t.model, r.x);  // some other class reaches the predicted one
      bool reached = false;
      for (int j = 0; j < k; ++j) reached = reached || (j != predicted && zc[j] >= zc[predicted]);
      EXPECT_TRUE(reached);
      for (std::int64_t i = 0; i < d; ++i) {
        EXPECT_GE(r.x[static_cast<std::size_t>(i)], xs[static_cast<std::size_t>(e * d + i)] - eps - 1e-6);
        EXPECT_LE(r.x[static_cast<std::size_t>(i)], xs[static_cast<std::size_t>(e * d + i)] + eps + 1e-6);
      }
    }
    unsat += r.answer == VnnAnswer::Unsat;
  }
  // Measured: 29 unsat and 5 sat of the 40 digits. Neither answer may be vacuous.
  EXPECT_GT(unsat, 10);
  EXPECT_GE(sat, 1);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(VnnlibCli, VnnlibAndInstances) {
  REQUIRE_ONNX();
  MlpCase s;
  const std::string dir = testing::make_temp_dir("vnnlib_cli");
  std::filesystem::create_directories(dir + "/props");
  std::filesystem::copy_file(testing::source_dir() + "/tests/onnx/fixtures/mlp/model.onnx", dir + "/net.onnx");
  write_text(dir + "/props/robust.vnnlib", s.robustness(0.001));
  write_text(dir + "/props/center.vnnlib",
             declarations(20, 5) + box(20, 0.5, 0.5) + "(assert (>= Y_" + std::to_string(s.predicted) + " -100))\n");
  const testing::CliRun one = testing::run_cli("verify --model " + dir + "/net.onnx --vnnlib " + dir +
                                               "/props/center.vnnlib --out " + dir + "/center.txt --quiet");
  ASSERT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(one.out.rfind("sat\n((X_0 0.5)\n", 0), 0u) << one.out;
  std::ifstream written(dir + "/center.txt");
  std::stringstream text;
  text << written.rdbuf();
  EXPECT_EQ(text.str(), one.out);
  write_text(dir + "/instances.csv", "net.onnx,props/robust.vnnlib,30\n\nnet.onnx,props/center.vnnlib,5\n");
  const testing::CliRun batch = testing::run_cli("verify --instances " + dir + "/instances.csv --quiet");
  ASSERT_EQ(batch.status, 0) << batch.err;
  EXPECT_NE(batch.out.find("props/robust.vnnlib\tunsat\t"), std::string::npos) << batch.out;
  EXPECT_NE(batch.out.find("props/center.vnnlib\tsat\tcenter\t"), std::string::npos) << batch.out;
  const testing::CliRun json = testing::run_cli("verify --instances " + dir + "/instances.csv --json --quiet");
  ASSERT_EQ(json.status, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j["instances"].size(), 2u);
  EXPECT_EQ(j["instances"][0]["result"], "unsat");
  EXPECT_EQ(j["instances"][1]["timeout"], 5.0);
  // Compressed files, as the VNN-COMP benchmarks ship them: a row naming "x.vnnlib" or "x.onnx"
  // reads x.vnnlib.gz / x.onnx.gz when only those exist.
  ASSERT_EQ(std::system(("gzip -c " + dir + "/props/robust.vnnlib > " + dir + "/props/packed.vnnlib.gz && gzip -c " +
                         dir + "/net.onnx > " + dir + "/packed.onnx.gz")
                            .c_str()),
            0);
  write_text(dir + "/packed.csv", "packed.onnx,props/packed.vnnlib,30\n");
  const testing::CliRun packed = testing::run_cli("verify --instances " + dir + "/packed.csv --quiet");
  ASSERT_EQ(packed.status, 0) << packed.err;
  EXPECT_NE(packed.out.find("packed.onnx.gz\t" + dir + "/props/packed.vnnlib.gz\tunsat\t"), std::string::npos)
      << packed.out;
  // An instance that cannot run is a row "error"; the others run, and the command fails after.
  write_text(dir + "/mixed.csv", "net.onnx,props/absent.vnnlib,5\nnet.onnx,props/center.vnnlib,5\n");
  const testing::CliRun mixed = testing::run_cli("verify --instances " + dir + "/mixed.csv --quiet");
  EXPECT_EQ(mixed.status, 1);
  EXPECT_NE(mixed.out.find("props/absent.vnnlib\terror\terror\t"), std::string::npos) << mixed.out;
  EXPECT_NE(mixed.out.find("props/center.vnnlib\tsat\t"), std::string::npos) << mixed.out;
  EXPECT_EQ(mixed.err.rfind("aegis: error: 1 of 2 instances could not be run", 0), 0u) << mixed.err;
  EXPECT_NE(mixed.err.find("absent.vnnlib: cannot open"), std::string::npos) << mixed.err;
  // Bad input: one clear line each.
  write_text(dir + "/bad.vnnlib", declarations(20, 5) + "(assert (<= X_0 1)\n");
  write_text(dir + "/bad.csv", "net.onnx,props/robust.vnnlib\n");
  for (const std::string& args :
       {"verify --model " + dir + "/net.onnx --vnnlib " + dir + "/bad.vnnlib", "verify --instances " + dir + "/bad.csv",
        "verify --vnnlib " + dir + "/props/robust.vnnlib",
        "verify --model " + dir + "/net.onnx --vnnlib " + dir + "/props/robust.vnnlib --eps 0.1"}) {
    const testing::CliRun bad = testing::run_cli(args + " --quiet");
    EXPECT_EQ(bad.status, 1) << args;
    EXPECT_EQ(bad.err.rfind("aegis: error: ", 0), 0u) << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  }
}

}  // namespace
}  // namespace aegis
