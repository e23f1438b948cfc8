// Image-classification datasets on disk and minibatches over them. A Dataset holds all of its
// examples in host memory: `images` f32 [N, C, H, W] scaled to [0, 1] and `labels` i32 [N] in
// 0..num_classes−1. Loaders read IDX (MNIST, Fashion-MNIST; raw or gzip, recognized by the gzip
// magic bytes 1f 8b, not by the file name), the CIFAR-10 binary batches, and the bundled UCI
// optdigits set ("digits", 8×8, shipped in data/digits/ so the demo runs anywhere). Every loader
// validates the whole file before returning and throws IoError whose message begins with the
// path of the offending file and says what is wrong with it (missing, truncated, wrong magic,
// inconsistent counts, label out of range, trailing bytes). BatchIterator walks a Dataset in
// minibatches — in order, or in a Fisher–Yates permutation keyed by Philox
// (seed, kPurposeShuffle, epoch) so an epoch's order is reproducible on any machine — and hands
// each batch out as fresh tensors on the requested device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "runtime/tensor.h"

namespace aegis::nn {

struct Dataset {
  std::string name;
  Tensor images;  // f32 [N, C, H, W] in [0, 1], on the CPU
  Tensor labels;  // i32 [N]
  std::int64_t num_classes = 0;

  std::int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

struct DatasetSplit {
  Dataset train, test;
};

// ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------
// Reads an images file (magic 0x00000803: unsigned bytes, 3 dimensions N, H, W, big-endian) and
// a labels file (magic 0x00000801: unsigned bytes, 1 dimension N) into images [N, 1, H, W]
// scaled by 1/255 and labels in 0..9. Bytes after the last pixel or label are rejected: IDX
// files carry no padding, so extra bytes mean the file is not what its header says.
Dataset load_idx(const std::string& images_path, const std::string& labels_path, const std::string& name);

// Finds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte in `dir`, each optionally with a ".gz" suffix (MNIST and Fashion-MNIST
// use the same names), and loads the two splits.
DatasetSplit load_mnist_dir(const std::string& dir, const std::string& name);

// ---- CIFAR-10 binary version ----------------------------------------------------------------
// `dir` holds data_batch_1.bin … data_batch_5.bin and test_batch.bin (or is the directory above
// the archive's cifar-10-batches-bin/). Each record is one label byte followed by 3·32·32 pixel
// bytes in CHW order; a file's size must be a positive multiple of 3073. Images [N, 3, 32, 32]
// scaled by 1/255.
DatasetSplit load_cifar10_dir(const std::string& dir);

// ---- the bundled dataset ----------------------------------------------------------------------
// The directory that holds digits/digits.csv.gz. Candidates, in order: `hint` (callers pass an
// explicit --data-dir, or else the source-tree data/ path they were compiled with), the
// environment variable AEGIS_DATA_DIR, then the install locations <exe>/../share/aegis,
// /usr/local/share/aegis and /usr/share/aegis. Throws IoError listing every place it looked.
std::string find_bundled_data_dir(const std::string& hint);

// UCI optdigits (1797 examples, 8×8 pixels with values 0..16, see data/digits/README.md) from
// <data_dir>/digits/digits.csv.gz: images [N, 1, 8, 8] scaled by 1/16. The split is fixed: the
// first 1500 rows train, the last 297 test (every class has 27–33 test examples).
DatasetSplit load_digits(const std::string& data_dir);
constexpr std::int64_t kDigitsExamples = 1797;
constexpr std::int64_t kDigitsTestExamples = 297;

// ---- dataset specs for the command line -------------------------------------------------------
// "digits"              the bundled set, located by find_bundled_data_dir(data_dir_hint)
// "fashion-mnist"       $AEGIS_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist
//                       (Debian package dataset-fashion-mnist)
// "fashion-mnist:DIR"   IDX files in DIR
// "mnist:DIR"           IDX files in DIR
// "cifar10:DIR"         CIFAR-10 binary batches in DIR
// Anything else is an InvalidArgument that lists these forms.
DatasetSplit load_dataset(const std::string& spec, const std::string& data_dir_hint);

// A copy of examples [begin, begin + count) (a copy, so a small subset does not keep the whole
// dataset's memory alive). Throws InvalidArgument when the range leaves the dataset.
Dataset take(const Dataset& dataset, std::int64_t begin, std::int64_t count);

// ---- minibatches ------------------------------------------------------------------------------
struct Batch {
  Tensor images;  // f32 [b, C, H, W] on the iterator's device
  Tensor labels;  // i32 [b]
};

struct BatchOptions {
  std::int64_t batch_size = 128;
  bool shuffle = false;
  std::uint64_t seed = 0;  // with shuffle: the permutation of epoch e is keyed by (seed, e)
  bool drop_last = false;  // drop a last batch smaller than batch_size
  Device device = Device::cpu();
};

// Usage: for (BatchIterator it(ds, opt, epoch); it.next(batch);) { ... }
// Every example appears exactly once per epoch (once at most with drop_last). Each batch is a
// fresh copy, so changing it in place never changes the dataset.
class BatchIterator {
 public:
  BatchIterator(const Dataset& dataset, const BatchOptions& options, std::uint32_t epoch = 0);

  // Rewinds to the start of `epoch`, drawing that epoch's order when shuffling.
  void start_epoch(std::uint32_t epoch);
  // Fills `out` with the next batch; false (and `out` untouched) once the epoch is exhausted.
  bool next(Batch& out);

  std::int64_t num_batches() const;
  std::uint32_t epoch() const { return m_epoch; }
  // The example order of the current epoch (identity without shuffle).
  const std::vector<std::int64_t>& order() const { return m_order; }

 private:
  Dataset m_dataset;
  BatchOptions m_options;
  std::uint32_t m_epoch = 0;
  std::vector<std::int64_t> m_order;
  std::int64_t m_position = 0;
};

// The permutation of 0..n−1 that BatchIterator uses for (seed, epoch): Fisher–Yates driven by
// philox::bits under Key{seed, kPurposeShuffle, epoch}.
std::vector<std::int64_t> shuffled_order(std::int64_t n, std::uint64_t seed, std::uint32_t epoch);

namespace detail {
// The whole content of `path`, gunzipped when it starts with the gzip magic bytes. Throws IoError
// naming the file when it is not a regular file, cannot be opened, its gzip stream is corrupt or
// truncated, or its content goes on past `limit` bytes (reading stops there: a gzip bomb is not
// inflated further).
constexpr std::uint64_t kMaxDataFileBytes = std::uint64_t{1} << 32;
std::vector<unsigned char> read_file_bytes(const std::string& path, std::uint64_t limit = kMaxDataFileBytes);
// The first `count` bytes of the content (fewer when it is shorter), for reading a header first.
std::vector<unsigned char> read_file_head(const std::string& path, std::size_t count);
bool file_exists(const std::string& path);
bool directory_exists(const std::string& path);
}  // namespace detail

}  // namespace aegis::nn
