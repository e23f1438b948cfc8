// libFuzzer harness for the ONNX import (nn/onnx_import.h): any bytes must either load into a
// GraphModule or throw aegis::Error; never crash, overflow, or allocate without bound. A model that
// loads with a small input (at most 4096 values per example) also runs one forward pass, so that
// the shapes the loader computed are checked against the ops. External data is refused (no base
// directory), so no input reaches the file system. Built only with clang and -DAEGIS_FUZZ=ON on a
// machine with libonnx-dev (tools/bootstrap.sh test builds it in build-asan/ and tools/fuzz.sh
// runs it from fuzz/corpus/onnx, which make_corpus.py does not write: the seeds are the parity
// fixtures of tests/onnx/make_fixtures.py).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "nn/onnx_import.h"
#include "runtime/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    aegis::nn::OnnxModel m = aegis::nn::load_onnx_bytes(bytes, "<fuzz input>", "");
    aegis::Shape shape = m.model->input_shape();
    if (aegis::shape_numel(shape) <= 4096) {
      shape.insert(shape.begin(), 2);
      const aegis::Tensor x = aegis::Tensor::full(shape, 0.5);
      const aegis::nn::Var y = m.model->forward(aegis::nn::Var(x));
      if (y.shape() != aegis::Shape{2, m.model->num_classes()}) __builtin_trap();  // the loader's shapes lied
    }
  } catch (const aegis::Error&) {
    // Malformed or unsupported input is expected to be refused.
  }
  return 0;
}
