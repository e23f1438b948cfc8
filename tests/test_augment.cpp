// Crops and flips of augmentation multiplicity (kernels/augment.h, privacy/dp_augment.h; De et al.
// 2022, §3.1) and the strided batched product the grouped per-example gradients use
// (kernels/blas.h). A copy is checked pixel by pixel against an explicitly padded, cropped and
// flipped image; the draws against their keys; the DP run against its ledger.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "kernels/augment.h"
#include "kernels/blas.h"
#include "nn/model_file.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "runtime/dispatch.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using kernels::AugmentGeometry;

// The naive oracle: the (H + 2P)×(W + 2P) padded plane built cell by cell (zeros, or the
// symmetric reflection written out as "distance past the edge, counted back from the edge pixel"),
// the H×W window at (P + dy, P + dx) cut out, then mirrored left-right.
std::vector<float> naive_copy(const std::vector<float>& image, std::int64_t c_n, std::int64_t h_n, std::int64_t w_n,
                              std::int64_t pad, bool mirror, const kernels::RowTransform& t) {
  const std::int64_t ph = h_n + 2 * pad, pw = w_n + 2 * pad;
  const auto reflect = [](std::int64_t i, std::int64_t n) {
    if (i < 0) return -(i + 1);          // −1 → 0, −2 → 1
    if (i >= n) return n - 1 - (i - n);  // n → n − 1, n + 1 → n − 2
    return i;
  };
  std::vector<float> out(static_cast<std::size_t>(c_n * h_n * w_n));
  for (std::int64_t c = 0; c < c_n; ++c) {
    std::vector<float> padded(static_cast<std::size_t>(ph * pw), 0.0f);
    for (std::int64_t i = 0; i < ph; ++i)
      for (std::int64_t j = 0; j < pw; ++j) {
        const std::int64_t si = i - pad, sj = j - pad;
        const bool inside = si >= 0 && si < h_n && sj >= 0 && sj < w_n;
        if (inside || mirror)
          padded[static_cast<std::size_t>(i * pw + j)] =
              image[static_cast<std::size_t>((c * h_n + reflect(si, h_n)) * w_n + reflect(sj, w_n))];
      }
    for (std::int64_t h = 0; h < h_n; ++h)
      for (std::int64_t w = 0; w < w_n; ++w) {
        const float v = padded[static_cast<std::size_t>((pad + t.dy + h) * pw + pad + t.dx + w)];
        const std::int64_t w_out = t.flip ? w_n - 1 - w : w;
        out[static_cast<std::size_t>((c * h_n + h) * w_n + w_out)] = v;
      }
  }
  return out;
}

TEST(Augment, EveryCopyIsAFlippedCropOfThePaddedImagePixelByPixel) {
  const std::int64_t rows = 64, c_n = 2, h_n = 5, w_n = 6, pad = 2, d = c_n * h_n * w_n;
  const Tensor x = testing::random_tensor({rows, c_n, h_n, w_n}, 4, 0.0f, 1.0f);
  std::vector<std::uint64_t> keys;
  for (std::int64_t r = 0; r < rows; ++r) keys.push_back(1000 + 7 * static_cast<std::uint64_t>(r));
  const philox::Key geo = philox::step_key(11, philox::kPurposeDpAugmentGeometry, 3);
  for (const bool mirror : {true, false}) {
    SCOPED_TRACE(mirror ? "mirror" : "zero");
    AugmentGeometry g{rows, c_n, h_n, w_n, pad, true, mirror, 0.0f};
    std::vector<float> y(static_cast<std::size_t>(rows * d));
    kernels::cpu::augment_rows(g, x.data<float>(), keys.data(), geo, {}, y.data());
    std::set<std::int64_t> dys, dxs;
    int flips = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const kernels::RowTransform t = kernels::row_transform(geo, keys[static_cast<std::size_t>(r)], pad, true);
      dys.insert(t.dy);
      dxs.insert(t.dx);
      flips += t.flip;
      const std::vector<float> image(x.data<float>() + r * d, x.data<float>() + (r + 1) * d);
      const std::vector<float> expected = naive_copy(image, c_n, h_n, w_n, pad, mirror, t);
      for (std::int64_t e = 0; e < d; ++e)
        ASSERT_EQ(y[static_cast<std::size_t>(r * d + e)], expected[static_cast<std::size_t>(e)])
            << "row " << r << " element " << e << " (dy " << t.dy << ", dx " << t.dx << ", flip " << t.flip << ")";
    }
    // 64 draws cover all 5 offsets of each axis (a miss has probability ≤ 5·(4/5)^64 < 1e-5) and
    // both flip outcomes (binomial(64, 1/2) in [16, 48] with probability > 1 − 1e-4).
    EXPECT_EQ(dys.size(), 5u);
    EXPECT_EQ(dxs.size(), 5u);
    EXPECT_GE(flips, 16);
    EXPECT_LE(flips, 48);
  }
}

TEST(Augment, OffsetsStayWithinThePaddingAndNoneMeansIdentity) {
  const philox::Key geo = philox::step_key(1, philox::kPurposeDpAugmentGeometry, 0);
  for (std::uint64_t k = 0; k < 2000; ++k) {
    const kernels::RowTransform t = kernels::row_transform(geo, k, 3, false);
    ASSERT_FALSE(t.flip);
    ASSERT_LE(std::abs(t.dy), 3);
    ASSERT_LE(std::abs(t.dx), 3);
  }
  const kernels::RowTransform none = kernels::row_transform(geo, 5, 0, false);
  EXPECT_EQ(none.dy, 0);
  EXPECT_EQ(none.dx, 0);
  const Tensor x = testing::random_tensor({3, 1, 4, 4}, 2);
  const std::vector<std::uint64_t> keys = {1, 2, 3};
  std::vector<float> y(48);
  kernels::cpu::augment_rows({3, 1, 4, 4, 0, false, true, 0.0f}, x.data<float>(), keys.data(), geo, {}, y.data());
  EXPECT_EQ(y, x.to_vector<float>());
}

TEST(Augment, NoiseIsKeyedByTheRowKeyAndAddedAfterTheCrop) {
  const std::int64_t rows = 3, d = 16;
  const Tensor x = testing::random_tensor({rows, 1, 4, 4}, 5, 0.0f, 1.0f);
  const std::vector<std::uint64_t> keys = {40, 9, 77};
  const philox::Key geo = philox::step_key(2, philox::kPurposeDpAugmentGeometry, 1);
  const philox::Key noise = philox::step_key(2, philox::kPurposeDpAugment, 1);
  std::vector<float> cropped(rows * d), noisy(rows * d);
  kernels::cpu::augment_rows({rows, 1, 4, 4, 1, true, true, 0.0f}, x.data<float>(), keys.data(), geo, noise,
                             cropped.data());
  kernels::cpu::augment_rows({rows, 1, 4, 4, 1, true, true, 0.5f}, x.data<float>(), keys.data(), geo, noise,
                             noisy.data());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t e = 0; e < d; ++e) {
      const std::uint64_t index = keys[static_cast<std::size_t>(r)] * d + static_cast<std::uint64_t>(e);
      const auto z = static_cast<float>(0.5 * philox::normal_double(noise, index));
      ASSERT_EQ(noisy[static_cast<std::size_t>(r * d + e)], cropped[static_cast<std::size_t>(r * d + e)] + z);
    }
}

TEST(Augment, ParsesAndNamesItsOptions) {
  const privacy::ImageAugment a = privacy::parse_image_augment("flip,crop");
  EXPECT_TRUE(a.flip);
  EXPECT_EQ(a.crop_pad, 4);
  EXPECT_FALSE(a.zero_pad);
  EXPECT_EQ(privacy::image_augment_name(a), "flip,crop:4");
  const privacy::ImageAugment b = privacy::parse_image_augment("crop:2:zero");
  EXPECT_FALSE(b.flip);
  EXPECT_EQ(b.crop_pad, 2);
  EXPECT_TRUE(b.zero_pad);
  EXPECT_EQ(privacy::image_augment_name(privacy::parse_image_augment(privacy::image_augment_name(b))), "crop:2:zero");
  EXPECT_FALSE(privacy::parse_image_augment("none").any());
  EXPECT_EQ(privacy::image_augment_name({}), "none");
  for (const char* bad : {"flop", "crop:0", "crop:x", "crop:3:wrap", "flip,flip", "flip,", "crop:4,crop:2"})
    EXPECT_THROW(privacy::parse_image_augment(bad), InvalidArgument) << bad;
}

// The augmented batch of examples {3, 8, 5} with K copies, flips, crops and noise.
privacy::AugmentedBatch batch_of(const nn::Dataset& data, nn::Module& model, const std::vector<std::int64_t>& indices,
                                 std::uint64_t seed, std::uint64_t step, std::int64_t copies = 4) {
  privacy::AugmentOptions o;
  o.copies = copies;
  o.noise_sigma = 0.1f;
  o.image = privacy::parse_image_augment("flip,crop:1");
  o.seed = seed;
  return privacy::augmented_batch(model, data, indices, static_cast<std::int64_t>(indices.size()), o, step,
                                  Device::cpu());
}

TEST(Augment, DrawsAreReproducibleAndIndependentOfTheRestOfTheSample) {
  const nn::Dataset data = testing::toy_dataset(16, 1);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  const Tensor a = batch_of(data, *model, {3, 8, 5}, 7, 2).images;
  EXPECT_EQ(a.to_vector<float>(), batch_of(data, *model, {3, 8, 5}, 7, 2).images.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), batch_of(data, *model, {3, 8, 5}, 8, 2).images.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), batch_of(data, *model, {3, 8, 5}, 7, 3).images.to_vector<float>());
  // Example 8 alone, or after other examples, or with more copies: the same first four copies.
  const Tensor alone = batch_of(data, *model, {8}, 7, 2).images;
  EXPECT_EQ(alone.to_vector<float>(), a.rows(4, 8).to_vector<float>());
  EXPECT_EQ(batch_of(data, *model, {1, 2, 8}, 7, 2).images.rows(8, 12).to_vector<float>(), alone.to_vector<float>());
  EXPECT_EQ(batch_of(data, *model, {8}, 7, 2, 6).images.rows(0, 4).to_vector<float>(), alone.to_vector<float>());
  // The copies of one example differ from each other.
  for (std::int64_t c = 1; c < 4; ++c)
    EXPECT_NE(alone.rows(0, 1).to_vector<float>(), alone.rows(c, c + 1).to_vector<float>());
}

TEST(Augment, MirrorPaddingWiderThanTheImageIsRefused) {
  const nn::Dataset data = testing::toy_dataset(4, 1);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  privacy::AugmentOptions o;
  o.copies = 2;
  o.image = privacy::parse_image_augment("crop:5");
  EXPECT_THROW(privacy::augmented_batch(*model, data, {0}, 1, o, 0, Device::cpu()), InvalidArgument);
  o.image = privacy::parse_image_augment("crop:5:zero");
  EXPECT_NO_THROW(privacy::augmented_batch(*model, data, {0}, 1, o, 0, Device::cpu()));
}

nn::TrainOptions small_options() {
  nn::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 0.5f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.seed = 3;
  return o;
}

std::vector<float> weights_of(nn::Module& m) {
  std::vector<float> w;
  for (const autograd::Var& p : m.parameters()) {
    const std::vector<float> v = p.value().to_vector<float>();
    w.insert(w.end(), v.begin(), v.end());
  }
  return w;
}

TEST(Augment, LedgerIsUnchangedByCropsAndFlips) {
  const nn::Dataset data = testing::toy_dataset(256, 1);
  const nn::TrainOptions o = small_options();
  nn::TrainOptions augmented_options = o;
  augmented_options.augment = privacy::parse_image_augment("flip,crop:1");
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 0.8;
  dp.noise.max_grad_norm = 1.0;
  dp.augmult = 4;
  auto model_a = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  auto model_b = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  const auto a = privacy::train_dp_classifier(*model_a, data, o, dp);
  const auto b = privacy::train_dp_classifier(*model_b, data, augmented_options, dp);
  EXPECT_EQ(a.ledger.to_metadata(), b.ledger.to_metadata());
  EXPECT_EQ(a.ledger.epsilon, b.ledger.epsilon);
  EXPECT_NE(weights_of(*model_a), weights_of(*model_b));  // the crops and flips did change training
}

TEST(Augment, PlainTrainingWithCropsAndFlipsIsReproducible) {
  const nn::Dataset data = testing::toy_dataset(128, 1);
  nn::TrainOptions o = small_options();
  o.augment = privacy::parse_image_augment("flip,crop:1:zero");
  o.noise_sigma = 0.1f;
  std::vector<std::vector<float>> runs;
  for (const std::uint64_t seed : {3, 3, 4}) {
    o.seed = seed;
    auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
    nn::train_classifier(*model, data, o);
    runs.push_back(weights_of(*model));
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_NE(runs[0], runs[2]);
  o.seed = 3;
  o.augment = {};
  auto plain = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  nn::train_classifier(*plain, data, o);
  EXPECT_NE(weights_of(*plain), runs[0]);
}

TEST(Augment, CliTrainsADpModelOnDigitsWithFlipsAndCrops) {
  const std::string dir = testing::make_temp_dir("aegis_augment");
  const testing::CliRun t = testing::run_cli(
      "train --data digits --model mlp --dp --noise-multiplier 1.0 --delta 1e-4 --batch-size 150 --epochs 4 "
      "--optimizer sgd --lr 2 --schedule constant --augmult 4 --augment flip,crop:1 --device cpu --json --quiet "
      "--out " +
      dir + "/m.safetensors");
  ASSERT_EQ(t.status, 0) << t.err;
  const auto j = nlohmann::json::parse(t.out);
  EXPECT_EQ(j["augment"], "flip,crop:1");
  EXPECT_EQ(j["augmult"], 4);
  // Ten classes: chance is 0.1 (measured 0.62; flips do not suit digits, crop:1 alone gives 0.77).
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.5) << t.out;
  EXPECT_EQ(nn::load_classifier(dir + "/m.safetensors").metadata.at("aegis.augment"), "flip,crop:1");
  const testing::CliRun plain = testing::run_cli(
      "train --data digits --model mlp --epochs 2 --augment crop:1 --device cpu --json --quiet --out " + dir +
      "/p.safetensors");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_EQ(nlohmann::json::parse(plain.out)["augment"], "crop:1");
  EXPECT_GT(nlohmann::json::parse(plain.out)["test_accuracy"].get<double>(), 0.5) << plain.out;
  const testing::CliRun bad = testing::run_cli(
      "train --data digits --model mlp --dp --augment flop --device cpu "
      "--out " +
      dir + "/x.safetensors");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("augmentation 'flop'"), std::string::npos) << bad.err;
  const testing::CliRun adv =
      testing::run_cli("train --data digits --model mlp --adv fgsm-rs --eps 0.1 --augment flip --device cpu --out " +
                       dir + "/y.safetensors");
  EXPECT_EQ(adv.status, 1);
  EXPECT_NE(adv.err.find("--augment with --adv needs --dp"), std::string::npos) << adv.err;
}

// C_i = op(A_i)·op(B_i) for every i, one call, against one gemm per product (the loop the grouped
// per-example gradients issued before), bit for bit: the same sgemm on the same operands.
TEST(Augment, StridedBatchedGemmIsTheLoopOfGemms) {
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const std::int64_t batch : {1, 3, 17}) {
        SCOPED_TRACE(::testing::Message() << "ta " << ta << " tb " << tb << " batch " << batch);
        const std::int64_t m = 5, n = 7, k = 3;
        const bool shared_a = batch == 3;  // stride 0: one A for every product
        const std::int64_t sa = shared_a ? 0 : m * k, sb = k * n, sc = m * n;
        const Tensor a = testing::random_tensor({std::max<std::int64_t>(1, sa * batch) + m * k}, 1);
        const Tensor b = testing::random_tensor({sb * batch}, 2);
        const kernels::GemmArgs args{ta, tb, m, n, k, 1.5f, 0.0f};
        std::vector<float> batched(static_cast<std::size_t>(sc * batch)), looped(batched.size());
        kernels::cpu::gemm_strided_batched(args, a.data<float>(), sa, b.data<float>(), sb, batched.data(), sc, batch);
        for (std::int64_t i = 0; i < batch; ++i)
          kernels::cpu::gemm(args, a.data<float>() + i * sa, b.data<float>() + i * sb, looped.data() + i * sc);
        EXPECT_EQ(batched, looped);
      }
}

TEST(AugmentCuda, CropsFlipsNoiseAndBatchedGemmMatchTheCpu) {
  AEGIS_REQUIRE_GPU();
  const std::int64_t rows = 37, c_n = 3, h_n = 9, w_n = 11;
  const Tensor x = testing::random_tensor({rows, c_n, h_n, w_n}, 8, 0.0f, 1.0f);
  std::vector<std::int64_t> key_values;
  for (std::int64_t r = 0; r < rows; ++r) key_values.push_back(5 + 1024 * r + r % 3);
  const Tensor keys = Tensor::from_vector(key_values, {rows});
  const philox::Key geo = philox::step_key(3, philox::kPurposeDpAugmentGeometry, 9);
  const philox::Key noise = philox::step_key(3, philox::kPurposeDpAugment, 9);
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    const Tensor dx = run.input(x), dk = run.input(keys);
    for (const bool mirror : {true, false}) {
      // Same draws; the noise's double Box–Muller may round one float ulp apart (core/philox.h).
      Tensor y = run.output(mirror ? "mirror" : "zero", x.shape(), {1e-6, 1e-6});
      const AugmentGeometry g{rows, c_n, h_n, w_n, 3, true, mirror, 0.25f};
      AEGIS_DISPATCH(run.device(),
                     augment_rows(g, dx.data<float>(), reinterpret_cast<const std::uint64_t*>(dk.data<std::int64_t>()),
                                  geo, noise, y.data<float>()));
    }
    const Tensor a = run.input(testing::random_tensor({13 * 6 * 4}, 1)),
                 b = run.input(testing::random_tensor({4 * 5}, 2));
    Tensor c = run.output("batched gemm", {13, 6, 5}, {1e-5, 1e-5});  // float32 sums of 4 terms
    AEGIS_DISPATCH(run.device(),
                   gemm_strided_batched(kernels::GemmArgs{true, false, 6, 5, 4, 1.0f, 0.0f}, a.data<float>(), 24,
                                        b.data<float>(), 0, c.data<float>(), 30, 13));
  }));
}

}  // namespace
}  // namespace aegis
