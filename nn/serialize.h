// Model files in the safetensors format (Hugging Face's published layout): an 8-byte
// little-endian header length, a JSON header mapping each tensor name to
// {"dtype": "F32" | "F64" | "I32", "shape": [...], "data_offsets": [begin, end]} plus an optional
// "__metadata__" object of string → string, then the tensors' raw little-endian bytes, with
// offsets relative to the start of that data section. Writers here emit tensors in the order
// given (a Module's state_dict order), pad the header with spaces to a multiple of 8 bytes, and
// replace the target atomically (core/atomic_file.h: a unique temporary file per writer, then
// rename), so an interrupted save never leaves a half-written model. Readers validate everything before building a tensor, and accept
// exactly what the reference reader accepts for these dtypes: the header must fit in the file and
// parse as a JSON object, every tensor's byte range must match shape × dtype size, and the
// ranges must tile the data section without overlaps or gaps. Tensor names follow PyTorch's
// state_dict names ("0.weight", "layer1.0.conv1.weight"), so a model exported from PyTorch with
// safetensors.torch.save_file loads here without conversion. Every IoError names the file and,
// where one is at fault, the tensor.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "runtime/tensor.h"

namespace aegis::nn {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;  // host tensors, by name
  std::vector<std::string> order;         // the names in the order of their data in the file
  std::map<std::string, std::string> metadata;
};

// Tensors may live on any device (CUDA tensors are copied to the host first). Throws
// InvalidArgument for an empty, duplicated or reserved ("__metadata__") name, IoError when the
// file cannot be written.
// The format's dtype spelling: "F32", "F64", "I32", "I64" (fixed by the format, so digests and
// files may rely on it).
const char* safetensors_dtype_name(DType dtype);

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);
// The same for a file's bytes already in memory; `path` only names the file in errors (the fuzz
// harness, fuzz/fuzz_safetensors.cpp, feeds it arbitrary bytes).
SafetensorsFile parse_safetensors(const std::vector<unsigned char>& bytes, const std::string& path);

// Saves every parameter of `module` under its state_dict name.
void save_model(const std::string& path, const Module& module, const std::map<std::string, std::string>& metadata = {});
// Strict load: every parameter must be present with the same shape and dtype, and the file may
// hold no other tensor; otherwise IoError naming the file and the tensors at fault, with the
// module unchanged. Values are copied into the parameters on their current device. Returns the
// file's metadata (a trained model's privacy ledger lives there).
std::map<std::string, std::string> load_model(const std::string& path, Module& module);

}  // namespace aegis::nn
