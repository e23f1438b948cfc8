#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "nn/layers.h"
#include "nn/model_file.h"
#include "nn/serialize.h"
#include "nn/zoo.h"
#include "support/testing.h"

namespace aegis {
namespace {

using Bytes = std::vector<unsigned char>;

std::string make_temp_dir() {
  return testing::make_temp_dir("aegis_serialize");
}

using testing::write_file;

Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

std::string dir_of(const std::string& path) {
  return std::filesystem::path(path).parent_path().string();
}

// Temporary files of atomic writes (<name>.tmp.XXXXXX) left in `dir`.
int temporaries(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    n += e.path().filename().string().find(".tmp") != std::string::npos;
  return n;
}

void put_le(Bytes& b, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

// A safetensors file assembled by hand: length prefix (the true length unless overridden), the
// header text, then the data bytes.
Bytes safetensors_bytes(const std::string& header, const Bytes& data, std::uint64_t length_field = ~0ull) {
  Bytes b;
  put_le(b, length_field == ~0ull ? header.size() : length_field, 8);
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

using testing::expect_error;

TEST(Safetensors, RoundTripsEveryDtypeWithMetadata) {
  const std::string path = make_temp_dir() + "/t.safetensors";
  const Tensor f32 = testing::random_tensor({3, 5}, 1);
  const Tensor f64 = Tensor::from_vector<double>({1.0 / 3.0, -2.5e-300, 7.0}, {3});
  const Tensor i32 = Tensor::from_vector<std::int32_t>({-2147483647 - 1, 0, 2147483647, -7}, {2, 2});
  const Tensor scalar = Tensor::from_vector<float>({4.25f}, {});
  const Tensor empty = Tensor::empty({0, 4}, DType::F32);
  const std::map<std::string, std::string> meta{{"epsilon", "1.25"}, {"note", "ünïcode ✓"}, {"empty", ""}};
  nn::save_safetensors(path, {{"w", f32}, {"d", f64}, {"i", i32}, {"s", scalar}, {"e", empty}}, meta);
  EXPECT_EQ(temporaries(dir_of(path)), 0);

  const nn::SafetensorsFile file = nn::load_safetensors(path);
  EXPECT_EQ(file.metadata, meta);
  EXPECT_EQ(file.order, (std::vector<std::string>{"w", "d", "i", "s", "e"}));  // the order given
  ASSERT_EQ(file.tensors.size(), 5u);
  EXPECT_EQ(file.tensors.at("w").shape(), f32.shape());
  EXPECT_EQ(file.tensors.at("w").to_vector<float>(), f32.to_vector<float>());
  EXPECT_EQ(file.tensors.at("d").to_vector<double>(), f64.to_vector<double>());
  EXPECT_EQ(file.tensors.at("i").dtype(), DType::I32);
  EXPECT_EQ(file.tensors.at("i").to_vector<std::int32_t>(), i32.to_vector<std::int32_t>());
  EXPECT_EQ(file.tensors.at("s").shape(), Shape{});
  EXPECT_EQ(file.tensors.at("s").item(), 4.25);
  EXPECT_EQ(file.tensors.at("e").shape(), (Shape{0, 4}));

  // The data section starts 8-byte aligned.
  const Bytes bytes = read_file(path);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[static_cast<std::size_t>(i)];
  EXPECT_EQ((8 + header_len) % 8, 0u);
}

TEST(Safetensors, WriterOutputIsByteExact) {
  // The header a reader in any language sees: metadata first, tensors in the given order,
  // compact JSON, padded with spaces to a multiple of 8, then little-endian data.
  const std::string path = make_temp_dir() + "/exact.safetensors";
  nn::save_safetensors(path, {{"a", Tensor::from_vector<float>({1.0f, -2.0f}, {2})}}, {{"k", "v"}});
  std::string header = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const Bytes expected = safetensors_bytes(header, {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0});
  EXPECT_EQ(read_file(path), expected);
}

TEST(Safetensors, HandBuiltFileInThePublishedFormatLoads) {
  // As safetensors' Python writer lays a file out: keys in any order, metadata anywhere,
  // offsets relative to the data section, little-endian values. The bytes are spelled out, so
  // this checks the format, not our writer.
  const std::string header = R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                             R"("bias":{"dtype":"F64","shape":[2],"data_offsets":[24,40]},)"
                             R"("step":{"dtype":"I32","shape":[],"data_offsets":[40,44]},)"
                             R"("__metadata__":{"format":"pt"}}  )";
  Bytes data;
  for (std::uint32_t bits : {0x3f800000u, 0xc0000000u, 0x3f000000u, 0x40400000u, 0x00000000u, 0xbe800000u})
    put_le(data, bits, 4);                 // 1, −2, 0.5, 3, 0, −0.25
  put_le(data, 0x3ff8000000000000ull, 8);  // 1.5
  put_le(data, 0xc008000000000000ull, 8);  // −3
  put_le(data, 0xfffffff9u, 4);            // −7
  const std::string path = make_temp_dir() + "/hand.safetensors";
  write_file(path, safetensors_bytes(header, data));

  const nn::SafetensorsFile file = nn::load_safetensors(path);
  EXPECT_EQ(file.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(file.order, (std::vector<std::string>{"weight", "bias", "step"}));
  EXPECT_EQ(file.tensors.at("weight").shape(), (Shape{2, 3}));
  EXPECT_EQ(file.tensors.at("weight").to_vector<float>(), (std::vector<float>{1, -2, 0.5f, 3, 0, -0.25f}));
  EXPECT_EQ(file.tensors.at("bias").to_vector<double>(), (std::vector<double>{1.5, -3.0}));
  EXPECT_EQ(file.tensors.at("step").to_vector<std::int32_t>(), (std::vector<std::int32_t>{-7}));

  // No metadata and no tensors at all is a valid (empty) file.
  write_file(path, safetensors_bytes("{}", {}));
  EXPECT_TRUE(nn::load_safetensors(path).tensors.empty());
}

TEST(Safetensors, CorruptFilesAreRejectedNamingFileAndTensor) {
  const std::string path = make_temp_dir() + "/bad.safetensors";
  const Bytes four_floats(16, 0);
  auto load = [&] { nn::load_safetensors(path); };
  struct Case {
    Bytes bytes;
    std::string fragment;
  };
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})";
  const std::vector<Case> cases = {
      {Bytes{1, 2, 3}, "too short"},
      {safetensors_bytes("{}", {}, 1000), "header length 1000 is larger"},
      {safetensors_bytes("{\"t\":", four_floats), "not valid JSON"},
      {safetensors_bytes("[1,2]", {}), "not an object"},
      {safetensors_bytes(R"({"t":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}})", four_floats),
       "tensor 't': unsupported dtype \"BF16\""},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,20]}})", four_floats),
       "tensor 't': data_offsets [0, 20] fall outside"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", four_floats),
       "tensor 't': F32 [3] needs 12 bytes"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})",
                         four_floats),
       "tensor 't': shape [4294967296,4294967296,16] has more elements than 2^63 - 1"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,1024,16],"data_offsets":[0,16]}})",
                         four_floats),
       "tensor 't': F32 [4294967296, 1024, 16] needs more than"},
      // A zero makes the product 0, but the other sizes still may not overflow a shape.
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[9223372036854775807,2,0],"data_offsets":[0,0]},)"
                         R"("u":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                         four_floats),
       "tensor 't': shape [9223372036854775807,2,0] has more elements than 2^63 - 1"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", four_floats),
       "tensor 't': shape entry -4"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", four_floats),
       "tensor 't': data_offsets [16, 0]"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4]}})", four_floats), "tensor 't': header entry has no"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         Bytes(12, 0)),
       "overlap"},
      {safetensors_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", four_floats),
       "8 unused bytes before tensor 't'"},
      {safetensors_bytes("{" + ok_entry + "}", Bytes(20, 0)), "4 bytes after the last tensor"},
      {safetensors_bytes("{" + ok_entry + R"(,"__metadata__":{"n":3}})", four_floats),
       "__metadata__ entry 'n' is 3, but metadata values must be strings"},
      {safetensors_bytes("{" + ok_entry + R"(,"__metadata__":["x"]})", four_floats), "__metadata__ is not"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.fragment);
    write_file(path, c.bytes);
    expect_error<IoError>(load, path, c.fragment);
  }
  expect_error<IoError>([&] { nn::load_safetensors(path + ".absent"); }, path + ".absent", "cannot open");
}

std::shared_ptr<nn::Sequential> mlp(std::int64_t in, std::int64_t hidden, std::int64_t out, std::uint64_t seed) {
  nn::InitRng rng(seed);
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Linear>(in, hidden, rng));
  m->push_back(std::make_shared<nn::ActivationLayer>(nn::ActivationKind::ReLU));
  m->push_back(std::make_shared<nn::Linear>(hidden, out, rng));
  return m;
}

std::map<std::string, std::vector<float>> parameter_values(const nn::Module& m) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, v] : m.named_parameters()) out[name] = v.value().to_vector<float>();
  return out;
}

TEST(ModelFile, KeepsPyTorchStateDictNamesAndRoundTrips) {
  const std::string path = make_temp_dir() + "/mlp.safetensors";
  auto saved = mlp(4, 3, 2, 1);
  nn::save_model(path, *saved, {{"aegis.model", "mlp"}});
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  EXPECT_EQ(file.order, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(file.tensors.at("0.weight").shape(), (Shape{3, 4}));  // torch.nn.Linear: [out, in]
  EXPECT_EQ(file.tensors.at("2.bias").shape(), (Shape{2}));

  auto loaded = mlp(4, 3, 2, 2);
  ASSERT_NE(parameter_values(*loaded), parameter_values(*saved));
  const std::map<std::string, std::string> meta = nn::load_model(path, *loaded);
  EXPECT_EQ(meta.at("aegis.model"), "mlp");
  EXPECT_EQ(parameter_values(*loaded), parameter_values(*saved));
}

TEST(ModelFile, LoadIsStrictAndLeavesTheModelUntouchedOnMismatch) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/m.safetensors";
  auto target = mlp(4, 3, 2, 7);
  const auto before = parameter_values(*target);

  // A model with a different hidden width: every tensor has the wrong shape.
  nn::save_model(path, *mlp(4, 5, 2, 1));
  expect_error<IoError>([&] { nn::load_model(path, *target); }, path,
                        "tensor '0.weight' is f32[5, 4] in the file but the model's parameter is f32[3, 4]");
  EXPECT_EQ(parameter_values(*target), before);

  // Only the first layer present.
  nn::InitRng rng(3);
  nn::Linear first(4, 3, rng);
  nn::save_safetensors(path, {{"0.weight", first.weight().value()}, {"0.bias", first.bias().value()}});
  expect_error<IoError>([&] { nn::load_model(path, *target); }, path, "missing tensor '2.weight'");
  EXPECT_EQ(parameter_values(*target), before);

  // Everything present plus one tensor the model does not have.
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, v] : mlp(4, 3, 2, 1)->named_parameters()) tensors.emplace_back(name, v.value());
  tensors.emplace_back("3.weight", Tensor::zeros({1}));
  nn::save_safetensors(path, tensors);
  expect_error<IoError>([&] { nn::load_model(path, *target); }, path, "unexpected tensor '3.weight'");
  EXPECT_EQ(parameter_values(*target), before);

  // The right shape in the wrong dtype.
  tensors.pop_back();
  tensors[1].second = Tensor::zeros({3}, DType::F64);
  nn::save_safetensors(path, tensors);
  expect_error<IoError>([&] { nn::load_model(path, *target); }, path, "tensor '0.bias' is f64[3]");
  EXPECT_EQ(parameter_values(*target), before);
}

TEST(ModelFile, WritesAreAtomic) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/m.safetensors";
  // Replacing a larger file leaves exactly the new content and no temporary.
  write_file(path, Bytes(100000, 0xab));
  auto model = mlp(4, 3, 2, 1);
  nn::save_model(path, *model);
  EXPECT_EQ(temporaries(dir_of(path)), 0);
  auto copy = mlp(4, 3, 2, 9);
  nn::load_model(path, *copy);
  EXPECT_EQ(parameter_values(*copy), parameter_values(*model));

  // A destination that cannot be replaced (a non-empty directory) fails without leaving the
  // temporary behind.
  const std::string blocked = dir + "/blocked";
  ASSERT_EQ(::mkdir(blocked.c_str(), 0755), 0);
  write_file(blocked + "/keep", Bytes{1});
  expect_error<IoError>([&] { nn::save_model(blocked, *model); }, blocked, "cannot rename");
  EXPECT_EQ(temporaries(dir), 0);
  expect_error<IoError>([&] { nn::save_model(dir + "/no/such/dir/m.safetensors", *model); },
                        dir + "/no/such/dir/m.safetensors", "cannot create");
}

TEST(Safetensors, WriterRejectsBadNames) {
  const std::string path = make_temp_dir() + "/names.safetensors";
  const Tensor t = Tensor::zeros({2});
  EXPECT_THROW(nn::save_safetensors(path, {{"a", t}, {"a", t}}), InvalidArgument);
  EXPECT_THROW(nn::save_safetensors(path, {{"__metadata__", t}}), InvalidArgument);
  EXPECT_THROW(nn::save_safetensors(path, {{"", t}}), InvalidArgument);
  EXPECT_THROW(nn::save_safetensors(path, {{"u", Tensor()}}), InvalidArgument);
  EXPECT_FALSE(exists(path));
}

TEST(ModelFile, CudaParametersSaveAndLoadOnTheirDevice) {
  AEGIS_REQUIRE_GPU();
  const std::string path = make_temp_dir() + "/gpu.safetensors";
  auto model = mlp(5, 4, 3, 1);
  const auto values = parameter_values(*model);
  model->to(Device::cuda());
  nn::save_model(path, *model);
  auto loaded = mlp(5, 4, 3, 2);
  loaded->to(Device::cuda());
  nn::load_model(path, *loaded);
  for (const auto& [name, v] : loaded->named_parameters()) EXPECT_TRUE(v.value().is_cuda()) << name;
  EXPECT_EQ(parameter_values(*loaded), values);
}

// Reads are bounded by the file's own size: a device such as /dev/zero is refused up front
// instead of being read until memory runs out.
TEST(Safetensors, NonRegularFilesAreRefused) {
  expect_error<IoError>([] { nn::load_safetensors("/dev/zero"); }, "/dev/zero", "not a regular file");
  expect_error<IoError>([] { nn::load_classifier("/dev/zero"); }, "/dev/zero", "not a regular file");
}

// A classifier's metadata decides what is built before the weights are compared: sizes that
// overflow, or an input far larger than the file's weights could serve, are refused before any
// allocation for them.
TEST(ModelFile, MetadataSizesAreCheckedBeforeTheModelIsBuilt) {
  const std::string dir = make_temp_dir();
  const std::string good = dir + "/good.safetensors", bad = dir + "/bad.safetensors";
  const nn::ModelSpec spec{"mlp", {1, 8, 8}, 10, "", 1};
  nn::save_classifier(good, *nn::build_model(spec), spec);
  const nn::SafetensorsFile file = nn::load_safetensors(good);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : file.order) tensors.emplace_back(name, file.tensors.at(name));
  for (const auto& [key, value, fragment] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"aegis.input_shape", "1,4294967296,4294967296", "product fits in 64 bits"},
           {"aegis.input_shape", "1,0,8", "sizes ≥ 1"},
           {"aegis.input_shape", "1,1000,1000", "far larger than the file's"},
           {"aegis.num_classes", "4294967296", "is not in [2, "}}) {
    SCOPED_TRACE(value);
    std::map<std::string, std::string> metadata = file.metadata;
    metadata[key] = value;
    nn::save_safetensors(bad, tensors, metadata);
    expect_error<IoError>([&] { nn::load_classifier(bad); }, bad, fragment);
  }
  EXPECT_EQ(nn::load_classifier(good).spec.input_shape, (Shape{1, 8, 8}));
}

// Two writers saving to one path at the same time (two runs with the same --out) each use their
// own temporary file: both saves succeed and the result is one of the two models, whole.
TEST(ModelFile, ConcurrentWritersToOnePathNeverShareATemporary) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/shared.safetensors";
  auto a = mlp(16, 32, 4, 1), b = mlp(16, 32, 4, 2);
  std::atomic<int> failures{0};
  auto save_many = [&](const nn::Module& m) {
    for (int i = 0; i < 25; ++i) try {
        nn::save_model(path, m);
      } catch (const std::exception&) {
        ++failures;
      }
  };
  std::thread ta(save_many, std::cref(*a)), tb(save_many, std::cref(*b));
  ta.join();
  tb.join();
  EXPECT_EQ(failures.load(), 0);
  auto copy = mlp(16, 32, 4, 9);
  nn::load_model(path, *copy);
  const auto v = parameter_values(*copy);
  EXPECT_TRUE(v == parameter_values(*a) || v == parameter_values(*b));
  EXPECT_EQ(temporaries(dir), 0);
}

// Keeps a file-size limit for the scope of a test, with SIGXFSZ ignored so that the write past
// the limit fails with EFBIG, like a write on a full disk fails with ENOSPC.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &m_saved);
    m_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = m_saved;
    lim.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &m_saved);
    std::signal(SIGXFSZ, m_handler);
  }

 private:
  rlimit m_saved{};
  void (*m_handler)(int) = nullptr;
};

TEST(ModelFile, AShortWriteLeavesNoHalfFileAndNoTemporary) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/m.safetensors";
  auto small = mlp(2, 2, 2, 1), big = mlp(64, 256, 10, 2);
  nn::save_model(path, *small);
  const Bytes before = read_file(path);
  {
    const FileSizeLimit limit(before.size() + 4096);  // far below the big model's 70 kB
    expect_error<IoError>([&] { nn::save_model(path, *big); }, path, "failed");
  }
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(temporaries(dir), 0);
}

}  // namespace
}  // namespace aegis
