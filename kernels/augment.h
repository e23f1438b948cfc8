// Per-row image augmentation of a float32 NCHW batch, for augmentation multiplicity (De, Berrada,
// Hayes, Smith, Balle 2022, "Unlocking high-accuracy differentially private image classification
// through scale", §3.1: every copy of an example is a random crop of the padded image and a
// random horizontal flip) followed by Gaussian noise (DP-CERT, Wu et al. 2024):
//   y[r, c, h, w] = X̃_r[c, h + dy_r, w' + dx_r] + σ·N(noise_key, row_keys[r]·d + (c·H + h)·W + w)
// with w' = W − 1 − w when row r is flipped, else w; dy_r, dx_r ∈ [−pad, pad]; and X̃_r row r of x
// extended beyond its borders by zeros or by mirroring (the symmetric reflection, edge pixel
// repeated: index −1 reads 0, index H reads H − 1, as De et al.'s released pipeline pads). A crop
// with padding P is the H×W window at offset (P + dy, P + dx) of the (H + 2P)×(W + 2P) padded image.
// Row r's flip and offsets are the 32-bit words of one Philox block, (geometry_key, row_keys[r])
// (row_transform below), and its noise is keyed by its row key too, so a row's result depends on
// its own row of x and its own key only: any subset of rows, on any rank or in any chunk, draws
// exactly what the whole batch would.
// CPU: OpenMP over the rows. CUDA: one thread per output element, grid-stride loop; each thread
// recomputes its row's Philox block (one call, cheaper than a second pass).
#pragma once

#include <cstdint>

#include "core/config.h"
#include "core/philox.h"

namespace aegis::kernels {

struct AugmentGeometry {
  std::int64_t rows = 0, channels = 0, height = 0, width = 0;
  std::int64_t pad = 0;  // crop offsets dy, dx ∈ [−pad, pad]; 0: no crop
  bool flip = false;     // random horizontal flip with probability 1/2
  bool mirror = true;    // extend the image by symmetric reflection (false: by zeros); needs pad ≤ H, W
  float noise_sigma = 0.0f;

  std::int64_t row_elements() const { return channels * height * width; }
};

struct RowTransform {
  bool flip = false;
  std::int64_t dy = 0, dx = 0;
};

// Row r's transform: flip from the first word's low bit, dy and dx from the second and third
// words modulo 2·pad + 1 (a bias of at most (2·pad + 1)/2^32 in any offset's probability).
AEGIS_HD RowTransform row_transform(const philox::Key& key, std::uint64_t row_key, std::int64_t pad, bool flip) {
  const philox::U32x4 r = philox::block(key, row_key);
  RowTransform t;
  t.flip = flip && (r.v[0] & 1u) != 0;
  if (pad > 0) {
    const auto span = static_cast<std::uint32_t>(2 * pad + 1);
    t.dy = static_cast<std::int64_t>(r.v[1] % span) - pad;
    t.dx = static_cast<std::int64_t>(r.v[2] % span) - pad;
  }
  return t;
}

// Where coordinate i of an extended axis of length n reads from: i itself inside [0, n), its
// symmetric reflection when mirroring, −1 (a zero) otherwise. |i| stays within pad ≤ n.
AEGIS_HD std::int64_t extended_index(std::int64_t i, std::int64_t n, bool mirror) {
  if (i >= 0 && i < n) return i;
  if (!mirror) return -1;
  return i < 0 ? -i - 1 : 2 * n - 1 - i;
}

namespace cpu {
// y [rows, C, H, W] from x of the same shape; row_keys [rows]. y must not alias x.
void augment_rows(const AugmentGeometry& g, const float* x, const std::uint64_t* row_keys,
                  const philox::Key& geometry_key, const philox::Key& noise_key, float* y);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void augment_rows(const AugmentGeometry& g, const float* d_x, const std::uint64_t* d_row_keys,
                  const philox::Key& geometry_key, const philox::Key& noise_key, float* d_y);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
