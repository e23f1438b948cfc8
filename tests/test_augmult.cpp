// Augmentation multiplicity in per-example clipping (ClipOptions::group_size; De et al. 2022,
// §3.1): K rows per example, whose gradients are summed (the loss weights them 1/K) BEFORE
// clipping. Checked against the obvious oracle: each example's K copies run alone through the
// ordinary autograd path, their gradient clipped by hand.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/layers.h"
#include "nn/zoo.h"
#include "privacy/per_example.h"
#include "runtime/autograd.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
using privacy::ClipOptions;
using privacy::ClipStats;

// B examples of K copies each: rows b·K … b·K + K − 1 are example b's, with example b's label.
struct GroupedProblem {
  std::shared_ptr<nn::Module> model;
  Tensor x, labels;
  std::int64_t copies = 1;

  std::int64_t examples() const { return x.size(0) / copies; }
  // Σ over rows [begin, end) of CE / K, backward.
  void backward_rows(std::int64_t begin, std::int64_t end) const {
    const Var logits = model->forward(Var(x.rows(begin, end)));
    const Var loss = nn::F::cross_entropy(logits, labels.rows(begin, end), nn::Reduction::Sum);
    autograd::backward(loss, Tensor::full(loss.shape(), 1.0 / static_cast<double>(copies)));
  }
};

// Conv → GroupNorm → tanh → Linear (+ bias everywhere): every kind of clipped layer.
std::shared_ptr<nn::Module> mixed_model(std::uint64_t seed) {
  nn::InitRng rng(seed);
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(2, 4, 3, rng, nn::Conv2dOptions{2, 1}), std::make_shared<nn::GroupNorm>(2, 4),
      std::make_shared<nn::ActivationLayer>(nn::ActivationKind::Tanh), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 3 * 4, 5, rng)});
}

// Copies that differ (as Gaussian augmentation makes them), or K identical ones when `identical`.
GroupedProblem grouped_problem(std::shared_ptr<nn::Module> model, const Shape& image, std::int64_t examples,
                               std::int64_t copies, std::int32_t classes, bool identical, std::uint64_t seed) {
  Shape shape{examples * copies};
  shape.insert(shape.end(), image.begin(), image.end());
  Tensor x = testing::random_tensor(shape, seed, 0.0f, 1.0f);
  const std::int64_t d = x.numel() / (examples * copies);
  if (identical)
    for (std::int64_t r = 0; r < examples * copies; ++r)
      if (r % copies) std::copy_n(x.data<float>() + (r - r % copies) * d, d, x.data<float>() + r * d);
  std::vector<std::int32_t> y;
  for (std::int64_t r = 0; r < examples * copies; ++r)
    y.push_back(static_cast<std::int32_t>((r / copies * 3 + 1) % classes));
  return {std::move(model), x, Tensor::from_vector(y, {examples * copies}), copies};
}

using testing::flat_grads;

// Example b's gradient: its K copies alone, capture off, (1/K)·Σ CE.
std::vector<std::vector<double>> loop_grads(const GroupedProblem& p) {
  privacy::enable_per_example_capture(*p.model, false);
  std::vector<std::vector<double>> out;
  for (std::int64_t b = 0; b < p.examples(); ++b) {
    p.model->zero_grad();
    p.backward_rows(b * p.copies, (b + 1) * p.copies);
    out.push_back(flat_grads(*p.model));
  }
  p.model->zero_grad();
  return out;
}

using testing::norm_of;

ClipStats grouped_clip(const GroupedProblem& p, ClipOptions opt, const Tensor* mask = nullptr) {
  p.model->zero_grad();
  privacy::enable_per_example_capture(*p.model, true);
  p.backward_rows(0, p.x.size(0));
  opt.group_size = p.copies;
  return privacy::clip_and_accumulate(*p.model, opt, mask);
}

// Sums of mixed signs: tolerance relative to the largest entry (float32 over ≤ 10^3 terms).
::testing::AssertionResult sums_close(const std::vector<double>& actual, const std::vector<double>& expected) {
  double scale = 0.0;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  return testing::all_close(actual, expected, 1e-4, 1e-4 * scale + 1e-12);
}

void expect_grouped_clipping_matches_loop(const GroupedProblem& p) {
  const auto grads = loop_grads(p);
  std::vector<double> norms;
  for (const auto& g : grads) norms.push_back(norm_of(g));
  std::vector<double> sorted = norms;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t mid = (sorted.size() - 1) / 2;
  ClipOptions opt;
  opt.max_grad_norm = static_cast<float>(0.5 * (sorted[mid] + sorted[mid + 1]));  // some clipped, some not
  const ClipStats st = grouped_clip(p, opt);
  ASSERT_EQ(st.per_example_norms.numel(), p.examples());
  // Norms of sums formed in another order than the loop's: float32 rounding, ≲ 1e-5 relative.
  EXPECT_TRUE(testing::all_close(st.per_example_norms, norms, 2e-4, 1e-6));
  const std::vector<double> c = testing::to_double(st.clip_factors);
  std::vector<double> expected(grads[0].size(), 0.0);
  std::int64_t clipped = 0;
  for (std::size_t b = 0; b < grads.size(); ++b) {
    EXPECT_NEAR(c[b], std::min(1.0, opt.max_grad_norm / (norms[b] + 1e-6)), 2e-4 * c[b]) << "example " << b;
    // The example's clipped gradient (its copies' average, clipped) has norm at most C.
    EXPECT_LE(c[b] * norms[b], opt.max_grad_norm * (1 + 2e-4)) << "example " << b;
    clipped += norms[b] > opt.max_grad_norm;
    for (std::size_t j = 0; j < expected.size(); ++j) expected[j] += c[b] * grads[b][j];
  }
  EXPECT_GT(clipped, 0);
  EXPECT_EQ(st.clipped, clipped);
  EXPECT_EQ(st.clipped + st.unclipped, p.examples());
  EXPECT_TRUE(sums_close(flat_grads(*p.model), expected));
}

TEST(Augmult, GroupedClippingMatchesTheCopiesRunAlone) {
  for (std::int64_t k : {2, 3, 8}) {
    SCOPED_TRACE("K = " + std::to_string(k));
    expect_grouped_clipping_matches_loop(grouped_problem(mixed_model(5), {2, 5, 7}, 5, k, 5, false, 11 + k));
  }
  SCOPED_TRACE("cnn-fmnist");
  expect_grouped_clipping_matches_loop(
      grouped_problem(nn::build_model({"cnn-fmnist", {1, 28, 28}, 10, "", 3}), {1, 28, 28}, 3, 4, 10, false, 21));
}

TEST(Augmult, PerLayerClippingOfGroupsMatchesTheLoop) {
  const GroupedProblem p = grouped_problem(mixed_model(8), {2, 5, 7}, 5, 3, 5, false, 51);
  const auto grads = loop_grads(p);
  // Each clipped layer's slice of the flat gradient (a parameter "a.b.weight" belongs to layer "a.b").
  const std::vector<std::string> names = privacy::per_example_layer_names(*p.model);
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> ranges(names.size());
  std::size_t offset = 0;
  for (const auto& [name, param] : p.model->named_parameters()) {
    const auto n = static_cast<std::size_t>(param.value().numel());
    const auto it = std::find(names.begin(), names.end(), name.substr(0, name.rfind('.')));
    if (it != names.end()) ranges[static_cast<std::size_t>(it - names.begin())].emplace_back(offset, offset + n);
    offset += n;
  }
  std::vector<std::vector<double>> layer_norms(names.size());  // [layer][example], from the loop
  for (std::size_t l = 0; l < names.size(); ++l)
    for (const auto& g : grads) {
      double sq = 0.0;
      for (auto [b, e] : ranges[l])
        for (std::size_t j = b; j < e; ++j) sq += g[j] * g[j];
      layer_norms[l].push_back(std::sqrt(sq));
    }
  // C/√L between the two middle norms of the first layer: that layer clips some examples and not
  // others.
  std::vector<double> first = layer_norms[0];
  std::sort(first.begin(), first.end());
  const double bound = 0.5 * (first[first.size() / 2 - 1] + first[first.size() / 2]);
  ClipOptions opt;
  opt.per_layer = true;
  opt.max_grad_norm = static_cast<float>(bound * std::sqrt(static_cast<double>(names.size())));
  const ClipStats st = grouped_clip(p, opt);
  ASSERT_EQ(st.per_layer_norms.size(), names.size());
  const double layer_bound = opt.max_grad_norm / std::sqrt(static_cast<float>(names.size()));
  std::vector<double> expected(grads[0].size(), 0.0);
  for (std::size_t l = 0; l < names.size(); ++l) {
    SCOPED_TRACE("layer " + names[l]);
    EXPECT_TRUE(testing::all_close(st.per_layer_norms[l], layer_norms[l], 2e-4, 1e-6));
    for (std::size_t b = 0; b < grads.size(); ++b) {
      const double c = std::min(1.0, layer_bound / (layer_norms[l][b] + 1e-6));
      for (auto [lo, hi] : ranges[l])
        for (std::size_t j = lo; j < hi; ++j) expected[j] += c * grads[b][j];
    }
  }
  EXPECT_GT(st.clipped, 0);  // some layer of some example clipped, and some example left alone
  EXPECT_GT(st.unclipped, 0);
  EXPECT_TRUE(sums_close(flat_grads(*p.model), expected));
}

TEST(Augmult, IdenticalCopiesClipLikeOneCopy) {
  // K identical copies average to the one copy's gradient: the same norms, factors and sum as K = 1.
  const GroupedProblem four = grouped_problem(mixed_model(6), {2, 5, 7}, 6, 4, 5, true, 31);
  GroupedProblem one = four;
  one.copies = 1;
  one.x = Tensor::empty({6, 2, 5, 7});
  std::vector<std::int32_t> y;
  for (std::int64_t b = 0; b < 6; ++b) {
    one.x.rows(b, b + 1).copy_from(four.x.rows(b * 4, b * 4 + 1));
    y.push_back(four.labels.data<std::int32_t>()[b * 4]);
  }
  one.labels = Tensor::from_vector(y, {6});
  ClipOptions opt;
  opt.max_grad_norm = 0.05f;
  const ClipStats s1 = grouped_clip(one, opt);
  const std::vector<double> g1 = flat_grads(*one.model);
  const ClipStats s4 = grouped_clip(four, opt);
  // The K = 4 path sums four quarters in float32: a few ulps from the one-copy values.
  EXPECT_TRUE(testing::all_close(s4.per_example_norms, testing::to_double(s1.per_example_norms), 1e-5, 1e-9));
  EXPECT_TRUE(testing::all_close(s4.clip_factors, testing::to_double(s1.clip_factors), 1e-5, 1e-9));
  EXPECT_TRUE(sums_close(flat_grads(*four.model), g1));
}

TEST(Augmult, MaskIsPerExampleAndRowsMustFormWholeGroups) {
  const GroupedProblem p = grouped_problem(mixed_model(7), {2, 5, 7}, 4, 3, 5, false, 41);
  const auto grads = loop_grads(p);
  // Example 2 masked out: the sum holds examples 0, 1, 3 only (C large: nothing clipped).
  const Tensor mask = Tensor::from_vector(std::vector<float>{1, 1, 0, 1}, {4});
  ClipOptions opt;
  opt.max_grad_norm = 1e6f;
  grouped_clip(p, opt, &mask);
  std::vector<double> expected(grads[0].size(), 0.0);
  for (std::size_t b : {0u, 1u, 3u})
    for (std::size_t j = 0; j < expected.size(); ++j) expected[j] += grads[b][j];
  EXPECT_TRUE(sums_close(flat_grads(*p.model), expected));

  GroupedProblem odd = p;
  odd.copies = 5;  // 12 rows are not whole groups of 5
  EXPECT_THROW(grouped_clip(odd, opt), ShapeError);
  privacy::clear_captures(*odd.model);
  const Tensor wrong_mask = Tensor::from_vector(std::vector<float>(12, 1.0f), {12});  // per row, not per example
  EXPECT_THROW(grouped_clip(p, opt, &wrong_mask), ShapeError);
}

}  // namespace
}  // namespace aegis
