// libFuzzer harness for the CIFAR-10 loader (nn/data/dataset.h, load_cifar10_dir): any batch files
// must either load into a dataset of whole records with labels in 0..9 or throw aegis::Error;
// never crash, read out of bounds or allocate without bound. The input is split by
// fuzz_support.h's split_two: the first part is written as each of data_batch_1..5.bin, the second
// as test_batch.bin (raw or gzip, as the loader sees them on disk).
//
//   bash tools/fuzz.sh -t 60 cifar10   # once the test command or the sanitizer job has built build-asan/
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "fuzz_support.h"
#include "nn/data/dataset.h"

namespace {

void check(const aegis::nn::Dataset& ds) {
  using aegis::fuzz::property_violated;
  const std::int64_t n = ds.size();
  if (n < 1 || ds.images.dim() != 4 || ds.images.size(0) != n || ds.images.size(1) != 3 || ds.images.size(2) != 32 ||
      ds.images.size(3) != 32)
    property_violated("CIFAR-10 dataset shape is not [N, 3, 32, 32]");
  const std::int32_t* labels = ds.labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= 10) property_violated("CIFAR-10 label out of range");
  const float* pixels = ds.images.data<float>();
  for (std::int64_t i = 0; i < ds.images.numel(); ++i)
    if (!(pixels[i] >= 0.0f && pixels[i] <= 1.0f)) property_violated("CIFAR-10 pixel outside [0, 1]");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace aegis::fuzz;
  const TwoParts parts = split_two(data, size);
  for (int b = 1; b <= 5; ++b)
    write_file(scratch().file("data_batch_" + std::to_string(b) + ".bin"), parts.first, parts.first_size);
  write_file(scratch().file("test_batch.bin"), parts.second, parts.second_size);
  try {
    const aegis::nn::DatasetSplit split = aegis::nn::load_cifar10_dir(scratch().path());
    check(split.train);
    check(split.test);
    // The five training batches hold the same bytes.
    if (split.train.size() % 5 != 0) property_violated("CIFAR-10 training set is not 5 equal batches");
  } catch (const aegis::Error&) {
    // Malformed input is expected to be refused.
  }
  return 0;
}
