// Optimizers and learning-rate schedules: each optimizer against a double-precision reference of
// PyTorch's update written out below, hand-derived first steps, convergence on a quadratic,
// validation, the no-partial-update rule for NaN gradients, schedule values at key steps, and
// CUDA-vs-CPU equality of the fused kernels (skipped without a GPU).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/optim.h"
#include "nn/schedule.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
using nn::AdamOptions;
using nn::SgdOptions;
using testing::all_close;
using testing::random_tensor;
using testing::to_double;

// ---- double-precision references of torch.optim.SGD / Adam / AdamW ---------------------------

struct RefSgd {
  double lr, momentum, weight_decay;
  bool nesterov;
  std::vector<double> buf;
  void step(std::vector<double>& p, const std::vector<double>& grad) {
    const bool first = buf.empty();
    if (first && momentum != 0.0) buf.assign(p.size(), 0.0);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i] + weight_decay * p[i];
      if (momentum != 0.0) {
        buf[i] = first ? g : momentum * buf[i] + g;
        g = nesterov ? g + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * g;
    }
  }
};

struct RefAdam {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  std::vector<double> m, v;
  int t = 0;
  void step(std::vector<double>& p, const std::vector<double>& grad) {
    if (m.empty()) {
      m.assign(p.size(), 0.0);
      v.assign(p.size(), 0.0);
    }
    ++t;
    const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (decoupled) {
        p[i] *= 1.0 - lr * weight_decay;
      } else {
        g += weight_decay * p[i];
      }
      m[i] = beta1 * m[i] + (1.0 - beta1) * g;
      v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
      const double m_hat = m[i] / bc1, v_hat = v[i] / bc2;
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

// Odd sizes, one element, and one buffer above the CPU kernels' threading threshold (2^15).
const std::vector<Shape> kShapes = {{1}, {7, 13}, {257, 131}};

std::vector<Var> make_params(std::uint64_t seed, Device device = Device::cpu()) {
  std::vector<Var> params;
  for (std::size_t i = 0; i < kShapes.size(); ++i)
    params.emplace_back(random_tensor(kShapes[i], seed + i).to(device), true);
  return params;
}

// Gradient for parameter i at step s: fixed random values, different every step.
Tensor grad_for(std::size_t i, int s, std::uint64_t seed) {
  return random_tensor(kShapes[i], seed + 1000 * (s + 1) + i, -2.0f, 2.0f);
}

template <class Ref>
void run_against_reference(nn::Optimizer& opt, std::vector<Ref> refs, int steps, std::uint64_t seed) {
  std::vector<Var> params = opt.parameters();
  std::vector<std::vector<double>> ref_p;
  for (const Var& p : params) ref_p.push_back(to_double(p.value()));
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Tensor g = grad_for(i, s, seed);
      params[i].accumulate_grad(g);
      refs[i].step(ref_p[i], to_double(g));
    }
    opt.step();
  }
  EXPECT_EQ(opt.steps(), steps);
  for (std::size_t i = 0; i < params.size(); ++i) {
    // float32 kernel vs double reference over ≤ 8 steps: each step rounds p, m, v and one
    // division/sqrt at ~6e-8 relative to O(1) operands, so a parameter that lands near 0 keeps an
    // absolute error of a few 1e-8 per step (≤ 2e-7 measured): atol 1e-6, rtol 1e-5 elsewhere.
    EXPECT_TRUE(all_close(params[i].value(), ref_p[i], 1e-5, 1e-6)) << opt.describe() << " parameter " << i;
  }
}

TEST(Sgd, MatchesReferenceAcrossOptions) {
  struct Case {
    float momentum, weight_decay;
    bool nesterov;
  };
  const Case cases[] = {{0.0f, 0.0f, false}, {0.0f, 0.05f, false}, {0.9f, 0.0f, false},
                        {0.9f, 1e-2f, false}, {0.9f, 1e-2f, true},  {0.5f, 0.0f, true}};
  for (const Case& c : cases) {
    std::vector<Var> params = make_params(11);
    nn::SGD opt(params, SgdOptions{0.05f, c.momentum, c.weight_decay, c.nesterov});
    std::vector<RefSgd> refs(params.size(), RefSgd{0.05, c.momentum, c.weight_decay, c.nesterov, {}});
    run_against_reference(opt, refs, 6, 100);
  }
}

TEST(Adam, MatchesReferenceAdamAndAdamW) {
  struct Case {
    float weight_decay;
    bool decoupled;
  };
  const Case cases[] = {{0.0f, false}, {0.1f, false}, {0.1f, true}, {0.0f, true}};
  for (const Case& c : cases) {
    std::vector<Var> params = make_params(21);
    nn::Adam opt(params, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, c.weight_decay, c.decoupled});
    std::vector<RefAdam> refs(params.size(), RefAdam{1e-2, 0.9, 0.999, 1e-8, c.weight_decay, c.decoupled, {}, {}});
    run_against_reference(opt, refs, 8, 200);
  }
}

TEST(Adam, NonDefaultBetasMatchReference) {
  std::vector<Var> params = make_params(31);
  nn::Adam opt(params, AdamOptions{3e-3f, 0.5f, 0.9f, 1e-3f, 0.0f, false});
  std::vector<RefAdam> refs(params.size(), RefAdam{3e-3, 0.5, 0.9, 1e-3, 0.0, false, {}, {}});
  run_against_reference(opt, refs, 5, 300);
}

TEST(Adam, AdamWDiffersFromAdamWithL2) {
  // Same weight decay, same gradients: L2 decay enters m and v (and is normalized away), the
  // decoupled one shrinks p directly, so after a few steps the two must be measurably apart.
  std::vector<Var> a = make_params(41), w = make_params(41);
  nn::Adam adam(a, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, 0.5f, false});
  nn::Adam adamw(w, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, 0.5f, true});
  for (int s = 0; s < 5; ++s) {
    for (std::size_t i = 0; i < a.size(); ++i) {
      a[i].zero_grad();
      w[i].zero_grad();
      a[i].accumulate_grad(grad_for(i, s, 400));
      w[i].accumulate_grad(grad_for(i, s, 400));
    }
    adam.step();
    adamw.step();
  }
  double max_diff = 0.0;
  const std::vector<double> pa = to_double(a[1].value()), pw = to_double(w[1].value());
  for (std::size_t k = 0; k < pa.size(); ++k) max_diff = std::max(max_diff, std::fabs(pa[k] - pw[k]));
  // AdamW shrinks by (1 − lr·wd)^5 ≈ 1 − 0.025 per unit of |p| ≤ 1: differences reach ~1e-2.
  EXPECT_GT(max_diff, 1e-3);
}

// ---- hand-derived steps ----------------------------------------------------------------------

TEST(Sgd, MomentumBufferStartsAtTheGradient) {
  // p0 = 1, g = 0.5 at both steps, lr = 0.1, momentum 0.9.
  //  step 1: buf = g = 0.5 (not 0.1·g) → p = 1 − 0.1·0.5 = 0.95
  //  step 2: buf = 0.9·0.5 + 0.5 = 0.95 → p = 0.95 − 0.095 = 0.855
  // Nesterov, step 1: buf = 0.5, update g + 0.9·buf = 0.95 → p = 1 − 0.095 = 0.905.
  Var p(Tensor::full({1}, 1.0), true), q(Tensor::full({1}, 1.0), true);
  nn::SGD plain({p}, SgdOptions{0.1f, 0.9f, 0.0f, false});
  nn::SGD nesterov({q}, SgdOptions{0.1f, 0.9f, 0.0f, true});
  for (int s = 0; s < 2; ++s) {
    plain.zero_grad();
    nesterov.zero_grad();
    p.accumulate_grad(Tensor::full({1}, 0.5));
    q.accumulate_grad(Tensor::full({1}, 0.5));
    plain.step();
    if (s == 0) {
      nesterov.step();
      // float32 rounding of 0.905 and 0.95 (ulp ≈ 6e-8).
      EXPECT_NEAR(q.value().item(), 0.905, 1e-6);
      EXPECT_NEAR(p.value().item(), 0.95, 1e-6);
    }
  }
  EXPECT_NEAR(p.value().item(), 0.855, 1e-6);  // two float32 updates of O(1) values
}

TEST(Adam, FirstStepMovesByLrTimesSign) {
  // At t = 1: m̂ = g, v̂ = g², so Δp = −lr·g/(|g| + eps) ≈ −lr·sign(g) whatever |g| is.
  // g = 1e-3 shows eps: Δp = −0.01·1e-3/(1e-3 + 1e-8) = −0.01·(1 − 1e-5) = −0.0099999.
  Var p(Tensor::from_vector<float>({1.0f, 1.0f, 1.0f, -3.0f}, {4}), true);
  nn::Adam opt({p}, AdamOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, false});
  p.accumulate_grad(Tensor::from_vector<float>({0.5f, -2.0f, 1e-3f, 40.0f}, {4}));
  opt.step();
  // float32 p around 1 (ulp 1.2e-7) plus rounding in m/sqrt(v): 1e-6 absolute.
  EXPECT_TRUE(all_close(p.value(), {0.99, 1.01, 1.0 - 0.0099999, -3.01}, 0.0, 1e-6));
}

TEST(Adam, FirstStepWeightDecayAdamVsAdamW) {
  // p0 = 2, g = 0.5, lr = 0.01, wd = 0.1.
  //  Adam (L2): g' = 0.5 + 0.1·2 = 0.7 > 0, still normalized to one lr: p = 2 − 0.01 = 1.99.
  //  AdamW:     p = 2·(1 − 0.01·0.1) − 0.01 = 1.998 − 0.01 = 1.988.
  Var a(Tensor::full({1}, 2.0), true), w(Tensor::full({1}, 2.0), true);
  nn::Adam adam({a}, AdamOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, false});
  nn::Adam adamw({w}, AdamOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, true});
  a.accumulate_grad(Tensor::full({1}, 0.5));
  w.accumulate_grad(Tensor::full({1}, 0.5));
  adam.step();
  adamw.step();
  EXPECT_NEAR(a.value().item(), 1.99, 1e-6);   // float32 value near 2: ulp 2.4e-7
  EXPECT_NEAR(w.value().item(), 1.988, 1e-6);  // same
}

// ---- behaviour -------------------------------------------------------------------------------

// f(x) = ½ Σ a_i (x_i − c_i)², ∇f = a ⊙ (x − c), minimum at c. Curvatures a_i ∈ [0.5, 2].
struct Quadratic {
  std::vector<float> a, c;
  explicit Quadratic(std::int64_t n) {
    a = random_tensor({n}, 77, 0.5f, 2.0f).to_vector<float>();
    c = random_tensor({n}, 78, -3.0f, 3.0f).to_vector<float>();
  }
  Tensor grad(const Tensor& x) const {
    std::vector<float> xv = x.to_vector<float>(), g(xv.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = a[i] * (xv[i] - c[i]);
    return Tensor::from_vector(g, x.shape());
  }
  double max_error(const Tensor& x) const {
    double e = 0.0;
    std::vector<float> xv = x.to_vector<float>();
    for (std::size_t i = 0; i < xv.size(); ++i) e = std::max(e, std::fabs(double(xv[i]) - c[i]));
    return e;
  }
};

void minimize(nn::Optimizer& opt, const Quadratic& f, const nn::LrSchedule& schedule, int steps) {
  Var x = opt.parameters()[0];
  for (int s = 0; s < steps; ++s) {
    opt.set_lr(schedule.lr_at(opt.steps()));
    opt.zero_grad();
    x.accumulate_grad_owned(f.grad(x.value()));
    opt.step();
  }
}

TEST(Optimizers, MinimizeAQuadratic) {
  const Quadratic f(33);
  // Starting 3 units away on average; each optimizer must end within 1e-3 of the minimum.
  // Heavy-ball SGD, lr 0.1, momentum 0.9: contraction per step ≤ sqrt(0.9) ≈ 0.95 ⇒ 1e-5 by
  // 300 steps. Adam with a cosine schedule to 0 settles as lr shrinks.
  {
    Var x(Tensor::zeros({33}), true);
    nn::SGD opt({x}, SgdOptions{0.1f, 0.9f, 0.0f, false});
    minimize(opt, f, nn::ConstantLR(0.1f), 300);
    EXPECT_LT(f.max_error(x.value()), 1e-3) << opt.describe();
  }
  {
    Var x(Tensor::zeros({33}), true);
    nn::SGD opt({x}, SgdOptions{0.1f, 0.9f, 0.0f, true});
    minimize(opt, f, nn::ConstantLR(0.1f), 300);
    EXPECT_LT(f.max_error(x.value()), 1e-3) << opt.describe();
  }
  for (const char* name : {"adam", "adamw"}) {
    Var x(Tensor::zeros({33}), true);
    // Weight decay would move the minimizer away from c, so both run without it; "adamw" still
    // exercises the decoupled kernel path.
    nn::Adam opt({x}, AdamOptions{0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, std::string(name) == "adamw"});
    minimize(opt, f, nn::CosineAnnealing(0.1f, 2000), 2000);
    EXPECT_LT(f.max_error(x.value()), 1e-3) << opt.describe();
  }
}

TEST(Optimizers, SkipParametersWithoutGradient) {
  Var a(random_tensor({5}, 1), true), b(random_tensor({3}, 2), true);
  const std::vector<float> b0 = b.value().to_vector<float>();
  nn::Adam opt({a, b}, AdamOptions{0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, true});
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    a.accumulate_grad(random_tensor({5}, 10 + s));
    opt.step();
  }
  EXPECT_EQ(b.value().to_vector<float>(), b0);  // untouched, bit for bit
  // b's own step count starts now: its first update is again ≈ lr·sign(g) (bias correction t = 1).
  opt.zero_grad();
  b.accumulate_grad(Tensor::from_vector<float>({1.0f, -1.0f, 0.25f}, {3}));
  opt.step();
  EXPECT_TRUE(all_close(b.value(), {b0[0] - 0.01, b0[1] + 0.01, b0[2] - 0.01}, 0.0, 1e-6));  // float32 near 1
  EXPECT_EQ(opt.steps(), 4);
}

TEST(Optimizers, ZeroGradAndLearningRate) {
  Var p(random_tensor({4}, 5), true);
  nn::SGD opt({p}, SgdOptions{0.1f, 0.0f, 0.0f, false});
  p.accumulate_grad(Tensor::full({4}, 1.0));
  EXPECT_TRUE(p.has_grad());
  opt.zero_grad();
  EXPECT_FALSE(p.has_grad());
  const std::vector<float> p0 = p.value().to_vector<float>();
  opt.step();  // no gradients: nothing moves, the step is still counted
  EXPECT_EQ(p.value().to_vector<float>(), p0);
  EXPECT_EQ(opt.steps(), 1);
  opt.set_lr(0.5f);
  EXPECT_FLOAT_EQ(opt.lr(), 0.5f);
  EXPECT_FLOAT_EQ(opt.options().lr, 0.5f);
  p.accumulate_grad(Tensor::full({4}, 1.0));
  opt.step();
  // p − 0.5·1 exactly representable up to float32 rounding of p0 − 0.5.
  EXPECT_TRUE(all_close(p.value(), {p0[0] - 0.5, p0[1] - 0.5, p0[2] - 0.5, p0[3] - 0.5}, 0.0, 1e-7));
  opt.set_lr(0.0f);  // allowed: a schedule may end at 0
  EXPECT_THROW(opt.set_lr(-1.0f), InvalidArgument);
  EXPECT_THROW(opt.set_lr(std::nanf("")), InvalidArgument);
}

TEST(Optimizers, RejectBadHyperparameters) {
  auto params = [] { return std::vector<Var>{Var(random_tensor({3}, 1), true)}; };
  const float inf = INFINITY, nan = std::nanf("");
  for (float lr : {0.0f, -0.1f, inf, nan}) {
    EXPECT_THROW(nn::SGD(params(), SgdOptions{lr, 0.0f, 0.0f, false}), InvalidArgument) << lr;
    EXPECT_THROW(nn::Adam(params(), AdamOptions{lr, 0.9f, 0.999f, 1e-8f, 0.0f, false}), InvalidArgument) << lr;
  }
  for (float m : {-0.1f, 1.0f, 1.5f, nan}) {
    EXPECT_THROW(nn::SGD(params(), SgdOptions{0.1f, m, 0.0f, false}), InvalidArgument) << m;
    EXPECT_THROW(nn::Adam(params(), AdamOptions{0.1f, m, 0.999f, 1e-8f, 0.0f, false}), InvalidArgument) << m;
    EXPECT_THROW(nn::Adam(params(), AdamOptions{0.1f, 0.9f, m, 1e-8f, 0.0f, false}), InvalidArgument) << m;
  }
  for (float wd : {-1e-4f, inf, nan}) {
    EXPECT_THROW(nn::SGD(params(), SgdOptions{0.1f, 0.9f, wd, false}), InvalidArgument) << wd;
    EXPECT_THROW(nn::Adam(params(), AdamOptions{0.1f, 0.9f, 0.999f, 1e-8f, wd, true}), InvalidArgument) << wd;
  }
  for (float eps : {0.0f, -1e-8f, inf, nan})
    EXPECT_THROW(nn::Adam(params(), AdamOptions{0.1f, 0.9f, 0.999f, eps, 0.0f, false}), InvalidArgument) << eps;
  EXPECT_THROW(nn::SGD(params(), SgdOptions{0.1f, 0.0f, 0.0f, true}), InvalidArgument);  // Nesterov, no momentum
  EXPECT_THROW(nn::SGD({}, SgdOptions{}), InvalidArgument);                             // no parameters
  EXPECT_THROW(nn::SGD({Var()}, SgdOptions{}), InvalidArgument);                        // undefined Var
  Var p(random_tensor({3}, 1), true);
  EXPECT_THROW(nn::SGD({p, p}, SgdOptions{}), InvalidArgument);  // repeated: would update twice
  try {
    nn::SGD(params(), SgdOptions{0.1f, 1.5f, 0.0f, false});
    FAIL() << "momentum 1.5 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("momentum 1.5"), std::string::npos) << e.what();
  }
}

TEST(Optimizers, NonFiniteGradientThrowsBeforeAnyUpdate) {
  for (const char* name : {"sgd", "adam", "adamw"}) {
    for (float bad : {std::nanf(""), -INFINITY}) {
      // Parameter 0 has a clean gradient and comes first: a step that updated as it validated
      // would already have moved it when parameter 1's bad value is found.
      Var a(random_tensor({6}, 3), true), b(random_tensor({2, 5}, 4), true);
      auto opt = nn::make_optimizer(nn::parse_optimizer(name), {a, b}, 0.1f);
      a.accumulate_grad(random_tensor({6}, 5));
      std::vector<float> gb = random_tensor({2, 5}, 6).to_vector<float>();
      gb[7] = bad;
      b.accumulate_grad(Tensor::from_vector(gb, {2, 5}));
      const std::vector<float> a0 = a.value().to_vector<float>(), b0 = b.value().to_vector<float>();
      EXPECT_THROW(opt->step(), NumericError) << name;
      EXPECT_EQ(a.value().to_vector<float>(), a0) << name;
      EXPECT_EQ(b.value().to_vector<float>(), b0) << name;
      EXPECT_EQ(opt->steps(), 0) << name;
      // Recovery: with the bad gradient dropped, the next step is a normal first step.
      b.zero_grad();
      opt->step();
      EXPECT_NE(a.value().to_vector<float>(), a0) << name;
    }
  }
}

TEST(Optimizers, GradientShapeMismatchIsAShapeError) {
  Var p(random_tensor({4}, 1), true);
  nn::SGD opt({p}, SgdOptions{0.1f, 0.0f, 0.0f, false});
  p.state()->grad = random_tensor({5}, 2);  // bypasses accumulate_grad's own check
  EXPECT_THROW(opt.step(), ShapeError);
}

TEST(Optimizers, FactoryNamesAndDefaults) {
  auto params = [] { return std::vector<Var>{Var(random_tensor({3}, 1), true)}; };
  auto sgd = nn::make_optimizer(nn::parse_optimizer("sgd"), params(), 0.1f);
  const auto* s = dynamic_cast<nn::SGD*>(sgd.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->options().momentum, 0.0f);
  EXPECT_EQ(s->options().weight_decay, 0.0f);
  EXPECT_FALSE(s->options().nesterov);
  auto adam = nn::make_optimizer(nn::parse_optimizer("adam"), params(), 1e-3f);
  const auto* a = dynamic_cast<nn::Adam*>(adam.get());
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->options().decoupled);
  EXPECT_EQ(a->options().weight_decay, 0.0f);
  EXPECT_EQ(a->options().beta1, 0.9f);
  EXPECT_EQ(a->options().beta2, 0.999f);
  EXPECT_EQ(a->options().eps, 1e-8f);
  auto adamw = nn::make_optimizer(nn::parse_optimizer("adamw"), params(), 1e-3f);
  const auto* w = dynamic_cast<nn::Adam*>(adamw.get());
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(w->options().decoupled);
  EXPECT_EQ(w->options().weight_decay, 1e-2f);
  EXPECT_EQ(adamw->describe().rfind("AdamW(", 0), 0u) << adamw->describe();
  EXPECT_THROW(nn::make_optimizer(nn::parse_optimizer("rmsprop"), params(), 0.1f), InvalidArgument);
  EXPECT_THROW(nn::make_optimizer(nn::parse_optimizer("sgd"), params(), 0.0f), InvalidArgument);
}

// ---- schedules -------------------------------------------------------------------------------

// Schedules compute in double and round once to float: 1e-6 relative is a few float ulps.
constexpr double kLrRtol = 1e-6;

TEST(Schedules, ConstantAndStep) {
  nn::ConstantLR c(0.3f);
  EXPECT_FLOAT_EQ(c.lr_at(0), 0.3f);
  EXPECT_FLOAT_EQ(c.lr_at(123456), 0.3f);
  nn::StepLR s(0.1f, 30, 0.1f);
  EXPECT_NEAR(s.lr_at(0), 0.1, 0.1 * kLrRtol);
  EXPECT_NEAR(s.lr_at(29), 0.1, 0.1 * kLrRtol);
  EXPECT_NEAR(s.lr_at(30), 0.01, 0.01 * kLrRtol);
  EXPECT_NEAR(s.lr_at(59), 0.01, 0.01 * kLrRtol);
  EXPECT_NEAR(s.lr_at(60), 0.001, 0.001 * kLrRtol);
  // make_schedule(nn::parse_schedule("step")): step_size = total/3 = 30 for 90 steps.
  auto m = nn::make_schedule(nn::parse_schedule("step"), 0.1f, 90);
  EXPECT_NEAR(m->lr_at(29), 0.1, 0.1 * kLrRtol);
  EXPECT_NEAR(m->lr_at(30), 0.01, 0.01 * kLrRtol);
  EXPECT_NEAR(m->lr_at(89), 0.001, 0.001 * kLrRtol);
}

TEST(Schedules, CosineAnnealing) {
  // η_max = 0.1, η_min = 0.001, T = 100:
  //   t = 0: 0.1;  t = 50: cos(π/2) = 0 → (0.1 + 0.001)/2 = 0.0505;
  //   t = 25: 0.001 + 0.099·(1 + √2/2)/2 = 0.0855;  t = 100: 0.001; t > 100 holds 0.001.
  nn::CosineAnnealing c(0.1f, 100, 0.001f);
  EXPECT_NEAR(c.lr_at(0), 0.1, 0.1 * kLrRtol);
  EXPECT_NEAR(c.lr_at(25), 0.001 + 0.099 * (1.0 + std::sqrt(0.5)) / 2.0, 0.1 * kLrRtol);
  EXPECT_NEAR(c.lr_at(50), 0.0505, 0.1 * kLrRtol);
  EXPECT_NEAR(c.lr_at(100), 0.001, 0.001 * kLrRtol);
  EXPECT_NEAR(c.lr_at(500), 0.001, 0.001 * kLrRtol);
  for (std::int64_t t = 1; t <= 100; ++t) EXPECT_LE(c.lr_at(t), c.lr_at(t - 1)) << t;
  auto m = nn::make_schedule(nn::parse_schedule("cosine"), 0.2f, 10);
  EXPECT_NEAR(m->lr_at(5), 0.1, 0.1 * kLrRtol);
  EXPECT_GT(m->lr_at(9), 0.0f);  // the last training step still moves
  EXPECT_EQ(m->lr_at(10), 0.0f);
}

TEST(Schedules, OneCycleKeyStepsMatchPyTorch) {
  // OneCycleLR(max_lr = 0.1, total_steps = 100) defaults: pct_start 0.3, div 25, final div 1e4.
  //   start = 0.1/25 = 4e-3, peak 0.1 at step 0.3·100 − 1 = 29, end = 4e-3/1e4 = 4e-7 at step 99.
  nn::OneCycle o(0.1f, 100);
  EXPECT_NEAR(o.lr_at(0), 4e-3, 4e-3 * kLrRtol);
  EXPECT_NEAR(o.lr_at(29), 0.1, 0.1 * kLrRtol);
  EXPECT_NEAR(o.lr_at(99), 4e-7, 4e-7 * kLrRtol);
  EXPECT_NEAR(o.lr_at(150), 4e-7, 4e-7 * kLrRtol);  // held past the end
  for (std::int64_t t = 1; t <= 29; ++t) EXPECT_GT(o.lr_at(t), o.lr_at(t - 1)) << t;
  for (std::int64_t t = 30; t <= 99; ++t) EXPECT_LT(o.lr_at(t), o.lr_at(t - 1)) << t;
  // T = 20, pct_start 0.25, max 1: phase 1 is steps [0, 4], phase 2 is (4, 19].
  //   step 2 = phase-1 midpoint: cos(π/2) = 0 → (0.04 + 1)/2 = 0.52.
  //   step 9: x = (9 − 4)/15 = 1/3, cos(π/3) = 1/2 → 4e-6 + (1 − 4e-6)·0.75 = 0.750001.
  nn::OneCycle q(1.0f, 20, 0.25);
  EXPECT_NEAR(q.lr_at(0), 0.04, 0.04 * kLrRtol);
  EXPECT_NEAR(q.lr_at(2), 0.52, kLrRtol);
  EXPECT_NEAR(q.lr_at(4), 1.0, kLrRtol);
  EXPECT_NEAR(q.lr_at(9), 0.750001, kLrRtol);
  EXPECT_NEAR(q.lr_at(19), 4e-6, 4e-6 * kLrRtol);
  // pct_start·T = 1 makes phase 1 a single point (PyTorch: 0/0); it yields the peak.
  nn::OneCycle degenerate(1.0f, 10, 0.1);
  EXPECT_NEAR(degenerate.lr_at(0), 1.0, kLrRtol);
  EXPECT_LT(degenerate.lr_at(1), 1.0f);
  auto m = nn::make_schedule(nn::parse_schedule("onecycle"), 0.1f, 100);
  EXPECT_NEAR(m->lr_at(29), 0.1, 0.1 * kLrRtol);
}

TEST(Schedules, RejectBadArguments) {
  EXPECT_THROW(nn::ConstantLR(0.0f), InvalidArgument);
  EXPECT_THROW(nn::ConstantLR(1.0f).lr_at(-1), InvalidArgument);
  EXPECT_THROW(nn::StepLR(0.1f, 0, 0.1f), InvalidArgument);
  EXPECT_THROW(nn::StepLR(0.1f, 10, 0.0f), InvalidArgument);
  EXPECT_THROW(nn::CosineAnnealing(0.1f, 0), InvalidArgument);
  EXPECT_THROW(nn::CosineAnnealing(0.1f, 10, 0.2f), InvalidArgument);  // eta_min above base
  EXPECT_THROW(nn::OneCycle(0.1f, 1), InvalidArgument);
  EXPECT_THROW(nn::OneCycle(0.1f, 100, 1.5), InvalidArgument);
  EXPECT_THROW(nn::OneCycle(0.1f, 100, 0.3, 0.0), InvalidArgument);
  EXPECT_THROW(nn::OneCycle(0.1f, 100, 0.3, 25.0, -1.0), InvalidArgument);
  EXPECT_THROW(nn::make_schedule(nn::parse_schedule("linear"), 0.1f, 100), InvalidArgument);
  EXPECT_THROW(nn::make_schedule(nn::parse_schedule("cosine"), -0.1f, 100), InvalidArgument);
  EXPECT_THROW(nn::make_schedule(nn::parse_schedule("step"), 0.1f, 0), InvalidArgument);
}

// ---- CUDA vs CPU -----------------------------------------------------------------------------

// Runs `steps` updates of the same optimizer configuration on CPU and CUDA copies of the same
// parameters and gradients, then compares the parameters.
void compare_devices(const std::string& name, float lr, int steps) {
  SCOPED_TRACE(name);
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    std::vector<Var> params = make_params(51, run.device());
    std::unique_ptr<nn::Optimizer> opt;
    if (name == "sgd-nesterov") opt = std::make_unique<nn::SGD>(params, SgdOptions{lr, 0.9f, 1e-2f, true});
    else if (name == "sgd-momentum") opt = std::make_unique<nn::SGD>(params, SgdOptions{lr, 0.9f, 1e-2f, false});
    else if (name == "adam-l2") opt = std::make_unique<nn::Adam>(params, AdamOptions{lr, 0.9f, 0.999f, 1e-8f, 0.1f, false});
    else opt = nn::make_optimizer(nn::parse_optimizer(name), params, lr);
    for (int s = 0; s < steps; ++s) {
      for (std::size_t i = 0; i < params.size(); ++i) {
        params[i].zero_grad();
        params[i].accumulate_grad(run.input(grad_for(i, s, 500)));
      }
      opt->step();
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].value().device(), run.device());
      // Same float32 formula on both devices; nvcc contracts a·b + c into FMA and the CPU build
      // does not, a ≤ 1-ulp difference per operation that compounds over ≤ 10 steps: 1e-5/1e-6.
      run.check("param " + std::to_string(i), params[i].value(), {1e-5, 1e-6});
    }
  }));
}

TEST(OptimCuda, SgdMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  compare_devices("sgd", 0.05f, 6);
  compare_devices("sgd-momentum", 0.05f, 6);
  compare_devices("sgd-nesterov", 0.05f, 6);
}

TEST(OptimCuda, AdamMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  compare_devices("adam", 1e-2f, 8);
  compare_devices("adam-l2", 1e-2f, 8);
  compare_devices("adamw", 1e-2f, 8);
}

TEST(OptimCuda, NanGradientOnDeviceLeavesParamsUnchanged) {
  AEGIS_REQUIRE_GPU();
  Var a(random_tensor({6}, 3).to(Device::cuda()), true), b(random_tensor({5}, 4).to(Device::cuda()), true);
  nn::Adam opt({a, b}, AdamOptions{0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, false});
  a.accumulate_grad(random_tensor({6}, 5).to(Device::cuda()));
  b.accumulate_grad(Tensor::from_vector<float>({1, 2, std::nanf(""), 4, 5}, {5}).to(Device::cuda()));
  const std::vector<float> a0 = a.value().to_vector<float>();
  EXPECT_THROW(opt.step(), NumericError);
  EXPECT_EQ(a.value().to_vector<float>(), a0);
}

TEST(OptimCuda, StateFollowsParameterToDevice) {
  AEGIS_REQUIRE_GPU();
  // Two momentum steps on the CPU, then the parameter moves to the GPU and a third step runs
  // there with the momentum buffer carried along: the result equals three CPU steps.
  Var p(random_tensor({9}, 7), true), ref(random_tensor({9}, 7), true);
  nn::SGD opt({p}, SgdOptions{0.1f, 0.9f, 0.0f, false});
  nn::SGD opt_ref({ref}, SgdOptions{0.1f, 0.9f, 0.0f, false});
  for (int s = 0; s < 3; ++s) {
    if (s == 2) p.mutable_value() = p.value().to(Device::cuda());
    const Tensor g = random_tensor({9}, 60 + s);
    p.zero_grad();
    ref.zero_grad();
    p.accumulate_grad(g.to(p.device()));
    ref.accumulate_grad(g);
    opt.step();
    opt_ref.step();
  }
  ASSERT_TRUE(p.value().is_cuda());
  // One GPU step with possible FMA contraction on values of O(1): 1e-6 absolute.
  EXPECT_TRUE(testing::matches(p.value(), ref.value(), {0.0, 1e-6}));
}

}  // namespace
}  // namespace aegis
