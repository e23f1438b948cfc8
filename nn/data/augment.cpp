#include "nn/data/augment.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include "core/error.h"
#include "kernels/augment.h"
#include "runtime/dispatch.h"

namespace aegis::nn {

namespace {

constexpr std::int64_t kDefaultCropPad = 4;  // De et al. 2022, §3.1 (CIFAR-10)

std::int64_t parse_pad(const std::string& text, const std::string& part) {
  std::size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  AEGIS_CHECK(used == text.size() && v >= 1 && v <= 64,
              "augmentation '" << part << "': the crop padding must be an integer in [1, 64], got '" << text << "'");
  return v;
}

}  // namespace

ImageAugment parse_image_augment(const std::string& spec) {
  ImageAugment a;
  if (spec.empty() || spec == "none") return a;
  std::size_t begin = 0;
  bool seen_flip = false, seen_crop = false;
  while (begin <= spec.size()) {
    const std::size_t end = std::min(spec.find(',', begin), spec.size());
    const std::string part = spec.substr(begin, end - begin);
    begin = end + 1;
    if (part == "flip") {
      AEGIS_CHECK(!seen_flip, "augmentation '" << spec << "' names flip twice");
      seen_flip = a.flip = true;
    } else if (part == "crop" || part.rfind("crop:", 0) == 0) {
      AEGIS_CHECK(!seen_crop, "augmentation '" << spec << "' names crop twice");
      seen_crop = true;
      a.crop_pad = kDefaultCropPad;
      if (part.size() > 4) {
        std::string rest = part.substr(5);
        const std::size_t colon = rest.find(':');
        if (colon != std::string::npos) {
          const std::string mode = rest.substr(colon + 1);
          AEGIS_CHECK(mode == "zero" || mode == "mirror",
                      "augmentation '" << part << "': padding mode '" << mode << "' is not zero or mirror");
          a.zero_pad = mode == "zero";
          rest = rest.substr(0, colon);
        }
        a.crop_pad = parse_pad(rest, part);
      }
    } else {
      AEGIS_THROW(InvalidArgument, "augmentation '" << part << "' in '" << spec
                                                    << "' is not one of flip, crop, crop:PAD, crop:PAD:zero|mirror");
    }
    if (end == spec.size()) break;
  }
  return a;
}

std::string image_augment_name(const ImageAugment& a) {
  std::string s;
  if (a.flip) s = "flip";
  if (a.crop_pad > 0)
    s += (s.empty() ? "" : ",") + std::string("crop:") + std::to_string(a.crop_pad) + (a.zero_pad ? ":zero" : "");
  return s.empty() ? "none" : s;
}

Tensor augment_images(const Tensor& images, const ImageAugment& a, float noise_sigma,
                      const std::vector<std::uint64_t>& row_keys, const philox::Key& geometry_key,
                      const philox::Key& noise_key) {
  AEGIS_CHECK(std::isfinite(noise_sigma) && noise_sigma >= 0.0f,
              "augmentation noise sigma " << noise_sigma << " must be non-negative and finite");
  AEGIS_CHECK_AS(ShapeError, images.dtype() == DType::F32 && images.dim() >= 1,
                 "augmentation: images must be f32 [N, ...], got " << shape_str(images.shape()));
  const std::int64_t rows = images.size(0);
  AEGIS_CHECK_AS(ShapeError, static_cast<std::int64_t>(row_keys.size()) == rows,
                 "augmentation: " << row_keys.size() << " row keys for " << rows << " images");
  kernels::AugmentGeometry g;
  g.rows = rows;
  if (a.any()) {
    AEGIS_CHECK_AS(ShapeError, images.dim() == 4 || images.dim() == 3,
                   "augmentation: crops and flips need images [N, C, H, W], got " << shape_str(images.shape()));
    g.channels = images.dim() == 4 ? images.size(1) : 1;
    g.height = images.size(images.dim() - 2);
    g.width = images.size(images.dim() - 1);
  } else {  // noise only: any shape, one row of d elements per copy
    g.channels = g.height = 1;
    g.width = rows > 0 ? images.numel() / rows : 0;
  }
  g.pad = a.crop_pad;
  g.flip = a.flip;
  g.mirror = !a.zero_pad;
  g.noise_sigma = noise_sigma;
  AEGIS_CHECK(!g.mirror || (g.pad <= g.height && g.pad <= g.width),
              "augmentation: mirror padding of " << g.pad << " pixels needs images at least that large, got "
                                                 << g.height << "x" << g.width
                                                 << " (use crop:PAD:zero or a smaller PAD)");
  const Device dev = images.device();
  Tensor d_keys = Tensor::empty({rows}, DType::I64, Device::cpu());
  std::copy(row_keys.begin(), row_keys.end(), reinterpret_cast<std::uint64_t*>(d_keys.data<std::int64_t>()));
  d_keys = d_keys.to(dev);
  Tensor y = Tensor::empty_like(images);
  const auto* d_row_keys = reinterpret_cast<const std::uint64_t*>(d_keys.data<std::int64_t>());
  AEGIS_DISPATCH(dev, augment_rows(g, images.data<float>(), d_row_keys, geometry_key, noise_key, y.data<float>()));
  return y;
}

}  // namespace aegis::nn
