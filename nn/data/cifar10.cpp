// CIFAR-10, binary version (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny
// Images", and the dataset page's description of the binary batches): records of 1 label byte
// followed by 1024 red, 1024 green and 1024 blue bytes, each plane 32×32 row-major — already
// the CHW layout aegis uses, so a record's pixels are copied in order.
#include <cstring>

#include "nn/data/dataset.h"

namespace aegis::nn {
namespace {

constexpr std::int64_t kClasses = 10;
constexpr std::int64_t kSide = 32;
constexpr std::int64_t kPixels = 3 * kSide * kSide;
constexpr std::int64_t kRecord = 1 + kPixels;

Dataset load_batches(const std::vector<std::string>& paths) {
  std::vector<std::vector<unsigned char>> files;
  std::int64_t n = 0;
  for (const std::string& path : paths) {
    files.push_back(detail::read_file_bytes(path));
    const auto size = static_cast<std::int64_t>(files.back().size());
    if (size == 0 || size % kRecord != 0)
      AEGIS_THROW(IoError, path << ": size " << size << " bytes is not a positive multiple of " << kRecord
                                << " (1 label byte + 3×32×32 pixel bytes per record); truncated or not a CIFAR-10 "
                                   "binary batch");
    n += size / kRecord;
  }
  Dataset ds;
  ds.name = "cifar10";
  ds.num_classes = kClasses;
  ds.images = Tensor::empty({n, 3, kSide, kSide}, DType::F32);
  ds.labels = Tensor::empty({n}, DType::I32);
  float* pixels = ds.images.data<float>();
  std::int32_t* labels = ds.labels.data<std::int32_t>();
  float scale[256];  // v/255 correctly rounded, as in load_idx
  for (int v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
  std::int64_t example = 0;
  for (std::size_t f = 0; f < files.size(); ++f) {
    const std::vector<unsigned char>& bytes = files[f];
    const auto records = static_cast<std::int64_t>(bytes.size()) / kRecord;
    for (std::int64_t r = 0; r < records; ++r, ++example) {
      const unsigned char* rec = bytes.data() + r * kRecord;
      if (rec[0] >= kClasses)
        AEGIS_THROW(IoError,
                    paths[f] << ": label " << int{rec[0]} << " of record " << r << " is outside 0.." << kClasses - 1);
      labels[example] = rec[0];
      float* out = pixels + example * kPixels;
      for (std::int64_t i = 0; i < kPixels; ++i) out[i] = scale[rec[1 + i]];
    }
  }
  return ds;
}

}  // namespace

DatasetSplit load_cifar10_dir(const std::string& dir) {
  if (!detail::directory_exists(dir)) AEGIS_THROW(IoError, dir << ": CIFAR-10 directory does not exist");
  // Accept the directory the archive was extracted into as well as the batches directory itself.
  std::string root = dir;
  if (!detail::file_exists(root + "/test_batch.bin") && detail::directory_exists(dir + "/cifar-10-batches-bin"))
    root = dir + "/cifar-10-batches-bin";
  auto require = [&](const std::string& file) {
    const std::string path = root + "/" + file;
    if (!detail::file_exists(path)) AEGIS_THROW(IoError, path << ": missing CIFAR-10 batch file");
    return path;
  };
  std::vector<std::string> train_paths;
  for (int b = 1; b <= 5; ++b) train_paths.push_back(require("data_batch_" + std::to_string(b) + ".bin"));
  const std::string test_path = require("test_batch.bin");
  DatasetSplit split;
  split.train = load_batches(train_paths);
  split.test = load_batches({test_path});
  return split;
}

}  // namespace aegis::nn
