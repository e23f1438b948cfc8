// The fused CW-L2 and APGD kernels (kernels/attack_opt.h) against plain double-precision references
// written here — random rows, odd sizes, zero gradients, rows at the box edges, index lists that
// skip rows, the L2 projection landing on its radius — and CUDA against the CPU, kernel by kernel
// (whole cw_l2 / apgd runs on both devices: tests/test_attacks_cw_apgd.cpp).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/attack_opt.h"
#include "runtime/dispatch.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

template <class T>
Tensor on(const std::vector<T>& v, Device dev) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}).to(dev);
}

template <class T>
std::vector<T> host(const Tensor& t) {
  return t.to(Device::cpu()).to_vector<T>();
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Uniform values in [lo, hi) with every 5th element set to 0 and every 7th to 1 (the box edges).
std::vector<float> edgy_rows(std::int64_t n, std::int64_t d, std::uint64_t seed, float lo, float hi) {
  std::vector<float> v = host<float>(testing::random_tensor({n * d}, seed, lo, hi));
  for (std::size_t e = 0; e < v.size(); e += 5) v[e] = 0.0f;
  for (std::size_t e = 3; e < v.size(); e += 7) v[e] = 1.0f;
  return v;
}

// Random values with row `zero_row` all zero and every 9th element zero.
std::vector<float> gradient_rows(std::int64_t m, std::int64_t d, std::uint64_t seed, std::int64_t zero_row) {
  std::vector<float> g = host<float>(testing::random_tensor({m * d}, seed, -0.5f, 0.5f));
  for (std::size_t e = 0; e < g.size(); e += 9) g[e] = 0.0f;
  std::fill(g.begin() + zero_row * d, g.begin() + (zero_row + 1) * d, 0.0f);
  return g;
}

// ---- CW-L2 -------------------------------------------------------------------------------------

constexpr double kScale = 1.0 - 1e-6;  // s of Carlini & Wagner's change of variables

float reference_iterate(double w) {
  return static_cast<float>(std::min(1.0, std::max(0.0, (std::tanh(w) / kScale + 1.0) / 2.0)));
}

double sq_distance(const float* x, const float* x0, std::int64_t d) {
  double acc = 0.0;
  for (std::int64_t j = 0; j < d; ++j) acc += (static_cast<double>(x[j]) - x0[j]) * (static_cast<double>(x[j]) - x0[j]);
  return acc;
}

// w, m1, m2 per example; the compact batch of iterates and their squared distances.
struct CwState {
  std::vector<double> w, m1, m2;
  std::vector<float> batch;
  std::vector<double> l2_sq;
};

CwState cw_start_on(Device dev, const std::vector<float>& x0, std::int64_t n, std::int64_t d) {
  const Tensor d_x0 = on(x0, dev);
  Tensor w = Tensor::empty({n * d}, DType::F64, dev), m1 = Tensor::full({n * d}, 7.0, DType::F64).to(dev);
  Tensor m2 = Tensor::full({n * d}, 7.0, DType::F64).to(dev), x = Tensor::empty({n * d}, DType::F32, dev);
  Tensor l2 = Tensor::empty({n}, DType::F64, dev);
  AEGIS_DISPATCH(dev, cw_start(d_x0.data<float>(), w.data<double>(), m1.data<double>(), m2.data<double>(),
                               x.data<float>(), l2.data<double>(), n, d));
  return {host<double>(w), host<double>(m1), host<double>(m2), host<float>(x), host<double>(l2)};
}

// One Adam step t of rows `examples` whose iterates and gradients are rows `batch_rows` of
// in.batch and grad.
CwState cw_step_on(Device dev, const std::vector<float>& x0, const CwState& in,
                   const std::vector<std::int32_t>& examples, const std::vector<std::int32_t>& batch_rows,
                   const std::vector<float>& grad, std::int64_t d, int t) {
  const auto count = static_cast<std::int64_t>(examples.size());
  const kernels::CwAdamArgs args{count, d, 0.01, 1.0 - std::pow(0.9, t), 1.0 - std::pow(0.999, t)};
  Tensor w = on(in.w, dev), m1 = on(in.m1, dev), m2 = on(in.m2, dev);
  const Tensor d_x0 = on(x0, dev), batch = on(in.batch, dev), g = on(grad, dev);
  const Tensor ex = on(examples, dev), rows = on(batch_rows, dev);
  Tensor next = Tensor::empty({count * d}, DType::F32, dev), l2 = Tensor::empty({count}, DType::F64, dev);
  AEGIS_DISPATCH(dev, cw_adam_step(args, ex.data<std::int32_t>(), rows.data<std::int32_t>(), w.data<double>(),
                                   m1.data<double>(), m2.data<double>(), d_x0.data<float>(), batch.data<float>(),
                                   g.data<float>(), next.data<float>(), l2.data<double>()));
  return {host<double>(w), host<double>(m1), host<double>(m2), host<float>(next), host<double>(l2)};
}

// Kingma & Ba 2015, Alg. 1 on w with the gradient of ‖x' − x0‖² + (the model's part g), written
// out in double.
CwState cw_step_reference(const std::vector<float>& x0, const CwState& in, const std::vector<std::int32_t>& examples,
                          const std::vector<std::int32_t>& batch_rows, const std::vector<float>& grad, std::int64_t d,
                          int t) {
  CwState out = in;
  out.batch.assign(examples.size() * static_cast<std::size_t>(d), 0.0f);
  out.l2_sq.assign(examples.size(), 0.0);
  for (std::size_t j = 0; j < examples.size(); ++j) {
    for (std::int64_t q = 0; q < d; ++q) {
      const std::size_t e = static_cast<std::size_t>(examples[j] * d + q);
      const std::size_t b = static_cast<std::size_t>(batch_rows[j] * d + q);
      const double dx_dw = (1.0 - std::tanh(in.w[e]) * std::tanh(in.w[e])) / (2.0 * kScale);
      const double gw = (2.0 * (static_cast<double>(in.batch[b]) - x0[e]) + grad[b]) * dx_dw;
      out.m1[e] = 0.9 * in.m1[e] + (1.0 - 0.9) * gw;
      out.m2[e] = 0.999 * in.m2[e] + (1.0 - 0.999) * gw * gw;
      const double m_hat = out.m1[e] / (1.0 - std::pow(0.9, t)), v_hat = out.m2[e] / (1.0 - std::pow(0.999, t));
      out.w[e] = in.w[e] - 0.01 * m_hat / (std::sqrt(v_hat) + 1e-8);
      out.batch[j * static_cast<std::size_t>(d) + static_cast<std::size_t>(q)] = reference_iterate(out.w[e]);
    }
    out.l2_sq[j] =
        sq_distance(&out.batch[j * static_cast<std::size_t>(d)], &x0[static_cast<std::size_t>(examples[j] * d)], d);
  }
  return out;
}

// The three steps the tests take: all five examples; examples 0, 2, 3 (1 and 4 aborted: their
// state must stay as it is); examples 3 and 0, rows 2 and 0 of the three-row batch (out of order).
// zero_row: the batch row whose gradient is zero.
struct CwSchedule {
  std::vector<std::int32_t> examples, batch_rows;
  std::int64_t batch_size, zero_row;
};
const CwSchedule kCwSchedule[] = {
    {{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}, 5, 1}, {{0, 2, 3}, {0, 2, 3}, 5, 0}, {{3, 0}, {2, 0}, 3, 1}};

// a against b: w relative w_rtol (absolute 1e-16 near zero); the moments relative m_rtol with m_atol for those that
// cancel to near zero; x' absolute x_atol. a's squared distances must be those of its own x' rows (example examples[j]
// for row j) up to the summation order of d positive terms (d·2⁻⁵³ < 1e-12).
void expect_cw_close(const CwState& a, const CwState& b, const std::vector<float>& x0,
                     const std::vector<std::int32_t>& examples, std::int64_t d, double w_rtol, double m_rtol,
                     double m_atol, double x_atol, const std::string& what) {
  // |w| ≤ 7.3 and Adam moves it by ~lr; where the step cancels most of w, a few ulps of the step
  // (1e-18) are all that is left of the rounding, hence the 1e-16 floor.
  EXPECT_TRUE(testing::all_close(a.w, b.w, w_rtol, 1e-16)) << what << " w";
  EXPECT_TRUE(testing::all_close(a.m1, b.m1, m_rtol, m_atol)) << what << " m1";
  EXPECT_TRUE(testing::all_close(a.m2, b.m2, m_rtol, m_atol)) << what << " m2";
  EXPECT_TRUE(testing::all_close(as_double(a.batch), as_double(b.batch), 0.0, x_atol)) << what << " x'";
  std::vector<double> own;
  for (std::size_t j = 0; j < examples.size(); ++j)
    own.push_back(sq_distance(&a.batch[j * static_cast<std::size_t>(d)],
                              &x0[static_cast<std::size_t>(examples[j]) * static_cast<std::size_t>(d)], d));
  EXPECT_TRUE(testing::all_close(a.l2_sq, own, 1e-12, 1e-300)) << what << " l2";
}

TEST(CwKernels, StartAndAdamStepsMatchTheReference) {
  for (std::int64_t d : {1, 7, 256, 785}) {
    const std::int64_t n = 5;
    const std::vector<float> x0 = edgy_rows(n, d, 500 + static_cast<std::uint64_t>(d), 0.0f, 1.0f);
    CwState state = cw_start_on(Device::cpu(), x0, n, d);
    for (std::size_t e = 0; e < x0.size(); ++e) {
      // w0 = atanh((2x0 − 1)·s) is finite at the box edges and x'(w0) gives x0 back (one rounding).
      ASSERT_TRUE(std::isfinite(state.w[e]));
      EXPECT_DOUBLE_EQ(state.w[e], std::atanh((2.0 * x0[e] - 1.0) * kScale));
      EXPECT_NEAR(state.batch[e], x0[e], 6e-8) << "d " << d << " element " << e;
      EXPECT_EQ(state.m1[e], 0.0);
      EXPECT_EQ(state.m2[e], 0.0);
    }
    for (std::int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(state.l2_sq[static_cast<std::size_t>(i)], sq_distance(&state.batch[i * d], &x0[i * d], d), 1e-15);
    int t = 0;
    for (const CwSchedule& s : kCwSchedule) {
      ++t;
      const std::vector<float> g = gradient_rows(s.batch_size, d, 600 + t, s.zero_row);
      const CwState got = cw_step_on(Device::cpu(), x0, state, s.examples, s.batch_rows, g, d, t);
      const CwState want = cw_step_reference(x0, state, s.examples, s.batch_rows, g, d, t);
      // Same formulas in double on both sides: only the compiler's evaluation order of the
      // reference's written-out expressions differs (a few ulps of double); x' rounds to float.
      expect_cw_close(got, want, x0, s.examples, d, 1e-13, 1e-13, 1e-300, 6e-8,
                      "d " + std::to_string(d) + " step " + std::to_string(t));
      for (std::int32_t i = 0; i < n; ++i) {
        if (std::find(s.examples.begin(), s.examples.end(), i) != s.examples.end()) continue;
        for (std::int64_t q = i * d; q < (i + 1) * d; ++q) {  // a skipped example keeps its state exactly
          ASSERT_EQ(got.w[q], state.w[q]);
          ASSERT_EQ(got.m1[q], state.m1[q]);
          ASSERT_EQ(got.m2[q], state.m2[q]);
        }
      }
      for (float v : got.batch) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << v;
      state = got;
    }
  }
}

// ---- APGD --------------------------------------------------------------------------------------

struct ApgdState {
  std::vector<float> x, x_prev;  // [n, d], row r for example r
};

// One step of rows `rows` whose gradients are rows `grad_rows` of grad.
struct ApgdCall {
  bool l2, momentum;
  std::vector<std::int32_t> rows, grad_rows;
  std::vector<float> grad;
};

struct ApgdCase {
  std::int64_t n, d;
  std::vector<float> x0, eps;
  std::vector<double> eta;
};

ApgdState apgd_step_on(Device dev, const ApgdCase& c, const ApgdState& in, const ApgdCall& call) {
  const kernels::ApgdStepArgs args{call.l2, call.momentum, static_cast<std::int64_t>(call.rows.size()), c.d};
  Tensor x = on(in.x, dev), x_prev = on(in.x_prev, dev);
  const Tensor x0 = on(c.x0, dev), g = on(call.grad, dev), eta = on(c.eta, dev), eps = on(c.eps, dev);
  const Tensor rows = on(call.rows, dev), grad_rows = on(call.grad_rows, dev);
  AEGIS_DISPATCH(
      dev, apgd_step(args, rows.data<std::int32_t>(), grad_rows.data<std::int32_t>(), x.data<float>(),
                     x_prev.data<float>(), x0.data<float>(), g.data<float>(), eta.data<double>(), eps.data<float>()));
  return {host<float>(x), host<float>(x_prev)};
}

// The projection onto {‖y − x0‖ ≤ ε} ∩ [0, 1]^d, written out: L∞ clips to the interval and rounds
// to a float inside it; L2 takes y(s) = clip[0,1](x0 + s(v − x0)) with the largest s whose
// distance stays within l2_target_radius(ε, d), bisected to the last bit of double (100 halvings).
// `on_sphere`: the L2 ball bound (s < 1).
std::vector<float> reference_projection(bool l2, const std::vector<double>& v, const float* x0, double eps,
                                        bool& on_sphere) {
  const std::size_t d = v.size();
  std::vector<float> out(d);
  on_sphere = false;
  if (!l2) {
    for (std::size_t j = 0; j < d; ++j) {
      const double lo = std::max(0.0, x0[j] - eps), hi = std::min(1.0, x0[j] + eps);
      float f = static_cast<float>(std::min(std::max(v[j], lo), hi));
      if (f > hi) f = std::nextafter(f, -1.0f);
      if (f < lo) f = std::nextafter(f, 2.0f);
      out[j] = f;
    }
    return out;
  }
  const auto point = [&](double s, std::size_t j) { return std::min(1.0, std::max(0.0, x0[j] + s * (v[j] - x0[j]))); };
  const auto dist = [&](double s) {
    double acc = 0.0;
    for (std::size_t j = 0; j < d; ++j) acc += (point(s, j) - x0[j]) * (point(s, j) - x0[j]);
    return std::sqrt(acc);
  };
  const double radius = kernels::l2_target_radius(eps, static_cast<std::int64_t>(d));
  double s = 1.0;
  if (dist(1.0) > radius) {
    on_sphere = true;
    double lo = 0.0, hi = 1.0;
    for (int it = 0; it < 100; ++it) {
      const double mid = (lo + hi) / 2.0;
      (dist(mid) <= radius ? lo : hi) = mid;
    }
    s = lo;
  }
  for (std::size_t j = 0; j < d; ++j) out[j] = static_cast<float>(point(s, j));
  return out;
}

// Croce & Hein 2020, Alg. 1: z = P(x + η∇), then z ← P(x + 0.75(z − x) + 0.25(x − x_prev)).
ApgdState apgd_step_reference(const ApgdCase& c, const ApgdState& in, const ApgdCall& call,
                              std::vector<char>& on_sphere) {
  ApgdState out = in;
  const auto d = static_cast<std::size_t>(c.d);
  on_sphere.assign(static_cast<std::size_t>(c.n), 0);
  for (std::size_t j = 0; j < call.rows.size(); ++j) {
    const auto r = static_cast<std::size_t>(call.rows[j]);
    const float* x = &in.x[r * d];
    const float* xp = &in.x_prev[r * d];
    const float* g = &call.grad[static_cast<std::size_t>(call.grad_rows[j]) * d];
    const float* x0 = &c.x0[r * d];
    double g_norm = 0.0;
    for (std::size_t q = 0; q < d; ++q) g_norm += static_cast<double>(g[q]) * g[q];
    g_norm = std::sqrt(g_norm);
    std::vector<double> v(d);
    for (std::size_t q = 0; q < d; ++q) {
      const double dir = call.l2 ? (g_norm > 0.0 ? g[q] / g_norm : 0.0) : (g[q] > 0.0f) - (g[q] < 0.0f);
      v[q] = x[q] + c.eta[r] * dir;
    }
    bool sphere = false;
    std::vector<float> z = reference_projection(call.l2, v, x0, c.eps[r], sphere);
    if (call.momentum) {
      for (std::size_t q = 0; q < d; ++q)
        v[q] = x[q] + 0.75 * (z[q] - static_cast<double>(x[q])) + 0.25 * (x[q] - static_cast<double>(xp[q]));
      z = reference_projection(call.l2, v, x0, c.eps[r], sphere);
    }
    on_sphere[r] = sphere;
    std::copy(x, x + d, out.x_prev.begin() + static_cast<std::ptrdiff_t>(r * d));
    std::copy(z.begin(), z.end(), out.x.begin() + static_cast<std::ptrdiff_t>(r * d));
  }
  return out;
}

// Six examples with ε from 0 to large and η from tiny to 10ε, started inside their balls.
ApgdCase apgd_case(bool l2, std::int64_t d, ApgdState& start) {
  ApgdCase c{6, d, edgy_rows(6, d, 700 + static_cast<std::uint64_t>(d), 0.0f, 1.0f), {}, {}};
  const double scale = l2 ? std::sqrt(static_cast<double>(d)) / 4.0 : 1.0;
  const double eps[] = {0.05, 0.3, 0.0, 1.0, 0.1, 0.5}, eta_over_eps[] = {2.0, 0.5, 0.0, 10.0, 2.0, 0.01};
  for (int r = 0; r < 6; ++r) {
    c.eps.push_back(static_cast<float>(eps[r] * scale));
    c.eta.push_back(r == 2 ? 0.1 : eta_over_eps[r] * c.eps.back());
  }
  const kernels::AttackNorm norm = l2 ? kernels::AttackNorm::L2 : kernels::AttackNorm::Linf;
  const std::vector<std::int32_t> ids = {0, 1, 2, 3, 4, 5};
  start.x.resize(c.x0.size());
  start.x_prev.resize(c.x0.size());
  kernels::cpu::attack_random_start(norm, start.x.data(), c.x0.data(), c.eps.data(), ids.data(), 6, d, {1, 2, 3});
  kernels::cpu::attack_random_start(norm, start.x_prev.data(), c.x0.data(), c.eps.data(), ids.data(), 6, d, {4, 5, 6});
  return c;
}

// The first step (no momentum) over all rows with the gradients in reverse order; the second
// (momentum) over rows 0, 2, 3, 5 of a four-row gradient batch, out of order.
std::vector<ApgdCall> apgd_calls(bool l2, std::int64_t d) {
  return {{l2, false, {0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, gradient_rows(6, d, 801, 2)},
          {l2, true, {0, 2, 3, 5}, {3, 1, 0, 2}, gradient_rows(4, d, 802, 1)}};
}

void expect_apgd_kernel_matches_reference(bool l2) {
  for (std::int64_t d : {1, 7, 300, 785, 3072}) {
    ApgdState state;
    const ApgdCase c = apgd_case(l2, d, state);
    int sphere_rows = 0;
    for (const ApgdCall& call : apgd_calls(l2, d)) {
      const std::string what =
          std::string(l2 ? "l2" : "linf") + " d " + std::to_string(d) + (call.momentum ? " momentum" : " first");
      std::vector<char> on_sphere;
      const ApgdState got = apgd_step_on(Device::cpu(), c, state, call);
      const ApgdState want = apgd_step_reference(c, state, call, on_sphere);
      // L∞: the same clips and roundings, exactly. L2: s agrees to ~2⁻⁶⁰, so a coordinate can land
      // on the other side of a float rounding boundary (one ulp, ≤ 6e-8 below 1).
      EXPECT_TRUE(testing::all_close(as_double(got.x), as_double(want.x), 0.0, l2 ? 6e-8 : 1e-300)) << what;
      EXPECT_EQ(got.x_prev, want.x_prev) << what;  // x_prev ← x exactly; rows not stepped untouched
      for (std::int64_t r = 0; r < c.n; ++r) {
        double dist = 0.0;
        for (std::int64_t q = r * d; q < (r + 1) * d; ++q) {
          ASSERT_TRUE(got.x[q] >= 0.0f && got.x[q] <= 1.0f) << what;
          const double diff = static_cast<double>(got.x[q]) - c.x0[q];
          dist = l2 ? dist + diff * diff : std::max(dist, std::fabs(diff));
        }
        dist = l2 ? std::sqrt(dist) : dist;
        EXPECT_LE(dist, static_cast<double>(c.eps[r])) << what << " row " << r;  // the float values, exactly
        if (on_sphere[static_cast<std::size_t>(r)]) {
          ++sphere_rows;
          // On the bound: l2_target_radius less the d roundings to float (each ≤ 2⁻²⁵).
          EXPECT_GE(dist, kernels::l2_target_radius(c.eps[r], d) - std::sqrt(static_cast<double>(d)) * 0x1p-25)
              << what << " row " << r;
        }
      }
      state = got;
    }
    if (l2 && d > 1) {
      EXPECT_GT(sphere_rows, 0) << "d " << d << ": no step reached the L2 bound";
    }
  }
}

TEST(ApgdKernels, LinfStepMatchesTheReference) {
  expect_apgd_kernel_matches_reference(false);
}

TEST(ApgdKernels, L2StepMatchesTheReferenceAndLandsOnTheRadius) {
  expect_apgd_kernel_matches_reference(true);
}

// ---- CUDA against the CPU ------------------------------------------------------------------------

// Registers a CW state for comparison: w relative w_rtol (absolute 1e-16 near zero, as in
// expect_cw_close), the moments relative m_rtol with m_atol, x' absolute x_atol. On CUDA the squared
// distances must be those of its own x' rows, as expect_cw_close asks.
void check_cw(testing::BackendRun& run, const CwState& s, const std::vector<float>& x0,
              const std::vector<std::int32_t>& examples, std::int64_t d, double w_rtol, double m_rtol, double m_atol,
              double x_atol) {
  run.check("w", testing::flat_tensor(s.w), {w_rtol, 1e-16});
  run.check("m1", testing::flat_tensor(s.m1), {m_rtol, m_atol});
  run.check("m2", testing::flat_tensor(s.m2), {m_rtol, m_atol});
  run.check("x'", testing::flat_tensor(s.batch), {0.0, x_atol});
  if (run.device().is_cuda()) {
    std::vector<double> own;
    for (std::size_t j = 0; j < examples.size(); ++j)
      own.push_back(sq_distance(&s.batch[j * static_cast<std::size_t>(d)],
                                &x0[static_cast<std::size_t>(examples[j]) * static_cast<std::size_t>(d)], d));
    EXPECT_TRUE(testing::all_close(s.l2_sq, own, 1e-12, 1e-300)) << "l2";
  }
}

TEST(AttackOptCuda, CwKernelsMatchCpu) {
  AEGIS_REQUIRE_GPU();
  for (std::int64_t d : {1, 7, 256, 785, 3072}) {
    SCOPED_TRACE(::testing::Message() << "d " << d);
    const std::int64_t n = 5;
    const std::vector<float> x0 = edgy_rows(n, d, 900 + static_cast<std::uint64_t>(d), 0.0f, 1.0f);
    std::vector<std::int32_t> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    CwState state;
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const CwState start = cw_start_on(run.device(), x0, n, d);
      if (run.device().is_cpu()) state = start;
      // CUDA's double atanh and tanh are within 2 ulps of glibc's; x' then rounds to float.
      check_cw(run, start, x0, all, d, 1e-14, 0.0, 1e-300, 6e-8);
    })) << "start";
    int t = 0;
    for (const CwSchedule& s : kCwSchedule) {
      ++t;
      SCOPED_TRACE(::testing::Message() << "step " << t);
      const std::vector<float> g = gradient_rows(s.batch_size, d, 910 + t, s.zero_row);
      CwState want;
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        // From the same (CPU) state on both devices.
        const CwState got = cw_step_on(run.device(), x0, state, s.examples, s.batch_rows, g, d, t);
        if (run.device().is_cpu()) want = got;
        // tanh ulps and nvcc's fused multiply-adds move w by a few ulps of double; m1 = 0.9·m1 +
        // 0.1·g can cancel to far below its terms (|terms| ≤ 1, so 1e-15 absolute); x' can round to
        // the neighbouring float.
        check_cw(run, got, x0, s.examples, d, 1e-14, 1e-12, 1e-15, 6e-8);
      }));
      state = want;
    }
  }
}

TEST(AttackOptCuda, ApgdStepMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (bool l2 : {false, true}) {
    for (std::int64_t d : {1, 7, 300, 785, 3072}) {
      ApgdState state;
      const ApgdCase c = apgd_case(l2, d, state);
      for (const ApgdCall& call : apgd_calls(l2, d)) {
        SCOPED_TRACE(::testing::Message() << (l2 ? "l2" : "linf") << " d " << d
                                          << (call.momentum ? " momentum" : " first"));
        ApgdState want;
        EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
          const ApgdState got = apgd_step_on(run.device(), c, state, call);
          if (run.device().is_cpu()) want = got;
          // Same formulas; the block reductions sum ‖∇‖² and the bisection's distances in another
          // order (relative 1e-16), and nvcc fuses multiply-adds: a coordinate may round to the
          // neighbouring float (6e-8 below 1), twice through the momentum step's two projections.
          run.check("x", testing::flat_tensor(got.x), {0.0, 1.2e-7});
          run.check("x_prev", testing::flat_tensor(got.x_prev), testing::kExact);
        }));
        state = want;
      }
    }
  }
}

}  // namespace
}  // namespace aegis
