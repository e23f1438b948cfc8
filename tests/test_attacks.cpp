// Batched adversarial attacks: the fused step kernel against a plain reference, the analytic
// oracle of a linear classifier (minimal adversarial distance |w·x+b|/‖w‖ in the dual norm),
// the distribution of random starts, batch independence, the keep-best / early-stop / restart
// bookkeeping on a small trained model, argument checking, and CUDA against the CPU.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "attacks/attacks.h"
#include "kernels/attack_step.h"
#include "nn/layers.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "runtime/dispatch.h"
#include "support/backend_compare.h"
#include "support/linear_problem.h"
#include "support/testing.h"

namespace aegis {
namespace {

using attacks::AttackOptions;
using attacks::AttackResult;
using kernels::AttackNorm;

// ---- helpers ---------------------------------------------------------------------------------

using AttackFn = AttackResult (*)(nn::Module&, const Tensor&, const Tensor&, const AttackOptions&);
struct NamedAttack {
  const char* name;
  AttackFn fn;
};
const NamedAttack kAttacks[] = {
    {"fgsm", &attacks::fgsm}, {"bim", &attacks::bim}, {"pgd", &attacks::pgd}, {"mifgsm", &attacks::mifgsm}};

std::vector<float> floats(const Tensor& t) {
  return t.to(Device::cpu()).to_vector<float>();
}

// ‖a_i − b_i‖ per example (rows of n·d elements), in double from the float values.
std::vector<double> norms_of(const Tensor& a, const Tensor& b, const std::string& norm) {
  const std::vector<float> av = floats(a), bv = floats(b);
  const std::int64_t n = a.size(0), d = a.numel() / n;
  std::vector<double> out(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double diff = static_cast<double>(av[i * d + j]) - bv[i * d + j];
      acc = norm == "linf" ? std::max(acc, std::fabs(diff)) : acc + diff * diff;
    }
    out[static_cast<std::size_t>(i)] = norm == "linf" ? acc : std::sqrt(acc);
  }
  return out;
}

std::vector<std::int32_t> predictions(nn::Module& model, const Tensor& x) {
  return nn::argmax(model.forward(nn::Var(x, false)).value()).to(Device::cpu()).to_vector<std::int32_t>();
}

// The invariants every attack result must satisfy, whatever the model.
void expect_invariants(nn::Module& model, const Tensor& x, const Tensor& labels, const AttackOptions& o,
                       const AttackResult& r) {
  const std::int64_t n = x.size(0);
  ASSERT_EQ(r.adversarial.shape(), x.shape());
  ASSERT_EQ(r.success.shape(), (Shape{n}));
  const std::vector<float> eps = attacks::broadcast_per_example(o.eps, n).to_vector<float>();
  const std::vector<double> dist = norms_of(r.adversarial, x, norm_name(o.norm));
  const std::vector<float> reported = r.perturbation_norm.to_vector<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    // The kernels keep ‖x_adv − x‖ ≤ ε for the float values themselves; 1e-6 is the brief's bound.
    EXPECT_LE(dist[i], eps[i] + 1e-6) << "example " << i;
    // The reported norm is the same quantity rounded to float (relative 6e-8).
    EXPECT_NEAR(reported[i], dist[i], 1e-6 + 1e-6 * dist[i]) << "example " << i;
  }
  for (float v : floats(r.adversarial)) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << v;
  // success must be what the model says about the returned examples.
  const std::vector<std::int32_t> pred = predictions(model, r.adversarial);
  const std::vector<std::int32_t> goal = (o.targeted ? o.targets : labels).to(Device::cpu()).to_vector<std::int32_t>();
  const std::vector<std::int32_t> success = r.success.to_vector<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i)
    EXPECT_EQ(success[i], o.targeted ? pred[i] == goal[i] : pred[i] != goal[i]) << "example " << i;
}

// logits (0, w·x + b): nn::Flatten then nn::Linear(d, 2) with row 0 of the weight and bias zero.
std::shared_ptr<nn::Sequential> linear_model(const std::vector<float>& w, float b) {
  const std::int64_t d = static_cast<std::int64_t>(w.size());
  nn::InitRng rng(0);
  auto linear = std::make_shared<nn::Linear>(d, 2, rng);
  float* weight = linear->weight().value().data<float>();
  for (std::int64_t j = 0; j < d; ++j) {
    weight[j] = 0.0f;
    weight[d + j] = w[static_cast<std::size_t>(j)];
  }
  float* bias = linear->bias().value().data<float>();
  bias[0] = 0.0f;
  bias[1] = b;
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), linear});
}

// Examples in [0.3, 0.7]^d (shape [N, 1, 4, 6]) with margin |w·x + b| ≥ 0.02 and a minimal L2
// distance ≤ 0.28, so that 1.05× either distance keeps x ± ε inside [0, 1]: the box never binds.
struct LinearProblem {
  std::vector<float> w;
  float b = 0.0f;
  Tensor x, labels;
  std::vector<double> dist_linf, dist_l2;  // |w·x+b|/‖w‖₁ and |w·x+b|/‖w‖₂
};

LinearProblem linear_problem(std::int64_t n) {
  LinearProblem p;
  const std::int64_t d = 24;
  p.w = floats(testing::random_tensor({d}, 101, -1.0f, 1.0f));
  double l1 = 0.0, l2 = 0.0, center = 0.0;
  for (float v : p.w) {
    l1 += std::fabs(v);
    l2 += static_cast<double>(v) * v;
    center += 0.5 * v;
  }
  l2 = std::sqrt(l2);
  p.b = static_cast<float>(-center);
  const std::vector<float> pool = floats(testing::random_tensor({40 * n, d}, 102, 0.3f, 0.7f));
  std::vector<float> xs;
  std::vector<std::int32_t> ys;
  for (std::int64_t k = 0; k < 40 * n && static_cast<std::int64_t>(ys.size()) < n; ++k) {
    double margin = p.b;
    for (std::int64_t j = 0; j < d; ++j) margin += static_cast<double>(p.w[j]) * pool[k * d + j];
    if (std::fabs(margin) < 0.02 || std::fabs(margin) / l2 > 0.28) continue;
    xs.insert(xs.end(), pool.begin() + k * d, pool.begin() + (k + 1) * d);
    ys.push_back(margin > 0 ? 1 : 0);
    p.dist_linf.push_back(std::fabs(margin) / l1);
    p.dist_l2.push_back(std::fabs(margin) / l2);
  }
  EXPECT_EQ(static_cast<std::int64_t>(ys.size()), n);
  p.x = Tensor::from_vector(xs, {n, 1, 4, 6});
  p.labels = Tensor::from_vector(ys, {n});
  return p;
}

using testing::scaled;

// ---- the fused step against a plain reference ----------------------------------------------

struct StepInputs {
  Tensor x, x0, grad, momentum, eps, alpha;
};

StepInputs step_inputs(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  StepInputs s;
  s.x0 = testing::random_tensor({n, d}, seed, 0.0f, 1.0f);
  std::vector<float> x = floats(s.x0), noise = floats(testing::random_tensor({n, d}, seed + 1, -0.2f, 0.2f));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::min(1.0f, std::max(0.0f, x[i] + noise[i]));
  s.x = Tensor::from_vector(x, {n, d});
  std::vector<float> g = floats(testing::random_tensor({n, d}, seed + 2));
  for (std::size_t i = 0; i < g.size(); i += 5) g[i] = 0.0f;  // zero components: sign 0, no step
  s.grad = Tensor::from_vector(g, {n, d});
  s.momentum = testing::random_tensor({n, d}, seed + 3, -0.1f, 0.1f);
  s.eps = testing::random_tensor({n}, seed + 4, 0.05f, 0.3f);
  s.alpha = testing::random_tensor({n}, seed + 5, 0.01f, 0.2f);
  return s;
}

// The formulas of kernels/attack_step.h, in double, projecting onto exactly ε.
void reference_step(const kernels::AttackStepArgs& a, std::vector<double>& x, const std::vector<float>& x0,
                    const std::vector<float>& grad, std::vector<double>& mom, const std::vector<float>& eps,
                    const std::vector<float>& alpha) {
  const std::int64_t d = a.d;
  for (std::int64_t i = 0; i < a.n; ++i) {
    std::vector<double> dir(grad.begin() + i * d, grad.begin() + (i + 1) * d);
    if (a.momentum) {
      double l1 = 0.0;
      for (double g : dir) l1 += std::fabs(g);
      for (std::int64_t j = 0; j < d; ++j) {
        mom[i * d + j] = a.decay * mom[i * d + j] + (l1 > 0 ? dir[j] / l1 : 0.0);
        dir[j] = mom[i * d + j];
      }
    }
    if (a.norm == AttackNorm::Linf) {
      for (std::int64_t j = 0; j < d; ++j) {
        const double s = dir[j] > 0 ? 1.0 : (dir[j] < 0 ? -1.0 : 0.0);
        double v = x[i * d + j] + alpha[i] * s;
        v = std::min(std::max(v, static_cast<double>(x0[i * d + j]) - eps[i]),
                     static_cast<double>(x0[i * d + j]) + eps[i]);
        x[i * d + j] = std::min(std::max(v, 0.0), 1.0);
      }
    } else {
      double norm = 0.0;
      for (double g : dir) norm += g * g;
      norm = std::sqrt(norm);
      std::vector<double> delta(static_cast<std::size_t>(d));
      double dn = 0.0;
      for (std::int64_t j = 0; j < d; ++j) {
        delta[j] = x[i * d + j] + (norm > 0 ? alpha[i] * dir[j] / norm : 0.0) - x0[i * d + j];
        dn += delta[j] * delta[j];
      }
      dn = std::sqrt(dn);
      const double f = dn > eps[i] ? eps[i] / dn : 1.0;
      for (std::int64_t j = 0; j < d; ++j) x[i * d + j] = std::min(std::max(x0[i * d + j] + delta[j] * f, 0.0), 1.0);
    }
  }
}

struct StepCase {
  AttackNorm norm;
  bool momentum;
};
const StepCase kStepCases[] = {
    {AttackNorm::Linf, false}, {AttackNorm::L2, false}, {AttackNorm::Linf, true}, {AttackNorm::L2, true}};

// Runs one step of every kind on `device`, returning x and the momentum after it.
std::vector<std::pair<Tensor, Tensor>> run_steps(const StepInputs& s, Device device, int iterations) {
  std::vector<std::pair<Tensor, Tensor>> out;
  for (const StepCase& c : kStepCases) {
    Tensor x = s.x.to(device).clone(), mom = s.momentum.to(device).clone();
    const Tensor x0 = s.x0.to(device), g = s.grad.to(device), eps = s.eps.to(device), alpha = s.alpha.to(device);
    const kernels::AttackStepArgs a{c.norm, c.momentum, 0.9f, s.x.size(0), s.x.size(1)};
    for (int it = 0; it < iterations; ++it)
      AEGIS_DISPATCH(device, attack_step(a, x.data<float>(), x0.data<float>(), g.data<float>(), mom.data<float>(),
                                         eps.data<float>(), alpha.data<float>()));
    out.emplace_back(x.to(Device::cpu()), mom.to(Device::cpu()));
  }
  return out;
}

TEST(AttackStep, CpuKernelMatchesReference) {
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{1, 1}, {3, 7}, {2, 785}, {65, 33}};
  for (auto [n, d] : shapes) {
    SCOPED_TRACE("n " + std::to_string(n) + " d " + std::to_string(d));
    const StepInputs s = step_inputs(n, d, 7 + static_cast<std::uint64_t>(d));
    const auto got = run_steps(s, Device::cpu(), 3);
    for (std::size_t k = 0; k < std::size(kStepCases); ++k) {
      const StepCase c = kStepCases[k];
      SCOPED_TRACE(std::string(c.norm == AttackNorm::Linf ? "linf" : "l2") + (c.momentum ? " momentum" : ""));
      std::vector<double> x, mom;
      for (float v : floats(s.x)) x.push_back(v);
      for (float v : floats(s.momentum)) mom.push_back(v);
      const kernels::AttackStepArgs a{c.norm, c.momentum, 0.9f, n, d};
      for (int it = 0; it < 3; ++it) {
        reference_step(a, x, floats(s.x0), floats(s.grad), mom, floats(s.eps), floats(s.alpha));
        for (double& v : x) v = static_cast<float>(v);  // the kernel stores floats between iterations
        for (double& v : mom) v = static_cast<float>(v);
      }
      // Float storage of x (6e-8 per element per iteration) and, for L2, the projection onto
      // ε − (√d·2⁻²⁴ + ε·2⁻²²) instead of ε (≤ 2e-6 for d = 785).
      EXPECT_TRUE(testing::all_close(got[k].first, x, 0.0, 5e-6));
      if (c.momentum) {
        EXPECT_TRUE(testing::all_close(got[k].second, mom, 1e-6, 1e-7));  // float storage of the accumulator
      }
      const std::vector<double> dist = norms_of(got[k].first, s.x0, c.norm == AttackNorm::Linf ? "linf" : "l2");
      const std::vector<float> eps = floats(s.eps);
      for (std::int64_t i = 0; i < n; ++i) EXPECT_LE(dist[i], eps[i]) << "exactly inside the ball, example " << i;
    }
  }
}

// ---- the linear-classifier oracle ------------------------------------------------------------

TEST(AttackOracle, LinearModelBreaksExactlyAboveTheMinimalDistance) {
  const LinearProblem p = linear_problem(48);
  auto model = linear_model(p.w, p.b);
  ASSERT_EQ(predictions(*model, p.x), p.labels.to_vector<std::int32_t>());
  for (const std::string norm : {"linf", "l2"}) {
    const std::vector<double>& dist = norm == "linf" ? p.dist_linf : p.dist_l2;
    for (const NamedAttack& attack : kAttacks) {
      for (bool targeted : {false, true}) {
        for (double factor : {1.05, 0.95}) {
          SCOPED_TRACE(std::string(attack.name) + " " + norm + (targeted ? " targeted" : "") + " at " +
                       std::to_string(factor) + "× the minimal distance");
          AttackOptions o;
          o.norm = parse_norm(norm);
          o.eps = scaled(dist, factor);  // per-example ε
          o.steps = 20;
          o.restarts = std::string(attack.name) == "pgd" ? 2 : 1;
          // PGD from a random start needs room to cross the ball and turn onto ŵ (L2).
          if (std::string(attack.name) == "pgd") o.step_size = scaled(dist, factor * (norm == "l2" ? 0.5 : 0.25));
          o.targeted = targeted;
          if (targeted) {
            std::vector<std::int32_t> t;
            for (std::int32_t y : p.labels.to_vector<std::int32_t>()) t.push_back(1 - y);
            o.targets = Tensor::from_vector(t, {p.labels.numel()});
          }
          const AttackResult r = attack.fn(*model, p.x, p.labels, o);
          expect_invariants(*model, p.x, p.labels, o, r);
          const std::vector<std::int32_t> success = r.success.to_vector<std::int32_t>();
          for (std::size_t i = 0; i < success.size(); ++i)
            EXPECT_EQ(success[i], factor > 1.0 ? 1 : 0) << "example " << i << ", distance " << dist[i];
          if (factor < 1.0) {
            // Nothing breaks, so every example runs every step of every restart.
            EXPECT_EQ(r.gradient_evaluations,
                      p.labels.numel() * (std::string(attack.name) == "fgsm" ? 1 : 20) * o.restarts);
          }
        }
      }
    }
  }
}

TEST(AttackOracle, TargetedReachesTheTargetClass) {
  // Three classes z_k = w_k·x + b_k; a large ε lets every example reach either other class.
  const std::int64_t d = 24, n = 30;
  nn::InitRng rng(5);
  auto linear = std::make_shared<nn::Linear>(d, 3, rng);
  const std::vector<float> w = floats(testing::random_tensor({3, d}, 201));
  std::copy(w.begin(), w.end(), linear->weight().value().data<float>());
  nn::Sequential model(std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), linear});
  const Tensor x = testing::random_tensor({n, 1, 4, 6}, 202, 0.3f, 0.7f);
  const std::vector<std::int32_t> clean = predictions(model, x);
  for (int shift : {1, 2}) {
    std::vector<std::int32_t> t;
    for (std::int32_t y : clean) t.push_back((y + shift) % 3);
    AttackOptions o;
    o.eps = attacks::broadcast_per_example(0.3f, 1);
    o.targeted = true;
    o.targets = Tensor::from_vector(t, {n});
    o.steps = 20;
    const AttackResult r = attacks::pgd(model, x, Tensor::from_vector(clean, {n}), o);
    expect_invariants(model, x, Tensor::from_vector(clean, {n}), o, r);
    EXPECT_EQ(predictions(model, r.adversarial), t);
  }
}

// ---- random starts ---------------------------------------------------------------------------

// Kolmogorov–Smirnov distance between the sample and the CDF F.
template <class Cdf>
double ks_distance(std::vector<double> sample, Cdf cdf) {
  std::sort(sample.begin(), sample.end());
  const double n = static_cast<double>(sample.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < sample.size(); ++i) {
    const double f = cdf(sample[i]);
    worst = std::max({worst, (static_cast<double>(i) + 1.0) / n - f, f - static_cast<double>(i) / n});
  }
  return worst;
}

// √n·D exceeds 1.95 with probability ≈ 0.001 under the null hypothesis (Kolmogorov distribution);
// the seeds are fixed, so a pass is reproducible, and a wrong law (radius ε·U instead of ε·U^{1/d},
// say) gives D = max t − t³ ≈ 0.38 at d = 3.
double ks_bound(std::size_t n) {
  return 1.95 / std::sqrt(static_cast<double>(n));
}

TEST(RandomStart, L2IsUniformInTheBall) {
  const std::int64_t n = 4000;
  const float eps = 0.3f;  // x = 0.5: no coordinate of a start can reach the box
  for (std::int64_t d : {1, 3, 50}) {
    SCOPED_TRACE("d " + std::to_string(d));
    const Tensor x = Tensor::full({n, d}, 0.5);
    const Tensor start =
        attacks::random_start(x, Tensor::full({1}, eps), Norm::L2, 11 + static_cast<std::uint64_t>(d), 0);
    const std::vector<double> r = norms_of(start, x, "l2");
    std::vector<double> t;
    for (double v : r) {
      ASSERT_LE(v, eps);
      t.push_back(v / eps);
    }
    // P(r ≤ ε·t) = t^d: the volume fraction of the ball of radius ε·t.
    EXPECT_LE(ks_distance(t, [d](double s) { return std::pow(s, static_cast<double>(d)); }), ks_bound(t.size()));
    if (d == 3) {
      // On the 2-sphere one coordinate of a uniform direction is uniform on [−1, 1] (Archimedes).
      const std::vector<float> s = floats(start);
      std::vector<double> u;
      for (std::int64_t i = 0; i < n; ++i)
        if (r[static_cast<std::size_t>(i)] > 0) u.push_back((s[i * d] - 0.5) / r[static_cast<std::size_t>(i)]);
      EXPECT_LE(ks_distance(u, [](double v) { return (v + 1.0) / 2.0; }), ks_bound(u.size()));
    }
  }
  // A different restart draws a different start.
  const Tensor x = Tensor::full({4, 5}, 0.5);
  EXPECT_NE(floats(attacks::random_start(x, Tensor::full({1}, eps), Norm::L2, 11, 0)),
            floats(attacks::random_start(x, Tensor::full({1}, eps), Norm::L2, 11, 1)));
}

TEST(RandomStart, LinfIsUniformInTheBoxAndPerExample) {
  const std::int64_t n = 2000, d = 5;
  const Tensor x = Tensor::full({n, d}, 0.5);
  const Tensor eps = testing::random_tensor({n}, 12, 0.05f, 0.4f);  // per-example ε
  const Tensor start = attacks::random_start(x, eps, Norm::Linf, 13, 2);
  const std::vector<float> s = floats(start), e = floats(eps);
  std::vector<double> u;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double delta = s[i * d + j] - 0.5;
      ASSERT_LE(std::fabs(delta), e[i]);
      u.push_back(delta / e[i]);
    }
  EXPECT_LE(ks_distance(u, [](double v) { return (v + 1.0) / 2.0; }), ks_bound(u.size()));
  // Near the box the start is clipped to [0, 1].
  const Tensor edge = attacks::random_start(Tensor::full({8, 3}, 1.0), Tensor::full({1}, 0.5f), Norm::Linf, 14);
  for (float v : floats(edge)) EXPECT_TRUE(v >= 0.5f && v <= 1.0f) << v;
}

// ---- bookkeeping on a small trained model -----------------------------------------------------

const testing::TrainedDigits& digits() {
  return testing::trained_digits_mlp();
}

AttackOptions digits_options(float eps, int steps, int restarts) {
  AttackOptions o;
  o.eps = attacks::broadcast_per_example(eps, 1);
  // A fixed step: the default (2.5ε/steps) would change the whole trajectory with `steps`.
  o.step_size = attacks::broadcast_per_example(eps / 4, 1);
  o.steps = steps;
  o.restarts = restarts;
  o.seed = 21;
  return o;
}

TEST(AttackBookkeeping, MoreStepsOrRestartsNeverRaiseRobustAccuracy) {
  const auto& dg = digits();
  nn::Module& model = *dg.model;
  const Tensor& x = dg.test.images;
  const Tensor& y = dg.test.labels;
  const double clean = static_cast<double>(nn::count_correct(model.forward(nn::Var(x, false)).value(), y)) /
                       static_cast<double>(y.numel());
  ASSERT_GT(clean, 0.85);  // a trained MLP on the 8×8 digits
  double previous = clean;
  std::vector<std::int32_t> broken(static_cast<std::size_t>(y.numel()), 0);
  for (auto [steps, restarts] : std::vector<std::pair<int, int>>{{1, 1}, {3, 1}, {10, 1}, {10, 3}}) {
    SCOPED_TRACE(std::to_string(steps) + " steps, " + std::to_string(restarts) + " restarts");
    const AttackOptions o = digits_options(0.08f, steps, restarts);
    const AttackResult r = attacks::pgd(model, x, y, o);
    expect_invariants(model, x, y, o, r);
    const double acc = attacks::robust_accuracy(r);
    EXPECT_LE(acc, previous);
    previous = acc;
    const std::vector<std::int32_t> s = r.success.to_vector<std::int32_t>();
    for (std::size_t i = 0; i < s.size(); ++i) {
      EXPECT_GE(s[i], broken[i]) << "example " << i << " was broken with fewer steps or restarts";
      broken[i] = s[i];
    }
  }
  EXPECT_LT(previous, clean - 0.2);  // the attack does real work at this ε
  EXPECT_GT(previous, 0.0);          // ... and the comparison is not vacuous
}

TEST(AttackBookkeeping, RestartsKeepFoundExamplesAndEarlyStopFreezes) {
  const auto& dg = digits();
  nn::Module& model = *dg.model;
  const Tensor& x = dg.test.images;
  const Tensor& y = dg.test.labels;
  const AttackResult one = attacks::pgd(model, x, y, digits_options(0.06f, 3, 1));
  const AttackResult three = attacks::pgd(model, x, y, digits_options(0.06f, 3, 3));
  const AttackResult longer = attacks::pgd(model, x, y, digits_options(0.06f, 10, 1));
  const std::int64_t n = y.numel(), d = x.numel() / n;
  const std::vector<float> a1 = floats(one.adversarial), a3 = floats(three.adversarial),
                           a10 = floats(longer.adversarial);
  const std::vector<float> clean = floats(x), l1 = floats(one.final_loss), l3 = floats(three.final_loss);
  const std::vector<std::int32_t> s1 = one.success.to_vector<std::int32_t>(),
                                  s3 = three.success.to_vector<std::int32_t>(),
                                  s10 = longer.success.to_vector<std::int32_t>();
  const std::vector<std::int32_t> clean_pred = predictions(model, x), labels = y.to_vector<std::int32_t>();
  std::int64_t frozen = 0, misclassified = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto row = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + i * d, v.begin() + (i + 1) * d);
    };
    if (s1[i]) {
      // Restart 0 is the same run in both; later restarts skip broken examples.
      EXPECT_EQ(s3[i], 1);
      EXPECT_EQ(row(a3), row(a1)) << "example " << i;
      // Frozen at its first success: ten steps return the same iterate as three.
      EXPECT_EQ(s10[i], 1);
      EXPECT_EQ(row(a10), row(a1)) << "example " << i;
      ++frozen;
    } else {
      EXPECT_GE(l3[i], l1[i]) << "the best of three runs includes the first";
    }
    if (clean_pred[i] != labels[i]) {
      // Already misclassified: never stepped.
      EXPECT_EQ(s1[i], 1);
      EXPECT_EQ(row(a1), row(clean));
      EXPECT_EQ(one.perturbation_norm.to_vector<float>()[i], 0.0f);
      ++misclassified;
    }
  }
  EXPECT_GT(frozen, misclassified);  // some examples broke during the steps, not only before
  EXPECT_GT(misclassified, 0);
  EXPECT_LT(one.gradient_evaluations, 3 * n);
  // Without early stop every example runs every step.
  AttackOptions o = digits_options(0.06f, 3, 1);
  o.early_stop = false;
  EXPECT_EQ(attacks::pgd(model, x, y, o).gradient_evaluations, 3 * n);
}

TEST(AttackBookkeeping, MomentumResultOfAnExampleDoesNotDependOnTheBatch) {
  const auto& dg = digits();
  nn::Module& model = *dg.model;
  const std::int64_t n = 40;
  const nn::Dataset part = nn::take(dg.test, 0, n);
  for (const std::string norm : {"linf", "l2"}) {
    AttackOptions o = digits_options(norm == "linf" ? 0.06f : 0.5f, 10, 1);
    o.norm = parse_norm(norm);
    o.momentum = 0.9f;
    const AttackResult batch = attacks::mifgsm(model, part.images, part.labels, o);
    expect_invariants(model, part.images, part.labels, o, batch);
    const std::vector<float> all = floats(batch.adversarial);
    const std::int64_t d = part.images.numel() / n;
    for (std::int64_t i : {0, 7, 39}) {
      const nn::Dataset alone = nn::take(dg.test, i, 1);
      const AttackResult single = attacks::mifgsm(model, alone.images, alone.labels, o);
      // Only the matrix products see the batch size (blocking may change their summation
      // order): the iterates agree to float rounding.
      EXPECT_TRUE(testing::all_close(single.adversarial.reshape({d}),
                                     std::vector<double>(all.begin() + i * d, all.begin() + (i + 1) * d), 0.0, 1e-5))
          << norm << " example " << i;
      EXPECT_EQ(single.success.to_vector<std::int32_t>()[0], batch.success.to_vector<std::int32_t>()[i]);
    }
  }
}

// ---- arguments -------------------------------------------------------------------------------

TEST(AttackArguments, BadInputsThrowAndTheModelIsRestored) {
  const LinearProblem p = linear_problem(6);
  auto model = linear_model(p.w, p.b);
  const auto good = [] {
    AttackOptions o;
    o.eps = attacks::broadcast_per_example(0.1f, 1);
    return o;
  };
  AttackOptions o = good();
  o.eps = Tensor::full({1}, -0.1);
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), InvalidArgument);
  o.eps = Tensor::full({1}, NAN);
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), NumericError);
  o.eps = Tensor::full({4}, 0.1);  // neither one value nor one per example
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), ShapeError);
  o = good();
  o.eps = Tensor();
  EXPECT_THROW(attacks::bim(*model, p.x, p.labels, o), InvalidArgument);
  o = good();
  o.steps = 0;
  EXPECT_THROW(attacks::bim(*model, p.x, p.labels, o), InvalidArgument);
  o = good();
  o.step_size = Tensor::full({1}, 0.0);
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), InvalidArgument);
  // Norms are an enum; their names are parsed once, at the edge.
  EXPECT_THROW(parse_norm("l1"), InvalidArgument);
  EXPECT_EQ(parse_norm("l2"), Norm::L2);
  EXPECT_STREQ(norm_name(parse_norm("linf")), "linf");
  o = good();
  o.random_start = false;
  o.restarts = 3;
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), InvalidArgument);
  o = good();
  o.momentum = -1.0f;
  EXPECT_THROW(attacks::mifgsm(*model, p.x, p.labels, o), InvalidArgument);
  o = good();
  o.targeted = true;  // no targets
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), InvalidArgument);
  o.targets = Tensor::from_vector<std::int32_t>({0, 1, 2, 0, 1, 0}, {6});  // class 2 of 2
  EXPECT_THROW(attacks::pgd(*model, p.x, p.labels, o), InvalidArgument);

  Tensor outside = p.x.clone();
  outside.data<float>()[7] = 1.25f;
  EXPECT_THROW(attacks::pgd(*model, outside, p.labels, good()), InvalidArgument);
  outside.data<float>()[7] = NAN;
  EXPECT_THROW(attacks::pgd(*model, outside, p.labels, good()), NumericError);
  EXPECT_THROW(attacks::pgd(*model, p.x.reshape({6 * 24}), p.labels, good()), ShapeError);
  EXPECT_THROW(attacks::pgd(*model, p.x, Tensor::from_vector<std::int32_t>({0, 1}, {2}), good()), ShapeError);
  EXPECT_THROW(attacks::pgd(*model, p.x, Tensor::full({6}, 0.0), good()), ShapeError);  // f32 labels
  const Tensor bad_labels = Tensor::from_vector<std::int32_t>({0, 1, 5, 0, 1, 0}, {6});
  for (const nn::Var& v : model->parameters()) ASSERT_TRUE(v.requires_grad());
  try {
    attacks::pgd(*model, p.x, bad_labels, good());
    ADD_FAILURE() << "label 5 of a 2-class model was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("labels[2] = 5"), std::string::npos) << e.what();
  }
  // Thrown mid-attack (after the parameters were switched off): restored all the same.
  for (const nn::Var& v : model->parameters()) EXPECT_TRUE(v.requires_grad());
  EXPECT_TRUE(model->training());
  EXPECT_THROW(attacks::broadcast_per_example(Tensor::full({2, 3}, 0.1), 6, "eps"), ShapeError);
  EXPECT_THROW(attacks::parse_attack_method("pgd-l3"), InvalidArgument);
  EXPECT_EQ(attacks::parse_attack_method("apgd-dlr"), attacks::AttackMethod::ApgdDlr);
}

TEST(AttackArguments, InputGradientsOnlyAndEmptyBatch) {
  const LinearProblem p = linear_problem(6);
  auto model = linear_model(p.w, p.b);
  AttackOptions o;
  o.eps = attacks::broadcast_per_example(0.1f, 1);
  attacks::pgd(*model, p.x, p.labels, o);
  for (const nn::Var& v : model->parameters()) {
    EXPECT_TRUE(v.requires_grad());
    EXPECT_FALSE(v.has_grad()) << "an attack formed a parameter gradient";
  }
  const AttackResult empty = attacks::pgd(*model, Tensor::empty({0, 1, 4, 6}), Tensor::empty({0}, DType::I32), o);
  EXPECT_EQ(empty.adversarial.shape(), (Shape{0, 1, 4, 6}));
  EXPECT_EQ(empty.gradient_evaluations, 0);
  EXPECT_EQ(attacks::robust_accuracy(empty), 1.0);
}

// ---- CUDA against the CPU --------------------------------------------------------------------

TEST(AttackCuda, StepKernelsMatchCpu) {
  AEGIS_REQUIRE_GPU();
  for (auto [n, d] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {3, 7}, {2, 785}, {300, 3072}}) {
    const StepInputs s = step_inputs(n, d, 31);
    SCOPED_TRACE(::testing::Message() << "n " << n << " d " << d);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const auto out = run_steps(s, run.device(), 3);
      for (std::size_t k = 0; k < out.size(); ++k) {
        // Same formulas in double; only the reduction order differs (relative 1e-15), which can
        // move a float result by one rounding step (6e-8) per iteration.
        run.check("case " + std::to_string(k) + " x", out[k].first, {0.0, 1e-6});
        run.check("case " + std::to_string(k) + " momentum", out[k].second, {1e-6, 1e-7});
      }
    }));
  }
}

TEST(AttackCuda, RandomStartsMatchCpu) {
  AEGIS_REQUIRE_GPU();
  const Tensor x = testing::random_tensor({37, 1, 28, 28}, 41, 0.0f, 1.0f);
  const Tensor eps = testing::random_tensor({37}, 42, 0.0f, 0.5f);
  for (const std::string norm : {"linf", "l2"}) {
    SCOPED_TRACE(norm);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Tensor start = attacks::random_start(run.input(x), eps, parse_norm(norm), 43, 1);
      EXPECT_EQ(start.device(), run.device());
      // Same Philox keys; CUDA's double log/sin/cos/pow differ from glibc's by an ulp of double,
      // which survives rounding to float at most as one float ulp (6e-8 below 1).
      run.check("start", start, {0.0, 2e-7});
    }));
  }
}

TEST(AttackCuda, PgdMatchesCpuOnTheLinearModel) {
  AEGIS_REQUIRE_GPU();
  const LinearProblem p = linear_problem(48);
  auto cpu_model = linear_model(p.w, p.b);
  auto gpu_model = linear_model(p.w, p.b);
  gpu_model->to(Device::cuda());
  for (const std::string norm : {"linf", "l2"}) {
    AttackOptions o;
    o.norm = parse_norm(norm);
    o.eps = scaled(norm == "linf" ? p.dist_linf : p.dist_l2, 1.05);
    o.steps = 20;
    o.restarts = 2;
    SCOPED_TRACE(norm);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      nn::Module& model = run.device().is_cuda() ? *gpu_model : *cpu_model;
      const AttackResult r = attacks::pgd(model, run.input(p.x), p.labels, o);
      EXPECT_EQ(r.adversarial.device(), run.device());
      run.check("success", r.success, testing::kExact);
      // Same starts and formulas; cuBLAS and OpenBLAS round the 24-term products differently,
      // which moves an L2 step by float rounding per iteration; sign steps of a linear model
      // never flip (|w_j| ≫ rounding).
      run.check("adversarial", r.adversarial, {0.0, 1e-5});
      run.check("gradient evaluations", Tensor::from_vector<std::int64_t>({r.gradient_evaluations}, {1}),
                testing::kExact);
    }));
  }
}

}  // namespace
}  // namespace aegis
