// Tests of certify::verify and `aegis verify`: verified accuracy of a trained digits mlp is at
// most its clean accuracy, equals it at ε = 0, shrinks as ε grows, is larger for CROWN than for
// IBP, and no verified example falls to PGD; the command's JSON and errors; unsupported layers
// and bad input are errors naming the layer or the value; the Residual module.
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attacks/attacks.h"
#include "certify/bounds.h"
#include "nn/data/dataset.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/model_file.h"
#include "nn/residual.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::BoundMethod;
using certify::BoundOptions;
using nn::ModulePtr;

ModulePtr act() {
  return std::make_shared<nn::ActivationLayer>(nn::ActivationKind::ReLU);
}

std::vector<float> forward(nn::Module& m, const Tensor& x) {
  return m.forward(nn::Var(x)).value().to_vector<float>();
}

// A module with its own forward (parameters and all), which bound propagation cannot follow.
class Custom : public nn::Module {
 public:
  explicit Custom(nn::InitRng& rng) { m_linear = register_module("linear", std::make_shared<nn::Linear>(36, 3, rng)); }
  nn::Var forward(const nn::Var& x) override { return m_linear->forward(nn::F::flatten(x)); }
  std::string kind() const override { return "Custom"; }

 private:
  std::shared_ptr<nn::Linear> m_linear;
};

// The digits mlp shared with test_attacks (tests/support/testing.h).
const testing::TrainedDigits& digits_mlp() {
  return testing::trained_digits_mlp();
}

TEST(Verify, BoundedByCleanAccuracyShrinkingWithEpsAndSound) {
  const auto& t = digits_mlp();
  for (const std::string norm : {"linf", "l2"}) {
    const std::vector<double> radii =
        norm == "linf" ? std::vector<double>{0, 0.003, 0.01, 0.03, 0.1} : std::vector<double>{0, 0.02, 0.1, 0.3, 1.0};
    double previous_ibp = 1.0, previous_crown = 1.0;
    for (const double eps : radii) {
      SCOPED_TRACE(norm + " eps " + std::to_string(eps));
      const certify::VerifyResult ibp =
          certify::verify(*t.model, t.test, {parse_norm(norm), eps, BoundMethod::Interval}, 100);
      const certify::VerifyResult crown =
          certify::verify(*t.model, t.test, {parse_norm(norm), eps, BoundMethod::Linear}, 64);
      // Measured (clean 0.919): linf 0.003/0.01/0.03/0.1 → IBP 0.90/0.83/0.60/0.00, CROWN
      // 0.92/0.90/0.79/0.17; l2 0.02/0.1/0.3/1 → IBP 0.89/0.73/0.05/0, CROWN 0.91/0.83/0.59/0.
      if (eps == radii[2]) {
        EXPECT_GT(crown.verified_accuracy, 0.5);  // the check is not vacuous
      }
      if (eps == radii[3]) {
        EXPECT_GT(crown.verified_accuracy, ibp.verified_accuracy + 0.1);
      }
      EXPECT_EQ(ibp.total, t.test.size());
      EXPECT_GT(crown.clean_accuracy, 0.85);  // a trained mlp on the 8×8 digits
      EXPECT_DOUBLE_EQ(ibp.clean_accuracy, crown.clean_accuracy);
      for (const auto* r : {&ibp, &crown}) {
        EXPECT_GE(r->verified_accuracy, 0.0);
        EXPECT_LE(r->verified_accuracy, r->clean_accuracy);
      }
      if (eps == 0) {
        EXPECT_DOUBLE_EQ(ibp.verified_accuracy, ibp.clean_accuracy);
        EXPECT_DOUBLE_EQ(crown.verified_accuracy, crown.clean_accuracy);
      }
      EXPECT_LE(ibp.verified_accuracy, previous_ibp);
      EXPECT_LE(crown.verified_accuracy, previous_crown);
      previous_ibp = ibp.verified_accuracy;
      previous_crown = crown.verified_accuracy;
      // CROWN's margins are at least IBP's, example by example.
      const std::vector<std::int32_t> vi = ibp.verified.to_vector<std::int32_t>(),
                                      vc = crown.verified.to_vector<std::int32_t>();
      for (std::size_t i = 0; i < vi.size(); ++i) EXPECT_LE(vi[i], vc[i]) << "example " << i;
      if (eps == 0) continue;
      // No verified example is broken by PGD at the same radius.
      attacks::AttackOptions ao;
      ao.norm = parse_norm(norm);
      ao.eps = attacks::broadcast_per_example(static_cast<float>(eps), 1);
      ao.steps = 20;
      ao.restarts = 2;
      const attacks::AttackResult a = attacks::pgd(*t.model, t.test.images, t.test.labels, ao);
      const std::vector<std::int32_t> broken = a.success.to_vector<std::int32_t>();
      for (std::size_t i = 0; i < vc.size(); ++i)
        EXPECT_FALSE(vc[i] && broken[i]) << "verified example " << i << " broken";
    }
  }
}

std::string temp_path(const std::string& name) {
  // One folder per test program, removed at exit: two runs at once never share a path.
  static const std::string dir = testing::make_temp_dir("aegis_tests");
  return (std::filesystem::path(dir) / name).string();
}

// A residual network from the zoo, trained and verified through the command line.
TEST(VerifyCli, CertifiesTheResidualZooModel) {
  const std::string model = temp_path("aegis_verify_digits_cnn_res.safetensors");
  const testing::CliRun t =
      testing::run_cli("train --data digits --model cnn-res --epochs 3 --device cpu --quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const testing::CliRun r = testing::run_cli("verify --model " + model +
                                             " --data digits --device cpu --quiet --eps 0.005 --method both --max 60 "
                                             "--json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const double clean = j["clean_accuracy"], ibp = j["verified_accuracy_ibp"], crown = j["verified_accuracy_crown"];
  EXPECT_GT(clean, 0.5);
  EXPECT_LE(ibp, crown);
  EXPECT_LE(crown, clean);
  EXPECT_GT(crown, 0.0);  // a tiny ball around a trained model: CROWN verifies some examples
  std::filesystem::remove(model);
}

TEST(VerifyCli, ReportsBothMethodsAndRejectsBadInput) {
  const std::string model = temp_path("aegis_verify_digits_mlp.safetensors");
  const testing::CliRun t =
      testing::run_cli("train --data digits --model mlp --epochs 1 --device cpu --quiet --out " + model);
  ASSERT_EQ(t.status, 0) << t.err;
  const std::string base = "verify --model " + model + " --data digits --device cpu --quiet ";
  const testing::CliRun r = testing::run_cli(base + "--eps 0.01 --method both --max 60 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"clean_accuracy", "verified_accuracy_ibp", "verified_accuracy_crown", "eps", "norm", "method",
                          "examples", "seconds", "seconds_ibp", "seconds_crown", "model", "dataset"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["examples"].get<int>(), 60);
  EXPECT_EQ(j["norm"], "linf");
  const double clean = j["clean_accuracy"], ibp = j["verified_accuracy_ibp"], crown = j["verified_accuracy_crown"];
  EXPECT_LE(ibp, crown);
  EXPECT_LE(crown, clean);
  EXPECT_GE(ibp, 0.0);
  const testing::CliRun l2 = testing::run_cli(base + "--eps 0.1 --norm l2 --method crown --max 20");
  ASSERT_EQ(l2.status, 0) << l2.err;
  EXPECT_NE(l2.out.find("crown verified accuracy"), std::string::npos) << l2.out;
  EXPECT_EQ(l2.out.find("ibp"), std::string::npos) << l2.out;

  for (const auto& [args, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"--eps -1", "--eps: -1 is not in [0, inf)"},
           {"--eps nan", "--eps: nan is not a finite number"},
           {"--eps 0.1 --norm l1", "--norm: 'l1' is not one of linf, l2"},
           {"--eps 0.1 --method exact", "--method: 'exact' is not one of ibp, crown, both"},
           {"--eps 0.1 --batch 0", "--batch: 0 is not in [1, "}}) {
    const testing::CliRun bad = testing::run_cli(base + args);
    EXPECT_EQ(bad.status, 1) << args;
    EXPECT_NE(bad.err.find(fragment), std::string::npos) << args << ": " << bad.err;
  }
  for (const auto& [name, layer] : std::vector<std::pair<std::string, std::string>>{
           {"resnet20", "GroupNorm"}, {"scatter-linear", "Scattering2d"}}) {
    const nn::ModelSpec spec{name, {1, 8, 8}, 10, "", 0};
    const std::string path = temp_path("aegis_verify_" + name + ".safetensors");
    nn::save_classifier(path, *nn::build_model(spec), spec);
    const testing::CliRun bad =
        testing::run_cli("verify --model " + path + " --data digits --device cpu --quiet --eps 0.01");
    EXPECT_EQ(bad.status, 1) << name;
    EXPECT_NE(bad.err.find(layer), std::string::npos) << name << ": " << bad.err;
    std::filesystem::remove(path);
  }
  // Max pooling is followed (the DeepPoly relaxation): the zoo's lenet-2conv verifies.
  const nn::ModelSpec lenet{"lenet-2conv", {1, 8, 8}, 10, "", 0};
  const std::string lenet_path = temp_path("aegis_verify_lenet.safetensors");
  nn::save_classifier(lenet_path, *nn::build_model(lenet), lenet);
  const testing::CliRun pooled =
      testing::run_cli("verify --model " + lenet_path + " --data digits --device cpu --quiet --eps 0.01 --max 10");
  EXPECT_EQ(pooled.status, 0) << pooled.err;
  std::filesystem::remove(lenet_path);
  std::filesystem::remove(model);
}

TEST(BoundsErrors, RejectUnsupportedLayersAndBadInput) {
  nn::InitRng rng(1);
  const Tensor x = testing::random_tensor({2, 1, 6, 6}, 2, 0.0f, 1.0f);
  const Tensor y = Tensor::from_vector(std::vector<std::int32_t>{0, 1}, {2});
  const BoundOptions o{Norm::Linf, 0.1, BoundMethod::Linear};
  nn::Sequential normed(std::vector<ModulePtr>{std::make_shared<nn::Conv2d>(1, 2, 3, rng), act(),
                                               std::make_shared<nn::GroupNorm>(1, 2), std::make_shared<nn::Flatten>(),
                                               std::make_shared<nn::Linear>(32, 3, rng)});
  testing::expect_error<InvalidArgument>([&] { certify::output_bounds(normed, x, o); }, "layer '2'", "GroupNorm");
  auto resnet = nn::build_model({"resnet20", {1, 8, 8}, 10, "", 0});
  testing::expect_error<InvalidArgument>([&] { certify::check_supported(*resnet); }, "layer 'bn1'", "GroupNorm");
  Custom custom(rng);
  testing::expect_error<InvalidArgument>([&] { certify::output_bounds(custom, x, o); }, "the model itself (Custom)",
                                         "its own forward");
  auto residual = std::make_shared<nn::Sequential>(std::vector<ModulePtr>{
      std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Residual>(std::vector<ModulePtr>{std::make_shared<nn::Linear>(36, 5, rng)})});
  testing::expect_error<ShapeError>([&] { certify::output_bounds(*residual, x, o); }, "layer '1'", "equal shapes");
  nn::Sequential mlp(std::vector<ModulePtr>{std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(36, 3, rng)});
  testing::expect_error<ShapeError>(
      [&] {
        certify::output_bounds(mlp, testing::random_tensor({2, 5}, 1, 0, 1), o);
      },
      "layer '1'", "expects 36 input features");
  testing::expect_error<InvalidArgument>(
      [&] {
        certify::output_bounds(mlp, x, {Norm::Linf, -0.1, BoundMethod::Linear});
      },
      "eps -0.1", "≥ 0");
  testing::expect_error<InvalidArgument>(
      [&] {
        certify::output_bounds(mlp, x, {Norm::Linf, NAN, BoundMethod::Linear});
      },
      "eps nan", "finite");
  testing::expect_error<InvalidArgument>([&] { parse_norm("l1"); }, "'l1'", "linf, l2");
  testing::expect_error<InvalidArgument>(
      [&] {
        certify::output_bounds(mlp, testing::random_tensor({2, 1, 6, 6}, 3, 0.5f, 1.5f), o);
      },
      "outside [0, 1]", "example 0");
  Tensor nan_x = x.clone();
  nan_x.data<float>()[40] = NAN;
  testing::expect_error<NumericError>([&] { certify::output_bounds(mlp, nan_x, o); }, "example 1 element 4", "nan");
  testing::expect_error<InvalidArgument>(
      [&] {
        certify::margin_lower_bounds(mlp, x, Tensor::from_vector(std::vector<std::int32_t>{0, 3}, {2}), o);
      },
      "label 3 of example 1", "[0, 3)");
  EXPECT_THROW(certify::parse_bound_method("exact"), InvalidArgument);
  EXPECT_EQ(certify::parse_bound_method("crown"), BoundMethod::Linear);
}

TEST(BoundsErrors, ResidualModuleAddsItsBodyAndNamesParameters) {
  nn::InitRng rng(2);
  auto body = std::make_shared<nn::Sequential>(std::vector<ModulePtr>{std::make_shared<nn::Linear>(3, 3, rng), act()});
  nn::Sequential net(std::vector<ModulePtr>{std::make_shared<nn::Residual>(body)});
  const auto names = net.named_parameters();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "0.body.0.weight");
  EXPECT_EQ(names[1].first, "0.body.0.bias");
  const Tensor x = testing::random_tensor({4, 3}, 3);
  const std::vector<float> y = forward(net, x), h = forward(*body, x), xv = x.to_vector<float>();
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(y[i], xv[i] + h[i]);
}

// A NaN weight must never yield "verified": NaN compares false, so a check written as
// "smallest margin bound > 0" can skip it. The labels are the model's own predictions, so at
// ε = 0 (exact bounds) every example verifies while the weights are finite.
TEST(VerifyNaN, ANonFiniteWeightVerifiesNothingAndIsNamed) {
  auto model = nn::build_model({"mlp", {1, 4, 4}, 10, "", 7});
  const Tensor x = testing::random_tensor({12, 1, 4, 4}, 11, 0.0f, 1.0f);
  const Tensor labels = nn::argmax(model->forward(autograd::Var(x, false)).value());
  for (const BoundMethod method : {BoundMethod::Interval, BoundMethod::Linear}) {
    const BoundOptions o{Norm::Linf, 0.0, method};
    ASSERT_DOUBLE_EQ(certify::verify(*model, x, labels, o, 5).verified_accuracy, 1.0);
  }
  // One NaN in the last layer's row for class 3: only the margins against class 3 become NaN.
  std::string last_weight;
  for (auto& [name, v] : model->named_parameters())
    if (v.value().dim() == 2) last_weight = name;
  for (auto& [name, v] : model->named_parameters())
    if (name == last_weight) v.value().data<float>()[3 * v.value().size(1)] = NAN;
  const Tensor m = certify::margin_lower_bounds(*model, x, labels, {Norm::Linf, 0.0, BoundMethod::Interval});
  EXPECT_TRUE(std::isnan(m.to_vector<float>()[3]) || labels.to_vector<std::int32_t>()[0] == 3)
      << "NaN reaches the bounds";
  for (const BoundMethod method : {BoundMethod::Interval, BoundMethod::Linear}) {
    const certify::VerifyResult r = certify::verify(*model, x, labels, {Norm::Linf, 0.0, method}, 5);
    EXPECT_EQ(r.verified_accuracy, 0.0);
    EXPECT_EQ(r.verified.to_vector<std::int32_t>(), std::vector<std::int32_t>(12, 0));
    ASSERT_EQ(r.non_finite_parameters.size(), 1u);
    EXPECT_NE(r.non_finite_parameters[0].find("'" + last_weight + "'"), std::string::npos)
        << r.non_finite_parameters[0];
  }
}

TEST(VerifyNaN, TheCommandWarnsAndVerifiesNothing) {
  const std::string dir = testing::make_temp_dir("aegis_verify_nan");
  const std::string model = dir + "/nan.safetensors";
  ASSERT_EQ(testing::run_cli("train --data digits --model mlp --epochs 1 --device cpu --quiet --out " + model).status,
            0);
  nn::LoadedClassifier loaded = nn::load_classifier(model);
  std::string poisoned;
  for (auto& [name, v] : loaded.model->named_parameters())
    if (v.value().dim() == 2) {
      poisoned = name;
      v.value().data<float>()[5] = NAN;
    }
  nn::save_classifier(model, *loaded.model, loaded.spec, loaded.metadata);
  const testing::CliRun r =
      testing::run_cli("verify --model " + model + " --data digits --device cpu --eps 0 --max 30 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["verified_accuracy_ibp"].get<double>(), 0.0);
  EXPECT_EQ(j["verified_accuracy_crown"].get<double>(), 0.0);
  EXPECT_NE(r.err.find("aegis: warning:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'" + poisoned + "'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace aegis
