// libFuzzer harness for the VNN-LIB reader (certify/vnnlib.h, parse_vnnlib): any bytes must either
// give a property or throw aegis::Error; never crash, overflow the stack or let another exception
// escape. A property that is read must be consistent: every disjunct's box has num_inputs finite
// sides with lower ≤ upper and every constraint num_outputs finite coefficients.
//
//   bash tools/fuzz.sh -t 60 vnnlib   # once the test command or the sanitizer job has built build-asan/
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "certify/vnnlib.h"
#include "core/error.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace aegis::certify;
  VnnProperty p;
  try {
    p = parse_vnnlib(std::string(reinterpret_cast<const char*>(data), size), "fuzz.vnnlib");
  } catch (const aegis::Error&) {
    return 0;  // malformed input is expected to be refused
  }
  if (p.num_inputs < 1 || p.num_outputs < 1 || p.disjuncts.size() > kMaxVnnDisjuncts)
    aegis::fuzz::property_violated("a property without inputs or outputs, or with too many disjuncts");
  for (const VnnDisjunct& d : p.disjuncts) {
    if (d.lower.size() != static_cast<std::size_t>(p.num_inputs) || d.upper.size() != d.lower.size())
      aegis::fuzz::property_violated("a box of the wrong size");
    for (std::size_t i = 0; i < d.lower.size(); ++i)
      if (!std::isfinite(d.lower[i]) || !std::isfinite(d.upper[i]) || d.lower[i] > d.upper[i])
        aegis::fuzz::property_violated("a box side that is infinite or empty");
    for (const OutputConstraint& c : d.constraints) {
      if (c.coef.size() != static_cast<std::size_t>(p.num_outputs) || !std::isfinite(c.constant))
        aegis::fuzz::property_violated("a constraint of the wrong size or with a non-finite constant");
      for (double v : c.coef)
        if (!std::isfinite(v)) aegis::fuzz::property_violated("a non-finite coefficient");
    }
  }
  return 0;
}
