// safetensors reading and writing; see serialize.h for the format and the checks.
#include "nn/serialize.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/atomic_file.h"

namespace aegis::nn {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian data; this build copies tensor bytes unchanged");

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr std::uint64_t kMaxHeaderBytes = 100000000;


bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32")
    out = DType::F32;
  else if (s == "F64")
    out = DType::F64;
  else if (s == "I32")
    out = DType::I32;
  else
    return false;
  return true;
}

// The whole of a regular file, read up to the size stat reports: a device or a pipe (/dev/zero)
// has no size to trust and could be read forever, so it is refused before any byte is read.
std::vector<unsigned char> read_whole_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) AEGIS_THROW(IoError, path << ": cannot open: " << std::strerror(errno));
  struct stat st {};
  if (::fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(f);
    AEGIS_THROW(IoError, path << ": not a regular file");
  }
  std::vector<unsigned char> bytes(static_cast<std::size_t>(st.st_size));
  const std::size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) AEGIS_THROW(IoError, path << ": read error");
  bytes.resize(got);  // the file shrank while being read: the checks below see what is there
  return bytes;
}

std::uint64_t as_offset(const nlohmann::json& v, const std::string& path, const std::string& name, const char* what) {
  if (!v.is_number_unsigned())
    AEGIS_THROW(IoError, path << ": tensor '" << name << "': " << what << " entry " << v.dump()
                              << " is not a non-negative integer");
  return v.get<std::uint64_t>();
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const nlohmann::json& info, const std::string& path,
                  std::uint64_t data_size) {
  if (!info.is_object()) AEGIS_THROW(IoError, path << ": tensor '" << name << "': header entry is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key))
      AEGIS_THROW(IoError, path << ": tensor '" << name << "': header entry has no \"" << key << "\"");
  Entry e;
  e.name = name;
  const nlohmann::json& dtype = info["dtype"];
  if (!dtype.is_string() || !parse_dtype(dtype.get<std::string>(), e.dtype))
    AEGIS_THROW(IoError, path << ": tensor '" << name << "': unsupported dtype " << dtype.dump()
                              << "; aegis reads F32, F64 and I32");
  const nlohmann::json& shape = info["shape"];
  if (!shape.is_array()) AEGIS_THROW(IoError, path << ": tensor '" << name << "': shape is not an array");
  // numel saturates at data_size + 1 so that absurd shapes cannot overflow the size check below.
  std::uint64_t numel = 1;
  bool has_zero = false;
  std::int64_t nonzero_product = 1;  // every size but the zeros: must fit in int64 like any shape
  for (const nlohmann::json& d : shape) {
    const std::uint64_t dim = as_offset(d, path, name, "shape");
    if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      AEGIS_THROW(IoError, path << ": tensor '" << name << "': dimension " << dim << " is too large");
    e.shape.push_back(static_cast<std::int64_t>(dim));
    if (dim != 0 && __builtin_mul_overflow(nonzero_product, static_cast<std::int64_t>(dim), &nonzero_product))
      AEGIS_THROW(IoError, path << ": tensor '" << name << "': shape " << shape.dump()
                                << " has more elements than 2^63 - 1");
    if (dim == 0)
      has_zero = true;
    else if (numel > data_size / dim)
      numel = data_size + 1;
    else
      numel *= dim;
  }
  if (has_zero) numel = 0;
  const nlohmann::json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    AEGIS_THROW(IoError,
                path << ": tensor '" << name << "': data_offsets " << offsets.dump() << " is not a [begin, end] pair");
  e.begin = as_offset(offsets[0], path, name, "data_offsets");
  e.end = as_offset(offsets[1], path, name, "data_offsets");
  if (e.begin > e.end || e.end > data_size)
    AEGIS_THROW(IoError, path << ": tensor '" << name << "': data_offsets [" << e.begin << ", " << e.end
                              << "] fall outside the data section of " << data_size << " bytes");
  const std::uint64_t expected = numel > data_size ? data_size + 1 : numel * dtype_size(e.dtype);
  if (e.end - e.begin != expected)
    AEGIS_THROW(IoError, path << ": tensor '" << name << "': " << safetensors_dtype_name(e.dtype) << " "
                              << shape_str(e.shape) << " needs "
                              << (numel > data_size ? std::string("more than the file's") : std::to_string(expected))
                              << " bytes but data_offsets [" << e.begin << ", " << e.end << "] span "
                              << e.end - e.begin);
  return e;
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    AEGIS_CHECK(!name.empty(), "save_safetensors(" << path << "): empty tensor name");
    AEGIS_CHECK(name != "__metadata__",
                "save_safetensors(" << path << "): '__metadata__' is reserved, not a tensor name");
    AEGIS_CHECK(!header.contains(name), "save_safetensors(" << path << "): tensor name '" << name << "' appears twice");
    AEGIS_CHECK(tensor.defined(), "save_safetensors(" << path << "): tensor '" << name << "' is undefined");
    host.push_back(tensor.to(Device::cpu()));
    const std::uint64_t size = tensor.nbytes();
    header[name] = {{"dtype", safetensors_dtype_name(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    AEGIS_THROW(InvalidArgument, "save_safetensors("
                                     << path << "): a tensor name or metadata entry is not valid UTF-8 (" << e.what()
                                     << ")");
  }
  // Pad with spaces so the data section starts 8-byte aligned (the format allows trailing spaces).
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));

  write_file_atomically(path, [&](int fd) {
    bool ok = write_fully(fd, length, sizeof(length)) && write_fully(fd, text.data(), text.size());
    for (std::size_t i = 0; ok && i < host.size(); ++i)
      if (host[i].nbytes() > 0) ok = write_fully(fd, host[i].raw_data(), host[i].nbytes());
    return ok;
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  return parse_safetensors(read_whole_file(path), path);
}

SafetensorsFile parse_safetensors(const std::vector<unsigned char>& bytes, const std::string& path) {
  if (bytes.size() < 8)
    AEGIS_THROW(IoError,
                path << ": " << bytes.size() << " bytes is too short for a safetensors file (8-byte header length)");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[static_cast<std::size_t>(i)];
  if (header_len > bytes.size() - 8)
    AEGIS_THROW(IoError, path << ": header length " << header_len << " is larger than the " << bytes.size() - 8
                              << " bytes that follow it; truncated or not a safetensors file");
  if (header_len > kMaxHeaderBytes)
    AEGIS_THROW(IoError,
                path << ": header length " << header_len << " exceeds the format's limit of " << kMaxHeaderBytes);
  const auto header_begin = reinterpret_cast<const char*>(bytes.data()) + 8;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    AEGIS_THROW(IoError, path << ": header is not valid JSON: " << e.what());
  }
  if (!header.is_object()) AEGIS_THROW(IoError, path << ": header is JSON but not an object");

  const std::uint64_t data_size = bytes.size() - 8 - header_len;
  const unsigned char* data = bytes.data() + 8 + header_len;
  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) AEGIS_THROW(IoError, path << ": __metadata__ is not a JSON object");
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string())
          AEGIS_THROW(IoError, path << ": __metadata__ entry '" << key << "' is " << value.dump()
                                    << ", but metadata values must be strings");
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(name, info, path, data_size));
  }
  // The byte ranges must tile [0, data_size): sorted by start, each begins where the last ended.
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  std::uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < covered)
      AEGIS_THROW(IoError, path << ": tensor '" << e.name << "' data_offsets [" << e.begin << ", " << e.end
                                << "] overlap tensor '" << previous->name << "' [" << previous->begin << ", "
                                << previous->end << "]");
    if (e.begin > covered)
      AEGIS_THROW(IoError, path << ": " << e.begin - covered << " unused bytes before tensor '" << e.name
                                << "' in the data section (at offset " << covered << ")");
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size)
    AEGIS_THROW(IoError,
                path << ": " << data_size - covered << " bytes after the last tensor are not described by the header");
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.raw_data(), data + e.begin, static_cast<std::size_t>(e.end - e.begin));
    file.tensors.emplace(e.name, std::move(t));
    file.order.push_back(e.name);
  }
  return file;
}

void save_model(const std::string& path, const Module& module, const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, var] : module.named_parameters()) tensors.emplace_back(name, var.value());
  save_safetensors(path, tensors, metadata);
}

std::map<std::string, std::string> load_model(const std::string& path, Module& module) {
  SafetensorsFile file = load_safetensors(path);
  std::vector<std::pair<std::string, autograd::Var>> params = module.named_parameters();
  // Check everything first so that a mismatched file leaves the module untouched.
  std::string problems;
  auto note = [&](const std::string& p) { problems += (problems.empty() ? "" : "; ") + p; };
  std::set<std::string> expected;
  for (const auto& [name, var] : params) {
    expected.insert(name);
    const Tensor& value = var.value();
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      note("missing tensor '" + name + "' (the model's parameter is " + dtype_name(value.dtype()) +
           shape_str(value.shape()) + ")");
    } else if (it->second.dtype() != value.dtype() || it->second.shape() != value.shape()) {
      note("tensor '" + name + "' is " + dtype_name(it->second.dtype()) + shape_str(it->second.shape()) +
           " in the file but the model's parameter is " + dtype_name(value.dtype()) + shape_str(value.shape()));
    }
  }
  for (const std::string& name : file.order)
    if (!expected.count(name)) note("unexpected tensor '" + name + "' (the model has no such parameter)");
  if (!problems.empty())
    AEGIS_THROW(IoError, path << ": does not match the model (" << module.kind() << "): " << problems);
  for (auto& [name, var] : params) var.mutable_value().copy_from(file.tensors.at(name));
  return file.metadata;
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
  }
  return "?";
}

}  // namespace aegis::nn
