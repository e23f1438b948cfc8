// Whole workloads on the GPU against the same workloads on the CPU: the DP noise kernel alone,
// standard, DP and adversarial training, and the command-line tool end to end with --device cuda.
// Every test skips (saying why) without a usable GPU; tools/gpu_check.sh runs them on a lent one.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attacks/adv_train.h"
#include "kernels/dp_update.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "runtime/dispatch.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  return split;
}

std::shared_ptr<nn::Module> digits_mlp() { return nn::build_model({"mlp", {1, 8, 8}, 10, "", 3}); }

nn::TrainOptions digits_options(Device device) {
  nn::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 64;
  o.lr = 0.05f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.momentum = 0.9f;
  o.seed = 7;
  o.device = device;
  return o;
}

// Registers every parameter of `model` for comparison at tolerance `tol`.
void check_parameters(testing::BackendRun& run, nn::Module& model, testing::Tolerance tol) {
  for (const auto& [name, p] : model.named_parameters()) run.check(name, p.value(), tol);
}

Tensor scalar(double v) {
  return Tensor::from_vector<double>({v}, {1});
}

TEST(DpNoiseCuda, NoisyGradientFillMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  std::vector<std::int64_t> sizes = testing::kOddSizes;
  sizes.push_back(1000003);
  for (const std::int64_t n : sizes) {
    for (const bool with_canary : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n = " << n << (with_canary ? ", canary" : ""));
      kernels::DpNoise d;
      d.key = philox::Key{11, philox::kPurposeDpNoise, 5};
      d.offset = 12345;
      d.noise_std = 1.3f;
      d.expected_batch_size = 256.0f;
      const Tensor sum = testing::random_tensor({n}, 21, -4.0f, 4.0f);
      const Tensor canary = testing::random_tensor({n}, 22, -1.0f, 1.0f);
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        const Tensor d_sum = run.input(sum), d_canary = run.input(canary);
        // Both draw z in double from the same Philox words; the device's double log/sin/cos are
        // within 1–2 ulp of the correctly rounded value, so after rounding to float an element can
        // differ by one float ulp (relative 2^-23 ≈ 1.2e-7) in rare elements: allow 2.5e-7 relative.
        Tensor out = run.output("noisy gradient", {n}, {2.5e-7, 1e-12});
        AEGIS_DISPATCH(run.device(), dp_noisy_gradient_fill(d, d_sum.data<float>(),
                                                            with_canary ? d_canary.data<float>() : nullptr,
                                                            out.data<float>(), n));
      }));
    }
  }
}

TEST(TrainingCuda, StandardTrainingMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  EXPECT_TRUE(testing::cuda_matches_cpu([](testing::BackendRun& run) {
    auto model = digits_mlp();
    const nn::TrainResult r = nn::train_classifier(*model, digits().train, digits_options(run.device()));
    run.check("steps", scalar(static_cast<double>(r.steps)), testing::kExact);
    // The same batches and initial weights; cuBLAS and OpenBLAS sum in different orders, so float32
    // rounding differences grow over the steps (2 epochs, about 50 SGD steps with momentum).
    for (std::size_t e = 0; e < r.epochs.size(); ++e)
      run.check("epoch " + std::to_string(e) + " loss", scalar(r.epochs[e].train_loss), {1e-3, 1e-3});
    check_parameters(run, *model, {1e-3, 1e-4});
    run.check("accuracy", scalar(nn::evaluate(*model, digits().test, run.device()).accuracy), {0.0, 0.01});
  }));
}

TEST(TrainingCuda, DpTrainingMatchesCpuAndKeepsTheLedger) {
  AEGIS_REQUIRE_GPU();
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.1;
  dp.noise.max_grad_norm = 1.0;
  dp.delta = 1e-5;
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    auto model = digits_mlp();
    const auto r = privacy::train_dp_classifier(*model, digits().train, digits_options(run.device()), dp);
    // The ledger is a function of (σ, q, steps, δ) alone: identical to the last bit.
    run.check("steps", scalar(static_cast<double>(r.steps)), testing::kExact);
    run.check("epsilon", scalar(r.ledger.epsilon), testing::kExact);
    run.check("ledger steps", scalar(static_cast<double>(r.ledger.steps())), testing::kExact);
    // Same Poisson batches and the same noise draws (up to an ulp, see DpNoiseCuda); the GPU pads
    // batches to a fixed shape with masked rows, which changes only the summation order.
    check_parameters(run, *model, {2e-3, 2e-4});
  }));
}

TEST(TrainingCuda, AdversarialTrainingMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (const std::string method : {"pgd", "fgsm-rs", "free"}) {
    SCOPED_TRACE(method);
    attacks::AdvTrainOptions adv;
    adv.method = attacks::parse_adv_method(method);
    adv.eps = 0.1f;
    adv.steps = 3;
    adv.replays = 2;
    adv.check_overfitting = false;
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      nn::TrainOptions o = digits_options(run.device());
      o.epochs = 1;
      auto model = digits_mlp();
      const auto r = attacks::train_adversarial(*model, digits().train, o, adv);
      run.check("steps", scalar(static_cast<double>(r.steps)), testing::kExact);
      // The attack's sign steps can flip where a gradient element is within rounding of 0, so the
      // runs agree in loss, not in every weight.
      run.check("last loss", scalar(r.epochs.back().train_loss), {0.05, 0.05});
      EXPECT_TRUE(std::isfinite(r.epochs.back().train_loss)) << run.device().str();
    }));
  }
}

// The command-line tool end to end on the GPU: train, eval, attack and certify with --device cuda
// report the CUDA device and agree with the same commands on the CPU.
TEST(CliCuda, TrainEvalAttackCertifyOnTheGpu) {
  AEGIS_REQUIRE_GPU();
  const std::string dir = testing::make_temp_dir("cli_cuda");
  auto json_of = [](const testing::CliRun& r) {
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(r.out.substr(r.out.find('{')), nullptr, false);
  };
  for (const std::string device : {"cpu", "cuda"}) {
    SCOPED_TRACE(device);
    const std::string model = dir + "/mlp_" + device + ".safetensors";
    const std::string common = " --data digits --device " + device + " --json --quiet";
    const auto train =
        json_of(testing::run_cli("train --model mlp --epochs 2 --seed 1 --out " + model + common));
    ASSERT_FALSE(train.is_discarded());
    EXPECT_NE(train.dump().find(device == "cuda" ? "cuda" : "cpu"), std::string::npos);
    const auto eval = json_of(testing::run_cli("eval --model " + model + common));
    ASSERT_FALSE(eval.is_discarded());
    EXPECT_GT(eval.value("test_accuracy", 0.0), 0.5);
    const auto attack = json_of(
        testing::run_cli("attack --model " + model + " --attack pgd-linf --eps 0.1 --steps 5 --max 100" + common));
    ASSERT_FALSE(attack.is_discarded());
    const auto cert = json_of(testing::run_cli("certify --model " + model + " --sigma 0.25 --n0 50 --n 500 --max 20" +
                                               " --batch 100 --out " + dir + "/cert_" + device + ".tsv" + common));
    ASSERT_FALSE(cert.is_discarded());
    // On the GPU the certification batches after the first replay a CUDA graph.
    EXPECT_EQ(cert.value("cuda_graph", device != "cuda"), device == "cuda") << cert.dump();
  }
}

}  // namespace
}  // namespace aegis
