// IDX files (LeCun, Cortes, Burges, "The MNIST database", file-format section): a 4-byte magic
// 0x00 0x00 <type> <ndims>, then ndims big-endian 32-bit sizes, then the elements row-major.
// MNIST and Fashion-MNIST use type 0x08 (unsigned byte): images with 3 dims, labels with 1.
#include <cstdint>
#include <iomanip>
#include <sstream>

#include "nn/data/dataset.h"

namespace aegis::nn {
namespace {

constexpr std::uint32_t kImagesMagic = 0x00000803;
constexpr std::uint32_t kLabelsMagic = 0x00000801;
constexpr std::int64_t kMnistClasses = 10;

std::uint32_t read_be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

// IDX files of MNIST-like datasets hold tens of megabytes; 4 GiB is far beyond any of them.
constexpr std::uint64_t kMaxIdxPayloadBytes = std::uint64_t{1} << 32;
constexpr std::uint64_t kIdxSlackBytes = 4096;

std::string hex32(std::uint32_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return s.str();
}

// The parsed header of an IDX file and where its payload starts.
struct IdxHeader {
  std::vector<std::uint64_t> dims;
  std::size_t payload_offset = 0;
};

IdxHeader parse_idx_header(const std::vector<unsigned char>& bytes, const std::string& path,
                           std::uint32_t expected_magic, const char* what) {
  const std::size_t ndims = expected_magic & 0xff;
  if (bytes.size() < 4)
    AEGIS_THROW(IoError, path << ": truncated IDX file: " << bytes.size() << " bytes, too short for the 4-byte magic");
  const std::uint32_t magic = read_be32(bytes.data());
  if (magic != expected_magic)
    AEGIS_THROW(IoError, path << ": wrong magic " << hex32(magic) << ", expected " << hex32(expected_magic) << " ("
                              << what << ": unsigned bytes, " << ndims << " dimension" << (ndims > 1 ? "s" : "")
                              << ")");
  IdxHeader header;
  header.payload_offset = 4 + 4 * ndims;
  if (bytes.size() < header.payload_offset)
    AEGIS_THROW(IoError, path << ": truncated IDX header: " << bytes.size() << " bytes, the header needs "
                              << header.payload_offset);
  for (std::size_t d = 0; d < ndims; ++d) header.dims.push_back(read_be32(bytes.data() + 4 + 4 * d));
  // Check the payload size dimension by dimension, so that absurd sizes cannot overflow.
  const std::uint64_t available = bytes.size() - header.payload_offset;
  std::uint64_t needed = 1;
  std::ostringstream dims_text;
  for (std::size_t d = 0; d < ndims; ++d) {
    dims_text << (d ? "×" : "") << header.dims[d];
    if (header.dims[d] == 0) AEGIS_THROW(IoError, path << ": IDX dimension " << d << " is 0; the file holds no data");
    if (needed > available / header.dims[d])
      needed = available + 1;  // needed·dim > available: saturate
    else
      needed *= header.dims[d];
  }
  if (needed > available)
    AEGIS_THROW(IoError, path << ": truncated: the header promises " << dims_text.str()
                              << " bytes of data, the file has " << available << " after the header");
  if (needed < available)
    AEGIS_THROW(IoError, path << ": " << (available - needed) << " unexpected bytes after the " << dims_text.str()
                              << " bytes of data the header declares");
  return header;
}

// Reads the header first and then no more of the file than it declares (plus a little, so that
// parse_idx_header can still name a few unexpected trailing bytes): a gzip file whose content
// inflates far past its header's promise stops inflating there. The declared size itself must be
// sane, at most kMaxIdxPayloadBytes.
std::vector<unsigned char> read_idx_file(const std::string& path, std::uint32_t expected_magic) {
  const std::size_t ndims = expected_magic & 0xff;
  const std::size_t header_bytes = 4 + 4 * ndims;
  const std::vector<unsigned char> head = detail::read_file_head(path, header_bytes);
  if (head.size() < header_bytes || read_be32(head.data()) != expected_magic)
    return detail::read_file_bytes(path, header_bytes + kIdxSlackBytes);  // parse_idx_header says what is wrong
  std::uint64_t payload = 1;
  for (std::size_t d = 0; d < ndims; ++d) {
    const std::uint64_t dim = read_be32(head.data() + 4 + 4 * d);
    if (dim != 0 && payload > kMaxIdxPayloadBytes / dim)
      AEGIS_THROW(IoError, path << ": the IDX header declares more than " << kMaxIdxPayloadBytes
                                << " bytes of data (dimension " << d << " is " << dim << ")");
    payload *= dim;
  }
  return detail::read_file_bytes(path, header_bytes + payload + kIdxSlackBytes);
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path, const std::string& name) {
  const std::vector<unsigned char> image_bytes = read_idx_file(images_path, kImagesMagic);
  const IdxHeader ih = parse_idx_header(image_bytes, images_path, kImagesMagic, "images");
  const std::vector<unsigned char> label_bytes = read_idx_file(labels_path, kLabelsMagic);
  const IdxHeader lh = parse_idx_header(label_bytes, labels_path, kLabelsMagic, "labels");

  const auto n = static_cast<std::int64_t>(ih.dims[0]);
  const auto height = static_cast<std::int64_t>(ih.dims[1]);
  const auto width = static_cast<std::int64_t>(ih.dims[2]);
  if (lh.dims[0] != ih.dims[0])
    AEGIS_THROW(IoError, images_path << ": holds " << n << " images but " << labels_path << " holds " << lh.dims[0]
                                     << " labels");

  Dataset ds;
  ds.name = name;
  ds.num_classes = kMnistClasses;
  ds.labels = Tensor::empty({n}, DType::I32);
  std::int32_t* labels = ds.labels.data<std::int32_t>();
  const unsigned char* lp = label_bytes.data() + lh.payload_offset;
  for (std::int64_t i = 0; i < n; ++i) {
    if (lp[i] >= kMnistClasses)
      AEGIS_THROW(IoError, labels_path << ": label " << int{lp[i]} << " of example " << i << " is outside 0.."
                                       << kMnistClasses - 1);
    labels[i] = lp[i];
  }

  ds.images = Tensor::empty({n, 1, height, width}, DType::F32);
  float* pixels = ds.images.data<float>();
  const unsigned char* ip = image_bytes.data() + ih.payload_offset;
  const std::int64_t count = ds.images.numel();
  // v/255 correctly rounded, as torchvision's ToTensor computes it (v·(1/255) is off by an ulp
  // for some v), so pixels match a PyTorch pipeline bit for bit.
  float scale[256];
  for (int v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
  for (std::int64_t i = 0; i < count; ++i) pixels[i] = scale[ip[i]];
  return ds;
}

DatasetSplit load_mnist_dir(const std::string& dir, const std::string& name) {
  if (!detail::directory_exists(dir)) AEGIS_THROW(IoError, dir << ": " << name << " directory does not exist");
  // The distributed names, and the dotted variant ("train-images.idx3-ubyte") some mirrors use.
  auto find = [&](const std::string& stem, const std::string& kind) {
    const std::string dotted = stem + "." + kind;
    const std::string dashed = stem + "-" + kind;
    for (const std::string& base : {dashed, dotted})
      for (const char* suffix : {"", ".gz"}) {
        const std::string path = dir + "/" + base + suffix;
        if (detail::file_exists(path)) return path;
      }
    AEGIS_THROW(IoError, dir << ": no " << dashed << " or " << dashed << ".gz in this " << name << " directory");
  };
  DatasetSplit split;
  split.train = load_idx(find("train-images", "idx3-ubyte"), find("train-labels", "idx1-ubyte"), name);
  split.test = load_idx(find("t10k-images", "idx3-ubyte"), find("t10k-labels", "idx1-ubyte"), name);
  if (split.train.images.size(2) != split.test.images.size(2) ||
      split.train.images.size(3) != split.test.images.size(3))
    AEGIS_THROW(IoError, dir << ": training images are " << split.train.images.size(2) << "×"
                             << split.train.images.size(3) << " but test images are " << split.test.images.size(2)
                             << "×" << split.test.images.size(3));
  return split;
}

}  // namespace aegis::nn
