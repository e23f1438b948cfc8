// Per-example gradient norms, clip factors and clipped sums (privacy/per_example.h), checked
// against the obvious oracle: every example run alone through the ordinary autograd path.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/zoo.h"
#include "privacy/per_example.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
using privacy::ClipOptions;
using privacy::ClipStats;
using privacy::NormMethod;

// ---- the oracle ------------------------------------------------------------------------------

// A model, a batch and a summed loss over any range of its rows: cross-entropy when labels are
// given, otherwise Σ weights ⊙ output (the output gradient is then the weights themselves).
struct Problem {
  std::shared_ptr<nn::Module> model;
  Tensor x, labels, weights;

  std::int64_t batch() const { return x.size(0); }
  void backward_rows(std::int64_t begin, std::int64_t end) const {
    const Var y = model->forward(Var(x.rows(begin, end)));
    if (labels.defined())
      autograd::backward(nn::F::cross_entropy(y, labels.rows(begin, end), nn::Reduction::Sum));
    else
      autograd::backward(y, weights.rows(begin, end));
  }
  // The rows of x (and labels / weights) without row k.
  Problem without(std::int64_t k) const {
    auto drop = [k](const Tensor& t) {
      if (!t.defined()) return t;
      Shape s = t.shape();
      s[0] -= 1;
      Tensor out = Tensor::empty(s, t.dtype(), t.device());
      if (k > 0) out.rows(0, k).copy_from(t.rows(0, k));
      if (k + 1 < t.size(0)) out.rows(k, s[0]).copy_from(t.rows(k + 1, t.size(0)));
      return out;
    };
    return {model, drop(x), drop(labels), drop(weights)};
  }
  void to(Device d) {
    model->to(d);
    x = x.to(d);
    if (labels.defined()) labels = labels.to(d);
    if (weights.defined()) weights = weights.to(d);
  }
};

Problem weighted_problem(std::shared_ptr<nn::Module> model, const Shape& x_shape, std::uint64_t seed) {
  Problem p{std::move(model), testing::random_tensor(x_shape, seed), {}, {}};
  const Var y = p.model->forward(Var(p.x));
  p.weights = testing::random_tensor(y.shape(), seed + 1);
  return p;
}

Problem classifier_problem(const nn::ModelSpec& spec, std::int64_t batch, std::uint64_t seed) {
  Shape x_shape{batch};
  x_shape.insert(x_shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  std::vector<std::int32_t> labels;
  for (std::int64_t i = 0; i < batch; ++i) labels.push_back(static_cast<std::int32_t>((i * 7 + 3) % spec.num_classes));
  return {nn::build_model(spec), testing::random_tensor(x_shape, seed), Tensor::from_vector(labels, {batch}), {}};
}

using testing::flat_grads;

// The per-example gradients, one backward pass per example with capture off.
std::vector<std::vector<double>> loop_grads(const Problem& p) {
  privacy::enable_per_example_capture(*p.model, false);
  std::vector<std::vector<double>> out;
  for (std::int64_t i = 0; i < p.batch(); ++i) {
    p.model->zero_grad();
    p.backward_rows(i, i + 1);
    out.push_back(flat_grads(*p.model));
  }
  p.model->zero_grad();
  return out;
}

// Flat-vector ranges [begin, end) of each clipped layer's parameters, in per_example_layer_names
// order (a parameter "a.b.weight" belongs to layer "a.b").
std::vector<std::vector<std::pair<std::size_t, std::size_t>>> layer_ranges(nn::Module& m) {
  const std::vector<std::string> names = privacy::per_example_layer_names(m);
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> out(names.size());
  std::size_t offset = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    const auto n = static_cast<std::size_t>(p.value().numel());
    const std::string layer = name.substr(0, name.rfind('.'));
    const auto it = std::find(names.begin(), names.end(), layer);
    if (it != names.end()) out[static_cast<std::size_t>(it - names.begin())].emplace_back(offset, offset + n);
    offset += n;
  }
  return out;
}

using testing::norm_of;
double norm_of(const std::vector<double>& v, const std::vector<std::pair<std::size_t, std::size_t>>& ranges) {
  double s = 0.0;
  for (auto [b, e] : ranges)
    for (std::size_t j = b; j < e; ++j) s += v[j] * v[j];
  return std::sqrt(s);
}
std::vector<double> minus(std::vector<double> a, const std::vector<double>& b) {
  for (std::size_t j = 0; j < a.size(); ++j) a[j] -= b[j];
  return a;
}

// One DP step's clipping on the whole batch: capture on, one backward pass, clip_and_accumulate.
ClipStats dp_clip(const Problem& p, const ClipOptions& opt, const Tensor* mask = nullptr) {
  p.model->zero_grad();
  privacy::enable_per_example_capture(*p.model, true);
  p.backward_rows(0, p.batch());
  return privacy::clip_and_accumulate(*p.model, opt, mask);
}

// Captured per-example norms of the whole batch by `method` (captures stay until the next call).
std::vector<double> captured_norms(const Problem& p, NormMethod method) {
  p.model->zero_grad();
  privacy::enable_per_example_capture(*p.model, true);
  p.backward_rows(0, p.batch());
  std::vector<double> out = testing::to_double(privacy::per_example_sq_norms(*p.model, method));
  for (double& v : out) v = std::sqrt(v);
  privacy::clear_captures(*p.model);
  return out;
}

std::vector<double> loop_norms(const std::vector<std::vector<double>>& grads) {
  std::vector<double> out;
  for (const auto& g : grads) out.push_back(norm_of(g));
  return out;
}

// Σ_i c_i g_i from the loop's per-example gradients.
std::vector<double> weighted_sum(const std::vector<std::vector<double>>& grads, const std::vector<double>& c) {
  std::vector<double> out(grads.at(0).size(), 0.0);
  for (std::size_t i = 0; i < grads.size(); ++i)
    for (std::size_t j = 0; j < out.size(); ++j) out[j] += c[i] * grads[i][j];
  return out;
}

// ---- the problems ----------------------------------------------------------------------------

struct ConvCase {
  std::int64_t n, c, h, w, o, k, stride, pad;
  bool bias;
  std::string str() const {
    std::ostringstream os;
    os << "x[" << n << "," << c << "," << h << "," << w << "] " << o << "@" << k << "x" << k << " stride " << stride
       << " pad " << pad << (bias ? "" : " no bias");
    return os.str();
  }
};

const ConvCase kConvCases[] = {
    {3, 3, 7, 6, 4, 3, 2, 1, true},      // odd, non-square image; stride 2, padding 1
    {4, 1, 28, 28, 16, 8, 2, 2, true},   // the MNIST CNN's first layer: T = 169, materialized under Auto
    {3, 16, 13, 13, 32, 4, 2, 0, true},  // its second layer: T = 25, ghost under Auto
    {2, 5, 9, 11, 3, 1, 1, 0, false},    // 1×1, stride 1, no padding: no unfolding
    {2, 2, 5, 5, 3, 5, 1, 2, true},      // kernel as large as the image
    {1, 3, 1, 1, 2, 1, 1, 0, true},      // one example, 1×1 image: T = 1
    {37, 2, 6, 5, 3, 3, 2, 1, true},     // batch not a multiple of the thread count
};

Problem conv_problem(const ConvCase& cs, std::uint64_t seed) {
  nn::InitRng rng(seed);
  auto layer = std::make_shared<nn::Conv2d>(cs.c, cs.o, cs.k, rng, nn::Conv2dOptions{cs.stride, cs.pad}, cs.bias);
  return weighted_problem(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{layer}), {cs.n, cs.c, cs.h, cs.w},
                          seed + 10);
}

Problem linear_problem(bool bias, std::uint64_t seed) {
  nn::InitRng rng(seed);
  auto layer = std::make_shared<nn::Linear>(13, 7, rng, bias);
  return weighted_problem(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{layer}), {6, 13}, seed + 10);
}

// GroupNorm(2, 6) as the first layer, with γ, β moved off their initial 1, 0 so that they matter.
Problem group_norm_problem(std::uint64_t seed) {
  auto gn = std::make_shared<nn::GroupNorm>(2, 6);
  std::uint64_t s = seed;
  for (Var& p : gn->parameters()) p.mutable_value() = testing::random_tensor(p.shape(), s++, 0.5f, 1.5f);
  return weighted_problem(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{gn}), {4, 6, 3, 5}, seed + 10);
}

// Conv → GroupNorm → tanh → Linear: three clipped layers, input gradients flowing between them.
Problem mixed_problem(std::uint64_t seed) {
  nn::InitRng rng(seed);
  auto model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(3, 4, 3, rng, nn::Conv2dOptions{2, 1}), std::make_shared<nn::GroupNorm>(2, 4),
      std::make_shared<nn::ActivationLayer>(nn::ActivationKind::Tanh), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 3 * 4, 5, rng)});
  std::vector<std::int32_t> labels{0, 4, 2, 1, 3, 2};
  return {model, testing::random_tensor({6, 3, 5, 7}, seed + 1), Tensor::from_vector(labels, {6}), {}};
}

Problem cnn_problem() {
  return classifier_problem({"cnn-fmnist", {1, 28, 28}, 10, "", 3}, 5, 21);
}
Problem resnet_problem() {
  return classifier_problem({"resnet20", {3, 8, 8}, 10, "", 4}, 4, 22);
}

// ---- per-example norms -----------------------------------------------------------------------

// Norms by all three methods against the loop's. float32 products of O(1) values summed over up
// to ~10^4 terms, in different orders (and via Gram matrices for ghost): ≲ 1e-5 relative; the
// atol covers examples whose gradient is near zero.
void expect_norms_match(const Problem& p, double rtol = 2e-4, double atol = 1e-5) {
  const std::vector<double> expected = loop_norms(loop_grads(p));
  for (NormMethod m : {NormMethod::Ghost, NormMethod::Materialize, NormMethod::Auto}) {
    SCOPED_TRACE(m == NormMethod::Ghost ? "ghost" : m == NormMethod::Materialize ? "materialize" : "auto");
    EXPECT_TRUE(testing::all_close(captured_norms(p, m), expected, rtol, atol));
  }
}

TEST(PerExampleNorms, Linear) {
  for (bool bias : {true, false}) {
    SCOPED_TRACE(bias ? "with bias" : "without bias");
    expect_norms_match(linear_problem(bias, 1));
  }
}

TEST(PerExampleNorms, Conv2d) {
  for (const ConvCase& cs : kConvCases) {
    SCOPED_TRACE(cs.str());
    expect_norms_match(conv_problem(cs, 2));
  }
}

TEST(PerExampleNorms, GroupNormAffine) {
  expect_norms_match(group_norm_problem(3));
}

TEST(PerExampleNorms, MixedLayers) {
  expect_norms_match(mixed_problem(4));
}

TEST(PerExampleNorms, CnnFmnist) {
  expect_norms_match(cnn_problem());
}

TEST(PerExampleNorms, ResNet20WithGroupNorm) {
  expect_norms_match(resnet_problem());
}

TEST(PerExampleNorms, PerLayerNormsMatchLoop) {
  const Problem p = resnet_problem();
  const auto grads = loop_grads(p);
  const auto ranges = layer_ranges(*p.model);
  ASSERT_EQ(ranges.size(), 43u);  // conv1, bn1, 9 blocks × 4, 2 shortcuts × 2, linear
  p.model->zero_grad();
  privacy::enable_per_example_capture(*p.model, true);
  p.backward_rows(0, p.batch());
  const std::vector<Tensor> per_layer = privacy::per_layer_sq_norms(*p.model, NormMethod::Auto);
  privacy::clear_captures(*p.model);
  ASSERT_EQ(per_layer.size(), ranges.size());
  for (std::size_t l = 0; l < ranges.size(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    std::vector<double> expected, actual = testing::to_double(per_layer[l]);
    for (const auto& g : grads) expected.push_back(std::pow(norm_of(g, ranges[l]), 2));
    // Squared norms: twice the relative rounding of the norms (see expect_norms_match).
    EXPECT_TRUE(testing::all_close(actual, expected, 4e-4, 1e-9));
  }
}

// ---- clipping and the clipped sum ------------------------------------------------------------

// A clipping norm strictly between two example norms near the middle, so that some examples are
// clipped and some are not, and none sits within rounding of the threshold.
float split_norm(std::vector<double> norms) {
  std::sort(norms.begin(), norms.end());
  const std::size_t k = (norms.size() - 1) / 2;
  return static_cast<float>(k + 1 < norms.size() ? 0.5 * (norms[k] + norms[k + 1]) : 0.5 * norms[k]);
}

// Sums of N per-example gradients of mixed signs: an entry near zero has no relative accuracy, so
// the tolerance is relative to the largest entry (float32 accumulation over ≤ 10^4 terms).
::testing::AssertionResult sums_close(const std::vector<double>& actual, const std::vector<double>& expected,
                                      double rtol = 1e-4) {
  double scale = 0.0;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  return testing::all_close(actual, expected, rtol, rtol * scale + 1e-12);
}

void expect_flat_clipping(const Problem& p, NormMethod method, std::size_t keep_bytes = std::size_t{256} << 20) {
  const auto grads = loop_grads(p);
  const std::vector<double> norms = loop_norms(grads);
  ClipOptions opt;
  opt.max_grad_norm = split_norm(norms);
  opt.method = method;
  opt.keep_per_example_bytes = keep_bytes;
  const ClipStats st = dp_clip(p, opt);
  const double bound = opt.max_grad_norm;
  std::vector<double> expected_c;
  std::int64_t expected_clipped = 0;
  for (double n : norms) {
    expected_c.push_back(std::min(1.0, bound / (n + 1e-6)));
    expected_clipped += n > bound;
  }
  EXPECT_GT(expected_clipped, 0);
  EXPECT_LT(expected_clipped, p.batch());
  EXPECT_TRUE(testing::all_close(st.per_example_norms, norms, 2e-4, 1e-5));  // as in expect_norms_match
  const std::vector<double> c = testing::to_double(st.clip_factors);
  EXPECT_TRUE(testing::all_close(c, expected_c, 2e-4, 0.0));  // c_i inherits the relative error of ‖g_i‖
  EXPECT_EQ(st.clipped, expected_clipped);
  for (std::size_t i = 0; i < c.size(); ++i)
    EXPECT_LE(c[i] * norms[i], bound * (1 + 2e-4)) << "example " << i;  // the norms differ by rounding only
  EXPECT_TRUE(sums_close(flat_grads(*p.model), weighted_sum(grads, c)));
}

TEST(PerExampleClip, FlatClippingMatchesLoop) {
  for (NormMethod m : {NormMethod::Ghost, NormMethod::Materialize, NormMethod::Auto}) {
    SCOPED_TRACE(m == NormMethod::Ghost ? "ghost" : m == NormMethod::Materialize ? "materialize" : "auto");
    {
      SCOPED_TRACE("linear");
      expect_flat_clipping(linear_problem(true, 5), m);
    }
    {
      SCOPED_TRACE("group norm");
      expect_flat_clipping(group_norm_problem(6), m);
    }
    {
      SCOPED_TRACE("conv + group norm + linear");
      expect_flat_clipping(mixed_problem(7), m);
    }
    for (const ConvCase& cs : kConvCases) {
      if (cs.n < 2) continue;
      SCOPED_TRACE(cs.str());
      expect_flat_clipping(conv_problem(cs, 8), m);
    }
  }
}

TEST(PerExampleClip, MaterializedSumWithoutKeptGradients) {
  // keep_per_example_bytes = 0: the clipped conv sum is recomputed from the scaled output gradient,
  // and Auto falls back to the mixed ghost/materialize rule (ghost for cnn-fmnist's second conv).
  for (NormMethod m : {NormMethod::Materialize, NormMethod::Auto}) {
    expect_flat_clipping(mixed_problem(9), m, 0);
    expect_flat_clipping(cnn_problem(), m, 0);
  }
  // A budget that holds the first layer's gradients but not the second's.
  expect_flat_clipping(cnn_problem(), NormMethod::Auto, 5 * 16 * 64 * sizeof(float));
}

TEST(PerExampleClip, CnnFmnist) {
  expect_flat_clipping(cnn_problem(), NormMethod::Auto);
}

TEST(PerExampleClip, ResNet20) {
  expect_flat_clipping(resnet_problem(), NormMethod::Auto);
}

TEST(PerExampleClip, LargeBatch) {
  expect_flat_clipping(classifier_problem({"cnn-fmnist", {1, 28, 28}, 10, "", 5}, 67, 23), NormMethod::Auto);
}

TEST(PerExampleClip, KeptMemoryReusedAcrossBatchSizes) {
  // Layers keep their per-example gradient buffers between steps; a smaller and then a larger
  // batch (the buffer grows) must give the same sums as a first step.
  const Problem p = cnn_problem();
  ClipOptions opt;
  opt.max_grad_norm = 0.5f;
  dp_clip(p, opt);
  const std::vector<double> first = flat_grads(*p.model);
  dp_clip(p.without(0).without(0).without(0), opt);
  dp_clip(p, opt);
  EXPECT_TRUE(testing::all_close(flat_grads(*p.model), first, 0.0, 0.0));  // the same operations in the same order
  Problem bigger = classifier_problem({"cnn-fmnist", {1, 28, 28}, 10, "", 3}, 9, 21);
  bigger.model = p.model;  // the same layers, so their kept buffers must grow
  const ClipStats st = dp_clip(bigger, opt);
  EXPECT_EQ(st.per_example_norms.numel(), 9);
  expect_flat_clipping(bigger, NormMethod::Auto);
}

TEST(PerExampleClip, NoClippingGivesTheOrdinaryGradient) {
  const Problem p = mixed_problem(10);
  privacy::enable_per_example_capture(*p.model, false);
  p.model->zero_grad();
  p.backward_rows(0, p.batch());
  const std::vector<double> ordinary = flat_grads(*p.model);
  ClipOptions opt;
  opt.max_grad_norm = 1e6f;
  const ClipStats st = dp_clip(p, opt);
  EXPECT_EQ(st.clipped, 0);
  EXPECT_TRUE(sums_close(flat_grads(*p.model), ordinary));
}

TEST(PerExampleClip, RemovingOneExampleMovesTheSumByAtMostC) {
  const Problem p = cnn_problem();
  ClipOptions opt;
  opt.max_grad_norm = split_norm(loop_norms(loop_grads(p)));
  dp_clip(p, opt);
  const std::vector<double> full = flat_grads(*p.model);
  for (std::int64_t k = 0; k < p.batch(); ++k) {
    dp_clip(p.without(k), opt);
    // ‖S − S₋ₖ‖ = c_k‖g_k‖ ≤ C; float rounding of the two sums adds ≲ 1e-4 relative.
    EXPECT_LE(norm_of(minus(full, flat_grads(*p.model))), opt.max_grad_norm * (1 + 1e-4)) << "without " << k;
  }
}

TEST(PerExampleClip, MaskedRowContributesNothing) {
  const Problem p = mixed_problem(11);
  ClipOptions opt;
  opt.max_grad_norm = split_norm(loop_norms(loop_grads(p)));
  for (std::int64_t k : {std::int64_t{0}, std::int64_t{3}, p.batch() - 1}) {
    SCOPED_TRACE("masked row " + std::to_string(k));
    std::vector<float> m(static_cast<std::size_t>(p.batch()), 1.0f);
    m[static_cast<std::size_t>(k)] = 0.0f;
    const Tensor mask = Tensor::from_vector(m, {p.batch()});
    const ClipStats masked = dp_clip(p, opt, &mask);
    const std::vector<double> with_mask = flat_grads(*p.model);
    EXPECT_EQ(masked.clip_factors.to_vector<float>()[static_cast<std::size_t>(k)], 0.0f);
    EXPECT_GT(masked.per_example_norms.to_vector<float>()[static_cast<std::size_t>(k)], 0.0f);  // still reported
    const ClipStats removed = dp_clip(p.without(k), opt);
    EXPECT_TRUE(sums_close(with_mask, flat_grads(*p.model)));
    EXPECT_EQ(masked.clipped, removed.clipped);
  }
  const Tensor bad = Tensor::full({p.batch() + 1}, 1.0);
  EXPECT_THROW(dp_clip(p, opt, &bad), ShapeError);
  const Tensor out_of_range = Tensor::full({p.batch()}, 2.0);
  EXPECT_THROW(dp_clip(p, opt, &out_of_range), InvalidArgument);
}

TEST(PerExampleClip, PerLayerClipping) {
  const Problem p = mixed_problem(12);
  const auto grads = loop_grads(p);
  const auto ranges = layer_ranges(*p.model);
  ASSERT_EQ(privacy::per_example_layer_names(*p.model), (std::vector<std::string>{"0", "1", "4"}));
  // Bounds near each layer's median norm, so that every layer clips some examples.
  ClipOptions opt;
  opt.per_layer = true;
  for (const auto& r : ranges) {
    std::vector<double> n;
    for (const auto& g : grads) n.push_back(norm_of(g, r));
    opt.per_layer_norms.push_back(split_norm(n));
  }
  const ClipStats st = dp_clip(p, opt);
  ASSERT_EQ(st.per_layer_factors.size(), ranges.size());
  EXPECT_GT(st.clipped, 0);
  double bound_sq = 0.0;
  for (float b : opt.per_layer_norms) bound_sq += static_cast<double>(b) * b;
  std::vector<double> expected(grads[0].size(), 0.0);
  for (std::size_t i = 0; i < grads.size(); ++i) {
    double clipped_sq = 0.0;
    for (std::size_t l = 0; l < ranges.size(); ++l) {
      const double c = st.per_layer_factors[l].to_vector<float>()[i];
      const double n = norm_of(grads[i], ranges[l]);
      EXPECT_NEAR(c, std::min(1.0, opt.per_layer_norms[l] / (n + 1e-6)), 2e-4 * c);  // from the layer norm's rounding
      EXPECT_LE(c * n, opt.per_layer_norms[l] * (1 + 2e-4));  // loop and captured norms differ by rounding
      clipped_sq += c * c * n * n;
      for (auto [b, e] : ranges[l])
        for (std::size_t j = b; j < e; ++j) expected[j] += c * grads[i][j];
    }
    EXPECT_LE(std::sqrt(clipped_sq), std::sqrt(bound_sq) * (1 + 2e-4)) << "example " << i;
  }
  EXPECT_TRUE(sums_close(flat_grads(*p.model), expected));
  EXPECT_TRUE(testing::all_close(st.per_example_norms, loop_norms(grads), 2e-4, 1e-5));

  // Without explicit norms each of the L layers gets C/√L.
  ClipOptions equal;
  equal.per_layer = true;
  equal.max_grad_norm = 0.3f;
  const ClipStats eq = dp_clip(p, equal);
  for (std::size_t l = 0; l < ranges.size(); ++l)
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const double n = norm_of(grads[i], ranges[l]);
      // Factors ≤ 1 with the layer norm's relative rounding (≲ 1e-4).
      EXPECT_NEAR(eq.per_layer_factors[l].to_vector<float>()[i], std::min(1.0, 0.3 / std::sqrt(3.0) / (n + 1e-6)),
                  2e-4);
    }
  ClipOptions wrong = opt;
  wrong.per_layer_norms.pop_back();
  EXPECT_THROW(dp_clip(p, wrong), InvalidArgument);
}

// ---- the ordinary path and misuse ------------------------------------------------------------

TEST(PerExampleCapture, OrdinaryGradientsUnaffected) {
  const Problem p = resnet_problem();
  const auto grads = loop_grads(p);
  const std::vector<double> expected = weighted_sum(grads, std::vector<double>(grads.size(), 1.0));
  // Capture off; capture on without skipping (set_capture); and after per-example capture is off again.
  for (int mode = 0; mode < 3; ++mode) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    if (mode == 1) p.model->set_capture(true);
    if (mode == 2) {
      privacy::enable_per_example_capture(*p.model, true);
      privacy::enable_per_example_capture(*p.model, false);
    }
    p.model->zero_grad();
    p.backward_rows(0, p.batch());
    EXPECT_TRUE(sums_close(flat_grads(*p.model), expected));
    p.model->set_capture(false);
  }
  // With per-example capture on, the backward pass forms no parameter gradient at all.
  privacy::enable_per_example_capture(*p.model, true);
  p.model->zero_grad();
  p.backward_rows(0, p.batch());
  for (const auto& [name, v] : p.model->named_parameters()) EXPECT_FALSE(v.has_grad()) << name;
  privacy::enable_per_example_capture(*p.model, false);
}

// A layer with a parameter but no capture: per-example clipping cannot handle it.
class Uncaptured : public nn::Module {
 public:
  explicit Uncaptured(nn::InitRng& rng) {
    Tensor w = Tensor::empty({3, 4});
    ops::fill_uniform(w, rng.next(), -0.5f, 0.5f);
    m_w = register_parameter("weight", w);
  }
  Var forward(const Var& x) override { return nn::F::linear(x, m_w, Var()); }
  std::string kind() const override { return "Uncaptured"; }

 private:
  Var m_w;
};

TEST(PerExampleCapture, Misuse) {
  const Problem p = mixed_problem(13);
  ClipOptions opt;
  // Nothing captured.
  privacy::enable_per_example_capture(*p.model, false);
  p.model->zero_grad();
  p.backward_rows(0, p.batch());
  EXPECT_THROW(privacy::clip_and_accumulate(*p.model, opt), InvalidArgument);
  // Captured, but the backward pass also formed the unclipped parameter gradients.
  p.model->set_capture(true);
  p.model->zero_grad();
  p.backward_rows(0, p.batch());
  EXPECT_THROW(privacy::clip_and_accumulate(*p.model, opt), InvalidArgument);
  p.model->set_capture(false);
  // A second backward pass before the first capture was consumed.
  privacy::enable_per_example_capture(*p.model, true);
  p.backward_rows(0, p.batch());
  EXPECT_THROW(p.backward_rows(0, p.batch()), InvalidArgument);
  // Captures are dropped once clip_and_accumulate has run, even when it throws.
  opt.max_grad_norm = -1.0f;
  EXPECT_THROW(privacy::clip_and_accumulate(*p.model, opt), InvalidArgument);
  for (const auto& child : p.model->children())
    if (nn::LayerCapture* c = child.second->capture()) {
      EXPECT_FALSE(c->output_grad.defined());
    }
  opt.max_grad_norm = 1.0f;
  dp_clip(p, opt);
  for (const auto& child : p.model->children())
    if (nn::LayerCapture* c = child.second->capture()) {
      EXPECT_FALSE(c->activation.defined());
    }

  // A parameter outside every captured layer.
  nn::InitRng rng(14);
  auto model = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{std::make_shared<nn::Linear>(5, 4, rng), std::make_shared<Uncaptured>(rng)});
  const Problem q = weighted_problem(model, {3, 5}, 15);
  q.model->zero_grad();
  privacy::enable_per_example_capture(*q.model, true);
  q.backward_rows(0, q.batch());
  EXPECT_THROW(privacy::clip_and_accumulate(*q.model, opt), InvalidArgument);
  // Frozen, it is simply left out.
  q.model->children()[1].second->set_requires_grad(false);
  EXPECT_NO_THROW(dp_clip(q, opt));
}

TEST(PerExampleClip, ExtraGradientForAuditing) {
  const Problem p = mixed_problem(16);
  ClipOptions opt;
  opt.max_grad_norm = 0.5f;
  dp_clip(p, opt);
  const std::vector<double> clipped = flat_grads(*p.model);
  std::vector<Tensor> extra;
  std::uint64_t seed = 100;
  for (const auto& [name, v] : p.model->named_parameters()) extra.push_back(testing::random_tensor(v.shape(), seed++));
  const std::vector<double> e = [&] {
    std::vector<double> out;
    for (const Tensor& t : extra) {
      const auto d = testing::to_double(t);
      out.insert(out.end(), d.begin(), d.end());
    }
    return out;
  }();
  // Unscaled: the sum grows by exactly the extra gradient.
  // The returned norm is a float32 sum of squares over ~300 entries: ≲ 1e-5 relative.
  EXPECT_NEAR(privacy::add_to_clipped_sum(*p.model, extra), norm_of(e), 1e-4 * norm_of(e));
  std::vector<double> expected = clipped;
  for (std::size_t j = 0; j < e.size(); ++j) expected[j] += e[j];
  EXPECT_TRUE(testing::all_close(flat_grads(*p.model), expected, 1e-6, 1e-6));  // one float32 add per entry
  // Clipped like an example: it adds at most 0.5 in norm.
  dp_clip(p, opt);
  privacy::add_to_clipped_sum(*p.model, extra, 0.5f);
  EXPECT_NEAR(norm_of(minus(flat_grads(*p.model), clipped)), 0.5, 1e-5);  // float rounding of one scaled add
  extra.pop_back();
  EXPECT_THROW(privacy::add_to_clipped_sum(*p.model, extra), InvalidArgument);
}

// ---- CUDA against the CPU --------------------------------------------------------------------

struct DeviceRun {
  std::vector<double> norms, factors, grads, ghost_norms, materialized_norms;
};

DeviceRun run_on(Problem p, Device d, const ClipOptions& opt) {
  p.to(d);
  DeviceRun r;
  r.ghost_norms = captured_norms(p, NormMethod::Ghost);
  r.materialized_norms = captured_norms(p, NormMethod::Materialize);
  const ClipStats st = dp_clip(p, opt);
  r.norms = testing::to_double(st.per_example_norms);
  r.factors = testing::to_double(st.clip_factors);
  r.grads = flat_grads(*p.model);
  p.to(Device::cpu());
  return r;
}

TEST(PerExampleCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  std::vector<std::pair<std::string, Problem>> problems{
      {"linear", linear_problem(true, 30)},
      {"group norm", group_norm_problem(31)},
      {"mixed", mixed_problem(32)},
      {"cnn-fmnist", cnn_problem()},
      {"resnet20", resnet_problem()},
      {"cnn-fmnist batch 67", classifier_problem({"cnn-fmnist", {1, 28, 28}, 10, "", 5}, 67, 23)}};
  for (const ConvCase& cs : kConvCases) problems.emplace_back(cs.str(), conv_problem(cs, 33));
  for (auto& named : problems) {
    SCOPED_TRACE(named.first);
    Problem& p = named.second;  // a plain reference: the lambda below captures it
    for (std::size_t keep : {std::size_t{256} << 20, std::size_t{0}}) {
      ClipOptions opt;
      opt.max_grad_norm = split_norm(loop_norms(loop_grads(p)));
      opt.keep_per_example_bytes = keep;
      SCOPED_TRACE(::testing::Message() << "keep " << keep << " bytes");
      std::vector<double> grads[2];  // CPU, CUDA
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        const DeviceRun r = run_on(p, run.device(), opt);
        // cuBLAS (fp32, no TF32) and OpenBLAS sum the same products in different orders.
        run.check("ghost norms", testing::flat_tensor(r.ghost_norms), {2e-4, 1e-5});
        run.check("materialized norms", testing::flat_tensor(r.materialized_norms), {2e-4, 1e-5});
        run.check("norms", testing::flat_tensor(r.norms), {2e-4, 1e-5});
        run.check("clip factors", testing::flat_tensor(r.factors), {2e-4, 0.0});
        grads[run.device().is_cuda() ? 1 : 0] = r.grads;
      }));
      // The clipped sums, to 1e-4 of their largest element (sums_close).
      EXPECT_TRUE(sums_close(grads[1], grads[0]));
    }
  }
}

TEST(PerExampleCuda, MaskAndPerLayer) {
  AEGIS_REQUIRE_GPU();
  Problem p = resnet_problem();
  ClipOptions opt;
  opt.per_layer = true;
  opt.max_grad_norm = 0.7f;
  const Tensor mask = Tensor::from_vector<float>({1.0f, 0.0f, 1.0f, 1.0f}, {4});
  std::vector<double> grads[2];  // CPU, CUDA
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    p.to(run.device());
    const Tensor m = run.input(mask);
    const ClipStats st = dp_clip(p, opt, &m);
    for (std::size_t l = 0; l < st.per_layer_factors.size(); ++l) {
      EXPECT_EQ(testing::to_double(st.per_layer_factors[l])[1], 0.0) << "layer " << l;  // the masked example
      // As in PerExampleCuda.MatchesCpu.
      run.check("layer " + std::to_string(l) + " factors", st.per_layer_factors[l], {2e-4, 0.0});
    }
    grads[run.device().is_cuda() ? 1 : 0] = flat_grads(*p.model);
  }));
  p.to(Device::cpu());
  EXPECT_TRUE(sums_close(grads[1], grads[0]));
}

}  // namespace
}  // namespace aegis
