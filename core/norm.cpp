#include "core/norm.h"

#include "core/error.h"
#include "core/named_enum.h"

namespace aegis {

const char* norm_name(Norm norm) noexcept {
  return norm == Norm::Linf ? "linf" : "l2";
}

Norm parse_norm(const std::string& name) {
  return parse_named(name, {Norm::Linf, Norm::L2}, norm_name, "norm");
}

}  // namespace aegis
