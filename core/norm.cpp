#include "core/norm.h"

#include "core/error.h"

namespace aegis {

const char* norm_name(Norm norm) noexcept {
  return norm == Norm::Linf ? "linf" : "l2";
}

Norm parse_norm(const std::string& name) {
  for (Norm n : {Norm::Linf, Norm::L2})
    if (name == norm_name(n)) return n;
  AEGIS_THROW(InvalidArgument, "norm '" << name << "' is not one of linf, l2");
}

}  // namespace aegis
