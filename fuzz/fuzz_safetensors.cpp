// libFuzzer harness for the safetensors reader (nn/serialize.h): any bytes must either parse into
// tensors that match their header or throw aegis::Error; never crash, read out of bounds,
// overflow or allocate without bound. Built only with clang and -DAEGIS_FUZZ=ON (the test command
// builds it in build-asan/, and tools/fuzz.sh runs it), or by hand:
//
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DAEGIS_FUZZ=ON -DAEGIS_CUDA=OFF \
//         -DAEGIS_BUILD_TESTS=OFF -DAEGIS_BUILD_BENCH=OFF
//   cmake --build build-fuzz --target fuzz_safetensors
//   build-fuzz/fuzz_safetensors -max_len=4096 -rss_limit_mb=2048 fuzz/corpus/safetensors
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nn/serialize.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<unsigned char> bytes(data, data + size);
  try {
    const aegis::nn::SafetensorsFile file = aegis::nn::parse_safetensors(bytes, "<fuzz input>");
    // Every tensor the reader accepts must be readable in full.
    volatile unsigned char sink = 0;
    for (const auto& [name, tensor] : file.tensors) {
      const auto* p = static_cast<const unsigned char*>(tensor.raw_data());
      for (std::size_t i = 0; i < tensor.nbytes(); ++i) sink = sink ^ p[i];
    }
  } catch (const aegis::Error&) {
    // Malformed input is expected to be refused.
  }
  return 0;
}
