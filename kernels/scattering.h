// The 2-D scattering transform (Bruna & Mallat 2013, "Invariant scattering convolution networks";
// Oyallon & Mallat 2015), computed as Kymatio's Scattering2D computes it (Andreux et al. 2020),
// so that features made here and there agree: the fixed front end of Tramèr & Boneh 2021's
// "ScatterNet + linear" private models.
//
// Per input plane x [M, N] (each channel alone), with J scales and L orientations:
//   xp = x reflect-padded to Mp × Np, Mp = (⌊(M + 2^J)/2^J⌋ + 1)·2^J (likewise Np), top/left
//        padding ⌊(Mp − M)/2⌋; every convolution below is circular on that grid, done as a
//        product in the Fourier domain (X = DFT(xp)).
//   ψ_{j,θ}  Morlet wavelet, σ = 0.8·2^j, ξ = 3π/(4·2^j), slant 4/L, angle (⌊L/2⌋ − 1 − θ)π/L:
//            ψ = g_{σ,θ,ξ} − K·g_{σ,θ,0},  K = Σg_{σ,θ,ξ} / Σg_{σ,θ,0},
//            g_{σ,θ,ξ}(u) = exp(−uᵀ R D R⁻¹ u / (2σ²) + i ξ (u₀ cos θ + u₁ sin θ)) / (2πσ²/slant),
//            D = diag(1, slant²), periodized over the grid; φ = g_{0.8·2^(J−1), 0, 0}.
//            The filters kept are Re(DFT(·)) (real in the Fourier domain).
//   S0 = x ⋆ φ ↓2^J;   U1[j1,θ1] = |x ⋆ ψ_{j1,θ1}| ↓2^j1,   S1 = U1 ⋆ φ ↓2^(J−j1);
//   U2[j1,θ1,j2,θ2] = |U1 ⋆ ψ_{j2,θ2}| ↓2^(j2−j1) for j2 > j1,  S2 = U2 ⋆ φ ↓2^(J−j2).
// A filter applied on a grid subsampled by 2^r is its Fourier transform with the frequencies
// beyond the coarse grid's band zeroed and the rest folded onto it (periodize_filter); ↓k of a
// Fourier-domain signal is the mean of its k × k aliased copies (spatial subsampling). Every S is
// cropped by one coarse sample on each side, so the output is [1 + JL + L²J(J−1)/2, Mp/2^J − 2,
// Np/2^J − 2] per plane (81 × 7 × 7 for a 28 × 28 image with J = 2, L = 8), channels ordered
// S0, S1 (j1 major, θ1 minor), S2 (j1, θ1, j2, θ2 nested in that order) — Kymatio's order.
//
// The backward pass is the exact adjoint of each linear step (DFTs, filter products, the
// subsampling, crop, reflection padding) and ∂|a|/∂a = a/|a| (0 at a = 0); it recomputes the
// forward pass's intermediates per group of planes instead of keeping them.
// CPU only: DFTs are small dense complex products (cgemm) over batches of planes (a real input's
// from half its spectrum and Hermitian symmetry), OpenMP over groups of planes. dx is overwritten.
#pragma once

#include <complex>
#include <cstdint>
#include <map>
#include <vector>

namespace aegis::kernels {

struct ScatteringBank {
  int J = 2, L = 8;
  std::int64_t M = 0, N = 0;    // input plane
  std::int64_t Mp = 0, Np = 0;  // padded grid
  std::int64_t pad_top = 0, pad_left = 0;
  std::int64_t out_h = 0, out_w = 0;  // Mp/2^J − 2, Np/2^J − 2
  // psi[j·L + θ][r]: ψ̂_{j,θ} on the grid subsampled by 2^r (r = 0..max(j − 1, 0)).
  std::vector<std::vector<std::vector<float>>> psi;
  std::vector<std::vector<float>> phi;  // phi[r]: φ̂ on the grid subsampled by 2^r, r = 0..J−1
  // DFT matrices W_n[k·n + t] = exp(∓2πi kt/n) (inverse: conjugate, divided by n) for every grid size.
  std::map<std::int64_t, std::vector<std::complex<float>>> dft, idft;
  // Real-input row transforms: [n, 2(n/2 + 1)], the cosines then the negated sines.
  std::map<std::int64_t, std::vector<float>> rdft;

  std::int64_t channels() const { return 1 + J * L + static_cast<std::int64_t>(L) * L * J * (J - 1) / 2; }
};

// Kymatio's padded size along an axis of n samples.
std::int64_t scattering_padded_size(std::int64_t n, int J);
// Builds the filters for planes of M × N; InvalidArgument unless J ≥ 1, L ≥ 1 and the padding
// fits a single reflection (Mp − M < 2M, likewise N).
ScatteringBank make_scattering_bank(std::int64_t M, std::int64_t N, int J, int L);
// x [planes, M, N] → y [planes, bank.channels(), out_h, out_w].
void scattering_forward(const ScatteringBank& bank, std::int64_t planes, const float* x, float* y);
// dy like y → dx like x (overwritten).
void scattering_backward(const ScatteringBank& bank, std::int64_t planes, const float* x, const float* dy, float* dx);

}  // namespace aegis::kernels
