#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nn/data/dataset.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using Bytes = std::vector<unsigned char>;

std::string make_temp_dir() {
  return testing::make_temp_dir("aegis_data");
}

using testing::write_file;

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void put_be32(Bytes& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<unsigned char>(v >> shift));
}

// Pixel k of image i: a pattern that covers 0..255 and differs between images.
unsigned char pixel_value(std::uint32_t i, std::uint32_t k) {
  return static_cast<unsigned char>((i * 37 + k * 11 + 5) % 256);
}

Bytes idx_images(std::uint32_t n, std::uint32_t h, std::uint32_t w) {
  Bytes b;
  put_be32(b, 0x00000803);
  put_be32(b, n);
  put_be32(b, h);
  put_be32(b, w);
  for (std::uint32_t i = 0; i < n; ++i)
    for (std::uint32_t k = 0; k < h * w; ++k) b.push_back(pixel_value(i, k));
  return b;
}

Bytes idx_labels(std::uint32_t n) {
  Bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, n);
  for (std::uint32_t i = 0; i < n; ++i) b.push_back(static_cast<unsigned char>((i * 7 + 3) % 10));
  return b;
}

using testing::expect_error;

void check_idx_values(const nn::Dataset& ds, std::uint32_t n, std::uint32_t h, std::uint32_t w) {
  ASSERT_EQ(ds.images.shape(), (Shape{n, 1, h, w}));
  ASSERT_EQ(ds.labels.shape(), (Shape{n}));
  EXPECT_EQ(ds.num_classes, 10);
  const std::vector<float> px = ds.images.to_vector<float>();
  const std::vector<std::int32_t> lb = ds.labels.to_vector<std::int32_t>();
  for (std::uint32_t i = 0; i < n; ++i) {
    EXPECT_EQ(lb[i], static_cast<std::int32_t>((i * 7 + 3) % 10));
    for (std::uint32_t k = 0; k < h * w; ++k)
      ASSERT_EQ(px[i * h * w + k], static_cast<float>(pixel_value(i, k)) / 255.0f) << "image " << i << " pixel " << k;
  }
}

TEST(Idx, RawAndGzipLoadTheSameScaledValues) {
  const std::string dir = make_temp_dir();
  // 7 odd-sized 3×5 images; 3·5·7 = 105 bytes cover many distinct values.
  write_file(dir + "/img", idx_images(7, 3, 5));
  write_file(dir + "/lbl", idx_labels(7));
  write_gzip(dir + "/img.gz", idx_images(7, 3, 5));
  write_gzip(dir + "/lbl.gz", idx_labels(7));
  const nn::Dataset raw = nn::load_idx(dir + "/img", dir + "/lbl", "toy");
  const nn::Dataset gz = nn::load_idx(dir + "/img.gz", dir + "/lbl.gz", "toy");
  EXPECT_EQ(raw.name, "toy");
  check_idx_values(raw, 7, 3, 5);
  check_idx_values(gz, 7, 3, 5);
  // The gzip magic decides, not the name: a gzip file without ".gz" and a raw file with it.
  write_gzip(dir + "/img_noext", idx_images(1, 2, 2));
  write_file(dir + "/lbl_raw.gz", idx_labels(1));
  check_idx_values(nn::load_idx(dir + "/img_noext", dir + "/lbl_raw.gz", "toy"), 1, 2, 2);
}

TEST(Idx, SingleExampleAndExtremeValues) {
  const std::string dir = make_temp_dir();
  Bytes img;
  put_be32(img, 0x00000803);
  put_be32(img, 1);
  put_be32(img, 1);
  put_be32(img, 2);
  img.push_back(0);
  img.push_back(255);
  write_file(dir + "/img", img);
  Bytes lbl;
  put_be32(lbl, 0x00000801);
  put_be32(lbl, 1);
  lbl.push_back(9);
  write_file(dir + "/lbl", lbl);
  const nn::Dataset ds = nn::load_idx(dir + "/img", dir + "/lbl", "one");
  EXPECT_EQ(ds.images.to_vector<float>(), (std::vector<float>{0.0f, 1.0f}));
  EXPECT_EQ(ds.labels.to_vector<std::int32_t>(), (std::vector<std::int32_t>{9}));
}

TEST(Idx, MalformedFilesNameTheFileAndTheProblem) {
  const std::string dir = make_temp_dir();
  const std::string img = dir + "/img", lbl = dir + "/lbl";
  write_file(lbl, idx_labels(4));
  auto load = [&] { nn::load_idx(img, lbl, "bad"); };

  expect_error<IoError>([&] { nn::load_idx(dir + "/absent", lbl, "bad"); }, dir + "/absent", "cannot open");

  Bytes truncated = idx_images(4, 3, 3);
  truncated.pop_back();
  write_file(img, truncated);
  expect_error<IoError>(load, img, "truncated");

  Bytes short_header = idx_images(4, 3, 3);
  short_header.resize(10);
  write_file(img, short_header);
  expect_error<IoError>(load, img, "truncated IDX header");

  write_file(img, Bytes{0x00, 0x00});
  expect_error<IoError>(load, img, "truncated");

  // Absurd dimensions are refused from the header alone, never overflowed into a small product.
  Bytes huge;
  put_be32(huge, 0x00000803);
  put_be32(huge, 0xffffffffu);
  put_be32(huge, 0xffffffffu);
  put_be32(huge, 0xffffffffu);
  huge.push_back(1);
  write_file(img, huge);
  expect_error<IoError>(load, img, "declares more than");
  // Dimensions within the bound but beyond the data are truncation.
  Bytes short_data;
  put_be32(short_data, 0x00000803);
  put_be32(short_data, 1000);
  put_be32(short_data, 1000);
  put_be32(short_data, 1000);
  short_data.push_back(1);
  write_file(img, short_data);
  expect_error<IoError>(load, img, "truncated");

  Bytes wrong_magic = idx_images(4, 3, 3);
  wrong_magic[2] = 0x09;  // signed-byte type
  write_file(img, wrong_magic);
  expect_error<IoError>(load, img, "wrong magic 0x00000903");

  write_file(img, idx_labels(4));  // a labels file given as images
  expect_error<IoError>(load, img, "wrong magic 0x00000801");

  Bytes trailing = idx_images(4, 3, 3);
  trailing.push_back(0);
  write_file(img, trailing);
  expect_error<IoError>(load, img, "1 unexpected bytes");

  Bytes zero = idx_images(0, 3, 3);
  write_file(img, zero);
  expect_error<IoError>(load, img, "is 0");

  write_file(img, idx_images(5, 3, 3));
  expect_error<IoError>(load, img, "holds 5 images but " + lbl + " holds 4 labels");

  write_file(img, idx_images(4, 3, 3));
  Bytes bad_label = idx_labels(4);
  bad_label.back() = 10;
  write_file(lbl, bad_label);
  expect_error<IoError>(load, lbl, "label 10 of example 3 is outside 0..9");

  // A gzip file cut short, as an interrupted download leaves it.
  write_gzip(dir + "/full.gz", idx_images(50, 8, 8));
  Bytes gz = read_file(dir + "/full.gz");
  gz.resize(gz.size() / 2);
  write_file(img, gz);
  write_file(lbl, idx_labels(50));
  expect_error<IoError>(load, img, "gzip");
}

// A gzip file inflating far past what its header declares (a "bomb") is read no further than
// the header's promise, and a header that declares an absurd size is refused before any data is
// read; devices are not read at all.
TEST(Idx, ReadsStopAtWhatTheHeaderDeclares) {
  const std::string dir = make_temp_dir();
  const std::string img = dir + "/img.gz", lbl = dir + "/lbl";
  write_file(lbl, idx_labels(2));
  Bytes bomb = idx_images(2, 2, 2);
  bomb.resize(bomb.size() + (std::size_t{64} << 20), 0);  // 64 MiB of zeros: about 64 kB compressed
  write_gzip(img, bomb);
  auto load = [&] { nn::load_idx(img, lbl, "bomb"); };
  // 16 header bytes + 8 declared + 4096 of slack for naming a few stray bytes.
  expect_error<IoError>(load, img, "holds more than the 4120 bytes expected");
  Bytes huge;
  put_be32(huge, 0x00000803);
  for (int d = 0; d < 3; ++d) put_be32(huge, 0xffffffffu);
  write_gzip(img, huge);
  expect_error<IoError>(load, img, "declares more than");
  expect_error<IoError>([&] { nn::load_idx("/dev/zero", lbl, "zero"); }, "/dev/zero", "not a regular file");
}

TEST(Idx, MnistDirectoryFindsRawAndGzipFiles) {
  const std::string dir = make_temp_dir();
  write_gzip(dir + "/train-images-idx3-ubyte.gz", idx_images(9, 4, 4));
  write_file(dir + "/train-labels-idx1-ubyte", idx_labels(9));
  write_file(dir + "/t10k-images-idx3-ubyte", idx_images(3, 4, 4));
  write_gzip(dir + "/t10k-labels-idx1-ubyte.gz", idx_labels(3));
  const nn::DatasetSplit split = nn::load_mnist_dir(dir, "mnist");
  check_idx_values(split.train, 9, 4, 4);
  check_idx_values(split.test, 3, 4, 4);
  EXPECT_EQ(split.train.name, "mnist");

  const nn::DatasetSplit via_spec = nn::load_dataset("mnist:" + dir, "");
  EXPECT_EQ(via_spec.train.size(), 9);
  EXPECT_EQ(nn::load_dataset("fashion-mnist:" + dir, "").test.name, "fashion-mnist");

  ::unlink((dir + "/t10k-labels-idx1-ubyte.gz").c_str());
  expect_error<IoError>([&] { nn::load_mnist_dir(dir, "mnist"); }, dir, "t10k-labels-idx1-ubyte");
  expect_error<IoError>([&] { nn::load_mnist_dir(dir + "/nope", "mnist"); }, dir + "/nope", "does not exist");
}

// One CIFAR-10 record: label, then 3 planes of 32×32 bytes.
void append_cifar_record(Bytes& b, unsigned char label, std::uint32_t seed) {
  b.push_back(label);
  for (std::uint32_t k = 0; k < 3072; ++k) b.push_back(static_cast<unsigned char>((seed * 131 + k * 7) % 256));
}

TEST(Cifar10, LoadsAllBatchesInOrderWithChwLayout) {
  const std::string dir = make_temp_dir();
  const int records[5] = {2, 1, 3, 1, 2};
  std::uint32_t seed = 0;
  std::vector<std::int32_t> expected_labels;
  for (int b = 0; b < 5; ++b) {
    Bytes bytes;
    for (int r = 0; r < records[b]; ++r, ++seed) {
      append_cifar_record(bytes, static_cast<unsigned char>(seed % 10), seed);
      expected_labels.push_back(static_cast<std::int32_t>(seed % 10));
    }
    write_file(dir + "/data_batch_" + std::to_string(b + 1) + ".bin", bytes);
  }
  Bytes test;
  append_cifar_record(test, 9, 100);
  write_file(dir + "/test_batch.bin", test);

  const nn::DatasetSplit split = nn::load_cifar10_dir(dir);
  ASSERT_EQ(split.train.images.shape(), (Shape{9, 3, 32, 32}));
  ASSERT_EQ(split.test.images.shape(), (Shape{1, 3, 32, 32}));
  EXPECT_EQ(split.train.labels.to_vector<std::int32_t>(), expected_labels);
  EXPECT_EQ(split.test.labels.to_vector<std::int32_t>(), (std::vector<std::int32_t>{9}));
  const std::vector<float> px = split.train.images.to_vector<float>();
  // Example 4, channel 2 (blue), row 5, column 31 is byte 1 + 2·1024 + 5·32 + 31 of record 4.
  const std::uint32_t k = 2 * 1024 + 5 * 32 + 31;
  EXPECT_EQ(px[4 * 3072 + k], static_cast<float>((4 * 131 + k * 7) % 256) / 255.0f);
  for (std::uint32_t e = 0; e < 9; ++e)
    for (std::uint32_t j = 0; j < 3072; j += 97)
      ASSERT_EQ(px[e * 3072 + j], static_cast<float>((e * 131 + j * 7) % 256) / 255.0f);
  EXPECT_EQ(nn::load_dataset("cifar10:" + dir, "").train.size(), 9);

  // The directory above cifar-10-batches-bin/ works too.
  const std::string parent = make_temp_dir();
  ASSERT_EQ(::rename(dir.c_str(), (parent + "/cifar-10-batches-bin").c_str()), 0);
  EXPECT_EQ(nn::load_cifar10_dir(parent).test.size(), 1);
}

TEST(Cifar10, MalformedBatchesNameTheFile) {
  const std::string dir = make_temp_dir();
  for (int b = 1; b <= 5; ++b) {
    Bytes bytes;
    append_cifar_record(bytes, 1, static_cast<std::uint32_t>(b));
    write_file(dir + "/data_batch_" + std::to_string(b) + ".bin", bytes);
  }
  expect_error<IoError>([&] { nn::load_cifar10_dir(dir); }, dir + "/test_batch.bin", "missing");

  Bytes test;
  append_cifar_record(test, 3, 7);
  test.pop_back();
  write_file(dir + "/test_batch.bin", test);
  expect_error<IoError>([&] { nn::load_cifar10_dir(dir); }, dir + "/test_batch.bin", "not a positive multiple of 3073");

  write_file(dir + "/test_batch.bin", Bytes{});
  expect_error<IoError>([&] { nn::load_cifar10_dir(dir); }, dir + "/test_batch.bin", "size 0");

  Bytes bad_label;
  append_cifar_record(bad_label, 3, 7);
  append_cifar_record(bad_label, 10, 8);
  write_file(dir + "/data_batch_3.bin", bad_label);
  write_file(dir + "/test_batch.bin", bad_label);
  expect_error<IoError>([&] { nn::load_cifar10_dir(dir); }, dir + "/data_batch_3.bin", "label 10 of record 1");
}

std::string source_data_dir() {
  return testing::source_dir() + "/data";
}

TEST(Digits, BundledFileLoadsWithTheDocumentedSplit) {
  const nn::DatasetSplit split = nn::load_digits(nn::find_bundled_data_dir(source_data_dir()));
  EXPECT_EQ(split.train.size() + split.test.size(), nn::kDigitsExamples);
  EXPECT_EQ(split.test.size(), nn::kDigitsTestExamples);
  EXPECT_EQ(split.train.images.shape(), (Shape{1500, 1, 8, 8}));
  EXPECT_EQ(split.test.images.shape(), (Shape{297, 1, 8, 8}));
  EXPECT_EQ(split.train.num_classes, 10);
  std::set<std::int32_t> classes;
  for (const nn::Dataset* ds : {&split.train, &split.test}) {
    for (std::int32_t l : ds->labels.to_vector<std::int32_t>()) {
      ASSERT_GE(l, 0);
      ASSERT_LE(l, 9);
      classes.insert(l);
    }
    float lo = 1.0f, hi = 0.0f;
    for (float v : ds->images.to_vector<float>()) {
      // Values are k/16 for integers k in 0..16, exactly representable in float.
      ASSERT_EQ(v * 16.0f, std::round(v * 16.0f));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_EQ(lo, 0.0f);
    EXPECT_EQ(hi, 1.0f);
  }
  EXPECT_EQ(classes.size(), 10u);
  // The first row of the file (UCI optdigits): a 0 whose top row is 0,0,5,13,9,1,0,0.
  const std::vector<float> first = split.train.images.rows(0, 1).to_vector<float>();
  EXPECT_EQ(std::vector<float>(first.begin(), first.begin() + 8),
            (std::vector<float>{0, 0, 5 / 16.0f, 13 / 16.0f, 9 / 16.0f, 1 / 16.0f, 0, 0}));
  EXPECT_EQ(split.train.labels.to_vector<std::int32_t>()[0], 0);
  EXPECT_EQ(nn::load_dataset("digits", source_data_dir()).test.size(), nn::kDigitsTestExamples);
}

// Sets or unsets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : m_name(name) {
    if (const char* old = std::getenv(name)) m_old = old, m_had = true;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (m_had)
      ::setenv(m_name, m_old.c_str(), 1);
    else
      ::unsetenv(m_name);
  }

 private:
  const char* m_name;
  std::string m_old;
  bool m_had = false;
};

TEST(Digits, FindsTheDataDirectoryFromHintOrEnvironment) {
  {
    ScopedEnv env("AEGIS_DATA_DIR", source_data_dir().c_str());
    EXPECT_EQ(nn::find_bundled_data_dir(""), source_data_dir());
    EXPECT_EQ(nn::find_bundled_data_dir("/nonexistent/hint"), source_data_dir());
  }
  {
    ScopedEnv env("AEGIS_DATA_DIR", "/nonexistent/env");
    EXPECT_EQ(nn::find_bundled_data_dir(source_data_dir()), source_data_dir());
    try {
      const std::string found = nn::find_bundled_data_dir("/nonexistent/hint");
      // Only an installed copy can be found now.
      EXPECT_NE(found.find("share/aegis"), std::string::npos) << found;
    } catch (const IoError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("/nonexistent/hint/digits/digits.csv.gz"), std::string::npos) << what;
      EXPECT_NE(what.find("/nonexistent/env/digits/digits.csv.gz (AEGIS_DATA_DIR)"), std::string::npos) << what;
      EXPECT_NE(what.find("/usr/share/aegis"), std::string::npos) << what;
    }
  }
}

TEST(Digits, DamagedFileIsRejectedWithLineNumber) {
  const std::string dir = make_temp_dir();
  ASSERT_EQ(::mkdir((dir + "/digits").c_str(), 0755), 0);
  const std::string path = dir + "/digits/digits.csv.gz";
  std::string row;
  for (int i = 0; i < 64; ++i) row += std::to_string(i % 17) + ",";
  const std::string good = row + "3\n";
  auto write_csv = [&](const std::string& text) { write_gzip(path, Bytes(text.begin(), text.end())); };
  write_csv(good + good);
  expect_error<IoError>([&] { nn::load_digits(dir); }, path, "holds 2 examples");
  write_csv(good + row + "11\n");
  expect_error<IoError>([&] { nn::load_digits(dir); }, path, "line 2: label 11");
  write_csv(good + good + "1,2,3\n");
  expect_error<IoError>([&] { nn::load_digits(dir); }, path, "line 3: expected 65 fields, found 3");
  write_csv("17," + good);
  expect_error<IoError>([&] { nn::load_digits(dir); }, path, "line 1: pixel 17");
  write_csv(row + "x\n");
  expect_error<IoError>([&] { nn::load_digits(dir); }, path, "line 1: field 65 is not an integer");
}

TEST(DatasetSpec, UnknownSpecsListTheAcceptedForms) {
  for (const std::string spec : {"", "mnist", "cifar100:/x", "Digits", "mnist:"}) {
    try {
      nn::load_dataset(spec, "");
      ADD_FAILURE() << "spec '" << spec << "' was accepted";
    } catch (const InvalidArgument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("digits, fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR"), std::string::npos)
          << what;
    }
  }
}

TEST(DatasetSpec, MissingFashionMnistSaysHowToInstallIt) {
  {
    ScopedEnv env("AEGIS_FASHION_MNIST_DIR", "/nonexistent/fmnist");
    expect_error<IoError>([] { nn::load_dataset("fashion-mnist", ""); }, "/nonexistent/fmnist",
                          "AEGIS_FASHION_MNIST_DIR");
  }
  ScopedEnv env("AEGIS_FASHION_MNIST_DIR", nullptr);
  if (nn::detail::directory_exists("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "dataset-fashion-mnist is installed; the missing-package message cannot be provoked";
  expect_error<IoError>([] { nn::load_dataset("fashion-mnist", ""); }, "/usr/share/datasets/fashion-mnist",
                        "apt-get install dataset-fashion-mnist");
}

TEST(DatasetSpec, InstalledFashionMnistLoads) {
  ScopedEnv env("AEGIS_FASHION_MNIST_DIR", nullptr);
  if (!nn::detail::directory_exists("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "/usr/share/datasets/fashion-mnist is absent (apt-get install dataset-fashion-mnist)";
  const auto t0 = std::chrono::steady_clock::now();
  const nn::DatasetSplit split = nn::load_dataset("fashion-mnist", "");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("loaded Fashion-MNIST in %.2f s\n", seconds);
  EXPECT_EQ(split.train.images.shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(split.test.images.shape(), (Shape{10000, 1, 28, 28}));
  // Fashion-MNIST is balanced: 6000 training and 1000 test examples per class.
  std::vector<int> train_counts(10, 0), test_counts(10, 0);
  for (std::int32_t l : split.train.labels.to_vector<std::int32_t>()) ++train_counts[static_cast<std::size_t>(l)];
  for (std::int32_t l : split.test.labels.to_vector<std::int32_t>()) ++test_counts[static_cast<std::size_t>(l)];
  EXPECT_EQ(train_counts, std::vector<int>(10, 6000));
  EXPECT_EQ(test_counts, std::vector<int>(10, 1000));
}

// n examples of shape [2, 1, 3] whose pixels and label all encode the example's index.
nn::Dataset indexed_dataset(std::int64_t n) {
  std::vector<float> px;
  std::vector<std::int32_t> lb;
  for (std::int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 6; ++k) px.push_back(static_cast<float>(i) + 0.125f * static_cast<float>(k));
    lb.push_back(static_cast<std::int32_t>(i));
  }
  nn::Dataset ds;
  ds.name = "indexed";
  ds.num_classes = n;
  ds.images = Tensor::from_vector(px, {n, 2, 1, 3});
  ds.labels = Tensor::from_vector(lb, {n});
  return ds;
}

// Runs one epoch and returns the example indices in the order seen, checking each batch's
// shapes and that its images belong to its labels.
std::vector<std::int64_t> run_epoch(nn::BatchIterator& it, std::int64_t batch_size, std::vector<std::int64_t>* sizes) {
  std::vector<std::int64_t> seen;
  nn::Batch batch;
  while (it.next(batch)) {
    const std::int64_t b = batch.labels.numel();
    EXPECT_EQ(batch.images.shape(), (Shape{b, 2, 1, 3}));
    EXPECT_LE(b, batch_size);
    if (sizes) sizes->push_back(b);
    const std::vector<float> px = batch.images.to_vector<float>();
    const std::vector<std::int32_t> lb = batch.labels.to_vector<std::int32_t>();
    for (std::int64_t k = 0; k < b; ++k) {
      for (int j = 0; j < 6; ++j)
        EXPECT_EQ(px[static_cast<std::size_t>(k * 6 + j)],
                  static_cast<float>(lb[static_cast<std::size_t>(k)]) + 0.125f * j);
      seen.push_back(lb[static_cast<std::size_t>(k)]);
    }
  }
  return seen;
}

TEST(BatchIterator, CoversEveryExampleOncePerEpoch) {
  const nn::Dataset ds = indexed_dataset(23);
  nn::BatchOptions opt;
  opt.batch_size = 5;
  opt.shuffle = true;
  opt.seed = 11;
  nn::BatchIterator it(ds, opt);
  EXPECT_EQ(it.num_batches(), 5);
  for (std::uint32_t epoch = 0; epoch < 3; ++epoch) {
    it.start_epoch(epoch);
    std::vector<std::int64_t> sizes;
    std::vector<std::int64_t> seen = run_epoch(it, 5, &sizes);
    EXPECT_EQ(sizes, (std::vector<std::int64_t>{5, 5, 5, 5, 3}));
    EXPECT_EQ(seen, it.order());
    std::sort(seen.begin(), seen.end());
    for (std::int64_t i = 0; i < 23; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
  }
  nn::Batch after;
  EXPECT_FALSE(it.next(after));
  EXPECT_FALSE(after.images.defined());
}

TEST(BatchIterator, DropLastAndOversizedBatches) {
  const nn::Dataset ds = indexed_dataset(23);
  nn::BatchOptions opt;
  opt.batch_size = 5;
  opt.drop_last = true;
  opt.shuffle = true;
  nn::BatchIterator it(ds, opt);
  EXPECT_EQ(it.num_batches(), 4);
  std::vector<std::int64_t> sizes;
  const std::vector<std::int64_t> seen = run_epoch(it, 5, &sizes);
  EXPECT_EQ(sizes, (std::vector<std::int64_t>{5, 5, 5, 5}));
  EXPECT_EQ(std::set<std::int64_t>(seen.begin(), seen.end()).size(), 20u);

  opt.batch_size = 100;
  nn::BatchIterator dropped(ds, opt);
  EXPECT_EQ(dropped.num_batches(), 0);
  EXPECT_TRUE(run_epoch(dropped, 100, nullptr).empty());
  opt.drop_last = false;
  nn::BatchIterator whole(ds, opt);
  EXPECT_EQ(whole.num_batches(), 1);
  EXPECT_EQ(run_epoch(whole, 100, nullptr).size(), 23u);

  opt.batch_size = 0;
  EXPECT_THROW(nn::BatchIterator(ds, opt), InvalidArgument);
}

TEST(BatchIterator, OrderIsIdentityWithoutShuffleAndKeyedBySeedAndEpochWithIt) {
  const nn::Dataset ds = indexed_dataset(31);
  nn::BatchOptions opt;
  opt.batch_size = 4;
  nn::BatchIterator plain(ds, opt);
  std::vector<std::int64_t> identity(31);
  for (std::int64_t i = 0; i < 31; ++i) identity[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(run_epoch(plain, 4, nullptr), identity);

  opt.shuffle = true;
  opt.seed = 5;
  nn::BatchIterator a(ds, opt, 0), b(ds, opt, 0), c(ds, opt, 1);
  const std::vector<std::int64_t> a0 = run_epoch(a, 4, nullptr);
  EXPECT_EQ(a0, run_epoch(b, 4, nullptr));  // reproducible for (seed, epoch)
  EXPECT_NE(a0, run_epoch(c, 4, nullptr));  // a new order each epoch
  EXPECT_NE(a0, identity);
  opt.seed = 6;
  nn::BatchIterator d(ds, opt, 0);
  EXPECT_NE(a0, run_epoch(d, 4, nullptr));  // and for each seed
  EXPECT_EQ(a0, nn::shuffled_order(31, 5, 0));
}

TEST(BatchIterator, ShuffleIsUniformOverPermutations) {
  // All 24 permutations of 4 elements over 24000 epochs: each count is Binomial(24000, 1/24),
  // mean 1000, sd ≈ 31.2; the bound is 5 sd. Pearson's statistic has 23 degrees of freedom
  // (mean 23, sd ≈ 6.8); 70 is about 7 sd above the mean.
  std::map<std::vector<std::int64_t>, int> counts;
  for (std::uint32_t epoch = 0; epoch < 24000; ++epoch) ++counts[nn::shuffled_order(4, 77, epoch)];
  ASSERT_EQ(counts.size(), 24u);
  double chi2 = 0;
  for (const auto& [perm, count] : counts) {
    EXPECT_NEAR(count, 1000, 5 * 31.2);
    chi2 += (count - 1000.0) * (count - 1000.0) / 1000.0;
  }
  EXPECT_LT(chi2, 70.0);
}

TEST(BatchIterator, BatchesAreCopiesAndTakeIsBounded) {
  const nn::Dataset ds = indexed_dataset(10);
  nn::BatchOptions opt;
  opt.batch_size = 3;
  nn::BatchIterator it(ds, opt);
  nn::Batch batch;
  ASSERT_TRUE(it.next(batch));
  batch.images.fill(-1.0);
  EXPECT_EQ(ds.images.to_vector<float>()[0], 0.0f);

  const nn::Dataset sub = nn::take(ds, 3, 4);
  EXPECT_EQ(sub.size(), 4);
  EXPECT_EQ(sub.labels.to_vector<std::int32_t>(), (std::vector<std::int32_t>{3, 4, 5, 6}));
  EXPECT_EQ(sub.images.shape(), (Shape{4, 2, 1, 3}));
  EXPECT_EQ(sub.images.to_vector<float>()[0], 3.0f);
  EXPECT_EQ(sub.name, "indexed");
  EXPECT_EQ(nn::take(ds, 10, 0).size(), 0);
  EXPECT_THROW(nn::take(ds, 8, 3), InvalidArgument);
  EXPECT_THROW(nn::take(ds, -1, 2), InvalidArgument);
}

TEST(BatchIterator, CudaBatchesMatchCpuBatches) {
  AEGIS_REQUIRE_GPU();
  const nn::Dataset ds = indexed_dataset(17);
  nn::BatchOptions opt;
  opt.batch_size = 8;
  opt.shuffle = true;
  opt.seed = 3;
  // The same batches, copied: exact; the harness also checks that both devices give as many.
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    opt.device = run.device();
    nn::BatchIterator it(ds, opt);
    nn::Batch b;
    for (int k = 0; it.next(b); ++k) {
      EXPECT_EQ(b.images.device(), run.device());
      EXPECT_EQ(b.labels.device(), run.device());
      run.check("batch " + std::to_string(k) + " images", b.images, testing::kExact);
      run.check("batch " + std::to_string(k) + " labels", b.labels, testing::kExact);
    }
  }));
}

}  // namespace
}  // namespace aegis
