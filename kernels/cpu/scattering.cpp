// The 2-D scattering transform on the CPU (kernels/scattering.h has the equations).
#include "kernels/scattering.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include "core/error.h"

namespace aegis::kernels {
namespace {

using cf = std::complex<float>;
using cd = std::complex<double>;
constexpr double kPi = 3.14159265358979323846;
// Kymatio normalizes its Gabor filters by 2·3.1415·σ²/slant (π cut to four decimals); the same
// constant here keeps the features equal to its own to float rounding (π itself: 3·10⁻⁵ apart).
constexpr double kKymatioPi = 3.1415;
constexpr std::int64_t kGroup = 4;  // planes per unit of work

// g_{σ,θ,ξ} on an M × N periodic grid (u₀ along rows), periodized over 5 × 5 copies.
std::vector<cd> gabor(std::int64_t M, std::int64_t N, double sigma, double theta, double xi, double slant) {
  const double c = std::cos(theta), s = std::sin(theta), sl2 = slant * slant, inv = 1.0 / (2.0 * sigma * sigma);
  // R·diag(1, slant²)·R⁻¹ / (2σ²)
  const double c00 = (c * c + s * s * sl2) * inv, c01 = (c * s - s * c * sl2) * inv, c11 = (s * s + c * c * sl2) * inv;
  std::vector<cd> g(static_cast<std::size_t>(M * N), cd(0.0, 0.0));
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      cd sum(0.0, 0.0);
      for (int ex = -2; ex <= 2; ++ex)
        for (int ey = -2; ey <= 2; ++ey) {
          const double u = static_cast<double>(i + ex * M), v = static_cast<double>(j + ey * N);
          const double mag = std::exp(-(c00 * u * u + 2.0 * c01 * u * v + c11 * v * v));
          const double phase = xi * (u * c + v * s);
          sum += cd(mag * std::cos(phase), mag * std::sin(phase));
        }
      g[static_cast<std::size_t>(i * N + j)] = sum / (2.0 * kKymatioPi * sigma * sigma / slant);
    }
  return g;
}

// Re(DFT(f)), unnormalized forward transform, by separable direct sums in double precision.
std::vector<float> real_dft(const std::vector<cd>& f, std::int64_t M, std::int64_t N) {
  std::vector<cd> rows(f.size());
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t l = 0; l < N; ++l) {
      cd sum(0.0, 0.0);
      for (std::int64_t j = 0; j < N; ++j)
        sum += f[i * N + j] * std::polar(1.0, -2.0 * kPi * double(l * j % N) / double(N));
      rows[i * N + l] = sum;
    }
  std::vector<float> out(f.size());
  for (std::int64_t k = 0; k < M; ++k)
    for (std::int64_t l = 0; l < N; ++l) {
      cd sum(0.0, 0.0);
      for (std::int64_t i = 0; i < M; ++i)
        sum += rows[i * N + l] * std::polar(1.0, -2.0 * kPi * double(k * i % M) / double(M));
      out[k * N + l] = static_cast<float>(sum.real());
    }
  return out;
}

// The filter for the grid subsampled by 2^res: the frequencies outside the coarse band zeroed,
// the rest folded onto the coarse grid.
std::vector<float> periodize_filter(const std::vector<float>& hat, std::int64_t M, std::int64_t N, int res) {
  const std::int64_t mr = M >> res, nr = N >> res, k = std::int64_t{1} << res;
  const std::int64_t row0 = M >> (res + 1), rows = M - mr, col0 = N >> (res + 1), cols = N - nr;
  std::vector<float> out(static_cast<std::size_t>(mr * nr), 0.0f);
  for (std::int64_t a = 0; a < mr; ++a)
    for (std::int64_t b = 0; b < nr; ++b) {
      float sum = 0.0f;
      for (std::int64_t i = 0; i < k; ++i)
        for (std::int64_t j = 0; j < k; ++j) {
          const std::int64_t u = a + i * mr, v = b + j * nr;
          if ((u >= row0 && u < row0 + rows) || (v >= col0 && v < col0 + cols)) continue;
          sum += hat[u * N + v];
        }
      out[a * nr + b] = sum;
    }
  return out;
}

std::vector<cf> dft_matrix(std::int64_t n, bool inverse) {
  std::vector<cf> w(static_cast<std::size_t>(n * n));
  const double sign = inverse ? 1.0 : -1.0, scale = inverse ? 1.0 / double(n) : 1.0;
  for (std::int64_t k = 0; k < n; ++k)
    for (std::int64_t t = 0; t < n; ++t) {
      const cd e = std::polar(scale, sign * 2.0 * kPi * double(k * t % n) / double(n));
      w[k * n + t] = cf(static_cast<float>(e.real()), static_cast<float>(e.imag()));
    }
  return w;
}

// [n, 2h] with h = n/2 + 1: column k holds cos(2πtk/n), column h + k holds −sin(2πtk/n).
std::vector<float> real_dft_table(std::int64_t n) {
  const std::int64_t h = n / 2 + 1;
  std::vector<float> t(static_cast<std::size_t>(n * 2 * h));
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t k = 0; k < h; ++k) {
      const double angle = 2.0 * kPi * double(r * k % n) / double(n);
      t[r * 2 * h + k] = static_cast<float>(std::cos(angle));
      t[r * 2 * h + h + k] = static_cast<float>(-std::sin(angle));
    }
  return t;
}

// |z| without hypot's overflow guard (4× faster, vectorizable): |z|² overflows only beyond 1.8e19.
inline float magnitude(cf z) {
  return std::sqrt(z.real() * z.real() + z.imag() * z.imag());
}

std::int64_t reflect(std::int64_t p, std::int64_t pad, std::int64_t n) {
  std::int64_t s = p - pad;
  if (s < 0) s = -s;
  if (s >= n) s = 2 * (n - 1) - s;
  return s;
}

// The work on a group of planes. One Group per thread serves all the groups that thread takes,
// so its buffers are allocated once per call, not once per group.
class Group {
 public:
  explicit Group(const ScatteringBank& bank) : b(bank) {}

  // In-place 2-D DFT of `count` m × n planes (the inverse divides by mn).
  void dft2(cf* data, std::int64_t count, std::int64_t m, std::int64_t n, bool inverse) {
    const auto& table = inverse ? b.idft : b.dft;
    const cf* wn = table.at(n).data();
    const cf* wm = table.at(m).data();
    const std::int64_t plane = m * n;
    scratch.resize(static_cast<std::size_t>(count * plane));
    const cf one(1.0f, 0.0f), zero(0.0f, 0.0f);
    cblas_cgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(count * m), static_cast<int>(n),
                static_cast<int>(n), &one, data, static_cast<int>(n), wn, static_cast<int>(n), &zero, scratch.data(),
                static_cast<int>(n));
    for (std::int64_t p = 0; p < count; ++p)
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) data[p * plane + j * m + i] = scratch[p * plane + i * n + j];
    cblas_cgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(count * n), static_cast<int>(m),
                static_cast<int>(m), &one, data, static_cast<int>(m), wm, static_cast<int>(m), &zero, scratch.data(),
                static_cast<int>(m));
    for (std::int64_t p = 0; p < count; ++p)
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < m; ++i) data[p * plane + i * n + j] = scratch[p * plane + j * m + i];
  }

  // The forward 2-D DFT of `count` real m × n planes (held as complex with zero imaginary parts),
  // in place: the row transforms only for the columns 0 … n/2 (two real products with the cosine
  // and sine tables), the column transforms of those, and the other columns by Hermitian symmetry
  // X[k1, n − k2] = conj(X[(m − k1) mod m, k2]) — about 40% of a complex transform's work.
  void dft2_real(cf* data, std::int64_t count, std::int64_t m, std::int64_t n) {
    const std::int64_t h = n / 2 + 1, plane = m * n, rows = count * m;
    const auto& cs = b.rdft.at(n);  // [n, 2h]: cos columns, then −sin columns
    real_in.resize(static_cast<std::size_t>(rows * n));
    real_out.resize(static_cast<std::size_t>(rows * 2 * h));
    for (std::int64_t e = 0; e < rows * n; ++e) real_in[e] = data[e].real();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(2 * h),
                static_cast<int>(n), 1.0f, real_in.data(), static_cast<int>(n), cs.data(), static_cast<int>(2 * h),
                0.0f, real_out.data(), static_cast<int>(2 * h));
    // Rows → columns: half[p][k2][i] for k2 < h.
    half.resize(static_cast<std::size_t>(count * h * m));
    for (std::int64_t p = 0; p < count; ++p)
      for (std::int64_t i = 0; i < m; ++i) {
        const float* r = real_out.data() + (p * m + i) * 2 * h;
        for (std::int64_t k = 0; k < h; ++k) half[(p * h + k) * m + i] = cf(r[k], r[h + k]);
      }
    scratch.resize(half.size());
    const cf one(1.0f, 0.0f), zero(0.0f, 0.0f);
    cblas_cgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(count * h), static_cast<int>(m),
                static_cast<int>(m), &one, half.data(), static_cast<int>(m), b.dft.at(m).data(), static_cast<int>(m),
                &zero, scratch.data(), static_cast<int>(m));
    for (std::int64_t p = 0; p < count; ++p) {
      cf* out = data + p * plane;
      const cf* col = scratch.data() + p * h * m;
      for (std::int64_t k2 = 0; k2 < h; ++k2)
        for (std::int64_t k1 = 0; k1 < m; ++k1) out[k1 * n + k2] = col[k2 * m + k1];
      for (std::int64_t k1 = 0; k1 < m; ++k1)
        for (std::int64_t k2 = h; k2 < n; ++k2) out[k1 * n + k2] = std::conj(out[((m - k1) % m) * n + (n - k2)]);
    }
  }

  // out[a, b] = (1/k²) Σ in[a + i·m/k, b + j·n/k] · h[a + i·m/k, b + j·n/k] (h: the m × n filter).
  // The k × k aliased blocks are added one after the other, rows contiguous (vectorizable).
  static void filter_down(const cf* in, const float* h, std::int64_t m, std::int64_t n, std::int64_t k, cf* out) {
    const std::int64_t mk = m / k, nk = n / k;
    if (k == 1) {
      for (std::int64_t e = 0; e < m * n; ++e) out[e] = in[e] * h[e];
      return;
    }
    const float norm = 1.0f / float(k * k);
    std::fill(out, out + mk * nk, cf(0.0f, 0.0f));
    for (std::int64_t i = 0; i < k; ++i)
      for (std::int64_t a = 0; a < mk; ++a) {
        cf* o = out + a * nk;
        for (std::int64_t j = 0; j < k; ++j) {
          const std::int64_t at = (a + i * mk) * n + j * nk;
          const cf* src = in + at;
          const float* f = h + at;
          for (std::int64_t c = 0; c < nk; ++c) o[c] += src[c] * (f[c] * norm);
        }
      }
  }
  // Its adjoint, accumulated: in[a + i·m/k, b + j·n/k] += out[a, b]·h[...]/k².
  static void filter_down_adjoint(const cf* gout, const float* h, std::int64_t m, std::int64_t n, std::int64_t k,
                                  cf* gin) {
    const std::int64_t mk = m / k, nk = n / k;
    const float norm = 1.0f / float(k * k);
    for (std::int64_t i = 0; i < k; ++i)
      for (std::int64_t a = 0; a < mk; ++a) {
        const cf* g = gout + a * nk;
        for (std::int64_t j = 0; j < k; ++j) {
          const std::int64_t at = (a + i * mk) * n + j * nk;
          cf* dst = gin + at;
          const float* f = h + at;
          for (std::int64_t c = 0; c < nk; ++c) dst[c] += g[c] * (f[c] * norm);
        }
      }
  }

  // S = crop(Re IDFT(filter_down(F, φ̂_r, 2^(J−r)))) for `count` planes F of grid level r, written
  // to y at channel offsets given by `channel(q)`.
  template <class Channel>
  void smooth_out(const cf* F, std::int64_t count, int r, Channel channel, float* y) {
    const std::int64_t m = b.Mp >> r, n = b.Np >> r, ms = b.Mp >> b.J, ns = b.Np >> b.J;
    small.resize(static_cast<std::size_t>(count * ms * ns));  // filter_down writes it whole
    for (std::int64_t q = 0; q < count; ++q)
      filter_down(F + q * m * n, b.phi[r].data(), m, n, std::int64_t{1} << (b.J - r), small.data() + q * ms * ns);
    dft2(small.data(), count, ms, ns, true);
    for (std::int64_t q = 0; q < count; ++q) {
      float* out = y + channel(q) * b.out_h * b.out_w;
      const cf* s = small.data() + q * ms * ns;
      for (std::int64_t i = 0; i < b.out_h; ++i)
        for (std::int64_t j = 0; j < b.out_w; ++j) out[i * b.out_w + j] = s[(i + 1) * ns + j + 1].real();
    }
  }
  // Its adjoint, accumulated into G (count planes of grid level r).
  template <class Channel>
  void smooth_out_adjoint(const float* dy, std::int64_t count, int r, Channel channel, cf* gF) {
    const std::int64_t m = b.Mp >> r, n = b.Np >> r, ms = b.Mp >> b.J, ns = b.Np >> b.J;
    small.assign(static_cast<std::size_t>(count * ms * ns), cf(0.0f, 0.0f));
    for (std::int64_t q = 0; q < count; ++q) {
      const float* g = dy + channel(q) * b.out_h * b.out_w;
      cf* s = small.data() + q * ms * ns;
      for (std::int64_t i = 0; i < b.out_h; ++i)
        for (std::int64_t j = 0; j < b.out_w; ++j) s[(i + 1) * ns + j + 1] = cf(g[i * b.out_w + j], 0.0f);
    }
    dft2_real(small.data(), count, ms, ns);
    const float inv = 1.0f / float(ms * ns);
    for (auto& v : small) v *= inv;
    for (std::int64_t q = 0; q < count; ++q)
      filter_down_adjoint(small.data() + q * ms * ns, b.phi[r].data(), m, n, std::int64_t{1} << (b.J - r),
                          gF + q * m * n);
  }

  std::int64_t s2_channel(int j1, int t1, int j2, int t2) const {
    const int J = b.J, L = b.L;
    std::int64_t c = 1 + J * L;
    for (int jj = 0; jj < j1; ++jj) c += std::int64_t{L} * L * (J - 1 - jj);
    return c + std::int64_t{t1} * L * (J - 1 - j1) + std::int64_t{j2 - j1 - 1} * L + t2;
  }

  // Runs the forward pass for `planes` planes x (planes × M × N). With y null, only the
  // intermediates are kept. Every buffer below is overwritten whole, so none is cleared first.
  void forward(const float* x, float* y, std::int64_t planes) {
    G = planes;
    const int J = b.J, L = b.L;
    const std::int64_t P0 = b.Mp * b.Np, C = b.channels();
    X.resize(static_cast<std::size_t>(G * P0));
    for (std::int64_t p = 0; p < G; ++p)
      for (std::int64_t i = 0; i < b.Mp; ++i)
        for (std::int64_t j = 0; j < b.Np; ++j)
          X[p * P0 + i * b.Np + j] =
              cf(x[p * b.M * b.N + reflect(i, b.pad_top, b.M) * b.N + reflect(j, b.pad_left, b.N)], 0.0f);
    dft2_real(X.data(), G, b.Mp, b.Np);
    if (y)
      smooth_out(
          X.data(), G, 0, [&](std::int64_t q) { return q * C; }, y);
    a.resize(J);
    Uf.resize(J);
    bb.resize(static_cast<std::size_t>(J * J));
    for (int j1 = 0; j1 < J; ++j1) {
      const std::int64_t m1 = b.Mp >> j1, n1 = b.Np >> j1, s1 = m1 * n1, k1 = std::int64_t{1} << j1;
      auto& A = a[j1];
      A.resize(static_cast<std::size_t>(G * L * s1));
      for (std::int64_t p = 0; p < G; ++p)
        for (int t = 0; t < L; ++t)
          filter_down(X.data() + p * P0, b.psi[j1 * L + t][0].data(), b.Mp, b.Np, k1, A.data() + (p * L + t) * s1);
      dft2(A.data(), G * L, m1, n1, true);
      auto& U = Uf[j1];
      U.resize(A.size());
      for (std::size_t e = 0; e < A.size(); ++e) U[e] = cf(magnitude(A[e]), 0.0f);
      dft2_real(U.data(), G * L, m1, n1);
      if (y)
        smooth_out(
            U.data(), G * L, j1, [&](std::int64_t q) { return (q / L) * C + 1 + j1 * L + q % L; }, y);
      for (int j2 = j1 + 1; j2 < J; ++j2) {
        const std::int64_t m2 = b.Mp >> j2, n2 = b.Np >> j2, s2 = m2 * n2, k = std::int64_t{1} << (j2 - j1);
        auto& B = bb[j1 * J + j2];
        B.resize(static_cast<std::size_t>(G * L * L * s2));
        for (std::int64_t q = 0; q < G * L; ++q)
          for (int t2 = 0; t2 < L; ++t2)
            filter_down(U.data() + q * s1, b.psi[j2 * L + t2][j1].data(), m1, n1, k, B.data() + (q * L + t2) * s2);
        dft2(B.data(), G * L * L, m2, n2, true);
        if (!y) continue;
        V.resize(B.size());
        for (std::size_t e = 0; e < B.size(); ++e) V[e] = cf(magnitude(B[e]), 0.0f);
        dft2_real(V.data(), G * L * L, m2, n2);
        smooth_out(
            V.data(), G * L * L, j2,
            [&](std::int64_t q) {
              const std::int64_t p = q / (L * L), t1 = (q / L) % L, t2 = q % L;
              return p * C + s2_channel(j1, int(t1), j2, int(t2));
            },
            y);
      }
    }
  }

  void backward(const float* x, const float* dy, float* dx, std::int64_t planes) {
    forward(x, nullptr, planes);
    const int J = b.J, L = b.L;
    const std::int64_t P0 = b.Mp * b.Np, C = b.channels();
    gX.assign(static_cast<std::size_t>(G * P0), cf(0.0f, 0.0f));
    smooth_out_adjoint(
        dy, G, 0, [&](std::int64_t q) { return q * C; }, gX.data());
    for (int j1 = 0; j1 < J; ++j1) {
      const std::int64_t m1 = b.Mp >> j1, n1 = b.Np >> j1, s1 = m1 * n1, k1 = std::int64_t{1} << j1;
      gU.assign(static_cast<std::size_t>(G * L * s1), cf(0.0f, 0.0f));
      smooth_out_adjoint(
          dy, G * L, j1, [&](std::int64_t q) { return (q / L) * C + 1 + j1 * L + q % L; }, gU.data());
      for (int j2 = j1 + 1; j2 < J; ++j2) {
        const std::int64_t m2 = b.Mp >> j2, n2 = b.Np >> j2, s2 = m2 * n2, k = std::int64_t{1} << (j2 - j1);
        const auto& B = bb[j1 * J + j2];
        gV.assign(B.size(), cf(0.0f, 0.0f));
        smooth_out_adjoint(
            dy, G * L * L, j2,
            [&](std::int64_t q) {
              const std::int64_t p = q / (L * L), t1 = (q / L) % L, t2 = q % L;
              return p * C + s2_channel(j1, int(t1), j2, int(t2));
            },
            gV.data());
        // V = DFT(|B|): d|B| = Re(s2·IDFT(dV)); dB = d|B|·B/|B|; B = IDFT(·): d· = DFT(dB)/s2.
        dft2(gV.data(), G * L * L, m2, n2, true);
        for (std::size_t e = 0; e < B.size(); ++e) {
          const float mag = magnitude(B[e]);
          gV[e] = mag > 0.0f ? B[e] * (gV[e].real() * float(s2) / mag) : cf(0.0f, 0.0f);
        }
        dft2(gV.data(), G * L * L, m2, n2, false);
        const float inv = 1.0f / float(s2);
        for (auto& v : gV) v *= inv;
        for (std::int64_t q = 0; q < G * L; ++q)
          for (int t2 = 0; t2 < L; ++t2)
            filter_down_adjoint(gV.data() + (q * L + t2) * s2, b.psi[j2 * L + t2][j1].data(), m1, n1, k,
                                gU.data() + q * s1);
      }
      const auto& A = a[j1];
      dft2(gU.data(), G * L, m1, n1, true);
      for (std::size_t e = 0; e < A.size(); ++e) {
        const float mag = magnitude(A[e]);
        gU[e] = mag > 0.0f ? A[e] * (gU[e].real() * float(s1) / mag) : cf(0.0f, 0.0f);
      }
      dft2(gU.data(), G * L, m1, n1, false);
      const float inv = 1.0f / float(s1);
      for (auto& v : gU) v *= inv;
      for (std::int64_t p = 0; p < G; ++p)
        for (int t = 0; t < L; ++t)
          filter_down_adjoint(gU.data() + (p * L + t) * s1, b.psi[j1 * L + t][0].data(), b.Mp, b.Np, k1,
                              gX.data() + p * P0);
    }
    // X = DFT(xp): dxp = Re(P0·IDFT(dX)); then the reflection folds back onto x.
    dft2(gX.data(), G, b.Mp, b.Np, true);
    for (std::int64_t e = 0; e < G * b.M * b.N; ++e) dx[e] = 0.0f;
    for (std::int64_t p = 0; p < G; ++p)
      for (std::int64_t i = 0; i < b.Mp; ++i)
        for (std::int64_t j = 0; j < b.Np; ++j)
          dx[p * b.M * b.N + reflect(i, b.pad_top, b.M) * b.N + reflect(j, b.pad_left, b.N)] +=
              gX[p * P0 + i * b.Np + j].real() * float(P0);
  }

 private:
  const ScatteringBank& b;
  std::int64_t G = 0;  // planes of the current group
  std::vector<cf> scratch, small, X, V, half, gX, gU, gV;
  std::vector<float> real_in, real_out;
  std::vector<std::vector<cf>> a, Uf, bb;
};

// fn(group, first plane, planes) over groups of kGroup planes, OpenMP over the groups.
template <class Fn>
void over_groups(const ScatteringBank& bank, std::int64_t planes, Fn fn) {
  const std::int64_t groups = (planes + kGroup - 1) / kGroup;
#pragma omp parallel
  {
    Group group(bank);
#pragma omp for schedule(dynamic)
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::int64_t begin = g * kGroup;
      fn(group, begin, std::min(kGroup, planes - begin));
    }
  }
}

}  // namespace

std::int64_t scattering_padded_size(std::int64_t n, int J) {
  const std::int64_t s = std::int64_t{1} << J;
  return ((n + s) / s + 1) * s;
}

ScatteringBank make_scattering_bank(std::int64_t M, std::int64_t N, int J, int L) {
  AEGIS_CHECK(J >= 1 && J <= 6, "scattering: J = " << J << " must be in [1, 6]");
  AEGIS_CHECK(L >= 1 && L <= 16, "scattering: L = " << L << " must be in [1, 16]");
  ScatteringBank b;
  b.J = J;
  b.L = L;
  b.M = M;
  b.N = N;
  b.Mp = scattering_padded_size(M, J);
  b.Np = scattering_padded_size(N, J);
  b.pad_top = (b.Mp - M) / 2;
  b.pad_left = (b.Np - N) / 2;
  AEGIS_CHECK(
      M >= (std::int64_t{1} << J) && N >= (std::int64_t{1} << J) && (b.Mp - M + 1) / 2 < M && (b.Np - N + 1) / 2 < N,
      "scattering: a " << M << "x" << N << " input is too small for J = " << J << " (needs at least "
                       << (std::int64_t{1} << J) << " pixels and room for the reflection padding)");
  b.out_h = (b.Mp >> J) - 2;
  b.out_w = (b.Np >> J) - 2;
  for (int j = 0; j < J; ++j)
    for (int t = 0; t < L; ++t) {
      const double sigma = 0.8 * std::ldexp(1.0, j), xi = 0.75 * kPi / std::ldexp(1.0, j), slant = 4.0 / L;
      const double theta = (double(L / 2 - 1) - t) * kPi / L;
      std::vector<cd> wave = gabor(b.Mp, b.Np, sigma, theta, xi, slant);
      const std::vector<cd> env = gabor(b.Mp, b.Np, sigma, theta, 0.0, slant);
      cd sw(0.0, 0.0), se(0.0, 0.0);
      for (std::size_t e = 0; e < wave.size(); ++e) {
        sw += wave[e];
        se += env[e];
      }
      const cd K = sw / se;
      for (std::size_t e = 0; e < wave.size(); ++e) wave[e] -= K * env[e];
      const std::vector<float> hat = real_dft(wave, b.Mp, b.Np);
      std::vector<std::vector<float>> levels;
      for (int r = 0; r < std::max(j, 1); ++r) levels.push_back(periodize_filter(hat, b.Mp, b.Np, r));
      b.psi.push_back(std::move(levels));
    }
  const std::vector<float> phi_hat =
      real_dft(gabor(b.Mp, b.Np, 0.8 * std::ldexp(1.0, J - 1), 0.0, 0.0, 1.0), b.Mp, b.Np);
  for (int r = 0; r < J; ++r) b.phi.push_back(periodize_filter(phi_hat, b.Mp, b.Np, r));
  for (int r = 0; r <= J; ++r)
    for (std::int64_t n : {b.Mp >> r, b.Np >> r})
      if (!b.dft.count(n)) {
        b.dft[n] = dft_matrix(n, false);
        b.idft[n] = dft_matrix(n, true);
        b.rdft[n] = real_dft_table(n);
      }
  return b;
}

void scattering_forward(const ScatteringBank& bank, std::int64_t planes, const float* x, float* y) {
  const std::int64_t in = bank.M * bank.N, out = bank.channels() * bank.out_h * bank.out_w;
  over_groups(bank, planes, [&](Group& g, std::int64_t begin, std::int64_t count) {
    g.forward(x + begin * in, y + begin * out, count);
  });
}

void scattering_backward(const ScatteringBank& bank, std::int64_t planes, const float* x, const float* dy, float* dx) {
  const std::int64_t in = bank.M * bank.N, out = bank.channels() * bank.out_h * bank.out_w;
  over_groups(bank, planes, [&](Group& g, std::int64_t begin, std::int64_t count) {
    g.backward(x + begin * in, dy + begin * out, dx + begin * in, count);
  });
}

}  // namespace aegis::kernels
