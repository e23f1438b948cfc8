// Random crops, horizontal flips and Gaussian noise of a batch of images, the data augmentation
// of augmentation multiplicity (De, Berrada, Hayes, Smith, Balle 2022, "Unlocking high-accuracy
// differentially private image classification through scale", §3.1) and of training for
// randomized smoothing, for DP-SGD (privacy/dp_augment.h) and plain training (nn/train.h) alike.
// Each row is transformed by its own key (kernels/augment.h), in one pass over the batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/philox.h"
#include "runtime/tensor.h"

namespace aegis::nn {

// The geometric transforms of every image: a random crop of the image padded by crop_pad pixels
// on each side (0: no crop), by symmetric reflection unless zero_pad, and a random horizontal
// flip. De et al. 2022 (§3.1) pad CIFAR-10's 32×32 images by 4.
struct ImageAugment {
  bool flip = false;
  std::int64_t crop_pad = 0;
  bool zero_pad = false;

  bool any() const { return flip || crop_pad > 0; }
};

// "flip", "crop", "crop:PAD", "crop:PAD:zero|mirror" joined by commas (e.g. "flip,crop:4"); "none"
// or "" for none. The default PAD is 4. InvalidArgument names a bad part.
ImageAugment parse_image_augment(const std::string& spec);
// The canonical spelling of `a` ("flip,crop:4"; "none"), which parse_image_augment reads back.
std::string image_augment_name(const ImageAugment& a);

// images f32 [N, C, H, W] (or [N, H, W]; any shape [N, ...] when `a` has no crop or flip) → a new
// tensor of the same shape and device: row r cropped and flipped by the Philox block
// (geometry_key, row_keys[r]), then plus noise_sigma·N(noise_key, row_keys[r]·d + j) at element j
// (d = elements per row). InvalidArgument when mirror padding exceeds the image.
Tensor augment_images(const Tensor& images, const ImageAugment& a, float noise_sigma,
                      const std::vector<std::uint64_t>& row_keys, const philox::Key& geometry_key,
                      const philox::Key& noise_key);

}  // namespace aegis::nn
