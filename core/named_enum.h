// Modes are enums with a fixed name each; text becomes an enum in one place, at the edge
// (command-line options, metadata, another language's front end). parse_named is that place for
// every enum that has a name function.
#pragma once

#include <initializer_list>
#include <sstream>
#include <string>

#include "core/error.h"

namespace aegis {

// The value among `values` whose name_of(value) is `text`; otherwise InvalidArgument
// "unknown <what> '<text>' (one of a, b, c)".
template <class E, class NameOf>
E parse_named(const std::string& text, std::initializer_list<E> values, NameOf name_of, const char* what) {
  for (E v : values)
    if (text == name_of(v)) return v;
  std::ostringstream list;
  for (E v : values) list << (list.tellp() > 0 ? ", " : "") << name_of(v);
  AEGIS_THROW(InvalidArgument, "unknown " << what << " '" << text << "' (one of " << list.str() << ")");
}

}  // namespace aegis
