// libFuzzer harness for the IDX loader (nn/data/dataset.h, load_idx): any pair of files must
// either load into a dataset that matches its headers or throw aegis::Error; never crash, read out
// of bounds, overflow or allocate without bound. The input is split by fuzz_support.h's split_two
// into the labels file and the images file (raw or gzip, as the loader sees them on disk).
//
//   bash tools/fuzz.sh -t 60 idx   # once the test command or the sanitizer job has built build-asan/
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "fuzz_support.h"
#include "nn/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace aegis::fuzz;
  const TwoParts parts = split_two(data, size);
  const std::string labels_path = scratch().file("labels-idx1-ubyte");
  const std::string images_path = scratch().file("images-idx3-ubyte");
  write_file(labels_path, parts.first, parts.first_size);
  write_file(images_path, parts.second, parts.second_size);
  try {
    const aegis::nn::Dataset ds = aegis::nn::load_idx(images_path, labels_path, "fuzz");
    const std::int64_t n = ds.size();
    if (n < 1 || ds.images.dim() != 4 || ds.images.size(0) != n || ds.images.size(1) != 1)
      property_violated("IDX dataset shape does not match its labels");
    const std::int32_t* labels = ds.labels.data<std::int32_t>();
    for (std::int64_t i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= ds.num_classes) property_violated("IDX label out of range");
    const float* pixels = ds.images.data<float>();
    for (std::int64_t i = 0; i < ds.images.numel(); ++i)
      if (!(pixels[i] >= 0.0f && pixels[i] <= 1.0f)) property_violated("IDX pixel outside [0, 1]");
  } catch (const aegis::Error&) {
    // Malformed input is expected to be refused.
  }
  return 0;
}
