// Model zoo (architectures, PyTorch state_dict names, shapes, gradients through whole models),
// the training loop and classifier files.
#include <cmath>
#include <filesystem>

#include "nn/layers.h"
#include "nn/model_file.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "runtime/ops.h"
#include "support/testing.h"

namespace aegis {
namespace {

std::vector<std::string> names_of(const nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& [name, v] : m.named_parameters()) out.push_back(name);
  return out;
}

// Expected names and parameter counts come from the PyTorch definitions of the same
// architectures (torch.nn.Sequential / the CIFAR ResNet module layout), printed with
// state_dict().keys() and sum(p.numel()).
TEST(Zoo, NamesAndSizesMatchPyTorch) {
  const std::vector<std::string> seq{"0.weight", "0.bias", "3.weight", "3.bias",
                                     "7.weight", "7.bias", "9.weight", "9.bias"};
  auto cnn = nn::build_model({"cnn-fmnist", {1, 28, 28}, 10, "", 0});
  EXPECT_EQ(names_of(*cnn), seq);
  EXPECT_EQ(cnn->num_parameters(), 26010);
  auto lenet = nn::build_model({"lenet-2conv", {1, 28, 28}, 10, "", 0});
  EXPECT_EQ(names_of(*lenet), seq);
  EXPECT_EQ(lenet->num_parameters(), 3274634);
  auto mlp = nn::build_model({"mlp", {1, 28, 28}, 10, "", 0});
  EXPECT_EQ(names_of(*mlp), (std::vector<std::string>{"1.weight", "1.bias", "3.weight", "3.bias"}));
  EXPECT_EQ(mlp->num_parameters(), 203530);
  auto resnet = nn::build_model({"resnet20", {3, 32, 32}, 10, "", 0});
  const auto rn = names_of(*resnet);
  ASSERT_EQ(rn.size(), 65u);
  EXPECT_EQ(rn[0], "conv1.weight");
  EXPECT_EQ(rn[3], "layer1.0.conv1.weight");
  EXPECT_EQ(rn.back(), "linear.bias");
  EXPECT_NE(std::find(rn.begin(), rn.end(), "layer2.0.shortcut.0.weight"), rn.end());
  EXPECT_NE(std::find(rn.begin(), rn.end(), "layer2.0.shortcut.1.weight"), rn.end());
  EXPECT_EQ(resnet->num_parameters(), 272474);
}

TEST(Zoo, ForwardShapesAndBadSpecs) {
  for (const std::string& name : nn::model_names()) {
    const Shape in = name == "resnet20" ? Shape{3, 32, 32} : Shape{1, 28, 28};
    auto m = nn::build_model({name, in, 7, "", 1});
    Tensor x = testing::random_tensor({3, in[0], in[1], in[2]}, 2, 0.0f, 1.0f);
    EXPECT_EQ(m->forward(nn::Var(x, false)).value().shape(), (Shape{3, 7})) << name;
  }
  EXPECT_THROW(nn::build_model({"nosuch", {1, 28, 28}, 10, "", 0}), InvalidArgument);
  EXPECT_THROW(nn::build_model({"cnn-fmnist", {1, 8, 8}, 10, "", 0}), InvalidArgument);
  EXPECT_THROW(nn::build_model({"mlp", {1, 28}, 10, "", 0}), InvalidArgument);
  EXPECT_THROW(nn::build_model({"mlp", {1, 28, 28}, 1, "", 0}), InvalidArgument);
  EXPECT_THROW(nn::build_model({"mlp", {1, 28, 28}, 10, "swish", 0}), InvalidArgument);
  auto m = nn::build_model({"mlp", {1, 28, 28}, 10, "", 0});
  EXPECT_THROW(m->forward(nn::Var(testing::random_tensor({2, 1, 27, 28}, 3), false)), ShapeError);
}

TEST(Zoo, InitializationFollowsPyTorchBoundsAndSeeds) {
  auto a = nn::build_model({"cnn-fmnist", {1, 28, 28}, 10, "", 5});
  auto b = nn::build_model({"cnn-fmnist", {1, 28, 28}, 10, "", 5});
  auto c = nn::build_model({"cnn-fmnist", {1, 28, 28}, 10, "", 6});
  const auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].second.value().to_vector<float>(), pb[i].second.value().to_vector<float>());
    EXPECT_NE(pa[i].second.value().to_vector<float>(), pc[i].second.value().to_vector<float>());
  }
  // 0.weight: fan_in = 1·8·8 = 64, so U(−1/8, 1/8); its sample variance should be near 1/(3·64²)·... :
  // the variance of U(−a, a) is a²/3.
  const auto w = pa[0].second.value().to_vector<float>();
  double var = 0;
  for (float v : w) {
    ASSERT_LE(std::fabs(v), 0.125f);
    var += double(v) * v;
  }
  var /= static_cast<double>(w.size());
  EXPECT_NEAR(var, 0.125 * 0.125 / 3, 0.3 * 0.125 * 0.125 / 3);  // 1024 draws: ±30% is > 5 sd
}

TEST(Zoo, WholeModelGradientsMatchFiniteDifferences) {
  // A tiny resnet-like path through every layer kind: conv, GroupNorm, pooling, residual add,
  // linear and cross-entropy, checked w.r.t. the input and one conv weight.
  auto model = nn::build_model({"resnet20", {2, 8, 8}, 3, "tanh", 3});
  std::vector<nn::Var> params = model->parameters();
  nn::Var x(testing::random_tensor({2, 2, 8, 8}, 4, 0.0f, 1.0f), true);
  const Tensor labels = Tensor::from_vector<std::int32_t>({0, 2}, {2});
  nn::Var w = params[0];  // conv1.weight
  model->set_requires_grad(false);
  w.set_requires_grad(true);
  EXPECT_TRUE(testing::gradcheck(
      [&](const std::vector<nn::Var>& v) {
        w.mutable_value() = v[1].value();
        return nn::F::cross_entropy(model->forward(v[0]), labels);
      },
      {x, w}, 1e-3, 3e-2, 3e-3));
}

nn::Dataset toy_dataset(std::int64_t n, std::uint64_t seed) {
  // Two Gaussian blobs in a 1x2x2 "image": class = sign of the first pixel minus the last.
  Tensor x = testing::random_tensor({n, 1, 2, 2}, seed, 0.0f, 1.0f);
  std::vector<std::int32_t> y(static_cast<std::size_t>(n));
  const auto xv = x.to_vector<float>();
  for (std::int64_t i = 0; i < n; ++i) y[static_cast<std::size_t>(i)] = xv[4 * i] > xv[4 * i + 3] ? 1 : 0;
  return nn::Dataset{"toy", x, Tensor::from_vector(y, {n}), 2};
}

TEST(Train, LearnsASeparableProblemAndReportsProgress) {
  const nn::Dataset data = toy_dataset(512, 8);
  auto model = nn::build_model({"mlp", {1, 2, 2}, 2, "", 9});
  nn::TrainOptions opt;
  opt.epochs = 20;
  opt.batch_size = 32;
  opt.lr = 0.01f;
  opt.optimizer = nn::OptimizerKind::Adam;
  std::int64_t steps_seen = 0;
  std::vector<double> losses;
  const nn::TrainResult r = nn::train_classifier(
      *model, data, opt, [&](const nn::StepInfo& s) { steps_seen = s.step; },
      [&](const nn::EpochResult& e) { losses.push_back(e.train_loss); });
  EXPECT_EQ(r.steps, 20 * 16);
  EXPECT_EQ(steps_seen, r.steps);
  ASSERT_EQ(losses.size(), 20u);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  const nn::EvalResult ev = nn::evaluate(*model, toy_dataset(256, 10), Device::cpu());
  EXPECT_GT(ev.accuracy, 0.9);  // a linear boundary; an MLP gets nearly all of it
  EXPECT_EQ(ev.total, 256);
  for (const nn::Var& p : model->parameters()) EXPECT_TRUE(p.requires_grad());  // restored after eval
}

TEST(Train, RejectsBadOptionsAndDivergence) {
  const nn::Dataset data = toy_dataset(64, 11);
  auto model = nn::build_model({"mlp", {1, 2, 2}, 2, "", 12});
  nn::TrainOptions opt;
  opt.epochs = 0;
  EXPECT_THROW(nn::train_classifier(*model, data, opt), InvalidArgument);
  opt.epochs = 1;
  opt.batch_size = 0;
  EXPECT_THROW(nn::train_classifier(*model, data, opt), InvalidArgument);
  opt.batch_size = 8;
  opt.lr = NAN;
  EXPECT_THROW(nn::train_classifier(*model, data, opt), InvalidArgument);
  opt.lr = 0.1f;
  EXPECT_THROW(nn::parse_optimizer("lbfgs"), InvalidArgument);
  opt.optimizer = nn::OptimizerKind::Adam;
  opt.momentum = 0.9f;  // momentum is SGD's
  EXPECT_THROW(nn::train_classifier(*model, data, opt), InvalidArgument);
  opt.momentum = 0.0f;
  // A NaN pixel makes the loss NaN: a NumericError, not a silently broken model.
  nn::Dataset bad = nn::take(data, 0, 64);
  bad.images.data<float>()[5] = NAN;
  opt.optimizer = nn::OptimizerKind::Sgd;
  EXPECT_THROW(nn::train_classifier(*model, bad, opt), NumericError);
}

TEST(ModelFile, RoundTripKeepsSpecAndOutputs) {
  const std::string path = testing::make_temp_dir("aegis_zoo_roundtrip") + "/model.safetensors";
  nn::ModelSpec spec{"cnn-fmnist", {1, 28, 28}, 10, "relu", 21};
  auto model = nn::build_model(spec);
  nn::save_classifier(path, *model, spec, {{"aegis.dataset", "unit-test"}});
  nn::LoadedClassifier loaded = nn::load_classifier(path);
  EXPECT_EQ(loaded.spec.name, "cnn-fmnist");
  EXPECT_EQ(loaded.spec.activation, "relu");
  EXPECT_EQ(loaded.spec.input_shape, (Shape{1, 28, 28}));
  EXPECT_EQ(loaded.metadata.at("aegis.dataset"), "unit-test");
  const Tensor x = testing::random_tensor({2, 1, 28, 28}, 22, 0.0f, 1.0f);
  EXPECT_EQ(model->forward(nn::Var(x, false)).value().to_vector<float>(),
            loaded.model->forward(nn::Var(x, false)).value().to_vector<float>());
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace aegis
